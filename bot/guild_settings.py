"""A server's own settings for qabot (issue 15, item 3): where it answers and how, as chosen by the server's
members with Manage Server through `/qabot` (bot/cogs/settings.py), stored as one JSON object per guild in
the bot state (``BotState.guild_settings``).

Pure: no discord import, no I/O. Parsing is tolerant (a value it cannot read is dropped, so a hand-edited or
older row never stops the bot); changes are validated and raise ``SettingsError`` with text for the admin.

- Channel lists: ``deny`` channels are never answered in; a non-empty ``allow`` list means only those. A
  thread counts as its parent channel, and a channel as its category, so listing a category covers every
  channel in it. Deny always wins over allow.
- Modes, per channel: ``mention`` (the default: @mentions, replies to the bot and its answer threads),
  ``every`` (every message in that channel is a question, no mention needed; needs the Message Content
  intent) and ``forum`` (a forum channel: the starter message of each new post is answered in the post).
- ``thread``: answer a new question in a new thread (True / False), or None for the operator's default
  (QABOT_ANSWER_IN_THREAD).
- ``rate``: the per-member rate limit in this server (questions per window), or None for the operator's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

MENTION, EVERY, FORUM = "mention", "every", "forum"
MODES = (MENTION, EVERY, FORUM)
MODE_LABELS = {MENTION: "mention only", EVERY: "every message", FORUM: "new forum posts"}

CHANNEL_ACTIONS = ("allow", "deny", "remove", "clear")
MAX_LISTED = 100  # channels per list (a server has at most 500 channels; the row stays small)
MAX_MODES = 100
MAX_QUESTIONS = 100  # per window; 0 = no limit in this server
MIN_WINDOW, MAX_WINDOW = 10, 3600  # seconds


class SettingsError(ValueError):
    """A change an admin asked for that cannot be made; the message says why, for them."""


@dataclass(frozen=True)
class Where:
    """Where a message was posted: its channel (for a message in a thread, the thread's parent), the thread,
    and the channel's category. Any of them can be listed in ``allow`` / ``deny``."""

    channel_id: int
    thread_id: int | None = None
    category_id: int | None = None

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(i for i in (self.thread_id, self.channel_id, self.category_id) if i is not None)


@dataclass(frozen=True)
class RateLimit:
    questions: int  # 0: no limit
    window: float  # seconds


def _snowflake(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value) or None
    return None


def _ids(values: Any) -> frozenset[int]:
    if not isinstance(values, list):
        return frozenset()
    ids = (_snowflake(v) for v in values[:MAX_LISTED])
    return frozenset(i for i in ids if i is not None)


@dataclass(frozen=True)
class GuildSettings:
    allow: frozenset[int] = frozenset()
    deny: frozenset[int] = frozenset()
    modes: Mapping[int, str] = field(default_factory=dict)  # only channels not in the default (mention) mode
    thread: bool | None = None
    rate: RateLimit | None = None

    # ---- JSON ------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> GuildSettings:
        """Read a stored row; whatever cannot be read is left at its default."""
        if not isinstance(data, Mapping):
            return cls()
        modes: dict[int, str] = {}
        raw_modes = data.get("modes")
        if isinstance(raw_modes, Mapping):
            for key, mode in list(raw_modes.items())[:MAX_MODES]:
                cid = _snowflake(key)
                if cid is not None and mode in (EVERY, FORUM):
                    modes[cid] = mode
        thread = data.get("thread")
        rate = None
        raw_rate = data.get("rate")
        if isinstance(raw_rate, Mapping):
            q, w = raw_rate.get("questions"), raw_rate.get("window")
            if (isinstance(q, int) and not isinstance(q, bool) and 0 <= q <= MAX_QUESTIONS
                    and isinstance(w, (int, float)) and not isinstance(w, bool) and MIN_WINDOW <= w <= MAX_WINDOW):
                rate = RateLimit(q, float(w))
        deny = _ids(data.get("deny"))
        return cls(allow=_ids(data.get("allow")) - deny, deny=deny, modes=modes,
                   thread=thread if isinstance(thread, bool) else None, rate=rate)

    def to_json(self) -> dict[str, Any]:
        """The row to store: only what differs from the defaults (ids as strings: snowflakes exceed 2**53)."""
        out: dict[str, Any] = {}
        if self.allow:
            out["allow"] = [str(i) for i in sorted(self.allow)]
        if self.deny:
            out["deny"] = [str(i) for i in sorted(self.deny)]
        if self.modes:
            out["modes"] = {str(k): v for k, v in sorted(self.modes.items())}
        if self.thread is not None:
            out["thread"] = self.thread
        if self.rate is not None:
            out["rate"] = {"questions": self.rate.questions, "window": self.rate.window}
        return out

    # ---- decisions -------------------------------------------------------------------------------

    @property
    def restricts(self) -> bool:
        """True when some channels are listed (deciding needs to know a message's channel and category)."""
        return bool(self.allow or self.deny)

    def listens(self, where: Where) -> bool:
        """Whether qabot may answer anything posted here (mentions included)."""
        ids = where.ids
        if any(i in self.deny for i in ids):
            return False
        return not self.allow or any(i in self.allow for i in ids)

    def mode(self, channel_id: int) -> str:
        return self.modes.get(channel_id, MENTION)

    def answers_unmentioned(self, where: Where, *, forum_post: bool = False) -> bool:
        """Whether a message that does not address the bot (no mention, not a reply to it, not in one of its
        threads) is a question anyway: any message directly in an ``every`` channel, or the starter message
        of a new post (``forum_post``) in a ``forum`` channel."""
        if not self.listens(where):
            return False
        if forum_post:
            return self.mode(where.channel_id) == FORUM
        return where.thread_id is None and self.mode(where.channel_id) == EVERY

    def answer_in_thread(self, default: bool) -> bool:
        return default if self.thread is None else self.thread

    def rate_limit(self, questions: int, window: float) -> tuple[int, float]:
        """(questions, window seconds) for this server; the arguments are the operator's defaults."""
        return (questions, window) if self.rate is None else (self.rate.questions, self.rate.window)

    # ---- changes (validated; each returns new settings) -------------------------------------------

    def with_channel(self, action: str, channel_id: int | None = None) -> GuildSettings:
        """``allow`` / ``deny`` a channel (moving it off the other list), ``remove`` it from both lists, or
        ``clear`` both lists."""
        if action == "clear":
            return replace(self, allow=frozenset(), deny=frozenset())
        if action not in CHANNEL_ACTIONS:
            raise SettingsError(f"Unknown action {action!r}: use one of {', '.join(CHANNEL_ACTIONS)}.")
        if channel_id is None:
            raise SettingsError("Name a channel (or run the command in it).")
        if action == "remove":
            if channel_id not in self.allow | self.deny:
                raise SettingsError(f"<#{channel_id}> is on neither list.")
            return replace(self, allow=self.allow - {channel_id}, deny=self.deny - {channel_id})
        target = self.allow if action == "allow" else self.deny
        if channel_id not in target and len(target) >= MAX_LISTED:
            raise SettingsError(f"The {action} list is full ({MAX_LISTED} channels); list a category instead.")
        if action == "allow":
            return replace(self, allow=self.allow | {channel_id}, deny=self.deny - {channel_id})
        return replace(self, allow=self.allow - {channel_id}, deny=self.deny | {channel_id})

    def with_mode(self, channel_id: int, mode: str, *, forum_channel: bool) -> GuildSettings:
        """Set a channel's mode. ``forum`` is for forum channels only, ``every`` for channels with messages."""
        if mode not in MODES:
            raise SettingsError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
        if mode == FORUM and not forum_channel:
            raise SettingsError(f"<#{channel_id}> is not a forum channel: *new forum posts* is for forums. "
                                "Use *every message* to answer everything posted in it.")
        if mode == EVERY and forum_channel:
            raise SettingsError(f"<#{channel_id}> is a forum: its messages are in posts. Use *new forum posts* "
                                "to answer each new post.")
        modes = {k: v for k, v in self.modes.items() if k != channel_id}
        if mode != MENTION:
            if len(modes) >= MAX_MODES:
                raise SettingsError(f"At most {MAX_MODES} channels can have their own mode.")
            modes[channel_id] = mode
        return replace(self, modes=modes)

    def with_thread(self, value: bool | None) -> GuildSettings:
        return replace(self, thread=value)

    def with_rate(self, questions: int | None, window: float | None, *, default_window: float) -> GuildSettings:
        """This server's limit: ``questions`` per ``window`` seconds (a window not given keeps the current
        one). Both None: back to the operator's default."""
        if questions is None and window is None:
            return replace(self, rate=None)
        if questions is None:
            if self.rate is None:
                raise SettingsError("Give `questions:` too (how many per window); 0 means no limit.")
            questions = self.rate.questions
        if window is None:
            window = self.rate.window if self.rate is not None else default_window
        if not 0 <= questions <= MAX_QUESTIONS:
            raise SettingsError(f"`questions:` must be between 0 (no limit) and {MAX_QUESTIONS}.")
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise SettingsError(f"`seconds:` must be between {MIN_WINDOW} and {MAX_WINDOW}.")
        return replace(self, rate=RateLimit(questions, float(window)))


# ---- describing settings (plain text with Discord channel mentions) ----------------------------------


def channel_list(ids: Iterable[int], limit: int = 20) -> str:
    ids = sorted(ids)
    shown = ", ".join(f"<#{i}>" for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def describe_channels(s: GuildSettings) -> str:
    if not s.restricts:
        return "every channel it can read"
    parts = []
    if s.allow:
        parts.append(f"only in {channel_list(s.allow)}")
    if s.deny:
        parts.append(f"never in {channel_list(s.deny)}")
    return "; ".join(parts)


def describe_rate(questions: int, window: float) -> str:
    if questions <= 0:
        return "no limit"
    return f"{questions} question{'s' if questions != 1 else ''} per {window:g} s per member"
