"""The core's front door: built once at start-up from Settings and handed to the CLI or the Discord bot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .answer import Answerer
from .config import Settings
from .encoder import Encoder, load_encoder
from .index import BASE_SCOPE, Index
from .ingest import DocOutcome, Ingestor, IngestReport
from .models import Answer
from .store import DocumentRow


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
        self.encoder = encoder or load_encoder(settings.embed_model)
        self.index = Index(settings.home, self.encoder, create=create)
        self.answerer = Answerer(self.index, self.encoder)
        self.ingestor = Ingestor(self.index, allow_private_urls=allow_private_urls)

    def ask(self, question: str, *, k: int | None = None, scope: str = BASE_SCOPE) -> Answer:
        return self.answerer.answer(question, k=k or self.settings.top_k, scope=scope)

    def ingest(self, inputs: Sequence[str], *, scope: str = BASE_SCOPE, progress: bool | None = None,
               on_commit: Callable[[Sequence[DocOutcome]], None] | None = None) -> IngestReport:
        return self.ingestor.ingest(inputs, scope=scope, progress=progress, on_commit=on_commit)

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
