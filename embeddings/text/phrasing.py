"""Questions as people type them in a channel, read the way the articles are written.

Three rewrites, each only adding or fixing words, never dropping one:
- chat abbreviations ("pics", "w/", "govt") become the words an article uses;
- a capital named for its country's government, as news writing does ("Cairo said", "Beijing brokered"),
  brings the country's name along: "beijing (china)". Capitals come from the countryinfo data package;
- a misspelt word ("embasy", "egpyt") is corrected with pyspellchecker's English frequency list, but only
  when the articles do not hold the word as typed and do hold the correction, so names the dictionary does
  not know ("Haitham", "MEK") are never "corrected" into ordinary words.

Pure text in, text out: what the articles hold is asked through `knows` (the keyword index's vocabulary)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

# Only unambiguous ones: "u", "r", "w" alone are too often letters, names or initials in a question, so
# "w" counts only written "w/" or between words as "with" ("what happened w the pumps").
CHAT_ABBREVIATIONS = {
    "pic": "picture", "pics": "pictures", "govt": "government", "gov": "government", "ppl": "people",
    "abt": "about", "bc": "because", "b/c": "because", "w/": "with", "w/o": "without", "thru": "through",
    "tho": "though", "pres": "president", "yr": "year", "yrs": "years", "mins": "minutes", "approx":
    "approximately", "dept": "department", "intl": "international", "natl": "national", "info": "information",
    "b4": "before", "rn": "right now", "atm": "at the moment", "bf": "boyfriend", "gf": "girlfriend",
    "pls": "please", "plz": "please", "msg": "message", "2day": "today",
}
_ONLY_BETWEEN_WORDS = {"w": "with", "u": "you", "ur": "your"}  # "did u see", "what happened w the pumps"
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’/]*")
SPELL_MIN_LENGTH = 4  # shorter words have too many one-edit neighbours to correct safely


@dataclass(frozen=True)
class Rewritten:
    text: str
    changes: tuple[str, ...] = ()  # "pics -> pictures", "cairo -> cairo (egypt)", "embasy -> embassy"


@lru_cache(maxsize=1)
def capitals() -> dict[str, str]:
    """Capital (lower case, also its first word for "Washington D.C.") -> country name."""
    from countryinfo import all_countries

    out: dict[str, str] = {}
    for country in all_countries():
        try:
            capital, name = country.capital(), country.name()
        except Exception:  # noqa: BLE001 - a record without a capital
            continue
        if not name:
            continue
        for cap in ([capital] if isinstance(capital, str) else list(capital or ())):  # some have several
            cap = cap.lower()
            out.setdefault(cap, name)
            bare = " ".join(w for w in cap.split() if "." not in w)  # "washington d.c." is also "washington"
            if bare and bare != cap:
                out.setdefault(bare, name)
    return out


_SPELL_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _speller() -> object:
    from spellchecker import SpellChecker

    return SpellChecker(distance=1)


def _correction(word: str, knows: Callable[[str], bool]) -> str | None:
    """A dictionary word, or one the articles hold as typed, stays; otherwise the most frequent one-edit
    neighbour the articles hold. The dictionary is asked first: it is in memory, while `knows` searches the
    index (a query per word on PostgreSQL), so only words the dictionary lacks cost a lookup."""
    with _SPELL_LOCK:  # pyspellchecker caches internally; the bot asks from several threads
        speller = _speller()
        if word in speller:  # type: ignore[operator]
            return None
    if knows(word):
        return None
    with _SPELL_LOCK:
        candidates = speller.candidates(word) or set()  # type: ignore[attr-defined]
        ranked = sorted(candidates, key=lambda w: (-speller.word_usage_frequency(w), w))  # type: ignore[attr-defined]
    return next((c for c in ranked if c != word and knows(c)), None)


def rewrite(question: str, knows: Callable[[str], bool] | None = None) -> Rewritten:
    """The question with abbreviations spelt out, countries beside their capitals and, when `knows` says
    what the articles hold, typos corrected. Unchanged (no changes) when there is nothing to do."""
    changes: list[str] = []
    caps = capitals()
    words = list(_WORD.finditer(question))
    out: list[str] = []
    pos = 0
    for i, m in enumerate(words):
        word = m.group(0)
        low = word.lower().replace("’", "'")
        new = word
        between = 0 < i < len(words) - 1
        if low in CHAT_ABBREVIATIONS:
            new = CHAT_ABBREVIATIONS[low]
        elif low in _ONLY_BETWEEN_WORDS and between:
            new = _ONLY_BETWEEN_WORDS[low]
        elif low in caps and caps[low].lower() not in question.lower():
            new = f"{word} ({caps[low]})"
        elif (knows is not None and len(low) >= SPELL_MIN_LENGTH and low.isalpha()
              and (fixed := _correction(low, knows))):
            new = fixed
        if new != word:
            changes.append(f"{word} -> {new}")
        out.append(question[pos:m.start()])
        out.append(new)
        pos = m.end()
    out.append(question[pos:])
    return Rewritten("".join(out), tuple(changes)) if changes else Rewritten(question)
