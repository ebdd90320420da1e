"""Retrieval and answer metrics: pure functions over rankings, plus an accumulator for a whole run.

Conventions (checked against ranx in tests/test_eval_metrics.py):
- `recall_at_k` is success@k (ranx "hit_rate@k"): 1.0 if ANY gold passage is in the top k. This is what the
  project's targets mean by "R@1". For multi-gold sets (SciFact) `fraction_recall_at_k` gives the classic
  fraction-of-relevant recall (ranx "recall@k").
- Relevance is binary. A passage id repeated in a ranking counts once, at its first rank (several chunks of
  one passage must not score twice, which would also push nDCG above 1).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from embeddings.evaluation.datasets import EvalQuestion


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _hits(ranked: Sequence[str], gold: Collection[str], k: int) -> list[bool]:
    """Relevance of the first k distinct ids of `ranked`."""
    _check_k(k)
    if not gold:
        raise ValueError("gold is empty: retrieval metrics are undefined without a relevant passage")
    gold_set = set(gold)
    distinct = list(dict.fromkeys(ranked))[:k]
    return [r in gold_set for r in distinct]


def _recall(hits: Sequence[bool]) -> float:
    return 1.0 if any(hits) else 0.0


def _mrr(hits: Sequence[bool]) -> float:
    return next((1.0 / (i + 1) for i, h in enumerate(hits) if h), 0.0)


def _ndcg(hits: Sequence[bool], n_gold: int, k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(hits) if h)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n_gold, k)))
    return dcg / ideal


def recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Success@k: 1.0 if any gold id is among the first k ranked ids, else 0.0 (the project's "R@k")."""
    return _recall(_hits(ranked, gold, k))


def fraction_recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float:
    """Classic recall@k: the fraction of gold ids found in the top k (differs from success@k on multi-gold)."""
    return sum(_hits(ranked, gold, k)) / len(set(gold))


def mrr_at_k(ranked: Sequence[str], gold: Collection[str], k: int = 10) -> float:
    """Reciprocal rank of the first gold id within the top k, 0.0 if none."""
    return _mrr(_hits(ranked, gold, k))


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str], k: int = 10) -> float:
    """Binary nDCG@k: gains 1/log2(rank+1); the ideal ranking puts min(len(gold), k) gold ids first."""
    return _ndcg(_hits(ranked, gold, k), len(set(gold)), k)


# ------------------------------------------------------------------------------------------------ answers

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_punct(ch: str) -> bool:
    # Unicode punctuation too (curly quotes, en dashes): web articles are full of them, SQuAD answers not always.
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(s: str) -> str:
    """SQuAD-style normalisation: lowercase, punctuation out, articles a/an/the out, whitespace collapsed.

    One deliberate difference from the official script: punctuation becomes a space instead of vanishing,
    so "Sadat's" gives "sadat s" and the answer word "Sadat" still matches as a whole word."""
    s = "".join(" " if _is_punct(ch) else ch for ch in s.lower())
    return " ".join(_ARTICLES.sub(" ", s).split())


def answer_hit(sentence: str, answers: Sequence[str], *, require_all: bool) -> bool:
    """True if the normalised sentence contains the normalised answer(s) as whole-word substrings.

    require_all=True (seed format): every answer word must appear; False (SQuAD): any one answer string.
    Whole words, because a bare substring lets "Oman" match inside "woman". Answers that normalise to
    nothing (e.g. "The") cannot be checked and are ignored; if none is left the result is False."""
    if not answers:
        raise ValueError("answer_hit needs at least one answer")
    padded = f" {normalize_answer(sentence)} "
    normed = [a for a in (normalize_answer(x) for x in answers) if a]
    if not normed:
        return False
    found = (f" {a} " in padded for a in normed)
    return all(found) if require_all else any(found)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"p must be in [0, 100], got {p}")
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# -------------------------------------------------------------------------------------------- accumulator

RESULT_KEYS: tuple[str, ...] = (
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr@10",
    "ndcg@10",
    "answer_hit",
    "abstention_accuracy",
    "n_questions",
    "latency_ms_p50",
    "latency_ms_p95",
)


def _squash(s: str) -> str:
    # Chunking may rewrap lines, so compare phrases with whitespace collapsed and case folded.
    return " ".join(s.split()).casefold()


def _phrase_hits(texts: Sequence[str], phrase: str, k: int) -> list[bool]:
    """Seed format: a ranked text is gold if it contains the phrase; only the first such text counts, as the
    seed question has one gold passage (overlapping chunks must not count twice)."""
    needle = _squash(phrase)
    hits: list[bool] = []
    for t in texts[:k]:
        hits.append(not any(hits) and needle in _squash(t))
    return hits


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


@dataclass
class MetricAccumulator:
    """Collects one run's outcomes question by question; `result()` averages them.

    - Retrieval metrics: over answerable questions that have gold ids (or, seed format, a
      gold_passage_contains phrase matched against `ranked_texts`). None if there are none.
    - answer_hit: over answerable questions with answers whose answer outcome was reported, i.e.
      `answer_sentence` given or `abstained=True` (abstaining on an answerable question is a miss).
      None if there are none (e.g. a retrieval-only run).
    - abstention_accuracy: fraction of questions with `abstained` reported where abstained == not answerable.
      None if no question reported `abstained`, or if no added question is unanswerable (then it would only
      measure false abstentions, which is not what this number is for).
    - latency percentiles over every added question; None if nothing was added.
    """

    _retrieval: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in RESULT_KEYS[:5]})
    _answer_hits: list[float] = field(default_factory=list)
    _abstention_ok: list[float] = field(default_factory=list)
    _latencies: list[float] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _any_unanswerable: bool = False

    def add(
        self,
        question: EvalQuestion,
        ranked_ids: Sequence[str],
        *,
        ranked_texts: Sequence[str] | None = None,
        answer_sentence: str | None = None,
        abstained: bool | None = None,
        latency_ms: float,
    ) -> None:
        if question.id in self._seen:
            raise ValueError(f"question {question.id!r} added twice")
        if ranked_texts is not None and ranked_ids and len(ranked_texts) != len(ranked_ids):
            raise ValueError("ranked_texts and ranked_ids must be aligned (same length)")
        self._seen.add(question.id)
        self._latencies.append(float(latency_ms))
        self._any_unanswerable |= not question.answerable

        if question.answerable:
            self._add_retrieval(question, ranked_ids, ranked_texts)
            if question.answers and (answer_sentence is not None or abstained):
                hit = answer_sentence is not None and answer_hit(
                    answer_sentence, question.answers, require_all=question.answer_contains_all
                )
                self._answer_hits.append(float(hit))
        if abstained is not None:
            self._abstention_ok.append(float(abstained == (not question.answerable)))

    def _add_retrieval(
        self, q: EvalQuestion, ranked_ids: Sequence[str], ranked_texts: Sequence[str] | None
    ) -> None:
        if q.gold_passage_ids:
            hits, n_gold = _hits(ranked_ids, q.gold_passage_ids, 10), len(set(q.gold_passage_ids))
        elif q.gold_passage_contains is not None:
            if ranked_texts is None:
                raise ValueError(f"question {q.id!r} is seed-format: pass ranked_texts to score retrieval")
            hits, n_gold = _phrase_hits(ranked_texts, q.gold_passage_contains, 10), 1
        else:
            return  # answerable but nothing to score retrieval against
        r = self._retrieval
        r["recall@1"].append(_recall(hits[:1]))
        r["recall@5"].append(_recall(hits[:5]))
        r["recall@10"].append(_recall(hits))
        r["mrr@10"].append(_mrr(hits))
        r["ndcg@10"].append(_ndcg(hits, n_gold, 10))

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: _mean(v) for k, v in self._retrieval.items()}
        out["answer_hit"] = _mean(self._answer_hits)
        out["abstention_accuracy"] = _mean(self._abstention_ok) if self._any_unanswerable else None
        out["n_questions"] = len(self._latencies)
        lat = self._latencies
        out["latency_ms_p50"] = round(percentile(lat, 50), 4) if lat else None
        out["latency_ms_p95"] = round(percentile(lat, 95), 4) if lat else None
        return out
