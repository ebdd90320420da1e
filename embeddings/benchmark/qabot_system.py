"""qabot itself as a benchmark system: the production ingest and answer paths, nothing bypassed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from embeddings.benchmark.corpus import articles
from embeddings.benchmark.systems import BenchPassage

SOURCE_PREFIX = "bench:"


class QabotSystem:
    name = "qabot"

    def __init__(self, *, per_article: int = 8) -> None:
        # Speed corpora are ingested as articles of several paragraphs (chunked by qabot); recall corpora
        # one passage per document, so that a hit maps back to exactly one gold key.
        self.per_article = per_article
        self._service = None
        self._paragraph_keys: dict[str, list[str]] = {}

    def _make_service(self, workdir: Path):
        from dataclasses import replace

        from embeddings.service import QAService
        from embeddings.settings import Settings

        return QAService(replace(Settings.from_env(), home=workdir / "qabot"))

    def build(self, passages: Sequence[BenchPassage], workdir: Path) -> None:
        items = []
        for key, title, group in articles(list(passages), self.per_article):
            body = "\n\n".join(p.text for p in group)
            text = f"# {title}\n\n{body}" if title else body
            items.append((SOURCE_PREFIX + key, key, text.encode()))
        svc = self._make_service(workdir)
        try:
            report = svc.ingestor.ingest_texts(items, progress=None)
            if report.failures:
                raise RuntimeError(f"{len(report.failures)} documents failed, first: {report.failures[0]}")
        finally:
            svc.close()

    def open(self, workdir: Path) -> None:
        self._service = self._make_service(workdir)

    def encode_only_seconds(self) -> float:
        """Seconds the encoder alone takes for the embed jobs the ingest ran (every stored passage: its
        vector and its sentence vectors, in ingest's batch size), warm: the ceiling ingest could reach if
        reading, chunking, storing and indexing cost nothing."""
        import time

        from embeddings.ingest.pipeline import COMMIT_EVERY_PASSAGES, embed_passages
        from embeddings.ingest.reindex import iter_jobs

        assert self._service is not None
        index = self._service.index
        jobs = list(iter_jobs(index, index.store.passage_hashes()))
        embed_passages(index.encoder, jobs[:2])  # load the model: build_s counts it once, this must not
        started = time.perf_counter()
        for i in range(0, len(jobs), COMMIT_EVERY_PASSAGES):
            embed_passages(index.encoder, jobs[i:i + COMMIT_EVERY_PASSAGES])
        return time.perf_counter() - started

    def passages_stored(self) -> int:
        assert self._service is not None
        return int(self._service.stats().passages)

    def search(self, question: str, k: int) -> list[str]:
        assert self._service is not None
        answer = self._service.ask(question, k=k)
        out = []
        for hit in answer.passages:
            source = hit.citation.source
            key = source[len(SOURCE_PREFIX):] if source.startswith(SOURCE_PREFIX) else source
            out.append(key if self.per_article == 1 else f"{key}#{hit.citation.paragraph}")
        return out
