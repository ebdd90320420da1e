"""QAService.ingest_text: a document given as title + paragraphs (what the Discord bot builds from a thread or
a channel's pins), replaced by source on every ingest, removed when no paragraph is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from embeddings.errors import EmptyDocument, UnsupportedInput
from embeddings.models import guild_scope
from embeddings.text import extract as extract_mod
from embeddings.text.extract import article_from_paragraphs
from tests.support import make_service

SCOPE = guild_scope(42)
SOURCE = "https://discord.com/channels/42/1001"


@pytest.fixture
def service(tmp_path: Path):
    svc = make_service(tmp_path / "idx")
    yield svc
    svc.close()


def test_article_from_paragraphs_reads_markdown_and_guesses_nothing() -> None:
    art = article_from_paragraphs("  How do I  reset the router? ", [
        "Is it **safe** to [unplug](https://example.org) it?",  # a headline-like first line stays text
        "Hold the button for 10 s.\nThen wait for the green light.",
        "```\nreset --hard\n```",
        "thanks!",
    ], name="thread", published="2026-12-01")
    assert art.title == "How do I reset the router?"
    assert art.text.split("\n\n") == ["Is it safe to unplug it?", "Hold the button for 10 s.",
                                      "Then wait for the green light.", "reset --hard", "thanks!"]
    assert (art.kind, art.published, art.outlet) == ("markdown", "2026-12-01", None)


def test_article_from_paragraphs_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmptyDocument, match="^thread: no text"):
        article_from_paragraphs("t", ["", "   ", "---"], name="thread")
    monkeypatch.setattr(extract_mod, "MAX_INPUT_BYTES", 10)
    with pytest.raises(UnsupportedInput, match="over the 10-byte limit"):
        article_from_paragraphs("t", ["0123456789", "x"], name="thread")


def test_ingest_text_adds_replaces_and_removes(service) -> None:
    paragraphs = ["The glimmerfish pond was drained on Monday.", "The otters moved to the north meadow."]
    report = service.ingest_text("Pond maintenance", paragraphs, source=SOURCE, scope=SCOPE, outlet="#garden")
    assert report.ok and [o.status for o in report.outcomes] == ["added"]
    (doc,) = service.documents(SCOPE)
    assert (doc.title, doc.source, doc.outlet) == ("Pond maintenance", SOURCE, "#garden")
    assert service.documents() == [doc]  # nothing in any other scope

    again = service.ingest_text("Pond maintenance", paragraphs, source=SOURCE, scope=SCOPE)
    assert [o.status for o in again.outcomes] == ["unchanged"]

    answer = service.ask("where did the otters move?", scope=SCOPE)
    assert answer.found and "north meadow" in answer.text and answer.best_passage.citation.url == SOURCE

    edited = ["The glimmerfish pond was drained on Monday.", "The otters moved to the south orchard."]
    assert [o.status for o in service.ingest_text("Pond maintenance", edited, source=SOURCE,
                                                  scope=SCOPE).outcomes] == ["updated"]
    (doc,) = service.documents(SCOPE)  # replaced, not added beside the old one
    answer = service.ask("where did the otters move?", scope=SCOPE)
    assert "south orchard" in answer.text and "north meadow" not in " ".join(p.text for p in answer.passages)

    gone = service.ingest_text("Pond maintenance", ["  "], source=SOURCE, scope=SCOPE)
    assert [(o.status, o.title) for o in gone.outcomes] == [("removed", "Pond maintenance")]
    assert service.documents(SCOPE) == []
    nothing = service.ingest_text("Pond maintenance", [], source=SOURCE, scope=SCOPE)
    assert not nothing.ok and nothing.failures[0].message == "no text to index" and not nothing.outcomes
