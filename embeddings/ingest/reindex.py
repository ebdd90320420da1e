"""`qabot reindex`: re-embed every stored passage (its vector and its sentence vectors) from the stored text,
with the index's encoder, without reading any source again; then record that encoder's backend.

The store does the crash-safe part (Index.reindexer / PgIndex.reindexer): new vectors are staged beside
the served ones in batches that commit (so a killed run resumes where it stopped), and one transaction swaps
them in with the backend, so readers see the old vectors or the new ones, never a mix. The embedded store
then publishes a dense cache rebuilt from the new vectors; the keyword index is unchanged (same text)."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from embeddings.ingest.pipeline import COMMIT_EVERY_PASSAGES, EmbedJob, embed_passages
from embeddings.store.base import IndexBackend, encoder_backend, keyword_text
from embeddings.store.records import PassageVectors

READ_EVERY = 500  # passages read from the store at a time


@dataclass(frozen=True)
class ReindexReport:
    backend_before: str
    backend: str
    passages: int     # distinct passage embeddings (copies of one passage share one)
    embedded: int     # embedded by this run
    resumed: int      # already staged by an interrupted run with the same model and backend
    seconds: float
    # The index already held this encoder's vectors and force was not set: nothing was embedded or written
    # (re-embedding with the same runtime and build gives the same vectors again, at minutes per 10k passages).
    unchanged: bool = False


def embed_hash(model: str, text: str) -> str:
    """The key ingest stores a passage's vectors under (Ingestor._embed_hash, evaluation.runner)."""
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()[:32]


def iter_jobs(index: Any, wanted: set[str]) -> Iterator[EmbedJob]:
    """An EmbedJob per hash in `wanted`, rebuilt from the stored passage: the text ingest embedded (the
    headline, then the passage; the hash tells whether the headline was part of it: a document stored
    under its file name had none) and the passage's sentences."""
    ids, _ = index.store.passage_ids_and_scopes()
    model = index.config.model
    left = set(wanted)
    for i in range(0, len(ids), READ_EVERY):
        if not left:
            return
        part = ids[i:i + READ_EVERY].tolist()
        stored = index.store.embed_hashes_for(part)
        rows = index.store.passages([pid for pid in part if stored.get(pid) in left])
        for pid in sorted(rows):
            h = stored[pid]
            if h not in left:
                continue  # a copy of a passage already queued
            left.discard(h)
            p = rows[pid]
            text = keyword_text(p.doc.title, p.text)
            if embed_hash(model, text) != h and embed_hash(model, p.text) == h:
                text = p.text
            yield EmbedJob(h, text, tuple(p.text[s:e] for s, e in p.sentences))


def reindex(index: IndexBackend, *, progress: bool | None = None, force: bool = False) -> ReindexReport:
    """Re-embed `index` with `index.encoder` (see the module doc). Holds the embedded store's writer lock.
    An index that already records this encoder's vectors is left as it is unless `force`."""
    from tqdm import tqdm

    started = time.perf_counter()
    encoder = index.encoder
    embedded = 0
    with index.reindexer() as session:
        before = index.config.encoder_backend  # as the store records it now (the session refreshed it)
        hashes = session.hashes()
        if before == encoder_backend(encoder) and not force and not session.staged:
            return ReindexReport(before, before, len(hashes), 0, 0, time.perf_counter() - started, unchanged=True)
        resumed = len(hashes & session.staged)
        todo = hashes - session.staged
        bar = tqdm(total=len(todo), unit="passage", desc=f"Re-embedding ({encoder_backend(encoder)})",
                   file=sys.stderr, dynamic_ncols=True, leave=False,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress)
        try:
            batch: list[EmbedJob] = []

            def flush() -> None:
                nonlocal embedded, batch
                if batch:
                    session.stage(embed_passages(encoder, batch))
                    embedded += len(batch)
                    bar.update(len(batch))
                    batch = []

            for job in iter_jobs(index, todo):
                batch.append(job)
                if len(batch) >= COMMIT_EVERY_PASSAGES:
                    flush()
            flush()

            def embed_missing(missing: set[str]) -> dict[str, PassageVectors]:
                nonlocal embedded
                jobs = list(iter_jobs(index, missing))
                embedded += len(jobs)
                return embed_passages(encoder, jobs) if jobs else {}

            session.finish(embed_missing)
        finally:
            bar.close()
    return ReindexReport(before, encoder_backend(encoder), len(hashes), embedded, resumed,
                         time.perf_counter() - started)
