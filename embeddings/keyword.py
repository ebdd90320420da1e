"""Keyword index: BM25 (bm25s) over stemmed, stop-worded passage text with its headline."""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Iterable, Sequence
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


# bm25s.tokenize's defaults (lower-cased, scikit-learn's token pattern, English stop words, Snowball
# stems), redone here because its per-call cost (a stop-word set rebuilt per text, progress-bar objects)
# was ~4 ms of every answer at 100k passages: questions, and the sentences of passages new to the cache,
# are tokenized one small batch at a time. Equality with bm25s is a test: existing indexes depend on it.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STEM_CACHE_MAX = 200_000
TOKENIZE_CHUNK = 2048  # texts per tokenize() call when building
_stems: dict[str, str] = {}
_stems_lock = threading.Lock()
_stopwords: frozenset[str] | None = None


def _stop_words() -> frozenset[str]:
    global _stopwords
    if _stopwords is None:
        from bm25s.stopwords import STOPWORDS_EN

        _stopwords = frozenset(STOPWORDS_EN)
    return _stopwords


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Stemmed, stop-worded terms of each text, exactly as bm25s.tokenize(stopwords="en", stemmer=...)."""
    stop = _stop_words()
    words = [[w for w in _TOKEN.findall(t.lower()) if w not in stop] for t in texts]
    with _stems_lock:  # PyStemmer objects are not thread-safe; the cache is bounded by a clear
        if len(_stems) > _STEM_CACHE_MAX:
            _stems.clear()
        new = list({w for ws in words for w in ws if w not in _stems})
        if new:
            _stems.update(zip(new, _get_stemmer().stemWords(new), strict=True))
        return [[_stems[w] for w in ws] for ws in words]


class KeywordIndex:
    def __init__(self, ids: np.ndarray, retriever: Any | None) -> None:
        self.ids = ids  # row i of the BM25 matrix is passage ids[i]
        self._retriever = retriever
        self._vocab: dict[str, int] = getattr(retriever, "vocab_dict", None) or {}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: Sequence[int], texts: Iterable[str]) -> KeywordIndex:
        """The index of texts[i] as passage ids[i]. `texts` may be a generator: it is tokenized a chunk at a
        time, because one call over 100k passages peaked at 1.1 GB of word lists, against ~0.65 GB."""
        id_arr = np.asarray(ids, dtype=np.int64)
        if not len(id_arr):
            return cls(id_arr, None)
        corpus: list[list[str]] = []
        pending = iter(texts)
        while chunk := list(itertools.islice(pending, TOKENIZE_CHUNK)):
            corpus.extend(tokenize(chunk))
        if len(corpus) != len(id_arr):
            raise ValueError(f"{len(id_arr)} ids but {len(corpus)} texts")
        bm25s = _bm25s()
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        return cls(id_arr, retriever)

    def sparse_scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores): the rows holding at least one query term (ascending, row i is passage ids[i]) and
        their BM25 scores. Read from the query terms' posting lists alone, so a question costs what its
        terms' postings cost, not the size of the corpus. Same sums as bm25s.get_scores (a repeated term
        counts again)."""
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._retriever is None:
            return empty
        terms = [self._vocab[t] for t in tokenize([query])[0] if t in self._vocab]
        if not terms:
            return empty
        matrix = self._retriever.scores
        indptr, indices, data = matrix["indptr"], matrix["indices"], matrix["data"]
        rows = np.concatenate([indices[indptr[t]:indptr[t + 1]] for t in terms])
        values = np.concatenate([data[indptr[t]:indptr[t + 1]] for t in terms])
        if len(terms) == 1:
            return rows.astype(np.int64), values.astype(np.float32)  # one posting list: sorted, unique
        if len(rows) * 8 >= len(self.ids):
            # Common terms: their postings already cover a good share of the corpus, and summing into a
            # corpus-sized array is linear where sorting the postings (below) is not (3 ms at 100k).
            total = np.bincount(rows, weights=values, minlength=len(self.ids))
            hit = np.flatnonzero(total)
            return hit.astype(np.int64), total[hit].astype(np.float32)
        unique, at = np.unique(rows, return_inverse=True)
        return unique.astype(np.int64), np.bincount(at, weights=values, minlength=len(unique)).astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (rows align with self.ids)."""
        out = np.zeros(len(self.ids) if self._retriever is not None else 0, dtype=np.float32)
        rows, values = self.sparse_scores(query)
        out[rows] = values
        return out

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
