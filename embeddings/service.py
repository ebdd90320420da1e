"""The core's front door: built once at start-up from Settings and handed to the CLI or the Discord bot.

The Discord layer imports only this module, models, errors and settings; what it needs from deeper modules
(the ingest report, the upload types, question validation) is re-exported or wrapped here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embeddings.answering.answer import Answerer, validate_question
from embeddings.encoders.base import Encoder
from embeddings.encoders.factory import load_encoder
from embeddings.ingest.pipeline import DocOutcome, Failure, Ingestor, IngestReport
from embeddings.models import BASE_SCOPE, Answer, Turn
from embeddings.settings import Settings
from embeddings.store.botstate import AnswerRecord, BotState
from embeddings.store.factory import open_store, recorded_backend
from embeddings.store.feedback import CORRECTION_CHARS, Correction
from embeddings.store.records import DocumentRow
from embeddings.text.extract import SUPPORTED_EXTENSIONS, kind_for_path

__all__ = ["CORRECTION_CHARS", "SUPPORTED_EXTENSIONS", "AnswerRecord", "BotState", "Correction", "DocOutcome", "DocumentRow", "Failure", "IngestReport",
           "QAService", "Stats", "Turn", "validate_question"]

if TYPE_CHECKING:
    from embeddings.ingest.reindex import ReindexReport


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
    """Everything a user can do with the index. A context manager: ``with QAService(settings) as svc:``."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None, *, create: bool = True,
                 allow_private_urls: bool = False) -> None:
        self.settings = settings
        if encoder is None:
            # QABOT_ENCODER_BACKEND when set; unset, the backend the index was built with (a torch index from
            # before onnx-int8 became the default answers and ingests as before), else the default.
            backend = settings.backend_for(None if settings.encoder_backend else recorded_backend(settings.location))
            encoder = load_encoder(settings.embed_model, threads=settings.torch_threads or None, backend=backend,
                                   cache_dir=settings.encoder_cache)
        self.encoder = encoder
        self.index = open_store(settings.location, self.encoder, read_urls=settings.store_read, create=create)
        self.answerer = Answerer(self.index, self.encoder)
        self.ingestor = Ingestor(self.index, allow_private_urls=allow_private_urls)
        self._bot_state: BotState | None = None
        self._bot_state_lock = threading.Lock()  # opened once, whichever worker thread asks first

    def __enter__(self) -> QAService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def validate_question(question: str) -> str:
        """The question, stripped, or BadQuestion (empty, too long) before any encoding is paid for."""
        return validate_question(question)

    def warm_up(self) -> None:
        """Load the model and touch every path of an answer, so the first user doesn't pay for it."""
        self.ask("qabot warm-up question")

    def ask(self, question: str, *, k: int | None = None, scope: str = BASE_SCOPE,
            history: Sequence[Turn] | None = None) -> Answer:
        """Answer `question`; `history` (oldest first) are the conversation's earlier turns, e.g. a Discord
        thread's or `qabot chat`'s: a follow-up ("why?", "when did she die?") is then read in their light and
        `Answer.interpreted_as` says how. `Answer.as_turn()` makes an answer the next question's history."""
        return self.answerer.answer(question, k=k or self.settings.top_k, scope=scope, history=history)

    def ingest(self, inputs: Sequence[str], *, scope: str = BASE_SCOPE, progress: bool | None = None,
               on_commit: Callable[[Sequence[DocOutcome]], None] | None = None) -> IngestReport:
        return self.ingestor.ingest(inputs, scope=scope, progress=progress, on_commit=on_commit)

    def ingest_urls(self, urls: Sequence[str], *, scope: str = BASE_SCOPE) -> IngestReport:
        """http(s) URLs only; a path is refused, never read (what the Discord bot may ingest)."""
        return self.ingestor.ingest_urls(urls, scope=scope)

    def reindex(self, *, progress: bool | None = None, force: bool = False) -> ReindexReport:
        """Re-embed every stored passage with this service's encoder; the index then records its backend.
        Already this encoder's vectors: nothing to do, unless `force`."""
        from embeddings.ingest.reindex import reindex

        return reindex(self.index, progress=progress, force=force)

    def remove(self, doc: str, *, scope: str | None = BASE_SCOPE) -> list[str]:
        return self.ingestor.remove(doc, scope=scope)

    def documents(self, scope: str | None = None) -> list[DocumentRow]:
        return self.index.store.documents(scope)

    def stats(self) -> Stats:
        c = self.index.store.counts()
        return Stats(c["documents"], c["passages"], c["sentences"], self.index.config.model,
                     self.index.config.dimension, self.index.disk_bytes(), self.index.location)

    def close(self) -> None:
        if self._bot_state is not None:
            self._bot_state.close()
            self._bot_state = None
        self.index.close()

    def bot_state(self) -> BotState:
        """The Discord bot's answer records and server settings (in the index's store), opened once and
        closed with the service. Opening it is store I/O (its tables are created if missing, which waits for
        another process's write): the bot opens it in a worker thread at start-up (QABot.setup_hook)."""
        with self._bot_state_lock:
            if self._bot_state is None:
                self._bot_state = self.index.bot_state()
            return self._bot_state

    # ---- feedback and uploads (the Discord bot) ---------------------------------------------------

    def record_feedback(self, *, answer_key: str, user_id: int | str, answer: Answer, vote: int,
                        scope: str = BASE_SCOPE, correction: Correction | None = None) -> bool:
        """A reader's vote (+1 / -1) on an answer; a second vote by the same user on it replaces the first
        (returns True then). Only a salted hash of ``user_id`` is stored. ``correction`` (what a 👎's form
        said was wrong and what the right answer is) is kept with the vote; a 👍 clears it, a 👎 without one
        keeps the earlier one (embeddings.store.feedback)."""
        best = answer.best_passage
        # A short-lived vote store per call: votes are rare, and nothing has to be closed with the service.
        with self.index.feedback() as store:
            return store.record(answer_key=answer_key, user_id=user_id, scope=scope, question=answer.question,
                                answer=answer.text, found=answer.found,
                                passage_ids=[p.passage_id for p in answer.passages],
                                cited_passage=best.text if best is not None else "", vote=vote,
                                correction=correction)

    def export_feedback(self, *, include_unlabelled: bool = False) -> list[dict]:
        """Votes as eval questions (the shared/eval/seed format); see embeddings.store.feedback for the mapping."""
        with self.index.feedback() as store:
            return store.export(include_unlabelled=include_unlabelled)

    def ingest_bytes(self, data: bytes, *, name: str, source: str, kind: str, scope: str = BASE_SCOPE) -> IngestReport:
        """An uploaded file (e.g. a Discord attachment) as one document; ``source`` is its identity."""
        return self.ingestor.ingest_bytes(data, name=name, source=source, kind=kind, scope=scope)

    def ingest_upload(self, data: bytes, *, name: str, scope: str = BASE_SCOPE,
                      source: str | None = None) -> IngestReport:
        """An attachment by its file name: the kind (text, Markdown, HTML) follows the name's extension
        (UnsupportedInput for others); its identity is ``source``, by default ``upload:NAME``, within the scope."""
        return self.ingest_bytes(data, name=name, source=source or f"upload:{name}", kind=kind_for_path(name),
                                 scope=scope)

    def ingest_text(self, title: str, paragraphs: Sequence[str], *, source: str, scope: str = BASE_SCOPE,
                    outlet: str | None = None, published: str | None = None) -> IngestReport:
        """One document from its title and paragraphs (e.g. a Discord thread, one paragraph per message),
        identified by ``source`` (e.g. the thread's link, so citations link back). The same source again
        replaces the document: edits are updated, deleted paragraphs disappear, and with none left the
        document is removed (outcome status "removed")."""
        return self.ingestor.ingest_paragraphs(title=title, paragraphs=paragraphs, source=source, scope=scope,
                                               outlet=outlet, published=published)
