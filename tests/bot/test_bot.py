"""The Discord bot end to end: a real discord.py client against the loopback FakeDiscord, answering
from a QAService over a temporary index with the hashing encoder (no network, no model)."""

from __future__ import annotations

import asyncio
import gc

import discord
import pytest

from bot.app import NEEDS_MESSAGE_CONTENT, QABot, run_bot
from embeddings.errors import QabotError
from embeddings.models import guild_scope
from embeddings.settings import TOKEN_HOWTO, BotSettings
from tests.fakes.fake_discord import FakeDiscord
from tests.support import SEEDS, make_service

GUILD = 111111111111111111
CHANNEL = 333333333333333333
GUILD_B = 555555555555555555
CHANNEL_B = 666666666666666666
DM_CHANNEL = 777777777777777777
USER = 222222222222222222
OTHER_USER = 888888888888888888

QUESTION = "why did Egypt cut ties with Iran?"
SECRET = "zorblax"  # only in guild A's private article

EVERYONE_ARTICLE = """Harbour town festival draws record crowds

The harbour town festival organiser shouted @everyone and @here into the microphone before the \
fireworks, and pinged <@&444444444444444444> and <@222222222222222222> on the festival chat.
The organiser said the festival lanterns were made by local schoolchildren this year.
"""

SECRET_ARTICLE = f"""Quuxville {SECRET} festival schedule

The {SECRET} festival in Quuxville was held on Tuesday because the {SECRET} committee wanted good weather.
"""

LONG_WORD = "marmalade"
LONG_ARTICLE = (
    "Marmalade " * 60
    + "\n\n"
    + " ".join(f"The {LONG_WORD} factory number {i} shipped crates of {LONG_WORD} jars" for i in range(400))
    + ".\n"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("bot")
    svc = make_service(root / "idx")
    articles = root / "articles"
    articles.mkdir()
    (articles / "everyone.txt").write_text(EVERYONE_ARTICLE, encoding="utf-8")
    (articles / "long.txt").write_text(LONG_ARTICLE, encoding="utf-8")
    (root / "secret.txt").write_text(SECRET_ARTICLE, encoding="utf-8")
    assert svc.ingest([str(SEEDS), str(articles)], progress=False).ok
    assert svc.ingest([str(root / "secret.txt")], scope=guild_scope(GUILD), progress=False).ok
    yield svc
    svc.close()


def settings(**kw) -> BotSettings:
    base = {"token": "fake-token", "rate_limit": 0, "guild_ready_timeout": 0.05}
    return BotSettings(**{**base, **kw})


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch):
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        await fake.guild_create(GUILD, channels=[CHANNEL], members=[USER])
        await fake.guild_create(GUILD_B, channels=[CHANNEL_B], members=[USER])
        yield fake


async def ask_by_mention(fake: FakeDiscord, question: str, *, channel_id: int = CHANNEL, author: int = USER):
    """Mention the bot in a guild channel; return (incoming message, the answer payload in its thread)."""
    incoming = await fake.message_create(f"{fake.bot_mention} {question}", channel_id=channel_id, author=author)
    assert incoming is not None
    thread_id = int(incoming["id"])  # a thread started from a message has the message's id
    req = await fake.wait_for_request("POST", f"/channels/{thread_id}/messages")
    assert req.ok, req.response
    return incoming, req


def embed_text(payload: dict) -> str:
    (embed,) = payload["embeds"]
    parts = [embed.get("title", ""), embed.get("description", "")]
    parts += [f["name"] + " " + f["value"] for f in embed.get("fields", [])]
    return "\n".join(parts)


# ---- settings ----------------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    s = BotSettings.from_env({})
    assert (s.token, s.answer_in_thread, s.rate_limit, s.rate_window_seconds, s.follow_up_cost, s.max_concurrent,
            s.guild_ready_timeout) == (None, True, 5, 60.0, 0.5, 2, 2.0)
    s = BotSettings.from_env({"DISCORD_TOKEN": " abc ", "QABOT_ANSWER_IN_THREAD": "false",
                              "QABOT_RATE_LIMIT": "3", "QABOT_RATE_WINDOW_SECONDS": "30", "QABOT_FOLLOW_UP_COST": "0",
                              "QABOT_MAX_CONCURRENT": "4", "QABOT_GUILD_READY_TIMEOUT": "0.05"})
    assert (s.token, s.answer_in_thread, s.rate_limit, s.rate_window_seconds, s.follow_up_cost, s.max_concurrent,
            s.guild_ready_timeout) == ("abc", False, 3, 30.0, 0.0, 4, 0.05)
    assert s.require_token() == "abc"
    with pytest.raises(QabotError, match="DISCORD_TOKEN is not set"):
        BotSettings.from_env({}).require_token()
    with pytest.raises(QabotError, match="QABOT_MAX_CONCURRENT"):
        BotSettings.from_env({"QABOT_MAX_CONCURRENT": "lots"})
    assert BotSettings.from_env({}).answer_days == 180.0
    assert BotSettings.from_env({"QABOT_ANSWER_DAYS": "0"}).answer_days == 0.0  # kept for ever
    with pytest.raises(QabotError, match="QABOT_ANSWER_DAYS must be at least 0"):
        BotSettings.from_env({"QABOT_ANSWER_DAYS": "-1"})


async def test_run_bot_without_token_explains(service) -> None:
    with pytest.raises(QabotError) as err:
        await run_bot(service, settings(token=None))
    assert str(err.value) == TOKEN_HOWTO


# ---- answering -----------------------------------------------------------------------------------------


async def test_mention_answers_in_thread_without_pings(fake: FakeDiscord, service) -> None:
    bot = QABot(service, settings())
    assert bot.allowed_mentions is not None and bot.allowed_mentions.to_dict() == {"parse": []}
    async with fake.running(bot):
        incoming, req = await ask_by_mention(fake, QUESTION)
        thread_req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages/{incoming['id']}/threads")
        assert thread_req.ok and thread_req.json["name"] == QUESTION
        assert req.json["allowed_mentions"]["parse"] == []
        (embed,) = req.json["embeds"]
        assert embed["title"] == QUESTION and embed["description"]
        # typing was shown in the thread while answering
        assert any(r.method == "POST" and r.path == f"/channels/{incoming['id']}/typing" for r in fake.requests)
        assert not fake.sent_messages(CHANNEL)  # nothing posted in the channel itself
        assert not any(r.path.endswith("/commands") and r.method == "PUT" for r in fake.requests)  # no sync


async def test_reply_in_channel_when_threads_are_off(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings(answer_in_thread=False))):
        incoming = await fake.message_create(f"{fake.bot_mention} {QUESTION}", channel_id=CHANNEL)
        req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages")
        assert req.ok and int(req.json["message_reference"]["message_id"]) == int(incoming["id"])
        assert req.json["embeds"][0]["title"] == QUESTION
        assert not any("/threads" in r.path for r in fake.requests)


async def test_unaddressed_guild_message_is_ignored(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        await fake.message_create(QUESTION, channel_id=CHANNEL)
        incoming, _ = await ask_by_mention(fake, QUESTION)  # a later, addressed one is answered
        posts = [r for r in fake.requests if r.method == "POST" and "/messages" in r.path]
        assert [r.path for r in posts] == [
            f"/channels/{CHANNEL}/messages/{incoming['id']}/threads",
            f"/channels/{incoming['id']}/messages",
        ]


async def test_dm_is_answered(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        await fake.message_create(QUESTION, channel_id=DM_CHANNEL)  # unknown channel, no guild: a DM
        req = await fake.wait_for_request("POST", f"/channels/{DM_CHANNEL}/messages")
        assert req.ok and req.json["embeds"][0]["title"] == QUESTION
        assert req.json["allowed_mentions"]["parse"] == []


async def test_slash_ask_defers_then_follows_up(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        inter = await fake.slash_command("ask", {"question": QUESTION}, channel_id=CHANNEL)
        req = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
        assert req.ok
        assert fake.interaction_responses() == [{"type": 5}]
        (followup,) = fake.followups()
        assert followup["embeds"][0]["title"] == QUESTION
        assert followup["allowed_mentions"]["parse"] == []
        callback = next(r for r in fake.requests if "/callback" in r.path)
        assert fake.requests.index(callback) < fake.requests.index(req)


async def test_follow_up_in_answer_thread_needs_no_mention(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        incoming, _ = await ask_by_mention(fake, QUESTION)
        thread_id = int(incoming["id"])
        since = len(fake.requests)
        await fake.message_create("who mediated between Iran and the West?", channel_id=thread_id)
        req = await fake.wait_for_request("POST", f"/channels/{thread_id}/messages", since=since)
        assert req.ok and req.json["embeds"][0]["title"] == "who mediated between Iran and the West?"
        assert not any("/threads" in r.path for r in fake.requests[since:])  # no thread inside a thread


async def test_everyone_in_article_pings_nobody(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        _, req = await ask_by_mention(fake, "what did the harbour festival organiser shout?")
        assert req.json["allowed_mentions"]["parse"] == []
        assert "organiser" in embed_text(req.json).lower()
        stored = fake.messages[int(req.response["id"])]
        assert not stored["mention_everyone"] and not stored["mentions"] and not stored["mention_roles"]


async def test_guild_isolation(fake: FakeDiscord, service) -> None:
    question = f"when was the {SECRET} festival in Quuxville?"
    async with fake.running(QABot(service, settings())):
        _, in_a = await ask_by_mention(fake, question, channel_id=CHANNEL)
        _, in_b = await ask_by_mention(fake, question, channel_id=CHANNEL_B)
        await fake.message_create(question, channel_id=DM_CHANNEL)
        in_dm = await fake.wait_for_request("POST", f"/channels/{DM_CHANNEL}/messages")
    body_a = embed_text(in_a.json)
    assert "Tuesday" in body_a and "Quuxville" in body_a.split("\n", 1)[1]
    for other in (in_b, in_dm):
        body = embed_text(other.json).split("\n", 1)[1]  # without the title (the question)
        assert SECRET not in body and "Tuesday" not in body and "Quuxville" not in body


async def test_overlong_question_and_answer_stay_within_limits(fake: FakeDiscord, service) -> None:
    question = " ".join([f"which {LONG_WORD} factory shipped crates of {LONG_WORD} jars?"] * 16)[:990]
    assert 256 < len(question) < 1000
    async with fake.running(QABot(service, settings())):
        incoming, req = await ask_by_mention(fake, question)  # 50035 from the fake would fail req.ok
        thread_req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages/{incoming['id']}/threads")
        assert thread_req.ok and len(thread_req.json["name"]) <= 100
        (embed,) = req.json["embeds"]
        assert len(embed["title"]) <= 256 and LONG_WORD in embed["description"].lower()
        assert all(r.ok for r in fake.requests)


async def test_bad_question_becomes_user_message(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        inter = await fake.slash_command("ask", {"question": "x" * 1500}, channel_id=CHANNEL)
        req = await fake.wait_for_request("POST", f"/interactions/{inter['id']}/{inter['token']}/callback")
        # Answered at once and privately (type 4, ephemeral flag), never deferred into a public reply.
        assert req.ok and req.json["type"] == 4 and req.json["data"]["flags"] & 64
        assert "limit is 1,000" in req.json["data"]["content"]


# ---- start-up failures ------------------------------------------------------------------------------


async def test_message_content_intent_refused(monkeypatch: pytest.MonkeyPatch, service) -> None:
    """With QABOT_MESSAGE_CONTENT=on (the default, auto, starts without it: tests/bot/test_bot_settings.py)."""
    async with FakeDiscord(allow_message_content=False) as fake:
        fake.patch(monkeypatch)
        with pytest.raises(QabotError) as err:
            await asyncio.wait_for(run_bot(service, settings(message_content="on")), 10)
    assert str(err.value) == NEEDS_MESSAGE_CONTENT
    assert "Privileged Gateway Intents" in str(err.value) and "/ask" in str(err.value)
    assert isinstance(err.value.__cause__, discord.PrivilegedIntentsRequired)
    assert fake.close_codes == [4014]


async def test_rejected_token(monkeypatch: pytest.MonkeyPatch, service) -> None:
    async with FakeDiscord(token="right") as fake:
        fake.patch(monkeypatch)
        with pytest.raises(QabotError, match="Discord rejected the token"):
            await asyncio.wait_for(run_bot(service, settings(token="wrong")), 10)


# ---- qabot run ------------------------------------------------------------------------------------


def test_cli_run_without_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bot import cli

    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setattr(cli, "_service", lambda args, **kw: pytest.fail("no service without a token"))
    assert cli.main(["run"]) == 1
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err


def test_cli_run_passes_service_and_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], service
) -> None:
    import bot.app
    from bot import cli

    seen = []

    async def fake_run_bot(svc, bot_settings):
        # By now the model is loaded and the start-up heap frozen, so a full garbage collection during a
        # burst of questions does not walk it while the event loop waits.
        seen.append((svc, bot_settings, gc.get_freeze_count()))
        raise QabotError(NEEDS_MESSAGE_CONTENT)

    closed = []
    monkeypatch.setenv("DISCORD_TOKEN", "t0ken")
    monkeypatch.setenv("QABOT_RATE_LIMIT", "7")
    monkeypatch.setattr(bot.app, "run_bot", fake_run_bot)
    monkeypatch.setattr(cli, "_service", lambda args, **kw: service)
    monkeypatch.setattr(service, "close", lambda: closed.append(True))
    gc.unfreeze()
    try:
        assert cli.main(["run"]) == 1
    finally:
        frozen_after = gc.get_freeze_count()
        gc.unfreeze()
    assert "Privileged Gateway Intents" in capsys.readouterr().err
    ((svc, bs, frozen),) = seen
    assert frozen > 0 and frozen_after > 0
    assert svc is service and bs.token == "t0ken" and bs.rate_limit == 7
    assert closed == [True]


async def test_sources_button_shows_closest_passages(fake: FakeDiscord, service) -> None:
    async with fake.running(QABot(service, settings())):
        _, req = await ask_by_mention(fake, QUESTION)
        (row,) = req.json["components"]
        button, up, down = row["components"]  # Sources, then the feedback thumbs next to it
        assert button["label"] == "Sources"
        assert (up["emoji"]["name"], down["emoji"]["name"]) == ("\N{THUMBS UP SIGN}", "\N{THUMBS DOWN SIGN}")
        since = len(fake.requests)
        await fake.component_click(int(req.response["id"]), button["custom_id"])
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.ok and cb.json["type"] == 4 and cb.json["data"]["flags"] & 64
        (embed,) = cb.json["data"]["embeds"]
        assert embed["title"].startswith("Closest passages") and embed["fields"]
