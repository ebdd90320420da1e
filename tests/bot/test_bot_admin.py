"""Admin commands, feedback, command sync and resilience: the real bot against the loopback FakeDiscord,
with a hashing-encoder service over a small temporary index (no network beyond 127.0.0.1, no model)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import QABot, sync_commands
from bot.cogs.admin import NEEDS_MANAGE_SERVER
from embeddings.evaluation.datasets import load_dataset
from embeddings.models import BASE_SCOPE, guild_scope
from embeddings.service import QAService
from embeddings.store.embedded.feedback import FeedbackStore
from tests.bot.processes import BASE_ARTICLE, Files, settings
from tests.fakes.fake_discord import FakeDiscord

GUILD = 111111111111111111
CHANNEL = 333333333333333333
GUILD_B = 555555555555555555
CHANNEL_B = 666666666666666666
USER = 222222222222222222  # the fake's default user: also the application's owner
OTHER_USER = 888888888888888888
PLAIN = 0  # a member without any permission
MANAGE_SERVER = 0x20

SECRET = "zorblax"
UPLOAD = f"""Quuxville {SECRET} festival schedule

The {SECRET} festival in Quuxville was held on Tuesday because the {SECRET} committee wanted good weather.
"""
B_ARTICLE = """Glimmerton bakery opening

The Glimmerton bakery opened on Friday and sold sourdough loaves to the whole village.
"""
HTML_ARTICLE = """<html><head><title>Pelican census results</title></head><body><article>
<h1>Pelican census results</h1>
<p>The pelican census counted 412 pelicans on the estuary, the most since records began.</p>
</article></body></html>"""


async def ingest_file(fake: FakeDiscord, files: Files, name: str, data: bytes, *, permissions: int = MANAGE_SERVER,
                      channel_id: int = CHANNEL, size: int | None = None) -> dict[str, Any]:
    """Run `/ingest file:` with an attachment whose URL points at the local file server."""
    aid = str(fake.snowflake())
    url = files.add(name, data)
    attachment = {"id": aid, "filename": name, "size": len(data) if size is None else size, "url": url,
                  "proxy_url": url, "content_type": "text/plain; charset=utf-8"}
    return await fake.slash_command("ingest", [{"name": "file", "type": 11, "value": aid}], channel_id=channel_id,
                                    permissions=permissions, resolved={"attachments": {aid: attachment}})


def original_edits(fake: FakeDiscord, inter: dict[str, Any]) -> list[str]:
    path = f"/webhooks/{fake.application_id}/{inter['token']}/messages/@original"
    return [(r.json or {}).get("content") or "" for r in fake.requests if r.method == "PATCH" and r.path == path
            and r.ok]


async def wait_edit(fake: FakeDiscord, inter: dict[str, Any], done: Callable[[str], bool]) -> str:
    return await fake.wait_for(lambda: next((c for c in original_edits(fake, inter) if done(c)), None))


async def callback(fake: FakeDiscord, inter: dict[str, Any]) -> dict[str, Any]:
    req = await fake.wait_for_request("POST", f"/interactions/{inter['id']}/")
    assert req.ok, req.response
    return req.json


async def ask_by_mention(fake: FakeDiscord, question: str, *, channel_id: int = CHANNEL, author: int = USER):
    incoming = await fake.message_create(f"{fake.bot_mention} {question}", channel_id=channel_id, author=author)
    req = await fake.wait_for_request("POST", f"/channels/{int(incoming['id'])}/messages")
    assert req.ok, req.response
    return req


def embed_body(payload: dict[str, Any]) -> str:
    (embed,) = payload["embeds"]
    return "\n".join([embed.get("description", "")] + [f["name"] + " " + f["value"] for f in embed.get("fields", [])])


# ---- /ingest -------------------------------------------------------------------------------------------


async def test_ingest_refused_for_plain_member(fake: FakeDiscord, service: QAService, files: Files) -> None:
    async with fake.running(QABot(service, settings())):
        inter = await ingest_file(fake, files, "festival.txt", UPLOAD.encode(), permissions=PLAIN)
        cb = await callback(fake, inter)
        assert cb["type"] == 4 and cb["data"]["flags"] & 64  # ephemeral refusal, no defer
        assert cb["data"]["content"] == NEEDS_MANAGE_SERVER
        await asyncio.sleep(0.1)
        assert not original_edits(fake, inter)
    assert files.hits == []  # nothing downloaded
    assert service.documents(guild_scope(GUILD)) == []


async def test_ingest_file_with_manage_server_then_guild_isolation(
    fake: FakeDiscord, service: QAService, files: Files
) -> None:
    async with fake.running(QABot(service, settings())):
        inter = await ingest_file(fake, files, "festival.txt", UPLOAD.encode())
        cb = await callback(fake, inter)
        assert cb["type"] == 5 and cb["data"]["flags"] & 64  # deferred, ephemeral
        final = await wait_edit(fake, inter, lambda c: c.startswith("Added"))
        assert "Quuxville" in final and "1 passage." in final
        progress = original_edits(fake, inter)
        assert progress[0].startswith("Downloading") and progress[1].startswith("Indexing")
        assert files.hits == ["festival.txt"]
        (doc,) = service.documents(guild_scope(GUILD))
        assert doc.source == "upload:festival.txt" and doc.title.startswith("Quuxville")

        question = f"when was the {SECRET} festival in Quuxville?"
        in_a = await ask_by_mention(fake, question, channel_id=CHANNEL)
        in_b = await ask_by_mention(fake, question, channel_id=CHANNEL_B)
    assert "Tuesday" in embed_body(in_a.json)
    body_b = embed_body(in_b.json)
    assert SECRET not in body_b and "Tuesday" not in body_b and "Quuxville" not in body_b


async def test_ingest_url_and_oversized_file(fake: FakeDiscord, service: QAService, files: Files) -> None:
    async with fake.running(QABot(service, settings())):
        big = await ingest_file(fake, files, "big.txt", b"x", size=3 * 1024 * 1024)
        cb = await callback(fake, big)
        assert cb["type"] == 4 and cb["data"]["flags"] & 64 and "limit is 2.0 MB" in cb["data"]["content"]
        assert files.hits == []  # refused from attachment.size, before any download

        url = files.add("pelicans.html", HTML_ARTICLE.encode(), "text/html")
        inter = await fake.slash_command("ingest", {"url": url}, channel_id=CHANNEL, permissions=MANAGE_SERVER)
        final = await wait_edit(fake, inter, lambda c: not c.startswith("Fetching"))
        assert final.startswith("Added") and "Pelican census" in final, final
    assert [d.source for d in service.documents(guild_scope(GUILD))] == [url]


async def test_ingest_url_never_reads_the_hosts_files(fake: FakeDiscord, service: QAService,
                                                      tmp_path: Path) -> None:
    """Security: from Discord only http(s) URLs and uploads may be read, never a path of the bot's host."""
    secret_dir = tmp_path / "host"
    secret_dir.mkdir()
    (secret_dir / "config.txt").write_text("Database settings\n\nThe database password is hunter2swordfish.\n",
                                          encoding="utf-8")
    attempts = [str(secret_dir / "config.txt"), str(secret_dir), f"file://{secret_dir / 'config.txt'}",
                "  " + str(secret_dir / "config.txt")]
    async with fake.running(QABot(service, settings())):
        for attempt in attempts:
            inter = await fake.slash_command("ingest", {"url": attempt}, channel_id=CHANNEL,
                                             permissions=MANAGE_SERVER)
            final = await wait_edit(fake, inter, lambda c: not c.startswith("Fetching"))
            assert "only http:// and https:// URLs" in final, final
            assert "hunter2" not in final
    assert service.documents(guild_scope(GUILD)) == []
    assert all("hunter2" not in p.text for p in service.ask("what is the database password?").passages)


async def test_ingest_while_index_is_busy(fake: FakeDiscord, service: QAService, files: Files) -> None:
    async with fake.running(QABot(service, settings())):
        with service.index.writer():  # another writer holds the lock
            inter = await ingest_file(fake, files, "festival.txt", UPLOAD.encode())
            final = await wait_edit(fake, inter, lambda c: not c.startswith(("Downloading", "Indexing")))
    assert "try again" in final and "writing" in final
    assert service.documents(guild_scope(GUILD)) == []


async def test_hostile_upload_never_stalls_the_event_loop(fake: FakeDiscord, service: QAService,
                                                          files: Files) -> None:
    """A 50 KB line of unclosed bold markers held the GIL in one regex for ~9 s before the Markdown patterns
    were made linear, so every other server's /ask waited (Discord's deadline is 3 s); now it takes ms."""
    hostile = ("**a " * 12_500 + "\n\nThe festival was held on Tuesday.").encode()
    gaps: list[float] = []
    done = False

    async def heartbeat() -> None:
        last = asyncio.get_running_loop().time()
        while not done:
            await asyncio.sleep(0.01)
            now = asyncio.get_running_loop().time()
            gaps.append(now - last)
            last = now

    async with fake.running(QABot(service, settings())):
        beat = asyncio.create_task(heartbeat())
        inter = await ingest_file(fake, files, "hostile.md", hostile)
        final = await wait_edit(fake, inter, lambda c: not c.startswith(("Downloading", "Indexing")))
        done = True
        await beat
    assert final.startswith("Added"), final
    assert max(gaps) < 1.5, max(gaps)


async def test_upload_over_its_time_budget_fails_with_one_line(fake: FakeDiscord, service: QAService,
                                                               files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    from embeddings.ingest import pipeline

    monkeypatch.setattr(pipeline, "UPLOAD_TIME_BUDGET_S", 0.0)
    async with fake.running(QABot(service, settings())):
        inter = await ingest_file(fake, files, "festival.txt", UPLOAD.encode())
        final = await wait_edit(fake, inter, lambda c: not c.startswith(("Downloading", "Indexing")))
    assert final.startswith("Could not ingest festival.txt: gave up after 0 s of reading it"), final
    assert "\n" not in final
    assert service.documents(guild_scope(GUILD)) == []


# ---- /forget ------------------------------------------------------------------------------------------


def add_doc(service: QAService, tmp: Path, name: str, text: str, scope: str) -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    report = service.ingest([str(path)], scope=scope, progress=False)
    assert report.ok
    return report.outcomes[0].doc_key


async def test_forget_removes_only_own_docs(fake: FakeDiscord, service: QAService, tmp_path: Path) -> None:
    mine = add_doc(service, tmp_path, "festival.txt", UPLOAD, guild_scope(GUILD))
    theirs = add_doc(service, tmp_path, "bakery.txt", B_ARTICLE, guild_scope(GUILD_B))
    (base,) = service.documents(BASE_SCOPE)
    async with fake.running(QABot(service, settings())):
        refused = await fake.slash_command("forget", {"document": mine}, channel_id=CHANNEL, permissions=PLAIN)
        assert (await callback(fake, refused))["data"]["content"] == NEEDS_MANAGE_SERVER
        for key in (theirs, base.doc_key, base.title):
            inter = await fake.slash_command("forget", {"document": key}, channel_id=CHANNEL,
                                             permissions=MANAGE_SERVER)
            assert "No article of this server matches" in await wait_edit(fake, inter, bool)
        inter = await fake.slash_command("forget", {"document": mine}, channel_id=CHANNEL, permissions=MANAGE_SERVER)
        assert (await wait_edit(fake, inter, bool)).startswith("Removed: **Quuxville")
    assert service.documents(guild_scope(GUILD)) == []
    assert [d.doc_key for d in service.documents(guild_scope(GUILD_B))] == [theirs]
    assert [d.doc_key for d in service.documents(BASE_SCOPE)] == [base.doc_key]


async def test_forget_autocomplete_lists_only_own_docs(fake: FakeDiscord, service: QAService, tmp_path: Path) -> None:
    mine = add_doc(service, tmp_path, "festival.txt", UPLOAD, guild_scope(GUILD))
    add_doc(service, tmp_path, "bakery.txt", B_ARTICLE, guild_scope(GUILD_B))
    async with fake.running(QABot(service, settings())):
        everything = await fake.autocomplete("forget", {"document": ""}, "document", channel_id=CHANNEL)
        typed = await fake.autocomplete("forget", {"document": "quux"}, "document", channel_id=CHANNEL)
        nothing = await fake.autocomplete("forget", {"document": "bakery"}, "document", channel_id=CHANNEL)
        in_b = await fake.autocomplete("forget", {"document": ""}, "document", channel_id=CHANNEL_B)
        results = [await callback(fake, i) for i in (everything, typed, nothing, in_b)]
    assert all(r["type"] == 8 for r in results)
    choices = [r["data"]["choices"] for r in results]
    assert choices[0] == choices[1] == [{"name": "Quuxville zorblax festival schedule", "value": mine}]
    assert choices[2] == []
    assert [c["name"] for c in choices[3]] == ["Glimmerton bakery opening"]


# ---- /stats -------------------------------------------------------------------------------------------


async def test_ingest_the_same_text_again_under_another_name(fake: FakeDiscord, service: QAService,
                                                            files: Files) -> None:
    async with fake.running(QABot(service, settings())):
        first = await ingest_file(fake, files, "festival.txt", UPLOAD.encode())
        assert (await wait_edit(fake, first, lambda c: c.startswith("Added"))).endswith("Ask away with /ask.")
        copy = await ingest_file(fake, files, "festival-copy.txt", UPLOAD.encode())
        text = await wait_edit(fake, copy, lambda c: c.startswith("Added"))
        assert "the same text as" in text and "festival.txt" in text and "answers show it once" in text
    assert len(service.documents(guild_scope(GUILD))) == 2


async def test_stats(fake: FakeDiscord, service: QAService, tmp_path: Path) -> None:
    add_doc(service, tmp_path, "festival.txt", UPLOAD, guild_scope(GUILD))
    add_doc(service, tmp_path, "bakery.txt", B_ARTICLE, guild_scope(GUILD_B))
    own = service.documents(guild_scope(GUILD))[0].passages
    base = service.documents(BASE_SCOPE)[0].passages
    async with fake.running(QABot(service, settings())):
        inter = await fake.slash_command("stats", channel_id=CHANNEL, permissions=PLAIN)
        cb = await callback(fake, inter)
        text = await wait_edit(fake, inter, bool)
    assert cb["type"] == 5 and cb["data"]["flags"] & 64
    assert f"**This server:** 1 document, {own} passage{'s' * (own != 1)}" in text
    assert f"**Shared articles:** 1 document, {base} passage{'s' * (base != 1)}" in text
    assert "hashing:256" in text and "**Index size:**" in text


# ---- feedback -------------------------------------------------------------------------------------------


async def test_feedback_click_stored_replaced_and_exported(
    fake: FakeDiscord, service: QAService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    question = "why was the northern lighthouse painted red and white?"
    async with fake.running(QABot(service, settings())):
        req = await ask_by_mention(fake, question)
        message_id = int(req.response["id"])
        (row,) = req.json["components"]
        ids = {b["custom_id"] for b in row["components"]}
        assert {"qabot:vote:up", "qabot:vote:down"} <= ids
        replies = []
        for custom_id, user in [("qabot:vote:up", USER), ("qabot:vote:down", USER), ("qabot:vote:up", USER),
                                ("qabot:vote:up", OTHER_USER)]:
            inter = await fake.component_click(message_id, custom_id, user=user)
            cb = await callback(fake, inter)
            if custom_id.endswith("down"):  # 👎 opens the "what was wrong?" form (the vote is already stored)
                assert cb["type"] == 9 and cb["data"]["custom_id"] == f"qabot:fixform:{message_id}"
                continue
            assert cb["type"] == 4 and cb["data"]["flags"] & 64
            replies.append(cb["data"]["content"])
    assert replies[0].startswith("Thanks") and "your vote is now" in replies[1]

    db = service.index.home / service.index.DB
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT user_hash, scope, question, vote, passage_ids FROM feedback ORDER BY id").fetchall()
    assert len(rows) == 2  # USER's three clicks are one vote
    assert [r[3] for r in rows] == [1, 1]
    assert {r[1] for r in rows} == {guild_scope(GUILD)} and rows[0][2] == question and json.loads(rows[0][4])
    for r in rows:
        assert len(r[0]) == 64 and str(USER) not in r[0] and str(OTHER_USER) not in r[0]
    assert str(USER).encode() not in db.read_bytes()

    (exported,) = service.export_feedback()
    assert exported["question"] == question and exported["answerable"] is True
    assert exported["answer_contains"] == [] and exported["votes"] == {"up": 2, "down": 0}
    assert exported["gold_passage_contains"] in BASE_ARTICLE and len(exported["gold_passage_contains"]) >= 30

    # `qabot feedback export --out FILE` writes the same, in a form `qabot eval` loads.
    from bot import cli

    monkeypatch.setenv("QABOT_EMBED_MODEL", "hashing:256")
    evaldir = tmp_path / "feedback-eval"
    evaldir.mkdir()
    out = evaldir / "questions.jsonl"
    assert cli.main(["--home", str(service.index.home), "feedback", "export", "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [exported]
    ds = load_dataset(evaldir)
    assert [q.question for q in ds.questions] == [question] and ds.questions[0].answerable
    assert "1 questions written" in capsys.readouterr().err


def test_feedback_export_mapping(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    passage = "Oman has long served as an intermediary between Iran and the West, officials said on Sunday."
    common = {"scope": "", "passage_ids": [1, 2]}
    store.record(answer_key="1", user_id=1, question="Who mediates?", answer="Oman.", found=True,
                 cited_passage=passage, vote=1, **common)
    store.record(answer_key="2", user_id=1, question="Who is the king of Mars?", answer="", found=False,
                 cited_passage="", vote=1, **common)
    store.record(answer_key="3", user_id=1, question="What colour is the sky?", answer="Green.", found=True,
                 cited_passage=passage, vote=-1, **common)
    assert store.record(answer_key="3", user_id=1, question="What colour is the sky?", answer="Green.", found=True,
                        cited_passage=passage, vote=-1, **common) is True
    rows = store.export()
    assert [(r["question"], r["answerable"]) for r in rows] == [("Who mediates?", True), ("Who is the king of Mars?",
                                                                                         False)]
    assert rows[0]["gold_passage_contains"] == "Oman has long served as an intermediary between Iran and"
    assert passage.startswith(rows[0]["gold_passage_contains"])
    review = store.export(include_unlabelled=True)[2]
    assert review["answerable"] is None and review["needs_review"] and review["votes"] == {"up": 0, "down": 1}
    assert store.user_hash(1) != FeedbackStore(tmp_path / "other.sqlite3").user_hash(1)  # per-index salt
    store.close()


# ---- resilience ------------------------------------------------------------------------------------------


async def test_followup_429_is_retried(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        fake.rate_limit_next(f"/webhooks/{fake.application_id}/", method="POST", retry_after=0.1)
        inter = await fake.slash_command("ask", {"question": "when was the lighthouse painted?"},
                                         channel_id=CHANNEL)
        ok = await fake.wait_for_request("POST", f"/webhooks/{fake.application_id}/{inter['token']}", ok=True)
    limited = [r for r in fake.requests if r.status == 429]
    assert len(limited) == 1 and fake.requests.index(limited[0]) < fake.requests.index(ok)
    assert ok.json["embeds"][0]["title"] == "when was the lighthouse painted?"


async def test_gateway_drop_resumes_and_keeps_answering(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        await ask_by_mention(fake, "when was the lighthouse painted?")
        session = fake.session_id
        await fake.drop_connection()
        await asyncio.wait_for(fake.resumed.wait(), 10)
        assert fake.resume_payloads[-1]["session_id"] == session and len(fake.identify_payloads) == 1
        req = await ask_by_mention(fake, "what colours was the lighthouse painted?")
    assert "red and white" in embed_body(req.json)


# ---- command tree sync -------------------------------------------------------------------------------------


async def test_owner_sync_command_and_nobody_elses(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        await asyncio.sleep(0.05)
        assert not any(r.path.endswith("/commands") for r in fake.requests)  # never on start
        since = len(fake.requests)
        await ask_by_mention(fake, "sync here", author=OTHER_USER)  # just a question from anyone else
        assert not any(r.path.endswith("/commands") for r in fake.requests[since:])
        await fake.message_create(f"{fake.bot_mention} sync here", channel_id=CHANNEL, author=USER)
        put = await fake.wait_for_request("PUT", f"/applications/{fake.application_id}/guilds/{GUILD}/commands")
        reply = await fake.wait_for(lambda: next((r for r in fake.requests[since:] if r.method == "POST" and r.ok
                                                  and r.path == f"/channels/{CHANNEL}/messages"), None))
    assert put.ok and {c["name"] for c in put.json} == {"ask", "ingest", "forget", "stats", "help", "articles",
                                                         "Ask qabot", "Add to qabot's articles", "qabot"}
    assert reply.json["content"].startswith("Synced 9 commands to this server")
    ingest = next(c for c in put.json if c["name"] == "ingest")
    assert int(ingest["default_member_permissions"]) == MANAGE_SERVER and ingest["contexts"] == [0]
    assert [o["name"] for o in ingest["options"]] == ["url", "file", "thread", "pins"]
    assert set(ingest["options"][2]["channel_types"]) == {10, 11, 12}  # threads, forum posts included
    menus = {c["name"]: c for c in put.json if c["type"] == 3}  # message context menus
    assert set(menus) == {"Ask qabot", "Add to qabot's articles"}
    assert int(menus["Add to qabot's articles"]["default_member_permissions"]) == MANAGE_SERVER
    assert menus["Add to qabot's articles"]["contexts"] == [0] and menus["Ask qabot"]["default_member_permissions"] is None


async def test_sync_commands_logs_in_syncs_and_exits(fake: FakeDiscord) -> None:
    names = await asyncio.wait_for(sync_commands(settings(), None), 10)
    assert sorted(names) == ["Add to qabot's articles", "Ask qabot", "articles", "ask", "forget", "help", "ingest",
                             "qabot", "stats"]
    put = await fake.wait_for_request("PUT", f"/applications/{fake.application_id}/commands")
    assert put.ok and not fake.identify_payloads  # REST only: no gateway session
    names = await sync_commands(settings(), GUILD)
    assert GUILD in fake.commands and len(fake.commands[GUILD]) == 9


def test_cli_sync(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import bot.app
    from bot import cli

    seen = []

    async def fake_sync(bot_settings, guild):
        seen.append((bot_settings.token, guild))
        return ["ask", "stats"]

    monkeypatch.setenv("DISCORD_TOKEN", "t0ken")
    monkeypatch.setattr(bot.app, "sync_commands", fake_sync)
    assert cli.main(["sync", "--guild", "42"]) == 0
    assert seen == [("t0ken", 42)] and "synced 2 commands to server 42: /ask, /stats" in capsys.readouterr().out
    monkeypatch.delenv("DISCORD_TOKEN")
    assert cli.main(["sync"]) == 1 and "DISCORD_TOKEN is not set" in capsys.readouterr().err

