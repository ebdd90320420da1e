"""Ingest embeds one batch while it reads and chunks the next: commits stay in order, each distinct
passage is embedded once across batches, and a failure keeps what was committed before it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from embeddings.encoders.hashing import HashingEncoder
from embeddings.ingest import pipeline as ingest
from embeddings.service import QAService
from embeddings.settings import Settings

# Long enough to be a passage of its own; with one title for every article, its embedding input (title and
# text) is the same in each, so it must be embedded once.
SHARED = " ".join(["The harbour newsletter is published every week by the council and sent to subscribers."] * 5)


class SlowCountingEncoder(HashingEncoder):
    """Records every text it encodes and when each call ran; sleeps so that calls overlap other work."""

    def __init__(self, dim: int = 64, delay: float = 0.0, fail_on: str | None = None) -> None:
        super().__init__(dim)
        self.texts: list[str] = []
        self.spans: list[tuple[float, float]] = []
        self.delay, self.fail_on = delay, fail_on
        self._mutex = threading.Lock()

    def encode(self, texts, *, batch_size=64):
        start = time.monotonic()
        if self.fail_on and any(self.fail_on in t for t in texts):
            raise RuntimeError("encoder failed")
        time.sleep(self.delay)
        with self._mutex:
            self.texts.extend(texts)
            self.spans.append((start, time.monotonic()))
        return super().encode(texts, batch_size=batch_size)


def _articles(tmp_path, n: int):
    paths = []
    for i in range(n):
        body = " ".join([f"Story {i} says the ferry number {i} left Northport at dawn with {i} crates aboard."] * 4)
        p = tmp_path / f"a{i:02d}.txt"
        p.write_text(f"Harbour News\n\n{body}\n\n{SHARED}\n")
        paths.append(p)
    return paths


def test_batches_overlap_commit_in_order_and_embed_each_passage_once(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "COMMIT_EVERY_PASSAGES", 3)
    enc = SlowCountingEncoder(delay=0.15)
    svc = QAService(Settings(home=tmp_path / "idx"), encoder=enc)
    prepared: list[float] = []
    real_prepare = ingest.Ingestor.prepare

    def timed_prepare(self, *args, **kwargs):
        prepared.append(time.monotonic())
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(ingest.Ingestor, "prepare", timed_prepare)
    commits: list[list[str]] = []
    paths = _articles(tmp_path, 12)
    report = svc.ingestor.ingest([str(p) for p in paths], progress=False,
                                 on_commit=lambda done: commits.append([d.name for d in done]))
    assert report.ok and report.count("added") == 12
    assert [n for batch in commits for n in batch] == [str(p) for p in paths], "commits must keep input order"
    assert len(commits) > 2
    # The shared paragraph's passages are embedded once, though every batch holds some.
    shared = [t for t in enc.texts if t == f"Harbour News\n{SHARED}"]
    assert len(shared) == 1
    passages = [t for t in enc.texts if t.startswith("Harbour News\n")]
    assert report.embedded == len(passages) == 13 and report.reused == 11  # 12 stories + 1 shared; 11 copies
    # Some article was read while a batch was being embedded.
    assert any(a < t < b for t in prepared for a, b in enc.spans)
    assert svc.index.integrity().ok
    for i in (0, 11):
        assert svc.ask(f"When did ferry number {i} leave Northport?").passages
    svc.close()


def test_a_failed_embedding_keeps_earlier_batches_and_leaves_a_consistent_index(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "COMMIT_EVERY_PASSAGES", 3)
    paths = _articles(tmp_path, 12)
    enc = SlowCountingEncoder(fail_on="ferry number 9 ")
    svc = QAService(Settings(home=tmp_path / "idx"), encoder=enc)
    with pytest.raises(RuntimeError, match="encoder failed"):
        svc.ingestor.ingest([str(p) for p in paths], progress=False)
    docs = {d.source for d in svc.index.store.documents()}
    assert docs and str(paths[0].resolve()) in docs and str(paths[9].resolve()) not in docs
    assert svc.index.integrity().ok
    ids = svc.index._caches.keyword.ids
    np.testing.assert_array_equal(np.sort(svc.index._caches.dense.ids()), ids)
    svc.close()
