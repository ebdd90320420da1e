"""Split a cleaned article text into retrieval passages.

The text is the article body only (no title); paragraphs are separated by blank lines ("\\n\\n").
Every offset produced here is a character offset into that document text, and every passage satisfies
``doc[chunk.start:chunk.end] == chunk.text``.

Passages are paragraph-aware:

* a paragraph that fits the token budget is one passage, except that a paragraph (or run of merged
  paragraphs) shorter than ``min_tokens`` is merged with the next paragraph, or else with the previous
  one, when the merged text still fits the budget;
* a paragraph longer than the budget is split at sentence boundaries into pieces that fit, each piece
  after the first repeating the last ``overlap_sentences`` sentences of the previous piece (fewer when
  the overlap would not fit);
* passages never cut a sentence, with one exception: a single sentence that alone exceeds the budget is
  split at word boundaries (and, for a "word" that alone exceeds it, e.g. a long run of CJK text, at
  character boundaries) into pieces that fit. Those pieces then act as the sentences of the passage.

Token counts: each sentence is counted once; a passage's size is estimated by summing its sentences'
counts (minus the per-call overhead ``count_tokens("")``, i.e. the special tokens), and every passage
of more than one sentence is verified with a single ``count_tokens`` call and split further if the
estimate was wrong. The size bound ``count_tokens(chunk.text) <= budget`` therefore always holds (save
for a single character that alone exceeds the budget, which cannot be split).

Sentence segmentation uses pysbd ("en", clean=False) paragraph by paragraph, so sentences never cross
paragraph boundaries. pysbd takes time quadratic in its input on some texts (its abbreviation and
punctuation passes rewrite the whole text once per match: 40 KB of "e.g. " took 3 s), so a paragraph
longer than ``_SEGMENT_WINDOW`` characters is segmented in windows of at most that size, each cut after
a likely sentence end (else at whitespace, else anywhere): ingest stays linear in its input, and such a
paragraph is far over any token budget anyway. pysbd's own offset recovery is slow and drops sentences it cannot find, so the
segments are located here with ``str.find``; the sentences of a paragraph always tile it completely
(text pysbd altered or dropped is attached to the neighbouring sentence), so no text is ever lost.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "Chunk",
    "ChunkSettings",
    "SentenceSpan",
    "TokenCounter",
    "chunk_document",
    "paragraph_spans",
    "split_sentences",
]

TokenCounter = Callable[[str], int]

# The effective budget never drops below this (unless max_tokens itself is smaller).
MIN_BUDGET = 32
# Characters of a segment used to re-locate it when pysbd altered the segment's text.
_FIND_PREFIX = 20
# pysbd is given at most this many characters at a time (see the module docstring).
_SEGMENT_WINDOW = 2000
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*\s+")
_SPACE_RUN = re.compile(r"\s+")

# A unit is a sentence (or a piece of an over-long one): (start, end, content tokens).
Unit = tuple[int, int, int]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class SentenceSpan:
    """A sentence as offsets into the document text; ``doc[start:end]`` is stripped and non-empty."""

    start: int
    end: int


@dataclass(frozen=True)
class ChunkSettings:
    max_tokens: int = 200  # hard upper bound of a passage in model tokens (as counted by count_tokens)
    min_tokens: int = 48  # paragraphs shorter than this are merged with the next (or previous) paragraph
    overlap_sentences: int = 1  # pieces of a split paragraph repeat the previous piece's last N sentences

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens must be >= 0, got {self.min_tokens}")
        if self.overlap_sentences < 0:
            raise ValueError(f"overlap_sentences must be >= 0, got {self.overlap_sentences}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Chunk:
    ordinal: int  # 0-based passage number within the document
    paragraph: int  # 1-based number of the first paragraph the passage covers
    start: int  # doc[start:end] == text
    end: int
    text: str
    sentences: tuple[SentenceSpan, ...]  # the passage's sentences (document offsets), in order


# --------------------------------------------------------------------------------------------------
# Paragraphs and sentences


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink text[start:end] to exclude leading/trailing whitespace (may become empty)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Non-empty paragraphs of ``text`` as stripped (start, end) spans, in order.

    Paragraphs are separated by one or more blank lines (a blank line may hold only whitespace)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        s, e = _strip_span(text, pos, m.start())
        if s < e:
            spans.append((s, e))
        pos = m.end()
    s, e = _strip_span(text, pos, len(text))
    if s < e:
        spans.append((s, e))
    return spans


_segmenter: Any = None
_segmenter_lock = threading.Lock()
_PLAIN_ABBREVIATION = re.compile(r"\w+")


def _fast_english() -> Any:
    """pysbd's English with one shortcut in its abbreviation pass, which was half of ingest's sentence
    splitting. For each of ~200 abbreviations found as a substring ("a", "al", "ca", ... are in nearly
    every text) pysbd collected matches and rewrote the whole text once per match, although every
    rewrite only replaces a period right after the abbreviation (the matched case of it; the pattern
    starts with a literal copy of it). When the text holds no "<abbreviation>." in any case, none can
    apply, so the abbreviation is skipped; ones with regex characters are never skipped (pysbd inserts
    some unescaped, so they can match other text). Same sentences on all 7,251 SQuAD, SciFact and seed
    texts (a test checks a sample); segmentation 2.6x faster. The method body is pysbd 0.3.4's (pinned)."""
    from pysbd.lang.english import English

    class FastEnglish(English):
        class AbbreviationReplacer(English.AbbreviationReplacer):  # type: ignore[name-defined,misc]
            def search_for_abbreviations_in_string(self, text: str) -> str:
                lowered = text.lower()
                for abbr in self.lang.Abbreviation.ABBREVIATIONS:
                    stripped = abbr.strip()
                    if stripped not in lowered:
                        continue
                    if stripped + "." not in lowered and _PLAIN_ABBREVIATION.fullmatch(stripped):
                        continue  # the shortcut: no period after it, so no replacement can match
                    abbrev_match = re.findall(r"(?:^|\s|\r|\n){}".format(stripped), text,  # noqa: UP032
                                              flags=re.IGNORECASE)
                    if not abbrev_match:
                        continue
                    next_word_start = r"(?<={" + str(re.escape(stripped)) + "} ).{1}"
                    char_array = re.findall(next_word_start, text)
                    for ind, match in enumerate(abbrev_match):
                        text = self.scan_for_replacements(text, match, ind, char_array)
                return text

    return FastEnglish


def _get_segmenter() -> Any:
    global _segmenter
    if _segmenter is None:
        with _segmenter_lock:
            if _segmenter is None:
                import pysbd

                seg = pysbd.Segmenter(language="en", clean=False)
                seg.language_module = _fast_english()
                _segmenter = seg
    return _segmenter


def _windows(paragraph: str) -> list[str]:
    """The paragraph in consecutive pieces of at most _SEGMENT_WINDOW characters, cut after the last
    sentence end in a piece's second half, else after its last whitespace, else at the limit."""
    pieces: list[str] = []
    start, n = 0, len(paragraph)
    while n - start > _SEGMENT_WINDOW:
        lo, hi = start + _SEGMENT_WINDOW // 2, start + _SEGMENT_WINDOW
        cut = hi
        for pattern in (_SENTENCE_END, _SPACE_RUN):
            ends = [m.end() for m in pattern.finditer(paragraph, lo, hi)]
            if ends:
                cut = ends[-1]
                break
        pieces.append(paragraph[start:cut])
        start = cut
    pieces.append(paragraph[start:])
    return pieces


def _segments(paragraph: str, deadline: Any = None) -> list[str]:
    # Segmenter.segment() re-locates each sentence with a regex over the whole text (quadratic, and it
    # silently drops sentences it cannot find) and stores the text on the shared instance; the processor
    # alone returns the sentence strings, which are located below instead.
    seg = _get_segmenter()
    out: list[str] = []
    for piece in _windows(paragraph):
        if deadline is not None:
            deadline.check()
        try:
            out += [str(s) for s in seg.processor(piece).process()]
        except Exception:  # pysbd bug on odd input: treat the piece as one sentence
            out.append(piece)
    return out


def _paragraph_sentences(text: str, start: int, end: int, deadline: Any = None) -> list[tuple[int, int]]:
    """Sentences of the stripped paragraph text[start:end], tiling it completely (relative offsets)."""
    para = text[start:end]
    starts: list[int] = []
    pos = 0
    n = len(para)
    for seg in (_segments(para) if deadline is None else _segments(para, deadline)):
        s = seg.strip()
        if not s:
            continue
        idx = para.find(s, pos)
        if idx >= 0:
            found_end = idx + len(s)
        else:  # pysbd altered the segment: locate its beginning, let the next segment bound its end
            idx = para.find(s[:_FIND_PREFIX], pos)
            if idx < 0:  # last resort: the rest of the paragraph is one sentence
                break
            found_end = idx + min(len(s), _FIND_PREFIX)
        starts.append(idx)
        pos = found_end
        if pos >= n:
            break
    if not starts:
        starts = [0]
    starts[0] = 0  # text before the first located segment (if pysbd dropped any) joins the first sentence
    spans: list[tuple[int, int]] = []
    for i, a in enumerate(starts):
        b = starts[i + 1] if i + 1 < len(starts) else n
        s2, e2 = _strip_span(para, a, b)
        if s2 < e2:
            spans.append((start + s2, start + e2))
    return spans


def split_sentences(text: str, offset: int = 0) -> list[SentenceSpan]:
    """Sentences of ``text`` (pysbd, "en", clean=False) as spans into ``text`` shifted by ``offset``.

    The text is segmented paragraph by paragraph, so no sentence crosses a blank line. Sentences are
    stripped, non-empty, in order, and together cover every non-whitespace character of ``text``."""
    out: list[SentenceSpan] = []
    for ps, pe in paragraph_spans(text):
        for s, e in _paragraph_sentences(text, ps, pe):
            out.append(SentenceSpan(s + offset, e + offset))
    return out


# --------------------------------------------------------------------------------------------------
# Chunking


def _budget(settings: ChunkSettings, reserved_tokens: int) -> int:
    floor = min(MIN_BUDGET, settings.max_tokens)
    return max(settings.max_tokens - max(reserved_tokens, 0), floor)


class _Chunker:
    """State for chunking one document: the text, the counter, the budget and the count overhead."""

    def __init__(self, text: str, count_tokens: TokenCounter, settings: ChunkSettings, budget: int,
                 deadline: Any = None):
        self.text = text
        self.deadline = deadline
        self.count = count_tokens
        self.settings = settings
        self.budget = budget
        self.base = max(count_tokens(""), 0)  # special tokens every call adds ([CLS]/[SEP])
        if budget <= self.base:
            raise ValueError(f"token budget {budget} leaves no room for text (empty text counts {self.base})")

    # ---- sizes -----------------------------------------------------------------------------------

    def content(self, s: int, e: int) -> int:
        """Tokens of text[s:e] beyond the per-call overhead (one count_tokens call)."""
        return max(self.count(self.text[s:e]) - self.base, 0)

    def fits(self, s: int, e: int) -> bool:
        return self.count(self.text[s:e]) <= self.budget

    # ---- over-long sentences ----------------------------------------------------------------------

    def split_long_sentence(self, s: int, e: int) -> list[Unit]:
        """Split text[s:e] (which exceeds the budget) at word boundaries into fitting pieces.

        Returns (start, end, content_tokens) pieces; each is verified with count_tokens."""
        room = self.budget - self.base
        units: list[Unit] = []
        for m in _WORD.finditer(self.text, s, e):
            ws, we = m.start(), m.end()
            c = self.content(ws, we)
            if c > room:
                units.extend(self.split_long_word(ws, we))
            else:
                units.append((ws, we, c))
        pieces: list[Unit] = []
        i = 0
        while i < len(units):
            j, total = i + 1, units[i][2]
            while j < len(units) and total + units[j][2] <= room:
                total += units[j][2]
                j += 1
            # verify; drop trailing words while the estimate was too optimistic
            while j - i > 1 and not self.fits(units[i][0], units[j - 1][1]):
                j -= 1
            if j - i > 1:
                total = self.content(units[i][0], units[j - 1][1])
            pieces.append((units[i][0], units[j - 1][1], total))
            i = j
        return pieces

    def split_long_word(self, s: int, e: int) -> list[Unit]:
        """Split a whitespace-free run text[s:e] at character boundaries: each piece is the longest prefix
        that fits, found by doubling a guess, then a binary search below the first length that does not
        fit. Each count is then of at most about twice the piece (a binary search over the whole rest of
        the run counted it again per piece: quadratic in a long run, e.g. CJK text or base64)."""
        room = max(self.budget - self.base, 1)
        pieces: list[Unit] = []
        while s < e:
            lo, hi = 1, e - s  # the longest prefix length that fits lies in [1, hi]
            probe = min(room, hi)
            while True:
                if not self.fits(s, s + probe):
                    hi = probe - 1
                    break
                lo = probe
                if probe == hi:
                    break
                probe = min(probe * 2, hi)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.fits(s, s + mid):
                    lo = mid
                else:
                    hi = mid - 1
            pieces.append((s, s + lo, self.content(s, s + lo)))
            s += lo
        return pieces

    # ---- paragraphs --------------------------------------------------------------------------------

    def paragraph_units(self, ps: int, pe: int) -> list[Unit]:
        """The sentences of a paragraph as (start, end, content_tokens); over-long ones split."""
        room = self.budget - self.base
        units: list[Unit] = []
        for s, e in _paragraph_sentences(self.text, ps, pe, self.deadline):
            c = self.content(s, e)
            if c > room:
                units.extend(self.split_long_sentence(s, e))
            else:
                units.append((s, e, c))
        return units

    def pack_long(self, units: list[Unit]) -> list[tuple[int, int]]:
        """Split a paragraph's sentences into verified, fitting pieces with sentence overlap.

        Returns index ranges into ``units``; starts and ends strictly increase."""
        room = self.budget - self.base
        overlap = self.settings.overlap_sentences
        pieces: list[tuple[int, int]] = []
        n = len(units)
        i = prev_j = 0
        while i < n:
            j, total = i + 1, units[i][2]
            while j < n and total + units[j][2] <= room:
                total += units[j][2]
                j += 1
            # one count verifies the estimate; drop trailing sentences while it was too optimistic
            while j - i > 1 and not self.fits(units[i][0], units[j - 1][1]):
                j -= 1
            if j <= prev_j:  # the overlap left no room for a new sentence: start afresh without it
                i = prev_j
                continue
            pieces.append((i, j))
            prev_j = j
            if j >= n:
                break
            # next piece: repeat up to `overlap` sentences, as many as fit together with units[j]
            nxt = j
            for k in range(max(j - overlap, i + 1), j):
                if sum(u[2] for u in units[k : j + 1]) <= room:
                    nxt = k
                    break
            i = nxt
        return pieces

    # ---- verification ------------------------------------------------------------------------------

    def verified(self, units: list[Unit], paras: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
        """Check units[lo:hi] with one count; split it (at paragraphs, else at sentences) if too big.

        ``paras[k]`` is the paragraph index of units[k]. Returns index ranges of fitting pieces."""
        if hi - lo == 1 or self.fits(units[lo][0], units[hi - 1][1]):
            return [(lo, hi)]
        if paras[lo] != paras[hi - 1]:
            out: list[tuple[int, int]] = []
            k = lo
            while k < hi:
                m = k
                while m < hi and paras[m] == paras[k]:
                    m += 1
                out.extend(self.verified(units, paras, k, m))
                k = m
            return out
        # one paragraph whose estimate was too optimistic: split it like a long paragraph
        return [(lo + a, lo + b) for a, b in self.pack_long(units[lo:hi])]


def chunk_document(
    text: str,
    count_tokens: TokenCounter,
    settings: ChunkSettings = ChunkSettings(),  # noqa: B008 - frozen, immutable default
    reserved_tokens: int = 0,
    deadline: Any = None,
) -> list[Chunk]:
    """Split a cleaned article text into passages (see the module docstring for the rules).

    ``reserved_tokens`` is what the context prepended at embedding time (the headline) takes; the budget
    is ``max_tokens - reserved_tokens`` but never below 32 (or max_tokens, if smaller). ``deadline`` (an
    ``embeddings.text.extract.Deadline``) is checked between paragraphs and segmenter windows."""
    paras = paragraph_spans(text)
    if not paras:
        return []
    ck = _Chunker(text, count_tokens, settings, _budget(settings, reserved_tokens), deadline)
    room = ck.budget - ck.base
    min_tokens = settings.min_tokens

    # A passage candidate: list of (paragraph_index, units); whole-paragraph groups may absorb a short one.
    passages: list[list[tuple[int, list[Unit]]]] = []
    whole: list[bool] = []
    pending: list[tuple[int, list[Unit]]] = []
    pending_size = 0

    def flush() -> None:
        nonlocal pending, pending_size
        if not pending:
            return
        if pending_size < min_tokens and passages and whole[-1]:
            prev_size = sum(u[2] for _, us in passages[-1] for u in us)
            if prev_size + pending_size <= room:  # a short leftover merges with the previous paragraph
                passages[-1].extend(pending)
                pending, pending_size = [], 0
                return
        passages.append(pending)
        whole.append(True)
        pending, pending_size = [], 0

    for pi, (ps, pe) in enumerate(paras):
        if deadline is not None:
            deadline.check()
        units = ck.paragraph_units(ps, pe)
        size = sum(u[2] for u in units)
        if size > room:  # long paragraph: sentence pieces with overlap
            flush()
            for lo, hi in ck.pack_long(units):  # already verified
                passages.append([(pi, units[lo:hi])])
                whole.append(False)
        elif pending and pending_size < min_tokens and pending_size + size <= room:
            pending.append((pi, units))  # a short paragraph (or run of them) merges with the next
            pending_size += size
        else:
            flush()
            pending, pending_size = [(pi, units)], size
    flush()

    chunks: list[Chunk] = []
    for entries, is_whole in zip(passages, whole, strict=True):
        group = [u for _, us in entries for u in us]
        pidx = [pi for pi, us in entries for _ in us]
        ranges = ck.verified(group, pidx, 0, len(group)) if is_whole else [(0, len(group))]
        for lo, hi in ranges:
            s, e = group[lo][0], group[hi - 1][1]
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    paragraph=pidx[lo] + 1,
                    start=s,
                    end=e,
                    text=text[s:e],
                    sentences=tuple(SentenceSpan(a, b) for a, b, _ in group[lo:hi]),
                )
            )
    return chunks
