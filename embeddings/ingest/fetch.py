"""Fetch one article over HTTP(S) without letting a pasted URL reach into our own network.

URLs come from chat users, so this is the bot's SSRF surface. Every hop is checked (scheme, then every
address the name resolves to), the socket goes to the address that was checked rather than to the name
(so DNS rebinding cannot swap it), and one deadline and one byte cap bound the whole fetch however the
server behaves. Standard library only, so none of this depends on a client library's redirect or DNS
handling."""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from embeddings.errors import FetchError

DEFAULT_TIMEOUT_S = 15.0
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
USER_AGENT = "qabot/0.1 (+article ingest)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# A NAT64 gateway connects to the IPv4 address embedded in these, so that address is what must be judged.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_Addr = tuple[int, tuple[Any, ...]]  # (family, sockaddr) as getaddrinfo gives them


@dataclass(frozen=True)
class FetchedPage:
    url: str  # final URL after redirects
    content_type: str  # lower-cased, parameters stripped; "" when the server sent none, so callers may sniff
    charset: str | None  # from the Content-Type header, if it named one
    body: bytes


def is_public_address(addr: str) -> bool:
    """True only for globally routable unicast addresses; anything unparsable is treated as not public."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return is_public_address(str(embedded))
        if ip.is_site_local:  # deprecated fec0::/10, which ipaddress still calls global
            return False
    # is_global alone misses multicast and some reserved ranges, so the explicit checks are not redundant.
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                                 or ip.is_reserved or ip.is_unspecified)


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES,
              allow_private: bool = False, max_redirects: int = 5) -> FetchedPage:
    """GET url, following redirects; `timeout` is one deadline for the whole fetch, not per read."""
    url = url.strip()
    if not url or not url.isprintable():  # after this, every message can quote a URL verbatim on one line
        raise FetchError(f"Not a valid URL: {url!r}.")
    deadline = time.monotonic() + timeout
    current = url
    try:
        for _ in range(max_redirects + 1):
            result = _fetch_once(current, deadline, max_bytes, allow_private)
            if isinstance(result, FetchedPage):
                return result
            current = result
    except TimeoutError:
        raise FetchError(f"Timed out after {timeout:g} s fetching {url}.") from None
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(f"TLS certificate check failed for {current}: {exc.verify_message}.") from None
    except (OSError, http.client.HTTPException, zlib.error) as exc:
        raise FetchError(f"Could not fetch {current}: {exc}.") from None
    raise FetchError(f"Too many redirects (more than {max_redirects}) fetching {url}.")


def _fetch_once(url: str, deadline: float, max_bytes: int, allow_private: bool) -> FetchedPage | str:
    """One request; returns the page, or the absolute URL a redirect points to."""
    https, host, port, target = _parse(url)
    sock = _connect(_resolve(host, port, url, allow_private), host if https else None, deadline, url)
    conn = http.client.HTTPConnection(host, port)
    conn.sock = _DeadlineSocket(sock, deadline)  # type: ignore[assignment]  # connect() is never called
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == (443 if https else 80) else f":{port}")
    try:
        conn.request("GET", target, headers={
            "Host": host_header, "User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate",
            "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5", "Connection": "close"})
        resp = conn.getresponse()
        if resp.status in _REDIRECTS:
            location = resp.getheader("Location")
            if not location:
                raise FetchError(f"HTTP {resp.status} redirect without a Location header from {url}.")
            return urljoin(url, location.strip())
        if not 200 <= resp.status < 300:
            raise FetchError(f"HTTP {resp.status} {resp.reason} for {url}.")
        body = _read_body(resp, url, max_bytes)
        content_type = (resp.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
        return FetchedPage(url, content_type, resp.headers.get_content_charset(), body)
    finally:
        conn.close()
        sock.close()


def _parse(url: str) -> tuple[bool, str, int, str]:
    """(is_https, ASCII host, port, request target), or FetchError for anything we will not fetch."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"Not a valid URL: {url} ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"Only http:// and https:// URLs can be fetched, not {url}.")
    if "@" in parts.netloc:  # don't echo the password back into a chat channel
        shown = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
        raise FetchError(f"Refusing a URL with credentials in it: {shown}.")
    if not parts.hostname:
        raise FetchError(f"URL has no host name: {url}.")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError(f"Not a valid host name in {url}.") from None
    target = quote(parts.path or "/", safe="!$%&'()*+,/:;=@~") + (
        "?" + quote(parts.query, safe="!$%&'()*+,/:;=?@~") if parts.query else "")
    return scheme == "https", host, port or (443 if scheme == "https" else 80), target


def _resolve(host: str, port: int, url: str, allow_private: bool) -> list[_Addr]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"Could not resolve host {host} for {url}: {exc.strerror}.") from None
    addrs: list[_Addr] = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
    # Every address, not just the first: the one we end up connecting to must be one we checked.
    for _, sockaddr in addrs:
        if not allow_private and not is_public_address(str(sockaddr[0])):
            raise FetchError(f"Refusing to fetch {url}: {host} resolves to non-public address {sockaddr[0]}.")
    return addrs


def _connect(addrs: list[_Addr], tls_host: str | None, deadline: float, url: str) -> socket.socket:
    last: OSError | None = None
    for family, sockaddr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(sockaddr)
            break
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last = exc
    else:
        reason = last.strerror or str(last) if last else "no addresses"
        raise FetchError(f"Could not connect to {url}: {reason}.")
    if tls_host is None:
        return sock
    sock.settimeout(_remaining(deadline))  # the handshake treats the socket timeout as one overall deadline
    return _tls_context().wrap_socket(sock, server_hostname=tls_host)


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _read_body(resp: http.client.HTTPResponse, url: str, max_bytes: int) -> bytes:
    encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise FetchError(f"Unsupported Content-Encoding {encoding!r} from {url}.")
    decoder = None if encoding == "identity" else zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib header
    too_large = FetchError(f"{url} is larger than {_size(max_bytes)}.")
    if decoder is None and resp.length is not None and resp.length > max_bytes:
        raise too_large
    body = bytearray()
    while chunk := resp.read1(64 * 1024):
        if decoder is not None:
            # Cap the inflated size, not the wire size, so a small gzip bomb cannot fill memory.
            chunk = decoder.decompress(chunk, max_bytes + 1 - len(body))
            if decoder.unconsumed_tail:
                raise too_large
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    if resp.length:  # http.client counts down the promised Content-Length; a remainder means a hang-up
        raise FetchError(f"Connection closed {resp.length} bytes short of the promised length for {url}.")
    if decoder is not None:
        body += decoder.flush()
        if not decoder.eof:
            raise FetchError(f"Truncated {encoding} body from {url}.")
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


class _DeadlineSocket(io.RawIOBase):
    """The socket http.client sees: each send and receive gets only the time left overall, so a server
    that trickles a byte at a time cannot stretch a per-call timeout into forever."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        self._sock.settimeout(_remaining(self._deadline))
        return self._sock.recv_into(buf)

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(_remaining(self._deadline))
        self._sock.sendall(data)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self)

    def close(self) -> None:
        pass  # http.client closes the connection before the body is read; _fetch_once closes the real socket


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n} bytes"
