"""Helpers shared by test modules (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

from embeddings.config import Settings
from embeddings.encoder import HashingEncoder
from embeddings.service import QAService

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
SHARED_EVAL = ROOT.parent / "shared" / "eval"


def make_service(home: Path, dim: int = 256) -> QAService:
    return QAService(Settings(home=home), encoder=HashingEncoder(dim))
