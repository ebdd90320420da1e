"""What the bot test modules share (importable, unlike conftest.py, which holds the fixtures built on these):
a bot process over a per-test copy of an index (``Process``), the settings of a test bot, waiting for an
answer's record, another process's long write (``write_lock_held``), and a tiny file server standing in for
Discord's CDN and for web pages (``Files``)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import QABot
from embeddings.service import QAService
from embeddings.settings import BotSettings
from tests.support import SEEDS, make_service

# The shared article of the admin and learn tests' index: the lighthouse, painted in 1901.
BASE_ARTICLE = """Lighthouse keepers of the northern coast

The northern lighthouse was painted red and white in 1901 so that ships could see it in the fog.
"""


@contextlib.contextmanager
def write_lock_held(home: Path, seconds: float) -> Iterator[None]:
    """Another process in a long write: the store's write lock taken now and let go after ``seconds`` by the
    running event loop (the bot's store calls wait for it in their worker threads, as behind a real commit)."""
    conn = sqlite3.connect(home / "qabot.sqlite3", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")

    def release() -> None:
        if conn.in_transaction:
            conn.rollback()

    handle = asyncio.get_running_loop().call_later(seconds, release)
    try:
        yield
    finally:
        handle.cancel()
        release()
        conn.close()


def settings(**kw: Any) -> BotSettings:
    """A test bot's settings: no rate limit, a short wait for guilds; ``kw`` overrides."""
    base = {"token": "fake-token", "rate_limit": 0, "guild_ready_timeout": 0.05}
    return BotSettings(**{**base, **kw})


def seed_service(home: Path) -> QAService:
    """A hashing-encoder service over a new index at ``home`` holding seeds/ (the caller closes it)."""
    svc = make_service(home)
    assert svc.ingest([str(SEEDS)], progress=False).ok
    return svc


class Process:
    """One bot process's service over a per-test copy of an index; each ``bot()`` is a new process (new
    client, new service, the same store), as `qabot run` after a crash or deploy. ``asked`` records every
    QAService.ask call: {"question": ..., **its keyword arguments (scope, history)}."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.services: list[QAService] = []
        self.asked: list[dict[str, Any]] = []

    def questions(self) -> list[str]:
        """Just the questions asked, in order."""
        return [a["question"] for a in self.asked]

    def service(self) -> QAService:
        svc = make_service(self.home)
        real = svc.ask

        def ask(question: str, **kw: Any):
            self.asked.append({"question": question, **kw})
            return real(question, **kw)

        svc.ask = ask  # type: ignore[method-assign]
        self.services.append(svc)
        return svc

    def bot(self, **kw: Any) -> QABot:
        return QABot(self.service(), settings(**kw))

    def close(self) -> None:
        for svc in self.services:
            svc.close()


async def recorded(proc: Process, message_id: int) -> None:
    """Wait until the answer shown in ``message_id`` is in the store (it is written just after sending)."""
    state = proc.services[-1].bot_state()
    for _ in range(3000):  # a hang detector, not a speed check
        if state.answer(message_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no record for {message_id}")


class Files:
    """A tiny file server on 127.0.0.1 standing in for Discord's CDN (attachments) and for web pages."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.hits: list[str] = []
        self.server: TestServer | None = None

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits.append(name)
        if name not in self.files:
            return web.Response(status=404)
        data, ctype = self.files[name]
        return web.Response(body=data, content_type=ctype)

    def add(self, name: str, data: bytes, content_type: str = "text/plain") -> str:
        self.files[name] = (data, content_type)
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/files/{name}"
