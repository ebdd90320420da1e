"""Turn raw input bytes (a file's contents or a fetched page) into a clean article: title, text, metadata.

Pure functions: the only input is what the caller passes in. Every error is an InputError subclass whose
message is one line starting with the name the user gave (path or URL)."""

from __future__ import annotations

import codecs
import os
import re
import time
import unicodedata
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embeddings.errors import EmptyDocument, UnsupportedInput

MAX_INPUT_BYTES = 10 * 1024 * 1024
SUPPORTED_EXTENSIONS = (".txt", ".md", ".markdown", ".html", ".htm")
_KIND_BY_EXT = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
_KINDS = frozenset(_KIND_BY_EXT.values())


@dataclass(frozen=True)
class ExtractedArticle:
    title: str  # "" when none is found
    text: str  # paragraphs separated by exactly one blank line; never contains the title line
    outlet: str | None  # site name (HTML only)
    published: str | None  # ISO "YYYY-MM-DD" when known
    kind: str  # "text" | "markdown" | "html"


class Deadline:
    """A time budget for reading one input (uploads to the bot have one): ``check()`` raises a one-line
    UnsupportedInput naming the input once the budget is spent. Extraction and chunking check it between
    lines, paragraphs and segmenter windows, each of which takes time linear in its size."""

    def __init__(self, seconds: float, name: str) -> None:
        self.seconds = seconds
        self.label = _label(name)
        self.at = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise UnsupportedInput(f"{self.label}: gave up after {self.seconds:g} s of reading it (the time limit "
                                   "for one upload); split the file or simplify its formatting")


def _label(name: str) -> str:
    # Messages must stay one line even if a path or URL carries control characters.
    return re.sub(r"[\x00-\x1f\x7f]", "?", name) or "<input>"


def kind_for_path(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in _KIND_BY_EXT:
        return _KIND_BY_EXT[ext]
    what = f"unsupported file type '{ext}'" if ext else "file has no extension"
    raise UnsupportedInput(f"{_label(path)}: {what}; supported types: {', '.join(SUPPORTED_EXTENSIONS)}")


# ---------------------------------------------------------------- bytes -> str

# Checked before decoding: a UTF-32 BOM starts with the UTF-16 LE one, so the longer BOMs come first.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_MAGIC = (b"%PDF-", b"\x89PNG", b"PK\x03\x04", b"\x7fELF", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"\x1f\x8b",
          b"\xd0\xcf\x11\xe0", b"7z\xbc\xaf", b"Rar!", b"\x00asm")
# Control bytes that never occur in text (tab, LF, VT, FF and CR do).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13)) + b"\x7f"
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _check_bytes(data: bytes, label: str) -> None:
    cap = MAX_INPUT_BYTES  # read at call time so tests (and callers) can lower it
    if len(data) > cap:
        raise UnsupportedInput(f"{label}: input is {len(data):,} bytes, over the {cap:,}-byte limit")
    if not data.strip():
        raise EmptyDocument(f"{label}: the input is empty")
    bom = any(data.startswith(b) for b, _ in _BOMS)  # UTF-16/32 text legitimately contains NUL bytes
    controls = len(data) - len(data.translate(None, _CONTROL))
    if data.startswith(_MAGIC) or (not bom and (b"\x00" in data or controls > 0.1 * len(data))):
        raise UnsupportedInput(f"{label}: looks like a binary file, not text, Markdown or HTML")


# After a BOM, NUL bytes can be text (UTF-16/32), so binary data is recognised in the decoded text instead:
# NUL, other controls, private-use or unassigned code points (random bytes decode to many of these).
_NOT_TEXT_CATEGORIES = frozenset({"Cc", "Co", "Cn", "Cs"})


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    odd = sum(1 for c in text if c not in "\t\n\x0b\x0c\r" and unicodedata.category(c) in _NOT_TEXT_CATEGORIES)
    return odd > 0.1 * len(text)


def decode_text(data: bytes, *, name: str, charset: str | None = None) -> str:
    """Decode after the size/empty/binary checks: a BOM wins, then `charset`, then UTF-8."""
    label = _label(name)
    _check_bytes(data, label)
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(codec)
            except UnicodeDecodeError as exc:
                raise UnsupportedInput(f"{label}: invalid {codec} at byte offset {exc.start + len(bom)}") from None
            if data[len(bom):].startswith(_MAGIC) or _looks_binary(text):  # a BOM does not make it text
                raise UnsupportedInput(f"{label}: looks like a binary file, not text, Markdown or HTML")
            return text
    tried = ""
    if charset:
        try:
            if codecs.lookup(charset).name != "utf-8":
                return data.decode(charset)
        except LookupError:  # unknown name, or a bytes-to-bytes codec such as base64
            tried = f" (the declared charset {charset!r} is unknown)"
        except UnicodeDecodeError:
            tried = f" (nor as the declared charset {charset})"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedInput(
            f"{label}: not valid UTF-8{tried}: byte 0x{data[exc.start]:02x} at offset {exc.start}; "
            "save it as UTF-8"
        ) from None


# ---------------------------------------------------------------- str -> paragraphs

_NEWLINES = str.maketrans({c: "\n" for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
_STRAY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff]")  # left-over controls and inner BOMs carry no text
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")  # the closing #s are cut by _heading_text, not here
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_SKIP_LINE = re.compile(r"^\s{0,3}(?:([-*_])(?:\s*\1){2,}|\[[^\]]+\]:\s*\S+.*)\s*$")  # rules, link refs
# Every pattern here must take time linear in the line (ingest is linear in its input; one long line must
# not hold the GIL for seconds): a pattern that can fail must stop scanning where the next attempt would
# start. So bracketed text excludes "[", link targets "(" (one level of nested parentheses allowed),
# autolinks "<", and code spans start at the beginning of a backtick run. Emphasis, whose lazy ".+?" would
# scan to the end of the line from every opener that has no closer, is paired by _emphasis instead.
_TARGET = r"(?:\((?:[^()]|\([^()]*\))*\)|\[[^\[\]]*\])"  # (url "title") or [ref]
_INLINE = (  # markdown inline markup -> plain text, in this order (images before links)
    (re.compile(r"^\s*(?:>\s?)+"), ""),
    (re.compile(r"!\[[^\[\]]*\]" + _TARGET), ""),
    (re.compile(r"\[([^\[\]]*)\]" + _TARGET), r"\1"),
    (re.compile(r"<((?:https?|mailto):[^<>\s]+)>"), r"\1"),
    (re.compile(r"(?<!`)`+([^`]+?)`+"), r"\1"),
)
# Emphasis as (opener, closer, delimiter width), zero-width so overlapping candidates are all found. Each
# pair does what re.sub(OPEN (?=\S)(.+?)(?<=\S) CLOSE, content) did, in this order: **bold**/__bold__
# (closed by the same delimiter), *italic* (not inside a word or a run of *), _italic_ (not inside a word).
_EMPHASIS = (
    (re.compile(r"(?=(\*\*|__)\S)"), re.compile(r"(?<=\S)(?=(\*\*|__))"), 2),
    (re.compile(r"(?<![\w*])(?=\*\S)"), re.compile(r"(?<=\S)(?=\*(?![\w*]))"), 1),
    (re.compile(r"(?<!\w)(?=_\S)"), re.compile(r"(?<=\S)(?=_(?!\w))"), 1),
)
_STRIKE = re.compile(r"~~(.+?)~~")  # linear: an opener without a closer has no later "~~" to retry from


def _emphasis(line: str, opener: re.Pattern[str], closer: re.Pattern[str], width: int) -> str:
    """Strip one kind of emphasis in O(n log n): leftmost opener first, paired with the first closer of the
    same delimiter at least one character after it, exactly like a lazy regex but without rescanning the
    line from every opener that has no closer (when one has none, no later opener of its kind has one)."""
    closes: dict[str, list[int]] = {}
    for m in closer.finditer(line):
        closes.setdefault(line[m.start():m.start() + width], []).append(m.start())
    if not closes:
        return line
    out: list[str] = []
    pos = 0
    for m in opener.finditer(line):
        p = m.start()
        if p < pos:
            continue
        candidates = closes.get(line[p:p + width])
        if not candidates:
            continue
        k = bisect_left(candidates, p + width + 1)
        if k == len(candidates):
            del closes[line[p:p + width]]  # no closer left for this delimiter
            continue
        c = candidates[k]
        out += (line[pos:p], line[p + width:c])
        pos = c + width
    out.append(line[pos:])
    return "".join(out)


def _heading_text(content: str) -> str:
    """A heading's text without an optional closing sequence of #s (which must follow whitespace)."""
    content = content.rstrip()
    bare = content.rstrip("#")
    return bare.rstrip() if bare != content and bare[-1:].isspace() else content


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in _STRAY.sub("", text.translate(_NEWLINES)).split("\n"))


def _join(lines: list[str]) -> str:
    """Hard-wrapped lines become one line; list items stay one per line."""
    out: list[str] = []
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        if out and not _BULLET.match(line):
            out[-1] += " " + line
        else:
            out.append(line)
    return "\n".join(out)


def _paragraphs(text: str, *, markdown: bool, deadline: Deadline | None = None) -> tuple[list[str], set[int]]:
    """Paragraphs, plus the indexes of those that were markdown headings."""
    lines = text.split("\n")
    one_per_line = all(ln.strip() for ln in lines)  # no blank line at all: each line is a paragraph
    paras: list[str] = []
    headings: set[int] = set()
    block: list[str] = []
    code: list[str] | None = None  # lines of an open code fence

    def flush(joined: str | None = None, heading: bool = False) -> None:
        para = _join(block) if joined is None else joined
        block.clear()
        if para.strip():
            if heading:
                headings.add(len(paras))
            paras.append(para.strip())

    for line in lines:
        if deadline is not None:
            deadline.check()
        if markdown and _FENCE.match(line):
            if code is None:
                flush()
                code = []
            else:  # code is kept as text, line by line
                flush("\n".join(ln for ln in code if ln.strip()))
                code = None
            continue
        if code is not None:
            code.append(line)
            continue
        if markdown:
            if m := _HEADING.match(line):
                flush()
                flush(_inline(_heading_text(m[1])), heading=True)
                continue
            if _SETEXT.match(line) and len(block) == 1:
                flush(_inline(block[0]), heading=True)
                continue
            if _SKIP_LINE.match(line):
                flush()
                continue
            line = _inline(line)
        block.append(line)
        if one_per_line or not line.strip():
            flush()
    if code is not None:  # unclosed fence: keep what it held
        flush("\n".join(ln for ln in code if ln.strip()))
    flush()
    return paras, headings


def _inline(line: str) -> str:
    for pattern, repl in _INLINE:
        line = pattern.sub(repl, line)
    for opener, closer, width in _EMPHASIS:
        line = _emphasis(line, opener, closer, width)
    return _STRIKE.sub(r"\1", line)


# ---------------------------------------------------------------- boilerplate
# Rule: page furniture is removed generically, never per site.
#  1. A paragraph of <= 30 words that starts like a comment form, share/subscribe/cookie prompt, copyright
#     line or tag/category line (_FURNITURE) is dropped; long paragraphs are never dropped, so real
#     sentences that merely mention email or cookies survive.
#  2. Comment forms sit at the end: the first comment-form marker (_COMMENT_FORM) with at least a third of
#     the text before it cuts it and everything after it (so commenters' text goes too).
#  3. Short paragraphs (<= 8 words, one line, no sentence-final punctuation) are trimmed only at the edges,
#     before the first and after the last real paragraph ("Posted in ...", bylines, menu leftovers);
#     mid-article subheadings stay. If HTML has no real paragraph at all it is navigation only.
_COMMENT_FORM = re.compile(
    r"(leave an? (reply|comment)|post (a )?comment|cancel reply|your email address will not be published"
    r"|comments are closed|add a comment|join the (discussion|conversation)|\d+ (comments?|responses?)\W*$)",
    re.I,
)
_FURNITURE = re.compile(
    r"(share this\b|like this:|click to (share|email|print)\b|share on (facebook|twitter|x|linkedin|whatsapp)"
    r"|(subscribe|sign up) (to|for) (our|the|free|email|updates|alerts|newsletter)|subscribe( now| today)?\W*$"
    r"|we use cookies (to|and|on|so|for)\b|this (web)?site uses cookies|(accept|allow|reject|manage) (all )?"
    r"cookies|.*\ball rights reserved\b|©|\(c\) \d{4}|copyright\s*(©|\(c\)|\d{4})|related (posts|articles|"
    r"stories|content)\b|read more\W*$|read more\s*[:»›>…]|advertisement\W*$|continue reading\b"
    r"|follow us on\b|tags?:|posted in\b|filed under\b|categor(y|ies):|skip to (main )?content|loading\W*$)",
    re.I,
)
_CLOSERS = "\"'”’)]»"


def _short(p: str) -> bool:
    return len(p.split()) <= 30


def _is_sentence_like(p: str) -> bool:
    return "\n" in p or len(p.split()) > 8 or p.rstrip(_CLOSERS).endswith((".", "!", "?", "…"))


def _clean(paras: list[str]) -> list[str]:
    total, seen = sum(map(len, paras)), 0
    for i, p in enumerate(paras):
        if _short(p) and _COMMENT_FORM.match(p) and seen >= total / 3:
            paras = paras[:i]
            break
        seen += len(p)
    return [p for p in paras if not (_short(p) and (_COMMENT_FORM.match(p) or _FURNITURE.match(p)))]


def _is_headline(p: str) -> bool:
    return ("\n" not in p and len(p) <= 200 and len(p.split()) <= 25 and not _BULLET.match(p)
            and not p.rstrip(_CLOSERS).endswith((".", ":", ";", ",")))


# ---------------------------------------------------------------- extract


def extract(
    data: bytes, *, kind: str, name: str, charset: str | None = None, url: str | None = None,
    deadline: Deadline | None = None,
) -> ExtractedArticle:
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(_KINDS)}")
    label = _label(name)
    outlet = published = None
    title = ""
    if kind == "html":
        _check_bytes(data, label)
        if charset is None and (m := _META_CHARSET.search(data[:4096])):
            charset = m[1].decode("ascii")
        doc = _trafilatura(decode_text(data, name=name, charset=charset), url)
        paras = _clean([p for p in _normalise(doc.get("text") or "").split("\n") if p.strip()])
        title = " ".join(_normalise(doc.get("title") or "").split())
        outlet = " ".join((doc.get("sitename") or "").split()) or None
        date = doc.get("date") or ""
        published = date[:10] if re.match(r"\d{4}-\d\d-\d\d", date) else None
        for i, p in enumerate(paras[:3]):  # trafilatura repeats the <h1> as the first line(s)
            if title and " ".join(p.split()).casefold() == title.casefold():
                del paras[i]
                break
    else:
        paras, headings = _paragraphs(_normalise(decode_text(data, name=name)), markdown=kind == "markdown",
                                      deadline=deadline)
        heading_texts = {paras[i] for i in headings}
        paras = _clean(paras)
        first_is_heading = bool(paras) and paras[0] in heading_texts
        # A lone paragraph is content, not a headline: only take a title if text remains after it.
        if len(paras) >= 2 and (first_is_heading or _is_headline(paras[0])):
            title = paras.pop(0)
    real = [i for i, p in enumerate(paras) if _is_sentence_like(p)]
    if real:
        paras = paras[real[0]: real[-1] + 1]
    elif kind == "html":
        paras = []
    if not paras:
        why = "no article text found (the page looks like navigation only)" if kind == "html" else (
            "no article text left after removing boilerplate")
        raise EmptyDocument(f"{label}: {why}")
    return ExtractedArticle(title=title, text="\n\n".join(paras), outlet=outlet, published=published, kind=kind)


def _trafilatura(html: str, url: str | None) -> dict[str, Any]:
    import trafilatura  # imported lazily: it is slow to import and only HTML needs it

    # favor_precision: on a menu-only page trafilatura then finds nothing instead of returning the menu.
    doc = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=False, favor_precision=True
    )
    if doc is None:
        return {}
    return doc if isinstance(doc, dict) else doc.as_dict()


def article_from_paragraphs(title: str, paragraphs: Sequence[str], *, name: str, outlet: str | None = None,
                            published: str | None = None, deadline: Deadline | None = None) -> ExtractedArticle:
    """A document given as its title and its paragraphs, e.g. a Discord thread (one paragraph per message).
    Each paragraph is read as Markdown (Discord's formatting: inline markup stripped, code kept as text, a
    paragraph with blank lines or line breaks split); nothing is guessed: no title is taken from the text and
    no paragraph is dropped as boilerplate (chat messages are short, and "thanks!" is not page furniture)."""
    label = _label(name)
    size = sum(len(p.encode("utf-8", "surrogatepass")) for p in paragraphs)
    if size > MAX_INPUT_BYTES:
        raise UnsupportedInput(f"{label}: {size:,} bytes of text, over the {MAX_INPUT_BYTES:,}-byte limit")
    paras: list[str] = []
    for p in paragraphs:
        if deadline is not None:
            deadline.check()
        paras += _paragraphs(_normalise(p), markdown=True, deadline=deadline)[0]
    if not paras:
        raise EmptyDocument(f"{label}: no text to index")
    return ExtractedArticle(title=" ".join(_normalise(title).split()), text="\n\n".join(paras),
                            outlet=outlet, published=published, kind="markdown")
