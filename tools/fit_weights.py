"""Fit qabot's three small answer-path models on SQuAD's TUNE split only, and print them.

    .venv/bin/python tools/fit_weights.py [--questions 2400] [--cache DIR]

1. Passage reranker: conditional logit over answer.RERANK_FEATURES of the top-20 fused candidates
   (target: the gold passage).
2. Sentence scorer: conditional logit over answer.SENTENCE_FEATURES of the sentences of the top 3 reranked
   passages (target: a sentence containing a gold answer), scaled so the cosine weight is 1.
3. Confidence: logistic regression on the abstention set (half the articles indexed; questions on the
   other half are unanswerable) over (best sentence cosine, top passage cosine, best sentence overlap),
   class-balanced: the set's share of answerable questions (29%) is an artifact of which articles were
   dropped, not a prior the bot should assume.

Each model is checked on a third of the tune questions it was not fitted on. Paste the printed numbers into
RetrievalParams (embeddings/config.py). Held-out articles and SciFact are never read here."""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from embeddings.answering.answer import Answerer
from embeddings.config import RetrievalParams
from embeddings.encoders.factory import load_encoder
from embeddings.evaluation.datasets import abstention_sets, default_eval_root, load_dataset
from embeddings.evaluation.metrics import normalize_answer
from embeddings.evaluation.runner import build_index, default_cache_root, eval_passage_ids


def fit_conditional_logit(groups: list[tuple[np.ndarray, np.ndarray]], w0: np.ndarray, steps: int = 400,
                          lr: float = 2.0, l2: float = 1e-3) -> np.ndarray:
    """Maximise the softmax probability of the labelled rows within each group (X: rows x features)."""
    groups = [(x, y / y.sum()) for x, y in groups if y.any()]
    w = w0.astype(np.float64).copy()
    for _ in range(steps):
        grad = np.zeros_like(w)
        for x, t in groups:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad += x.T @ (p - t)
        w -= lr * (grad / len(groups) + l2 * w)
    return w


def top1(groups: list[tuple[np.ndarray, np.ndarray]], w: np.ndarray) -> float:
    return float(np.mean([y[np.argmax(x @ w)] > 0 for x, y in groups])) if groups else 0.0


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 3000, lr: float = 0.5) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression (each class weighs half)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    sw = np.where(y > 0, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (sw * (p - y)) / len(y) + 1e-3 * w)
        b -= lr * float(np.mean(sw * (p - y)))
    return w / sd, b - float((mu / sd) @ w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=2400)
    ap.add_argument("--cache", type=Path, default=default_cache_root())
    args = ap.parse_args()
    squad = default_eval_root() / "squad_v1_dev"
    encoder = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    ds = load_dataset(squad, "tune")
    qs = list(ds.questions)
    random.Random(0).shuffle(qs)
    qs = qs[: args.questions]
    cut = len(qs) * 2 // 3
    index = build_index(ds, encoder, args.cache)
    answerer = Answerer(index, encoder, replace(RetrievalParams(), rerank_weights=()))
    ids, _ = index.store.passage_ids_and_scopes()
    eval_id = eval_passage_ids(ds, index.passages(ids.tolist()))
    qvecs = encoder.encode([q.question for q in qs])

    # 1. reranker
    rr = []
    for q, v in zip(qs, qvecs, strict=True):
        cands = answerer.retriever.search(q.question, v, 20)
        rows = index.passages([c.passage_id for c in cands])
        x = answerer.rerank_features(q.question, v, cands, rows)
        rr.append((x, np.array([eval_id[c.passage_id] in q.gold_passage_ids for c in cands], dtype=float)))
    w_rr = fit_conditional_logit(rr[:cut], np.array([1.0, 1.0, 0, 0, 0, 0]))
    base = np.array([0.5, 0.5, 0, 0, 0, 0])  # plain z-score fusion
    print(f"reranker R@1 on check third: fusion {top1(rr[cut:], base):.3f} -> reranked {top1(rr[cut:], w_rr):.3f}")

    # 2. sentence scorer, on the reranked candidates
    answerer = Answerer(index, encoder, replace(RetrievalParams(), rerank_weights=tuple(w_rr)))
    ss = []
    for q, v in zip(qs, qvecs, strict=True):
        cands = answerer.retriever.search(q.question, v, 20)
        rows = index.passages([c.passage_id for c in cands])
        cands = answerer.rerank(q.question, v, cands, rows)[:3]
        feats = answerer.sentence_features(q.question, v, cands, rows)
        golds = [f" {normalize_answer(a)} " for a in q.answers]
        y = np.array([any(g in f" {normalize_answer(rows[p].text[s:e])} " for g in golds) for p, s, e, _ in feats],
                     dtype=float)
        ss.append((np.stack([f for *_, f in feats]), y))
    w0 = np.asarray(RetrievalParams().sentence_weights)
    w_ss = fit_conditional_logit(ss[:cut], w0)
    w_ss = w_ss / w_ss[0]
    print(f"sentence scorer hit on check third (answer in top 3): before {top1(ss[cut:], w0):.3f} -> "
          f"{top1(ss[cut:], w_ss):.3f}")

    # 3. confidence, on the tune abstention set
    abst = abstention_sets(ds)
    a_index = build_index(abst, encoder, args.cache)
    params = replace(RetrievalParams(), rerank_weights=tuple(w_rr), sentence_weights=tuple(w_ss))
    a_answerer = Answerer(a_index, encoder, params)
    aq = list(abst.questions)
    random.Random(1).shuffle(aq)
    aq = aq[: args.questions]
    xs, ys = [], []
    for q, v in zip(aq, encoder.encode([q.question for q in aq]), strict=True):
        cands = a_answerer.retriever.search(q.question, v, 20)
        rows = a_index.passages([c.passage_id for c in cands])
        cands = a_answerer.rerank(q.question, v, cands, rows)
        feats = a_answerer.sentence_features(q.question, v, cands[:3], rows)
        best = max(feats, key=lambda t: float(t[3] @ np.asarray(w_ss)))[3]
        xs.append([best[0], cands[0].dense, best[1]])
        ys.append(q.answerable)
    x, y = np.array(xs), np.array(ys, dtype=float)
    acut = len(y) * 2 // 3
    w_c, b_c = fit_logistic(x[:acut], y[:acut])
    p = 1 / (1 + np.exp(-(x[acut:] @ w_c + b_c)))
    yc = y[acut:] > 0
    balanced = (np.mean(p[yc] >= 0.5) + np.mean(p[~yc] < 0.5)) / 2
    print(f"confidence accuracy on check third: {np.mean((p >= 0.5) == yc):.3f} (balanced {balanced:.3f})")

    r = lambda a: tuple(round(float(v), 3) for v in a)  # noqa: E731
    print("\nRetrievalParams:")
    print(f"    rerank_weights={r(w_rr)}")
    print(f"    sentence_weights={r(w_ss)}")
    print(f"    confidence_weights={r(w_c)}, confidence_bias={round(b_c, 3)}")


if __name__ == "__main__":
    main()
