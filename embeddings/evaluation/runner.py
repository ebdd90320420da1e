"""Run an evaluation set through the production encoder, indexes, retriever and answerer.

Dataset passages are indexed as given (one passage each, not re-chunked), in an index directory cached by
the content hash of the passages and the model, so a second run costs no embedding."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embeddings.answering.answer import Answerer
from embeddings.answering.conversation import follow_up_cues
from embeddings.config import RetrievalParams
from embeddings.encoders.base import Encoder
from embeddings.evaluation.datasets import EvalDataset, EvalPassage, EvalQuestion
from embeddings.evaluation.metrics import MetricAccumulator
from embeddings.ingest.pipeline import EmbedJob, embed_passages
from embeddings.models import Turn
from embeddings.store.base import IndexBackend, encoder_backend, keyword_text, now_iso
from embeddings.store.embedded.index import EmbeddedIndex
from embeddings.store.records import NewDocument, NewPassage, PassageRow
from embeddings.text.chunking import split_sentences

MODES = ("bm25", "dense", "fusion", "final")
# Conversational sets add "history": the final pipeline given the conversation, whose earlier answers are
# the bot's OWN (each history question is asked in turn and its answer becomes the next one's history), never
# the set's gold answers (an oracle that hides how errors compound along a thread).
HISTORY_MODE = "history"


def default_cache_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("qabot", appauthor=False)) / "eval"


def _dataset_key(ds: EvalDataset, model: str, backend: str = "torch") -> str:
    # The backend is part of the key (torch's keys stay as they were): an index of torch vectors must not
    # be scored as if onnx-int8 had built it. Bump the tag when the stored vectors or the index's layout
    # change ("docs": one document per doc_id).
    tag = "" if backend in ("torch", "hashing") else f"\0{backend}"
    h = hashlib.sha256(f"{model}\0sentences-v2-pooled-docs{tag}".encode())
    for p in ds.passages or ():
        h.update(f"\0{p.id}\0{p.doc_id}\0{p.title}\0{p.text}".encode())
    return h.hexdigest()[:16]


def _documents(ds: EvalDataset) -> list[tuple[str, list[EvalPassage]]]:
    """The set's passages grouped by doc_id (first appearance order), each group in file order."""
    assert ds.passages is not None
    groups: dict[str, list[EvalPassage]] = {}
    for p in ds.passages:
        groups.setdefault(p.doc_id, []).append(p)
    return list(groups.items())


def build_index(ds: EvalDataset, encoder: Encoder, cache_root: Path, *, progress: bool | None = None) -> EmbeddedIndex:
    """One document per doc_id (an article, a story), its passages as given (never re-chunked): what a
    conversation's "the same document" prior needs, and what ingesting the article would give."""
    assert ds.passages is not None
    home = cache_root / f"{ds.name}-{_dataset_key(ds, encoder.name, encoder_backend(encoder))}"
    index = EmbeddedIndex(home, encoder)
    have = {d.source for d in index.store.documents()}
    todo = [(doc_id, ps) for doc_id, ps in _documents(ds) if f"eval:{doc_id}" not in have]
    if todo:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(ps) for _, ps in todo), unit="passage", desc=f"Indexing {ds.name}",
                   file=sys.stderr, disable=(not sys.stderr.isatty()) if progress is None else not progress)
        with index.writer() as writer:
            batch: list[tuple[str, list[EvalPassage]]] = []

            def flush() -> None:
                docs, jobs = [], []
                for doc_id, ps in batch:
                    passages, pos = [], 0
                    for i, p in enumerate(ps):
                        text = keyword_text(p.title, p.text)
                        h = hashlib.sha256(f"{encoder.name}\0{text}".encode()).hexdigest()[:32]
                        sents = tuple((s.start, s.end) for s in split_sentences(p.text)) or ((0, len(p.text)),)
                        jobs.append(EmbedJob(h, text, tuple(p.text[a:b] for a, b in sents)))
                        passages.append(NewPassage(i, i + 1, pos, pos + len(p.text), p.text, h,
                                                   tuple((a + pos, b + pos) for a, b in sents)))
                        pos += len(p.text) + 2
                    body = "\n\n".join(p.text for p in ps)
                    docs.append(NewDocument(
                        doc_key=hashlib.sha1(doc_id.encode()).hexdigest()[:12], scope="", source=f"eval:{doc_id}",
                        title=ps[0].title, outlet=None, published=None, ingested_at=now_iso(),
                        content_hash=hashlib.sha256(body.encode()).hexdigest()[:32], text=body,
                        passages=tuple(passages),
                    ))
                writer.put_documents(docs, embed_passages(encoder, jobs))
                bar.update(sum(len(ps) for _, ps in batch))
                batch.clear()

            for item in todo:
                batch.append(item)
                if sum(len(ps) for _, ps in batch) >= 256:
                    flush()
            if batch:
                flush()
        bar.close()
    return index


def eval_passage_ids(ds: EvalDataset, rows: dict[int, PassageRow]) -> dict[int, str]:
    """EmbeddedIndex passage id -> the set's passage id (documents are the set's doc_ids, passages in file order)."""
    by_doc = {doc_id: [p.id for p in ps] for doc_id, ps in _documents(ds)} if ds.passages else {}
    out: dict[int, str] = {}
    for pid, r in rows.items():
        ids = by_doc.get(r.doc.source.removeprefix("eval:"))
        out[pid] = ids[r.ordinal] if ids is not None and r.ordinal < len(ids) else r.doc.source.removeprefix("eval:")
    return out


def build_seed_index(seed_dirs: list[Path], encoder: Encoder, cache_root: Path) -> EmbeddedIndex:
    """The seed set has no passages file: ingest the seed articles through the production ingest path."""
    from embeddings.ingest.pipeline import Ingestor

    backend = encoder_backend(encoder)
    h = hashlib.sha256((encoder.name + ("" if backend in ("torch", "hashing") else f"\0{backend}")).encode())
    for d in seed_dirs:
        for f in sorted(d.rglob("*.txt")):
            h.update(f.read_bytes())
    index = EmbeddedIndex(cache_root / f"seed-{h.hexdigest()[:16]}", encoder)
    Ingestor(index).ingest([str(d) for d in seed_dirs], progress=False)
    return index


@dataclass
class EvalRun:
    dataset: str
    split_rule: str
    rows: dict[str, dict[str, Any]]  # mode -> metrics

    def to_json(self) -> dict[str, Any]:
        final = self.rows.get(HISTORY_MODE) or self.rows.get("final") or next(iter(self.rows.values()))
        out = dict(final)
        out.update(dataset=self.dataset, split=self.split_rule)
        if len(self.rows) > 1:
            out["compare"] = self.rows
        return out


def evaluate(ds: EvalDataset, index: IndexBackend, encoder: Encoder, *, modes: tuple[str, ...] = ("final",),
             params: RetrievalParams | None = None, progress: bool | None = None,
             on_answer: Callable[[EvalQuestion, Any], None] | None = None) -> EvalRun:
    from tqdm import tqdm

    # The code under test's parameters, not those frozen into a cached index's config.json when it was built.
    params = params or RetrievalParams()
    answerer = Answerer(index, encoder, params)
    all_ids, _ = index.store.passage_ids_and_scopes()
    rows = index.passages(all_ids.tolist())
    eval_id = eval_passage_ids(ds, rows)
    results: dict[str, dict[str, Any]] = {}
    qvecs = encoder.encode([q.question for q in ds.questions])
    conversational = any(q.history for q in ds.questions)
    if conversational and HISTORY_MODE not in modes:
        modes = (*modes, HISTORY_MODE)
    for mode in modes:
        # A fresh answerer per mode: its memory of recent question vectors must not make one mode look faster.
        answerer = Answerer(index, encoder, params)
        acc = MetricAccumulator()
        # Conversational sets: the same metrics for questions that lean on the conversation and for the
        # self-contained ones (the set's own label when it has one, else qabot's follow-up detector).
        parts = {"depends": MetricAccumulator(), "self-contained": MetricAccumulator()}
        bar = tqdm(ds.questions, desc=f"{ds.name} {mode}", unit="q", file=sys.stderr,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress)
        for q, qvec in zip(bar, qvecs, strict=False):
            t0 = time.perf_counter()
            if mode in ("final", HISTORY_MODE):
                turns: list[Turn] = []
                if mode == HISTORY_MODE:
                    for asked, _gold in q.history:  # replayed: the bot's own answers become the history
                        turns.append(answerer.answer(asked, k=10, history=turns).as_turn())
                ans = answerer.answer(q.question, k=10, history=turns)
                ranked = [p.passage_id for p in ans.passages]
                outcome = dict(ranked_texts=[p.text for p in ans.passages],
                               answer_sentence=ans.text if ans.found else None, abstained=not ans.found,
                               latency_ms=ans.timings.total_ms)
                acc.add(q, [eval_id.get(i, "") for i in ranked], **outcome)  # type: ignore[arg-type]
                if conversational:
                    depends = q.depends_on_history if q.depends_on_history is not None else bool(
                        follow_up_cues(q.question))
                    parts["depends" if depends else "self-contained"].add(
                        q, [eval_id.get(i, "") for i in ranked], **outcome)  # type: ignore[arg-type]
                if on_answer and mode == (HISTORY_MODE if conversational else "final"):
                    on_answer(q, ans)
            else:
                cands = answerer.retriever.search(q.question, qvec, 10, mode=mode)
                latency = (time.perf_counter() - t0) * 1e3
                ids = [c.passage_id for c in cands]
                texts = [rows[i].text if i in rows else "" for i in ids]
                acc.add(q, [eval_id.get(i, "") for i in ids], ranked_texts=texts, latency_ms=latency)
        results[mode] = acc.result()
        if conversational and mode in ("final", HISTORY_MODE):
            for part, part_acc in parts.items():
                if part_acc.result()["n_questions"]:
                    results[f"{mode}:{part}"] = part_acc.result()
    return EvalRun(ds.name, ds.split_rule, results)


def format_table(run: EvalRun) -> str:
    keys = ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "answer_hit", "abstention_accuracy",
            "latency_ms_p50", "latency_ms_p95"]
    short = ["R@1", "R@5", "R@10", "MRR@10", "nDCG@10", "ans-hit", "abstain", "p50 ms", "p95 ms"]
    width = max(8, *(len(m) + 1 for m in run.rows))
    lines = [f"{run.dataset} — {run.split_rule}", f"{'mode':{width}}" + "".join(f"{s:>9}" for s in short)]
    for mode, m in run.rows.items():
        cells = []
        for k in keys:
            v = m.get(k)
            cells.append(f"{'—':>9}" if v is None else f"{v:9.3f}" if "latency" not in k else f"{v:9.1f}")
        lines.append(f"{mode:{width}}" + "".join(cells) + f"   (n={m['n_questions']})")
    if HISTORY_MODE in run.rows:
        lines.append("final = each question alone; history = with the conversation, whose earlier answers are "
                     "qabot's own replies to the replayed earlier questions (not the set's gold answers)")
    return "\n".join(lines)


def plot(runs: list[EvalRun], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover
        from embeddings.errors import QabotError

        raise QabotError("--plot needs matplotlib: pip install matplotlib") from exc
    metrics = ["recall@1", "recall@5", "ndcg@10", "answer_hit"]
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        modes = list(run.rows)
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            vals = [run.rows[mode].get(m) or 0.0 for m in metrics]
            ax.bar([j + i * width for j in range(len(metrics))], vals, width, label=mode)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))], metrics)
        ax.set_ylim(0, 1.12)  # headroom so the legend never covers a bar
        ax.set_title(f"{run.dataset} ({run.split_rule.split(':')[0]})")
        ax.legend(fontsize=8, loc="upper center", ncol=len(modes))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
