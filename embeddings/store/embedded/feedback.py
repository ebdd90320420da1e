"""Readers' votes on answers (thumbs up / down), kept next to the index in qabot.sqlite3.

Own table and own connection (the database is already in WAL mode, so votes never wait for an ingest).
The salted user hash, the export to evaluation questions and the correction rule are the Feedback base's
(store/feedback.py). A file from before corrections were kept gets its ``correction`` column on open, in
place: its votes stay, with no correction."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from embeddings.store.embedded.sqlite import side_connection
from embeddings.store.feedback import Correction, Feedback, FeedbackRow, upsert_correction

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_salt (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    salt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    answer_key TEXT NOT NULL,          -- which answer was rated (e.g. the chat message id)
    user_hash TEXT NOT NULL,           -- sha256(salt + user id), never the raw id
    scope TEXT NOT NULL DEFAULT '',    -- the guild's index scope ('' outside guilds)
    question TEXT NOT NULL,
    answer TEXT NOT NULL,              -- '' when the bot said it couldn't find it
    found INTEGER NOT NULL,
    passage_ids TEXT NOT NULL,         -- JSON list, best first
    cited_passage TEXT NOT NULL,       -- text of the passage the answer came from (survives a removal)
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    created_at TEXT NOT NULL,
    correction TEXT NOT NULL DEFAULT '',  -- a 👎's form: JSON {"wrong", "right"}, '' for none
    UNIQUE (answer_key, user_hash)
);
CREATE INDEX IF NOT EXISTS feedback_question ON feedback(question);
"""
# What a file written before a column existed gets on open (SQLite adds a column in place, rows kept).
COLUMNS_ADDED = (("correction", "TEXT NOT NULL DEFAULT ''"),)


class FeedbackStore(Feedback):
    """Votes in the index's SQLite file (own connection: WAL, so votes never wait for an ingest)."""

    TABLE = "feedback"

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self._conn = side_connection(self.path, SCHEMA)
        self._lock = threading.Lock()
        with self._lock:
            self._add_missing_columns()
            self._conn.execute("INSERT OR IGNORE INTO feedback_salt(k, salt) VALUES (1, ?)", (secrets.token_hex(16),))
            self.salt = self._conn.execute("SELECT salt FROM feedback_salt WHERE k = 1").fetchone()[0]

    def _add_missing_columns(self) -> None:
        have = {r[1] for r in self._conn.execute("PRAGMA table_info(feedback)")}
        for name, decl in COLUMNS_ADDED:
            if name in have:
                continue
            try:
                self._conn.execute(f"ALTER TABLE feedback ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise

    def record(self, *, answer_key: str, user_id: int | str, scope: str, question: str, answer: str, found: bool,
               passage_ids: Sequence[int], cited_passage: str, vote: int,
               correction: Correction | None = None) -> bool:
        """Store a vote (+1 / -1); a second vote by the same user on the same answer replaces the first, and
        the correction follows upsert_correction. Returns True when it replaced an earlier vote."""
        if vote not in (1, -1):
            raise ValueError(f"vote must be 1 or -1, got {vote!r}")
        uh = self.user_hash(user_id)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            before = self._conn.execute("SELECT 1 FROM feedback WHERE answer_key = ? AND user_hash = ?",
                                        (answer_key, uh)).fetchone()
            self._conn.execute(
                "INSERT INTO feedback(answer_key, user_hash, scope, question, answer, found, passage_ids,"
                " cited_passage, vote, created_at, correction) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(answer_key, user_hash) DO UPDATE SET vote = excluded.vote,"
                " created_at = excluded.created_at, correction = CASE WHEN excluded.vote > 0 THEN ''"
                " WHEN ? THEN excluded.correction ELSE feedback.correction END",
                (answer_key, uh, scope, question, answer, int(found), json.dumps([int(i) for i in passage_ids]),
                 cited_passage, vote, now, upsert_correction("", vote, correction), correction is not None),
            )
        return before is not None

    def rows(self) -> list[FeedbackRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT answer_key, user_hash, scope, question, answer, found, passage_ids, cited_passage, vote,"
                " created_at, correction FROM feedback ORDER BY id").fetchall()
        return [FeedbackRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), tuple(json.loads(r[6])), r[7], r[8], r[9],
                            Correction.from_column(r[10])) for r in rows]

    def import_rows(self, salt: str, rows: Sequence[FeedbackRow]) -> None:
        """`qabot migrate`: votes keep their user hashes, so the salt comes along (later votes must match)."""
        with self._lock, self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("INSERT OR REPLACE INTO feedback_salt(k, salt) VALUES (1, ?)", (salt,))
            self._conn.executemany(
                "INSERT OR IGNORE INTO feedback(answer_key, user_hash, scope, question, answer, found, passage_ids,"
                " cited_passage, vote, created_at, correction) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(r.answer_key, r.user_hash, r.scope, r.question, r.answer, int(r.found),
                  json.dumps(list(r.passage_ids)), r.cited_passage, r.vote, r.created_at, r.correction.to_column())
                 for r in rows])
            self._conn.execute("COMMIT")
        self.salt = salt

    def close(self) -> None:
        with self._lock:
            self._conn.close()
