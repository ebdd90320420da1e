"""SQLite holds everything a user ingested: documents, passages, sentences and their embeddings.

It is the source of truth: the FAISS and BM25 files are caches rebuilt from it whenever they disagree.
Every write happens in one transaction that also bumps `generation`, which readers poll to notice change."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from embeddings.errors import DiskFull, IndexCorrupt, QabotError, ReadOnlyIndex, StorageError, storage_error
from embeddings.store.records import DocumentRow, NewDocument, NewPassage, PassageRow, PassageVectors

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    paragraph INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    embed_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc_id);
CREATE INDEX IF NOT EXISTS passages_hash ON passages(embed_hash);
CREATE TABLE IF NOT EXISTS sentences (
    passage_id INTEGER NOT NULL REFERENCES passages(id) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sentences_passage ON sentences(passage_id);
CREATE TABLE IF NOT EXISTS embeddings (hash TEXT PRIMARY KEY, vector BLOB NOT NULL);
-- One float32 matrix (sentences x dimension) per passage hash: answer selection and reranking read these
-- instead of encoding sentences while a user waits.
CREATE TABLE IF NOT EXISTS sentence_embeddings (hash TEXT PRIMARY KEY, vectors BLOB NOT NULL);
"""


IN_CHUNK = 500  # ids per IN list, far below SQLite's bound-variable limit
_DOC_COLS = "d.id, d.doc_key, d.scope, d.source, d.title, d.outlet, d.published, d.ingested_at, d.content_hash"


def side_connection(path: Path, schema: str) -> sqlite3.Connection:
    """The own connection of a store kept beside the index in its file (votes, the bot's state): autocommit,
    usable from any worker thread (the caller serialises with a lock), waiting up to 30 s for another
    process's write, with ``schema``'s tables created if missing. In WAL mode, never waiting for an ingest's
    readers."""
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    try:
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (the write lock taken before the first read).
    On any error it is rolled back and the connection is never left inside the transaction. A failed COMMIT
    (a full disk) may have rolled back already: a second ROLLBACK would replace the real error with "cannot
    rollback - no transaction is active"."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def storage_error_of(exc: BaseException, path: Path) -> QabotError | None:
    """What an OSError or sqlite3 error at the database (or its directory) means for the user, if it is a
    storage condition: a full disk, a read-only medium, a file that is not a database."""
    where = str(path.parent)
    found = storage_error(exc, where)
    if found is not None:
        return found
    text = str(exc).lower()
    if "disk i/o error" in text or "unable to open database" in text:
        # SQLite reports a full disk while opening (the -shm/-wal files) as an I/O error: ask the disk.
        try:
            st = os.statvfs(path.parent)
            if st.f_bavail == 0 or st.f_favail == 0:
                return DiskFull(where)
        except OSError:
            pass
        if _write_probe(path.parent) is not None:
            return ReadOnlyIndex(where)
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return IndexCorrupt(f"{path} is not a readable qabot database ({exc}): restore it from a backup, or "
                            "move the index directory away and ingest the articles again.")
    return None


def _write_probe(directory: Path) -> OSError | None:
    """Why no file can be created in `directory` (None: one can). Probed rather than asked of os.access,
    which says yes to root on a read-only mount (SQLite then fails)."""
    probe = directory / f".qabot-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return None
    except OSError as exc:
        return exc
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


class SqliteStore:
    def __init__(self, path: Path, dimension: int = 0) -> None:
        self.dimension = dimension  # of the stored vectors (the index config's): export_documents reads them
        self.path = path
        self._lock = threading.RLock()
        # Why this store cannot be written (a StorageError), or None. A database that cannot be opened for
        # writing (read-only medium, full disk: SQLite cannot create its -wal/-shm files) is opened
        # immutable instead, so questions still work.
        self.read_only: QabotError | None = None
        refused = _write_probe(path.parent) if path.exists() else None
        if refused is not None:  # a read-only medium or directory, or a full disk: read what is there
            self.read_only = storage_error(refused, str(path.parent)) or ReadOnlyIndex(
                str(path.parent), refused.strerror or str(refused))
            self._conn = self._open_immutable()
            return
        try:
            # One connection shared by threads, serialised by a lock: the bot searches from worker threads.
            self._conn = self._open_writable()
        except (sqlite3.Error, OSError) as exc:
            known = storage_error_of(exc, path)
            if not isinstance(known, StorageError) or not path.exists():
                raise (known or IndexCorrupt(f"{path} cannot be opened: {exc}")) from exc
            self.read_only = known
            self._conn = self._open_immutable()

    def _open_writable(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed ingest survives power loss too, not just a killed process.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_immutable(self) -> sqlite3.Connection:
        """The database as its file holds it, written by no one (SQLite creates no -wal/-shm files then)."""
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            # Committed writes not yet copied into the main file (a writer was killed): reading the file
            # alone would hide them. SQLite reads them read-only when its -shm file exists.
            try:
                conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0,
                                       check_same_thread=False, isolation_level=None)
                conn.execute("SELECT COUNT(*) FROM passages").fetchone()
                return conn
            except sqlite3.Error:
                assert self.read_only is not None
                raise QabotError(f"{self.read_only} Its last writes are still in {wal.name}, which SQLite can "
                                 "only read where it can write: open it once on a writable disk.") from None
        try:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?immutable=1", uri=True, timeout=30.0,
                                   check_same_thread=False, isolation_level=None)
            conn.execute("SELECT COUNT(*) FROM passages").fetchone()
        except sqlite3.Error as exc:
            raise (storage_error_of(exc, self.path) or IndexCorrupt(f"{self.path} cannot be read: {exc}")) from exc
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- meta: the index's config is kept here too, so a lost config.json can be recovered
    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_meta(self, key: str, value: str) -> None:
        """Set one meta value in its own transaction, without a new generation (no passage changes)."""
        if self.read_only is not None:
            raise self.read_only
        with self._lock:
            try:
                self._conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                                   "value = excluded.value", (key, value))
            except sqlite3.Error as exc:
                raise (storage_error_of(exc, self.path) or exc) from exc

    def embedding_dimension(self) -> int | None:
        """The dimension of the stored vectors (float32), if any are stored."""
        with self._lock:
            row = self._conn.execute("SELECT length(vector) FROM embeddings LIMIT 1").fetchone()
        return int(row[0]) // 4 if row else None

    # -- generation: readers poll it to see that a writer committed
    def generation(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def transaction(self, *, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. `bump=False` for writes readers must not notice (reindex staging: the
        served tables do not change), so they do not reload for nothing."""
        if self.read_only is not None:
            raise self.read_only
        with self._lock:
            try:
                with immediate(self._conn):
                    yield self._conn
                    if bump:
                        self._conn.execute(
                            "INSERT INTO meta(key, value) VALUES('generation', '1') "
                            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                        )
            except (sqlite3.Error, OSError) as exc:
                known = storage_error_of(exc, self.path)
                if known is None:
                    raise
                raise known from exc

    # -- the encoder backend of the stored vectors, written by `qabot reindex` in the transaction that swaps
    # them in (config.json, a separate file, follows after the commit; this row wins if a crash came between)
    @staticmethod
    def read_backend(conn: sqlite3.Connection) -> str | None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'encoder_backend'").fetchone()
        except sqlite3.OperationalError:  # no meta table (not a qabot database yet)
            return None
        return row[0] if row else None

    def recorded_backend(self) -> str | None:
        with self._lock:
            return self.read_backend(self._conn)

    # -- reindex: new vectors are staged (in batches, resumable) beside the served ones, then swapped in
    # by one transaction, so readers see either the old vectors or the new ones, never a mix.
    def begin_reindex(self, target: str) -> set[str]:
        """Open (or resume) staging for `target` (model + backend); the hashes already staged for it."""
        with self.transaction(bump=False) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS reindex_embeddings (hash TEXT PRIMARY KEY,"
                         " vector BLOB NOT NULL, sentences BLOB NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'reindex_target'").fetchone()
            if row is None or row[0] != target:  # an interrupted reindex to something else: start over
                conn.execute("DELETE FROM reindex_embeddings")
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('reindex_target', ?)", (target,))
            return {r[0] for r in conn.execute("SELECT hash FROM reindex_embeddings")}

    def stage_vectors(self, vectors: dict[str, PassageVectors]) -> None:
        with self.transaction(bump=False) as conn:
            conn.executemany("INSERT OR REPLACE INTO reindex_embeddings(hash, vector, sentences) VALUES (?, ?, ?)",
                             [(h, np.asarray(v.passage, dtype=np.float32).tobytes(),
                               np.ascontiguousarray(v.sentences, dtype=np.float32).tobytes())
                              for h, v in vectors.items()])

    def embed_hashes_for(self, passage_ids: Sequence[int]) -> dict[int, str]:
        with self._lock:
            rows = self._select_in("SELECT id, embed_hash FROM passages WHERE id IN ({q})", [int(i) for i in passage_ids])
        return {int(pid): h for pid, h in rows}

    def passage_hashes(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT DISTINCT embed_hash FROM passages")}

    def finish_reindex(self, backend: str) -> int:
        """Swap the staged vectors in and record `backend`, in one transaction (bumps the generation).
        Every passage's hash must be staged (the caller holds the writer lock, so none can appear)."""
        with self.transaction() as conn:
            missing = conn.execute("SELECT count(DISTINCT embed_hash) FROM passages WHERE embed_hash NOT IN"
                                   " (SELECT hash FROM reindex_embeddings)").fetchone()[0]
            if missing:
                raise RuntimeError(f"reindex: {missing} passage embeddings were not staged")
            n = conn.execute("INSERT OR REPLACE INTO embeddings(hash, vector) SELECT hash, vector"
                             " FROM reindex_embeddings WHERE hash IN (SELECT embed_hash FROM passages)").rowcount
            conn.execute("INSERT OR REPLACE INTO sentence_embeddings(hash, vectors) SELECT hash, sentences"
                         " FROM reindex_embeddings WHERE hash IN (SELECT embed_hash FROM passages)")
            self._drop_orphan_embeddings(conn)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('encoder_backend', ?)", (backend,))
            conn.execute("DELETE FROM meta WHERE key = 'reindex_target'")
            conn.execute("DROP TABLE reindex_embeddings")
        return int(n)

    # -- documents
    def _doc(self, row: Sequence) -> DocumentRow:
        passages = row[9] if len(row) > 9 else 0
        return DocumentRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], passages)

    def documents(self, scope: str | None = None) -> list[DocumentRow]:
        sql = (f"SELECT {_DOC_COLS}, (SELECT COUNT(*) FROM passages p WHERE p.doc_id = d.id) FROM documents d")
        args: tuple = ()
        if scope is not None:
            sql += " WHERE d.scope = ?"
            args = (scope,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY d.id", args).fetchall()
        return [self._doc(r) for r in rows]

    def document_by_source(self, scope: str, source: str) -> DocumentRow | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_DOC_COLS} FROM documents d WHERE d.scope = ? AND d.source = ?", (scope, source)
            ).fetchone()
        return self._doc(row) if row else None

    def document_text(self, doc_id: int) -> str:
        with self._lock:
            row = self._conn.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return row[0] if row else ""

    def _select_in(self, sql: str, keys: Sequence) -> list[tuple]:
        """Rows of `sql`, whose `{q}` is an IN list, over `keys` in chunks: one list of every id in a large
        index would pass SQLite's limit on bound variables. Callers hold the lock."""
        rows: list[tuple] = []
        for i in range(0, len(keys), IN_CHUNK):
            part = list(keys[i:i + IN_CHUNK])
            rows.extend(self._conn.execute(sql.replace("{q}", ",".join("?" * len(part))), part).fetchall())
        return rows

    def existing_hashes(self, hashes: Iterable[str]) -> set[str]:
        with self._lock:
            rows = self._select_in("SELECT hash FROM embeddings WHERE hash IN ({q})", list(dict.fromkeys(hashes)))
        return {r[0] for r in rows}

    def put_document(self, conn: sqlite3.Connection, doc: NewDocument, vectors: dict[str, PassageVectors], *,
                     sweep: bool = True) -> int:
        """Insert or replace (same scope and source) a document with its passages; inside a transaction.
        A replacement drops the embeddings no passage uses any more, unless `sweep` is False: a caller
        putting several documents sweeps once after the last (drop_orphan_embeddings), because a later
        document of the same transaction may reuse an embedding an earlier replacement left unused."""
        replaced = conn.execute("DELETE FROM documents WHERE scope = ? AND source = ?",
                                (doc.scope, doc.source)).rowcount
        cur = conn.execute(
            "INSERT INTO documents(doc_key, scope, source, title, outlet, published, ingested_at, content_hash, text)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (doc.doc_key, doc.scope, doc.source, doc.title, doc.outlet, doc.published, doc.ingested_at,
             doc.content_hash, doc.text),
        )
        doc_id = int(cur.lastrowid or 0)
        for p in doc.passages:
            vec = vectors.get(p.embed_hash)
            if vec is not None:
                conn.execute("INSERT OR IGNORE INTO embeddings(hash, vector) VALUES (?, ?)",
                             (p.embed_hash, np.asarray(vec.passage, dtype=np.float32).tobytes()))
                conn.execute("INSERT OR IGNORE INTO sentence_embeddings(hash, vectors) VALUES (?, ?)",
                             (p.embed_hash, np.ascontiguousarray(vec.sentences, dtype=np.float32).tobytes()))
            pcur = conn.execute(
                'INSERT INTO passages(doc_id, ordinal, paragraph, start, "end", text, embed_hash) VALUES (?,?,?,?,?,?,?)',
                (doc_id, p.ordinal, p.paragraph, p.start, p.end, p.text, p.embed_hash),
            )
            pid = pcur.lastrowid
            conn.executemany('INSERT INTO sentences(passage_id, start, "end") VALUES (?,?,?)',
                             [(pid, s, e) for s, e in p.sentences])
        if replaced and sweep:  # only a replacement can orphan embeddings; the sweep is a full scan
            self._drop_orphan_embeddings(conn)
        return doc_id

    def drop_orphan_embeddings(self, conn: sqlite3.Connection) -> None:
        self._drop_orphan_embeddings(conn)

    @staticmethod
    def passages_without_embedding(conn: sqlite3.Connection, doc_ids: Sequence[int] | None = None) -> int:
        """Passages (of `doc_ids`, or all) whose embedding row is missing: their vector would be zeros."""
        sql = ("SELECT COUNT(*) FROM passages p LEFT JOIN embeddings e ON e.hash = p.embed_hash"
               " WHERE e.hash IS NULL")
        if doc_ids is None:
            return int(conn.execute(sql).fetchone()[0])
        ids = [int(i) for i in doc_ids]
        total = 0
        for i in range(0, len(ids), IN_CHUNK):
            part = ids[i:i + IN_CHUNK]
            total += int(conn.execute(sql + f" AND p.doc_id IN ({','.join('?' * len(part))})", part).fetchone()[0])
        return total

    def count_passages_without_embedding(self, doc_ids: Sequence[int] | None = None) -> int:
        with self._lock:
            return self.passages_without_embedding(self._conn, doc_ids)

    def delete_document(self, conn: sqlite3.Connection, doc_id: int) -> None:
        conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        self._drop_orphan_embeddings(conn)

    @staticmethod
    def _drop_orphan_embeddings(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM embeddings WHERE hash NOT IN (SELECT embed_hash FROM passages)")
        conn.execute("DELETE FROM sentence_embeddings WHERE hash NOT IN (SELECT embed_hash FROM passages)")

    def snapshot(self) -> tuple[int, np.ndarray, list[str]]:
        """The generation with its passage ids and scopes, read in one transaction (one consistent state,
        even while a writer commits)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                generation = self.generation()
                ids, scopes = self.passage_ids_and_scopes()
            finally:
                self._conn.execute("COMMIT")
        return generation, ids, scopes

    # -- passages
    def passage_ids_and_scopes(self) -> tuple[np.ndarray, list[str]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT p.id, d.scope FROM passages p JOIN documents d ON d.id = p.doc_id ORDER BY p.id"
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def iter_passage_texts(self, passage_ids: Sequence[int] | None = None) -> Iterator[tuple[int, str, str]]:
        """(passage id, passage text, document title) in id order, of every passage or of `passage_ids`
        (ascending): what the keyword index is built from."""
        sql = "SELECT p.id, p.text, d.title FROM passages p JOIN documents d ON d.id = p.doc_id"
        with self._lock:
            if passage_ids is None:
                rows = self._conn.execute(sql + " ORDER BY p.id").fetchall()
            else:
                rows = self._select_in(sql + " WHERE p.id IN ({q}) ORDER BY p.id", [int(i) for i in passage_ids])
        yield from rows

    def vectors_for(self, passage_ids: Sequence[int], dimension: int) -> np.ndarray:
        out = np.zeros((len(passage_ids), dimension), dtype=np.float32)
        pos = {int(pid): i for i, pid in enumerate(passage_ids)}
        with self._lock:
            rows = self._select_in("SELECT p.id, e.vector FROM passages p JOIN embeddings e ON e.hash = p.embed_hash"
                                   " WHERE p.id IN ({q})", list(pos))
        for pid, blob in rows:
            out[pos[pid]] = np.frombuffer(blob, dtype=np.float32)
        return out

    def sentence_vectors_for(self, passage_ids: Sequence[int], dimension: int) -> dict[int, np.ndarray]:
        """Stored sentence matrices of these passages (absent for indexes written before they were stored)."""
        with self._lock:
            rows = self._select_in("SELECT p.id, s.vectors FROM passages p JOIN sentence_embeddings s"
                                   " ON s.hash = p.embed_hash WHERE p.id IN ({q})", [int(i) for i in passage_ids])
        return {pid: np.frombuffer(blob, dtype=np.float32).reshape(-1, dimension) for pid, blob in rows}

    def passages(self, passage_ids: Sequence[int]) -> dict[int, PassageRow]:
        ids = [int(i) for i in passage_ids]
        with self._lock:
            rows = self._select_in(
                'SELECT p.id, p.doc_id, p.ordinal, p.paragraph, p.start, p."end", p.text, ' + _DOC_COLS
                + " FROM passages p JOIN documents d ON d.id = p.doc_id WHERE p.id IN ({q})", ids)
            # Each passage's sentences come from one chunk, so the ORDER BY keeps them in text order.
            sent_rows = self._select_in('SELECT passage_id, start, "end" FROM sentences WHERE passage_id IN ({q})'
                                        " ORDER BY passage_id, start", ids)
        sents: dict[int, list[tuple[int, int]]] = {}
        for pid, s, e in sent_rows:
            sents.setdefault(pid, []).append((s, e))
        out: dict[int, PassageRow] = {}
        for r in rows:
            pid, doc_id, ordinal, paragraph, start, end, text = r[:7]
            spans = tuple((s - start, e - start) for s, e in sents.get(pid, []))
            out[pid] = PassageRow(pid, doc_id, ordinal, paragraph, start, end, text, spans, self._doc(r[7:]))
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            c = self._conn.execute(
                "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM passages),"
                " (SELECT COUNT(*) FROM sentences), (SELECT COUNT(*) FROM embeddings)"
            ).fetchone()
        return {"documents": c[0], "passages": c[1], "sentences": c[2], "embeddings": c[3]}

    def export_documents(self, batch: int = 200) -> Iterator[tuple[NewDocument, dict[str, PassageVectors]]]:
        """Every document with its passages and stored vectors, in id order (what migrate copies). Reads on a
        read-only connection of its own, so a long copy never holds the writer's connection."""
        dim = self.dimension
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            last = 0
            while True:
                docs = conn.execute("SELECT id, doc_key, scope, source, title, outlet, published, ingested_at,"
                                    " content_hash, text FROM documents WHERE id > ? ORDER BY id LIMIT ?",
                                    (last, batch)).fetchall()
                if not docs:
                    return
                ids = [d[0] for d in docs]
                marks = ",".join("?" * len(ids))
                prow = conn.execute(
                    'SELECT p.id, p.doc_id, p.ordinal, p.paragraph, p.start, p."end", p.text, p.embed_hash,'
                    f" e.vector, s.vectors FROM passages p LEFT JOIN embeddings e ON e.hash = p.embed_hash"
                    f" LEFT JOIN sentence_embeddings s ON s.hash = p.embed_hash WHERE p.doc_id IN ({marks})"
                    " ORDER BY p.id", ids).fetchall()
                pids = [r[0] for r in prow]
                sents: dict[int, list[tuple[int, int]]] = {}
                for i in range(0, len(pids), 500):
                    part = pids[i:i + 500]
                    for pid, s, e in conn.execute('SELECT passage_id, start, "end" FROM sentences WHERE passage_id IN'
                                                  f' ({",".join("?" * len(part))}) ORDER BY passage_id, start', part):
                        sents.setdefault(pid, []).append((s, e))
                by_doc: dict[int, list[NewPassage]] = {}
                vectors: dict[str, PassageVectors] = {}
                for pid, doc_id, ordinal, paragraph, start, end, text, h, vec, mat in prow:
                    by_doc.setdefault(doc_id, []).append(
                        NewPassage(ordinal, paragraph, start, end, text, h, tuple(sents.get(pid, ()))))
                    if vec is not None and h not in vectors:
                        sentences = (np.frombuffer(mat, dtype=np.float32).reshape(-1, dim) if mat is not None
                                     else np.zeros((0, dim), np.float32))
                        vectors[h] = PassageVectors(np.frombuffer(vec, dtype=np.float32), sentences)
                for d in docs:
                    doc = NewDocument(d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                                      passages=tuple(by_doc.get(d[0], ())))
                    yield doc, {p.embed_hash: vectors[p.embed_hash] for p in doc.passages if p.embed_hash in vectors}
                last = ids[-1]
        finally:
            conn.close()
