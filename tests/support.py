"""Helpers shared by test modules (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
from embeddings.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
SHARED_EVAL = ROOT.parent / "shared" / "eval"

# A small article whose facts no seed article shares: ingest, replace and remove tests use it.
ARTICLE = """Harbour Council Approves New Ferry Route

The harbour council approved a new ferry route between Northport and the island of Carrow on Tuesday.

The route will start in May and run twice a day, the council said, because demand from commuters doubled.

Critics said the ferry would harm the seal colony near Carrow, which biologists have counted since 1990.
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def make_service(home: Path, dim: int = 256) -> QAService:
    return QAService(Settings(home=home), encoder=HashingEncoder(dim))
