"""Issue 15, items 3 and 9: a server's own settings (/qabot channels, mode, threads, ratelimit, settings) and
running without the Message Content intent. The real discord.py client against the loopback FakeDiscord with
a hashing-encoder index; "a restart" builds a new QABot and QAService on the same index directory, so the
settings come back from the store (qabot.sqlite3), not from the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import pytest

from bot import respond
from bot.app import NEEDS_MESSAGE_CONTENT, WITHOUT_MESSAGE_CONTENT, run_bot
from bot.cogs.settings import INTENT_OFF, NEEDS_MANAGE_SERVER, SettingsCache
from bot.guild_settings import GuildSettings
from embeddings.errors import QabotError
from embeddings.service import QAService
from embeddings.settings import BotSettings
from tests.bot.processes import Process, recorded, settings, write_lock_held
from tests.fakes.fake_discord import (
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    FLAG_EPHEMERAL,
    INTENT_MESSAGE_CONTENT,
    FakeDiscord,
    command_option_errors,
)

GUILD = 111111111111111111
ASK = 333333333333333333  # the fake guild's channels
OFFTOPIC = 333333333333333334
GENERAL = 333333333333333335
FORUM = 333333333333333336
USER = 222222222222222222  # the guild's owner (all permissions, never rate limited)
MEMBER = 888888888888888888
OTHER_MEMBER = 999999999999999999
DM_CHANNEL = 777777777777777777
MANAGE_SERVER = 0x20
NO_MANAGE = DEFAULT_EVERYONE_PERMISSIONS & ~MANAGE_SERVER

QUESTION = "why did Egypt cut ties with Iran?"


# @everyone lacks Manage Server, so members' questions are rate limited; USER owns the guild.
GUILD_CHANNELS: list[int | dict[str, Any]] = [ASK, OFFTOPIC, GENERAL, {"id": FORUM, "type": 15, "name": "help-forum"}]


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch):
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=GUILD_CHANNELS, members=[USER, MEMBER], everyone_permissions=NO_MANAGE)
        yield fake


async def qabot(fake: FakeDiscord, sub: str, options: dict[str, Any] | None = None, *,
                channels: dict[str, int] | None = None, channel_id: int = ASK, user: int = USER,
                permissions: int = ALL_PERMISSIONS) -> str:
    """Run ``/qabot sub``; return the text of its reply, which must be private."""
    since = len(fake.requests)
    inter = await fake.slash_subcommand("qabot", sub, options, channels=channels, channel_id=channel_id,
                                        user=user, permissions=permissions)
    cb = await fake.wait_for_request("POST", f"/interactions/{inter['id']}/", since=since)
    assert cb.ok and cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL, cb.json
    return cb.json["data"]["content"]


async def answered_in_new_thread(fake: FakeDiscord, text: str, *, channel_id: int, author: int = MEMBER):
    """Post ``text``; return the answer's request in the thread started from it."""
    since = len(fake.requests)
    incoming = await fake.message_create(text, channel_id=channel_id, author=author)
    assert incoming is not None
    req = await fake.wait_for_request("POST", f"/channels/{incoming['id']}/messages", since=since)
    assert req.ok, req.response
    return req


async def settle(fake: FakeDiscord) -> None:
    """Let the bot handle what was sent so far: a mention in #general is answered after anything before it
    (an ignored message is decided from cached settings, long before an answer is sent)."""
    await answered_in_new_thread(fake, f"{fake.bot_mention} settle {fake.snowflake()}", channel_id=GENERAL,
                                 author=USER)


def questions(proc: Process) -> list[str]:
    return [q for q in proc.questions() if not q.startswith("settle ")]


# ---- the commands as Discord sees them ----------------------------------------------------------------------


async def test_qabot_commands_register_with_discord(fake: FakeDiscord, proc: Process) -> None:
    bot = proc.bot()
    async with fake.running(bot):
        synced = await bot.tree.sync(guild=None)  # the fake validates like Discord (400/50035 otherwise)
    (cmd,) = [c for c in fake.commands[None] if c["name"] == "qabot"]
    assert {c.name for c in synced} >= {"qabot", "ask"}
    assert {o["name"] for o in cmd["options"]} == {"channels", "mode", "threads", "ratelimit", "settings"}
    assert all(o["type"] == 1 for o in cmd["options"])  # subcommands
    assert int(cmd["default_member_permissions"]) == MANAGE_SERVER  # hidden from other members' menus
    assert cmd.get("contexts") == [0] or cmd.get("dm_permission") is False  # servers only
    channels = next(o for o in cmd["options"] if o["name"] == "channels")
    kinds = next(o for o in channels["options"] if o["name"] == "channel")["channel_types"]
    assert set(kinds) == {0, 5, 15, 16, 4}  # text, announcement, forum, media (posts too), category
    # The fake's option checks are real checks: what Discord refuses, they refuse.
    bad = {"name": "qabot", "description": "x", "options": [
        {"type": 1, "name": "Mode", "description": "", "options": [
            {"type": 3, "name": "a", "description": "a"}, {"type": 3, "name": "b", "description": "b", "required": True},
        ]}]}
    errors = command_option_errors(bad)["options"]["0"]
    assert set(errors) == {"name", "description", "options"} and "required" in errors["options"]["1"]


async def test_only_managers_change_settings(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        text = await qabot(fake, "channels", {"action": "deny"}, channels={"channel": ASK}, user=MEMBER,
                           permissions=NO_MANAGE)  # default_permissions only hides the command: checked here
        assert text == NEEDS_MANAGE_SERVER
        assert await qabot(fake, "settings", user=MEMBER, permissions=NO_MANAGE) == NEEDS_MANAGE_SERVER
    assert proc.services[-1].bot_state().guild_settings(GUILD) == {}
    async with fake.running(proc.bot()):
        await answered_in_new_thread(fake, f"{fake.bot_mention} {QUESTION}", channel_id=ASK)  # still answered


# ---- /qabot channels ---------------------------------------------------------------------------------------


async def test_deny_and_allow_lists_survive_a_restart(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        text = await qabot(fake, "channels", {"action": "deny"}, channels={"channel": OFFTOPIC})
        assert f"Denied <#{OFFTOPIC}>" in text and f"never in <#{OFFTOPIC}>" in text
        # Takes effect at once: a mention there is ignored, elsewhere answered.
        await fake.message_create(f"{fake.bot_mention} denied one?", channel_id=OFFTOPIC, author=MEMBER)
        await answered_in_new_thread(fake, f"{fake.bot_mention} {QUESTION}", channel_id=ASK)
        # The default channel is the one the command runs in.
        assert f"Denied <#{GENERAL}>" in await qabot(fake, "channels", {"action": "deny"}, channel_id=GENERAL)
        assert "Removed" in await qabot(fake, "channels", {"action": "remove"}, channel_id=GENERAL)
        thread = await fake.thread_create(OFFTOPIC, "a member's thread", owner=MEMBER)

    async with fake.running(proc.bot()):  # a new process: the lists come from the store
        await fake.message_create(f"{fake.bot_mention} still denied?", channel_id=OFFTOPIC, author=MEMBER)
        # A thread counts as its parent channel.
        await fake.message_create(f"{fake.bot_mention} thread under denied?", channel_id=int(thread["id"]),
                                  author=MEMBER)
        # /ask in a denied channel answers only the asker.
        since = len(fake.requests)
        inter = await fake.slash_command("ask", {"question": QUESTION}, channel_id=OFFTOPIC, user=MEMBER,
                                         permissions=NO_MANAGE)
        await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}", since=since)
        assert fake.interaction_responses()[-1] == {"type": 5, "data": {"flags": FLAG_EPHEMERAL}}
        # An allow list: only those channels. OFFTOPIC moves from the deny list to the allow list.
        text = await qabot(fake, "channels", {"action": "allow"}, channels={"channel": OFFTOPIC})
        assert f"only in <#{OFFTOPIC}>" in text and "never" not in text
        await answered_in_new_thread(fake, f"{fake.bot_mention} allowed now?", channel_id=OFFTOPIC)
        await fake.message_create(f"{fake.bot_mention} not on the allow list?", channel_id=ASK, author=MEMBER)
        await qabot(fake, "channels", {"action": "allow"}, channels={"channel": GENERAL})  # for settle()
        await settle(fake)
        assert "answers in every channel" in await qabot(fake, "channels", {"action": "clear"})
        await answered_in_new_thread(fake, f"{fake.bot_mention} everywhere again?", channel_id=ASK)
    assert questions(proc) == [QUESTION, QUESTION, "allowed now?", "everywhere again?"]


async def test_an_uncached_answer_thread_under_a_denied_channel(fake: FakeDiscord, proc: Process) -> None:
    """After a restart an archived answer thread is not in the cache: its parent is asked of Discord."""
    async with fake.running(proc.bot()):
        req = await answered_in_new_thread(fake, f"{fake.bot_mention} {QUESTION}", channel_id=OFFTOPIC)
        await recorded(proc, int(req.response["id"]))
        await qabot(fake, "channels", {"action": "deny"}, channels={"channel": OFFTOPIC})
    thread_id = int(req.path.split("/")[2])
    fake.channels[thread_id]["thread_metadata"]["archived"] = True
    bot = proc.bot()
    async with fake.running(bot):
        assert bot.get_channel(thread_id) is None
        since = len(fake.requests)
        await fake.message_create("a follow-up in a denied channel?", channel_id=thread_id, author=MEMBER)
        await fake.wait_for_request("GET", f"/channels/{thread_id}", since=since)
        await settle(fake)
        await qabot(fake, "channels", {"action": "clear"})
        await fake.message_create("and now?", channel_id=thread_id, author=MEMBER)
        await fake.wait_for_request("POST", f"/channels/{thread_id}/messages", since=since)
    assert questions(proc) == [QUESTION, "and now?"]


async def test_settings_cache_reads_once_per_burst_and_keeps_changes() -> None:
    class State:
        def __init__(self) -> None:
            self.rows: dict[int, dict[str, Any]] = {}
            self.reads = 0
            self.broken = False
            self.delays: list[float] = []

        def guild_settings(self, guild_id: int) -> dict[str, Any]:
            self.reads += 1
            row = dict(self.rows.get(guild_id, {}))  # what the store holds when the read starts
            time.sleep(self.delays.pop(0) if self.delays else 0.05)  # a slow store: the reads overlap
            if self.broken:
                raise OSError("store down")
            return row

        def update_guild_settings(self, guild_id: int, change) -> dict[str, Any]:
            values = change(self.guild_settings(guild_id))  # the real stores hold a write lock across these
            self.rows[guild_id] = values
            return values

    state, now = State(), [0.0]
    service = type("Service", (), {"bot_state": lambda self: state})()
    cache = SettingsCache(service, ttl=10, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await asyncio.gather(*(cache.get(1) for _ in range(20))) == [GuildSettings()] * 20
    assert state.reads == 1  # 20 messages at once: one read
    await cache.update(1, lambda s: s.with_thread(False))
    assert (await cache.get(1)).thread is False and state.reads == 2  # at once, from the cache
    state.rows[1] = {"thread": True}  # another process changes it: seen after the ttl
    assert (await cache.get(1)).thread is False
    now[0] = 11
    assert (await cache.get(1)).thread is True
    # A read under way while /qabot changes the settings does not bring back the old ones.
    now[0], state.delays = 30, [0.3]  # this read ends after the change
    pending = asyncio.create_task(cache.get(1))
    await asyncio.sleep(0.01)
    await cache.update(1, lambda s: s.with_thread(None))
    assert (await pending).thread is None and (await cache.get(1)).thread is None
    # The store fails: the last known settings, no error.
    now[0], state.broken = 60, True
    assert (await cache.get(1)).thread is None and await cache.get(2) == GuildSettings()


async def test_a_category_on_the_deny_list_covers_its_channels(fake: FakeDiscord, proc: Process) -> None:
    category, inside = 444444444444444441, 444444444444444442
    await fake.guild_create(GUILD, channels=[*GUILD_CHANNELS, {"id": category, "type": 4, "name": "quiet"},
                                             {"id": inside, "parent_id": str(category)}],
                            members=[USER, MEMBER], everyone_permissions=NO_MANAGE)
    async with fake.running(proc.bot()):
        await qabot(fake, "channels", {"action": "deny"}, channels={"channel": category})
        await fake.message_create(f"{fake.bot_mention} in the quiet category?", channel_id=inside, author=MEMBER)
        await settle(fake)
    assert questions(proc) == []


# ---- /qabot mode and /qabot threads ------------------------------------------------------------------------


async def test_every_message_mode_and_threads_off(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        text = await qabot(fake, "mode", {"mode": "every"}, channels={"channel": ASK})
        assert text == f"<#{ASK}>: every message."  # the intent is on: no warning
        req = await answered_in_new_thread(fake, QUESTION, channel_id=ASK)  # no mention needed
        assert req.json["embeds"][0]["title"] == QUESTION
        await fake.message_create("lunch anyone?", channel_id=GENERAL, author=MEMBER)  # other channels: mentions
        await settle(fake)
    async with fake.running(proc.bot()):  # after a restart
        assert "Threads: off" in await qabot(fake, "threads", {"answer": "off"})
        since = len(fake.requests)
        incoming = await fake.message_create("who mediated between Iran and the West?", channel_id=ASK,
                                             author=MEMBER)
        reply = await fake.wait_for_request("POST", f"/channels/{ASK}/messages", since=since)
        assert int(reply.json["message_reference"]["message_id"]) == int(incoming["id"])
        assert not any("/threads" in r.path for r in fake.requests[since:])  # a reply, no thread
        # A message in a member's own thread under the channel is theirs: not answered without a mention.
        thread = await fake.thread_create(ASK, "chat", owner=MEMBER)
        await fake.message_create("just chatting", channel_id=int(thread["id"]), author=MEMBER)
        assert "mention only" in await qabot(fake, "mode", {"mode": "mention"}, channels={"channel": ASK})
        await fake.message_create("not a question any more", channel_id=ASK, author=MEMBER)
        assert "(the bot's default)" in await qabot(fake, "threads", {"answer": "default"})
        await settle(fake)
    assert questions(proc) == [QUESTION, "who mediated between Iran and the West?"]


async def test_forum_posts_are_answered_in_the_post(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        await fake.forum_post(FORUM, "Before the mode", QUESTION, author=MEMBER)  # mention mode: ignored
        text = await qabot(fake, "mode", {"mode": "forum"}, channels={"channel": FORUM})
        assert text == f"<#{FORUM}>: new forum posts."
        # Each mode fits one kind of channel.
        assert "not a forum" in await qabot(fake, "mode", {"mode": "forum"}, channels={"channel": ASK})
        assert "is a forum" in await qabot(fake, "mode", {"mode": "every"}, channels={"channel": FORUM})
    async with fake.running(proc.bot()):
        since = len(fake.requests)
        thread, starter = await fake.forum_post(FORUM, "Egypt and Iran", QUESTION, author=MEMBER)
        assert starter is not None and starter["id"] == thread["id"]
        answer = await fake.wait_for_request("POST", f"/channels/{thread['id']}/messages", since=since)
        assert answer.ok and answer.json["embeds"][0]["title"] == QUESTION
        assert int(answer.json["message_reference"]["message_id"]) == int(thread["id"])  # answers the post
        assert not any("/threads" in r.path for r in fake.requests[since:])
        # Later messages in the post are the members' conversation: a mention (or a reply) asks the bot.
        await fake.message_create("thanks, that helps", channel_id=int(thread["id"]), author=USER)
        await settle(fake)
    assert questions(proc) == [QUESTION]


# ---- /qabot ratelimit and /qabot settings ------------------------------------------------------------------


async def test_server_rate_limit_replaces_the_default(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):  # the operator's default here: no limit
        assert "no limit (the bot's default)" in await qabot(fake, "ratelimit")
        text = await qabot(fake, "ratelimit", {"questions": 1, "seconds": 600})
        assert "1 question per 600 s per member" in text
        await answered_in_new_thread(fake, f"{fake.bot_mention} {QUESTION}", channel_id=ASK)
        since = len(fake.requests)
        await fake.message_create(f"{fake.bot_mention} a second one?", channel_id=ASK, author=MEMBER)
        notice = await fake.wait_for_request("POST", f"/channels/{ASK}/messages", since=since)
        assert "you can ask again" in notice.json["content"]
    async with fake.running(proc.bot()):  # the limit is the server's, from the store
        since = len(fake.requests)
        await fake.slash_command("ask", {"question": "and /ask?"}, channel_id=ASK, user=OTHER_MEMBER,
                                 permissions=NO_MANAGE)
        await fake.slash_command("ask", {"question": "and again?"}, channel_id=ASK, user=OTHER_MEMBER,
                                 permissions=NO_MANAGE)
        notice = await fake.wait_for(lambda: next((r for r in fake.requests[since:] if r.path.endswith("/callback")
                                                   and "ask again" in str(r.json)), None))
        assert notice.json["data"]["flags"] & FLAG_EPHEMERAL
        assert "bot's default" in await qabot(fake, "ratelimit", {"reset": True})
        await answered_in_new_thread(fake, f"{fake.bot_mention} unlimited again?", channel_id=ASK)
        # A limit without seconds: the default window.
        assert "3 questions per 60 s" in await qabot(fake, "ratelimit", {"questions": 3})
        assert "not both" in await qabot(fake, "ratelimit", {"questions": 3, "reset": True})
    assert questions(proc)[0] == QUESTION and "a second one?" not in questions(proc)
    assert questions(proc).count("and /ask?") + questions(proc).count("and again?") == 1
    assert questions(proc)[-1] == "unlimited again?"


async def test_a_change_waiting_for_another_write_is_still_answered(fake: FakeDiscord, proc: Process,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the store's write lock past Discord's window: the change is acknowledged in
    time (privately), saved once the lock is free, and its reply follows; a quick change is a direct reply."""
    monkeypatch.setattr(respond, "DEFER_AFTER", 0.2)
    fake.interaction_deadline = 1.0  # Discord's 3 s, scaled down with DEFER_AFTER
    async with fake.running(proc.bot()):
        since = len(fake.requests)
        with write_lock_held(proc.home, seconds=1.5):
            inter = await fake.slash_subcommand("qabot", "threads", {"answer": "on"}, channel_id=ASK, user=USER,
                                                permissions=ALL_PERMISSIONS)
            cb = await fake.wait_for_request("POST", f"/interactions/{inter['id']}/", since=since)
            assert cb.ok and cb.json["type"] == 5 and cb.json["data"]["flags"] & FLAG_EPHEMERAL, cb.response
            done = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}",
                                               since=since)
        assert done.ok and done.json["content"].startswith("Threads: on"), done.json
        shown = fake.messages[fake.interactions[int(inter["id"])].original_id]  # the "thinking" message, filled
        assert shown["content"] == done.json["content"] and shown["flags"] == FLAG_EPHEMERAL
        assert proc.services[-1].bot_state().guild_settings(GUILD)["thread"] is True
        assert (await qabot(fake, "threads", {"answer": "off"})).startswith("Threads: off")  # no lock: type 4


async def test_settings_shows_everything(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot(answer_in_thread=False)):
        text = await qabot(fake, "settings")
        assert "every channel it can read" in text and "mention only, everywhere" in text
        assert "Threads:** off, answers are replies in the channel (the bot's default)" in text
        assert "Message Content intent:** on" in text
        await qabot(fake, "channels", {"action": "deny"}, channels={"channel": OFFTOPIC})
        await qabot(fake, "mode", {"mode": "every"}, channels={"channel": ASK})
        await qabot(fake, "mode", {"mode": "forum"}, channels={"channel": FORUM})
        await qabot(fake, "threads", {"answer": "on"})
        await qabot(fake, "ratelimit", {"questions": 4, "seconds": 120})
    async with fake.running(proc.bot(answer_in_thread=False)):
        text = await qabot(fake, "settings")
    assert f"never in <#{OFFTOPIC}>" in text
    assert f"every message in <#{ASK}>" in text and f"new forum posts in <#{FORUM}>" in text
    assert "Threads:** on, a new thread per question." in text
    assert "4 questions per 120 s per member; members with Manage Server are exempt" in text
    stored = proc.services[-1].bot_state().guild_settings(GUILD)
    assert stored["deny"] == [str(OFFTOPIC)] and stored["thread"] is True


# ---- item 9: without the Message Content intent ------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, service: QAService, bot_settings: BotSettings):
    """``qabot run`` (run_bot) in a task, until the fake's READY; cancelled (the bot closes) on exit."""
    task = asyncio.create_task(run_bot(service, bot_settings))
    waiter = asyncio.ensure_future(fake.ready.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
    assert waiter in done, "the bot did not connect"
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_starts_and_answers_without_the_intent(monkeypatch: pytest.MonkeyPatch, proc: Process,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with FakeDiscord(allow_message_content=False) as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=GUILD_CHANNELS, members=[USER, MEMBER], everyone_permissions=NO_MANAGE)
        async with running_bot(fake, proc.service(), settings()):
            # Refused with 4014 once, then identified again without the intent.
            assert fake.close_codes == [4014]
            assert [bool(p["intents"] & INTENT_MESSAGE_CONTENT) for p in fake.identify_payloads] == [True, False]
            # A mention carries its content: answered in a new thread.
            incoming = await fake.message_create(f"{fake.bot_mention} {QUESTION}", channel_id=ASK, author=MEMBER)
            answer = await fake.wait_for_request("POST", f"/channels/{incoming['id']}/messages")
            assert answer.json["embeds"][0]["title"] == QUESTION
            # An un-mentioned follow-up in the answer thread arrives blank: ignored, not "ask me a question".
            since = len(fake.requests)
            await fake.message_create("who mediated?", channel_id=int(incoming["id"]), author=MEMBER)
            # A DM is read.
            await fake.message_create("who mediated between Iran and the West?", channel_id=DM_CHANNEL,
                                      author=MEMBER)
            dm = await fake.wait_for_request("POST", f"/channels/{DM_CHANNEL}/messages", since=since)
            assert dm.json["embeds"][0]["title"] == "who mediated between Iran and the West?"
            assert not [r for r in fake.requests[since:] if r.path == f"/channels/{incoming['id']}/messages"]
            # /ask works, and the settings say what cannot work.
            inter = await fake.slash_command("ask", {"question": QUESTION}, channel_id=ASK, user=MEMBER,
                                             permissions=NO_MANAGE)
            await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
            text = await qabot(fake, "mode", {"mode": "every"}, channels={"channel": ASK})
            assert text.endswith(INTENT_OFF)
            assert "Message Content intent:** off" in (text := await qabot(fake, "settings")) and INTENT_OFF in text
            # A new forum post's text arrives blank too: its title is the question.
            await qabot(fake, "mode", {"mode": "forum"}, channels={"channel": FORUM})
            since = len(fake.requests)
            thread, starter = await fake.forum_post(FORUM, "Why did Egypt cut ties with Iran?", QUESTION)
            assert starter is not None and starter["content"] == ""
            post_answer = await fake.wait_for_request("POST", f"/channels/{thread['id']}/messages", since=since)
            assert post_answer.json["embeds"][0]["title"] == "Why did Egypt cut ties with Iran?"
    warnings = [r for r in caplog.records if r.getMessage() == WITHOUT_MESSAGE_CONTENT]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # said once, at start-up
    assert "who mediated?" not in proc.questions()


async def test_message_content_on_refuses_to_start_and_off_never_asks(monkeypatch: pytest.MonkeyPatch,
                                                                      proc: Process) -> None:
    async with FakeDiscord(allow_message_content=False) as fake:
        fake.patch(monkeypatch)
        with pytest.raises(QabotError) as err:
            await asyncio.wait_for(run_bot(proc.service(), settings(message_content="on")), 10)
        assert str(err.value) == NEEDS_MESSAGE_CONTENT and fake.close_codes == [4014]
        async with running_bot(fake, proc.service(), settings(message_content="off")):
            assert fake.close_codes == [4014]  # no second refusal: the intent was not asked for
            assert not fake.identify_payloads[-1]["intents"] & INTENT_MESSAGE_CONTENT


def test_message_content_setting() -> None:
    assert BotSettings.from_env({}).message_content == "auto"
    assert BotSettings.from_env({"QABOT_MESSAGE_CONTENT": "OFF"}).message_content == "off"
    assert BotSettings.from_env({"QABOT_MESSAGE_CONTENT": "true"}).message_content == "on"
    with pytest.raises(QabotError, match="auto, on or off"):
        BotSettings.from_env({"QABOT_MESSAGE_CONTENT": "sometimes"})


async def test_the_ask_menu_follows_the_servers_lists_and_rate_limit(fake: FakeDiscord, proc: Process) -> None:
    """Apps → Ask qabot is /ask by another route: private in a denied channel, and the server's rate limit."""
    from bot.cogs.ask import ASK_MENU

    async with fake.running(proc.bot()):
        await qabot(fake, "channels", {"action": "deny"}, channels={"channel": OFFTOPIC})
        await qabot(fake, "ratelimit", {"questions": 1, "seconds": 600})
        theirs = await fake.message_create(QUESTION, channel_id=OFFTOPIC, author=OTHER_MEMBER)
        assert theirs is not None
        since = len(fake.requests)
        inter = await fake.message_command(ASK_MENU, int(theirs["id"]), user=MEMBER, permissions=NO_MANAGE)
        followup = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}",
                                               since=since)
        assert fake.interaction_responses()[-1] == {"type": 5, "data": {"flags": FLAG_EPHEMERAL}}
        assert followup.json["flags"] & FLAG_EPHEMERAL  # only the asker sees it
        since = len(fake.requests)
        await fake.message_command(ASK_MENU, int(theirs["id"]), user=MEMBER, permissions=NO_MANAGE)
        notice = await fake.wait_for(lambda: next((r for r in fake.requests[since:] if r.path.endswith("/callback")
                                                   and "ask again" in str(r.json)), None))
        assert notice.json["data"]["flags"] & FLAG_EPHEMERAL
    assert questions(proc).count(QUESTION) == 1
