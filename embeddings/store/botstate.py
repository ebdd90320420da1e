"""What the Discord bot remembers across restarts and shares between its processes, kept in the index's store.

- Answer records, under the id of the bot message that shows the answer: the question, the answer text, the
  full answer as JSON (the passages shown, for the Sources button after a restart), the scope it was answered
  in, who asked, and the conversation it belongs to (``thread:<id>`` for an answer thread, else the key of the
  first answer of a reply chain), so a follow-up can be answered with the earlier turns.
- Per-server settings (channels, modes, the rate limit; see bot/cogs/settings), as one JSON object a guild.

Both are operational state, not training data: nothing here is exported, and answer records are forgotten
after QABOT_ANSWER_DAYS (the bot calls ``forget_answers`` daily), so the store does not grow for ever. Each store implements the rows
(store/embedded/botstate.py in qabot.sqlite3, store/postgres/botstate.py in the store's database)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class AnswerRecord:
    message_id: int          # the bot message showing the answer
    channel_id: int          # where it is (a thread's id for an answer in a thread)
    guild_id: int | None
    conversation: str        # "thread:<id>", or "reply:<message id of the chain's first answer>"
    asker_id: int
    scope: str
    question: str
    answer: str              # the answer text ('' when nothing was found)
    answer_json: str         # Answer.to_json() as JSON text: everything Sources shows
    created_at: str = ""     # saved_at() of when it was saved (set by the store)


def saved_at(when: datetime) -> str:
    """The form ``created_at`` is kept in: UTC, to the second, so that text order is time order in both
    stores (``forget_answers`` compares them as text)."""
    return when.astimezone(UTC).isoformat(timespec="seconds")


class BotState(ABC):
    """The bot's state store. The caller (QAService) closes it."""

    @abstractmethod
    def save_answer(self, record: AnswerRecord) -> None:
        """Store (or replace) the record of the answer shown in ``record.message_id``."""

    @abstractmethod
    def answer(self, message_id: int) -> AnswerRecord | None: ...

    @abstractmethod
    def conversation(self, key: str, limit: int = 5) -> list[AnswerRecord]:
        """The last ``limit`` answers of a conversation, oldest first."""

    @abstractmethod
    def forget_answers(self, before: datetime) -> int:
        """Delete the records of answers saved before ``before`` (their buttons then say they forgot the
        answer, and a follow-up in their thread starts a new conversation); returns how many went."""

    @abstractmethod
    def guild_settings(self, guild_id: int) -> dict[str, Any]:
        """A server's settings as saved ({} when none were)."""

    @abstractmethod
    def update_guild_settings(self, guild_id: int,
                              change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Read a server's settings, apply ``change`` and save its result as one transaction that holds off
        every other writer, in this process or another (two admins changing two settings at once in two bot
        processes both keep their change). If ``change`` raises, nothing is written. Returns what was saved."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> BotState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
