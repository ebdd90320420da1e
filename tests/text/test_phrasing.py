"""Questions typed as in a channel: abbreviations, capitals for their countries, typos (text/phrasing.py)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings.text.phrasing import capitals, rewrite

ARTICLE_WORDS = {"egypt", "embassy", "iran", "restoration", "pictures", "ferry"}


def knows(word: str) -> bool:
    return word in ARTICLE_WORDS


def test_chat_abbreviations_are_spelt_out():
    assert rewrite("whose pics were on the sites").text == "whose pictures were on the sites"
    assert rewrite("what happened w the fuel pumps").text == "what happened with the fuel pumps"
    assert rewrite("why did egypt cut ties w/ iran?").text == "why did egypt cut ties with iran?"
    # "w" and "u" alone at either end are more likely a letter or an initial than "with" / "you"
    assert rewrite("w").text == "w" and rewrite("plan w").text == "plan w"


def test_a_capital_brings_its_country_unless_the_question_names_it():
    assert rewrite("what did beijing broker in march").text == "what did beijing (China) broker in march"
    assert rewrite("has Cairo said anything").text == "has Cairo (Egypt) said anything"
    assert rewrite("Did Cairo and Egypt agree?").changes == ()
    assert capitals()["washington"] == "United States"  # "Washington D.C." without its abbreviation
    # no generic first word of a multi-word capital ("West Island") is taken for the capital
    assert "west" not in capitals() and rewrite("who goes between iran and the west").changes == ()


def test_typos_are_fixed_only_into_words_the_articles_hold():
    r = rewrite("why did egpyt close its embasy", knows)
    assert r.text == "why did egypt close its embassy"
    assert r.changes == ("egpyt -> egypt", "embasy -> embassy")
    # a word the articles hold is never corrected, even when a dictionary does not know it (a name)
    assert rewrite("how long has haitham ruled", lambda w: w == "haitham").changes == ()
    # a correction the articles do not hold is no help: the word stays as typed
    assert rewrite("why did egpyt close", lambda w: False).text == "why did egpyt close"
    # without a vocabulary there is no spelling correction at all
    assert rewrite("why did egpyt close").text == "why did egpyt close"


def test_a_plain_question_is_untouched():
    q = "Why did Egypt cut ties with Iran?"
    assert rewrite(q, knows).text == q and rewrite(q, knows).changes == ()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200))
def test_rewriting_never_drops_a_word(text):
    """Invariant: every word of the question (letters and digits) is still there, in order, or was replaced
    by the change it reports; non-word characters are kept as they were."""
    r = rewrite(text, knows)
    if not r.changes:
        assert r.text == text
    words = re.findall(r"[A-Za-z0-9]+", text)
    rewritten = re.findall(r"[A-Za-z0-9]+", r.text)
    assert len(rewritten) >= len(words) - sum(1 for c in r.changes if "/" in c.split(" -> ")[0])
