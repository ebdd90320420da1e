"""The rows both stores read and write: documents, passages (with sentence offsets) and their vectors.
Plain frozen dataclasses, shared by the embedded and the PostgreSQL store, ingest, answering and migrate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DocumentRow:
    id: int
    doc_key: str
    scope: str
    source: str
    title: str
    outlet: str | None
    published: str | None
    ingested_at: str
    content_hash: str
    passages: int = 0


@dataclass(frozen=True)
class PassageRow:
    id: int
    doc_id: int
    ordinal: int
    paragraph: int
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...]  # offsets into the passage text
    doc: DocumentRow


@dataclass(frozen=True)
class PassageVectors:
    passage: np.ndarray    # (dimension,)
    sentences: np.ndarray  # (sentences, dimension), in the passage's sentence order


@dataclass(frozen=True)
class NewPassage:
    ordinal: int
    paragraph: int
    start: int
    end: int
    text: str
    embed_hash: str
    sentences: tuple[tuple[int, int], ...]  # offsets into the document text


@dataclass(frozen=True)
class NewDocument:
    doc_key: str
    scope: str
    source: str
    title: str
    outlet: str | None
    published: str | None
    ingested_at: str
    content_hash: str
    text: str
    passages: tuple[NewPassage, ...]
