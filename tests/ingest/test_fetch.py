"""Tests for embeddings.ingest.fetch against local servers only (127.0.0.1); DNS is faked where a name matters."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from embeddings.errors import FetchError, InputError
from embeddings.ingest import fetch
from embeddings.ingest.fetch import FetchedPage, fetch_url, is_public_address

pytestmark = pytest.mark.timeout(30)  # a regression in the deadline should fail, not hang the suite

PAGE = b"<html><head><title>Hello</title></head><body><p>An article.</p></body></html>"
STOP = threading.Event()  # lets hanging handlers finish when the module's tests are done


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close-delimited bodies, so a missing Content-Length is legal

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              length: int | None = -1) -> None:
        self.send_response(status)
        for key, value in (headers or {"Content-Type": "text/html; charset=UTF-8"}).items():
            self.send_header(key, value)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up first, which is what several tests want

    def _stall(self) -> None:
        STOP.wait(5)

    def do_GET(self) -> None:  # noqa: C901 - one flat routing table reads best here
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/page":
            self._send(200, PAGE)
        elif path == "/echo":
            text = f"Host: {self.headers['Host']}\nUser-Agent: {self.headers['User-Agent']}\n"
            self._send(200, text.encode(), {"Content-Type": "text/plain"})
        elif path == "/404":
            self._send(404, b"nope")
        elif path == "/500":
            self._send(500, b"boom")
        elif path.startswith("/r/"):
            n = int(path[3:])
            if n == 0:
                self._send(200, PAGE)
            else:
                self._send(302, b"", {"Location": f"/r/{n - 1}"})
        elif path == "/redirect":
            self._send(301, b"", {"Location": query["to"][0]})
        elif path == "/no-location":
            self._send(302, b"", {})
        elif path == "/hang":
            self._stall()
        elif path == "/hang-after-headers":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            self._stall()
        elif path == "/trickle":
            self.send_response(200)
            self.end_headers()
            try:  # ~5 s in all, so a per-read-timeout fetcher would finish (and the test fail) rather than hang
                for _ in range(25):
                    if STOP.wait(0.2):
                        break
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except OSError:
                pass
        elif path == "/big":
            self._send(200, b"a" * int(query.get("n", ["10000"])[0]), length=None)
        elif path == "/huge-length":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.flush()
            self._stall()
        elif path == "/short":
            self._send(200, b"0123456789", length=1000)
        elif path == "/under":
            self._send(200, b"b" * 10_000, length=10)
        elif path == "/gzip":
            self._send(200, gzip.compress(PAGE), {"Content-Type": "text/html", "Content-Encoding": "gzip"})
        elif path == "/deflate":
            self._send(200, zlib.compress(PAGE), {"Content-Type": "text/html", "Content-Encoding": "deflate"})
        elif path == "/gzip-bomb":
            self._send(200, gzip.compress(b"\0" * 1_000_000), {"Content-Encoding": "gzip"})
        elif path == "/gzip-truncated":
            self._send(200, gzip.compress(PAGE * 50)[:-20], {"Content-Encoding": "gzip"})
        elif path == "/br":
            self._send(200, b"xx", {"Content-Encoding": "br"})
        else:
            self._send(404, b"unknown route")


@contextlib.contextmanager
def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    """Run `server` in a thread; yields its port."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        STOP.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    STOP.clear()
    with _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield port


@pytest.fixture
def base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Route getaddrinfo through `table`; returns the list of names looked up, in order."""
    looked_up: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        ips = table.get(host)
        with contextlib.suppress(ValueError):  # IP literals resolve to themselves, as the real resolver does
            ips = [str(ipaddress.ip_address(host))]
        if ips is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port, 0, 0) if ":" in ip else (ip, port)) for ip in ips]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


def one_line_error(excinfo: pytest.ExceptionInfo[FetchError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ---------------------------------------------------------------- address classifier

@pytest.mark.parametrize("addr", [
    "10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1", "169.254.169.254", "127.0.0.1", "127.8.9.10",
    "0.0.0.0", "100.64.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1",
    "198.18.0.1", "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1",
    "2001:db8::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "2002:7f00:1::", "2002:a00:1::1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "not-an-ip", "",
])
def test_non_public_addresses_are_refused(addr: str) -> None:
    assert is_public_address(addr) is False


@pytest.mark.parametrize("addr", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888", "2606:4700:4700::1111",
    "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808",
])
def test_public_addresses_are_allowed(addr: str) -> None:
    assert is_public_address(addr) is True


# ---------------------------------------------------------------- URL validation (no DNS, no sockets)

@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a", "javascript:alert(1)", "data:text/html,hi", "gopher://x/",
    "example.com/page", "//example.com/page", "", "   ", "http://", "http:///path", "http://:80/",
    "https://example.com:99999/", "http://exa\nmple.com/", "http://[::1/",
])
def test_bad_urls_refused_before_any_lookup(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up = fake_dns(monkeypatch, {})
    with pytest.raises(FetchError) as excinfo:
        fetch_url(url)
    msg = one_line_error(excinfo)
    assert url.strip() in msg or repr(url.strip()) in msg
    assert looked_up == []
    assert isinstance(excinfo.value, InputError)


@pytest.mark.parametrize("url", ["http://user:hunter2@example.com/", "https://hunter2@example.com/x"])
def test_credentials_refused_and_not_echoed(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up = fake_dns(monkeypatch, {"example.com": ["93.184.216.34"]})
    with pytest.raises(FetchError) as excinfo:
        fetch_url(url)
    msg = one_line_error(excinfo, "credentials", "example.com")
    assert "hunter2" not in msg and looked_up == []


# ---------------------------------------------------------------- private-address policy

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0.0.0.0"])
def test_loopback_refused_before_connecting(host: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        url = f"http://{host}:{listener.getsockname()[1]}/page"
        with pytest.raises(FetchError) as excinfo:
            fetch_url(url)
        one_line_error(excinfo, "Refusing", "non-public", url)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever connected
            listener.accept()
    finally:
        listener.close()


@pytest.mark.parametrize("addrs", [["10.0.0.5"], ["93.184.216.34", "127.0.0.1"], ["2606:4700::1", "fd00::1"]])
def test_public_name_resolving_to_any_private_address_is_refused(addrs: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"news.example.com": addrs})
    with pytest.raises(FetchError) as excinfo:
        fetch_url("https://news.example.com/story")
    one_line_error(excinfo, "non-public address", addrs[-1], "https://news.example.com/story")


def test_allow_private_fetches_local_page(base: str) -> None:
    page = fetch_url(f"{base}/page", allow_private=True)
    assert page == FetchedPage(f"{base}/page", "text/html", "utf-8", PAGE)


def test_connects_to_the_checked_address_and_sends_original_host(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # A rebinding resolver would answer differently the second time; the fetch must never ask twice.
    looked_up = fake_dns(monkeypatch, {"rebind.test": ["127.0.0.1"]})
    page = fetch_url(f"http://rebind.test:{port}/echo", allow_private=True)
    assert looked_up == ["rebind.test"]
    assert f"Host: rebind.test:{port}\n" in page.body.decode()
    assert "User-Agent: qabot/0.1 (+article ingest)\n" in page.body.decode()
    assert (page.content_type, page.charset) == ("text/plain", None)


def test_every_redirect_hop_is_revalidated(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # First hop: a "public" name (127.0.0.1 counts as public here) that redirects inward.
    fake_dns(monkeypatch, {"public.test": ["127.0.0.1"], "internal.test": ["10.1.2.3"]})
    real = fetch.is_public_address
    monkeypatch.setattr(fetch, "is_public_address", lambda a: a == "127.0.0.1" or real(a))
    assert fetch_url(f"http://public.test:{port}/page").body == PAGE  # the first hop really is allowed
    for target, bad in [("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
                        (f"http://internal.test:{port}/page", "10.1.2.3"), (f"http://[::1]:{port}/page", "::1")]:
        with pytest.raises(FetchError) as excinfo:
            fetch_url(f"http://public.test:{port}/redirect?to={target}")
        one_line_error(excinfo, "non-public address", bad, target)


# ---------------------------------------------------------------- HTTP behaviour

@pytest.mark.parametrize(("path", "status"), [("/404", "404 Not Found"), ("/500", "500 Internal Server Error")])
def test_non_2xx_is_an_error(base: str, path: str, status: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(base + path, allow_private=True)
    one_line_error(excinfo, f"HTTP {status} for {base}{path}")


def test_redirect_chain_is_followed(base: str) -> None:
    page = fetch_url(f"{base}/r/3", allow_private=True, max_redirects=3)
    assert page.url == f"{base}/r/0" and page.body == PAGE


def test_too_many_redirects(base: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/r/3", allow_private=True, max_redirects=2)
    one_line_error(excinfo, "Too many redirects", f"{base}/r/3")


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.com/x", "javascript:alert(1)"])
def test_redirect_to_other_scheme_refused(base: str, target: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/redirect?to={target}", allow_private=True)
    one_line_error(excinfo, "Only http:// and https://", target)


def test_redirect_without_location(base: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/no-location", allow_private=True)
    one_line_error(excinfo, "without a Location", f"{base}/no-location")


@pytest.mark.parametrize("path", ["/hang", "/hang-after-headers", "/trickle"])
def test_one_deadline_covers_the_whole_fetch(base: str, path: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError) as excinfo:
        fetch_url(base + path, allow_private=True, timeout=1)
    elapsed = time.monotonic() - start
    one_line_error(excinfo, f"Timed out after 1 s fetching {base}{path}")
    assert 0.8 < elapsed < 3


def test_body_over_the_cap_is_refused(base: str) -> None:
    assert len(fetch_url(f"{base}/big?n=1000", allow_private=True, max_bytes=1000).body) == 1000
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/big?n=1001", allow_private=True, max_bytes=1000)
    one_line_error(excinfo, "larger than 1000 bytes", f"{base}/big?n=1001")


def test_default_cap_message_in_megabytes(base: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/big?n={5 * 1024 * 1024 + 1}", allow_private=True)
    one_line_error(excinfo, "larger than 5 MB")


def test_huge_content_length_refused_without_reading(base: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/huge-length", allow_private=True, timeout=5, max_bytes=1000)
    one_line_error(excinfo, "larger than 1000 bytes")
    assert time.monotonic() - start < 1  # the server never sends a body, so only the header can say so


def test_content_length_longer_than_body_is_an_error(base: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/short", allow_private=True)
    one_line_error(excinfo, f"{base}/short", "990 bytes short")


def test_content_length_shorter_than_body_bounds_the_read(base: str) -> None:
    assert fetch_url(f"{base}/under", allow_private=True, max_bytes=100).body == b"b" * 10


@pytest.mark.parametrize("path", ["/gzip", "/deflate"])
def test_compressed_bodies_are_decoded(base: str, path: str) -> None:
    assert fetch_url(base + path, allow_private=True).body == PAGE


def test_decompressed_size_is_capped(base: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"{base}/gzip-bomb", allow_private=True, max_bytes=10_000)
    one_line_error(excinfo, "larger than 10000 bytes")


@pytest.mark.parametrize(("path", "needle"), [("/gzip-truncated", "Truncated gzip"), ("/br", "Unsupported")])
def test_bad_encodings(base: str, path: str, needle: str) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(base + path, allow_private=True)
    one_line_error(excinfo, needle, base + path)


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"http://127.0.0.1:{free}/", allow_private=True)
    one_line_error(excinfo, "Could not connect", "refused", f"http://127.0.0.1:{free}/")


def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})
    with pytest.raises(FetchError) as excinfo:
        fetch_url("https://no-such-host.example/a")
    one_line_error(excinfo, "Could not resolve host no-such-host.example", "https://no-such-host.example/a")


# ---------------------------------------------------------------- HTTPS: connect to the IP, verify the name

@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, list[str]]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=qabot.test", "-addext", "subjectAltName=DNS:qabot.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    sni: list[str] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def record_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni.append(name or "")

    ctx.sni_callback = record_sni  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with _serve(server) as port:
        yield port, str(cert), sni


def test_https_connects_to_ip_but_verifies_hostname(tls: tuple[int, str, list[str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    port, cert, sni = tls
    monkeypatch.setattr(fetch, "_tls_context", lambda: ssl.create_default_context(cafile=cert))
    fake_dns(monkeypatch, {"qabot.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    page = fetch_url(f"https://qabot.test:{port}/echo", allow_private=True)
    assert f"Host: qabot.test:{port}\n" in page.body.decode() and sni[-1] == "qabot.test"
    with pytest.raises(FetchError) as excinfo:  # same IP, but the certificate is not for this name
        fetch_url(f"https://other.test:{port}/echo", allow_private=True)
    one_line_error(excinfo, "certificate", f"https://other.test:{port}/echo")


def test_https_uses_system_trust_by_default(tls: tuple[int, str, list[str]]) -> None:
    with pytest.raises(FetchError) as excinfo:
        fetch_url(f"https://127.0.0.1:{tls[0]}/page", allow_private=True)
    one_line_error(excinfo, "certificate")
