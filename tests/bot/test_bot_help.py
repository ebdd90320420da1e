"""Issue 15, items 4 and 7: help and onboarding (/help, `@qabot help`, the empty-mention hint, the setup
message on joining a server, /articles, "not found" naming the closest articles) and feedback (the voter's
choice shown back to them, 👎's form stored with the vote and exported). The real discord.py client against
the loopback FakeDiscord over a hashing-encoder index; "a restart" builds a new QABot and QAService on the
same index directory, as `qabot run` does after a crash or deploy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot import respond
from bot.cogs.feedback import FORGOTTEN
from bot.render import trim
from embeddings.models import guild_scope
from tests.bot.processes import Process, recorded, seed_service, write_lock_held
from tests.fakes.fake_discord import FLAG_EPHEMERAL, FakeDiscord
from tests.support import make_service

GUILD = 111111111111111111
CHANNEL = 333333333333333333
USER = 222222222222222222
GUILD_B = 555555555555555555
CHANNEL_B = 666666666666666666
OTHER_USER = 888888888888888888
DM_CHANNEL = 777777777777777777

QUESTION = "why did Egypt cut ties with Iran?"
OWN_TITLES = [f"Lighthouse Report Number {i}" for i in range(12)]  # guild A's own articles, oldest first

# Permission bits (Discord's values).
VIEW_CHANNEL, SEND, EMBED_LINKS, ADD_REACTIONS = 1 << 10, 1 << 11, 1 << 14, 1 << 6
READ_HISTORY, CREATE_PUBLIC_THREADS, SEND_IN_THREADS = 1 << 16, 1 << 35, 1 << 38


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("help")
    home = root / "idx"
    svc = seed_service(home)
    for i, title in enumerate(OWN_TITLES):
        path = root / f"own{i:02d}.txt"
        path.write_text(f"{title}\n\nThe lighthouse keeper number {i} painted the tower in year {1900 + i}.\n",
                        encoding="utf-8")
        assert svc.ingest([str(path)], scope=guild_scope(GUILD), progress=False).ok
    svc.close()
    return home


def seed_title(proc: Process) -> str:
    svc = make_service(proc.home)
    try:
        (doc,) = svc.documents("")
        return doc.title
    finally:
        svc.close()


async def callback(fake: FakeDiscord, inter: dict[str, Any]) -> dict[str, Any]:
    req = await fake.wait_for_request("POST", f"/interactions/{inter['id']}/")
    assert req.ok, req.response
    return req.json


def buttons(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in payload.get("components", []) for c in row["components"]]


async def ask_by_mention(fake: FakeDiscord, question: str, *, channel_id: int = CHANNEL):
    incoming = await fake.message_create(f"{fake.bot_mention} {question}", channel_id=channel_id, author=USER)
    assert incoming is not None
    req = await fake.wait_for_request("POST", f"/channels/{incoming['id']}/messages")
    assert req.ok, req.response
    return req


# ---- help ---------------------------------------------------------------------------------------------


async def test_help_is_private_and_its_examples_are_this_servers_titles(fake: FakeDiscord, proc: Process) -> None:
    seed = seed_title(proc)
    async with fake.running(proc.bot()):
        inter = await fake.slash_command("help", channel_id=CHANNEL)
        cb = await callback(fake, inter)
        assert cb["type"] == 4 and cb["data"]["flags"] & FLAG_EPHEMERAL
        (embed,) = cb["data"]["embeds"]
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert {"Ask", "Follow-ups", "Buttons under an answer", "What I know", "Try asking",
                "For members with Manage Server"} <= set(fields)
        assert "Sources" in fields["Buttons under an answer"] and "/ingest" in fields["For members with Manage Server"]
        assert "/qabot settings" in fields["For members with Manage Server"]
        assert "13 articles" in fields["What I know"] and "12 added to this server" in fields["What I know"]
        # Examples: this server's newest articles first; never the seed question hard-coded.
        assert fields["Try asking"].splitlines() == [f"• @qabot what is “{t}” about?" for t in OWN_TITLES[:-4:-1]]
        assert "Egypt" not in json.dumps(embed)

        # `@qabot help` shows the same help (publicly, in reply) instead of answering "help".
        since = len(fake.requests)
        incoming = await fake.message_create(f"{fake.bot_mention} Help!", channel_id=CHANNEL, author=USER)
        reply = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages", since=since)
        assert int(reply.json["message_reference"]["message_id"]) == int(incoming["id"])
        assert reply.json["embeds"] == cb["data"]["embeds"]
        assert not any("/threads" in r.path for r in fake.requests[since:])

        # A bare mention: a hint with one of this server's titles; in a server without its own, a shared one.
        for channel, title in ((CHANNEL, OWN_TITLES[-1]), (CHANNEL_B, seed)):
            since = len(fake.requests)
            await fake.message_create(fake.bot_mention, channel_id=channel, author=USER)
            hint = await fake.wait_for_request("POST", f"/channels/{channel}/messages", since=since)
            assert f"what is “{trim(title, 70)}” about?" in hint.json["content"] and "@qabot help" in hint.json["content"]
        # In a DM the help has no admin section and counts the shared articles only.
        inter = await fake.slash_command("help", channel_id=DM_CHANNEL)
        (dm,) = (await callback(fake, inter))["data"]["embeds"]
        names = [f["name"] for f in dm["fields"]]
        assert "For members with Manage Server" not in names
        assert "1 articles" in next(f["value"] for f in dm["fields"] if f["name"] == "What I know")
    assert proc.questions() == []  # nothing was answered as a question


async def test_not_found_names_the_closest_articles(fake: FakeDiscord, proc: Process) -> None:
    async with fake.running(proc.bot(answer_in_thread=False)):
        inter = await fake.slash_command("ask", {"question": "what does the zorblax committee want?"},
                                         channel_id=CHANNEL)
        req = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
    (embed,) = req.json["embeds"]
    assert embed["description"] == "I couldn't find that in the articles I have."
    (field,) = embed["fields"]
    assert field["name"] == "Closest articles"
    named = [line.removeprefix("• ") for line in field["value"].splitlines()]
    assert 1 <= len(named) <= 3 and set(named) <= set(OWN_TITLES) | {seed_title(proc)}
    assert "naming the person, place or event" in embed["footer"]["text"]


async def test_a_server_with_no_article_is_told_how_to_add_one(fake: FakeDiscord, tmp_path: Path) -> None:
    empty = Process(tmp_path / "empty")
    try:
        async with fake.running(empty.bot(answer_in_thread=False)):
            inter = await fake.slash_command("ask", {"question": "why did Egypt cut ties with Iran?"},
                                             channel_id=CHANNEL)
            req = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}")
    finally:
        empty.close()
    (embed,) = req.json["embeds"]
    assert embed["description"].startswith("I couldn't find that in the articles I have.")
    assert "no articles here yet" in embed["description"] and "`/ingest`" in embed["description"]
    assert "fields" not in embed
    assert empty.questions() == ["why did Egypt cut ties with Iran?"]


# ---- /articles -----------------------------------------------------------------------------------------


async def test_articles_lists_this_server_and_pages_after_a_restart(fake: FakeDiscord, proc: Process) -> None:
    seed = seed_title(proc)
    async with fake.running(proc.bot()):
        inter = await fake.slash_command("articles", channel_id=CHANNEL)
        cb = await callback(fake, inter)
    assert cb["type"] == 4 and cb["data"]["flags"] & FLAG_EPHEMERAL
    (embed,) = cb["data"]["embeds"]
    lines = embed["description"].splitlines()
    assert [ln.split(". ", 1)[0] for ln in lines] == [str(i) for i in range(1, 11)]
    assert "**Lighthouse Report Number 11** · own11.txt · added 20" in lines[0] and lines[0].endswith("this server")
    assert str(proc.home.parent) not in embed["description"]  # a file's name, never the host's directories
    assert embed["footer"]["text"] == "Page 1/2 · 13 articles (12 of this server, 1 shared)"
    prev, nxt = buttons(cb["data"])
    assert (prev["label"], prev.get("disabled"), nxt["label"], nxt.get("disabled")) == (
        "Previous", True, "Next", False)
    page_message = fake.interactions[int(inter["id"])].original_id
    assert page_message is not None

    async with fake.running(proc.bot()):  # a new process: the ephemeral message's Next still works
        since = len(fake.requests)
        await fake.component_click(page_message, nxt["custom_id"], user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.ok and cb.json["type"] == 7  # the same private message, edited to page 2
        (embed,) = cb.json["data"]["embeds"]
        lines = embed["description"].splitlines()
        assert len(lines) == 3 and lines[-1].startswith(f"13. **{seed}**") and "this server" not in lines[-1]
        assert embed["footer"]["text"].startswith("Page 2/2")
        prev, nxt = buttons(cb.json["data"])
        assert prev.get("disabled") is not True and nxt.get("disabled") is True
        assert fake.messages[page_message]["embeds"][0]["footer"]["text"].startswith("Page 2/2")
        # A server without articles of its own sees the shared ones, on one page without buttons.
        inter = await fake.slash_command("articles", channel_id=CHANNEL_B)
        cb2 = await callback(fake, inter)
        (embed,) = cb2["data"]["embeds"]
        assert embed["description"].startswith(f"1. **{seed}**") and not cb2["data"].get("components")


# ---- joining a server ------------------------------------------------------------------------------------


async def test_setup_message_on_join_names_missing_permissions(fake: FakeDiscord, proc: Process) -> None:
    guild, system, other = 900000000000000001, 900000000000000011, 900000000000000012
    bot_role = guild + 1
    async with fake.running(proc.bot()):
        # Can't write in the system channel (an overwrite denies it): the first writable text channel.
        await fake.guild_join(
            guild, system_channel_id=system,
            channels=[{"id": system, "permission_overwrites": [
                {"id": str(bot_role), "type": 0, "allow": "0", "deny": str(SEND)}]}, other],
            everyone_permissions=VIEW_CHANNEL | READ_HISTORY,
            bot_permissions=SEND | CREATE_PUBLIC_THREADS | SEND_IN_THREADS)
        msg = await fake.wait_for_request("POST", f"/channels/{other}/messages")
        assert msg.ok
        text = msg.json["content"]
        assert "**Embed Links**, **Add Reactions**" in text
        assert "Send Messages" not in text and "Read Message History" not in text
        assert "/ingest url:" in text and "/help" in text
        assert not any(r.path == f"/channels/{system}/messages" for r in fake.requests)

        # Everything granted, system channel writable: said there, with nothing missing.
        guild2, system2 = 900000000000000101, 900000000000000111
        since = len(fake.requests)
        await fake.guild_join(guild2, system_channel_id=system2, channels=[900000000000000112, system2])
        msg = await fake.wait_for_request("POST", f"/channels/{system2}/messages", since=since)
        assert "I have all the permissions I need" in msg.json["content"]
        assert "/qabot channels" in msg.json["content"]

        # Nowhere to write: nothing sent, and the bot carries on.
        since = len(fake.requests)
        await fake.guild_join(900000000000000201, channels=[900000000000000211], everyone_permissions=VIEW_CHANNEL,
                              bot_permissions=0)
        await asyncio.sleep(0.2)
        assert not [r for r in fake.requests[since:] if r.method == "POST"]
        inter = await fake.slash_command("help", channel_id=CHANNEL)
        assert (await callback(fake, inter))["type"] == 4
        # A server becoming available again after a restart is not a join: no second hello.
    since = len(fake.requests)
    async with fake.running(proc.bot()):
        await asyncio.sleep(0.2)
    assert not [r for r in fake.requests[since:] if r.method == "POST" and "/channels/" in r.path]


# ---- feedback ------------------------------------------------------------------------------------------


def chosen(payload: dict[str, Any]) -> dict[str, Any]:
    """The voter's confirmation view: which thumb is shown as theirs, and what the other buttons are."""
    up, down, *rest = buttons(payload)
    return {"up": (up["label"], up.get("disabled", False), up["style"]),
            "down": (down["label"], down.get("disabled", False), down["style"]),
            "rest": [b["label"] for b in rest]}


async def test_thumbs_down_form_survives_restarts_and_is_stored_and_exported(
        fake: FakeDiscord, proc: Process, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    async with fake.running(proc.bot()):
        answer = await ask_by_mention(fake, QUESTION)
        answer_id = int(answer.response["id"])
        await recorded(proc, answer_id)
    public_buttons = fake.messages[answer_id]["components"]

    async with fake.running(proc.bot()):  # restart: 👎 on the old answer opens the form
        since = len(fake.requests)
        await fake.component_click(answer_id, "qabot:vote:down", user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.ok and cb.json["type"] == 9
        form = cb.json["data"]
        assert form["custom_id"] == f"qabot:fixform:{answer_id}" and form["title"] == "What was wrong with this answer?"
        labels = [c["label"] for row in form["components"] for c in row["components"]]
        assert labels == ["What was wrong?", "What is the right answer?"]
        assert all(not c.get("required", True) for row in form["components"] for c in row["components"])
    (vote,) = proc.services[-1].export_feedback(include_unlabelled=True)
    assert vote["votes"] == {"up": 0, "down": 1} and vote["corrections"] == []  # stored before the form

    async with fake.running(proc.bot()):  # restart while the form is open: submitting still works
        since = len(fake.requests)
        await fake.modal_submit({"wrong": "It quotes the wrong year", "right": "After the 1979 revolution"},
                                user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.ok and cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        assert "kept with it" in cb.json["data"]["content"]
        assert chosen(cb.json["data"]) == {"up": ("Change my vote", False, 2), "down": ("Your vote", True, 4),
                                           "rest": ["Say what was wrong"]}
        confirmation = fake.interactions[max(fake.interactions)].original_id
        assert confirmation is not None and fake.messages[confirmation]["flags"] & FLAG_EPHEMERAL

        # Another reader's 👍 on the same public answer: their own private confirmation.
        since = len(fake.requests)
        await fake.component_click(answer_id, "qabot:vote:up", user=OTHER_USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        assert chosen(cb.json["data"])["up"] == ("Your vote", True, 3)
    # The public answer's buttons never changed for anyone.
    assert fake.messages[answer_id]["components"] == public_buttons
    assert not any(r.method == "PATCH" and str(answer_id) in r.path for r in fake.requests)

    (row,) = proc.services[-1].export_feedback(include_unlabelled=True)
    assert row["votes"] == {"up": 1, "down": 1}
    assert row["corrections"] == [{"wrong": "It quotes the wrong year", "right": "After the 1979 revolution"}]
    # `qabot feedback export` writes the corrections (thumbs-down rows need --include-unlabelled).
    from bot import cli

    monkeypatch.setenv("QABOT_EMBED_MODEL", "hashing:256")
    out = tmp_path / "fb.jsonl"
    assert cli.main(["--home", str(proc.home), "feedback", "export", "--out", str(out), "--include-unlabelled"]) == 0
    (exported,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert exported["corrections"] == row["corrections"] and exported["needs_review"]
    capsys.readouterr()
    assert cli.main(["--home", str(proc.home), "feedback", "export", "--out", str(out)]) == 0
    assert out.read_text() == "" and "1 thumbs-down questions with readers' corrections" in capsys.readouterr().err

    async with fake.running(proc.bot()):  # later: change the vote from the confirmation, in place
        since = len(fake.requests)
        await fake.component_click(confirmation, f"qabot:myvote:{answer_id}:up", user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["type"] == 7 and "your vote is now 👍" in cb.json["data"]["content"]
        assert chosen(cb.json["data"]) == {"up": ("Your vote", True, 3), "down": ("Change my vote", False, 2),
                                           "rest": []}
        assert "Your vote" in json.dumps(fake.messages[confirmation]["components"])
        # ... and back to 👎 from there: the form again; submitted empty, it keeps nothing new and the
        # confirmation is edited in place.
        since = len(fake.requests)
        await fake.component_click(confirmation, f"qabot:myvote:{answer_id}:down", user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["type"] == 9
        since = len(fake.requests)
        await fake.modal_submit({}, user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["type"] == 7 and chosen(cb.json["data"])["down"] == ("Your vote", True, 4)
    (row,) = proc.services[-1].export_feedback(include_unlabelled=True)
    assert row["votes"] == {"up": 1, "down": 1} and row["corrections"] == []  # the 👍 in between cleared it


async def test_votes_waiting_for_another_write_are_still_answered(fake: FakeDiscord, proc: Process,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the store's write lock past Discord's window. 👍: acknowledged in time, stored,
    then the private confirmation; 👎: the form still opens in time and the vote is stored behind it; the
    form sent from the confirmation: acknowledged, then the confirmation is edited in place."""
    monkeypatch.setattr(respond, "DEFER_AFTER", 0.2)
    async with fake.running(proc.bot()):
        answer = await ask_by_mention(fake, QUESTION)
        answer_id = int(answer.response["id"])
        await recorded(proc, answer_id)
        fake.interaction_deadline = 1.0  # Discord's 3 s, scaled down with DEFER_AFTER
        with write_lock_held(proc.home, seconds=1.5):
            since = len(fake.requests)
            inter = await fake.component_click(answer_id, "qabot:vote:up", user=USER)
            cb = await fake.wait_for_request("POST", f"/interactions/{inter['id']}/", since=since)
            assert cb.ok and cb.json["type"] == 5 and cb.json["data"]["flags"] & FLAG_EPHEMERAL, cb.response
            done = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}",
                                               since=since)
        assert done.ok and done.json["content"].startswith("Thanks"), done.json
        assert chosen(done.json)["up"] == ("Your vote", True, 3)
        confirmation = fake.interactions[int(inter["id"])].original_id
        assert confirmation is not None and fake.messages[confirmation]["content"] == done.json["content"]

        with write_lock_held(proc.home, seconds=1.5):
            since = len(fake.requests)
            await fake.component_click(confirmation, f"qabot:myvote:{answer_id}:down", user=USER)
            cb = await fake.wait_for_request("POST", "/callback", since=since)
            assert cb.ok and cb.json["type"] == 9, cb.response
        for _ in range(3000):  # the vote is stored once the lock is let go (a hang detector, not a timer)
            if proc.services[-1].export_feedback(include_unlabelled=True)[0]["votes"]["down"] == 1:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the 👎 was not stored")

        with write_lock_held(proc.home, seconds=1.5):
            since = len(fake.requests)
            inter = await fake.modal_submit({"wrong": "the wrong year"}, user=USER)
            cb = await fake.wait_for_request("POST", "/callback", since=since)
            assert cb.ok and cb.json["type"] == 6, cb.response
            edit = await fake.wait_for_request("PATCH", f"/webhooks/{fake.application_id}/{inter['token']}"
                                               "/messages/@original", since=since)
        assert edit.ok and "kept with it" in edit.json["content"]
        assert "kept with it" in fake.messages[confirmation]["content"]
    (row,) = proc.services[-1].export_feedback(include_unlabelled=True)
    assert row["votes"] == {"up": 0, "down": 1} and row["corrections"] == [{"wrong": "the wrong year", "right": ""}]


async def test_form_for_an_answer_without_a_record_says_so(fake: FakeDiscord, proc: Process) -> None:
    import sqlite3

    async with fake.running(proc.bot()):
        answer = await ask_by_mention(fake, QUESTION)
        answer_id = int(answer.response["id"])
        await recorded(proc, answer_id)
        await fake.component_click(answer_id, "qabot:vote:down", user=USER)
        await fake.wait_for(lambda: fake.modals)
        with sqlite3.connect(proc.home / "qabot.sqlite3") as conn:
            conn.execute("DELETE FROM bot_answers")
        since = len(fake.requests)
        await fake.modal_submit({"wrong": "x"}, user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["type"] == 4 and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        assert "ask the question again" in cb.json["data"]["content"]


# ---- limits: untrusted titles and sources --------------------------------------------------------------


async def test_answer_records_older_than_answer_days_are_forgotten(fake: FakeDiscord, proc: Process) -> None:
    """QABOT_ANSWER_DAYS (default 180): at start-up (then daily) older answer records go, so the store stays
    bounded; the answer's buttons then say so. 0 keeps them."""
    import sqlite3

    async with fake.running(proc.bot()):
        old, recent = [int((await ask_by_mention(fake, q)).response["id"]) for q in (QUESTION, QUESTION + " (again)")]
        await recorded(proc, recent)
    with sqlite3.connect(proc.home / "qabot.sqlite3") as conn:
        conn.execute("UPDATE bot_answers SET created_at = '2020-01-01T00:00:00+00:00' WHERE message_id = ?", (old,))

    async with fake.running(proc.bot(answer_days=0)):  # kept for ever
        since = len(fake.requests)
        await fake.component_click(old, "qabot:sources", user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.ok and cb.json["data"]["embeds"], cb.json
    assert proc.services[-1].bot_state().answer(old) is not None

    async with fake.running(proc.bot()):
        state = proc.services[-1].bot_state()
        for _ in range(3000):  # forgotten at start-up (a hang detector, not a timer)
            if state.answer(old) is None:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the old record was kept")
        since = len(fake.requests)
        await fake.component_click(old, "qabot:sources", user=USER)
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["data"]["content"] == FORGOTTEN and cb.json["data"]["flags"] & FLAG_EPHEMERAL
        since = len(fake.requests)
        await fake.component_click(recent, "qabot:sources", user=USER)  # a recent one is kept
        cb = await fake.wait_for_request("POST", "/callback", since=since)
        assert cb.json["data"]["embeds"]
    assert state.answer(recent) is not None


def test_help_and_articles_pages_stay_within_discords_limits_with_hostile_titles() -> None:
    from bot.cogs.help import Known, articles_page, empty_question_text, help_embed
    from embeddings.service import DocumentRow
    from tests.fakes.fake_discord import message_errors

    def doc(i: int, title: str, source: str, **kw: Any) -> DocumentRow:
        return DocumentRow(id=i, doc_key=f"k{i}", scope="guild:1", source=source, title=title,
                           outlet=kw.get("outlet"), published=kw.get("published"),
                           ingested_at="2026-12-03T10:00:00+00:00", content_hash="h")

    hostile = "*_~`|[x](y) @everyone <@&1> " * 40
    docs = [doc(i, hostile, src, outlet="_" * 500, published="`" * 500) for i, src in enumerate(
        ["https://example.com/" + "a" * 3000, "https://example.com/a(b)", "upload:" + "\\" * 900,
         "/srv/qabot/secret/dir/" + "z" * 900, "https://ok.example/article"] * 3)]
    k = Known(own=docs[:8], shared=docs[8:])
    for page in (0, 1, 5):
        embed, shown = articles_page(k, page)
        assert message_errors({"embeds": [embed]}) == {}, embed
        assert "/srv/qabot/secret" not in embed["description"] and "@everyone" not in embed["description"]
        assert shown == min(page, 1)
    help_ = help_embed(k, in_guild=True)
    assert message_errors({"embeds": [help_]}) == {}
    assert "@everyone" not in json.dumps(help_) and len(empty_question_text(k)) <= 2000
    assert "<@&1>" not in empty_question_text(k)
