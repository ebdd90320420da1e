"""Asking about a message and learning from Discord (issue 15, items 5 and 6): the real bot against the
loopback FakeDiscord, with a hashing-encoder service over a small temporary index (no model, no network
beyond 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord
import pytest

import bot.app
from bot import harvest
from bot.app import QABot
from bot.cogs.admin import NEEDS_MANAGE_SERVER, ONE_SOURCE
from bot.cogs.ask import ASK_MENU, NO_TEXT, UNREADABLE
from bot.cogs.learn import ADD_MENU, NOTHING_TO_ADD
from bot.harvest import NEEDS_INTENT, needs_history
from bot.render import escape_markdown
from embeddings.encoders.hashing import HashingEncoder
from embeddings.models import guild_scope
from embeddings.service import QAService
from embeddings.settings import Settings
from tests.bot.processes import Files, settings
from tests.bot.test_bot_admin import (
    CHANNEL,
    GUILD,
    MANAGE_SERVER,
    OTHER_USER,
    PLAIN,
    USER,
    callback,
    embed_body,
    original_edits,
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
    def intents(message_content: bool = True) -> discord.Intents:  # whatever QABOT_MESSAGE_CONTENT asks for
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
        assert req.json["content"].startswith("Ask me a question about the articles")  # the hint (cogs/help.py)
        theirs = await fake.message_create(LIGHTHOUSE_Q, channel_id=CHANNEL, author=OTHER_USER)
        assert theirs is not None
        since = len(fake.requests)
        mention = await fake.message_create(fake.bot_mention, channel_id=CHANNEL, author=USER,
                                            reply_to=int(theirs["id"]))
        assert mention is not None and mention["referenced_message"]["content"] == ""  # as Discord sends it
        req = await fake.wait_for_request("POST", f"/channels/{CHANNEL}/messages", since=since)
        assert req.json["content"] == UNREADABLE and int(req.json["message_reference"]["message_id"]) == int(
            mention["id"])


# ---- /ingest thread: -------------------------------------------------------------------------------------


async def test_ingest_thread_cites_it_and_follows_edits_and_deletions(fake: FakeDiscord,
                                                                      service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        thread, (fact, by_bot, _image, thanks) = await ferry_thread(fake)
        tid = int(thread["id"])
        assert "quuxbridge" not in await ask(fake, FERRY_Q)  # not known yet

        inter = await ingest_channel(fake, "thread", tid)
        cb = await callback(fake, inter)
        assert cb["type"] == 5 and cb["data"]["flags"] & 64
        text = await final(fake, inter)
        assert text.startswith("Added: **Quuxbridge ferry winter timetable**"), text
        assert original_edits(fake, inter)[0] == f"Reading <#{tid}>…"
        doc = doc_by_source(service, jump(tid))
        assert doc is not None and doc.title == "Quuxbridge ferry winter timetable"
        body = service.index.store.document_text(doc.id)
        assert body.split("\n\n") == ["Winter timetable question: how do the ferries run?", FERRY_FACT,
                                      "Thanks, that helps!"]  # starter first; no bot's, no empty message
        answer = await ask(fake, FERRY_Q)
        assert "January" in answer and f"]({jump(tid)})" in answer  # the citation links back to the thread

        # an edit is picked up by the next ingest of the thread (the document is replaced, not duplicated)
        await fake.message_edit(int(fact["id"]), FERRY_EDITED)
        again = await ingest_channel(fake, "thread", tid)
        assert (await final(fake, again)).startswith("Updated: **Quuxbridge ferry winter timetable**")
        assert [d.source for d in service.documents(SCOPE)] == [jump(tid)]
        answer = await ask(fake, FERRY_Q)
        assert "March" in answer and "January" not in answer

        # a deletion too; with no member's message left, the document goes
        await fake.message_delete(int(fact["id"]))
        third = await ingest_channel(fake, "thread", tid)
        assert (await final(fake, third)).startswith("Updated")
        assert "quuxbridge ferry stops" not in service.index.store.document_text(doc_by_source(service, jump(tid)).id)
        assert by_bot is not None and int(by_bot["id"]) in fake.messages  # the bot's message is still there
        await fake.message_delete(int(thanks["id"]))
        await fake.message_delete(int(thread["id"]))  # the starter message in #channel (the thread has its id)
        fourth = await ingest_channel(fake, "thread", tid)
        assert (await final(fake, fourth)).startswith("Removed: **Quuxbridge ferry winter timetable**")
        assert doc_by_source(service, jump(tid)) is None


async def test_ingest_thread_takes_the_text_files_posted_in_it(fake: FakeDiscord, service: QAService,
                                                               files: Files) -> None:
    notes = files.add("timetable.md", b"# Quuxbridge ferry winter timetable\n\nThe first winter ferry leaves "
                      b"Quuxbridge pier at 06:40 on weekdays.\n")
    limit = settings().max_upload_bytes
    async with fake.running(QABot(service, settings())):
        thread, _ = await ferry_thread(fake)  # it holds a photo: left out without a word
        tid = int(thread["id"])
        posted = await fake.message_create("the timetable as a file", channel_id=tid, author=OTHER_USER, attachments=[
            {"id": str(fake.snowflake()), "filename": "timetable.md", "size": 90, "url": notes, "proxy_url": notes},
            {"id": str(fake.snowflake()), "filename": "archive.txt", "size": limit + 1, "url": notes,
             "proxy_url": notes}])
        by_bot = await fake.message_create("zorblax notes", channel_id=tid, author=fake.bot_id, attachments=[
            {"id": str(fake.snowflake()), "filename": "bot.md", "size": 10, "url": notes, "proxy_url": notes}])
        assert posted is not None and by_bot is not None
        inter = await ingest_channel(fake, "thread", tid)
        lines = (await final(fake, inter)).split("\n")
        assert lines[0].startswith("Added: **Quuxbridge ferry winter timetable**")
        assert lines[1] == "Added: **Quuxbridge ferry winter timetable**, 1 passage. Ask away with /ask."  # the file
        assert lines[2] == "Skipped `archive.txt`: over the 2 MB limit."
        assert files.hits == ["timetable.md"]  # the oversized one never downloaded, the bot's own never read
        sources = {d.source for d in service.documents(SCOPE)}
        assert sources == {jump(tid), jump(tid, int(posted["id"])) + "#timetable.md"}
        assert "06:40" in await ask(fake, "when does the first winter ferry leave quuxbridge pier?")
        # again: the thread is unchanged and the stored file (attachments cannot be edited) is not fetched again
        again = await ingest_channel(fake, "thread", tid)
        assert (await final(fake, again)).split("\n")[:2] == [
            "Already indexed, unchanged: **Quuxbridge ferry winter timetable**.",
            "Skipped `archive.txt`: over the 2 MB limit."]
        assert files.hits == ["timetable.md"] and len(service.documents(SCOPE)) == 2
        # the file's message deleted in the thread: its article goes too, as a deleted message's text does
        await fake.message_delete(int(posted["id"]))
        third = (await final(fake, await ingest_channel(fake, "thread", tid))).split("\n")
        assert third[0].startswith("Updated: **Quuxbridge ferry winter timetable**")  # "the timetable as a file"
        assert third[1:] == ["Removed: **Quuxbridge ferry winter timetable** (its file is no longer in the thread)."]
        assert {d.source for d in service.documents(SCOPE)} == {jump(tid)}
        assert "06:40" not in await ask(fake, "when does the first winter ferry leave quuxbridge pier?")


async def test_ingest_thread_files_beyond_one_run_are_left_for_the_next(fake: FakeDiscord, service: QAService,
                                                                       files: Files, monkeypatch) -> None:
    monkeypatch.setattr(harvest, "MAX_FILES", 2)
    urls = [files.add(f"note{i}.txt", f"Quuxbridge note {i}: the ferry number {i} is painted blue.".encode())
            for i in range(3)]
    async with fake.running(QABot(service, settings())):
        thread, _ = await ferry_thread(fake)
        tid = int(thread["id"])
        await fake.message_create("notes", channel_id=tid, author=OTHER_USER, attachments=[
            {"id": str(fake.snowflake()), "filename": f"note{i}.txt", "size": 60, "url": u, "proxy_url": u}
            for i, u in enumerate(urls)])
        first = (await final(fake, await ingest_channel(fake, "thread", tid))).split("\n")
        assert [line.split(":")[0] for line in first[:3]] == ["Added"] * 3  # the thread and two files
        assert first[3].startswith("Left 1 more files for next time") and sorted(files.hits) == ["note0.txt",
                                                                                                "note1.txt"]
        second = (await final(fake, await ingest_channel(fake, "thread", tid))).split("\n")
        assert second[0].startswith("Already indexed, unchanged") and second[1].startswith("Added")
        assert len(second) == 2 and sorted(files.hits) == ["note0.txt", "note1.txt", "note2.txt"]
    assert len(service.documents(SCOPE)) == 4


async def test_ingest_forum_post(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        post, starter = await fake.forum_post(FORUM, "Ferry in winter?", "Does the quuxbridge ferry run in winter?",
                                              author=OTHER_USER)
        assert starter is not None and int(starter["id"]) == int(post["id"])
        await fake.message_create(FERRY_FACT, channel_id=int(post["id"]), author=USER)
        inter = await ingest_channel(fake, "thread", int(post["id"]))
        assert (await final(fake, inter)).startswith("Added: **Ferry in winter?**")
        doc = doc_by_source(service, jump(int(post["id"])))
        assert doc is not None and doc.outlet == "#help-forum"
        assert service.index.store.document_text(doc.id).split("\n\n") == [
            "Does the quuxbridge ferry run in winter?", FERRY_FACT]
        assert "January" in await ask(fake, FERRY_Q)


async def test_ingest_thread_is_for_managers_with_exactly_one_source(fake: FakeDiscord,
                                                                     service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        thread, _ = await ferry_thread(fake)
        since = len(fake.requests)
        refused = await ingest_channel(fake, "thread", int(thread["id"]), permissions=PLAIN)
        cb = await callback(fake, refused)
        assert cb["type"] == 4 and cb["data"]["flags"] & 64 and cb["data"]["content"] == NEEDS_MANAGE_SERVER
        two = await ingest_channel(fake, "thread", int(thread["id"]),
                                   extra=[{"name": "url", "type": 3, "value": "https://example.org/"}])
        cb = await callback(fake, two)
        assert cb["data"]["content"] == ONE_SOURCE and cb["data"]["flags"] & 64
        none = await fake.slash_command("ingest", {}, channel_id=CHANNEL, permissions=MANAGE_SERVER)
        assert (await callback(fake, none))["data"]["content"] == ONE_SOURCE
        assert not any(r.method == "GET" and "/messages" in r.path for r in fake.requests[since:])
    assert service.documents(SCOPE) == []


async def test_ingest_thread_without_read_message_history(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        starter = await fake.message_create("staff only", channel_id=CLOSED, author=USER)
        assert starter is not None
        hidden = await fake.thread_create(CLOSED, "Staff notes", from_message=int(starter["id"]))
        since = len(fake.requests)
        inter = await ingest_channel(fake, "thread", int(hidden["id"]))
        assert await final(fake, inter) == needs_history(f"<#{hidden['id']}>")
        assert not any(r.method == "GET" and r.path.endswith("/messages") for r in fake.requests[since:])

        # the bot's cache says it may read, but Discord refuses (403): still one line saying what to fix
        thread, _ = await ferry_thread(fake)
        await fake.set_bot_overwrite(CHANNEL, deny=VIEW_CHANNEL, notify=False)
        stale = await ingest_channel(fake, "thread", int(thread["id"]))
        assert await final(fake, stale) == needs_history(f"<#{thread['id']}>")
        history = await fake.wait_for_request("GET", f"/channels/{thread['id']}/messages")
        assert history.status == 403
    assert service.documents(SCOPE) == []


async def test_ingest_thread_without_the_message_content_intent_says_so(
        fake: FakeDiscord, service: QAService, no_content_intent: None) -> None:
    async with fake.running(QABot(service, settings())):
        thread, _ = await ferry_thread(fake)
        inter = await ingest_channel(fake, "thread", int(thread["id"]))
        text = await final(fake, inter)
        assert text.startswith(NEEDS_INTENT) and "no text to index" in text
    assert service.documents(SCOPE) == []


# ---- /ingest pins: ---------------------------------------------------------------------------------------


async def test_ingest_pins_of_a_channel(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        rules = await fake.message_create("Rule one: the quuxbridge pier closes at 9 pm sharp.", channel_id=CHANNEL,
                                          author=USER)
        chatter = await fake.message_create("I think the pier closes at noon on the zorblax day.",
                                            channel_id=CHANNEL, author=OTHER_USER)
        hours = await fake.message_create("Rule two: dogs must stay on a lead on the pier.", channel_id=CHANNEL,
                                          author=OTHER_USER)
        assert rules and chatter and hours
        await fake.pin(int(hours["id"]))
        await fake.pin(int(rules["id"]))
        inter = await ingest_channel(fake, "pins", CHANNEL)
        title = f"#{fake.channels[CHANNEL]['name']} pins"
        assert (await final(fake, inter)).startswith(f"Added: **{escape_markdown(title)}**")
        doc = doc_by_source(service, jump(CHANNEL) + "#pins")
        assert doc is not None and doc.title == title
        assert service.index.store.document_text(doc.id).split("\n\n") == [rules["content"], hours["content"]]
        assert "9 pm" in await ask(fake, "when does the quuxbridge pier close?")

        await fake.pin(int(rules["id"]), pinned=False)
        again = await ingest_channel(fake, "pins", CHANNEL)
        assert (await final(fake, again)).startswith(f"Updated: **{escape_markdown(title)}**")
        assert service.index.store.document_text(doc_by_source(service, jump(CHANNEL) + "#pins").id) == \
            hours["content"]


async def test_pins_of_a_forum_are_refused_in_one_line(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        inter = await ingest_channel(fake, "pins", FORUM)
        assert await final(fake, inter) == (f"<#{FORUM}> has no pinned messages to read: pick a text channel or "
                                            "a thread.")


# ---- Apps → Add to qabot's articles ------------------------------------------------------------------------


async def test_add_message_with_its_attachments_and_links(fake: FakeDiscord, service: QAService,
                                                          files: Files) -> None:
    page = files.add("pelicans.html", b"<html><head><title>Pelican census results</title></head><body><article>"
                     b"<p>The pelican census counted 412 pelicans on the estuary, the most since records.</p>"
                     b"</article></body></html>", "text/html")
    notes = files.add("faq.md", b"# Quuxbridge pier FAQ\n\nThe pier lights are switched on at dusk by the "
                      b"harbour master.\n")
    attachments = [
        {"id": str(fake.snowflake()), "filename": "faq.md", "size": 90, "url": notes, "proxy_url": notes,
         "content_type": "text/markdown"},
        {"id": str(fake.snowflake()), "filename": "map.png", "size": 10, "url": notes, "proxy_url": notes,
         "content_type": "image/png"},
    ]
    text = f"The quuxbridge pier opened in 1887 and the census is here: {page} (and a file:///etc/passwd link)"
    async with fake.running(QABot(service, settings())):
        msg = await fake.message_create(text, channel_id=CHANNEL, author=OTHER_USER, attachments=attachments)
        assert msg is not None
        mid = int(msg["id"])
        refused = await callback(fake, await fake.message_command(ADD_MENU, mid, user=OTHER_USER,
                                                                  permissions=PLAIN))
        assert refused["type"] == 4 and refused["data"]["content"] == NEEDS_MANAGE_SERVER
        assert files.hits == [] and service.documents(SCOPE) == []

        inter = await fake.message_command(ADD_MENU, mid, user=USER, permissions=MANAGE_SERVER)
        cb = await callback(fake, inter)
        assert cb["type"] == 5 and cb["data"]["flags"] & 64
        report = await final(fake, inter)
        lines = report.split("\n")
        assert lines[0].startswith("Added: **The quuxbridge pier opened in 1887")
        assert lines[1].startswith("Added: **Quuxbridge pier FAQ**") and lines[2].startswith("Added: **Pelican")
        assert lines[3] == "Skipped `map.png`: not a .txt, .md, .markdown, .html, .htm file."
        assert sorted(files.hits) == ["faq.md", "pelicans.html"]
        sources = {d.source for d in service.documents(SCOPE)}
        assert sources == {jump(CHANNEL, mid), jump(CHANNEL, mid) + "#faq.md", page}
        assert "dusk" in await ask(fake, "when are the pier lights switched on?")

        # adding it again after an edit replaces its text
        await fake.message_edit(mid, f"The quuxbridge pier opened in 1901 after a long delay. {page}")
        again = await fake.message_command(ADD_MENU, mid, user=USER, permissions=MANAGE_SERVER)
        assert "Updated: **The quuxbridge pier opened in 1901" in await final(fake, again)
        assert len(service.documents(SCOPE)) == 3


async def test_add_message_with_nothing_to_learn(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):
        empty = await fake.message_create("", channel_id=CHANNEL, author=OTHER_USER, attachments=[
            {"id": "9", "filename": "cat.gif", "size": 5, "url": "http://127.0.0.1:1/c", "proxy_url": "x"}])
        assert empty is not None
        cb = await callback(fake, await fake.message_command(ADD_MENU, int(empty["id"]), permissions=MANAGE_SERVER))
        assert cb["type"] == 4 and cb["data"]["content"] == (
            NOTHING_TO_ADD + "\n`cat.gif`: not a .txt, .md, .markdown, .html, .htm file")
    assert service.documents(SCOPE) == []



# ---- long threads, many pins, threads the bot has not seen ---------------------------------------------------


async def test_long_thread_and_many_pins_are_read_page_by_page(fake: FakeDiscord, service: QAService,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async with fake.running(QABot(service, settings())):
        thread = await fake.thread_create(CHANNEL, "Numbered notes")
        tid = int(thread["id"])
        notes = [f"Note number {i} is about the quuxbridge ferry." for i in range(230)]
        for i, note in enumerate(notes):
            msg = await fake.message_create(note, channel_id=tid, author=USER)
            assert msg is not None
            if i % 4 == 0:
                await fake.pin(int(msg["id"]))
        inter = await ingest_channel(fake, "thread", tid)
        assert (await final(fake, inter)).startswith("Added: **Numbered notes**")
        pages = [r for r in fake.requests if r.method == "GET" and r.path == f"/channels/{tid}/messages"]
        assert len(pages) == 3 and all(int(p.query["limit"]) <= 100 for p in pages)  # 100 + 100 + 30
        text = service.index.store.document_text(doc_by_source(service, jump(tid)).id)
        assert text.split("\n\n") == notes  # all of them, oldest first

        pins = await ingest_channel(fake, "pins", tid)  # a thread's pins: 58 of them, over two pages of 50
        assert (await final(fake, pins)).startswith("Added:")
        pin_pages = [r for r in fake.requests if r.method == "GET" and r.path == f"/channels/{tid}/messages/pins"]
        assert len(pin_pages) == 2 and "before" in pin_pages[1].query
        pinned = service.index.store.document_text(doc_by_source(service, jump(tid) + "#pins").id)
        assert pinned.split("\n\n") == notes[::4]

        monkeypatch.setattr(harvest, "MAX_MESSAGES", 40)
        capped = await ingest_channel(fake, "thread", tid)
        text = await final(fake, capped)
        assert text.startswith("Only the first 40 messages were read.\nUpdated: **Numbered notes**"), text


async def test_archived_thread_the_bot_has_not_seen_is_fetched(fake: FakeDiscord, service: QAService) -> None:
    async with fake.running(QABot(service, settings())):  # an earlier run of the bot
        thread = await fake.thread_create(CHANNEL, "Old ferry thread")
        await fake.message_create(FERRY_FACT, channel_id=int(thread["id"]), author=USER)
    thread["thread_metadata"]["archived"] = True  # so it is not in GUILD_CREATE: the new process lacks it
    async with fake.running(QABot(service, settings())) as client:
        guild = client.get_guild(GUILD)
        assert guild is not None and guild.get_thread(int(thread["id"])) is None
        inter = await ingest_channel(fake, "thread", int(thread["id"]))
        assert (await final(fake, inter)).startswith("Added: **Old ferry thread**")
        assert (await fake.wait_for_request("GET", f"/channels/{thread['id']}")).ok
        assert "January" in await ask(fake, FERRY_Q)


async def test_add_message_links_to_private_addresses_are_refused(fake: FakeDiscord, files: Files,
                                                                  tmp_path: Path) -> None:
    """The bot's real configuration (no allow_private_urls): a link to the bot's own network is not fetched."""
    local = files.add("secret.txt", b"The admin password of the router is hunter2 and it is secret.")
    svc = QAService(Settings(home=tmp_path / "strict"), encoder=HashingEncoder(256))
    try:
        async with fake.running(QABot(svc, settings())):
            msg = await fake.message_create(f"Internal notes: {local}", channel_id=CHANNEL, author=OTHER_USER)
            assert msg is not None
            inter = await fake.message_command(ADD_MENU, int(msg["id"]), permissions=MANAGE_SERVER)
            report = await final(fake, inter)
        assert report.startswith(f"Could not ingest {escape_markdown(local)}: "), report
        assert "non-public address" in report
        assert files.hits == [] and svc.documents(SCOPE) == []  # "Internal notes:" is too short to be an article
    finally:
        svc.close()
