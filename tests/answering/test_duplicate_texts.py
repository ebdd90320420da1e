"""The same article ingested from two places: answers show each passage once."""

from __future__ import annotations

import shutil

import pytest

from embeddings.ingest import pipeline
from tests.support import SEEDS, make_service

QUESTION = "Why did Egypt cut ties with Iran?"


@pytest.mark.parametrize("batch", [pipeline.COMMIT_EVERY_PASSAGES, 1], ids=["one-commit", "a-commit-each"])
def test_an_article_ingested_twice_shows_each_passage_once(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(pipeline, "COMMIT_EVERY_PASSAGES", batch)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in SEEDS.glob("*.txt"):
        shutil.copy(f, copy / f"saved-{f.name}")
    once = make_service(tmp_path / "once")
    twice = make_service(tmp_path / "twice")
    try:
        once.ingest([str(SEEDS)], progress=False)
        report = twice.ingest([str(SEEDS), str(copy)], progress=False)
        assert len(twice.index.store.documents()) == 2 * len(once.index.store.documents())
        # The report says which document is a copy, and of what (both are kept: removing one keeps the text).
        first, second = sorted(report.outcomes, key=lambda o: "saved-" in o.name)
        assert first.status == second.status == "added" and first.same_text_as == ""
        assert second.same_text_as == next(d.source for d in twice.index.store.documents() if "saved-" not in d.source)
        again = twice.ingest([str(copy)], progress=False)
        assert [o.status for o in again.outcomes] == ["unchanged"]

        single, doubled = once.ask(QUESTION, k=5), twice.ask(QUESTION, k=5)
        texts = [p.text for p in doubled.passages]
        assert len(texts) == 5 and len(set(texts)) == len(texts), "a duplicated passage was shown twice"
        assert texts == [p.text for p in single.passages]
        assert doubled.text == single.text and doubled.found == single.found
        # The copy shown is the first one ingested, so removing the copy later changes nothing shown.
        assert {p.citation.source for p in doubled.passages} == {p.citation.source for p in single.passages}
    finally:
        once.close()
        twice.close()


def test_the_copy_a_conversation_cites_is_the_one_kept():
    from embeddings.answering.answer import _distinct_texts
    from embeddings.answering.retrieval import Candidate
    from embeddings.store.records import DocumentRow, PassageRow

    def row(pid: int, doc: int, title: str, text: str) -> PassageRow:
        d = DocumentRow(doc, f"k{doc}", "", f"src{doc}", title, None, None, "", "h")
        return PassageRow(pid, doc, 0, 0, 0, len(text), text, ((0, len(text)),), d)

    rows = {1: row(1, 1, "T", "same"), 2: row(2, 2, "T", "same"), 3: row(3, 3, "Other title", "same"),
            4: row(4, 1, "T", "different")}
    cands = [Candidate(1, 3.0, 0.5, 1.0), Candidate(4, 2.0, 0.4, 1.0), Candidate(2, 1.0, 0.5, 1.0, prior=0.6),
             Candidate(3, 0.5, 0.5, 1.0)]
    got = _distinct_texts(cands, rows)
    # the cited copy (document 2, prior 0.6) takes the first copy's place and score; another title is not a copy
    assert [(c.passage_id, c.score, c.prior) for c in got] == [(2, 3.0, 0.6), (4, 2.0, 0.0), (3, 0.5, 0.0)]
