"""qabot in a living server (issue 15): state that outlives the process, the rate limit, rendering and
errors, feedback, help, per-server settings. The real discord.py client against the loopback FakeDiscord,
with a hashing-encoder index; "a restart" closes the bot and builds a new QABot and QAService on the same
index directory, as `qabot run` does after a crash or deploy."""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import pytest

from tests.bot.processes import Process, recorded
from tests.fakes.fake_discord import FLAG_EPHEMERAL, FakeDiscord

GUILD = 111111111111111111
CHANNEL = 333333333333333333
USER = 222222222222222222  # the fake guild's owner
GUILD_B = 555555555555555555
CHANNEL_B = 666666666666666666
OTHER_USER = 888888888888888888
MANAGE_SERVER = 0x20

QUESTION = "why did Egypt cut ties with Iran?"
FOLLOW_UP = "who mediated between Iran and the West?"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch):
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=[CHANNEL], members=[USER, OTHER_USER])
        yield fake


async def ask_by_mention(fake: FakeDiscord, question: str, *, channel_id: int = CHANNEL, author: int = USER):
    """Mention the bot in a channel; return (incoming message, the answer's request in its new thread)."""
    since = len(fake.requests)
    incoming = await fake.message_create(f"{fake.bot_mention} {question}", channel_id=channel_id, author=author)
    assert incoming is not None
    req = await fake.wait_for_request("POST", f"/channels/{incoming['id']}/messages", since=since)
    assert req.ok, req.response
    return incoming, req


async def click(fake: FakeDiscord, message_id: int, custom_id: str, *, user: int = USER, since: int | None = None):
    since = len(fake.requests) if since is None else since
    await fake.component_click(message_id, custom_id, user=user)
    return await fake.wait_for_request("POST", "/callback", since=since)


def custom_ids(payload: dict) -> list[str]:
    return [c["custom_id"] for row in payload.get("components", []) for c in row["components"]]


# ---- 1. state that outlives the process ---------------------------------------------------------------


async def test_buttons_and_thread_work_after_a_restart(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        incoming, req = await ask_by_mention(fake, QUESTION)
        await recorded(proc, int(req.response["id"]))
    thread_id, answer_id = int(incoming["id"]), int(req.response["id"])
    sources, up, _down = custom_ids(req.json)

    bot = proc.bot()  # a new process: new client, new service, same index directory
    async with fake.running(bot):
        # Discord lists the active thread in GUILD_CREATE after the reconnect; the bot owns it.
        thread = bot.get_channel(thread_id)
        assert thread is not None and thread.owner_id == fake.bot_id
        cb = await click(fake, answer_id, sources)
        assert cb.ok and cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        (embed,) = cb.json["data"]["embeds"]
        assert embed["title"].startswith("Closest passages") and "Egypt" in str(embed["fields"])
        cb = await click(fake, answer_id, up)
        assert cb.ok and "Thanks" in str(cb.json["data"])
        assert proc.services[-1].export_feedback()[0]["question"] == QUESTION
        # An un-mentioned follow-up in the old thread is answered there, with the earlier turn.
        since = len(fake.requests)
        await fake.message_create(FOLLOW_UP, channel_id=thread_id)
        req = await fake.wait_for_request("POST", f"/channels/{thread_id}/messages", since=since)
        assert req.ok and req.json["embeds"][0]["title"] == FOLLOW_UP
        assert not any("/threads" in r.path for r in fake.requests[since:])
    (turn,) = proc.asked[-1]["history"]
    assert turn.question == QUESTION and turn.passage_ids and turn.doc_keys
    assert QUESTION not in [a["question"] for a in proc.asked[1:-1]]  # not asked again: from the store


async def test_unknown_old_thread_is_recognised_from_the_store(fake: FakeDiscord, proc: Process) -> None:
    """A thread the new process was never told about (archived, so not in GUILD_CREATE) is still known
    to be an answer thread: its answers are recorded in the store."""
    async with fake.running(proc.bot()):
        incoming, req = await ask_by_mention(fake, QUESTION)
        await recorded(proc, int(req.response["id"]))
    thread_id = int(incoming["id"])
    fake.channels[thread_id]["thread_metadata"]["archived"] = True
    bot = proc.bot()
    async with fake.running(bot):
        assert bot.get_channel(thread_id) is None
        since = len(fake.requests)
        await fake.message_create(FOLLOW_UP, channel_id=thread_id)
        req = await fake.wait_for_request("POST", f"/channels/{thread_id}/messages", since=since)
        assert req.ok and req.json["embeds"][0]["title"] == FOLLOW_UP
    assert [t.question for t in proc.asked[-1]["history"]] == [QUESTION]


async def test_reply_to_an_answer_is_a_follow_up_without_mention(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot(answer_in_thread=False)):
        await fake.message_create(f"{fake.bot_mention} {QUESTION}", channel_id=CHANNEL)
        first = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages")
        await recorded(proc, int(first.response["id"]))
        # A plain message (no mention, no reply) is still ignored.
        await fake.message_create("lunch anyone?", channel_id=CHANNEL)
    async with fake.running(proc.bot(answer_in_thread=False)):  # after a restart
        since = len(fake.requests)
        reply = await fake.message_create(FOLLOW_UP, channel_id=CHANNEL, reply_to=int(first.response["id"]),
                                          mention_author=False)
        assert reply is not None and not reply["mentions"]
        second = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages", since=since)
        assert second.ok and second.json["embeds"][0]["title"] == FOLLOW_UP
        await recorded(proc, int(second.response["id"]))
        # ... and a reply to that reply continues the same chain.
        since = len(fake.requests)
        await fake.message_create("and when?", channel_id=CHANNEL, reply_to=int(second.response["id"]),
                                  mention_author=False)
        await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages", since=since)
        # A reply to someone else's message is not for the bot.
        await fake.message_create("me too", channel_id=CHANNEL, reply_to=int(reply["id"]), mention_author=False)
    assert [a["question"] for a in proc.asked] == [QUESTION, FOLLOW_UP, "and when?"]
    assert [t.question for t in proc.asked[-1]["history"]] == [QUESTION, FOLLOW_UP]


async def test_button_on_an_answer_without_a_record_says_so(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        _, req = await ask_by_mention(fake, QUESTION)
        answer_id = int(req.response["id"])
        await recorded(proc, answer_id)
        # Forget the record: as for an answer sent before records were kept.
        with sqlite3.connect(proc.home / "qabot.sqlite3") as conn:
            conn.execute("DELETE FROM bot_answers")
        cb = await click(fake, answer_id, custom_ids(req.json)[0])
        assert cb.ok and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        assert "ask the question again" in cb.json["data"]["content"]


# ---- 2. a rate limit that stops abuse, not use ------------------------------------------------------------

NO_MANAGE = 8526149765299440 & ~MANAGE_SERVER  # @everyone's default permissions, without Manage Server


def test_token_bucket_allows_bursts_and_refills() -> None:
    from bot.ratelimit import TokenBucket

    b = TokenBucket(capacity=5, window=60)
    assert [b.take(1, now=0.0) for _ in range(5)] == [0.0] * 5  # a burst of five is fine
    assert b.take(1, now=0.0) == pytest.approx(12.0)  # the sixth waits for one token: 60 s / 5
    assert b.take(2, now=0.0) == 0.0  # another user has their own bucket
    assert b.take(1, now=6.0) == pytest.approx(6.0)  # refused questions cost nothing
    assert b.take(1, now=6.0, cost=0.5) == 0.0  # a follow-up costs half a token
    assert b.take(1, now=12.0) == pytest.approx(6.0)
    assert b.take(1, now=1000.0) == 0.0 and b._level(1, 1000.0, 5, 60) == 4  # refills to capacity, no more
    assert TokenBucket(0, 60).take(1, now=0.0) == 0.0  # 0: no limit


@pytest.fixture
async def strict_guild(fake: FakeDiscord):
    """A guild whose members lack Manage Server (the fake's default @everyone has it)."""
    await fake.guild_create(GUILD_B, channels=[CHANNEL_B], members=[OTHER_USER], everyone_permissions=NO_MANAGE)
    return GUILD_B


async def test_rate_limit_notice_is_private_and_says_when(fake: FakeDiscord, proc: Process, strict_guild) -> None:
    async with fake.running(proc.bot(rate_limit=2, notice_seconds=0.01)):
        for q in (QUESTION, FOLLOW_UP):
            await ask_by_mention(fake, q, channel_id=CHANNEL_B, author=OTHER_USER)
        since = len(fake.requests)
        third = await fake.message_create(f"{fake.bot_mention} and Oman?", channel_id=CHANNEL_B, author=OTHER_USER)
        req = await fake.wait_for_request("POST", f"/channels/{CHANNEL_B}/messages", since=since)
        assert req.ok and "embeds" not in req.json and "you can ask again <t:" in req.json["content"]
        assert int(req.json["message_reference"]["message_id"]) == int(third["id"])
        assert any(r.method == "PUT" and "/reactions/" in r.path and r.path.endswith("/@me")
                   for r in fake.requests[since:])  # ⏳ on the question
        await fake.wait_for_request("DELETE", f"/channels/{CHANNEL_B}/messages/{req.response['id']}", since=since)
        # /ask from the same user: an ephemeral notice, no defer, no answer.
        await fake.slash_command("ask", {"question": "and Oman?"}, channel_id=CHANNEL_B, user=OTHER_USER,
                                 permissions=NO_MANAGE)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        assert "you can ask again" in cb.json["data"]["content"]
        # A member with Manage Server is exempt: the same burst from USER in GUILD (where @everyone manages).
        for q in (QUESTION, FOLLOW_UP, "and Oman?"):
            await ask_by_mention(fake, q, channel_id=CHANNEL, author=USER)
    assert [a["question"] for a in proc.asked] == [QUESTION, FOLLOW_UP, QUESTION, FOLLOW_UP, "and Oman?"]


async def test_follow_ups_in_own_thread_cost_half(fake: FakeDiscord, proc: Process, strict_guild) -> None:
    async with fake.running(proc.bot(rate_limit=2)):
        incoming, req = await ask_by_mention(fake, QUESTION, channel_id=CHANNEL_B, author=OTHER_USER)
        await recorded(proc, int(req.response["id"]))
        thread_id = int(incoming["id"])
        for q in ("first follow-up?", "second follow-up?"):  # 1 + 0.5 + 0.5 = the bucket of 2
            since = len(fake.requests)
            await fake.message_create(q, channel_id=thread_id, author=OTHER_USER)
            answer = await fake.wait_for_request("POST", f"/channels/{thread_id}/messages", since=since)
            assert answer.ok and answer.json["embeds"][0]["title"] == q
            await recorded(proc, int(answer.response["id"]))
        since = len(fake.requests)
        await fake.message_create("third follow-up?", channel_id=thread_id, author=OTHER_USER)
        notice = await fake.wait_for_request("POST", f"/channels/{thread_id}/messages", since=since)
        assert "you can ask again" in notice.json["content"]


# ---- 3. rendering and errors ------------------------------------------------------------------------------


async def test_ask_private_answers_ephemerally_with_working_buttons(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot()):
        inter = await fake.slash_command("ask", {"question": QUESTION, "private": True}, channel_id=CHANNEL)
        req = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
        assert fake.interaction_responses() == [{"type": 5, "data": {"flags": FLAG_EPHEMERAL}}]
        assert req.ok and req.json["embeds"][0]["title"] == QUESTION
        msg = fake.messages[int(req.response["id"])]
        assert msg["flags"] & FLAG_EPHEMERAL
        await recorded(proc, int(msg["id"]))
        cb = await click(fake, int(msg["id"]), custom_ids(req.json)[0])
        assert cb.ok and cb.json["data"]["embeds"][0]["title"].startswith("Closest passages")
        # Without private: a public answer, as before.
        since = len(fake.requests)
        await fake.slash_command("ask", {"question": QUESTION}, channel_id=CHANNEL)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json == {"type": 5}


async def test_a_failing_command_ends_in_one_private_message(fake: FakeDiscord, proc: Process,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **kw: Any) -> dict:
        raise RuntimeError("render bug")

    async with fake.running(proc.bot()):
        monkeypatch.setattr(sys.modules["bot.cogs.ask"], "render_answer", broken)
        inter = await fake.slash_command("ask", {"question": QUESTION}, channel_id=CHANNEL)
        req = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
        # The public "thinking…" was deferred; it is deleted, and the failure goes to the asker only.
        assert any(r.method == "DELETE" and r.path.endswith("/messages/@original") or
                   r.method == "DELETE" and "/webhooks/" in r.path for r in fake.requests)
        assert req.ok and req.json["flags"] & FLAG_EPHEMERAL and "Something went wrong" in req.json["content"]
        msg = fake.messages[int(req.response["id"])]
        assert msg["flags"] & FLAG_EPHEMERAL and not msg["flags"] & 128  # not loading
        assert not [m for m in fake.messages.values() if m.get("flags", 0) & 128]  # nothing left "thinking"
        # A mention that fails gets one reply, not silence.
        since = len(fake.requests)
        await fake.message_create(f"{fake.bot_mention} {QUESTION}", channel_id=CHANNEL)
        reply = await fake.wait_for(lambda: next((r for r in fake.requests[since:] if r.method == "POST" and
                                                  r.path == f"/channels/{CHANNEL}/messages"), None))
        assert "Something went wrong" in reply.json["content"]


async def test_a_failing_button_tells_the_clicker(fake: FakeDiscord, proc: Process,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **kw: Any) -> dict:
        raise RuntimeError("render bug")

    async with fake.running(proc.bot()):
        _, req = await ask_by_mention(fake, QUESTION)
        await recorded(proc, int(req.response["id"]))
        monkeypatch.setattr(sys.modules["bot.cogs.ask"], "render_sources", broken)
        cb = await click(fake, int(req.response["id"]), custom_ids(req.json)[0], user=OTHER_USER)
        assert cb.ok and cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        assert "Something went wrong" in cb.json["data"]["content"]
