"""Readers' votes in PostgreSQL: the Feedback behaviour (salted user hashes, one vote per user and
answer, the same export) on the store's own database, so every bot process records into one place."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from embeddings.store.feedback import Correction, Feedback, FeedbackRow, upsert_correction


class PgFeedbackStore(Feedback):
    def __init__(self, pool: Any) -> None:  # noqa: D107 - the pool belongs to the PgIndex, not to us
        self._pool = pool
        with pool.connection() as conn:
            conn.execute("INSERT INTO feedback_salt(k, salt) VALUES (1, %s) ON CONFLICT (k) DO NOTHING",
                         (secrets.token_hex(16),))
            self.salt = conn.execute("SELECT salt FROM feedback_salt WHERE k = 1").fetchone()[0]

    def record(self, *, answer_key: str, user_id: int | str, scope: str, question: str, answer: str, found: bool,
               passage_ids: Sequence[int], cited_passage: str, vote: int,
               correction: Correction | None = None) -> bool:
        if vote not in (1, -1):
            raise ValueError(f"vote must be 1 or -1, got {vote!r}")
        uh = self.user_hash(user_id)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._pool.connection() as conn:
            # xmax <> 0 on the returned row: the upsert updated an existing vote instead of inserting.
            row = conn.execute(
                "INSERT INTO feedback(answer_key, user_hash, scope, question, answer, found, passage_ids,"
                " cited_passage, vote, created_at, correction) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (answer_key, user_hash) DO UPDATE SET vote = excluded.vote,"
                " created_at = excluded.created_at, correction = CASE WHEN excluded.vote > 0 THEN ''"
                " WHEN %s THEN excluded.correction ELSE feedback.correction END RETURNING (xmax <> 0)",
                (answer_key, uh, scope, question, answer, bool(found), json.dumps([int(i) for i in passage_ids]),
                 cited_passage, vote, now, upsert_correction("", vote, correction), correction is not None)).fetchone()
        return bool(row[0])

    def rows(self) -> list[FeedbackRow]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT answer_key, user_hash, scope, question, answer, found, passage_ids, cited_passage, vote,"
                " created_at, correction FROM feedback ORDER BY id").fetchall()
        return [FeedbackRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), tuple(json.loads(r[6])), r[7], r[8], r[9],
                            Correction.from_column(r[10])) for r in rows]

    def import_rows(self, salt: str, rows: Sequence[FeedbackRow]) -> None:
        """`qabot migrate`: votes keep their user hashes, so the salt comes along (later votes must match)."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO feedback_salt(k, salt) VALUES (1, %s) ON CONFLICT (k) DO UPDATE"
                         " SET salt = excluded.salt", (salt,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO feedback(answer_key, user_hash, scope, question, answer, found, passage_ids,"
                    " cited_passage, vote, created_at, correction) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (answer_key, user_hash) DO NOTHING",
                    [(r.answer_key, r.user_hash, r.scope, r.question, r.answer, r.found, json.dumps(list(r.passage_ids)),
                      r.cited_passage, r.vote, r.created_at, r.correction.to_column()) for r in rows])
        self.salt = salt

    def close(self) -> None:
        pass
