"""Faults and hostile input at the embedded store: shared passages, full disks, read-only media, lost or
damaged files, and processes that share one index directory."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.ingest import pipeline
from tests.support import make_service, write


def para(topic: str, n: int = 6) -> str:
    """A paragraph long enough (> min_tokens) to be a passage of its own."""
    return " ".join(f"The {topic} report sentence {i} describes the harbour council plan in detail." for i in range(n))


def doc(title: str, *topics: str) -> str:
    return title + "\n\n" + "\n\n".join(para(t) for t in topics) + "\n"


def assert_vectors_stored_and_nonzero(svc) -> None:
    idx = svc.index
    ids, _ = idx.store.passage_ids_and_scopes()
    stored = idx.store.vectors_for(ids.tolist(), idx.config.dimension)
    assert np.all(np.linalg.norm(stored, axis=1) > 0), "a passage lost its stored embedding"
    np.testing.assert_array_equal(idx.vectors(ids.tolist()), stored)


# ------------------------------------------------------------------ 2: a passage shared by two documents


@pytest.mark.parametrize("batch", ["same-batch", "consecutive-batches"])
def test_passage_shared_with_a_new_document_keeps_its_embedding_when_the_old_one_is_updated(
        tmp_path, monkeypatch, batch):
    if batch == "consecutive-batches":
        monkeypatch.setattr(pipeline, "COMMIT_EVERY_PASSAGES", 1)  # one document per batch
    svc = make_service(tmp_path / "idx")
    a = write(tmp_path / "a.txt", doc("Shared Title", "seal colony", "ferry route"))
    assert svc.ingest([str(a)], progress=False).ok
    write(a, doc("Shared Title", "ferry timetable"))  # A drops the seal-colony passage...
    b = write(tmp_path / "b.txt", doc("Shared Title", "seal colony", "lighthouse"))  # ...which B reuses
    report = svc.ingest([str(a), str(b)], progress=False)
    assert report.count("updated") == 1 and report.count("added") == 1
    assert_vectors_stored_and_nonzero(svc)
    assert svc.index.integrity().ok
    svc.close()


def test_integrity_reports_a_passage_without_its_embedding(tmp_path):
    svc = make_service(tmp_path / "idx")
    svc.ingest([str(write(tmp_path / "a.txt", doc("T", "seal colony", "ferry route")))], progress=False)
    store = svc.index.store
    with store.transaction() as conn:
        conn.execute("DELETE FROM embeddings WHERE hash = (SELECT embed_hash FROM passages LIMIT 1)")
    svc.index.refresh()
    report = svc.index.integrity()
    assert not report.ok and any("embedding" in p for p in report.problems), report
    svc.close()
