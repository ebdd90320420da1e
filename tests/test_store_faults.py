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


# ------------------------------------------------------------------ 5: two processes on one directory


@pytest.mark.parametrize("then", ["ingest", "remove"])
def test_a_long_lived_service_writes_after_another_one_replaced_its_cache_files(tmp_path, then):
    """The bot (A) holds caches loaded from dense-<g>.faiss; a CLI ingest (B) publishes g+1 and deletes
    them. A's next write must not read the deleted file again."""
    home = tmp_path / "idx"
    first = make_service(home)
    assert first.ingest([str(write(tmp_path / "one.txt", doc("One", "seal colony")))], progress=False).ok
    first.close()
    a = make_service(home)  # loads (memory-maps) the published caches
    b = make_service(home)
    assert b.ingest([str(write(tmp_path / "two.txt", doc("Two", "ferry route")))], progress=False).ok
    b.close()
    if then == "ingest":
        assert a.ingest([str(write(tmp_path / "three.txt", doc("Three", "lighthouse")))], progress=False).ok
        assert {d.title for d in a.documents()} == {"One", "Two", "Three"}
    else:
        assert a.remove("One") == ["One"]
        assert {d.title for d in a.documents()} == {"Two"}
    assert a.index.integrity().ok
    assert_vectors_stored_and_nonzero(a)
    a.close()


@pytest.mark.parametrize("ivf", [False, True])
def test_a_memory_mapped_dense_index_stays_writable_after_its_file_is_deleted(tmp_path, ivf):
    from embeddings.store.embedded.dense import DenseIndex

    vectors = np.random.default_rng(0).random((400, 16), dtype=np.float32)
    dense = DenseIndex(16)
    dense.add(np.arange(400), vectors)
    dense.fit_size(100 if ivf else None)
    dense.save(tmp_path / "dense-1.faiss")
    mapped = DenseIndex.load(tmp_path / "dense-1.faiss", 16)
    (tmp_path / "dense-1.faiss").unlink()  # another process published generation 2
    mapped.add([1000], np.ones((1, 16), dtype=np.float32))
    assert len(mapped) == 401 and mapped.kind == ("ivf" if ivf else "flat")
    np.testing.assert_array_equal(mapped.vectors([5, 399]), vectors[[5, 399]])


# ------------------------------------------------------------------ 10: stats during an ingest, and its exit code


def test_integrity_is_ok_while_another_process_is_mid_ingest(tmp_path, monkeypatch):
    """SQLite runs ahead of the published caches while a writer holds the lock: that is the published
    generation being served, not a fault, for a reader opened before the ingest or during it."""
    monkeypatch.setattr(pipeline, "COMMIT_EVERY_PASSAGES", 1)
    home = tmp_path / "idx"
    writer = make_service(home)
    assert writer.ingest([str(write(tmp_path / "one.txt", doc("One", "seal colony")))], progress=False).ok
    published = writer.index.store.generation()
    before = make_service(home)
    seen = []

    def check(_outcomes):
        during = make_service(home)
        for svc in (before, during):
            report = svc.index.integrity()
            seen.append(report)
            assert report.ok, report.problems
            assert report.generation == published < svc.index.store.generation()
        during.close()

    files = [str(write(tmp_path / f"{n}.txt", doc(n, f"{n} topic"))) for n in ("two", "three")]
    assert writer.ingest(files, progress=False, on_commit=check).ok
    assert len(seen) == 4
    after = before.index.integrity()  # the writer has published: the reader catches up
    assert after.ok and after.generation == writer.index.store.generation()
    for svc in (writer, before):
        svc.close()
