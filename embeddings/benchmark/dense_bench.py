"""The dense index alone at 100k and 1M vectors: build time, memory, latency, recall@10 against exact search.

Vectors: the stored embeddings of real passages (any qabot index), extended to the wanted size with
mixtures of two real vectors plus a little noise, renormalised: they stay on the model's manifold of
directions rather than being uniform random, which would make every ANN index look bad. Questions:
further mixtures, never added to the index. Each phase runs in its own process so RSS is its own:

    python -m embeddings.benchmark.dense_bench build SOURCE.npy N WORKDIR
    python -m embeddings.benchmark.dense_bench query N WORKDIR"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from embeddings.benchmark.systems import peak_rss_mb
from embeddings.store.embedded.dense import IVF_THRESHOLD, DenseIndex, build_flat, build_ivf

QUERIES = 500


def stored_vectors(db: Path, dimension: int) -> np.ndarray:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT vector FROM embeddings").fetchall()
    finally:
        conn.close()
    return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows]).reshape(-1, dimension)


def synthesize(source: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, source.shape[1]), dtype=np.float32)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        a, b = rng.integers(0, len(source), m), rng.integers(0, len(source), m)
        w = rng.uniform(0.55, 0.95, (m, 1)).astype(np.float32)
        v = w * source[a] + (1 - w) * source[b] + 0.04 * rng.standard_normal((m, source.shape[1]), dtype=np.float32)
        out[start:start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def build(source_npy: Path, n: int, workdir: Path) -> dict:
    source = np.load(source_npy)
    vectors = synthesize(source, n, seed=1)
    queries = synthesize(source, QUERIES, seed=2)
    workdir.mkdir(parents=True, exist_ok=True)
    ids = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    flat = DenseIndex(source.shape[1], build_flat(vectors, ids))
    flat_s = time.perf_counter() - t
    flat.save(workdir / "flat.faiss")
    _, exact = flat._index.search(queries, 10)  # ground truth: exact inner product
    np.save(workdir / "queries.npy", queries)
    np.save(workdir / "exact.npy", exact)
    del flat
    t = time.perf_counter()
    ivf = DenseIndex(source.shape[1], build_ivf(vectors, ids))
    ivf_s = time.perf_counter() - t
    ivf.save(workdir / "ivf.faiss")
    return {"vectors": n, "flat_build_s": flat_s, "ivf_build_s": ivf_s, "nlist": int(ivf._index.nlist),
            "nprobe": ivf.nprobe, "build_peak_rss_mb": peak_rss_mb(),
            "flat_mb": (workdir / "flat.faiss").stat().st_size / 2**20,
            "ivf_mb": (workdir / "ivf.faiss").stat().st_size / 2**20}


def query(kind: str, workdir: Path) -> dict:
    queries, exact = np.load(workdir / "queries.npy"), np.load(workdir / "exact.npy")
    rss0 = peak_rss_mb()
    t = time.perf_counter()
    index = DenseIndex.load(workdir / f"{kind}.faiss", queries.shape[1], mmap=True)
    load_s = time.perf_counter() - t
    lat, hits = [], 0
    for q, truth in zip(queries, exact, strict=True):
        t = time.perf_counter()
        got, _ = index.search(q, 10)
        lat.append((time.perf_counter() - t) * 1000)
        hits += len(set(got.tolist()) & set(truth.tolist()))
    return {"kind": kind, "load_s": load_s, "query_ms_p50": float(np.percentile(lat, 50)),
            "query_ms_p95": float(np.percentile(lat, 95)), "recall@10": hits / (10 * len(queries)),
            "query_rss_mb": peak_rss_mb() - rss0}


def main(argv: list[str]) -> int:
    if argv[0] == "build":
        result = build(Path(argv[1]), int(argv[2]), Path(argv[3]))
    else:
        import faiss

        faiss.omp_set_num_threads(1)  # one question at a time, as the bot searches
        result = query(argv[1], Path(argv[2]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

__all__ = ["IVF_THRESHOLD", "build", "query", "stored_vectors", "synthesize"]
