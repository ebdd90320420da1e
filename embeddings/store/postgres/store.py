"""The PostgreSQL + pgvector store: the same IndexBackend interface as the embedded store (store/embedded/index.py EmbeddedIndex), for many processes on many machines.

Everything lives in the database (no cache files): documents, passages with their vector and tsvector,
one row per distinct passage embedding (with the sentence matrix), feedback, and the store's config in
`qabot_meta`, so any bot process or ingest job anywhere opens the same corpus with one URL.

Design choices (figures in docs/scale.md):
- Dense search: an HNSW index (inner product; vectors are L2-normalised) that is *partial*, covering the
  base corpus only (scope ''). A guild's query is the HNSW top-k of the base corpus united with an exact
  scan of that guild's own passages (index on scope). Nothing is filtered after an approximate scan, which is
  what loses recall (a guild filter over an HNSW scan of everything kept 0.07 of the true top 10 here).
  A guild's own set is small (uploads by its members); the exact scan costs one dot product per row.
- Keyword search: PostgreSQL full-text (english configuration, GIN index), ranked with ts_rank over an OR
  of the question's lexemes, so a passage needs some of the words, not all, like BM25.
- Writes: each put_documents / delete_document is one transaction, retried on deadlock. Documents are
  replaced by (scope, source) under a transaction advisory lock on that pair, so concurrent ingests of the
  same document serialise instead of racing into duplicates (the UNIQUE constraint backs this up).
- Readers need no refresh: every query reads committed state. `generation` still counts commits.
- Read replicas (optional, QABOT_STORE_READ): the question path (searches, passages, vectors, stats) reads
  from pools on streaming replicas, round robin; every write, and the reads a write decides on (is this
  document already stored? which embeddings can be reused? which document does a removal name?), use the
  primary, so an ingest never acts on a replica's lagging view."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from embeddings.config import IndexConfig
from embeddings.encoders.base import Encoder, runtime_of
from embeddings.errors import IndexBusy, IndexCorrupt, IndexMismatch, QabotError
from embeddings.models import BASE_SCOPE
from embeddings.store.base import (
    IntegrityReport,
    StoreCapabilities,
    check_compatible,
    check_writer_backend,
    encoder_backend,
    keyword_text,
    new_config,
)
from embeddings.store.botstate import BotState
from embeddings.store.feedback import Feedback
from embeddings.store.records import DocumentRow, NewDocument, NewPassage, PassageRow, PassageVectors
from embeddings.store.urls import check_read_urls, redact_url

TS_CONFIG = "english"


class StoreUnavailable(QabotError):
    """The PostgreSQL server cannot be reached or lacks what qabot needs (pgvector)."""


class StoreReadOnly(QabotError):
    """The store can be read but not written: a read-only session (hot standby) or a role without grants."""


class StoreFull(QabotError):
    """The PostgreSQL server ran out of disk space (or another resource) during a write."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def translate_error(exc: BaseException, where: str, role: str = "") -> BaseException:
    """A database error as the one-line QabotError a user can act on (other exceptions: unchanged).

    Deadlocks and serialisation failures are left alone: PgIndex._write retries them."""
    import psycopg
    import psycopg.errors as pe
    from psycopg_pool import PoolTimeout

    msg = _first_line(exc)
    if isinstance(exc, QabotError) or isinstance(exc, pe.DeadlockDetected | pe.SerializationFailure):
        return exc
    if isinstance(exc, pe.ReadOnlySqlTransaction):
        return StoreReadOnly(f"The PostgreSQL store at {where} is read-only here ({msg}): answers work, but ingest "
                             "and rm need QABOT_STORE to name the primary, not a standby or a read-only session.")
    if isinstance(exc, pe.InsufficientPrivilege):
        who = f"role {role!r}" if role else "role in QABOT_STORE"
        return StoreReadOnly(f"The PostgreSQL {who} may not write to the store at {where} ({msg}): answers work; "
                             "ingest and rm need a role with INSERT, UPDATE and DELETE on qabot's tables.")
    if isinstance(exc, pe.DiskFull):
        return StoreFull(f"The PostgreSQL server at {where} is out of disk space ({msg}); nothing of this write "
                         "was committed: free space on the server and run it again.")
    if isinstance(exc, pe.InsufficientResources | pe.ProgramLimitExceeded):
        return StoreFull(f"The PostgreSQL server at {where} is out of resources ({msg}); nothing of this write "
                         "was committed: try again later or ask its administrator.")
    if isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"Lost the connection to PostgreSQL at {where} ({msg}); nothing of an unfinished "
                                "write was committed: run it again once the server is back.")
    if isinstance(exc, psycopg.Error):
        return QabotError(f"PostgreSQL at {where} failed ({type(exc).__name__}: {msg}).")
    return exc


class _Guarded:
    """A pool whose connection() turns database errors raised in its `with` block into one-line QabotErrors,
    and checks a pooled connection before handing it out (a server restart or pg_terminate_backend leaves
    dead sockets in the pool: they are replaced, not used)."""

    def __init__(self, pool: Any, where: str, timeout: float) -> None:
        self.pool = pool
        self.where = where
        self.timeout = timeout

    @contextmanager
    def connection(self) -> Iterator[Any]:
        role = ""
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                role = conn.info.user
                yield conn
        except Exception as exc:
            err = translate_error(exc, self.where, role)
            if err is exc:
                raise
            raise err from exc

    def close(self) -> None:
        self.pool.close()


def _require_driver() -> None:
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise StoreUnavailable("QABOT_STORE names PostgreSQL, but its drivers are not installed: "
                               "pip install 'qabot[postgres]'") from exc


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for a (scope, source) pair."""
    return int.from_bytes(hashlib.sha1("\0".join(parts).encode()).digest()[:8], "big", signed=True)


def _or_query(rows: str) -> str:
    # OR of stemmed lexemes (stop words already dropped by the configuration): BM25-like "any term".
    return f"(SELECT to_tsquery('simple', coalesce(string_agg(quote_literal(lexeme), ' | '), '')) FROM {rows})"


# The question's lexemes with PostgreSQL's own estimate of how many passages hold each: ANALYZE keeps the
# most common elements of passages.tsv with their row fractions (pg_stats, replicated to standbys, refreshed
# by autovacuum). A lexeme missing there is rarer than every listed one and is estimated at 0. Candidates are
# the rows holding the rarer lexemes: ascending by estimate while the running total stays within
# %(budget)s rows, and always the rarest one. They are ranked against *all* the question's lexemes (tq.q),
# so a candidate's score is the one the plain OR query gives it; what is skipped is ranking rows that hold
# only very common lexemes (every row matching any lexeme cost ts_rank time before: 100k passages, p50 110
# -> 26 ms; see docs/scale.md). Without statistics (a new, small store) every estimate is 0: the plain query.
_KEYWORD_SQL = (
    "WITH st AS (SELECT s.most_common_elems::text::text[] AS e, s.most_common_elem_freqs AS f,"
    "   greatest(c.reltuples, 0) AS n FROM pg_stats s"
    "   JOIN pg_class c ON c.relname = s.tablename AND c.relnamespace = to_regnamespace(s.schemaname)"
    "   WHERE s.schemaname = current_schema() AND s.tablename = 'passages' AND s.attname = 'tsv'),"
    " lex AS (SELECT t.lexeme, coalesce((SELECT st.f[array_position(st.e, t.lexeme)] * st.n FROM st), 0) AS est"
    f"   FROM unnest(to_tsvector('{TS_CONFIG}', %(q)s)) t),"
    " ranked AS (SELECT lexeme, sum(est) OVER w AS cum, row_number() OVER w AS i FROM lex"
    "   WINDOW w AS (ORDER BY est, lexeme)),"
    f" tq AS (SELECT {_or_query('ranked')} AS q,"
    f"   {_or_query('ranked WHERE cum <= %(budget)s OR i = 1')} AS c),"
    # ts_rank (term frequency; normalisation 1 divides by 1 + log(length), like BM25's length penalty).
    # Not ts_rank_cd: cover density also weighs proximity and cost 4.5x the time per ranked row.
    " top AS (SELECT p.id, ts_rank(p.tsv, tq.q, 1) AS r FROM passages p, tq"
    "   WHERE %(k)s > 0 AND p.tsv @@ tq.c AND (p.scope = '' OR p.scope = %(scope)s)"
    "   ORDER BY r DESC, p.id LIMIT %(k)s),"
    " extra AS (SELECT p.id, CASE WHEN p.tsv @@ tq.q THEN ts_rank(p.tsv, tq.q, 1) ELSE 0 END AS r"
    "   FROM passages p, tq WHERE p.id = ANY(%(also)s))"
    " SELECT id, r FROM top WHERE r > 0 UNION SELECT id, r FROM extra")


def _generation(value: Any, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IndexCorrupt(f"The 'generation' row of qabot_meta in {where} is not a number ({value!r}): set it back "
                           "with UPDATE qabot_meta SET value = '0' WHERE key = 'generation' (it only counts commits)."
                           ) from None


def _bad_config(where: str, exc: BaseException, dimension: str = "") -> IndexCorrupt:
    dim = f", \"dimension\": {dimension}" if dimension else ""
    return IndexCorrupt(
        f"The 'config' row of qabot_meta in {where} is unreadable ({type(exc).__name__}: {_first_line(exc)}): "
        f"restore it from a backup, or set it to the JSON {{\"model\": \"<the model it was built with>\"{dim}}} "
        "with UPDATE qabot_meta SET value = '...' WHERE key = 'config'; or ingest again into an empty database.")


def _parse_config(text: Any, where: str, conn: Any = None) -> IndexConfig:
    try:
        cfg = IndexConfig.from_json(text)
        if not isinstance(cfg.model, str) or not cfg.model or cfg.dimension <= 0:
            raise ValueError("no model or dimension")
        return cfg
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        dimension = ""
        if conn is not None:  # the vector column's type says what the dimension was
            try:
                row = conn.execute("SELECT substring(format_type(atttypid, atttypmod) FROM 'vector\\((\\d+)\\)')"
                                   " FROM pg_attribute WHERE attrelid = 'passages'::regclass"
                                   " AND attname = 'embedding'").fetchone()
                dimension = row[0] or "" if row else ""
            except Exception:  # noqa: BLE001 - only a hint
                pass
        raise _bad_config(where, exc, dimension) from None


def _np(vec: Any) -> np.ndarray:
    # pgvector's adapter returns a Vector object (0.3+) or a numpy array (older): accept both.
    return np.asarray(vec.to_numpy() if hasattr(vec, "to_numpy") else vec, dtype=np.float32)


_DOC_COLS = "d.id, d.doc_key, d.scope, d.source, d.title, d.outlet, d.published, d.ingested_at, d.content_hash"


def _doc(row: Sequence[Any], passages: int = 0) -> DocumentRow:
    return DocumentRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], passages=passages)


class PgStore:
    """What callers reach as `index.store`: the embedded Store's read methods, over connection pools.

    `pool` serves the question path (a replica's, when there are any); `primary` serves the reads an ingest
    or a removal decides on, so that they see the last commit (default: `pool`)."""

    def __init__(self, pool: Any, dimension: int, primary: Any = None, where: str = "PostgreSQL") -> None:
        self._pool = pool
        self._primary = primary if primary is not None else pool
        self.dimension = dimension
        self.where = where

    def _all(self, sql: str, args: Any = None, *, primary: bool = False) -> list[tuple]:
        with (self._primary if primary else self._pool).connection() as conn:
            return conn.execute(sql, args).fetchall()

    def generation(self) -> int:
        rows = self._all("SELECT value FROM qabot_meta WHERE key = 'generation'")
        return _generation(rows[0][0] if rows else "0", self.where)

    def documents(self, scope: str | None = None) -> list[DocumentRow]:
        sql = f"SELECT {_DOC_COLS}, (SELECT count(*) FROM passages p WHERE p.doc_id = d.id) FROM documents d"
        args: tuple = ()
        if scope is not None:
            sql += " WHERE d.scope = %s"
            args = (scope,)
        # On the primary: what `qabot rm` / the bot's removal picks documents from.
        return [_doc(r, int(r[9])) for r in self._all(sql + " ORDER BY d.id", args, primary=True)]

    def document_by_source(self, scope: str, source: str) -> DocumentRow | None:
        # On the primary: ingest decides added / unchanged / updated from it.
        rows = self._all(f"SELECT {_DOC_COLS} FROM documents d WHERE d.scope = %s AND d.source = %s", (scope, source),
                         primary=True)
        return _doc(rows[0]) if rows else None

    def document_text(self, doc_id: int) -> str:
        rows = self._all("SELECT text FROM documents WHERE id = %s", (int(doc_id),))
        return rows[0][0] if rows else ""

    def existing_hashes(self, hashes: Any) -> set[str]:
        keys = list(dict.fromkeys(hashes))
        if not keys:
            return set()
        # On the primary: a hash a replica still shows may be gone there (put_documents would refuse it).
        # Not those queued for the sweep: another writer's close may drop them before this ingest commits
        # (this writer's own queue is only swept when it closes, after every batch it prepared).
        return {r[0] for r in self._all("SELECT hash FROM embeddings e WHERE hash = ANY(%s) AND NOT EXISTS"
                                        " (SELECT 1 FROM qabot_sweep s WHERE s.hash = e.hash)", (keys,), primary=True)}

    def count_passages_without_embedding(self, doc_ids: Sequence[int] | None = None) -> int:
        sql = ("SELECT count(*) FROM passages p WHERE NOT EXISTS (SELECT 1 FROM embeddings e"
               " WHERE e.hash = p.embed_hash)")
        if doc_ids is None:
            return int(self._all(sql, primary=True)[0][0])
        return int(self._all(sql + " AND p.doc_id = ANY(%s)", (list(doc_ids),), primary=True)[0][0])

    def passage_ids_and_scopes(self) -> tuple[np.ndarray, list[str]]:
        rows = self._all("SELECT id, scope FROM passages ORDER BY id")
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def iter_passage_texts(self) -> Iterator[tuple[int, str, str]]:
        yield from self._all("SELECT p.id, p.text, d.title FROM passages p JOIN documents d ON d.id = p.doc_id"
                             " ORDER BY p.id")

    def vectors_for(self, passage_ids: Sequence[int], dimension: int | None = None) -> np.ndarray:
        ids = [int(i) for i in passage_ids]
        out = np.zeros((len(ids), dimension or self.dimension), dtype=np.float32)
        if not ids:
            return out
        pos: dict[int, list[int]] = {}
        for i, pid in enumerate(ids):
            pos.setdefault(pid, []).append(i)
        for pid, vec in self._all("SELECT id, embedding FROM passages WHERE id = ANY(%s)", (list(pos),)):
            out[pos[pid]] = _np(vec)
        return out

    def sentence_vectors_for(self, passage_ids: Sequence[int], dimension: int | None = None) -> dict[int, np.ndarray]:
        dim = dimension or self.dimension
        rows = self._all("SELECT p.id, e.sentences FROM passages p JOIN embeddings e ON e.hash = p.embed_hash"
                         " WHERE p.id = ANY(%s)", ([int(i) for i in passage_ids],))
        return {pid: np.frombuffer(blob, dtype=np.float32).reshape(-1, dim) for pid, blob in rows}

    def passages(self, passage_ids: Sequence[int]) -> dict[int, PassageRow]:
        ids = [int(i) for i in passage_ids]
        if not ids:
            return {}
        rows = self._all('SELECT p.id, p.doc_id, p.ordinal, p.paragraph, p.start, p."end", p.text,'
                         f' p.sentence_starts, p.sentence_ends, {_DOC_COLS}'
                         " FROM passages p JOIN documents d ON d.id = p.doc_id WHERE p.id = ANY(%s)", (ids,))
        out: dict[int, PassageRow] = {}
        for r in rows:
            pid, doc_id, ordinal, paragraph, start, end, text, starts, ends = r[:9]
            spans = tuple((s - start, e - start) for s, e in zip(starts, ends, strict=True))
            out[pid] = PassageRow(pid, doc_id, ordinal, paragraph, start, end, text, spans, _doc(r[9:]))
        return out

    def sweep_pending(self) -> bool:
        return bool(self._all("SELECT EXISTS (SELECT 1 FROM qabot_sweep)", primary=True)[0][0])

    def embed_hashes_for(self, passage_ids: Sequence[int]) -> dict[int, str]:
        rows = self._all("SELECT id, embed_hash FROM passages WHERE id = ANY(%s)", ([int(i) for i in passage_ids],),
                         primary=True)
        return {int(pid): h for pid, h in rows}

    def passage_hashes(self) -> set[str]:
        return {r[0] for r in self._all("SELECT DISTINCT embed_hash FROM passages", primary=True)}

    def counts(self) -> dict[str, int]:
        c = self._all("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM passages),"
                      " (SELECT coalesce(sum(cardinality(sentence_starts)), 0) FROM passages),"
                      " (SELECT count(*) FROM embeddings)")[0]
        return {"documents": int(c[0]), "passages": int(c[1]), "sentences": int(c[2]), "embeddings": int(c[3])}

    # ---- export (qabot migrate): documents in id order with their stored vectors, nothing re-embedded
    def export_documents(self, batch: int = 200) -> Iterator[tuple[NewDocument, dict[str, PassageVectors]]]:
        last = 0
        while True:
            docs = self._all("SELECT id, doc_key, scope, source, title, outlet, published, ingested_at, content_hash,"
                             " text FROM documents WHERE id > %s ORDER BY id LIMIT %s", (last, batch))
            if not docs:
                return
            ids = [d[0] for d in docs]
            prow = self._all('SELECT p.doc_id, p.ordinal, p.paragraph, p.start, p."end", p.text, p.embed_hash,'
                             " p.sentence_starts, p.sentence_ends, e.vector, e.sentences FROM passages p"
                             " LEFT JOIN embeddings e ON e.hash = p.embed_hash WHERE p.doc_id = ANY(%s)"
                             " ORDER BY p.id", (ids,))
            by_doc: dict[int, list[NewPassage]] = {}
            vectors: dict[str, PassageVectors] = {}
            for r in prow:
                by_doc.setdefault(r[0], []).append(NewPassage(r[1], r[2], r[3], r[4], r[5], r[6],
                                                              tuple(zip(r[7], r[8], strict=True))))
                if r[9] is not None and r[6] not in vectors:
                    vectors[r[6]] = PassageVectors(_np(r[9]),
                                                   np.frombuffer(r[10], dtype=np.float32).reshape(-1, self.dimension))
            for d in docs:
                doc = NewDocument(d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                                  passages=tuple(by_doc.get(d[0], ())))
                yield doc, {p.embed_hash: vectors[p.embed_hash] for p in doc.passages if p.embed_hash in vectors}
            last = ids[-1]

    # ---- writes (inside PgWriter's transaction)
    def put_documents(self, conn: Any, docs: Sequence[NewDocument], vectors: dict[str, PassageVectors]) -> None:
        for key in sorted({_lock_key(d.scope, d.source) for d in docs}):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        needed = sorted({p.embed_hash for d in docs for p in d.passages})
        new = [h for h in needed if h in vectors]
        with conn.cursor() as cur:
            # Rows go in by COPY into per-connection staging tables and one INSERT ... SELECT each: several
            # times faster than a statement per passage (the tsvector is computed by the server either way).
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS qabot_stage_emb (hash TEXT, vector vector, sentences BYTEA)"
                        " ON COMMIT DELETE ROWS")
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS qabot_stage_passages (seq INTEGER, doc_id BIGINT, scope TEXT,"
                        ' ordinal INTEGER, paragraph INTEGER, start INTEGER, "end" INTEGER, text TEXT,'
                        " embed_hash TEXT, sentence_starts INTEGER[], sentence_ends INTEGER[], kw TEXT)"
                        " ON COMMIT DELETE ROWS")
            if new:
                with cur.copy("COPY qabot_stage_emb (hash, vector, sentences) FROM STDIN") as copy:
                    for h in new:
                        copy.write_row((h, np.asarray(vectors[h].passage, dtype=np.float32),
                                        np.ascontiguousarray(vectors[h].sentences, dtype=np.float32).tobytes()))
                cur.execute("INSERT INTO embeddings(hash, vector, sentences) SELECT hash, vector, sentences"
                            " FROM qabot_stage_emb ORDER BY hash ON CONFLICT (hash) DO NOTHING")
            # Hold every embedding this batch points at until commit, so a concurrent removal's orphan sweep
            # cannot drop one in between (it waits for us; see _sweep).
            have = {r[0] for r in cur.execute("SELECT hash FROM embeddings WHERE hash = ANY(%s) ORDER BY hash"
                                              " FOR KEY SHARE", (needed,)).fetchall()}
            if len(have) < len(needed):
                raise IndexBusy("Another qabot process removed passages this ingest meant to reuse while it ran; "
                                "run the ingest again.")
            old: set[str] = set()
            staged: list[tuple] = []
            for doc in docs:
                gone = cur.execute("DELETE FROM passages WHERE doc_id IN (SELECT id FROM documents WHERE scope = %s"
                                   " AND source = %s) RETURNING embed_hash", (doc.scope, doc.source)).fetchall()
                old.update(r[0] for r in gone)
                cur.execute("DELETE FROM documents WHERE scope = %s AND source = %s", (doc.scope, doc.source))
                doc_id = cur.execute(
                    "INSERT INTO documents(doc_key, scope, source, title, outlet, published, ingested_at,"
                    " content_hash, text) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                    (doc.doc_key, doc.scope, doc.source, doc.title, doc.outlet, doc.published, doc.ingested_at,
                     doc.content_hash, doc.text)).fetchone()[0]
                staged.extend((len(staged), doc_id, doc.scope, p.ordinal, p.paragraph, p.start, p.end, p.text,
                               p.embed_hash, [s for s, _ in p.sentences], [e for _, e in p.sentences],
                               keyword_text(doc.title, p.text)) for p in doc.passages)
            if staged:
                with cur.copy("COPY qabot_stage_passages FROM STDIN") as copy:
                    for row in staged:
                        copy.write_row(row)
                cur.execute(
                    'INSERT INTO passages(doc_id, scope, ordinal, paragraph, start, "end", text, embed_hash,'
                    " sentence_starts, sentence_ends, embedding, tsv)"
                    ' SELECT s.doc_id, s.scope, s.ordinal, s.paragraph, s.start, s."end", s.text, s.embed_hash,'
                    f" s.sentence_starts, s.sentence_ends, e.vector, to_tsvector('{TS_CONFIG}', s.kw)"
                    " FROM qabot_stage_passages s JOIN embeddings e ON e.hash = s.embed_hash ORDER BY s.seq")
            self._queue_sweep(cur, old - set(needed))

    def delete_document(self, conn: Any, doc_id: int) -> None:
        with conn.cursor() as cur:
            row = cur.execute("SELECT scope, source FROM documents WHERE id = %s", (int(doc_id),)).fetchone()
            if row is None:
                return
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(row[0], row[1]),))
            gone = cur.execute("DELETE FROM passages WHERE doc_id = %s RETURNING embed_hash", (int(doc_id),)).fetchall()
            cur.execute("DELETE FROM documents WHERE id = %s", (int(doc_id),))
            self._queue_sweep(cur, {r[0] for r in gone})

    @staticmethod
    def _queue_sweep(cur: Any, hashes: set[str]) -> None:
        """Queue embeddings that may have lost their last passage; sweep_orphans() drops them later. Not at
        once: the same ingest's next batch was prepared before this commit and may reuse them (a passage
        text shared by a document updated here and one added next: the embedded store's sweep found it)."""
        if hashes:
            cur.execute("INSERT INTO qabot_sweep(hash) SELECT unnest(%s::text[]) ORDER BY 1 ON CONFLICT DO NOTHING",
                        (sorted(hashes),))

    @staticmethod
    def sweep_orphans(conn: Any) -> int:
        """Drop the queued embeddings no passage uses any more (every queued one: also those a killed writer
        left). Locking them first waits out writers that hold them (FOR KEY SHARE, in put_documents); the
        DELETE that follows is a new statement, so it sees their passages. Returns how many went."""
        with conn.cursor() as cur:
            cand = [r[0] for r in cur.execute("DELETE FROM qabot_sweep RETURNING hash").fetchall()]
            if not cand:
                return 0
            cand.sort()
            cur.execute("SELECT hash FROM embeddings WHERE hash = ANY(%s) ORDER BY hash FOR UPDATE", (cand,))
            return int(cur.execute("DELETE FROM embeddings e WHERE e.hash = ANY(%s) AND NOT EXISTS"
                                   " (SELECT 1 FROM passages p WHERE p.embed_hash = e.hash)", (cand,)).rowcount)


class PgReindex:
    """One `qabot reindex` of a PostgreSQL store (driver: embeddings/ingest/reindex.py)."""

    def __init__(self, index: PgIndex) -> None:
        self._index = index
        self.backend = encoder_backend(index.encoder)
        self.target = f"{index.config.model} {self.backend}"  # (PostgreSQL text holds no NUL)
        with index._pool.connection() as conn, conn.transaction():
            # The vectors as the store records them now (another process may have reindexed since this one
            # opened): what the driver compares with this encoder's.
            row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config'").fetchone()
            if row:
                index.config = replace(index.config, encoder_backend=IndexConfig.from_json(row[0]).encoder_backend)
            conn.execute("CREATE TABLE IF NOT EXISTS qabot_reindex (hash TEXT PRIMARY KEY, target TEXT NOT NULL,"
                         " vector vector NOT NULL, sentences BYTEA NOT NULL)")
            conn.execute("DELETE FROM qabot_reindex WHERE target <> %s", (self.target,))
            self.staged = {r[0] for r in conn.execute("SELECT hash FROM qabot_reindex").fetchall()}

    def hashes(self) -> set[str]:
        return self._index.store.passage_hashes()

    def _stage(self, conn: Any, vectors: dict[str, PassageVectors]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO qabot_reindex(hash, target, vector, sentences) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (hash) DO UPDATE SET target = EXCLUDED.target, vector = EXCLUDED.vector,"
                " sentences = EXCLUDED.sentences",
                [(h, self.target, np.asarray(v.passage, dtype=np.float32),
                  np.ascontiguousarray(v.sentences, dtype=np.float32).tobytes()) for h, v in vectors.items()])
        self.staged.update(vectors)

    def stage(self, vectors: dict[str, PassageVectors]) -> None:
        with self._index._pool.connection() as conn, conn.transaction():
            self._stage(conn, vectors)

    def finish(self, embed_missing: Callable[[set[str]], dict[str, PassageVectors]]) -> int:
        index = self._index
        config = replace(index.config, encoder_backend=self.backend)
        with index._pool.connection() as conn, conn.transaction():
            # Taking the config row waits out writers inside a transaction (they hold it FOR SHARE) and holds
            # off new ones until commit, when they see the new backend (put_documents refuses theirs).
            conn.execute("SELECT value FROM qabot_meta WHERE key = 'config' FOR UPDATE")
            have = {r[0] for r in conn.execute("SELECT DISTINCT embed_hash FROM passages").fetchall()}
            missing = have - self.staged
            if missing:  # added by other processes while we embedded
                self._stage(conn, embed_missing(missing))
            n = conn.execute("UPDATE embeddings e SET vector = r.vector, sentences = r.sentences FROM qabot_reindex r"
                             " WHERE r.hash = e.hash AND r.target = %s", (self.target,)).rowcount
            conn.execute("UPDATE passages p SET embedding = e.vector FROM embeddings e WHERE e.hash = p.embed_hash")
            conn.execute("UPDATE qabot_meta SET value = %s WHERE key = 'config'", (config.to_json(),))
            conn.execute("UPDATE qabot_meta SET value = (value::bigint + 1)::text WHERE key = 'generation'")
            conn.execute("DROP TABLE qabot_reindex")
        index.config = config
        return int(n)


def recorded_backend_at_url(url: str) -> str | None:
    """The encoder backend the store at `url` records (its config in qabot_meta); None: no store there yet,
    or the server is not reachable (opening it then says why)."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=10) as conn:
            if not (conn.execute("SELECT to_regclass('qabot_meta') IS NOT NULL").fetchone() or (False,))[0]:
                return None
            row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config'").fetchone()
    except Exception:  # noqa: BLE001 - no driver, no server: PgIndex reports it with the right message
        return None
    return IndexConfig.from_json(row[0]).encoder_backend if row else None


def _keyword_text(title: str, text: str) -> str:
    # Same as index.keyword_text (the headline is context for every passage); not imported so that this
    # module does not load FAISS and bm25s.
    return f"{title}\n{text}" if title else text


def _check_recorded_backend(conn: Any, backend: str) -> None:
    """Inside a write transaction: the store's backend as of now must be this process's. FOR SHARE: a
    reindex's swap (which updates this row) waits for this write and then re-embeds what it added; a write
    after the swap sees the new backend here and is refused, so no process that opened the store before a
    reindex adds vectors of the old runtime to it."""
    if backend == "hashing":
        return
    row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config' FOR SHARE").fetchone()
    recorded = IndexConfig.from_json(row[0]).encoder_backend
    if recorded != backend:
        raise IndexMismatch(
            f"The store holds {recorded} vectors (another process re-embedded it), but this process runs "
            f"{backend}: restart it (with QABOT_ENCODER_BACKEND unset or ={runtime_of(recorded)}).")


class PgWriter:
    """Handed out by PgIndex.writer(); each call commits one transaction (retried on deadlock)."""

    def __init__(self, index: PgIndex) -> None:
        self._index = index
        self.changed = False

    def put_documents(self, docs: Sequence[NewDocument], vectors: dict[str, PassageVectors]) -> None:
        if docs:
            backend = encoder_backend(self._index.encoder)

            def work(conn: Any) -> None:
                _check_recorded_backend(conn, backend)
                self._index.store.put_documents(conn, docs, vectors)

            self._index._write(work)
            self.changed = True

    def delete_document(self, doc_id: int) -> None:
        self._index._write(lambda conn: self._index.store.delete_document(conn, doc_id))
        self.changed = True

    def close(self) -> None:
        """Sweep the embeddings this writer's removals and replacements orphaned (see PgStore._queue_sweep),
        and any a killed writer left queued."""
        if self.changed or self._index.store.sweep_pending():
            self._index._write(PgStore.sweep_orphans, count=False)


class _RoundRobin:
    """The replicas' pools behind one `connection()`: each checkout goes to the next replica."""

    def __init__(self, pools: Sequence[Any]) -> None:
        self.pools = list(pools)
        self._turn = itertools.count()  # next() on a count is atomic under the GIL: no lock needed

    def connection(self) -> Any:
        return self.pools[next(self._turn) % len(self.pools)].connection()


class PgIndex:
    """IndexBackend over PostgreSQL. `url` is a libpq URL: postgresql://user:pass@host:port/db.

    `read_urls` (QABOT_STORE_READ): streaming replicas of that primary for the question path; writes, and
    the reads that decide them, stay on `url`. Empty: everything on `url`."""

    # HNSW candidate list per query (pgvector's default is 40; >= k is needed for k results). 100k passages
    # (docs/scale.md): 100 -> recall@10 0.88, 400 -> 0.91 (p50 5 -> 14 ms): recall is worth the milliseconds.
    EF_SEARCH = 400
    # Keyword search ranks the rows holding the question's rarer lexemes, about this many (estimated from
    # ANALYZE's statistics; see _KEYWORD_SQL). 100k passages (docs/scale.md): 3000 -> p50 20 ms instead of
    # 109 ms, 0.94 of the exhaustive query's top 10, the gold passage found as often; 10000 -> 55 ms, 1.0.
    KEYWORD_BUDGET = 3000
    # How long a question or a write waits for a connection (the server down or every connection busy)
    # before it says so in one line.
    CHECKOUT_TIMEOUT = 10.0

    def __init__(self, url: str, encoder: Encoder, *, create: bool = True, pool_size: int = 4,
                 read_urls: Sequence[str] = ()) -> None:
        _require_driver()
        import psycopg

        from embeddings.store.postgres.schema import bind_dimension, migrate

        self.url = url
        self.read_urls = check_read_urls(read_urls)
        self.home = redact_url(url)  # what stats print where the embedded store prints its directory
        self.encoder = encoder
        try:
            with psycopg.connect(url, connect_timeout=10) as conn:
                migrate(conn)
                self.config = self._load_config(conn, create, bind_dimension)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"Cannot use PostgreSQL at {self.home}: {str(exc).strip()}") from exc
        except psycopg.Error as exc:  # a read-only session or role on a store to create or migrate, ...
            raise translate_error(exc, self.home) from exc
        check_compatible(self.config, encoder, self.home, kind="store", setting="QABOT_STORE")
        for replica in self.read_urls:
            self._check_replica(replica)
        self._pool = self._open_pool(url, pool_size, "qabot")
        self._read_pools: list[Any] = []
        try:
            for i, replica in enumerate(self.read_urls):
                self._read_pools.append(self._open_pool(replica, pool_size, f"qabot-read{i}"))
        except BaseException:
            self.close()
            raise
        # Where the question path reads: the replicas in turn, else the primary.
        self._read: Any = _RoundRobin(self._read_pools) if self._read_pools else self._pool
        self.store = PgStore(self._read, self.config.dimension, primary=self._pool, where=self.home)

    def _open_pool(self, url: str, size: int, name: str) -> Any:
        from psycopg_pool import ConnectionPool

        def configure(conn: Any) -> None:
            from pgvector.psycopg import register_vector

            register_vector(conn)
            # Session-wide, so a search is one round trip; larger k raise it per query (dense_search).
            conn.execute(f"SET hnsw.ef_search = {int(self.EF_SEARCH)}")

        pool = ConnectionPool(url, min_size=1, max_size=max(1, size), kwargs={"autocommit": True},
                              configure=configure, check=ConnectionPool.check_connection, open=False, name=name)
        pool.open(wait=True, timeout=30)
        return _Guarded(pool, redact_url(url), self.CHECKOUT_TIMEOUT)

    def _check_replica(self, url: str) -> None:
        """A replica must be reachable and hold this store (same model and dimension): pointing answers at
        another database would answer from another corpus."""
        import psycopg

        where = redact_url(url)
        try:
            with psycopg.connect(url, connect_timeout=10) as conn:
                exists = (conn.execute("SELECT to_regclass('qabot_meta') IS NOT NULL").fetchone() or (False,))[0]
                row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config'").fetchone() if exists else None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"Cannot use the PostgreSQL read replica at {where}: {str(exc).strip()}") from exc
        if row is None:
            raise StoreUnavailable(f"The read replica at {where} holds no qabot store: is it a replica of {self.home}? "
                                   "(A new replica may still be catching up.)")
        cfg = _parse_config(row[0], where)
        if (cfg.model, cfg.dimension) != (self.config.model, self.config.dimension):
            raise IndexMismatch(f"The read replica at {where} holds a store of model {cfg.model!r}, but the primary "
                                f"{self.home} holds {self.config.model!r}: QABOT_STORE_READ must name replicas of "
                                "QABOT_STORE.")

    capabilities = StoreCapabilities(kind="postgresql", bulk_load=True, shared=True, read_replicas=True)

    @property
    def location(self) -> str:
        return self.home  # the redacted URL

    def describe(self) -> str:
        """The kind and where it is, passwords masked: the primary, and the replicas answers read from."""
        reads = ", ".join(redact_url(u) for u in self.read_urls)
        return f"postgresql ({self.home}; reads from {reads})" if reads else f"postgresql ({self.home})"

    # ---- config (in qabot_meta, so the store describes itself)
    def _load_config(self, conn: Any, create: bool, bind: Callable[..., None]) -> IndexConfig:
        row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config'").fetchone()
        if row is None:
            if not create:
                raise IndexCorrupt(f"No qabot store at {self.home}: run `qabot ingest PATH` first")
            with conn.transaction():
                conn.execute("LOCK TABLE qabot_meta IN EXCLUSIVE MODE")  # two first starters: one creates
                row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config'").fetchone()
                if row is None:
                    enc = self.encoder
                    cfg = new_config(enc)
                    bind(conn, cfg.dimension)
                    conn.execute("INSERT INTO qabot_meta(key, value) VALUES ('config', %s)", (cfg.to_json(),))
                    return cfg
        try:
            return _parse_config(row[0], self.home, conn)
        finally:
            conn.commit()

    def save_config(self, config: IndexConfig) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE qabot_meta SET value = %s WHERE key = 'config'", (config.to_json(),))
        self.config = config

    # ---- writing
    def _write(self, work: Callable[[Any], Any], attempts: int = 5, *, count: bool = True) -> None:
        """`work` in one transaction, retried on deadlock; `count`: a commit readers may see (generation)."""
        import psycopg.errors as pe

        for attempt in range(attempts):
            try:
                with self._pool.connection() as conn, conn.transaction():
                    work(conn)
                    if count:
                        value = conn.execute("SELECT value FROM qabot_meta WHERE key = 'generation' FOR UPDATE"
                                             ).fetchone()
                        conn.execute("UPDATE qabot_meta SET value = %s WHERE key = 'generation'",
                                     (str(_generation(value[0] if value else "0", self.home) + 1),))
                return
            except (pe.DeadlockDetected, pe.SerializationFailure):
                if attempt == attempts - 1:
                    raise IndexBusy("Other qabot processes kept writing the same documents; try again.") from None
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def writer(self) -> Iterator[PgWriter]:
        # No lock file: any number of writers, serialised per document inside the database.
        check_writer_backend(self.config, self.encoder, redact_url(self.url), kind="store", setting="QABOT_STORE")
        writer = PgWriter(self)
        try:
            yield writer
        except BaseException:
            try:  # what committed before the failure may have orphaned embeddings; the next writer sweeps if not
                writer.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        writer.close()

    @contextmanager
    def reindexer(self) -> Iterator[PgReindex]:
        """`qabot reindex` on PostgreSQL: new vectors are staged in qabot_reindex (committed in batches, so
        a killed run resumes), then PgReindex.finish swaps them in with the backend in one transaction.
        Other processes may keep ingesting meanwhile: what they add before the swap is re-embedded by it."""
        yield PgReindex(self)

    @contextmanager
    def bulk_load(self, maintenance_work_mem: str = "1GB") -> Iterator[None]:
        """For copying a large corpus in (`qabot migrate`, benchmarks): drop the HNSW index, load, then build
        it once. Building is several times faster than maintaining the graph row by row; meanwhile other
        processes still get correct (exact, slower) dense results."""
        from embeddings.store.postgres.schema import bind_dimension

        with self._pool.connection() as conn:
            conn.execute("DROP INDEX IF EXISTS passages_base_hnsw")
        try:
            yield
        finally:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'")
                bind_dimension(conn, self.config.dimension)

    def refresh(self) -> bool:
        return False  # every query reads committed state; nothing is cached in the process

    # ---- reading
    def dense_search(self, query: np.ndarray, k: int, scope: str = BASE_SCOPE) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        base = ("SELECT id, embedding <#> %(q)s AS dist FROM passages WHERE scope = ''"
                " ORDER BY embedding <#> %(q)s LIMIT %(k)s")
        if scope == BASE_SCOPE:
            sql = base
        else:
            # Base corpus by HNSW, the guild's own passages exactly: no post-filtered approximate scan.
            sql = (f"SELECT id, dist FROM (({base}) UNION ALL (SELECT id, embedding <#> %(q)s AS dist FROM passages"
                   " WHERE scope = %(scope)s AND scope <> '' ORDER BY 2 LIMIT %(k)s)) u ORDER BY dist, id LIMIT %(k)s")
        args = {"q": q, "k": int(k), "scope": scope}
        with self._read.connection() as conn:
            if k <= self.EF_SEARCH:
                rows = conn.execute(sql, args).fetchall()
            else:  # the HNSW scan yields at most ef_search rows
                with conn.transaction():
                    conn.execute(f"SET LOCAL hnsw.ef_search = {int(k)}")
                    rows = conn.execute(sql, args).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, np.array([-r[1] for r in rows], dtype=np.float32)

    def exact_search(self, query: np.ndarray, k: int, scope: str = BASE_SCOPE) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth for recall measurements: a sequential scan, no index."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        with self._read.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            rows = conn.execute("SELECT id, embedding <#> %(q)s FROM passages WHERE scope = '' OR scope = %(s)s"
                                " ORDER BY 2, id LIMIT %(k)s", {"q": q, "k": int(k), "s": scope}).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([-r[1] for r in rows], dtype=np.float32)

    def keyword_search(self, query: str, k: int, scope: str = BASE_SCOPE,
                       also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best full-text rows with a positive rank that `scope` may see, plus the ranks of the `also`
        ids (0 where no term matches): (ids ascending, scores), as Index.keyword_search."""
        want = [int(i) for i in np.unique(np.asarray(also if also is not None else [], dtype=np.int64))]
        args = {"q": query, "k": int(max(k, 0)), "scope": scope, "also": want, "budget": int(self.KEYWORD_BUDGET)}
        with self._read.connection() as conn:
            rows = conn.execute(_KEYWORD_SQL, args).fetchall()
        found = {int(r[0]): float(r[1]) for r in rows}
        for pid in want:  # ids the store doesn't hold (any more): no keyword evidence
            found.setdefault(pid, 0.0)
        ids = np.array(sorted(found), dtype=np.int64)
        return ids, np.array([found[i] for i in ids.tolist()], dtype=np.float32)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        return self.store.vectors_for(ids, self.config.dimension)

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        return self.store.passages(ids)

    # ---- checks
    def integrity(self) -> IntegrityReport:
        with self._read.connection() as conn:
            gen, passages, dangling, wrong_scope, hnsw, zero, differ, dim = conn.execute(
                "SELECT (SELECT value FROM qabot_meta WHERE key = 'generation'),"
                " (SELECT count(*) FROM passages),"
                " (SELECT count(*) FROM passages p WHERE NOT EXISTS (SELECT 1 FROM embeddings e"
                "   WHERE e.hash = p.embed_hash)),"
                " (SELECT count(*) FROM passages p JOIN documents d ON d.id = p.doc_id WHERE p.scope <> d.scope),"
                " to_regclass('passages_base_hnsw') IS NOT NULL,"
                # A zero vector matches nothing (inner product 0 with every question): a passage never found.
                " (SELECT count(*) FROM passages WHERE vector_norm(embedding) < 1e-6),"
                # The passage's copy of its vector (what search reads) against its embedding row (what reuse
                # and migrate read): they must be the same vector.
                " (SELECT count(*) FROM passages p JOIN embeddings e ON e.hash = p.embed_hash"
                "   WHERE p.embedding <> e.vector),"
                " (SELECT count(*) FROM passages WHERE vector_dims(embedding) <> %s)",
                (int(self.config.dimension),)).fetchone()
        problems = []
        if dangling:
            problems.append(f"{dangling} passages lack a stored embedding row")
        if wrong_scope:
            problems.append(f"{wrong_scope} passages disagree with their document's scope")
        if zero:
            problems.append(f"{zero} passages have a zero vector (never found by dense search)")
        if differ:
            problems.append(f"{differ} passages' vectors differ from their stored embedding")
        if dim:
            problems.append(f"{dim} passages' vectors are not {self.config.dimension}-dimensional")
        if not hnsw:
            problems.append("the HNSW index is missing")
        try:
            generation = _generation(gen or "0", self.home)
        except IndexCorrupt as exc:
            generation = -1
            problems.append(str(exc))
        vectors = int(passages) - int(zero)  # the ones dense search can find
        return IntegrityReport(generation, int(passages), vectors, int(passages), not problems, tuple(problems))

    def disk_bytes(self) -> int:
        with self._read.connection() as conn:
            row = conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                               " WHERE c.relname IN ('documents', 'passages', 'embeddings', 'feedback',"
                               " 'feedback_salt', 'qabot_meta', 'bot_answers', 'bot_guild_settings') AND c.relkind = 'r'"
                               " AND c.relnamespace = to_regnamespace(current_schema())").fetchone()
        return int(row[0])

    def feedback(self) -> Feedback:
        from embeddings.store.postgres.feedback import PgFeedbackStore

        return PgFeedbackStore(self._pool)

    def bot_state(self) -> BotState:
        from embeddings.store.postgres.botstate import PgBotStateStore

        return PgBotStateStore(self._pool)

    def close(self) -> None:
        for pool in self._read_pools:
            pool.close()
        self._pool.close()


def read_stored_config(url: str) -> IndexConfig:
    """The config a PostgreSQL store holds, read on one short connection (no pool, no pgvector needed)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT value FROM qabot_meta WHERE key = 'config'").fetchone()
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"Cannot use PostgreSQL at {redact_url(url)}: {str(exc).strip()}") from exc
    except psycopg.Error:
        row = None
    if row is None:
        raise IndexCorrupt(f"No qabot store at {redact_url(url)}: run `qabot ingest PATH` first")
    return _parse_config(row[0], redact_url(url))
