"""The bot's state (answer records, server settings; see embeddings/store/botstate.py) in PostgreSQL, on the
store's pool, so every bot process on every host sees the same answers, threads and settings. The tables
are created by migration 2 in store/postgres/schema.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from embeddings.store.botstate import AnswerRecord, BotState, saved_at

_COLUMNS = "message_id, channel_id, guild_id, conversation, asker_id, scope, question, answer, answer_json, created_at"


def _record(row: tuple) -> AnswerRecord:
    return AnswerRecord(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]), row[3], int(row[4]),
                        row[5], row[6], row[7], row[8], row[9])


class PgBotStateStore(BotState):
    def __init__(self, pool: Any) -> None:  # noqa: D107 - the pool belongs to the PgIndex
        self._pool = pool

    def save_answer(self, record: AnswerRecord) -> None:
        # One UTC form whatever the caller gave: forget_answers compares the text.
        created = saved_at(datetime.fromisoformat(record.created_at) if record.created_at else datetime.now(UTC))
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO bot_answers({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (message_id) DO UPDATE SET channel_id = excluded.channel_id,"
                " guild_id = excluded.guild_id, conversation = excluded.conversation, asker_id = excluded.asker_id,"
                " scope = excluded.scope, question = excluded.question, answer = excluded.answer,"
                " answer_json = excluded.answer_json, created_at = excluded.created_at",
                (record.message_id, record.channel_id, record.guild_id, record.conversation, record.asker_id,
                 record.scope, record.question, record.answer, record.answer_json, created))

    def answer(self, message_id: int) -> AnswerRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM bot_answers WHERE message_id = %s",
                               (int(message_id),)).fetchone()
        return None if row is None else _record(row)

    def conversation(self, key: str, limit: int = 5) -> list[AnswerRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM bot_answers WHERE conversation = %s ORDER BY message_id DESC LIMIT %s",
                (key, int(limit))).fetchall()
        return [_record(r) for r in reversed(rows)]

    def forget_answers(self, before: datetime) -> int:
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM bot_answers WHERE created_at < %s", (saved_at(before),)).rowcount

    def guild_settings(self, guild_id: int) -> dict[str, Any]:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT settings FROM bot_guild_settings WHERE guild_id = %s",
                               (int(guild_id),)).fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def update_guild_settings(self, guild_id: int,
                              change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        with self._pool.connection() as conn, conn.transaction():
            # The row is made first (rolled back with the rest if `change` raises) so that FOR UPDATE has
            # something to lock: another process's update waits here until this one commits.
            conn.execute("INSERT INTO bot_guild_settings(guild_id, settings) VALUES (%s, '{}')"
                         " ON CONFLICT (guild_id) DO NOTHING", (int(guild_id),))
            row = conn.execute("SELECT settings FROM bot_guild_settings WHERE guild_id = %s FOR UPDATE",
                               (int(guild_id),)).fetchone()
            values = change(dict(json.loads(row[0])))
            conn.execute("UPDATE bot_guild_settings SET settings = %s WHERE guild_id = %s",
                         (json.dumps(values, sort_keys=True), int(guild_id)))
        return values

    def close(self) -> None:
        pass
