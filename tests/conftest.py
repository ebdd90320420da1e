"""Shared fixtures. Unit tests use the deterministic HashingEncoder; `model` tests load all-MiniLM-L6-v2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embeddings.service import QAService
from embeddings.settings import Settings
from tests.fakes.postgres import pg_server, pg_url  # noqa: F401 - PostgreSQL fixtures (one server per session)
from tests.support import SEEDS, make_service

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hashing_service(tmp_path: Path):
    svc = make_service(tmp_path / "idx")
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def seed_service(tmp_path_factory):
    """The real model over seeds/, built once per test session."""
    svc = QAService(Settings(home=tmp_path_factory.mktemp("seed-index")))
    report = svc.ingest([str(SEEDS)], progress=False)
    assert report.ok and report.count("added") == 1
    yield svc
    svc.close()
