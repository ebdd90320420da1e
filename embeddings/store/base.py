"""The one written store interface, and the rules both stores share.

`IndexBackend` is what the rest of the core uses (Retriever, Answerer, Ingestor, QAService, migrate, the CLI).
The embedded store (store/embedded: SQLite + FAISS + BM25 in a directory) and the PostgreSQL store
(store/postgres) implement all of it; what differs between them is declared in `capabilities`, never probed
with getattr. `StoreReader` is `index.store`, the row-level reads; `StoreWriter` is what `index.writer()`
yields. The shared rules (which model and backend may open or write an index, the text BM25 sees for a
passage, the integrity report) live here once, so neither store imports the other."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from embeddings.config import SCHEMA_VERSION, IndexConfig
from embeddings.encoders.base import runtime_of
from embeddings.errors import IndexMismatch

if TYPE_CHECKING:
    from embeddings.encoders.base import Encoder
    from embeddings.store.botstate import BotState
    from embeddings.store.feedback import Feedback
    from embeddings.store.records import DocumentRow, NewDocument, PassageRow, PassageVectors


def keyword_text(title: str, text: str) -> str:
    # The headline is context for every passage: it names the story that a paragraph's "he" refers to.
    return f"{title}\n{text}" if title else text


@dataclass(frozen=True)
class IntegrityReport:
    generation: int
    sqlite_passages: int
    dense_vectors: int
    keyword_rows: int
    ok: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreCapabilities:
    """What a store can do beyond the common interface, declared rather than discovered."""

    kind: str                     # "embedded" or "postgresql": shown by `qabot stats`
    bulk_load: bool = False       # bulk_load() defers index maintenance (HNSW) to the end of a big copy
    shared: bool = False          # several processes on several hosts may write at once
    read_replicas: bool = False   # questions may read from replicas (QABOT_STORE_READ)


class StoreReader(Protocol):
    """`index.store`: row-level reads shared by ingest (reuse, replacement), answers, migrate and the CLI."""

    def generation(self) -> int: ...
    def documents(self, scope: str | None = None) -> list[DocumentRow]: ...
    def document_by_source(self, scope: str, source: str) -> DocumentRow | None: ...
    def document_text(self, doc_id: int) -> str: ...
    def existing_hashes(self, hashes: Iterable[str]) -> set[str]: ...
    def passage_ids_and_scopes(self) -> tuple[np.ndarray, list[str]]: ...
    def vectors_for(self, passage_ids: Sequence[int], dimension: int) -> np.ndarray: ...
    def sentence_vectors_for(self, passage_ids: Sequence[int], dimension: int) -> dict[int, np.ndarray]: ...
    def passages(self, passage_ids: Sequence[int]) -> dict[int, PassageRow]: ...
    def counts(self) -> dict[str, int]: ...
    def count_passages_without_embedding(self, doc_ids: Sequence[int] | None = None) -> int:
        """Passages (of these documents, or all) whose embedding row is missing: an integrity fault that a
        re-ingest repairs by embedding them again."""
        ...

    def export_documents(self, batch: int = 200) -> Iterator[tuple[NewDocument, dict[str, PassageVectors]]]:
        """Every document with its passages and stored vectors, in id order (what migrate copies)."""
        ...


class Reindex(Protocol):
    """One `qabot reindex` session (embeddings/ingest/reindex.py drives it): new vectors are staged beside
    the served ones, then swapped in at once; staged vectors survive a crash."""

    backend: str
    staged: set[str]

    def hashes(self) -> set[str]: ...
    def stage(self, vectors: dict[str, PassageVectors]) -> None: ...
    def finish(self, embed_missing: Callable[[set[str]], dict[str, PassageVectors]]) -> int: ...


class StoreWriter(Protocol):
    changed: bool

    def put_documents(self, docs: Sequence[NewDocument], vectors: dict[str, PassageVectors]) -> None: ...
    def delete_document(self, doc_id: int) -> None: ...


@runtime_checkable
class IndexBackend(Protocol):
    config: IndexConfig
    encoder: Encoder
    capabilities: StoreCapabilities

    @property
    def store(self) -> StoreReader:
        """The row-level reads (read-only here, so each store may hold its own StoreReader class)."""
        ...

    @property
    def location(self) -> str:
        """Where the store is, safe to print: a directory, or the URL with its password masked."""
        ...

    def describe(self) -> str:
        """One line for `qabot stats`: the kind of store and, for PostgreSQL, where (passwords masked)."""
        ...

    def writer(self) -> AbstractContextManager[StoreWriter]: ...
    def bulk_load(self) -> AbstractContextManager[None]: ...
    def reindexer(self) -> AbstractContextManager[Reindex]: ...
    def refresh(self) -> bool: ...
    def dense_search(self, query: np.ndarray, k: int, scope: str = ...) -> tuple[np.ndarray, np.ndarray]: ...
    def keyword_search(self, query: str, k: int, scope: str = ...,
                       also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def vectors(self, ids: Sequence[int]) -> np.ndarray: ...
    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]: ...
    def integrity(self) -> IntegrityReport: ...
    def disk_bytes(self) -> int: ...
    def save_config(self, config: IndexConfig) -> None: ...
    def feedback(self) -> Feedback:
        """Readers' votes, stored with the index; the caller closes it."""
        ...

    def bot_state(self) -> BotState:
        """The Discord bot's answer records and server settings, stored with the index; the caller closes it."""
        ...

    def close(self) -> None: ...


def new_config(encoder: Encoder) -> IndexConfig:
    """The config of a new, empty index: what the encoder is, and when it was made."""
    return IndexConfig(model=encoder.name, dimension=encoder.dimension, max_tokens=encoder.max_tokens,
                       created_at=now_iso(), encoder_backend=encoder_backend(encoder))


def encoder_backend(encoder: Encoder) -> str:
    """What an index records as its encoder_backend: the encoder's vectors (the runtime, and its int8 build
    from the second on; encoders/base.py vectors_of)."""
    return str(encoder.vectors)


def check_compatible(config: IndexConfig, encoder: Encoder, where: str, *, kind: str = "index",
                     setting: str = "QABOT_HOME") -> None:
    """Refuse to open an index (`kind` at `where`: "index" at a directory, "store" at a URL) that a newer
    qabot wrote or another model built; `setting` names what picks another one."""
    if config.schema_version > SCHEMA_VERSION:
        raise IndexMismatch(f"The {kind} at {where} was written by a newer qabot (schema "
                            f"{config.schema_version}); upgrade qabot.")
    # Same name implies same dimension; comparing names avoids loading a lazy model just to open.
    if config.model != encoder.name:
        raise IndexMismatch(
            f"The {kind} at {where} was built with model {config.model!r} ({config.dimension} dimensions), "
            f"but qabot is set to use {encoder.name!r}. Set QABOT_EMBED_MODEL={config.model} or use another "
            f"{setting}.")


def check_writer_backend(config: IndexConfig, encoder: Encoder, where: str, *, kind: str = "index",
                         setting: str = "QABOT_HOME") -> None:
    """Reading with another runtime, or another int8 build, is fine (a question vector ~0.99 cosine to its
    fp32 self); writing would leave one index holding vectors of two kinds, so it is refused."""
    mine = encoder_backend(encoder)
    if mine == config.encoder_backend or mine == "hashing":
        return
    if runtime_of(mine) == runtime_of(config.encoder_backend):
        raise IndexMismatch(
            f"The {kind} at {where} holds vectors of another {runtime_of(mine)} build ({config.encoder_backend}) "
            f"than this qabot makes ({mine}): run `qabot reindex` to re-embed it from the stored text, or use "
            f"another {setting}.")
    raise IndexMismatch(
        f"The {kind} at {where} holds {config.encoder_backend} vectors, but QABOT_ENCODER_BACKEND="
        f"{runtime_of(mine)}: run `qabot reindex` to re-embed it with {runtime_of(mine)}, unset "
        f"QABOT_ENCODER_BACKEND to write with {runtime_of(config.encoder_backend)}, or use another {setting}.")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
