"""Dense vector index over passage ids: exact search while small, an inverted-file (IVF) index when big.

Exact FlatIP search costs one dot product per stored passage per question: about 1 ms per 10k passages on a
laptop core, fine up to tens of thousands. Above `IVF_THRESHOLD` vectors the index is rebuilt as IVF-Flat:
k-means cells, and a question scans only the `nprobe` cells nearest to it (about 1/16 of the corpus,
recall@10 against exact search measured by `qabot bench --dense`). IVF rather than HNSW because it
supports removal (a `/forget` must not force a rebuild), adds cheaply (assign to the nearest centroid
instead of a graph insertion), filters by id during the scan without losing recall, and its lists can
be memory-mapped, so a process opening a big index touches only the cells its questions visit.

Loading memory-maps the file (faiss IO_FLAG_MMAP / IO_FLAG_MMAP_IFC). A mapped index is read-only, so the
first add or remove reads the file again into memory (only writers do that)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.errors import QabotError
from embeddings.store.embedded import atomic

MAX_SELECTORS = 256  # cached guild-exclusion selectors (one per scope asked recently)
IVF_THRESHOLD = 50_000   # vectors; below it exact search is both fast enough and exact
RETRAIN_GROWTH = 4       # retrain the cells once the corpus is this many times the size they were trained on
PROBE_FRACTION = 16      # nprobe = nlist / PROBE_FRACTION
MIN_PROBES = 8
TRAIN_POINTS_PER_CELL = 40


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - packaging error
        raise QabotError("FAISS is not installed: pip install faiss-cpu") from exc
    return faiss


def ivf_cells(n: int) -> int:
    """The usual sqrt rule (a few times sqrt(n) cells), as a power of two for tidy sizes."""
    return max(64, min(65536, 2 ** round(math.log2(4 * math.sqrt(max(n, 1))))))


class DenseIndex:
    def __init__(self, dimension: int, index: Any | None = None, *, path: Path | None = None,
                 mapped: bool = False) -> None:
        faiss = _faiss()
        self.dimension = dimension
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._path = path
        self._mapped = mapped
        self._ids_cache: np.ndarray | None = None
        # Exclusion selectors by the identity of the id array they were built from (the array is kept, so
        # the identity stays unique): building one hashes every excluded id, 7 ms for 100k ids, and the
        # Index hands the same array for a scope until its caches change.
        self._selectors: dict[int, tuple[np.ndarray, Any]] = {}

    # ---- shape
    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        return "ivf" if self._ivf() is not None else "flat"

    def _ivf(self) -> Any | None:
        return self._index if isinstance(self._index, _faiss().IndexIVF) else None

    @property
    def nprobe(self) -> int:
        ivf = self._ivf()
        return int(ivf.nprobe) if ivf is not None else 0

    @property
    def trained_on(self) -> int:
        """Roughly how many vectors the IVF cells suit (0 for flat): `ivf_cells` inverted."""
        ivf = self._ivf()
        return int(ivf.nlist) ** 2 // 16 if ivf is not None else 0

    def ids(self) -> np.ndarray:
        if self._ids_cache is None:
            self._ids_cache = np.sort(self._raw_ids())
        return self._ids_cache

    def _raw_ids(self) -> np.ndarray:
        faiss = _faiss()
        ivf = self._ivf()
        if ivf is None:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy()
                 for c in range(ivf.nlist) if lists.list_size(c)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    # ---- writing
    def _writable(self) -> None:
        # A memory-mapped IVF aborts the process on a write (faiss asserts), so writers read a private copy.
        if self._mapped:
            faiss = _faiss()
            try:
                self._index = faiss.read_index(str(self._path))
            except RuntimeError:
                # Another process published a newer generation and deleted our file; the mapping still
                # holds its bytes, so copy from memory instead.
                self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
            self._mapped = False

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._writable()
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                     np.asarray(ids, dtype=np.int64))
            self._ids_cache = None

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        if len(ids):
            self._writable()
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            self._ids_cache = None

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self._raw_ids()
        return ids, self.vectors(ids)

    def fit_size(self, threshold: int | None = None) -> bool:
        """Switch to IVF when the corpus passes the threshold, retrain when it has outgrown its cells, go
        back to exact search when it shrinks well below. True if the index was rebuilt."""
        threshold = threshold or IVF_THRESHOLD
        n = len(self)
        ivf = self._ivf()
        if ivf is None and n < threshold:
            return False
        if ivf is not None and n >= threshold // 2 and n <= RETRAIN_GROWTH * self.trained_on:
            return False
        ids, vectors = self.all_vectors()
        self._index = build_ivf(vectors, ids) if n >= threshold else build_flat(vectors, ids)
        self._mapped = False
        self._ids_cache = None
        return True

    # ---- reading
    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top k (ids, scores) for one query vector; `exclude` ids are never returned (other guilds' passages)."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        faiss = _faiss()
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        sel = None
        if exclude is not None and len(exclude):
            # Filtering happens inside the scan, so the k results are k visible ones (no post-filter loss).
            sel = self._selector(exclude)
        ivf = self._ivf()
        if ivf is not None:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=int(ivf.nprobe)) if sel is not None else None
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        # One question is one OpenMP thread: faiss's threads for a single query made exact search slower
        # (49k vectors: p50 10 ms on 2 threads, 6 ms on one) and then spin-waited, burning 3-4x the CPU a
        # busy bot needs elsewhere. The setting is per calling thread; it is restored for builds on it.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, ids = self._index.search(q, min(k, len(self)), params=params)
        finally:
            faiss.omp_set_num_threads(threads)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def _selector(self, exclude: np.ndarray) -> Any:
        hit = self._selectors.get(id(exclude))
        if hit is not None and hit[0] is exclude:
            return hit[1]
        if len(self._selectors) >= MAX_SELECTORS:  # scopes come and go: start over rather than grow
            self._selectors.clear()
        faiss = _faiss()
        sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(exclude.astype(np.int64)))
        self._selectors[id(exclude)] = (exclude, sel)
        return sel

    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))  # one C++ loop, not one call per id

    # ---- files
    def save(self, path: Path) -> None:
        faiss = _faiss()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            # Straight to disk (no second in-memory copy of a big index), through a Python file: faiss's
            # own writer only prints a failed close (a full disk) and leaves a truncated file, where
            # Python raises the OSError.
            with open(tmp, "wb") as fh:
                writer = faiss.PyCallbackIOWriter(fh.write)
                try:
                    faiss.write_index(self._index, writer)
                finally:
                    del writer  # flushes its buffer
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            atomic.discard(tmp)
            raise
        atomic.fsync_dir(path.parent)

    @classmethod
    def load(cls, path: Path, dimension: int, *, mmap: bool = True) -> DenseIndex:
        faiss = _faiss()
        flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0  # maps flat codes and IVF lists alike
        index = faiss.read_index(str(path), flags)
        if index.d != dimension:
            raise QabotError(f"{path} holds {index.d}-dimensional vectors, expected {dimension}")
        return cls(dimension, index, path=path, mapped=bool(mmap))


def build_flat(vectors: np.ndarray, ids: np.ndarray) -> Any:
    faiss = _faiss()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def build_ivf(vectors: np.ndarray, ids: np.ndarray, *, nlist: int | None = None, seed: int = 0) -> Any:
    """IVF-Flat with inner product; cells trained on a sample of the vectors themselves."""
    faiss = _faiss()
    n, d = vectors.shape
    nlist = nlist or min(ivf_cells(n), max(1, n // 8))  # (the cap only matters for tiny test corpora)
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    ivf.cp.niter = 12
    ivf.cp.min_points_per_centroid = 5  # small corpora (tests, shrinking) train on what there is, quietly
    sample = vectors
    if n > nlist * TRAIN_POINTS_PER_CELL:
        pick = np.random.default_rng(seed).choice(n, nlist * TRAIN_POINTS_PER_CELL, replace=False)
        sample = vectors[np.sort(pick)]
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
    ivf.nprobe = max(MIN_PROBES, nlist // PROBE_FRACTION)
    # IVF keeps passage ids itself (no IDMap layer); reconstruct(id) serves the cosine of fusion candidates,
    # and a hashtable direct map (unlike an array one) allows removal.
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return ivf
