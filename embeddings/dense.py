"""Dense vector index: FAISS IDMap over exact inner product; ids are passage ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import QabotError


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - packaging error
        raise QabotError("FAISS is not installed: pip install faiss-cpu") from exc
    return faiss


class DenseIndex:
    def __init__(self, dimension: int, index: Any | None = None) -> None:
        faiss = _faiss()
        self.dimension = dimension
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return np.sort(_faiss().vector_to_array(self._index.id_map).astype(np.int64))

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                     np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top k (ids, scores) for one query vector; `exclude` ids are never returned (other guilds' passages)."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        faiss = _faiss()
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        params = None
        if exclude is not None and len(exclude):
            params = faiss.SearchParameters(sel=faiss.IDSelectorNot(faiss.IDSelectorBatch(exclude.astype(np.int64))))
        scores, ids = self._index.search(q, min(k, len(self)), params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        return np.stack([self._index.reconstruct(int(i)) for i in ids]) if len(ids) else \
            np.zeros((0, self.dimension), dtype=np.float32)

    def save(self, path: Path) -> None:
        atomic.write_bytes(path, _faiss().serialize_index(self._index).tobytes())

    @classmethod
    def load(cls, path: Path, dimension: int) -> DenseIndex:
        faiss = _faiss()
        index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        if index.d != dimension:
            raise QabotError(f"{path} holds {index.d}-dimensional vectors, expected {dimension}")
        return cls(dimension, index)
