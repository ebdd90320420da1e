"""The PostgreSQL store's schema, created and migrated by qabot itself.

Each migration is a list of statements run in one transaction together with its row in
`qabot_schema_migrations`, so a migration is either wholly applied or not at all. Concurrent starters (many
bot processes restarting at once) are serialised by a transaction-level advisory lock and re-check the
applied versions under it, which makes `migrate()` idempotent and safe to call on every open.

The vector dimension is not known to a migration (it is the model's): the columns are created as untyped
`vector`, and `bind_dimension()` fixes them to `vector(N)` and builds the HNSW index in the same transaction
that records the store's config (see pgstore.PgIndex)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

# Any constant works; it only has to differ from other advisory-lock users of the same database.
MIGRATION_LOCK = 0x71AB07
BASE_SCOPE_SQL = "''"

MIGRATIONS: Sequence[tuple[int, str, Sequence[str]]] = (
    (1, "documents, passages with vectors and full-text, embeddings, meta", (
        "CREATE EXTENSION IF NOT EXISTS vector",
        """CREATE TABLE qabot_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE documents (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            doc_key TEXT NOT NULL UNIQUE,
            scope TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,
            title TEXT NOT NULL,
            outlet TEXT,
            published TEXT,
            ingested_at TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            text TEXT NOT NULL,
            UNIQUE (scope, source)
        )""",
        # scope is copied from the document: filtering by it must not need a join inside a vector scan.
        # Sentences are two offset arrays (into the document text) instead of a row each: they are only
        # ever read with their passage.
        """CREATE TABLE passages (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            doc_id BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            scope TEXT NOT NULL,
            ordinal INTEGER NOT NULL,
            paragraph INTEGER NOT NULL,
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            text TEXT NOT NULL,
            embed_hash TEXT NOT NULL,
            sentence_starts INTEGER[] NOT NULL,
            sentence_ends INTEGER[] NOT NULL,
            embedding vector NOT NULL,
            tsv tsvector NOT NULL
        )""",
        "CREATE INDEX passages_doc ON passages(doc_id)",
        "CREATE INDEX passages_hash ON passages(embed_hash)",
        # Guild rows only: the exact scan over one guild's own passages starts from this index.
        "CREATE INDEX passages_guild_scope ON passages(scope) WHERE scope <> ''",
        "CREATE INDEX passages_tsv ON passages USING gin(tsv)",
        # One row per distinct passage hash: what reuse on re-ingest and `qabot migrate` read instead of
        # encoding again. sentences: float32 matrix (sentences x dimension), like the embedded store.
        """CREATE TABLE embeddings (
            hash TEXT PRIMARY KEY,
            vector vector NOT NULL,
            sentences BYTEA NOT NULL
        )""",
        """CREATE TABLE feedback_salt (k INTEGER PRIMARY KEY CHECK (k = 1), salt TEXT NOT NULL)""",
        """CREATE TABLE feedback (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            answer_key TEXT NOT NULL,
            user_hash TEXT NOT NULL,
            scope TEXT NOT NULL DEFAULT '',
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            found BOOLEAN NOT NULL,
            passage_ids TEXT NOT NULL,
            cited_passage TEXT NOT NULL,
            vote INTEGER NOT NULL CHECK (vote IN (-1, 1)),
            created_at TEXT NOT NULL,
            UNIQUE (answer_key, user_hash)
        )""",
        "CREATE INDEX feedback_question ON feedback(question)",
        "INSERT INTO qabot_meta(key, value) VALUES ('generation', '0')",
    )),
    # Embeddings whose last passage went are queued here in the transaction that removed the passage and
    # deleted when the writer finishes (PgWriter.close): a later batch of the same ingest, prepared before
    # that commit, may still reuse them. Queued, not lost, when the writer dies first: the next one sweeps.
    (2, "embeddings queued for the orphan sweep", (
        """CREATE TABLE qabot_sweep (hash TEXT PRIMARY KEY)""",
    )),
    # The Discord bot's state (embeddings/store/botstate.py): answers by bot message id, per-server settings.
    (3, "bot state: answer records and server settings", (
        """CREATE TABLE bot_answers (
            message_id BIGINT PRIMARY KEY,
            channel_id BIGINT NOT NULL,
            guild_id BIGINT,
            conversation TEXT NOT NULL,
            asker_id BIGINT NOT NULL,
            scope TEXT NOT NULL DEFAULT '',
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            answer_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX bot_answers_conversation ON bot_answers(conversation, message_id)",
        """CREATE TABLE bot_guild_settings (guild_id BIGINT PRIMARY KEY, settings TEXT NOT NULL)""",
    )),
    # What a reader wrote in the 👎 form, kept with the vote (store/feedback.py: Correction). Existing votes
    # keep their rows with no correction.
    (4, "feedback corrections", (
        "ALTER TABLE feedback ADD COLUMN correction TEXT NOT NULL DEFAULT ''",
    )),
    # Answer records are forgotten after QABOT_ANSWER_DAYS (BotState.forget_answers, daily): by age.
    (5, "answer records by age", (
        "CREATE INDEX bot_answers_created ON bot_answers(created_at)",
    )),
)

LATEST = MIGRATIONS[-1][0]


def applied_versions(conn: psycopg.Connection) -> set[int]:
    exists = conn.execute("SELECT to_regclass('qabot_schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {r[0] for r in conn.execute("SELECT version FROM qabot_schema_migrations")}


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the missing migrations (each in its own transaction); returns the versions applied now."""
    done: list[int] = []
    if LATEST in applied_versions(conn):  # the common case: one cheap read, no lock
        conn.commit()
        return done
    conn.commit()
    for version, _name, statements in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS qabot_schema_migrations ("
                         " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                         " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            if version in applied_versions(conn):
                continue  # another process applied it while we waited for the lock
            for sql in statements:
                conn.execute(sql)  # type: ignore[arg-type]
            conn.execute("INSERT INTO qabot_schema_migrations(version, name) VALUES (%s, %s)", (version, _name))
            done.append(version)
    return done


def bind_dimension(conn: psycopg.Connection, dimension: int, *, hnsw_m: int = 16, ef_construction: int = 64) -> None:
    """Fix the vector columns to the model's dimension and index the base corpus; inside the caller's
    transaction. The HNSW index is partial (base corpus only), so a guild's query never post-filters an
    approximate scan: see PgIndex.dense_search."""
    dim = int(dimension)
    row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'passages'::regclass"
                       " AND attname = 'embedding'").fetchone()
    if row is None or row[0] != f"vector({dim})":  # (ALTER TYPE rewrites the table: only on an empty, new store)
        conn.execute(f"ALTER TABLE passages ALTER COLUMN embedding TYPE vector({dim})")
        conn.execute(f"ALTER TABLE embeddings ALTER COLUMN vector TYPE vector({dim})")
    conn.execute(f"CREATE INDEX IF NOT EXISTS passages_base_hnsw ON passages USING hnsw (embedding vector_ip_ops)"
                 f" WITH (m = {int(hnsw_m)}, ef_construction = {int(ef_construction)}) WHERE scope = {BASE_SCOPE_SQL}")
