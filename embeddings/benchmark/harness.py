"""Drive every system through the same phases, each in a fresh subprocess, and collect the figures.

Per corpus size: ingest (build) throughput, cold start (process start to first answer), warm single-question
latency p50/p95, peak RSS of the build and of the query process, index size on disk. Per recall set
(held-out questions only): recall@1/5/10 of each system's full query path."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embeddings.benchmark.corpus import RECALL_SETS, fresh_passages, recall_corpus, speed_corpus
from embeddings.errors import QabotError

DEFAULT_SIZES = (10_000, 100_000)
LATENCY_QUESTIONS = 200
# Passages added to a copied index to measure ingest at its size: what an ingest costs grows with the
# index it lands in (caches to update and publish), not only with what it adds.
GROW_PASSAGES = 500


@dataclass(frozen=True)
class SpeedResult:
    system: str
    size: int      # passages in the corpus given
    passages: int  # passages the system indexed (qabot chunks articles itself)
    ingest_passages_per_s: float
    query_ms_p50: float
    query_ms_p95: float
    cold_start_s: float
    peak_rss_mb: float
    index_mb: float
    build_s: float
    ingested: bool = True  # False: built by copying a smaller ingested index (replicate.py)
    grown_by: int = 0  # copied indexes: fresh passages then ingested into the copy (the ingest rate and RSS)
    # The encoder alone on the same embed jobs, warm, in the same unit as ingest_passages_per_s (passages
    # given per second): the ceiling of ingest. None: not measured (peers, copied sizes).
    encode_only_passages_per_s: float | None = None


@dataclass(frozen=True)
class RecallResult:
    system: str
    dataset: str
    questions: int
    recall: dict[str, float] = field(default_factory=dict)  # "1", "5", "10" -> recall@k
    query_ms_p50: float = 0.0


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run_worker(args: list[str], log: Path) -> dict:
    return _run_module("embeddings.benchmark.worker", args, log)


def _run_module(module: str, args: list[str], log: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as err:
        proc = subprocess.run([sys.executable, "-m", module, *args], env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True)
    if proc.returncode != 0:
        raise QabotError(f"benchmark worker {' '.join(args[:2])} failed (exit {proc.returncode}); see {log}")
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    return json.loads(last)


def _latency_questions(eval_root: str | Path | None, n: int) -> list[dict]:
    _, questions = recall_corpus("squad_v1_dev", eval_root)
    rng = random.Random(1)
    return [{"question": q.question} for q in rng.sample(questions, min(n, len(questions)))]


def run_replicated(size: int, source_size: int, workdir: Path, *, eval_root: str | Path | None = None,
                   questions: int = LATENCY_QUESTIONS, grow: int = GROW_PASSAGES,
                   say: Callable[[str], None] = print) -> SpeedResult:
    """qabot at a size too big to ingest here in reasonable time: questions against a copy of a smaller
    ingested index grown to `size` (see replicate.py), then `grow` fresh passages (new perturbed copies of
    the source's first ones, so the same length mix) ingested into it, for the ingest rate and peak RSS at
    that size."""
    base = workdir / f"speed-{size}"
    qfile = base / "questions.jsonl"
    if not qfile.exists():
        _write_jsonl(qfile, _latency_questions(eval_root, questions))
    sysdir = base / "qabot"
    if sysdir.exists():
        import shutil

        shutil.rmtree(sysdir)
    log = base / "qabot.log"
    say(f"  qabot: copying the {source_size:,}-passage index up to {size:,} passages (no encoding) ...")
    from embeddings.benchmark.replicate import replicate

    started = time.perf_counter()
    held = replicate(workdir / f"speed-{source_size}" / "qabot" / "qabot", sysdir / "qabot", size)
    build_s = time.perf_counter() - started
    say(f"  qabot: {held:,} passages; querying ...")
    queried = _run_worker(["query", "qabot", str(sysdir), str(qfile), "--t0", repr(time.time())], log)
    lat = np.asarray(queried["latencies_ms"])
    rate, rss = 0.0, queried["query_peak_rss_mb"]
    if grow:
        fresh = base / "grow.jsonl"
        _write_jsonl(fresh, [asdict(p) for p in fresh_passages(speed_corpus(source_size, eval_root), grow)])
        say(f"  qabot: ingesting {grow:,} fresh passages into the {held:,}-passage copy ...")
        grown = _run_worker(["build", "qabot", str(sysdir), str(fresh)], log)
        rate, rss = grown["ingest_passages_per_s"], max(rss, grown["build_peak_rss_mb"])
        say(f"  qabot: {rate:.1f} passages/s into the copy")
    return SpeedResult("qabot", size, held, rate, float(np.percentile(lat, 50)), float(np.percentile(lat, 95)),
                       queried["cold_start_s"], rss, _dir_mb(sysdir), build_s, ingested=False, grown_by=grow)


def run_speed(system: str, size: int, workdir: Path, *, eval_root: str | Path | None = None,
              questions: int = LATENCY_QUESTIONS, say: Callable[[str], None] = print) -> SpeedResult:
    base = workdir / f"speed-{size}"
    corpus = base / "passages.jsonl"
    if not corpus.exists():
        _write_jsonl(corpus, [asdict(p) for p in speed_corpus(size, eval_root)])
    qfile = base / "questions.jsonl"
    if not qfile.exists():
        _write_jsonl(qfile, _latency_questions(eval_root, questions))
    sysdir = base / system
    if sysdir.exists():
        import shutil

        shutil.rmtree(sysdir)
    log = base / f"{system}.log"
    say(f"  {system}: ingesting {size:,} passages ...")
    built = _run_worker(["build", system, str(sysdir), str(corpus), *(["--encode-only"] if system == "qabot" else [])],
                        log)
    encode_rate = built.get("encode_only_passages_per_s")
    ceiling = f" (encoder alone: {encode_rate:.1f})" if encode_rate else ""
    say(f"  {system}: {built['ingest_passages_per_s']:.1f} passages/s{ceiling}; querying ...")
    queried = _run_worker(["query", system, str(sysdir), str(qfile), "--t0", repr(time.time())], log)
    lat = np.asarray(queried["latencies_ms"])
    return SpeedResult(system, size, built["passages_indexed"], built["ingest_passages_per_s"],
                       float(np.percentile(lat, 50)), float(np.percentile(lat, 95)), queried["cold_start_s"],
                       max(built["build_peak_rss_mb"], queried["query_peak_rss_mb"]), _dir_mb(sysdir),
                       built["build_s"], encode_only_passages_per_s=encode_rate)


def run_recall(system: str, dataset: str, workdir: Path, *, eval_root: str | Path | None = None,
               limit: int | None = None, say: Callable[[str], None] = print) -> RecallResult:
    base = workdir / f"recall-{dataset}"
    passages, questions = recall_corpus(dataset, eval_root, limit)
    corpus, qfile = base / "passages.jsonl", base / f"questions-{limit or 'all'}.jsonl"
    if not corpus.exists():
        _write_jsonl(corpus, [asdict(p) for p in passages])
    if not qfile.exists():
        _write_jsonl(qfile, [{"question": q.question, "gold": list(q.gold)} for q in questions])
    sysdir = base / system
    log = base / f"{system}.log"
    if not (sysdir / ".built").exists():  # recall indexes are reused between runs
        say(f"  {system}: indexing {dataset} ({len(passages):,} passages) ...")
        _run_worker(["build", system, str(sysdir), str(corpus), "--per-article", "1"], log)
        (sysdir / ".built").touch()
    say(f"  {system}: {len(questions):,} {dataset} questions ...")
    out = _run_worker(["query", system, str(sysdir), str(qfile), "--per-article", "1", "--t0", repr(time.time())],
                      log)
    ranks = np.asarray([r for r in out["ranks"] if r is not None])
    recall = {str(k): float(((ranks >= 1) & (ranks <= k)).mean()) for k in (1, 5, 10)}
    return RecallResult(system, dataset, len(ranks), recall, float(np.percentile(out["latencies_ms"], 50)))


def _source_vectors(workdir: Path) -> Path:
    """Real passage embeddings for the dense benchmark: from any qabot index this run built."""
    out = workdir / "dense-source.npy"
    if not out.exists():
        from embeddings.benchmark.dense_bench import stored_vectors

        # Real vectors only: an index grown by replicate.py holds jittered copies.
        dbs = sorted((p for p in workdir.glob("*/qabot/qabot/qabot.sqlite3")
                      if not (p.parent / "replicated.json").exists()), key=lambda p: p.stat().st_size)
        if not dbs:
            raise QabotError("the dense benchmark needs a qabot index from this run: run it with sizes or recall")
        config = json.loads((dbs[-1].parent / "config.json").read_text())
        np.save(out, stored_vectors(dbs[-1], int(config["dimension"])))
    return out


def run_dense(sizes: Sequence[int], workdir: Path, say: Callable[[str], None] = print) -> list[dict]:
    source = _source_vectors(workdir)
    results = []
    for n in sizes:
        base = workdir / f"dense-{n}"
        log = base.with_suffix(".log")
        base.mkdir(parents=True, exist_ok=True)
        say(f"[dense {n:,} vectors] building flat and IVF ...")
        built = _run_module("embeddings.benchmark.dense_bench", ["build", str(source), str(n), str(base)], log)
        for kind in ("flat", "ivf"):
            q = _run_module("embeddings.benchmark.dense_bench", ["query", kind, str(base)], log)
            results.append({**built, **q})
        import shutil

        shutil.rmtree(base)  # a million vectors is 1.5 GB per copy
    return results


@dataclass
class BenchReport:
    speed: list[SpeedResult] = field(default_factory=list)
    recall: list[RecallResult] = field(default_factory=list)
    dense: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        """{"sizes": {N: {system: figures}}, "recall": {dataset: {system: {...}}}}; qabot's own figures
        carry the documented keys (ingest_passages_per_s, query_ms_p50, ...)."""
        sizes: dict[str, dict] = {}
        for r in self.speed:
            d = asdict(r)
            sizes.setdefault(str(r.size), {})[r.system] = {k: v for k, v in d.items() if k not in ("system", "size")}
        recall: dict[str, dict] = {}
        for rr in self.recall:
            recall.setdefault(rr.dataset, {})[rr.system] = {"questions": rr.questions,
                                                            **{f"recall@{k}": v for k, v in rr.recall.items()},
                                                            "query_ms_p50": rr.query_ms_p50}
        return {"sizes": sizes, "recall": recall, "dense": self.dense}


def run(sizes: Sequence[int], systems: Sequence[str], workdir: Path, *, peer_sizes: Sequence[int] | None = None,
        recall_sets: Sequence[str] = RECALL_SETS, recall_limit: int | None = 1000,
        eval_root: str | Path | None = None, dense_sizes: Sequence[int] = (), ingest_limit: int | None = None,
        say: Callable[[str], None] = print) -> BenchReport:
    """`ingest_limit`: sizes above it are not ingested; qabot's query side is measured on a copy of the
    largest ingested index grown to that size, and peers skip them."""
    report = BenchReport()
    ingested: list[int] = []
    for size in sorted(sizes):
        copy = ingest_limit is not None and size > ingest_limit
        if copy and not ingested:
            raise QabotError(f"--ingest-limit {ingest_limit}: no smaller size was ingested to copy {size:,} from")
        for system in systems:
            if system != "qabot" and (copy or (peer_sizes is not None and size not in peer_sizes)):
                continue
            say(f"[{size:,} passages] {system}")
            if copy:
                report.speed.append(run_replicated(size, ingested[-1], workdir, eval_root=eval_root, say=say))
            else:
                report.speed.append(run_speed(system, size, workdir, eval_root=eval_root, say=say))
        if not copy:
            ingested.append(size)
    for dataset in recall_sets:
        for system in systems:
            say(f"[recall {dataset}] {system}")
            report.recall.append(run_recall(system, dataset, workdir, eval_root=eval_root, limit=recall_limit,
                                            say=say))
    if dense_sizes:
        report.dense = run_dense(dense_sizes, workdir, say)
    return report
