"""The bot's state (answer records, server settings; see embeddings/store/botstate.py) in qabot.sqlite3, on
its own connection like the votes (WAL: never waits for an ingest). Several bot processes on one host may
share the file: every write is one statement or one IMMEDIATE transaction."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embeddings.store.botstate import AnswerRecord, BotState, saved_at
from embeddings.store.embedded.sqlite import immediate, side_connection

SCHEMA = """
CREATE TABLE IF NOT EXISTS bot_answers (
    message_id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL,
    guild_id INTEGER,
    conversation TEXT NOT NULL,
    asker_id INTEGER NOT NULL,
    scope TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bot_answers_conversation ON bot_answers(conversation, message_id);
CREATE INDEX IF NOT EXISTS bot_answers_created ON bot_answers(created_at);
CREATE TABLE IF NOT EXISTS bot_guild_settings (
    guild_id INTEGER PRIMARY KEY,
    settings TEXT NOT NULL
);
"""

_COLUMNS = "message_id, channel_id, guild_id, conversation, asker_id, scope, question, answer, answer_json, created_at"


def _record(row: tuple) -> AnswerRecord:
    return AnswerRecord(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]), row[3], int(row[4]),
                        row[5], row[6], row[7], row[8], row[9])


class BotStateStore(BotState):
    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self._conn = side_connection(self.path, SCHEMA)
        self._lock = threading.Lock()

    def save_answer(self, record: AnswerRecord) -> None:
        # One UTC form whatever the caller gave: forget_answers compares the text.
        created = saved_at(datetime.fromisoformat(record.created_at) if record.created_at else datetime.now(UTC))
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO bot_answers({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.message_id, record.channel_id, record.guild_id, record.conversation, record.asker_id,
                 record.scope, record.question, record.answer, record.answer_json, created))

    def answer(self, message_id: int) -> AnswerRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM bot_answers WHERE message_id = ?",
                                     (int(message_id),)).fetchone()
        return None if row is None else _record(row)

    def conversation(self, key: str, limit: int = 5) -> list[AnswerRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM bot_answers WHERE conversation = ? ORDER BY message_id DESC LIMIT ?",
                (key, int(limit))).fetchall()
        return [_record(r) for r in reversed(rows)]

    def forget_answers(self, before: datetime) -> int:
        with self._lock:
            return self._conn.execute("DELETE FROM bot_answers WHERE created_at < ?", (saved_at(before),)).rowcount

    def guild_settings(self, guild_id: int) -> dict[str, Any]:
        with self._lock:
            row = self._conn.execute("SELECT settings FROM bot_guild_settings WHERE guild_id = ?",
                                     (int(guild_id),)).fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def update_guild_settings(self, guild_id: int,
                              change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        # IMMEDIATE takes the database's write lock before the read: another process's update waits (up to
        # the connection timeout) instead of reading what this one is about to replace.
        with self._lock, immediate(self._conn):
            row = self._conn.execute("SELECT settings FROM bot_guild_settings WHERE guild_id = ?",
                                     (int(guild_id),)).fetchone()
            values = change({} if row is None else dict(json.loads(row[0])))
            self._conn.execute("INSERT OR REPLACE INTO bot_guild_settings(guild_id, settings) VALUES (?, ?)",
                               (int(guild_id), json.dumps(values, sort_keys=True)))
        return values

    def close(self) -> None:
        with self._lock:
            self._conn.close()
