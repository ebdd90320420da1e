"""Questions as typed in a channel reach the same passages as their tidy form (answer.py + text/phrasing.py)."""

from __future__ import annotations

from tests.support import ARTICLE, write


def test_a_typo_is_read_as_the_word_the_article_uses(hashing_service, tmp_path):
    hashing_service.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    typed = hashing_service.ask("why did the harbour councel approve the ferry?")
    tidy = hashing_service.ask("why did the harbour council approve the ferry?")
    assert typed.interpreted_as == "why did the harbour council approve the ferry?"
    assert typed.question == "why did the harbour councel approve the ferry?"  # what was asked stays
    assert [p.passage_id for p in typed.passages] == [p.passage_id for p in tidy.passages]
    assert typed.text == tidy.text and typed.confidence == tidy.confidence
    assert tidy.interpreted_as == ""  # nothing to reread: nothing said


def test_a_name_the_article_holds_is_never_corrected(hashing_service, tmp_path):
    hashing_service.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    # "Carrow" is not an English word (a speller would offer "carrot" / "arrow"), but the article holds it
    assert hashing_service.ask("where is carrow").interpreted_as == ""
