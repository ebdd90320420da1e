"""Fixtures the bot test modules share; a module defines its own of the same name where it needs another
(an index, a fake with other servers). The pieces they are built on are in tests/bot/processes.py."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
from embeddings.settings import Settings
from tests.bot.processes import BASE_ARTICLE, Files, Process, seed_service
from tests.fakes.fake_discord import FakeDiscord

GUILD = 111111111111111111
CHANNEL = 333333333333333333
GUILD_B = 555555555555555555
CHANNEL_B = 666666666666666666
USER = 222222222222222222  # the fake's default user: the guilds' owner, the application's owner
OTHER_USER = 888888888888888888


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of seeds/, built once; tests get a copy of it through ``proc``."""
    home = tmp_path_factory.mktemp("seeded") / "idx"
    seed_service(home).close()
    return home


@pytest.fixture
def proc(seeded: Path, tmp_path: Path) -> Iterator[Process]:
    """A bot process over this test's own copy of ``seeded``."""
    home = tmp_path / "idx"
    shutil.copytree(seeded, home)
    p = Process(home)
    yield p
    p.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[QAService]:
    """The shared lighthouse article (it knows 1901), and nothing of any server yet."""
    svc = QAService(Settings(home=tmp_path / "idx"), encoder=HashingEncoder(256), allow_private_urls=True)
    (tmp_path / "lighthouse.txt").write_text(BASE_ARTICLE, encoding="utf-8")
    assert svc.ingest([str(tmp_path / "lighthouse.txt")], progress=False).ok
    yield svc
    svc.close()


@pytest.fixture
async def files() -> AsyncIterator[Files]:
    f = Files()
    app = web.Application()
    app.router.add_get("/files/{name}", f._get)
    f.server = TestServer(app, host="127.0.0.1")
    await f.server.start_server()
    yield f
    await f.server.close()


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """Two servers: GUILD (CHANNEL; USER and OTHER_USER) and GUILD_B (CHANNEL_B; USER)."""
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=[CHANNEL], members=[USER, OTHER_USER])
        await fake.guild_create(GUILD_B, channels=[CHANNEL_B], members=[USER])
        yield fake
