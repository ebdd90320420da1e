"""Keyword index: BM25 (bm25s) over stemmed, stop-worded passage text with its headline."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QabotError

_stemmer: Any = None


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - packaging error
        raise QabotError("bm25s is not installed: pip install bm25s PyStemmer") from exc
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _get_stemmer() -> Any:
    global _stemmer
    if _stemmer is None:
        import Stemmer

        _stemmer = Stemmer.Stemmer("english")
    return _stemmer


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    out = _bm25s().tokenize(list(texts), stopwords="en", stemmer=_get_stemmer(), return_ids=False,
                            show_progress=False)
    return [list(t) for t in out]


class KeywordIndex:
    def __init__(self, ids: np.ndarray, retriever: Any | None) -> None:
        self.ids = ids  # row i of the BM25 matrix is passage ids[i]
        self._retriever = retriever
        self._vocab: dict[str, int] = getattr(retriever, "vocab_dict", None) or {}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: Sequence[int], texts: Sequence[str]) -> KeywordIndex:
        id_arr = np.asarray(ids, dtype=np.int64)
        if not len(id_arr):
            return cls(id_arr, None)
        bm25s = _bm25s()
        retriever = bm25s.BM25()
        retriever.index(tokenize(texts), show_progress=False)
        return cls(id_arr, retriever)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (rows align with self.ids)."""
        if self._retriever is None:
            return np.zeros(0, dtype=np.float32)
        tokens = [t for t in tokenize([query])[0] if t in self._vocab]
        if not tokens:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._retriever.get_scores(tokens), dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "ids.npy", self.ids)
        if self._retriever is not None:
            self._retriever.save(str(directory), show_progress=False)
        (directory / "meta.json").write_text(json.dumps({"rows": len(self.ids), "empty": self._retriever is None}))

    @classmethod
    def load(cls, directory: Path) -> KeywordIndex:
        meta = json.loads((directory / "meta.json").read_text())
        ids = np.load(directory / "ids.npy")
        if meta.get("empty"):
            return cls(ids, None)
        retriever = _bm25s().BM25.load(str(directory), show_progress=False, mmap=False)
        return cls(ids, retriever)
