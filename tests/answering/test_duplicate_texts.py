"""The same article ingested from two places: answers show each passage once."""

from __future__ import annotations

import shutil

from tests.support import SEEDS, make_service

QUESTION = "Why did Egypt cut ties with Iran?"


def test_an_article_ingested_twice_shows_each_passage_once(tmp_path):
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
