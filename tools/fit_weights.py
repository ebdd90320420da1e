"""Fit qabot's small answer-path models on a MIX of question styles (tune sets only), and print them.

    .venv/bin/python tools/fit_weights.py [--squad-questions 2400] [--rerank-sets ...] [--sentence-sets ...]

The defaults reproduce RetrievalParams as shipped: the reranker fitted on SQuAD + NQ, the conversation prior
set on CoQA, the sentence scorer kept as it is (`--sentence-sets squad_v1_dev,nq_open` refits it; see
embeddings/config.py for why that was not kept).

Tune sets (../shared/eval/README.md): SQuAD's tune split (questions written while reading the paragraph),
nq_open (real search queries, whole file) and coqa_conv (follow-ups in a conversation, replayed with the bot's
own earlier answers as history, as `qabot eval` does). Each set weighs the same in every fit, whatever its
size, so no one style dominates. Every question is put in the fit part or the check third by a hash of its
article (SQuAD, CoQA) or its id (NQ), so a paragraph never sits on both sides; figures are on the check third.
Never read here: SQuAD's held-out articles, SciFact, seed, seed_chat (acceptance sets).

1. Passage reranker: conditional logit over answer.RERANK_FEATURES of the top fused candidates plus the
   conversation prior (-> history_rerank_weight); target: the gold passage.
2. Sentence scorer: conditional logit over answer.SENTENCE_FEATURES of the sentences of the top reranked
   passages (target: a sentence holding a gold answer), scaled so the cosine weight is 1.
3. Confidence: class-balanced logistic regression over answer.CONFIDENCE_FEATURES on each set's abstention
   version (half its articles indexed; questions on the other half are unanswerable), then the answer
   threshold that maximises the mean of the per-set accuracies.

Paste the printed numbers into RetrievalParams (embeddings/config.py)."""

from __future__ import annotations

import argparse
import random
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from embeddings.answering.answer import RERANK_FEATURES, Answerer
from embeddings.config import RetrievalParams
from embeddings.encoders.factory import load_encoder
from embeddings.evaluation.datasets import (
    EvalDataset,
    EvalQuestion,
    abstention_sets,
    default_eval_root,
    load_dataset,
)
from embeddings.evaluation.metrics import answer_hit
from embeddings.evaluation.runner import build_index, default_cache_root, eval_passage_ids
from embeddings.models import Turn
from embeddings.settings import Settings

TUNE_SETS = (("squad_v1_dev", "tune"), ("nq_open", "all"), ("coqa_conv", "all"))

Group = tuple[np.ndarray, np.ndarray]  # (rows x features, 0/1 target per row)


def fit_conditional_logit(groups: Sequence[Group], weights: Sequence[float], w0: np.ndarray, steps: int = 500,
                          lr: float = 2.0, l2: float = 1e-3) -> np.ndarray:
    """Maximise the weighted softmax probability of the labelled rows within each group."""
    kept = [((x, y / y.sum()), g) for (x, y), g in zip(groups, weights, strict=True) if y.any()]
    total = sum(g for _, g in kept)
    w = w0.astype(np.float64).copy()
    for _ in range(steps):
        grad = np.zeros_like(w)
        for (x, t), g in kept:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad += g * (x.T @ (p - t))
        w -= lr * (grad / total + l2 * w)
    return w


def top1(groups: Sequence[Group], w: np.ndarray) -> float:
    """Share of groups whose best-scoring row is labelled (groups with no labelled row count as misses)."""
    return float(np.mean([y[np.argmax(x @ w)] > 0 for x, y in groups])) if groups else 0.0


def fit_logistic(x: np.ndarray, y: np.ndarray, sample_w: np.ndarray, steps: int = 4000,
                 lr: float = 0.5) -> tuple[np.ndarray, float]:
    """Logistic regression with per-sample weights (the caller balances classes and sets)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    sw = sample_w / sample_w.mean()
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (sw * (p - y)) / len(y) + 1e-3 * w)
        b -= lr * float(np.mean(sw * (p - y)))
    return w / sd, b - float((mu / sd) @ w)


def in_check_third(q: EvalQuestion) -> bool:
    return zlib.crc32((q.doc_id or q.id).encode()) % 3 == 0


@dataclass
class TuneSet:
    name: str
    ds: EvalDataset
    answerer: Answerer
    eval_id: dict[int, str]


def open_set(name: str, ds: EvalDataset, encoder, cache: Path, params: RetrievalParams) -> TuneSet:
    index = build_index(ds, encoder, cache, progress=True)
    ids, _ = index.store.passage_ids_and_scopes()
    return TuneSet(name, ds, Answerer(index, encoder, params), eval_passage_ids(ds, index.passages(ids.tolist())))


def history_of(answerer: Answerer, q: EvalQuestion) -> list[Turn]:
    """The conversation before q, as the bot would have had it: its own answers to the earlier questions."""
    turns: list[Turn] = []
    for asked, _gold in q.history:
        turns.append(answerer.answer(asked, k=10, history=turns).as_turn())
    return turns


def set_weights(names: Sequence[str]) -> np.ndarray:
    """Each set weighs the same in total."""
    counts = {n: names.count(n) for n in set(names)}
    return np.array([1.0 / counts[n] for n in names])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--squad-questions", type=int, default=2400, help="SQuAD tune questions sampled (of ~5,700)")
    ap.add_argument("--depth", type=int, default=RetrievalParams().rerank_depth)
    ap.add_argument("--cache", type=Path, default=default_cache_root())
    ap.add_argument("--rerank-sets", default="squad_v1_dev,nq_open",
                    help="tune sets the reranker is fitted on (all are reported)")
    ap.add_argument("--sentence-sets", default="",
                    help="tune sets the sentence scorer is refitted on; empty keeps it (all are reported)")
    args = ap.parse_args()
    rerank_sets = set(filter(None, args.rerank_sets.split(",")))
    sentence_sets = set(filter(None, args.sentence_sets.split(",")))
    settings = Settings.from_env()
    encoder = load_encoder(settings.embed_model, backend=settings.backend_for(None), cache_dir=settings.encoder_cache)
    base = RetrievalParams()
    root = default_eval_root()

    loaded: list[TuneSet] = []
    for name, split in TUNE_SETS:
        ds = load_dataset(root / name, split)
        if name == "squad_v1_dev":
            qs = list(ds.questions)
            random.Random(0).shuffle(qs)
            ds = replace(ds, questions=tuple(qs[: args.squad_questions]))
        loaded.append(open_set(name, ds, encoder, args.cache, base))

    # 1. reranker -----------------------------------------------------------------------------------
    print("collecting candidates...", file=sys.stderr)
    rr: list[tuple[str, bool, Group]] = []
    asked: list[tuple[TuneSet, EvalQuestion, list[Turn]]] = []
    for ts in loaded:
        for q in ts.ds.questions:
            turns = history_of(ts.answerer, q)
            text = ts.answerer.rewritten(q.question).text  # as answer() reads it
            got = ts.answerer.retrieve(text, depth=args.depth, history=turns)
            if len(got.cands) < 2:
                continue
            x = ts.answerer.rerank_features(text, got.qvec, got.cands, got.rows)
            x = np.hstack([x, np.array([[c.prior] for c in got.cands], dtype=np.float32)])
            y = np.array([ts.eval_id.get(c.passage_id) in q.gold_passage_ids for c in got.cands], dtype=float)
            rr.append((ts.name, in_check_third(q), (x, y)))
            asked.append((ts, q, turns))
    w_old = np.array([*base.rerank_weights, base.history_rerank_weight])
    # The conversation prior (last column) is zero but for follow-ups: it is set by a line search on the
    # conversational set's fit part, the other weights by the conditional logit on the rerank sets.
    fit = [(n, (x[:, :-1], y)) for n, c, (x, y) in rr if not c and n in rerank_sets]
    w_rr = np.append(fit_conditional_logit([g for _, g in fit], set_weights([n for n, _ in fit]), w_old[:-1]),
                     w_old[-1])
    conv = [g for n, c, g in rr if not c and n == "coqa_conv"]
    if conv:
        w_rr[-1] = max((0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0),
                       key=lambda h: top1(conv, np.append(w_rr[:-1], h)))
    fusion = np.zeros(len(w_old))
    print(f"\nreranker R@1 on the check third (depth {args.depth}; 'in pool' = gold among the candidates):")
    for ts in loaded:
        check = [g for n, c, g in rr if c and n == ts.name]
        pool = np.mean([y.any() for _, y in check])
        # fused order is the candidates' order: a zero weight vector keeps it (argmax of zeros is row 0)
        dense = np.zeros(len(w_old))
        dense[0] = 1.0
        print(f"  {ts.name:14s} fusion {top1(check, fusion):.3f}  dense {top1(check, dense):.3f}  "
              f"old {top1(check, w_old):.3f}  "
              f"new {top1(check, w_rr):.3f}  in pool {pool:.3f}  (n={len(check)})")

    # 2. sentence scorer ----------------------------------------------------------------------------
    params = replace(base, rerank_weights=tuple(w_rr[:-1]), history_rerank_weight=float(w_rr[-1]))
    ss: list[tuple[str, bool, Group]] = []
    refit = {ts.name: Answerer(ts.answerer.index, encoder, params) for ts in loaded}
    for ts, q, turns in asked:
        a = refit[ts.name]
        text = a.rewritten(q.question).text
        got = a.retrieve(text, depth=args.depth, history=turns)
        cands = a.rerank(text, got.qvec, got.cands, got.rows)[: params.answer_passages]
        feats = a.sentence_features(text, got.qvec, cands, got.rows)
        if not feats or not q.answers:
            continue
        y = np.array([answer_hit(got.rows[p].text[s:e], q.answers, require_all=q.answer_contains_all)
                      for p, s, e, _ in feats], dtype=float)
        x = np.stack([f for *_, f in feats])
        ss.append((ts.name, in_check_third(q), (x, y)))
    w0 = np.asarray(base.sentence_weights)
    fit = [(n, g) for n, c, g in ss if not c and n in sentence_sets]
    w_ss = fit_conditional_logit([g for _, g in fit], set_weights([n for n, _ in fit]), w0) if fit else w0
    w_ss = w_ss / w_ss[0]  # scores compare within a question only: scale so the first weight is 1
    print("\nsentence scorer, answer hit of the chosen sentence on the check third (after the new reranker):")
    for ts in loaded:
        check = [g for n, c, g in ss if c and n == ts.name]
        bound = np.mean([y.any() for _, y in check])
        print(f"  {ts.name:14s} old {top1(check, w0):.3f}  new {top1(check, w_ss):.3f}  "
              f"any sentence {bound:.3f}  (n={len(check)})")

    # 3. confidence and threshold, on each set's abstention version ----------------------------------
    params = replace(params, sentence_weights=tuple(w_ss))
    xs, ys, names, checks = [], [], [], []
    for ts in loaded:
        abst = abstention_sets(ts.ds)
        a = open_set(ts.name, abst, encoder, args.cache, params).answerer
        for q in abst.questions:
            turns = history_of(a, q)
            text = a.rewritten(q.question).text
            got = a.retrieve(text, depth=args.depth, history=turns)
            cands = a.rerank(text, got.qvec, got.cands, got.rows) if len(got.cands) > 1 else got.cands
            best, feats = a.best_sentence(text, got.qvec, cands[: params.answer_passages], got.rows)
            if best is None:
                continue
            xs.append(a.confidence_features(got, cands, best, feats))
            ys.append(float(q.answerable))
            names.append(ts.name)
            checks.append(in_check_third(q))
    x, y, chk = np.array(xs), np.array(ys), np.array(checks)
    names_arr = np.array(names)
    sw = np.zeros(len(y))
    for n in set(names):
        for label in (0.0, 1.0):
            m = (names_arr == n) & (y == label) & ~chk
            sw[m] = 1.0 / max(m.sum(), 1)
    fit_m = ~chk
    w_c, b_c = fit_logistic(x[fit_m], y[fit_m], sw[fit_m])
    p = 1 / (1 + np.exp(-(x @ w_c + b_c)))

    def per_set(threshold: float, mask: np.ndarray) -> dict[str, tuple[float, float, float]]:
        """Per set: (accuracy, balanced accuracy, share of answerable questions answered)."""
        out = {}
        for n in dict.fromkeys(names):
            m = mask & (names_arr == n)
            yes, no = m & (y > 0), m & (y == 0)
            answered, refused = float(np.mean(p[yes] >= threshold)), float(np.mean(p[no] < threshold))
            out[n] = (float(np.mean((p[m] >= threshold) == (y[m] > 0))), (answered + refused) / 2, answered)
        return out

    # The threshold maximising the mean over sets of the class-balanced accuracy: an abstention set's share
    # of answerable questions is an artifact of which articles were dropped, not a prior to assume.
    cuts = np.linspace(0.2, 0.8, 61)
    threshold = float(max(cuts, key=lambda t: np.mean([b for _, b, _ in per_set(t, fit_m).values()])))
    print("\nconfidence on the check third: accuracy / balanced accuracy / answerable answered, by threshold:")
    for t in sorted({0.4, 0.45, 0.5, round(threshold, 2), 0.55, 0.6}):
        row = "  ".join(f"{n} {a:.3f}/{b:.3f}/{c:.3f}" for n, (a, b, c) in per_set(t, chk).items())
        print(f"  {t:.2f}{' *' if abs(t - threshold) < 1e-9 else '  '} {row}")

    r = lambda a: tuple(round(float(v), 3) for v in a)  # noqa: E731
    print("\nRetrievalParams:")
    print(f"    rerank_weights={r(w_rr[:-1])}  # {', '.join(RERANK_FEATURES)}")
    print(f"    history_rerank_weight={round(float(w_rr[-1]), 3)}")
    print(f"    sentence_weights={r(w_ss)}")
    print(f"    confidence_weights={r(w_c)}, confidence_bias={round(b_c, 3)}")
    print(f"    answer_threshold={round(threshold, 3)}")


if __name__ == "__main__":
    main()
