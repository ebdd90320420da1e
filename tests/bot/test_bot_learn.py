"""Asking about a message and learning from Discord (issue 15, items 5 and 6): the real bot against the
loopback FakeDiscord, with a hashing-encoder service over a small temporary index (no model, no network
beyond 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import bot.app
from bot.app import QABot
from bot.cogs.ask import ASK_MENU, EMPTY_QUESTION, NO_TEXT, UNREADABLE
from embeddings.encoders.hashing import HashingEncoder
from embeddings.models import guild_scope
from embeddings.service import QAService
from embeddings.settings import Settings
from tests.bot.test_bot_admin import (
    BASE_ARTICLE,
    CHANNEL,
    GUILD,
    MANAGE_SERVER,
    OTHER_USER,
    USER,
    Files,
    callback,
    embed_body,
    settings,
    wait_edit,
)
from tests.fakes.fake_discord import ALL_PERMISSIONS, FakeDiscord

FORUM = 444444444444444441
CLOSED = 444444444444444442  # a channel where the bot may not read the history
READ_MESSAGE_HISTORY = 1 << 16
ADMINISTRATOR = 1 << 3  # overrides every channel overwrite: the bot is not one here
VIEW_CHANNEL = 1 << 10
SCOPE = guild_scope(GUILD)
LIGHTHOUSE_Q = "when was the northern lighthouse painted red and white?"

FERRY_Q = "when does the quuxbridge ferry stop running?"
FERRY_FACT = "The quuxbridge ferry stops running in January because the river freezes over."
FERRY_EDITED = "The quuxbridge ferry stops running in March because the pier is repaired."


@pytest.fixture
def service(tmp_path: Path):
    """The shared lighthouse article (it knows 1901), and nothing of this server yet."""
    svc = QAService(Settings(home=tmp_path / "idx"), encoder=HashingEncoder(256), allow_private_urls=True)
    (tmp_path / "lighthouse.txt").write_text(BASE_ARTICLE, encoding="utf-8")
    assert svc.ingest([str(tmp_path / "lighthouse.txt")], progress=False).ok
    yield svc
    svc.close()


@pytest.fixture
async def files():
    f = Files()
    app = web.Application()
    app.router.add_get("/files/{name}", f._get)
    f.server = TestServer(app, host="127.0.0.1")
    await f.server.start_server()
    yield f
    await f.server.close()


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch):
    closed = {"id": CLOSED, "name": "staff", "permission_overwrites": [
        {"id": str(GUILD + 1), "type": 0, "allow": "0", "deny": str(READ_MESSAGE_HISTORY)}]}
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=[CHANNEL, FakeDiscord.forum_channel(FORUM), closed],
                                members=[USER, OTHER_USER], bot_permissions=ALL_PERMISSIONS & ~ADMINISTRATOR)
        yield fake


@pytest.fixture
def no_content_intent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot runs without the privileged Message Content intent (as item 9 of the issue allows)."""
    def intents() -> discord.Intents:
        i = discord.Intents.default()
        i.message_content = False
        return i

    monkeypatch.setattr(bot.app, "bot_intents", intents)


def jump(channel_id: int, message_id: int | None = None) -> str:
    return f"https://discord.com/channels/{GUILD}/{channel_id}" + (f"/{message_id}" if message_id else "")


async def thread_answer(fake: FakeDiscord, incoming: dict[str, Any]) -> dict[str, Any]:
    """The answer posted in the thread the bot starts from ``incoming``."""
    req = await fake.wait_for_request("POST", f"/channels/{int(incoming['id'])}/messages")
    assert req.ok, req.response
    return req.json


async def ask(fake: FakeDiscord, question: str) -> str:
    incoming = await fake.message_create(f"{fake.bot_mention} {question}", channel_id=CHANNEL, author=USER)
    assert incoming is not None
    return embed_body(await thread_answer(fake, incoming))


def channel_option(fake: FakeDiscord, name: str, channel_id: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A channel option as Discord sends it: the id, and the channel in ``resolved``."""
    return ([{"name": name, "type": 7, "value": str(channel_id)}],
            {"channels": {str(channel_id): fake.resolved_channel(channel_id, MANAGE_SERVER)}})


async def ingest_channel(fake: FakeDiscord, name: str, channel_id: int, *, permissions: int = MANAGE_SERVER,
                         extra: list[dict[str, Any]] = ()) -> dict[str, Any]:
    options, resolved = channel_option(fake, name, channel_id)
    return await fake.slash_command("ingest", options + list(extra), channel_id=CHANNEL, permissions=permissions,
                                    resolved=resolved)


async def final(fake: FakeDiscord, inter: dict[str, Any]) -> str:
    """The last edit of a deferred /ingest, once it is no longer a progress line."""
    return await wait_edit(fake, inter, lambda c: not c.startswith(("Reading", "Indexing", "Downloading")))


def doc_by_source(service: QAService, source: str):
    return next((d for d in service.documents(SCOPE) if d.source == source), None)


async def ferry_thread(fake: FakeDiscord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A thread started from a member's message in #channel, with replies, a bot's message and an image."""
    starter = await fake.message_create("Winter timetable question: how do the ferries run?", channel_id=CHANNEL,
                                        author=OTHER_USER)
    assert starter is not None
    thread = await fake.thread_create(CHANNEL, "Quuxbridge ferry winter timetable", owner=OTHER_USER,
                                      from_message=int(starter["id"]))
    tid = int(thread["id"])
    replies = [
        await fake.message_create(FERRY_FACT, channel_id=tid, author=USER),
        await fake.message_create("The zorblax bot says the ferry is haunted.", channel_id=tid, author=fake.bot_id),
        await fake.message_create("", channel_id=tid, author=USER, attachments=[
            {"id": str(fake.snowflake()), "filename": "photo.png", "size": 10, "url": "http://127.0.0.1:1/p.png",
             "proxy_url": "http://127.0.0.1:1/p.png", "content_type": "image/png"}]),
        await fake.message_create("Thanks, that helps!", channel_id=tid, author=OTHER_USER),
    ]
    return thread, [r for r in replies if r is not None]


# ---- Apps → Ask qabot ------------------------------------------------------------------------------------


async def test_ask_menu_answers_the_message_without_the_message_content_intent(
        fake: FakeDiscord, service: QAService, no_content_intent: None) -> None:
    async with fake.running(QABot(service, settings())) as client:
        assert not client.intents.message_content
        theirs = await fake.message_create(LIGHTHOUSE_Q, channel_id=CHANNEL, author=OTHER_USER)
        assert theirs is not None and theirs["content"] == ""  # the bot itself cannot read it
        inter = await fake.message_command(ASK_MENU, int(theirs["id"]), user=USER)
        cb = await callback(fake, inter)
        assert cb["type"] == 5 and not (cb.get("data") or {}).get("flags", 0) & 64  # public, like /ask
        followup = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
        assert followup.ok
        assert followup.json["content"] == f"About {jump(CHANNEL, int(theirs['id']))}"
        assert "1901" in embed_body(followup.json)
        # the answer is recorded: its Sources button works
        answer_id = int(followup.response["id"])
        click = await fake.component_click(answer_id, "qabot:sources", user=OTHER_USER)
        sources = await callback(fake, click)
        assert sources["type"] == 4 and sources["data"]["flags"] & 64 and "Lighthouse" in str(sources["data"])


async def test_ask_menu_on_a_message_without_text(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        image = await fake.message_create("", channel_id=CHANNEL, author=OTHER_USER, attachments=[
            {"id": "1", "filename": "a.png", "size": 1, "url": "http://127.0.0.1:1/a.png",
             "proxy_url": "http://127.0.0.1:1/a.png"}])
        assert image is not None
        cb = await callback(fake, await fake.message_command(ASK_MENU, int(image["id"]), user=USER))
        assert cb["type"] == 4 and cb["data"]["flags"] & 64 and cb["data"]["content"] == NO_TEXT


# ---- a bare @qabot in a reply ----------------------------------------------------------------------------


@pytest.mark.parametrize("resolved", [True, False], ids=["reference-resolved", "reference-fetched"])
async def test_bare_mention_in_a_reply_asks_the_replied_message(fake: FakeDiscord, service: QAService,
                                                                resolved: bool) -> None:
    async with fake.running(QABot(service, settings())):
        theirs = await fake.message_create(LIGHTHOUSE_Q, channel_id=CHANNEL, author=OTHER_USER)
        assert theirs is not None
        since = len(fake.requests)
        mention = await fake.message_create(fake.bot_mention, channel_id=CHANNEL, author=USER,
                                            reply_to=int(theirs["id"]), resolve_reference=resolved)
        assert mention is not None and ("referenced_message" in mention) == resolved
        answer = await thread_answer(fake, mention)
        assert "1901" in embed_body(answer)
        thread = fake.channels[int(mention["id"])]
        assert thread["name"] == LIGHTHOUSE_Q
        fetched = [r for r in fake.requests[since:] if r.method == "GET"
                   and r.path == f"/channels/{CHANNEL}/messages/{theirs['id']}"]
        assert len(fetched) == (0 if resolved else 1)


async def test_bare_mention_alone_or_replying_to_unreadable_text(fake: FakeDiscord, service: QAService,
                                                                 no_content_intent: None) -> None:
    async with fake.running(QABot(service, settings())):
        alone = await fake.message_create(fake.bot_mention, channel_id=CHANNEL, author=USER)
        assert alone is not None
        req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages")
        assert req.json["content"] == EMPTY_QUESTION
        theirs = await fake.message_create(LIGHTHOUSE_Q, channel_id=CHANNEL, author=OTHER_USER)
        assert theirs is not None
        since = len(fake.requests)
        mention = await fake.message_create(fake.bot_mention, channel_id=CHANNEL, author=USER,
                                            reply_to=int(theirs["id"]))
        assert mention is not None and mention["referenced_message"]["content"] == ""  # as Discord sends it
        req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages", since=since)
        assert req.json["content"] == UNREADABLE and int(req.json["message_reference"]["message_id"]) == int(
            mention["id"])
