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
import re
import shutil
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from embeddings.config import IndexConfig
from embeddings.encoders.base import Encoder
from embeddings.errors import IndexBusy, IndexCorrupt, QabotError, storage_error
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
from embeddings.store.embedded import atomic
from embeddings.store.embedded.botstate import BotStateStore
from embeddings.store.embedded.dense import DenseIndex
from embeddings.store.embedded.feedback import FeedbackStore
from embeddings.store.embedded.keyword import KeywordIndex
from embeddings.store.embedded.sqlite import SqliteStore
from embeddings.store.records import NewDocument, PassageRow, PassageVectors
from embeddings.text.terms import tokenize


@dataclass
class _Caches:
    generation: int
    dense: DenseIndex
    keyword: KeywordIndex
    scopes: np.ndarray  # scope of each keyword row (same order as keyword.ids)


_DENSE_NAME = re.compile(r"dense-\d+\.faiss")
_SEGMENT_NAME = re.compile(r"kwseg-[0-9a-f]{16}")
LOAD_ATTEMPTS = 5  # reads of SQLite + artifacts.json before concluding the caches need a repair
GONE_SCOPE = "\0gone"  # scope of a passage published caches hold but SQLite no longer has: no one's


def _scopes_of(cached: np.ndarray, ids: np.ndarray, scopes: list[str]) -> np.ndarray:
    """Scopes of cached passage ids, from SQLite's ids and scopes; removed passages are no one's, so every
    question's scope filter excludes them."""
    known = dict(zip(ids.tolist(), scopes, strict=True))
    return np.array([known.get(i, GONE_SCOPE) for i in cached.tolist()], dtype=object)


def _zero_vectors(dense: DenseIndex, chunk: int = 4096) -> int:
    """How many vectors of the dense cache are all zeros (a passage whose embedding was lost)."""
    ids = dense.ids()
    return sum(int(np.count_nonzero(~dense.vectors(ids[i:i + chunk]).any(axis=1)))
               for i in range(0, len(ids), chunk))


class EmbeddedIndex:
    """The embedded store (IndexBackend): one directory, SQLite as the truth, FAISS + BM25 caches."""

    CONFIG = "config.json"
    DB = "qabot.sqlite3"
    ARTIFACTS = "artifacts.json"
    LOCK = "writer.lock"

    capabilities = StoreCapabilities(kind="embedded")

    def __init__(self, home: Path, encoder: Encoder, *, create: bool = True) -> None:
        self.home = Path(home)
        self.encoder = encoder
        if not (self.home / self.CONFIG).exists() and not (self.home / self.DB).exists():
            if not create:
                raise IndexCorrupt(f"No qabot index at {self.home}: run `qabot ingest PATH` first")
            self.home.mkdir(parents=True, exist_ok=True)
            cfg = new_config(encoder)
            atomic.write_text(self.home / self.CONFIG, cfg.to_json())
        self.store = SqliteStore(self.home / self.DB)
        try:
            self.config = self._read_config()
            check_compatible(self.config, self.encoder, str(self.home))
        except BaseException:
            self.store.close()
            raise
        self.store.dimension = self.config.dimension
        self._adopt_recorded_backend()
        self._lock = FileLock(str(self.home / self.LOCK))
        self._state_lock = threading.RLock()
        self._exclude_cache: dict[str, np.ndarray] = {}
        self._caches = self._load_or_rebuild()
        self._clean_stale_if_idle()

    def _clean_stale_if_idle(self) -> None:
        """Leftovers of a writer killed mid-cleanup go at the next open, if no writer is busy (a busy one
        has files of its own on the way that artifacts.json does not name yet)."""
        live = self._published_names()
        if self.store.read_only is not None or live is None or not self._stale(live):
            return
        try:
            with self._lock.acquire(timeout=0):
                self._clean_stale()
        except (Timeout, OSError):
            pass
    # ---- config
    def _read_config(self) -> IndexConfig:
        """config.json; if it is lost or unreadable, the copy SQLite keeps (meta 'config'), written back.
        The database also gets a copy if it lacks one (indexes from before it was kept there)."""
        path = self.home / self.CONFIG
        recorded = self.store.meta("config")
        try:
            config = IndexConfig.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if recorded is None:
                dim = self.store.embedding_dimension()
                hint = f', "dimension": {dim}' if dim else ""
                what = "is missing" if isinstance(exc, FileNotFoundError) else f"is unreadable ({exc})"
                raise IndexCorrupt(
                    f"{path} {what} and this index's database does not record which model built it: restore "
                    f"config.json from a backup, or write one naming that model, e.g. "
                    f'{{"model": "MODEL"{hint}, "max_tokens": 256}}.') from exc
            config = IndexConfig.from_json(recorded)
            try:
                atomic.write_text(path, config.to_json())
            except OSError:
                pass  # (a read-only or full disk: the recovered config is used from memory)
            return config
        if recorded != config.to_json() and self.store.read_only is None:
            try:
                self.store.put_meta("config", config.to_json())
            except (QabotError, sqlite3.Error):
                pass  # (a busy or full disk: kept on a later open)
        return config

    @classmethod
    def read_config(cls, home: Path) -> IndexConfig:
        """The config of the index at `home` without opening it: config.json, else the copy its database
        keeps (read-only), else IndexCorrupt."""
        home = Path(home)
        try:
            return IndexConfig.from_json((home / cls.CONFIG).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if (home / cls.DB).is_file():
            try:
                conn = sqlite3.connect(f"file:{home / cls.DB}?mode=ro", uri=True)
                try:
                    row = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
                finally:
                    conn.close()
            except sqlite3.Error:
                row = None
            if row is not None:
                return IndexConfig.from_json(row[0])
        raise IndexCorrupt(f"No qabot index at {home}: run `qabot ingest PATH` first")

    def save_config(self, config: IndexConfig) -> None:
        atomic.write_text(self.home / self.CONFIG, config.to_json())
        self.store.put_meta("config", config.to_json())
        self.config = config

    def _adopt_recorded_backend(self, persist: bool = False) -> None:
        """The backend SQLite records (set by `qabot reindex` with the vectors) wins over config.json, which
        a reindex rewrites just after its commit: a crash in between, or a reindex by another process since
        this one opened, must not let a write add vectors of the old backend. `persist` (under the writer
        lock) repairs config.json too."""
        stored = self.store.recorded_backend()
        if stored and stored != self.config.encoder_backend:
            self.config = replace(self.config, encoder_backend=stored)
            self._config_stale = True
        if persist and getattr(self, "_config_stale", False):
            self.save_config(self.config)
            self._config_stale = False

    # ---- caches
    def _read_artifacts(self) -> dict | None:
        """artifacts.json if it has the shape qabot writes (else None: the caches are rebuilt). Names must
        be plain cache names in this directory, never a path elsewhere."""
        try:
            art = json.loads((self.home / self.ARTIFACTS).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(art, dict):
            return None
        generation, dense, segments = art.get("generation"), art.get("dense"), art.get("keyword_segments")
        if (type(generation) is not int or generation < 0 or not isinstance(dense, str)
                or not _DENSE_NAME.fullmatch(dense) or not isinstance(segments, list)
                or not all(isinstance(n, str) and _SEGMENT_NAME.fullmatch(n) for n in segments)):
            # (an index from before keyword segments names a `keyword` folder: rebuilt the same way)
            return {"generation": generation} if type(generation) is int else None
        return art

    def _segments_match_sqlite(self, keyword: KeywordIndex, reuse: KeywordIndex | None) -> bool:
        """Spot-check segments just read from disk against the passage texts in SQLite: a few rows of each
        (first, middle, last) must hold exactly the terms their text tokenizes to. Segment.load already
        checked each file's internal consistency; this catches a segment of valid form but wrong words."""
        known = {s.name for s in reuse.segments} if reuse is not None else set()
        rows = [(seg, r) for seg in keyword.segments if seg.name not in known
                for r in sorted({0, len(seg) // 2, len(seg) - 1})]
        if not rows:
            return True
        texts = {pid: keyword_text(title, text)
                 for pid, text, title in self.store.iter_passage_texts(sorted({int(s.ids[r]) for s, r in rows}))}
        for seg, r in rows:
            pid = int(seg.ids[r])
            # (a passage SQLite no longer has, mid-ingest, cannot be checked; otherwise the ids disagree anyway)
            if pid in texts and seg.row_terms(r) != dict(Counter(tokenize([texts[pid]])[0])):
                return False
        return True

    def _load_or_rebuild(self, current: _Caches | None = None) -> _Caches:
        """Caches matching SQLite: the published ones when they match, else repaired. Keyword segments
        already in `current` are reused rather than read again (they never change once saved), and a
        repair starts from them, so it tokenizes only the passages they lack."""
        reuse = current.keyword if current is not None else None
        for _ in range(LOAD_ATTEMPTS):
            generation, ids, scopes = self.store.snapshot()
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
                if not self._segments_match_sqlite(keyword, reuse):
                    raise ValueError("a keyword segment does not match the passages in SQLite")
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
        # Persist the repair only if no writer is busy (it will publish its own state when done), and
        # serve it from memory when it cannot be saved (a full disk, a read-only medium): reading must
        # not depend on writing.
        if self.store.read_only is None:
            try:
                with self._lock.acquire(timeout=0):
                    # Compare and swap: a writer may have committed and published while we rebuilt (~30 s
                    # at 100k passages); then our repair is of an older state and must not replace its.
                    if self.store.generation() == caches.generation and self._read_artifacts() == art:
                        self._publish(caches)
            except Timeout:
                pass
            except OSError:
                pass  # (atomic writes leave no temp files behind; the next open tries again)
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
        self._remove_stale(live)

    def _stale(self, live: set[str]) -> list[Path]:
        """Cache files of other generations and temp leftovers of killed writers (only a writer holding the
        lock writes any of them, .artifacts.json.tmp-* too, so whatever artifacts.json does not name is
        garbage when we hold the lock)."""
        return [old for old in self.home.iterdir() if old.name not in live and old.name.startswith(
            ("dense-", "keyword-", "kwseg-", ".kwseg-", ".keyword-", ".dense-", f".{self.ARTIFACTS}.tmp-"))]

    def _remove_stale(self, live: set[str]) -> None:
        for old in self._stale(live):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)

    def _published_names(self) -> set[str] | None:
        art = self._read_artifacts()
        if art is None or "dense" not in art:
            return None
        return {art["dense"], *art["keyword_segments"]}

    def _clean_stale(self) -> None:
        """With the lock held: remove what a writer killed while deleting old generations left behind."""
        live = self._published_names()
        if live is not None and all((self.home / n).exists() for n in live):
            self._remove_stale(live)

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
        except OSError:  # a lock file no one can open (read-only medium): no one is writing through it
            return False

    # ---- writing
    @contextmanager
    def writer(self) -> Iterator[Writer]:
        check_writer_backend(self.config, self.encoder, str(self.home))
        if self.store.read_only is not None:  # say why before anything is attempted
            raise self.store.read_only
        self._acquire_writer_lock()
        try:  # again under the lock: another process may have reindexed since this one opened the index
            self._adopt_recorded_backend(persist=True)
            check_writer_backend(self.config, self.encoder, str(self.home))
        except BaseException:
            self._lock.release()
            raise
        w = Writer(self)
        try:
            # Start from what another process (a CLI ingest next to the bot) may have published meanwhile:
            # the files our caches were loaded from may be gone.
            self.refresh()
            self._clean_stale()
            yield w
        finally:
            try:
                if w.changed:
                    self._sync_after_write()
            finally:
                self._lock.release()

    def _acquire_writer_lock(self) -> None:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise IndexBusy(f"Another qabot process is writing to {self.home}; try again when it finishes.") from None
        except OSError as exc:
            raise self._storage_error(exc, self.home / self.LOCK) from exc

    @contextmanager
    def reindexer(self) -> Iterator[EmbeddedReindex]:
        """`qabot reindex`: hold the writer lock (no ingest meanwhile) and stage new vectors beside the
        served ones; EmbeddedReindex.finish swaps them in. Other backends than the recorded one may write
        here: that is the point. The config then names the vectors as SQLite records them now (another
        process may have reindexed since this one opened)."""
        self._acquire_writer_lock()
        try:
            self._adopt_recorded_backend()
            yield EmbeddedReindex(self)
        finally:
            self._lock.release()

    def _after_reindex(self, backend: str) -> None:
        """SQLite holds the new vectors: record the backend in config.json and publish a dense index built
        afresh from them (the ids are unchanged, so the usual diff would keep the old vectors). The keyword
        index is kept: the text did not change. A crash before the publish is repaired on the next open
        (artifacts.json is behind the generation, and a repair builds the dense index from SQLite)."""
        self.save_config(replace(self.config, encoder_backend=backend))
        generation = self.store.generation()
        ids, scopes = self.store.passage_ids_and_scopes()
        with self._state_lock:
            caches = self._rebuild(generation, ids, scopes, DenseIndex(self.config.dimension), self._caches.keyword)
            self._caches = caches
            self._exclude_cache.clear()
        self._publish(caches)

    def _sync_after_write(self) -> None:
        generation = self.store.generation()
        ids, scopes = self.store.passage_ids_and_scopes()
        with self._state_lock:
            # Diff against our own dense cache (copy-free): only new vectors are added, removed ones dropped.
            caches = self._rebuild(generation, ids, scopes, self._caches.dense, self._caches.keyword)
            self._caches = caches
            self._exclude_cache.clear()
        try:
            self._publish(caches)
        except OSError as exc:  # committed, but the caches could not be saved: say why in one line
            raise self._storage_error(exc, self.home) from exc

    def _storage_error(self, exc: OSError, path: Path) -> QabotError:
        known = storage_error(exc, str(self.home))
        if known is not None:
            return known
        if path.name == self.LOCK:
            return IndexCorrupt(f"{path} is not a lock file qabot can use ({exc.strerror or exc}): with no qabot "
                                "process running, remove it and try again.")
        return IndexCorrupt(f"Cannot write {path}: {exc.strerror or exc}")

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
        """Caches against SQLite. While another process is mid-ingest (it holds the writer lock and has
        committed batches it has not published yet) SQLite is ahead of every published cache by design:
        then the published generation this process serves is checked on its own (FAISS and BM25 agree)."""
        for _ in range(LOAD_ATTEMPTS):
            self.refresh()
            generation, ids, _ = self.store.snapshot()
            caches = self._caches
            if caches.generation == generation:
                break
            if caches.generation < generation and self._writer_active():
                return self._report(caches, ids, mid_ingest=True)
            # A writer committed and published (or finished) between our reads: catch up and look again.
        return self._report(caches, ids, mid_ingest=False, behind=caches.generation != generation)

    def _report(self, caches: _Caches, ids: np.ndarray, *, mid_ingest: bool, behind: bool = False) -> IntegrityReport:
        problems = []
        if mid_ingest:
            if not np.array_equal(caches.dense.ids(), caches.keyword.ids):
                problems.append("FAISS ids differ from BM25 rows in the published caches")
        else:
            if not np.array_equal(caches.dense.ids(), ids):
                problems.append("FAISS ids differ from SQLite passages")
            if not np.array_equal(caches.keyword.ids, ids):
                problems.append("BM25 rows differ from SQLite passages")
            if behind:
                problems.append("caches are behind the database generation")
        if not self._segments_match_sqlite(caches.keyword, None):
            problems.append("BM25 rows hold other terms than their passages in SQLite")
        missing = self.store.count_passages_without_embedding()
        if missing:
            problems.append(f"{missing} passages have no stored embedding (dense search cannot find them; "
                            "ingest their documents again)")
        zero = _zero_vectors(caches.dense)
        if zero:
            problems.append(f"{zero} FAISS vectors are all zeros")
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
        total = 0
        for p in self.home.rglob("*"):
            try:  # a writer may delete an old generation's files while we count
                total += p.stat().st_size if p.is_file() else 0
            except OSError:
                pass
        return total

    def close(self) -> None:
        self.store.close()


class Writer:
    """Handed out by EmbeddedIndex.writer(); each call commits one SQLite transaction."""

    def __init__(self, index: EmbeddedIndex) -> None:
        self._index = index
        self.changed = False

    def put_documents(self, docs: Sequence[NewDocument], vectors: dict[str, PassageVectors]) -> None:
        store = self._index.store
        with store.transaction() as conn:
            # One orphan sweep after every document is in: a document of this batch may reuse an embedding
            # that the replacement of another one (earlier in the batch) no longer uses.
            replaces = any(conn.execute("SELECT 1 FROM documents WHERE scope = ? AND source = ?",
                                        (doc.scope, doc.source)).fetchone() for doc in docs)
            doc_ids = [store.put_document(conn, doc, vectors, sweep=False) for doc in docs]
            if replaces:  # only a replacement can orphan embeddings; the sweep is a full scan
                store.drop_orphan_embeddings(conn)
            if store.passages_without_embedding(conn, doc_ids):  # never commit a passage without its vector
                raise IndexCorrupt("Internal error: a passage of this batch has no embedding; nothing of the "
                                   "batch was committed. Please report this with the command you ran.")
        self.changed = True

    def delete_document(self, doc_id: int) -> None:
        store = self._index.store
        with store.transaction() as conn:
            store.delete_document(conn, doc_id)
        self.changed = True



class EmbeddedReindex:
    """One `qabot reindex` of a directory index (see embeddings/ingest/reindex.py for the driver). Staged
    vectors survive a crash: a rerun with the same model and backend embeds only what is not staged yet."""

    def __init__(self, index: EmbeddedIndex) -> None:
        self._index = index
        self.backend = encoder_backend(index.encoder)
        self.staged = index.store.begin_reindex(f"{index.config.model}\0{self.backend}")

    def hashes(self) -> set[str]:
        return self._index.store.passage_hashes()

    def stage(self, vectors: dict[str, PassageVectors]) -> None:
        self._index.store.stage_vectors(vectors)
        self.staged.update(vectors)

    def finish(self, embed_missing: Callable[[set[str]], dict[str, PassageVectors]]) -> int:
        missing = self.hashes() - self.staged
        if missing:  # none under the writer lock; kept for symmetry with PostgreSQL
            self.stage(embed_missing(missing))
        n = self._index.store.finish_reindex(self.backend)
        self._index._after_reindex(self.backend)
        return n


def recorded_backend_at(home: Path) -> str | None:
    """The encoder backend the index at `home` records, without opening it: SQLite's meta row (written with
    the vectors by `qabot reindex`) over config.json; None when there is no index."""
    try:
        config = IndexConfig.from_json((Path(home) / EmbeddedIndex.CONFIG).read_text())
    except (OSError, ValueError, KeyError):
        return None
    db = Path(home) / EmbeddedIndex.DB
    if db.is_file():
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
            try:
                stored = SqliteStore.read_backend(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            stored = None
        if stored:
            return stored
    return config.encoder_backend


