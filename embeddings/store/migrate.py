"""`qabot migrate`: copy an index between stores (embedded directory <-> PostgreSQL) without re-embedding.

Documents go over in id order with their passages, sentence offsets, passage vectors and sentence matrices
exactly as stored, in batches that each commit as one transaction of the target; the target's config
(model, chunking, retrieval overrides) becomes the source's. Re-running after an interruption is safe:
documents are replaced by (scope, source), so a second run completes the copy without duplicates.
Votes (feedback) come along with their salt, so a reader's later vote still replaces their earlier one."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from embeddings.errors import InputError, QabotError
from embeddings.store.embedded.sqlite import NewDocument, NewPassage, PassageVectors

BULK_MIN_PASSAGES = 5000  # below this, maintaining the HNSW graph row by row is quicker than a rebuild


class StoredModel:
    """Names the model an index was built with, without loading it: a copy never encodes anything.
    (A plain class, not a frozen dataclass: the Encoder protocol declares settable attributes.)"""

    def __init__(self, name: str, dimension: int, max_tokens: int, backend: str = "torch") -> None:
        self.backend = backend  # the source's, so the copy records (and accepts) the same runtime
        self.name = name
        self.dimension = dimension
        self.max_tokens = max_tokens

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        raise QabotError("Copying an index must not encode text")

    def count_tokens(self, text: str) -> int:
        raise QabotError("Copying an index must not encode text")


@dataclass(frozen=True)
class MigrationReport:
    documents: int
    passages: int
    feedback: int
    source: str
    target: str


def export_embedded(index: Any, batch: int = 200) -> Iterator[tuple[NewDocument, dict[str, PassageVectors]]]:
    """Documents of an embedded index (its SQLite file, read-only), in id order, with stored vectors."""
    dim = index.config.dimension
    conn = sqlite3.connect(f"file:{index.home / index.DB}?mode=ro", uri=True)
    try:
        last = 0
        while True:
            docs = conn.execute("SELECT id, doc_key, scope, source, title, outlet, published, ingested_at,"
                                " content_hash, text FROM documents WHERE id > ? ORDER BY id LIMIT ?",
                                (last, batch)).fetchall()
            if not docs:
                return
            ids = [d[0] for d in docs]
            marks = ",".join("?" * len(ids))
            prow = conn.execute(
                'SELECT p.id, p.doc_id, p.ordinal, p.paragraph, p.start, p."end", p.text, p.embed_hash,'
                f" e.vector, s.vectors FROM passages p LEFT JOIN embeddings e ON e.hash = p.embed_hash"
                f" LEFT JOIN sentence_embeddings s ON s.hash = p.embed_hash WHERE p.doc_id IN ({marks})"
                " ORDER BY p.id", ids).fetchall()
            pids = [r[0] for r in prow]
            sents: dict[int, list[tuple[int, int]]] = {}
            for i in range(0, len(pids), 500):
                part = pids[i:i + 500]
                for pid, s, e in conn.execute('SELECT passage_id, start, "end" FROM sentences WHERE passage_id IN'
                                              f' ({",".join("?" * len(part))}) ORDER BY passage_id, start', part):
                    sents.setdefault(pid, []).append((s, e))
            by_doc: dict[int, list[NewPassage]] = {}
            vectors: dict[str, PassageVectors] = {}
            for pid, doc_id, ordinal, paragraph, start, end, text, h, vec, mat in prow:
                by_doc.setdefault(doc_id, []).append(
                    NewPassage(ordinal, paragraph, start, end, text, h, tuple(sents.get(pid, ()))))
                if vec is not None and h not in vectors:
                    sentences = (np.frombuffer(mat, dtype=np.float32).reshape(-1, dim) if mat is not None
                                 else np.zeros((0, dim), np.float32))
                    vectors[h] = PassageVectors(np.frombuffer(vec, dtype=np.float32), sentences)
            for d in docs:
                doc = NewDocument(d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                                  passages=tuple(by_doc.get(d[0], ())))
                yield doc, {p.embed_hash: vectors[p.embed_hash] for p in doc.passages if p.embed_hash in vectors}
            last = ids[-1]
    finally:
        conn.close()


def _feedback_salt_and_rows(index: Any) -> tuple[str, list]:
    from embeddings.store.factory import open_feedback

    fb = open_feedback(index)
    try:
        return fb._salt, fb.rows()
    finally:
        fb.close()


def _import_feedback(index: Any, salt: str, rows: list) -> None:
    if not rows:
        return
    if hasattr(index, "feedback_store"):
        index.feedback_store().import_rows(salt, rows)
        return
    import json

    from embeddings.store.embedded.feedback import FeedbackStore

    FeedbackStore(index.home / index.DB).close()  # creates the tables
    conn = sqlite3.connect(index.home / index.DB, timeout=30.0)
    try:
        with conn:
            conn.execute("INSERT OR REPLACE INTO feedback_salt(k, salt) VALUES (1, ?)", (salt,))
            conn.executemany(
                "INSERT OR IGNORE INTO feedback(answer_key, user_hash, scope, question, answer, found, passage_ids,"
                " cited_passage, vote, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(r.answer_key, r.user_hash, r.scope, r.question, r.answer, int(r.found),
                  json.dumps(list(r.passage_ids)), r.cited_passage, r.vote, r.created_at) for r in rows])
    finally:
        conn.close()


def copy_index(source: Any, target_location: str, *, progress: bool | None = None,
               batch_passages: int = 2000) -> MigrationReport:
    """Copy `source` (an open index) into the store at `target_location` (a postgresql:// URL or a
    directory), creating it if needed. The target must be empty or built with the same model."""
    from tqdm import tqdm

    from embeddings.store.factory import describe_store, iter_documents, open_index_at

    cfg = source.config
    model = StoredModel(cfg.model, cfg.dimension, cfg.max_tokens, cfg.encoder_backend)
    if str(target_location) in (str(source.home), getattr(source, "url", None)):
        raise InputError("The source and the target of `qabot migrate` are the same store")
    target = open_index_at(str(target_location), model)  # refuses a store built with another model
    try:
        total = source.store.counts()["passages"]
        bar = tqdm(total=total, unit="passage", desc="Copying", file=sys.stderr, dynamic_ncols=True,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress, leave=False)
        docs = passages = 0
        pending: list[NewDocument] = []
        vectors: dict[str, PassageVectors] = {}
        # Into an empty PostgreSQL store: build the HNSW index once at the end instead of row by row.
        bulk = getattr(target, "bulk_load", None)
        empty = target.store.counts()["passages"] == 0
        with (bulk() if bulk is not None and empty and total >= BULK_MIN_PASSAGES else nullcontext()), \
                target.writer() as writer:

            def flush() -> None:
                nonlocal pending, vectors
                if pending:
                    writer.put_documents(pending, vectors)
                    bar.update(sum(len(d.passages) for d in pending))
                pending, vectors = [], {}

            for doc, vecs in iter_documents(source):
                pending.append(doc)
                vectors.update(vecs)
                docs += 1
                passages += len(doc.passages)
                if sum(len(d.passages) for d in pending) >= batch_passages:
                    flush()
            flush()
        bar.close()
        target.save_config(cfg)
        salt, rows = _feedback_salt_and_rows(source)
        _import_feedback(target, salt, rows)
        return MigrationReport(docs, passages, len(rows), describe_store(source), describe_store(target))
    finally:
        target.close()
