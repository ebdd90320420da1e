"""Discord messages as documents, with no discord import: the cogs turn discord.py messages into the plain
ChatMessage below, and this module decides what of them becomes a document's title, paragraphs and source.

- A thread or forum post is one document: the thread's name as title, its people's messages (oldest
  first; bots' messages and empty ones skipped) as paragraphs, the thread's link as source, so citations
  link back and ingesting the thread again replaces the document (edits updated, deletions gone).
- A channel's pinned messages are one document likewise ("#channel pins", the channel's link + "#pins").
- One message ("Add to qabot's articles") is a document of its own text, its link as source; its links
  and text attachments are ingested beside it (``links``, ``attachment_source``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_TITLE = 100  # characters of a message's first line used as its document's title
MIN_WORDS_BESIDE = 4  # a message that brings links or files is a document itself only with this many words

# <:name:id> and <a:name:id> (custom emoji), <t:1700000000> and <t:1700000000:R> (timestamps)
_EMOJI = re.compile(r"<a?:(\w{1,32}):\d{5,25}>")
_TIMESTAMP = re.compile(r"<t:(-?\d{1,13})(?::[tTdDfFR])?>")
_SPOILER = re.compile(r"\|\|(.+?)\|\|", re.S)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)", re.M)
# A bare or <angle-bracketed> http(s) link (trailing punctuation is cut by _trim_link)
_LINK = re.compile(r"<(https?://[^\s>]+)>|(https?://[^\s<>|]+)", re.I)
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?(https?://[^\s)>]+)>?\s*\)", re.I)


@dataclass(frozen=True)
class ChatMessage:
    """What a document needs of a Discord message. ``text`` has mentions already shown as names."""

    id: int
    text: str
    by_bot: bool = False
    created: datetime | None = None


@dataclass(frozen=True)
class ChatDocument:
    title: str
    source: str
    paragraphs: tuple[str, ...]
    published: str | None = None  # ISO date of its first message
    outlet: str | None = None  # where it was said: "#channel"
    skipped: int = 0  # messages left out (bots', empty)


def clean_text(text: str) -> str:
    """A message's text as prose: custom emoji as :name:, timestamps as dates, spoilers revealed, and an
    unclosed code fence closed (so it cannot swallow the messages after it)."""
    text = _EMOJI.sub(r":\1:", text)
    text = _TIMESTAMP.sub(_timestamp, text)
    text = _SPOILER.sub(r"\1", text)
    if len(_FENCE.findall(text)) % 2:
        text += "\n```"
    return text.strip()


def _timestamp(m: re.Match[str]) -> str:
    try:
        return datetime.fromtimestamp(int(m[1]), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return m[0]


def _trim_link(url: str) -> str:
    """A bare link without the sentence's punctuation after it; a closing bracket stays when the link
    opened it (https://en.wikipedia.org/wiki/Foo_(bar))."""
    while url and url[-1] in ".,;:!?\"'*_~)]":
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def links(text: str) -> list[str]:
    """The http(s) links in a message, once each, in order (bare, <suppressed> and [markdown](links))."""
    found = [m[2] for m in _MD_LINK.finditer(text)]
    found += [m[1] or _trim_link(m[2]) for m in _LINK.finditer(_MD_LINK.sub(" ", text))]
    return [u for u in dict.fromkeys(found) if len(u) > len("https://")]


def without_links(text: str) -> str:
    """The text with bare links removed and [markdown](links) kept as their words."""
    text = _LINK.sub(" ", _MD_LINK.sub(r"\1", text))
    return "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()).strip()


def _kept(messages: Iterable[ChatMessage]) -> tuple[list[ChatMessage], list[str], int]:
    ordered = sorted(messages, key=lambda m: m.id)  # snowflakes grow with time: oldest first
    kept, paragraphs = [], []
    for m in ordered:
        text = "" if m.by_bot else clean_text(m.text)
        if text:
            kept.append(m)
            paragraphs.append(text)
    return kept, paragraphs, len(ordered) - len(kept)


def _date(kept: Sequence[ChatMessage]) -> str | None:
    first = kept[0].created if kept else None
    return first.date().isoformat() if first is not None else None


def one_line(text: str, limit: int = MAX_TITLE) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:") + "…"


def thread_document(name: str, jump_url: str, messages: Iterable[ChatMessage], *,
                    parent: str | None = None) -> ChatDocument:
    """A thread or forum post as one document (its starter message included by the caller)."""
    kept, paragraphs, skipped = _kept(messages)
    return ChatDocument(title=one_line(name) or "Discord thread", source=jump_url, paragraphs=tuple(paragraphs),
                        published=_date(kept), outlet=f"#{parent}" if parent else None, skipped=skipped)


def pins_source(channel_url: str) -> str:
    """A channel's pins, told apart from the channel (a thread's own pins from the thread's messages)."""
    return f"{channel_url}#pins"


def pins_document(channel: str, channel_url: str, messages: Iterable[ChatMessage]) -> ChatDocument:
    """A channel's pinned messages as one document, oldest message first."""
    kept, paragraphs, skipped = _kept(messages)
    return ChatDocument(title=f"#{channel} pins", source=pins_source(channel_url), paragraphs=tuple(paragraphs),
                        published=_date(kept), outlet=f"#{channel}", skipped=skipped)


def message_document(message: ChatMessage, jump_url: str, *, channel: str | None = None,
                     brings_more: bool = False) -> ChatDocument | None:
    """One message as a document: its first line as title. None when it has no text of its own worth a
    document: empty, a bot's, or only a few words beside the links or files it brings (``brings_more``)."""
    if message.by_bot:
        return None
    text = clean_text(without_links(message.text) if brings_more else message.text)
    if not text or (brings_more and len(text.split()) < MIN_WORDS_BESIDE):
        return None
    first = next(line for line in text.splitlines() if line.strip())
    title = one_line(first.strip("#*_`> ")) or f"Message in #{channel or 'Discord'}"
    return ChatDocument(title=title, source=jump_url, paragraphs=(text,), published=_date([message]),
                        outlet=f"#{channel}" if channel else None)


def attachment_source(message_url: str, filename: str) -> str:
    """An attachment's identity: its message's link with the file name as fragment. (Discord's CDN links
    expire; this one opens the message, and adding the message again replaces the file's document.)"""
    return f"{message_url}#{filename}"
