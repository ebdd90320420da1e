"""Tests for embeddings.text.extract: bytes in, clean article out."""

from __future__ import annotations

import re
import string
import textwrap

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from embeddings.errors import EmptyDocument, InputError, UnsupportedInput
from embeddings.text import extract as ex
from embeddings.text.extract import ExtractedArticle, decode_text, extract, kind_for_path
from tests.support import ROOT

SEED = ROOT / "seeds" / "000_db06b687ad4f3416.txt"


def _text(s: str, kind: str = "text") -> ExtractedArticle:
    return extract(s.encode("utf-8"), kind=kind, name="doc.txt")


def _paras(a: ExtractedArticle) -> list[str]:
    return a.text.split("\n\n")


# ---------------------------------------------------------------- the real seed


def test_seed_article_keeps_all_paragraphs_and_drops_comment_form() -> None:
    raw = SEED.read_text(encoding="utf-8")
    blocks = [b.strip() for b in raw.split("\n\n") if b.strip()]
    assert blocks[-2:] == ["Leave a Reply", "Your email address will not be published. Required fields are marked *"]
    real = blocks[1:-2]
    assert len(real) == 10

    a = extract(SEED.read_bytes(), kind="text", name=str(SEED))
    assert a.title == "Iran’s Supreme Leader Extends Welcome to the Restoration of Ties with Egypt"
    assert a.kind == "text" and a.outlet is None and a.published is None
    assert _paras(a) == real  # textually unchanged, in order, nothing extra
    assert _paras(a)[-1].startswith("Initially supporting the 1979")
    assert "Leave a Reply" not in a.text and "Required fields" not in a.text
    assert a.title not in a.text


# ---------------------------------------------------------------- HTML

ARTICLE_PARAS = [
    "Heavy rain over the weekend pushed the river above its banks in three towns, officials said on Monday.",
    "Emergency crews evacuated more than two hundred residents from low-lying streets near the old mill.",
    "The mayor said the town had prepared sandbags but the water rose faster than forecasters had expected.",
    "Forecasters expect the level to fall by Thursday if the rain eases as predicted.",
]
NAV = "".join(
    f'<li><a href="/{s.lower()}">{s}</a></li>' for s in ["Home", "World", "Politics", "Sport", "Culture", "Weather"]
)
PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Rivers Rise in the Valley as Weekend Storms Bring Record Rain to Three Towns | Daily Ledger</title>
<meta property="og:site_name" content="Daily Ledger">
<meta property="og:title" content="Rivers Rise in the Valley as Weekend Storms Bring Record Rain to Three Towns">
<meta property="article:published_time" content="2023-06-14T09:30:00Z">
</head><body>
<header><a href="/">Daily Ledger</a><nav><ul>{NAV}</ul></nav></header>
<main><article><h1>Rivers Rise in the Valley as Weekend Storms Bring Record Rain to Three Towns</h1>
{''.join(f'<p>{p}</p>' for p in ARTICLE_PARAS)}
</article>
<section id="comments"><h3>Leave a Reply</h3>
<form action="/comment"><p>Your email address will not be published. Required fields are marked *</p>
<textarea name="comment"></textarea><input type="submit" value="Post Comment"></form></section></main>
<footer><nav><ul>{NAV}</ul></nav><p>© 2023 Daily Ledger. All rights reserved.</p></footer>
</body></html>"""


def test_html_article_keeps_article_and_drops_nav_footer_comments() -> None:
    a = extract(PAGE.encode(), kind="html", name="https://ledger.example/rivers", url="https://ledger.example/rivers")
    assert a.kind == "html"
    assert _paras(a) == ARTICLE_PARAS
    for junk in ("Politics", "Weather", "Leave a Reply", "email address", "All rights reserved", "©"):
        assert junk not in a.text


def test_html_metadata_from_meta_tags() -> None:
    a = extract(PAGE.encode(), kind="html", name="page.html")
    assert a.title == "Rivers Rise in the Valley as Weekend Storms Bring Record Rain to Three Towns"
    assert a.outlet == "Daily Ledger"
    assert a.published == "2023-06-14"
    assert not a.text.startswith(a.title)  # the <h1> repeat is removed


def test_html_navigation_only_page_is_empty() -> None:
    links = "".join(f'<li><a href="/s{i}">Section {i}</a></li>' for i in range(40))
    page = f"<html><head><title>Index</title></head><body><nav><ul>{links}</ul></nav>"
    page += '<footer><a href="/about">About us</a> <a href="/privacy">Privacy</a></footer></body></html>'
    with pytest.raises(EmptyDocument, match=r"^nav\.html: no article text found .*navigation only"):
        extract(page.encode(), kind="html", name="nav.html")


def test_html_leftover_menu_lines_count_as_navigation(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever trafilatura returns, a "main text" of menu labels only is no article.
    monkeypatch.setattr(ex, "_trafilatura", lambda html, url: {"text": "Home\nWorld\nSport\nContact us"})
    with pytest.raises(EmptyDocument, match="navigation only"):
        extract(b"<html><body>x</body></html>", kind="html", name="menu.html")


def test_html_declared_charset_is_honoured() -> None:
    body = "".join(f"<p>{p}</p>" for p in ARTICLE_PARAS).replace("rain", "pluie d’été")
    page = f'<html><head><meta charset="windows-1252"><title>Été</title></head><body><article>{body}'
    page += "<p>Le café était fermé.</p></article></body></html>"
    a = extract(page.encode("cp1252"), kind="html", name="fr.html")
    assert "pluie d’été" in a.text and "café" in a.text
    # An explicit charset (e.g. from the HTTP header) overrides a wrong meta tag.
    b = extract(page.encode("cp1252"), kind="html", name="fr.html", charset="cp1252")
    assert b.text == a.text


def test_html_undecodable_without_charset_is_a_clear_error() -> None:
    page = "<html><body><p>café</p></body></html>".encode("latin-1")
    with pytest.raises(UnsupportedInput, match=r"^p\.html: not valid UTF-8: byte 0xe9 at offset 18"):
        extract(page, kind="html", name="p.html")


# ---------------------------------------------------------------- rejected input


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  "])
def test_empty_and_whitespace_only(data: bytes) -> None:
    for kind in ("text", "markdown", "html"):
        with pytest.raises(EmptyDocument, match=r"^in\.txt: "):
            extract(data, kind=kind, name="in.txt")


def test_unicode_whitespace_only_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        _text("\u00a0\u3000\n\n\u2028")


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02\x03hello",
        b"\x89PNG\r\n\x1a\n" + b"IHDR" * 10,
        b"%PDF-1.7\nsome text",
        b"PK\x03\x04zipdata",
        b"\x7fELF" + b"x" * 20,
        bytes(range(1, 9)) * 20 + b"some text",  # mostly control characters, no NUL
    ],
)
def test_binary_is_refused(data: bytes) -> None:
    with pytest.raises(UnsupportedInput, match=r"^blob\.txt: looks like a binary file") as info:
        extract(data, kind="text", name="blob.txt")
    assert "\n" not in str(info.value)


def test_invalid_utf8_names_the_offset() -> None:
    with pytest.raises(UnsupportedInput, match=r"^bad\.txt: not valid UTF-8.*offset 3") as info:
        extract(b"abc\xff\xfe", kind="text", name="bad.txt")
    assert "\n" not in str(info.value)


def test_too_big_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "MAX_INPUT_BYTES", 100)
    with pytest.raises(UnsupportedInput, match=r"^big\.txt: input is 101 bytes, over the 100-byte limit"):
        extract(b"a" * 101, kind="text", name="big.txt")
    assert extract(b"A sentence that fits. " * 4, kind="text", name="ok.txt").text  # 88 bytes is fine


def test_real_cap_is_ten_megabytes() -> None:
    assert ex.MAX_INPUT_BYTES == 10 * 1024 * 1024
    with pytest.raises(UnsupportedInput, match="10,485,760-byte limit"):
        decode_text(b"a" * (ex.MAX_INPUT_BYTES + 1), name="huge.txt")


def test_errors_are_input_errors() -> None:
    assert issubclass(UnsupportedInput, InputError) and issubclass(EmptyDocument, InputError)


def test_newline_in_name_keeps_message_one_line() -> None:
    with pytest.raises(EmptyDocument) as info:
        extract(b"", kind="text", name="a\nb.txt")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- kinds and decoding


@pytest.mark.parametrize(
    "path,kind",
    [("a.txt", "text"), ("A.TXT", "text"), ("x/y.md", "markdown"), ("n.Markdown", "markdown"),
     ("p.html", "html"), ("p.HTM", "html")],
)
def test_kind_for_path(path: str, kind: str) -> None:
    assert kind_for_path(path) == kind


@pytest.mark.parametrize("path", ["report.pdf", "letter.docx", "README", "dir.v2/notes"])
def test_unsupported_extension(path: str) -> None:
    with pytest.raises(UnsupportedInput, match=rf"^{path}: .*supported types: .txt, .md, .markdown, .html, .htm"):
        kind_for_path(path)


def test_decode_text_handles_boms() -> None:
    assert decode_text(b"\xef\xbb\xbfhello", name="x") == "hello"
    assert decode_text("héllo".encode("utf-16"), name="x") == "héllo"  # NULs are fine behind a UTF-16 BOM


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        extract(b"hello", kind="pdf", name="x")


# ---------------------------------------------------------------- text and markdown


def test_normalisation_nfc_crlf_trailing_spaces_and_blank_runs() -> None:
    a = _text("Cafe\u0301 owner speaks out   \r\n\r\n\r\n\r\nThe owner spoke.   \r\n\r\n\r\n\r\nHe left.  ")
    assert a.title == "Café owner speaks out"
    assert a.text == "The owner spoke.\n\nHe left."


def test_hard_wrapped_text_is_joined() -> None:
    a = _text(
        "Local council approves budget\n\n"
        "The council approved the budget on\nTuesday after a long debate about\nroads and schools.\n\n"
        "Opposition members said the plan\n   was not ambitious enough.\n"
    )
    assert a.title == "Local council approves budget"
    assert _paras(a) == [
        "The council approved the budget on Tuesday after a long debate about roads and schools.",
        "Opposition members said the plan was not ambitious enough.",
    ]


def test_text_without_blank_lines_has_one_paragraph_per_line() -> None:
    a = _text("Storm hits coast\nWind toppled trees in the harbour.\nPower was cut to 4,000 homes.\nSchools shut.")
    assert a.title == "Storm hits coast"
    assert _paras(a) == ["Wind toppled trees in the harbour.", "Power was cut to 4,000 homes.", "Schools shut."]


def test_first_paragraph_that_is_a_sentence_is_not_a_title() -> None:
    a = _text("The vote was held on Monday.\n\nTurnout was high.")
    assert a.title == "" and _paras(a) == ["The vote was held on Monday.", "Turnout was high."]
    b = _text("Will the dam hold?\n\nEngineers are checking it daily.")
    assert b.title == "Will the dam hold?"
    c = _text("A single line of text without a full stop")  # nothing would be left: it is content
    assert c.title == "" and c.text == "A single line of text without a full stop"


def test_markdown_heading_links_emphasis_lists_and_code() -> None:
    md = (
        "# Budget *passes* after [long](https://x.example/a) debate\n\n"
        "The **council** approved the plan, see [the report](https://x.example/r \"r\").\n\n![chart](c.png)\n\n"
        "## Key points\n\n"
        "- Roads get `more` money\n- Schools get _less_\n\n"
        "```\nrun_budget(2024)\n```\n\n"
        "Final remarks were brief.\n"
    )
    a = _text(md, kind="markdown")
    assert a.kind == "markdown"
    assert a.title == "Budget passes after long debate"
    assert _paras(a) == [
        "The council approved the plan, see the report.",
        "Key points",
        "- Roads get more money\n- Schools get less",
        "run_budget(2024)",
        "Final remarks were brief.",
    ]


def test_markdown_setext_heading_is_title() -> None:
    a = _text("Budget passes.\n==============\n\nThe council approved the plan.", kind="markdown")
    assert a.title == "Budget passes." and a.text == "The council approved the plan."


def test_markdown_link_target_may_hold_one_level_of_parentheses() -> None:
    a = _text("See [Foo](https://en.example/wiki/Foo_(bar)) and [a [b](c) here.", kind="markdown")
    assert a.text == "See Foo and [a b here."


# One long line of hostile markup, ~100 KB each. Before the patterns were made linear each took from 8 s
# (links) to minutes (a heading with a long run of spaces); now each takes milliseconds. The 2 s bound is
# generous for a slow CI machine and still far below any quadratic blow-up at this size.
HOSTILE_LINES = {
    "heading with a long run of spaces": "# a" + " " * 50_000 + "b",
    "backtick run": "x " + "`" * 100_000,
    "italic openers without closers": "x " + "*a " * 33_000,
    "underscore openers without closers": "x " + "_a " * 33_000,
    "bold openers without closers": "x " + "**a " * 25_000,
    "mixed emphasis": "x " + "*_|" * 33_000,
    "unclosed brackets": "x " + "[a " * 33_000,
    "unclosed images": "x " + "![a" * 33_000,
    "unclosed link targets": "x " + "[a](" * 25_000,
    "unclosed autolinks": "x " + "<http:" * 16_000,
}


@pytest.mark.parametrize("line", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_one_long_hostile_markdown_line_is_extracted_in_linear_time(line: str) -> None:
    import time

    started = time.perf_counter()
    try:
        extract(f"{line}\n\nThe article itself is one sentence.".encode(), kind="markdown", name="x.md")
    except EmptyDocument:
        pass
    assert time.perf_counter() - started < 2.0


# The patterns as they were before they were made linear: the new code must give the same results.
_OLD_EMPHASIS = (
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),
)
_OLD_CODE = re.compile(r"`+([^`]+?)`+")
_OLD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="*_ a.\tb#`é", max_size=30))
def test_linear_markup_patterns_match_the_old_regexes(s: str) -> None:
    for (old, repl), (opener, closer, width) in zip(_OLD_EMPHASIS, ex._EMPHASIS, strict=True):
        assert ex._emphasis(s, opener, closer, width) == old.sub(repl, s)
    assert ex._INLINE[4][0].sub(r"\1", s) == _OLD_CODE.sub(r"\1", s)
    line = s.rstrip()  # headings are matched on lines _normalise has right-stripped
    old, new = _OLD_HEADING.match(line), ex._HEADING.match(line)
    assert (old is None) == (new is None)
    if old and new:
        assert ex._heading_text(new[1]) == old[1]


# ---------------------------------------------------------------- boilerplate


def test_generic_boilerplate_is_dropped() -> None:
    body = [
        "Officials confirmed the bridge will reopen next week after repairs.",
        "The company said it would email every customer before the change, and cookies on its site were unaffected.",
        "“We use cookies from the bakery as a reward,” one volunteer said.",
        "“Leave it to us.”",
        "Posted in 1998 to an address that no longer existed, the letter spent two decades in a sorting office "
        "before a clerk noticed the stamp, traced the family and delivered it by hand last week, officials said",
    ]
    junk_top = ["Skip to content", "Share this:", "Click to share on Twitter (Opens in new window)"]
    junk_end = ["Tags: bridge, repairs", "Posted in Local News", "Related posts", "Subscribe to our newsletter",
                "We use cookies to improve your experience. Accept all cookies", "© 2023 Example Media",
                "Advertisement", "Read more", "Follow us on Twitter", "Reporting by Jane Doe; editing by John Roe"]
    a = _text("\n\n".join(["Bridge to reopen", *junk_top, *body, *junk_end]))
    assert a.title == "Bridge to reopen"
    assert _paras(a) == body


def test_comment_form_cuts_the_tail_but_not_an_early_marker() -> None:
    body = [f"Paragraph {i} of the story has enough words to be real text." for i in range(4)]
    tail = ["Leave a Comment", "Cancel reply", "Great article, I agree with everything said here!", "Post Comment"]
    assert _paras(_text("\n\n".join([*body, *tail]))) == body
    # Near the top, a marker is dropped on its own and the article after it stays.
    assert _paras(_text("\n\n".join(["Leave a comment", *body]))) == body


def test_short_subheading_in_the_middle_survives() -> None:
    paras = ["The first part of the story is long enough.", "What happens next", "The second part follows here."]
    assert _paras(_text("\n\n".join(paras))) == paras


def test_only_boilerplate_is_empty() -> None:
    with pytest.raises(EmptyDocument, match="no article text left"):
        _text("Leave a Reply\n\nYour email address will not be published. Required fields are marked *")


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=400), st.sampled_from(["text", "markdown"]))
def test_random_printable_text_is_clean_or_empty(s: str, kind: str) -> None:
    assume(not s.startswith("%PDF-"))
    try:
        a = extract(s.encode(), kind=kind, name="r.txt")
    except EmptyDocument:
        return
    assert a.text and a.text == a.text.strip()
    assert "\n\n\n" not in a.text
    assert all(p.strip() == p and p for p in _paras(a))
    assert "\n" not in a.title and a.title == a.title.strip()


_word = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=9)
_sentence = st.lists(_word, min_size=6, max_size=20).map(lambda ws: " ".join(ws).capitalize() + ".")
_junk = st.sampled_from(["Share this:", "Advertisement", "Related posts", "Read more", "Tags: news, world"])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_sentence, min_size=1, max_size=8),
    st.lists(_junk, max_size=3),
    st.integers(min_value=20, max_value=80),
    st.booleans(),
)
def test_generated_paragraphs_keep_every_word(paras: list[str], junk: list[str], width: int, tail: bool) -> None:
    wrapped = ["\n".join(textwrap.wrap(p, width)) for p in paras]
    blocks = [*wrapped, *junk] if tail else [*junk, *wrapped]
    blocks.append("Leave a Reply\n\nYour email address will not be published. Required fields are marked *")
    a = _text("\n\n".join(blocks))
    assert a.title == ""
    assert _paras(a) == paras
