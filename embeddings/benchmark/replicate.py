"""A big index for measuring the query side, made from a smaller one without encoding anything.

Encoding 100k passages with MiniLM on 2 CPU cores takes about an hour and a half, so the benchmark measures
ingest on the size it really ingested and builds larger indexes by copying that index's documents: each
copy keeps its text (so BM25 sees the same term statistics, repeated), gets a new source, and its passage
and sentence vectors are the stored ones plus a little noise (cosine ~0.99 to the original), renormalised,
so dense search faces near-duplicates rather than exact ties. The result goes through the ordinary writer:
SQLite, FAISS (IVF above its threshold) and BM25 files exactly as an ingest would leave them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from embeddings.config import IndexConfig
from embeddings.store.embedded.index import EmbeddedIndex
from embeddings.store.migrate import StoredModel
from embeddings.store.records import PassageVectors

NOISE = 0.015


def _jitter(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = v + NOISE * rng.standard_normal(v.shape, dtype=np.float32)
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).astype(np.float32)


def replicate(source_home: Path, target_home: Path, passages_wanted: int, *, seed: int = 0) -> int:
    """Copies of every document of `source_home` into a new index at `target_home` until it holds at least
    `passages_wanted` passages; returns how many it holds."""
    cfg = IndexConfig.from_json((source_home / EmbeddedIndex.CONFIG).read_text())
    model = StoredModel(cfg.model, cfg.dimension, cfg.max_tokens, cfg.encoder_backend)
    source = EmbeddedIndex(source_home, model, create=False)
    target = EmbeddedIndex(target_home, model)
    rng = np.random.default_rng(seed)
    held = 0
    try:
        docs = list(source.store.export_documents())
        per_copy = sum(len(d.passages) for d, _ in docs)
        copies = max(1, -(-passages_wanted // max(per_copy, 1)))
        with target.writer() as writer:
            for c in range(copies):
                batch, vectors = [], {}
                for doc, vecs in docs:
                    passages = []
                    for p in doc.passages:
                        h = hashlib.sha256(f"{p.embed_hash}~{c}".encode()).hexdigest()[:32]
                        v = vecs[p.embed_hash]
                        vectors[h] = PassageVectors(_jitter(v.passage, rng), _jitter(v.sentences, rng))
                        passages.append(replace(p, embed_hash=h))
                    batch.append(replace(doc, doc_key=hashlib.sha1(f"{doc.doc_key}~{c}".encode()).hexdigest()[:12],
                                         source=f"{doc.source}~{c}", passages=tuple(passages)))
                    if len(batch) >= 500:
                        writer.put_documents(batch, vectors)
                        batch, vectors = [], {}
                if batch:
                    writer.put_documents(batch, vectors)
        held = int(target.store.counts()["passages"])
    finally:
        source.close()
        target.close()
    (target_home / "replicated.json").write_text(json.dumps({"from": str(source_home), "copies": copies}))
    return held
