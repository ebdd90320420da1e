"""`qabot migrate`: copy an index between stores (embedded directory <-> PostgreSQL) without re-embedding.

Documents go over in id order with their passages, sentence offsets, passage vectors and sentence matrices
exactly as stored, in batches that each commit as one transaction of the target; the target's config
(model, chunking, retrieval overrides) becomes the source's. Re-running after an interruption is safe:
documents are replaced by (scope, source), so a second run completes the copy without duplicates.
Votes (feedback) come along with their salt, so a reader's later vote still replaces their earlier one."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embeddings.encoders.base import runtime_of
from embeddings.errors import InputError, QabotError
from embeddings.store.records import NewDocument, PassageVectors
from embeddings.store.urls import is_pg_url, redact_url

if TYPE_CHECKING:
    from embeddings.store.base import IndexBackend

BULK_MIN_PASSAGES = 5000  # below this, maintaining the HNSW graph row by row is quicker than a rebuild


class StoredModel:
    """Names the model an index was built with, without loading it: a copy never encodes anything.
    (A plain class, not a frozen dataclass: the Encoder protocol declares settable attributes.)"""

    def __init__(self, name: str, dimension: int, max_tokens: int, vectors: str = "torch") -> None:
        # The source's vectors, as it records them (build included), so the copy records and accepts the same.
        self.vectors = vectors
        self.backend = runtime_of(vectors)
        self.name = name
        self.dimension = dimension
        self.max_tokens = max_tokens

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        raise QabotError("Copying an index must not encode text")

    def count_tokens(self, text: str) -> int:
        raise QabotError("Copying an index must not encode text")


def same_location(a: str, b: str) -> bool:
    """Two locations naming one store: equal URLs (compared with passwords masked, as `location` is), or
    directories that resolve to the same path."""
    if is_pg_url(a) or is_pg_url(b):
        return redact_url(a) == redact_url(b)
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


@dataclass(frozen=True)
class MigrationReport:
    documents: int
    passages: int
    feedback: int
    source: str
    target: str


def copy_index(source: IndexBackend, target_location: str, *, progress: bool | None = None,
               batch_passages: int = 2000) -> MigrationReport:
    """Copy `source` (an open index) into the store at `target_location` (a postgresql:// URL or a
    directory), creating it if needed. The target must be empty or built with the same model."""
    from tqdm import tqdm

    from embeddings.store.factory import open_store

    cfg = source.config
    model = StoredModel(cfg.model, cfg.dimension, cfg.max_tokens, cfg.encoder_backend)
    if same_location(str(target_location), source.location):
        raise InputError("The source and the target of `qabot migrate` are the same store")
    target = open_store(str(target_location), model)  # refuses a store built with another model
    try:
        total = source.store.counts()["passages"]
        bar = tqdm(total=total, unit="passage", desc="Copying", file=sys.stderr, dynamic_ncols=True,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress, leave=False)
        docs = passages = 0
        pending: list[NewDocument] = []
        vectors: dict[str, PassageVectors] = {}
        # Into an empty PostgreSQL store: build the HNSW index once at the end instead of row by row.
        bulk = (target.capabilities.bulk_load and total >= BULK_MIN_PASSAGES
                and target.store.counts()["passages"] == 0)
        with (target.bulk_load() if bulk else nullcontext()), target.writer() as writer:

            def flush() -> None:
                nonlocal pending, vectors
                if pending:
                    writer.put_documents(pending, vectors)
                    bar.update(sum(len(d.passages) for d in pending))
                pending, vectors = [], {}

            for doc, vecs in source.store.export_documents():
                pending.append(doc)
                vectors.update(vecs)
                docs += 1
                passages += len(doc.passages)
                if sum(len(d.passages) for d in pending) >= batch_passages:
                    flush()
            flush()
        bar.close()
        target.save_config(cfg)
        with source.feedback() as votes:
            salt, rows = votes.salt, votes.rows()
        if rows:
            with target.feedback() as votes:
                votes.import_rows(salt, rows)
        return MigrationReport(docs, passages, len(rows), source.describe(), target.describe())
    finally:
        target.close()
