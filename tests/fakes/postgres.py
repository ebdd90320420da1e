"""A real PostgreSQL server with pgvector for the store tests, started once per test session.

By default the `pgserver` package (dev extra) runs a private server from its bundled binaries (PostgreSQL 16
with pgvector) in a temporary directory, over a Unix socket: no Docker, no network, no system packages.
QABOT_TEST_PG_URL=postgresql://... uses an existing server instead (its user must be allowed to
CREATE DATABASE and CREATE EXTENSION vector). Each test gets a fresh database, dropped afterwards.

tests/conftest.py imports the fixtures, so every test module shares the one server."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server():
    """A maintenance URL (database `postgres`) of a running server."""
    url = os.environ.get("QABOT_TEST_PG_URL")
    if url:
        yield url
        return
    pytest.importorskip("psycopg", reason="PostgreSQL tests need the dev extra (psycopg, pgserver)")
    pgserver = pytest.importorskip("pgserver", reason="PostgreSQL tests need the dev extra (pgserver)")
    # Our own directory, not pytest's tmp_path: pytest sessions running side by side on one machine rotate
    # /tmp/pytest-of-<user>/ and could delete a live server's data. Short, too: the server's Unix socket
    # lives in it and socket paths are limited to ~100 bytes.
    pgdata = Path(tempfile.mkdtemp(prefix="qabot-pg-"))
    srv = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield srv.get_uri()
    finally:
        srv.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def create_database(server_url: str) -> str:
    import psycopg

    name = "qabot_t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        # Tests never crash the server, only clients: skip waiting for the WAL flush on each commit.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return with_database(server_url, name)


def copy_database(server_url: str, url: str) -> str:
    """A new database copied from `url`'s (which must have no open connections): a frozen 'replica'."""
    import psycopg

    name = "qabot_r_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{urlsplit(url).path.lstrip("/")}"')
    return with_database(server_url, name)


def read_only(url: str) -> str:
    """`url` whose sessions refuse writes, like a hot standby's (libpq options: default_transaction_read_only)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, "options=-c%20default_transaction_read_only%3Don") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def drop_database(server_url: str, url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server):
    """A URL to a new, empty database on the session's server."""
    url = create_database(pg_server)
    yield url
    drop_database(pg_server, url)
