"""The core's front door: built once at start-up from Settings and handed to the CLI or the Discord bot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embeddings.answering.answer import Answerer
from embeddings.encoders.base import Encoder
from embeddings.encoders.factory import load_encoder
from embeddings.ingest.pipeline import DocOutcome, Ingestor, IngestReport

if TYPE_CHECKING:
    from embeddings.ingest.reindex import ReindexReport
from embeddings.models import Answer
from embeddings.settings import Settings
from embeddings.store.embedded.index import BASE_SCOPE
from embeddings.store.embedded.sqlite import DocumentRow
from embeddings.store.factory import open_feedback, open_index, recorded_backend


@dataclass(frozen=True)
class Stats:
    documents: int
    passages: int
    sentences: int
    model: str
    dimension: int
    index_bytes: int
    home: str


class QAService:
    def __init__(self, settings: Settings, encoder: Encoder | None = None, *, create: bool = True,
                 allow_private_urls: bool = False) -> None:
        self.settings = settings
        if encoder is None:
            # QABOT_ENCODER_BACKEND when set; unset, the backend the index was built with (a torch index from
            # before onnx-int8 became the default answers and ingests as before), else the default.
            backend = settings.backend_for(None if settings.encoder_backend else recorded_backend(settings))
            encoder = load_encoder(settings.embed_model, threads=settings.torch_threads or None, backend=backend,
                                   cache_dir=settings.encoder_cache)
        self.encoder = encoder
        self.index = open_index(settings, self.encoder, create=create)
        self.answerer = Answerer(self.index, self.encoder)
        self.ingestor = Ingestor(self.index, allow_private_urls=allow_private_urls)

    def warm_up(self) -> None:
        """Load the model and touch every path of an answer, so the first user doesn't pay for it."""
        self.ask("qabot warm-up question")

    def ask(self, question: str, *, k: int | None = None, scope: str = BASE_SCOPE) -> Answer:
        return self.answerer.answer(question, k=k or self.settings.top_k, scope=scope)

    def ingest(self, inputs: Sequence[str], *, scope: str = BASE_SCOPE, progress: bool | None = None,
               on_commit: Callable[[Sequence[DocOutcome]], None] | None = None) -> IngestReport:
        return self.ingestor.ingest(inputs, scope=scope, progress=progress, on_commit=on_commit)

    def ingest_urls(self, urls: Sequence[str], *, scope: str = BASE_SCOPE) -> IngestReport:
        """http(s) URLs only; a path is refused, never read (what the Discord bot may ingest)."""
        return self.ingestor.ingest_urls(urls, scope=scope)

    def reindex(self, *, progress: bool | None = None) -> ReindexReport:
        """Re-embed every stored passage with this service's encoder; the index then records its backend."""
        from embeddings.ingest.reindex import reindex

        return reindex(self.index, progress=progress)

    def remove(self, doc: str, *, scope: str | None = BASE_SCOPE) -> list[str]:
        return self.ingestor.remove(doc, scope=scope)

    def documents(self, scope: str | None = None) -> list[DocumentRow]:
        return self.index.store.documents(scope)

    def stats(self) -> Stats:
        c = self.index.store.counts()
        return Stats(c["documents"], c["passages"], c["sentences"], self.index.config.model,
                     self.index.config.dimension, self.index.disk_bytes(), str(self.index.home))

    def close(self) -> None:
        self.index.close()

    # ---- added for the Discord bot (feedback, uploads); the methods above are unchanged ----------

    def _feedback(self):
        # A short-lived store per call: votes are rare, and nothing has to be closed with the service.
        # Where votes live follows the index (its SQLite file, or its PostgreSQL database).
        return open_feedback(self.index)

    def record_feedback(self, *, answer_key: str, user_id: int | str, answer: Answer, vote: int,
                        scope: str = BASE_SCOPE) -> bool:
        """A reader's vote (+1 / -1) on an answer; a second vote by the same user on it replaces the first
        (returns True then). Only a salted hash of ``user_id`` is stored."""
        best = answer.best_passage
        store = self._feedback()
        try:
            return store.record(answer_key=answer_key, user_id=user_id, scope=scope, question=answer.question,
                                answer=answer.text, found=answer.found,
                                passage_ids=[p.passage_id for p in answer.passages],
                                cited_passage=best.text if best is not None else "", vote=vote)
        finally:
            store.close()

    def export_feedback(self, *, include_unlabelled: bool = False) -> list[dict]:
        """Votes as eval questions (the shared/eval/seed format); see embeddings.store.embedded.feedback for the mapping."""
        store = self._feedback()
        try:
            return store.export(include_unlabelled=include_unlabelled)
        finally:
            store.close()

    def ingest_bytes(self, data: bytes, *, name: str, source: str, kind: str, scope: str = BASE_SCOPE) -> IngestReport:
        """An uploaded file (e.g. a Discord attachment) as one document; ``source`` is its identity."""
        return self.ingestor.ingest_bytes(data, name=name, source=source, kind=kind, scope=scope)
