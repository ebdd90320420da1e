"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates, fused on z-normalised scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embeddings.config import RetrievalParams
from embeddings.models import BASE_SCOPE
from embeddings.store.base import IndexBackend

MODES = ("bm25", "dense", "fusion")


@dataclass(frozen=True)
class Candidate:
    passage_id: int
    score: float    # the ranking score of the mode used
    dense: float    # cosine of question and passage
    keyword: float  # raw BM25
    prior: float = 0.0  # the conversation's prior: how near the previous answer's passage (0: unrelated)


def zscore(x: np.ndarray) -> np.ndarray:
    # z-scores put BM25 (unbounded) and cosine (-1..1) on one scale, per question.
    sd = float(x.std())
    return (x - x.mean()) / sd if sd > 1e-9 else np.zeros_like(x)


class Retriever:
    def __init__(self, index: IndexBackend, params: RetrievalParams) -> None:
        self.index = index
        self.params = params

    def search(self, question: str, qvec: np.ndarray, k: int, *, scope: str = BASE_SCOPE,
               mode: str = "fusion", prior: dict[int, float] | None = None) -> list[Candidate]:
        """The top k passages for `question` (what BM25 reads) and `qvec` (what dense search reads).

        `prior` (passage id -> 0..1) is the conversation's: those passages join the candidates whatever their
        scores, and the fused score gains RetrievalParams.history_fusion_weight times their prior."""
        n = max(k, self.params.candidates)
        d_ids, _ = self.index.dense_search(qvec, n, scope) if mode != "bm25" else (np.zeros(0, np.int64), None)
        if prior:
            d_ids = np.unique(np.concatenate([d_ids, np.fromiter(prior, dtype=np.int64)]))
        # Keyword top n plus the keyword scores of the dense candidates (a dense-only run still reports them).
        ids, keyword = self.index.keyword_search(question, 0 if mode == "dense" else n, scope, also=d_ids)
        if not len(ids):
            return []
        keyword = keyword.astype(np.float64)
        dense = self.index.vectors(ids.tolist()) @ qvec.astype(np.float32)
        if mode == "dense":
            score = dense
        elif mode == "bm25":
            score = keyword
        else:
            w = self.params.dense_weight
            score = w * zscore(dense) + (1 - w) * zscore(keyword)
        near = np.array([(prior or {}).get(int(i), 0.0) for i in ids], dtype=np.float64)
        if prior:
            score = score + self.params.history_fusion_weight * near
        order = np.argsort(-score, kind="stable")[:k]
        return [Candidate(int(ids[i]), float(score[i]), float(dense[i]), float(keyword[i]), float(near[i]))
                for i in order]
