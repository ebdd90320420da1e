"""Reading what a server wrote, for qabot to learn it: a thread or forum post or a channel's pins (with the
text files posted in them), one message (its text, its text attachments, its links). Discord in, plain
ChatMessages out; bot/discord_docs.py decides what becomes a document and QAService.ingest_text stores it
(in a worker thread), in the server's scope.

History is read over REST, which needs View Channel and Read Message History in that channel (without the
latter Discord silently returns no messages, so the bot checks its permissions first and says which are
missing). Links go through QAService.ingest_urls only: http(s), public addresses, never a local file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import discord

from bot.discord_docs import (
    ChatDocument,
    ChatMessage,
    attachment_source,
    links,
    message_document,
    pins_document,
    thread_document,
)
from bot.render import escape_markdown, trim
from embeddings.errors import QabotError, user_message
from embeddings.service import SUPPORTED_EXTENSIONS, Failure, IngestReport, QAService

log = logging.getLogger(__name__)

MAX_MESSAGES = 2000  # messages of one thread (or pins of one channel) read into one document
MAX_LINKS = 5  # links of one message fetched by "Add to qabot's articles"
# New text attachments of one thread (or one channel's pins) ingested by one command, and their total size:
# embedding them must end well within the 15 minutes a deferred reply may take. Run it again for the rest.
MAX_FILES = 20
MAX_FILES_BYTES_FACTOR = 4  # times the upload limit
_CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
_PINNABLE = (discord.TextChannel, discord.Thread, discord.VoiceChannel, discord.StageChannel)


class CannotRead(QabotError):
    """Discord would not let the bot read a channel's messages (the message says what to fix)."""


def needs_history(where: str) -> str:
    return (f"I can't read the messages of {where}: give qabot **View Channel** and **Read Message History** "
            "there, then try again.")


NEEDS_INTENT = ("Discord sent me these messages without their text: reading them needs the **Message Content** "
                "intent (developer portal → your app → Bot → Privileged Gateway Intents).")


def chat_message(message: discord.Message) -> ChatMessage:
    # clean_content shows <@id> mentions as @name (from the message's own mention data, no lookups)
    return ChatMessage(id=message.id, text=message.clean_content, by_bot=message.author.bot,
                       created=message.created_at)


@dataclass(frozen=True)
class Harvest:
    document: ChatDocument
    truncated: bool = False  # more than MAX_MESSAGES: only the first were read
    blank: int = 0  # people's messages that came without text (no Message Content intent, or image-only)
    # The .txt/.md/.html files posted in it (with the link of the message each came with), each ingested as a
    # document of its own; and why others were left out (a screenshot is not worth a line, an oversized FAQ is).
    files: tuple[tuple[str, discord.Attachment], ...] = ()
    skipped: tuple[str, ...] = ()
    # A thread read whole: the link its messages' links start with, and the sources of every attachment still
    # in it. A stored file of this thread that is not among them was deleted there, and goes the way a
    # deleted message goes. Empty for pins (a file of an unpinned message is still in its channel).
    container: str = ""
    present: frozenset[str] = frozenset()


def _text_files(messages: Sequence[discord.Message], max_bytes: int,
                ) -> tuple[tuple[tuple[str, discord.Attachment], ...], tuple[str, ...]]:
    """The attachments of people's messages that qabot can read; images and the like are left out without
    a word, an oversized text file with a line."""
    files, skipped = [], []
    for m in messages:
        if m.author.bot:
            continue
        for a in m.attachments:
            if PurePosixPath(a.filename).suffix.lower() not in SUPPORTED_EXTENSIONS:
                continue
            if a.size > max_bytes:
                skipped.append(f"Skipped `{trim(a.filename, 100)}`: over the {max_bytes // 2**20} MB limit.")
            else:
                files.append((m.jump_url, a))
    return tuple(files), tuple(skipped)


def check_readable(channel: discord.Thread | discord.abc.GuildChannel, me: discord.Member | None) -> None:
    """CannotRead unless the bot may read the channel's history (a thread's permissions are its parent's)."""
    if me is None:  # the bot's member is not cached: let Discord answer (a 403 becomes CannotRead)
        return
    try:
        perms = channel.permissions_for(me)
    except discord.ClientException:  # a thread whose parent is not cached: let Discord answer
        return
    if not (perms.view_channel and perms.read_message_history):
        raise CannotRead(needs_history(channel.mention))


async def _starter(thread: discord.Thread, message: discord.Message) -> discord.Message | None:
    """The message a thread was started from (its first entry in the thread is a type-21 pointer to it)."""
    ref = message.reference
    if ref is not None and isinstance(ref.resolved, discord.Message):
        return ref.resolved
    parent = thread.parent
    if not isinstance(parent, discord.TextChannel):
        return None
    try:
        return await parent.fetch_message(ref.message_id if ref and ref.message_id else thread.id)
    except discord.HTTPException as exc:  # deleted, or not readable: the thread's own messages remain
        log.info("thread %s: starter message unavailable: %s", thread.id, exc)
        return None


def _blank(messages: Sequence[discord.Message]) -> int:
    return sum(1 for m in messages if not m.author.bot and not m.content.strip())


async def read_thread(thread: discord.Thread, me: discord.Member | None, max_bytes: int) -> Harvest:
    """A thread or forum post as one document: the starter message and every message after it; with the text
    files posted in it."""
    check_readable(thread, me)
    try:
        history = [m async for m in thread.history(limit=MAX_MESSAGES + 1, oldest_first=True)]
    except discord.Forbidden as exc:
        raise CannotRead(needs_history(thread.mention)) from exc
    truncated = len(history) > MAX_MESSAGES
    chosen: list[discord.Message] = []
    for m in history[:MAX_MESSAGES]:
        if m.type is discord.MessageType.thread_starter_message:
            starter = await _starter(thread, m)
            if starter is not None:
                chosen.append(starter)
        elif m.type in _CHAT_TYPES:
            chosen.append(m)
    parent = thread.parent.name if thread.parent is not None else None
    doc = thread_document(thread.name, thread.jump_url, map(chat_message, chosen), parent=parent)
    if truncated:  # the messages after the first MAX_MESSAGES were not read: their files may be there
        return Harvest(doc, truncated, _blank(chosen), *_text_files(chosen, max_bytes))
    present = frozenset(attachment_source(m.jump_url, a.filename) for m in chosen for a in m.attachments)
    return Harvest(doc, truncated, _blank(chosen), *_text_files(chosen, max_bytes),
                   container=thread.jump_url + "/", present=present)


async def read_pins(channel: discord.abc.GuildChannel | discord.Thread, me: discord.Member | None,
                    max_bytes: int) -> Harvest:
    """A channel's (or thread's) pinned messages as one document, with the text files pinned."""
    if not isinstance(channel, _PINNABLE):
        raise CannotRead(f"{channel.mention} has no pinned messages to read: pick a text channel or a thread.")
    check_readable(channel, me)
    try:
        pinned = [m async for m in channel.pins(limit=MAX_MESSAGES + 1)]
    except discord.Forbidden as exc:
        raise CannotRead(needs_history(channel.mention)) from exc
    doc = pins_document(channel.name, channel.jump_url, map(chat_message, pinned[:MAX_MESSAGES]))
    return Harvest(doc, len(pinned) > MAX_MESSAGES, _blank(pinned[:MAX_MESSAGES]),
                   *_text_files(pinned[:MAX_MESSAGES], max_bytes))


async def ingest_harvest(service: QAService, harvest: Harvest, scope: str,
                         max_bytes: int) -> tuple[IngestReport, list[str]]:
    """The thread's (or pins') document, then the files posted in it that are not stored yet (an attachment
    cannot be edited: a stored one is as it was), at most MAX_FILES and MAX_FILES_BYTES_FACTOR uploads' worth;
    a stored file of the thread no longer in it is removed. One report for all, and a line for each file or
    group left out."""
    doc = harvest.document
    reports = [await asyncio.to_thread(service.ingest_text, doc.title, doc.paragraphs, source=doc.source,
                                       scope=scope, outlet=doc.outlet, published=doc.published)]
    notes = list(harvest.skipped)
    listed = harvest.files or harvest.container
    stored = {d.source for d in await asyncio.to_thread(service.documents, scope)} if listed else set()
    gone = sorted(src for src in stored if harvest.container and src.startswith(harvest.container)
                  and "#" in src and src not in harvest.present)
    for src in gone:  # deleted in the thread: removed, as a deleted message's text is
        for o in (await asyncio.to_thread(service.ingest_text, "", [], source=src, scope=scope)).outcomes:
            notes.append(f"Removed: **{escape_markdown(trim(o.title, 200))}** (its file is no longer in the thread).")
    new = [(url, a) for url, a in harvest.files if attachment_source(url, a.filename) not in stored]
    budget = MAX_FILES_BYTES_FACTOR * max_bytes
    chosen: list[tuple[str, discord.Attachment]] = []
    for url, a in new:
        if len(chosen) < MAX_FILES and a.size <= budget:
            chosen.append((url, a))
            budget -= a.size
    if len(chosen) < len(new):
        notes.append(f"Left {len(new) - len(chosen)} more files for next time (at most {MAX_FILES} files and "
                     f"{MAX_FILES_BYTES_FACTOR * max_bytes // 2**20} MB a run): run it again to add them.")
    reports += await _ingest_files(service, chosen, scope, max_bytes)
    return _merged(reports), notes


async def _ingest_files(service: QAService, files: Sequence[tuple[str, discord.Attachment]], scope: str,
                        max_bytes: int) -> list[IngestReport]:
    """Each attachment downloaded and ingested as a document citing the message it came with."""
    reports: list[IngestReport] = []
    for jump_url, a in files:
        try:
            data = await a.read()
        except discord.HTTPException as exc:
            reports.append(IngestReport(failures=(Failure(a.filename, f"download failed ({exc.status})"),)))
            continue
        if len(data) > max_bytes:  # the size Discord announced was wrong
            reports.append(IngestReport(failures=(Failure(a.filename, f"over the {max_bytes // 2**20} MB limit"),)))
            continue
        try:
            reports.append(await asyncio.to_thread(service.ingest_upload, data, name=a.filename, scope=scope,
                                                   source=attachment_source(jump_url, a.filename)))
        except QabotError as exc:  # IndexBusy between two files: what was stored before still gets reported
            reports.append(IngestReport(failures=(Failure(a.filename, user_message(exc)),)))
    return reports


def _merged(reports: Sequence[IngestReport]) -> IngestReport:
    return IngestReport(outcomes=tuple(o for r in reports for o in r.outcomes),
                        failures=tuple(f for r in reports for f in r.failures))


def harvest_notes(harvest: Harvest, *, intent: bool) -> list[str]:
    """What the report adds about the reading itself."""
    notes = []
    if not harvest.document.paragraphs and harvest.blank and not intent:
        notes.append(NEEDS_INTENT)
    if harvest.truncated:
        notes.append(f"Only the first {MAX_MESSAGES} messages were read.")
    return notes


# ---- one message: "Add to qabot's articles" ------------------------------------------------------------


@dataclass(frozen=True)
class MessageParts:
    document: ChatDocument | None
    files: tuple[discord.Attachment, ...]
    urls: tuple[str, ...]
    skipped: tuple[str, ...]  # why an attachment or link was left out, one line each

    @property
    def empty(self) -> bool:
        return self.document is None and not self.files and not self.urls


def message_parts(message: discord.Message, max_bytes: int) -> MessageParts:
    """What of a message can be learnt, decided before anything is downloaded."""
    files, skipped = [], []
    for a in message.attachments:
        if PurePosixPath(a.filename).suffix.lower() not in SUPPORTED_EXTENSIONS:
            skipped.append(f"`{trim(a.filename, 100)}`: not a {', '.join(SUPPORTED_EXTENSIONS)} file")
        elif a.size > max_bytes:
            skipped.append(f"`{trim(a.filename, 100)}`: over the {max_bytes // 2**20} MB limit")
        else:
            files.append(a)
    urls = links(message.content)
    if len(urls) > MAX_LINKS:
        skipped.append(f"{len(urls) - MAX_LINKS} more links (at most {MAX_LINKS} a message)")
    channel = getattr(message.channel, "name", None)
    doc = message_document(chat_message(message), message.jump_url, channel=channel,
                           brings_more=bool(files or urls))
    return MessageParts(doc, tuple(files), tuple(urls[:MAX_LINKS]), tuple(skipped))


async def ingest_message(service: QAService, message: discord.Message, parts: MessageParts, scope: str,
                         max_bytes: int) -> IngestReport:
    """The message's own text, then its attachments, then its links; one report for all."""
    reports: list[IngestReport] = []
    doc = parts.document
    if doc is not None:
        reports.append(await asyncio.to_thread(service.ingest_text, doc.title, doc.paragraphs, source=doc.source,
                                               scope=scope, outlet=doc.outlet, published=doc.published))
    reports += await _ingest_files(service, [(message.jump_url, a) for a in parts.files], scope, max_bytes)
    if parts.urls:
        # Never service.ingest: it reads paths. ingest_urls refuses anything but public http(s) addresses.
        reports.append(await asyncio.to_thread(service.ingest_urls, list(parts.urls), scope=scope))
    return _merged(reports)

