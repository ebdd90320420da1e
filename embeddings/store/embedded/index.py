"""One index directory: SQLite (truth) + FAISS and BM25 files (caches) + config.json + the writer lock.

Layout:
    config.json          model, dimension, chunking and retrieval settings (self-describing)
    qabot.sqlite3        documents, passages, sentences, embeddings (WAL)
    artifacts.json       which dense file and keyword segments match which SQLite generation
    dense-<gen>.faiss    FAISS IDMap2 over FlatIP (exact) or IVF-Flat (big corpora), ids = passage ids; memory-mapped
    kwseg-<random>/      keyword (BM25) segments: immutable, an ingest adds one (see keyword.py)
    writer.lock          one writer at a time

Crash safety: SQLite commits first; cache files are written under new names and published by an atomic
rename of artifacts.json. If a process dies in between, the next open sees artifacts.json behind the
database generation (or ids that disagree) and rebuilds the caches from the stored embeddings. Indexes
written before keyword segments (a `keyword-<gen>/` bm25s folder) get their keyword index rebuilt once."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from embeddings.config import IndexConfig
from embeddings.encoders.base import Encoder
from embeddings.errors import IndexBusy, IndexCorrupt
from embeddings.models import BASE_SCOPE
from embeddings.store.base import (
    IntegrityReport,
    StoreCapabilities,
    check_compatible,
    check_writer_backend,
    keyword_text,
    new_config,
)
from embeddings.store.embedded import atomic
from embeddings.store.embedded.botstate import BotStateStore
from embeddings.store.embedded.dense import DenseIndex
from embeddings.store.embedded.feedback import FeedbackStore
from embeddings.store.embedded.keyword import KeywordIndex
from embeddings.store.embedded.sqlite import Store
from embeddings.store.records import NewDocument, PassageRow, PassageVectors


@dataclass
class _Caches:
    generation: int
    dense: DenseIndex
    keyword: KeywordIndex
    scopes: np.ndarray  # scope of each keyword row (same order as keyword.ids)


LOAD_ATTEMPTS = 5  # reads of SQLite + artifacts.json before concluding the caches need a repair
GONE_SCOPE = "\0gone"  # scope of a passage published caches hold but SQLite no longer has: no one's


def _scopes_of(cached: np.ndarray, ids: np.ndarray, scopes: list[str]) -> np.ndarray:
    """Scopes of cached passage ids, from SQLite's ids and scopes; removed passages are no one's, so every
    question's scope filter excludes them."""
    known = dict(zip(ids.tolist(), scopes, strict=True))
    return np.array([known.get(i, GONE_SCOPE) for i in cached.tolist()], dtype=object)


class Index:
    """The embedded store (IndexBackend): one directory, SQLite as the truth, FAISS + BM25 caches."""

    CONFIG = "config.json"
    DB = "qabot.sqlite3"
    ARTIFACTS = "artifacts.json"
    LOCK = "writer.lock"

    capabilities = StoreCapabilities(kind="embedded")

    def __init__(self, home: Path, encoder: Encoder, *, create: bool = True) -> None:
        self.home = Path(home)
        self.encoder = encoder
        if not (self.home / self.CONFIG).exists():
            if not create:
                raise IndexCorrupt(f"No qabot index at {self.home}: run `qabot ingest PATH` first")
            self.home.mkdir(parents=True, exist_ok=True)
            cfg = new_config(encoder)
            atomic.write_text(self.home / self.CONFIG, cfg.to_json())
        self.config = self._read_config()
        check_compatible(self.config, self.encoder, str(self.home))
        self.store = Store(self.home / self.DB, self.config.dimension)
        self._lock = FileLock(str(self.home / self.LOCK))
        self._state_lock = threading.RLock()
        self._exclude_cache: dict[str, np.ndarray] = {}
        self._caches = self._load_or_rebuild()

    # ---- config
    def _read_config(self) -> IndexConfig:
        return self.read_config(self.home)

    @classmethod
    def read_config(cls, home: Path) -> IndexConfig:
        """The config of the index at `home`, without opening it (IndexCorrupt when there is none)."""
        path = Path(home) / cls.CONFIG
        if not path.exists():
            raise IndexCorrupt(f"No qabot index at {home}: run `qabot ingest PATH` first")
        try:
            return IndexConfig.from_json(path.read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"{path} is unreadable ({exc}); it names the model this index needs") from exc

    def save_config(self, config: IndexConfig) -> None:
        atomic.write_text(self.home / self.CONFIG, config.to_json())
        self.config = config

    # ---- caches
    def _read_artifacts(self) -> dict | None:
        try:
            return json.loads((self.home / self.ARTIFACTS).read_text())
        except (OSError, ValueError):
            return None

    def _load_or_rebuild(self, current: _Caches | None = None) -> _Caches:
        """Caches matching SQLite: the published ones when they match, else repaired. Keyword segments
        already in `current` are reused rather than read again (they never change once saved), and a
        repair starts from them, so it tokenizes only the passages they lack."""
        reuse = current.keyword if current is not None else None
        for _ in range(LOAD_ATTEMPTS):
            generation = self.store.generation()
            ids, scopes = self.store.passage_ids_and_scopes()
            art = self._read_artifacts()
            published = art.get("generation") if art else None
            if isinstance(published, int) and published > generation:
                continue  # a writer committed and published between our two reads: read both again
            # Behind SQLite while a writer is busy: its publish is on the way. Opening now serves the last
            # published state (refresh() then waits for the writer, as it does for readers already open)
            # instead of rebuilding what the writer is about to publish (~30 s at 100k passages).
            mid_ingest = (current is None and isinstance(published, int) and published < generation
                          and self._writer_active())
            if art is None or (published != generation and not mid_ingest):
                break  # behind SQLite: a writer died before publishing (or a pre-segment index)
            try:
                dense = DenseIndex.load(self.home / art["dense"], self.config.dimension)
                keyword = KeywordIndex.load(self.home, art["keyword_segments"], reuse)
            except Exception:  # noqa: BLE001 - unreadable or pre-segment caches are rebuilt from SQLite below
                # A writer that published meanwhile deletes the files we were told to read: ask again
                # rather than rebuild (at 100k passages a rebuild takes ~30 s).
                if self._read_artifacts() != art:
                    continue
                break
            if mid_ingest and np.array_equal(dense.ids(), keyword.ids):
                assert isinstance(published, int)  # mid_ingest says so
                return _Caches(published, dense, keyword, _scopes_of(keyword.ids, ids, scopes))
            if np.array_equal(dense.ids(), ids) and np.array_equal(keyword.ids, ids):
                return _Caches(generation, dense, keyword, np.array(scopes, dtype=object))
            break
        caches = self._rebuild(generation, ids, scopes, DenseIndex(self.config.dimension), reuse or KeywordIndex())
        # Persist the repair only if no writer is busy (it will publish its own state when done).
        try:
            with self._lock.acquire(timeout=0):
                self._publish(caches)
        except Timeout:
            pass
        return caches

    def _rebuild(self, generation: int, ids: np.ndarray, scopes: list[str], dense: DenseIndex,
                 keyword: KeywordIndex) -> _Caches:
        """Bring caches in line with SQLite without re-embedding: vectors come from the embeddings table,
        and only passages the keyword index lacks are tokenized."""
        have = dense.ids()
        dense.remove(np.setdiff1d(have, ids))
        missing = np.setdiff1d(ids, have)
        for i in range(0, len(missing), 4096):
            part = missing[i:i + 4096]
            dense.add(part, self.store.vectors_for(part.tolist(), self.config.dimension))
        dense.fit_size()
        gone, new = np.setdiff1d(keyword.ids, ids), np.setdiff1d(ids, keyword.ids)
        if len(new) and len(keyword) and new[0] < keyword.ids[-1]:
            keyword = KeywordIndex()  # ids only grow (AUTOINCREMENT); anything else is repaired from scratch
            gone, new = np.zeros(0, dtype=np.int64), ids
        rows = self.store.iter_passage_texts(None if len(new) == len(ids) else new.tolist())
        keyword = keyword.updated(gone, new, (keyword_text(title, text) for _, text, title in rows))
        return _Caches(generation, dense, keyword, np.array(scopes, dtype=object))

    def _publish(self, caches: _Caches) -> None:
        gen = caches.generation
        dense_name = f"dense-{gen}.faiss"
        caches.dense.save(self.home / dense_name)
        caches.keyword.save_new(self.home)
        live = {dense_name, *caches.keyword.names}
        atomic.write_text(self.home / self.ARTIFACTS,
                          json.dumps({"generation": gen, "dense": dense_name,
                                      "keyword_segments": caches.keyword.names}))
        for old in self.home.iterdir():  # earlier generations and temp leftovers of killed writers
            if old.name in live:
                continue
            # (.artifacts.json.tmp-* too: only a writer holding the lock writes it, so any left is a killed one's)
            if old.name.startswith(("dense-", "keyword-", "kwseg-", ".kwseg-", ".keyword-", ".dense-",
                                    f".{self.ARTIFACTS}.tmp-")):
                shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)

    def refresh(self) -> bool:
        """Pick up what another process committed. Cheap when nothing changed (one SQLite read)."""
        generation = self.store.generation()
        if generation == self._caches.generation:
            return False
        art = self._read_artifacts()
        if art and art.get("generation") != generation and self._writer_active():
            return False  # a writer is mid-ingest; it publishes matching caches when it finishes
        with self._state_lock:
            self._caches = self._load_or_rebuild(self._caches)
            self._exclude_cache.clear()
        return True

    def _writer_active(self) -> bool:
        try:
            with self._lock.acquire(timeout=0):
                return False
        except Timeout:
            return True

    # ---- writing
    @contextmanager
    def writer(self) -> Iterator[Writer]:
        check_writer_backend(self.config, self.encoder, str(self.home))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise IndexBusy(f"Another qabot process is writing to {self.home}; try again when it finishes.") from None
        w = Writer(self)
        try:
            yield w
        finally:
            try:
                if w.changed:
                    self._sync_after_write()
            finally:
                self._lock.release()

    def _sync_after_write(self) -> None:
        generation = self.store.generation()
        ids, scopes = self.store.passage_ids_and_scopes()
        with self._state_lock:
            # Diff against our own dense cache (copy-free): only new vectors are added, removed ones dropped.
            caches = self._rebuild(generation, ids, scopes, self._caches.dense, self._caches.keyword)
            self._caches = caches
            self._exclude_cache.clear()
        self._publish(caches)

    # ---- reading
    def _excluded(self, caches: _Caches, scope: str) -> np.ndarray | None:
        """Passage ids a scope must never see: other guilds' documents."""
        if scope not in self._exclude_cache:
            foreign = (caches.scopes != BASE_SCOPE) & (caches.scopes != scope)
            self._exclude_cache[scope] = caches.keyword.ids[foreign] if foreign.any() else np.zeros(0, np.int64)
        ex = self._exclude_cache[scope]
        return ex if len(ex) else None

    def dense_search(self, query: np.ndarray, k: int, scope: str = BASE_SCOPE) -> tuple[np.ndarray, np.ndarray]:
        with self._state_lock:
            caches = self._caches
            return caches.dense.search(query, k, exclude=self._excluded(caches, scope))

    def _visible(self, caches: _Caches, scope: str) -> np.ndarray | None:
        """Mask of keyword rows a scope may see (None: all); cached per scope like the exclusions."""
        key = "visible:" + scope
        if key not in self._exclude_cache:
            visible = (caches.scopes == BASE_SCOPE) | (caches.scopes == scope)
            self._exclude_cache[key] = visible
        mask = self._exclude_cache[key]
        return None if mask.all() else mask

    def keyword_search(self, query: str, k: int, scope: str = BASE_SCOPE,
                       also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best BM25 rows with a positive score that `scope` may see, plus the scores of the `also`
        ids (0 where a term is absent): (ids ascending, scores). Fusion needs the keyword score of the
        dense candidates too, so a store can answer both in one pass over its keyword index."""
        with self._state_lock:  # the scope masks belong to these caches: read both under one lock
            caches = self._caches
            ids = caches.keyword.ids
            rows, scores = caches.keyword.sparse_scores(query)  # only rows holding a query term
            mask = self._visible(caches, scope) if k > 0 and len(rows) else None
        top = np.zeros(0, dtype=np.int64)
        if k > 0 and len(rows):
            ranked = np.where(mask[rows], scores, 0.0) if mask is not None else scores
            top = np.argpartition(-ranked, k - 1)[:k] if len(ranked) > k else np.arange(len(ranked))
            top = top[ranked[top] > 0]
        out_ids, out_scores = ids[rows[top]], scores[top]
        if also is not None and len(also):
            want = np.setdiff1d(np.asarray(also, dtype=np.int64), out_ids)
            extra = np.zeros(len(want), dtype=np.float32)  # no query term (or not indexed yet): 0
            if len(ids) and len(rows):
                # `also` ids -> keyword rows -> their place among the scored rows
                pos = np.searchsorted(ids, want)
                held = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == want)
                at = np.searchsorted(rows, pos)
                scored = held & (at < len(rows)) & (rows[np.minimum(at, len(rows) - 1)] == pos)
                extra[scored] = scores[at[scored]]
            out_ids, out_scores = np.concatenate([out_ids, want]), np.concatenate([out_scores, extra])
        order = np.argsort(out_ids)
        return out_ids[order], out_scores[order].astype(np.float32)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        with self._state_lock:
            return self._caches.dense.vectors(ids)

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]:
        return self.store.passages(ids)

    # ---- checks
    def integrity(self) -> IntegrityReport:
        ids, _ = self.store.passage_ids_and_scopes()
        caches = self._caches
        problems = []
        if not np.array_equal(caches.dense.ids(), ids):
            problems.append("FAISS ids differ from SQLite passages")
        if not np.array_equal(caches.keyword.ids, ids):
            problems.append("BM25 rows differ from SQLite passages")
        if caches.generation != self.store.generation():
            problems.append("caches are behind the database generation")
        return IntegrityReport(caches.generation, len(ids), len(caches.dense), len(caches.keyword),
                               not problems, tuple(problems))

    @property
    def location(self) -> str:
        return str(self.home)

    def describe(self) -> str:
        # Where is `location` (kept out of here: two copies of one index describe themselves alike).
        return "embedded (SQLite + FAISS + BM25)"

    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.home / self.DB)

    def bot_state(self) -> BotStateStore:
        return BotStateStore(self.home / self.DB)

    def bulk_load(self) -> AbstractContextManager[None]:
        return nullcontext()  # nothing to defer: the caches are built once per publish anyway

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.home.rglob("*") if p.is_file())

    def close(self) -> None:
        self.store.close()


class Writer:
    """Handed out by Index.writer(); each call commits one SQLite transaction."""

    def __init__(self, index: Index) -> None:
        self._index = index
        self.changed = False

    def put_documents(self, docs: Sequence[NewDocument], vectors: dict[str, PassageVectors]) -> None:
        store = self._index.store
        with store.transaction() as conn:
            for doc in docs:
                store.put_document(conn, doc, vectors)
        self.changed = True

    def delete_document(self, doc_id: int) -> None:
        store = self._index.store
        with store.transaction() as conn:
            store.delete_document(conn, doc_id)
        self.changed = True
