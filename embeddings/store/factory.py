"""Which store an index lives in, chosen by configuration: the embedded directory (default) or PostgreSQL.

`IndexBackend` is the surface the rest of the core uses (Retriever, Answerer, Ingestor, QAService, the CLI);
both index.Index and pgstore.PgIndex satisfy it structurally, so nothing above this module knows which one
is in use. QABOT_STORE=postgresql://... selects PostgreSQL; unset, the index is the directory QABOT_HOME.
QABOT_STORE_READ=postgresql://... (comma separated) adds read replicas of that primary for the question path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from embeddings.store.urls import is_pg_url, redact_url

if TYPE_CHECKING:
    from embeddings.config import IndexConfig
    from embeddings.encoders.base import Encoder
    from embeddings.settings import Settings
    from embeddings.store.embedded.feedback import FeedbackStore
    from embeddings.store.embedded.sqlite import DocumentRow, NewDocument, PassageRow, PassageVectors

__all__ = ["IndexBackend", "StoreReader", "StoreWriter", "describe_store", "is_pg_url", "open_feedback",
           "open_index", "recorded_backend", "redact_url"]


class StoreReader(Protocol):
    """`index.store`: row-level reads shared by ingest (reuse, replacement), answers and the CLI."""

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


class StoreWriter(Protocol):
    changed: bool

    def put_documents(self, docs: Sequence[NewDocument], vectors: dict[str, PassageVectors]) -> None: ...
    def delete_document(self, doc_id: int) -> None: ...


@runtime_checkable
class IndexBackend(Protocol):
    config: IndexConfig
    encoder: Encoder
    store: Any  # a StoreReader (Any: the embedded Store's exact signatures differ in parameter types)
    home: Any   # a directory (embedded) or the redacted URL (PostgreSQL): shown by stats

    def writer(self) -> AbstractContextManager[Any]: ...
    def refresh(self) -> bool: ...
    def dense_search(self, query: np.ndarray, k: int, scope: str = ...) -> tuple[np.ndarray, np.ndarray]: ...
    def keyword_search(self, query: str, k: int, scope: str = ...,
                       also: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def vectors(self, ids: Sequence[int]) -> np.ndarray: ...
    def passages(self, ids: Sequence[int]) -> dict[int, PassageRow]: ...
    def integrity(self) -> Any: ...
    def disk_bytes(self) -> int: ...
    def save_config(self, config: IndexConfig) -> None: ...
    def close(self) -> None: ...


def open_index(settings: Settings, encoder: Encoder, *, create: bool = True) -> IndexBackend:
    """The index the settings name: PostgreSQL when QABOT_STORE is a postgresql:// URL, else the directory."""
    store = getattr(settings, "store", "") or ""
    replicas = tuple(getattr(settings, "store_read", ()) or ())
    if is_pg_url(store):
        from embeddings.store.postgres.store import PgIndex

        return PgIndex(store, encoder, create=create, read_urls=replicas)
    # (Replicas without a PostgreSQL store are refused where the environment is read: Settings.from_env.
    # A caller that swaps the store for a directory, like `qabot migrate --home`, just has none.)
    from embeddings.store.embedded.index import Index

    return Index(settings.home, encoder, create=create)


def recorded_backend(settings: Settings) -> str | None:
    """The encoder backend the index the settings name was built with, read without loading a model or
    opening caches; None when there is no index yet (or it cannot be read: opening it will say why)."""
    store = getattr(settings, "store", "") or ""
    if is_pg_url(store):
        from embeddings.store.postgres.store import recorded_backend_at_url

        return recorded_backend_at_url(store)
    from embeddings.store.embedded.index import recorded_backend_at

    return recorded_backend_at(settings.home)


def open_index_at(location: str, encoder: Encoder, *, create: bool = True) -> IndexBackend:
    """A URL or a directory path (qabot migrate's --to)."""
    from pathlib import Path

    if is_pg_url(location):
        from embeddings.store.postgres.store import PgIndex

        return PgIndex(location, encoder, create=create)
    from embeddings.store.embedded.index import Index

    return Index(Path(location).expanduser(), encoder, create=create)


def describe_store(index: Any) -> str:
    """One line for `qabot stats`: which kind of store, and where (passwords redacted)."""
    url = getattr(index, "url", None)
    if url:
        describe = getattr(index, "describe", None)
        return f"postgresql ({describe() if describe is not None else redact_url(url)})"
    return "embedded (SQLite + FAISS + BM25)"  # where: stats' `home` (kept out of here: copies compare equal)


def open_feedback(index: Any) -> FeedbackStore:
    """Votes live with the index: in its database for PostgreSQL, in the SQLite file of a directory."""
    make = getattr(index, "feedback_store", None)
    if make is not None:
        return make()
    from embeddings.store.embedded.feedback import FeedbackStore

    return FeedbackStore(index.home / index.DB)


def iter_documents(index: Any, batch: int = 200) -> Iterator[tuple[NewDocument, dict[str, PassageVectors]]]:
    """Every document with its stored vectors, in id order (for copying between stores)."""
    export = getattr(index.store, "export_documents", None)
    if export is not None:
        yield from export(batch)
        return
    from embeddings.store.migrate import export_embedded

    yield from export_embedded(index, batch)
