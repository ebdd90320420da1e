"""One benchmark phase of one system, in a process of its own (so RSS and cold start are its own).

    python -m embeddings.benchmark.worker build SYSTEM WORKDIR PASSAGES.jsonl [--per-article N]
    python -m embeddings.benchmark.worker query SYSTEM WORKDIR QUESTIONS.jsonl --t0 EPOCH [--k K]

The last line on stdout is a JSON object with the phase's figures."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from embeddings.benchmark.systems import BenchPassage, BenchSystem, peak_rss_mb


def make_system(name: str, per_article: int = 8) -> BenchSystem:
    if name == "qabot":
        from embeddings.benchmark.qabot_system import QabotSystem

        return QabotSystem(per_article=per_article)
    from embeddings.benchmark.peers import PEERS

    if name not in PEERS:
        raise SystemExit(f"unknown system {name!r}: qabot, {', '.join(PEERS)}")
    return PEERS[name]()


def _build(args: argparse.Namespace) -> dict:
    passages = [BenchPassage(**json.loads(line)) for line in Path(args.data).read_text().splitlines() if line]
    system = make_system(args.system, args.per_article)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    system.build(passages, workdir)
    seconds = time.perf_counter() - started
    stored = len(passages)
    rss = peak_rss_mb()  # before the encoder-only pass below: the ingest's own peak
    encode_rate = None
    if hasattr(system, "open") and args.system == "qabot":
        system.open(workdir)
        stored = system.passages_stored()  # type: ignore[attr-defined]
        if args.encode_only:
            encode_s = system.encode_only_seconds()  # type: ignore[attr-defined]
            encode_rate = len(passages) / encode_s if encode_s else 0.0
    # The rate counts passages given (raw paragraphs), the same input for every system: qabot re-chunks
    # long ones (a SciFact abstract is often two passages) and indexes more pieces than it was given. The
    # encoder-only rate uses the same unit, so ingest / encode-only is the encoder's share of ingest time.
    return {"passages_in": len(passages), "passages_indexed": stored, "build_s": seconds,
            "ingest_passages_per_s": len(passages) / seconds if seconds else 0.0, "build_peak_rss_mb": rss,
            "encode_only_passages_per_s": encode_rate}


def _query(args: argparse.Namespace) -> dict:
    questions = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line]
    system = make_system(args.system, args.per_article)
    system.open(Path(args.workdir))
    first = system.search(questions[0]["question"], args.k)
    cold = time.time() - args.t0  # the parent took t0 just before starting this process
    latencies, ranks = [], []
    for i, q in enumerate(questions):
        t = time.perf_counter()
        keys = first if i == 0 else system.search(q["question"], args.k)
        if i:
            latencies.append((time.perf_counter() - t) * 1000)
        gold = set(q.get("gold") or ())
        ranks.append(next((r for r, key in enumerate(keys, 1) if key in gold), 0) if gold else None)
    return {"cold_start_s": cold, "latencies_ms": latencies, "ranks": ranks, "query_peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m embeddings.benchmark.worker")
    ap.add_argument("phase", choices=("build", "query"))
    ap.add_argument("system")
    ap.add_argument("workdir")
    ap.add_argument("data")
    ap.add_argument("--per-article", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--t0", type=float, default=None)
    ap.add_argument("--encode-only", action="store_true",
                    help="build: then time the encoder alone on the same passages (qabot only)")
    args = ap.parse_args(argv)
    if args.t0 is None:
        args.t0 = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = _build(args) if args.phase == "build" else _query(args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
