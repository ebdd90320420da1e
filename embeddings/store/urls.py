"""Store locations as text: which ones name PostgreSQL, and how to show them without their passwords.
A leaf module (stdlib only), so settings, the CLI and both stores can use it without importing a store."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from embeddings.errors import InputError


def is_pg_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def check_read_urls(urls: Sequence[str]) -> tuple[str, ...]:
    """The replica URLs, refused (passwords masked) unless each is a postgresql:// URL."""
    for url in urls:
        if not is_pg_url(url):
            raise InputError(f"QABOT_STORE_READ must list read-only PostgreSQL replicas as postgresql:// URLs "
                             f"(comma separated), but got {mask_value(url)!r}.")
    return tuple(urls)


def mask_value(value: str) -> str:
    """redact_url for anything a user may have typed, URL or not (user:secret@host has no scheme)."""
    if "://" in value:
        return redact_url(value)
    return "***@" + value.rsplit("@", 1)[1] if "@" in value else value


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and `qabot stats`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        netloc = f"{creds}@{host}"
    query = "&".join("password=***" if q.lower().startswith("password=") else q for q in parts.query.split("&")) \
        if parts.query else ""
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret (urlunsplit would also turn postgresql:///db into postgresql:/db)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
