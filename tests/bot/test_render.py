"""bot.render: Answer -> embed dicts that Discord accepts, with untrusted article text made inert."""

from __future__ import annotations

import re
from typing import Any

import discord
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.render import (
    ELLIPSIS,
    LIMITS,
    NOT_FOUND,
    confidence_label,
    escape_markdown,
    excerpt,
    render_answer,
    render_sources,
    to_embed,
    trim,
)
from embeddings.models import Answer, AnswerSentence, Citation, PassageHit
from tests.fakes.fake_discord import message_errors

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ADVERSARIAL = [
    "@everyone",
    "@here",
    "<@&123456789012345678>",
    "<@123456789012345678>",
    "<@!123456789012345678>",
    "<#123456789012345678>",
    "@123456789012345678",
    "**",
    "__",
    "*",
    "_",
    "~~",
    "||",
    "`",
    "```",
    "\\",
    "> ",
    "# ",
    "- ",
    "[link](https://evil.example)",
    "https://example.com/a_b*c",
    "\n",
    " ",
    "😀",
    "👩‍👩‍👧",
    "é",
    "\u200d",
    "\ufe0f",
    "日本語",
    "<t:0:R>",
    "</ask:1>",
]
text_st = st.lists(
    st.one_of(st.sampled_from(ADVERSARIAL), st.text(min_size=0, max_size=30)), max_size=60
).map("".join)
RAW_MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>|<#\d+>")  # what Discord parses as mentions


def citation(
    title: str = "Egypt cuts ties", source: str = "https://news.example/egypt", **kw: Any
) -> Citation:
    return Citation(
        doc_key="doc1",
        title=title,
        source=source,
        outlet=kw.get("outlet", "Example News"),
        published=kw.get("published", "2024-03-01"),
        paragraph=kw.get("paragraph", 3),
    )


def answer_for(
    passage: str,
    start: int,
    end: int,
    *,
    question: str = "Why did Egypt cut ties?",
    cit: Citation | None = None,
    found: bool = True,
    confidence: float = 0.7,
    extra: int = 0,
) -> Answer:
    hit = PassageHit(
        passage_id=7, text=passage, score=0.81, citation=cit or citation(), start=0, end=len(passage)
    )
    others = tuple(
        PassageHit(
            passage_id=100 + i, text=f"Other passage {i}.", score=0.5, citation=citation(), start=0, end=10
        )
        for i in range(extra)
    )
    sentence = AnswerSentence(text=passage[start:end], passage_id=7, start=start, end=end, score=0.9)
    return Answer(question, found, (sentence,) if found else (), (hit, *others), confidence)


def all_strings(embed: dict[str, Any]) -> list[str]:
    out = [
        embed.get("title") or "",
        embed.get("description") or "",
        (embed.get("footer") or {}).get("text", ""),
    ]
    for f in embed.get("fields") or []:
        out += [f["name"], f["value"]]
    return out


def assert_within_limits(embed: dict[str, Any]) -> None:
    assert message_errors({"embeds": [embed]}) == {}  # the fake Discord's validator as an oracle
    assert len(embed.get("title") or "") <= LIMITS.title
    assert len(embed.get("description") or "") <= LIMITS.description
    assert len(embed.get("fields") or []) <= LIMITS.fields
    for f in embed.get("fields") or []:
        assert 0 < len(f["name"]) <= LIMITS.field_name and 0 < len(f["value"]) <= LIMITS.field_value
    assert len((embed.get("footer") or {}).get("text", "")) <= LIMITS.footer
    assert sum(map(len, all_strings(embed))) <= LIMITS.total
    for s in all_strings(embed):
        assert not RAW_MENTION.search(s), s
    to_embed(embed)  # discord.py accepts it


# ---- escaping and trimming ------------------------------------------------------------------------


@PROPERTY
@given(text_st)
def test_escape_matches_discord_and_neutralises_mentions(text: str) -> None:
    out = escape_markdown(text)
    assert not RAW_MENTION.search(out)
    # Same markdown escaping as discord.py; the only other change is a zero-width space in mentions.
    assert out.replace("\u200b", "") == discord.utils.escape_markdown(text).replace("\u200b", "")


def test_escape_examples() -> None:
    assert escape_markdown("**bold** _it_ `code`") == r"\*\*bold\*\* \_it\_ \`code\`"
    assert escape_markdown("hi @everyone and @here") == "hi @\u200beveryone and @\u200bhere"
    assert escape_markdown("<@&123> <@45> <#67>") == "<@&\u200b123> <@\u200b45> <#\u200b67>"
    assert escape_markdown("see https://x.example/a_b_c") == "see https://x.example/a_b_c"
    assert escape_markdown("[click](https://evil.example)").startswith("\\[")


@PROPERTY
@given(text_st, st.integers(min_value=0, max_value=300))
def test_trim_never_over_limit_and_keeps_escapes_whole(raw: str, limit: int) -> None:
    text = escape_markdown(raw)
    out = trim(text, limit)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    elif limit > len(ELLIPSIS):
        assert out.endswith(ELLIPSIS)
        kept = out[: -len(ELLIPSIS)]
        assert text.startswith(kept)
        run = len(kept) - len(kept.rstrip("\\"))
        assert run % 2 == 0  # no half escape pair


def test_trim_word_boundaries() -> None:
    assert trim("the quick brown fox", 12) == "the quick…"
    assert trim("the quick brown fox", 19) == "the quick brown fox"
    assert trim("the quick brown fox", 16) == "the quick brown…"
    assert trim("a" * 50, 10) == "a" * 9 + "…"  # one long word: hard cut
    assert trim(r"aaaa \*\*\*\*\*", 10) in (r"aaaa \*\*…", "aaaa…")
    assert not trim(r"x\*\*\*\*\*\*", 5)[:-1].endswith("\\")


# ---- render_answer ----------------------------------------------------------------------------------

PASSAGE = (
    "Egypt has long had a tense relationship with Iran. In 1980 Egypt cut ties with Iran after the "
    "Islamic Revolution and Egypt's peace treaty with Israel. Relations have thawed slightly since."
)


def test_found_answer_layout() -> None:
    start = PASSAGE.index("In 1980")
    end = PASSAGE.index("Israel.") + len("Israel.")
    embed = render_answer(answer_for(PASSAGE, start, end))
    assert_within_limits(embed)
    assert embed["title"] == "Why did Egypt cut ties?"
    passage = embed["description"]
    # The answer sentence is shown once: bold, inside its passage (not bold above and underlined again).
    assert passage.replace("\\'", "'").count(PASSAGE[start:end]) == 1
    assert f"**{PASSAGE[start:end]}**" in passage.replace("\\'", "'") and "__" not in passage
    assert passage.startswith("Egypt has long") and passage.endswith("since.")
    source = embed["fields"][0]
    assert source["name"] == "Source"
    assert (
        source["value"]
        == "[Egypt cuts ties](https://news.example/egypt) · Example News · 2024-03-01 · paragraph 3"
    )
    assert embed["footer"]["text"] == "Medium confidence"  # a plain label, no "0.70"


def test_offsets_mark_the_answer_sentence_not_a_duplicate() -> None:
    passage = "It rained. It rained. The dam broke at noon. It rained."
    start = passage.index("It rained.", 5)  # the second occurrence
    embed = render_answer(answer_for(passage, start, start + len("It rained.")))
    assert embed["description"] == "It rained. **It rained.** The dam broke at noon. It rained."


def test_long_passage_is_windowed_around_the_sentence() -> None:
    sentence = "The answer sentence sits right here."
    passage = "lorem ipsum " * 500 + sentence + " dolor sit" * 500
    start = passage.index(sentence)
    embed = render_answer(answer_for(passage, start, start + len(sentence)))
    assert_within_limits(embed)
    body = embed["description"]
    assert body.startswith(ELLIPSIS) and body.endswith(ELLIPSIS)
    assert f"**{sentence}**" in body
    assert len(body) < 1200


def test_sentence_longer_than_budget_is_trimmed_but_marked() -> None:
    passage = "word " * 3000
    embed = render_answer(answer_for(passage, 0, len(passage)))
    assert_within_limits(embed)
    assert embed["description"].startswith("**") and embed["description"].count("**") == 2


def test_not_found() -> None:
    embed = render_answer(answer_for(PASSAGE, 0, 10, found=False, confidence=0.1))
    assert embed["description"] == NOT_FOUND
    assert "fields" not in embed and embed["title"] == "Why did Egypt cut ties?"
    assert_within_limits(embed)


def test_not_found_with_no_article_to_read_says_how_to_add_one() -> None:
    import dataclasses

    answer = dataclasses.replace(answer_for(PASSAGE, 0, 10, found=False, confidence=0.0), passages=())
    embed = render_answer(answer)
    assert embed["description"].startswith(NOT_FOUND) and "/ingest" in embed["description"]
    assert "fields" not in embed and "footer" not in embed  # no "rephrase" hint: nothing could be found
    assert_within_limits(embed)


def test_not_found_names_the_closest_articles_and_how_to_ask() -> None:
    import dataclasses

    base = answer_for(PASSAGE, 0, 10, found=False, confidence=0.1)
    answer = dataclasses.replace(base, suggestions=("Sadat and the *Shah*", "@everyone " + "x" * 400))
    embed = render_answer(answer)
    assert embed["description"] == NOT_FOUND
    (field,) = embed["fields"]
    assert field["name"] == "Closest articles"
    first, second = field["value"].split("\n")
    assert first == "• Sadat and the \\*Shah\\*" and "@\u200beveryone" in second and len(second) <= 202
    assert "naming the person, place or event" in embed["footer"]["text"]
    assert_within_limits(embed)
    # The suggestions travel with the stored answer (what the bot keeps for its buttons).
    assert Answer.from_json(answer.to_json()).suggestions == answer.suggestions
    assert Answer.from_json({k: v for k, v in base.to_json().items() if k != "suggestions"}).suggestions == ()


def test_citation_without_url_and_confidence_labels() -> None:
    cit = Citation(
        doc_key="d", title="Local *report*", source="notes.txt", outlet=None, published=None, paragraph=2
    )
    embed = render_answer(answer_for(PASSAGE, 0, 10, cit=cit, confidence=0.5, extra=2))
    assert embed["fields"][0]["value"] == r"Local \*report\* · paragraph 2"
    assert embed["footer"]["text"] == "Low confidence · 2 more passages under Sources"
    # Confidence is a probability that the answer is in the articles; answers start at 0.5.
    assert [confidence_label(c) for c in (0.9, 0.85, 0.7, 0.65, 0.5)] == [
        "High",
        "High",
        "Medium",
        "Medium",
        "Low",
    ]


def test_adversarial_article_text_is_inert() -> None:
    passage = "@everyone look <@&123456789012345678> **now** `x` ||spoiler|| [a](https://evil.example) @here"
    embed = render_answer(answer_for(passage, 0, len(passage), question="@everyone <@123456789012345678>?"))
    assert_within_limits(embed)
    assert "**now**" not in embed["description"] and r"\*\*now\*\*" in embed["description"]


def test_url_with_parentheses_keeps_the_link_intact() -> None:
    cit = citation(title="A [bracketed] title", source="https://en.example/wiki/Foo_(bar) baz")
    value = render_answer(answer_for(PASSAGE, 0, 10, cit=cit))["fields"][0]["value"]
    assert value.startswith(r"[A \[bracketed\] title](https://en.example/wiki/Foo_%28bar%29%20baz)")


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    passage = draw(
        st.one_of(
            text_st,
            text_st.map(lambda t: (t + " ") * 200),
            st.just("x" * 10_000),
            st.text(min_size=0, max_size=10_000),
        )
    )
    n = len(passage)
    start = draw(st.integers(0, n))
    end = draw(st.integers(start, n))
    title = draw(st.one_of(text_st, st.text(max_size=600)))
    url = draw(
        st.one_of(
            st.just("notes.txt"),
            st.text(max_size=80).map(lambda t: "https://x.example/" + t),
            st.just("https://x.example/" + "a" * 3000),
        )
    )
    cit = Citation(
        doc_key="d",
        title=title,
        source=url,
        outlet=draw(st.one_of(st.none(), text_st)),
        published=draw(st.one_of(st.none(), text_st)),
        paragraph=draw(st.integers(1, 10**6)),
    )
    return answer_for(
        passage,
        start,
        end,
        question=draw(st.one_of(text_st, st.text(max_size=3000))),
        cit=cit,
        found=draw(st.booleans()),
        confidence=draw(st.floats(-1, 2)),
        extra=draw(st.integers(0, 3)),
    )


@PROPERTY
@given(answers())
def test_render_answer_always_within_limits(answer: Answer) -> None:
    embed = render_answer(answer)
    assert_within_limits(embed)
    if not answer.found:
        assert embed["description"] == NOT_FOUND


@PROPERTY
@given(st.text(alphabet="abcdefghij .,", min_size=1, max_size=3000), st.data())
def test_mark_wraps_exactly_the_sentence(passage: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(passage) - 1))
    end = data.draw(st.integers(start + 1, min(len(passage), start + 300)))
    core = " ".join(passage[start:end].split())
    body = excerpt(passage, [(start, end)], 3000)
    if core and passage[start:end].strip() == core:
        assert f"__{core}__" in body


# ---- render_sources ---------------------------------------------------------------------------------


def test_sources_listing() -> None:
    answer = answer_for(PASSAGE, 0, 10, extra=3)
    embed = render_sources(answer, n=3)
    assert_within_limits(embed)
    assert [f["name"] for f in embed["fields"]] == [
        "1. Egypt cuts ties · the answer's source",  # ranks and a plain label, no raw scores
        "2. Egypt cuts ties",
        "3. Egypt cuts ties",
    ]
    assert "[Egypt cuts ties](https://news.example/egypt)" in embed["fields"][0]["value"]
    assert embed["title"].startswith("Closest passages")


def test_sources_for_not_found_says_so() -> None:
    embed = render_sources(answer_for(PASSAGE, 0, 10, found=False))
    assert embed["description"].startswith("Not an answer")
    assert_within_limits(embed)


@settings(PROPERTY, max_examples=60)
@given(st.lists(answers(), min_size=1, max_size=4), st.integers(-3, 40))
def test_render_sources_always_within_limits(parts: list[Answer], n: int) -> None:
    passages = tuple(p for a in parts for p in a.passages) * 8  # up to ~100 passages
    answer = Answer(parts[0].question, parts[0].found, parts[0].sentences, passages, 0.5)
    embed = render_sources(answer, n=n)
    assert_within_limits(embed)
    assert len(embed["fields"]) == min(max(n, 1), LIMITS.fields, len(passages))


@pytest.mark.parametrize("n", [1, 5, 25])
def test_sources_with_huge_titles_fit(n: int) -> None:
    cit = citation(title="T" * 5000 + " @everyone", source="https://x.example/" + "p" * 900)
    hits = tuple(PassageHit(i, "@here " + "w " * 5000, 1.0, cit, 0, 10) for i in range(30))
    embed = render_sources(Answer("q" * 3000, False, (), hits, 0.1), n=n)
    assert_within_limits(embed)
    assert len(embed["fields"]) == n


@PROPERTY
@given(text_st.map(lambda t: t * 20), st.data(), st.integers(0, 2500), st.integers(50, 2000))
def test_excerpt_budget_and_inertness(text: str, data: st.DataObject, budget: int, window: int) -> None:
    n = len(text)
    spans = data.draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=3))
    marks = sorted((min(a, b), max(a, b)) for a, b in spans)
    merged: list[tuple[int, int]] = []
    for s, e in marks:  # excerpt() expects sorted, non-overlapping spans (as _marks produces)
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        elif e > s:
            merged.append((s, e))
    out = excerpt(text, merged, budget, window=window)
    assert len(out) <= budget
    assert not RAW_MENTION.search(out)


def test_answer_from_two_passages_is_shown_once_without_excerpt() -> None:
    answer = answer_for(PASSAGE, 0, 10, extra=1)
    other = answer.passages[1]
    second = AnswerSentence(text=other.text, passage_id=other.passage_id, start=0, end=len(other.text), score=0.8)
    two = Answer(answer.question, True, (*answer.sentences, second), answer.passages, 0.9)
    embed = render_answer(two)
    assert embed["description"] == f"**{escape_markdown(' '.join(two.text.split()))}**"
    assert embed["footer"]["text"] == "High confidence · 1 more passage under Sources"
