"""Fuzz extract + chunk with hostile Markdown and text: invariants hold and every input finishes in time.

Inputs are built from markup fragments (emphasis, brackets, backticks, headings, runs of spaces, pysbd
bait such as abbreviations and quotes) repeated into long lines, so quadratic behaviour shows at once.
The time bound is generous (2 s for ~20 KB on a slow, shared 2-core CI machine) yet far below what a
quadratic step takes at that size. The default run takes a few seconds; the `slow` one goes longer."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embeddings.encoders.hashing import HashingEncoder
from embeddings.errors import EmptyDocument
from embeddings.text.chunking import ChunkSettings, chunk_document
from embeddings.text.extract import extract

COUNT = HashingEncoder().count_tokens
SETTINGS = ChunkSettings(max_tokens=64, min_tokens=16)
SECONDS_PER_20KB = 2.0

FRAGMENTS = ["*", "**", "_", "__", "~~", "`", "```", "[", "]", "(", ")", "![", "](", "<http:", "<", ">", "#",
             "# ", " ", "    ", "\t", "\n", "\n\n", "- ", "1. ", "> ", "---", "===", "a", "word", "Word.", "e.g.",
             "Mr.", "i.", "A.", "'", '"', "...", "?", "!", ":", "\\", "|", "中文", "é", "http://x.y/", "1.2"]
_unit = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join)


@st.composite
def hostile(draw, size: int) -> str:
    """Up to 3 units, each repeated into a run; plus a plain sentence so there is some article text."""
    runs = [draw(_unit) * (size // 3 // max(len(u), 1) + 1) for u in [draw(_unit) for _ in range(3)]]
    for i in range(1, len(runs)):
        runs[i] = draw(st.sampled_from(["", "\n", "\n\n", " "])) + runs[i]
    return "".join(runs)[:size] + "\n\nThe article ends with this sentence."


def check(doc: str, kind: str) -> None:
    started = time.perf_counter()
    try:
        article = extract(doc.encode("utf-8"), kind=kind, name="fuzz.md")
    except EmptyDocument:
        return
    text = article.text
    chunks = chunk_document(text, COUNT, SETTINGS)
    elapsed = time.perf_counter() - started
    assert elapsed < SECONDS_PER_20KB * max(1.0, len(doc) / 20_000), f"{elapsed:.1f} s for {len(doc)} chars"
    assert chunks  # the text holds non-space characters, so it has passages
    for c in chunks:
        assert text[c.start:c.end] == c.text  # offsets round-trip
        assert c.text.strip() and c.text == c.text.strip()  # no empty passage
        assert COUNT(c.text) <= SETTINGS.max_tokens or len(c.sentences) == 1 and len(c.text) == 1  # size bound
        for s in c.sentences:  # sentences lie inside their passage, in order
            assert c.start <= s.start < s.end <= c.end and text[s.start:s.end].strip()
        assert [s.start for s in c.sentences] == sorted(s.start for s in c.sentences)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=hostile(20_000), kind=st.sampled_from(["markdown", "text"]))
# Always tried: inputs that took 10 to 60+ s before extraction and chunking were made linear.
@example(doc="# a" + " " * 30_000 + "b\n\nText.", kind="markdown")
@example(doc="x " + "`" * 60_000 + "\n\nText.", kind="markdown")
@example(doc="x " + "**a " * 15_000 + "\n\nText.", kind="markdown")
@example(doc="x " + "e.g. " * 20_000, kind="text")
def test_fuzz_extract_and_chunk(doc: str, kind: str) -> None:
    check(doc, kind)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=hostile(100_000), kind=st.sampled_from(["markdown", "text"]))
def test_fuzz_extract_and_chunk_long(doc: str, kind: str) -> None:
    check(doc, kind)
