"""Follow-up questions: does a question lean on the conversation before it, and if so how it is read.

A follow-up ("when did she die?", "why?", "and Saudi Arabia?", "where is it based?") names too little to find
its passage alone. When `follow_up_cues` finds a back-reference, retrieval searches with the question plus the
content words of the previous question(s) and favours the passage (and document) the previous answer came
from; the answer sentence is still chosen for the question as asked. A question with no back-reference is
read alone, even mid-conversation, so changing the subject costs nothing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from embeddings.models import Turn
from embeddings.store.embedded.keyword import tokenize

# Words that point back at something said before. "that" also starts relative clauses ("works that were
# published"), but a question holding one is still usually a follow-up.
_PRONOUNS = frozenset({"he", "she", "it", "they", "him", "her", "them", "his", "hers", "its", "their", "theirs",
                       "this", "that", "these", "those", "there", "then", "one", "ones", "such", "same"})
_FOLLOW_UP = frozenset({"else", "other", "another", "also", "too", "again", "next", "later", "before", "after",
                        "afterwards", "first", "last", "then", "instead", "either"})
_OPENERS = ("and", "so", "but", "what about", "how about", "anything else", "or", "also", "then")
# Not content: asking words and fillers that never identify what a question is about.
_NON_CONTENT = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "did", "doe",
                          "does", "do", "kind", "type", "name", "mani", "much", "were", "was", "is", "are", "be",
                          "been", "has", "have", "had", "happen", "happened", "say", "said", "tell", "know",
                          "mean", "thing", "someth", "get", "got", "go", "went", "make", "made", "els",
                          "anyth", "about", "more", "ok", "okay", "thank", "thanks", "pleas", "yes", "no"})
_WORD = re.compile(r"[\w'’]+")
SHORT_WORDS = 3  # a question of this many words or fewer is elliptical ("How young?", "and Saudi Arabia?")


def content_terms(text: str) -> list[str]:
    """The question's own subject matter: keyword terms (stemmed, stop words out) minus asking words."""
    return [t for t in tokenize([text])[0] if t not in _NON_CONTENT]


def follow_up_cues(question: str) -> tuple[str, ...]:
    """Why this question seems to lean on the conversation: "pronoun:she", "short", "follow-up:else",
    "starts:and", "no-content"; empty when it reads on its own."""
    words = [w.lower().replace("’", "'") for w in _WORD.findall(question)]
    cues: list[str] = []
    pronoun = next((w for w in words if w in _PRONOUNS), None)
    if pronoun:
        cues.append(f"pronoun:{pronoun}")
    if len(words) <= SHORT_WORDS:
        cues.append("short")
    follow = next((w for w in words if w in _FOLLOW_UP and w != pronoun), None)
    if follow:
        cues.append(f"follow-up:{follow}")
    low = " ".join(words)
    opener = next((o for o in _OPENERS if low == o or low.startswith(o + " ")), None)
    if opener:
        cues.append(f"starts:{opener}")
    if not content_terms(question):
        cues.append("no-content")
    return tuple(cues)


@dataclass(frozen=True)
class Reading:
    """How retrieval reads a question in its conversation. `search_text` is what BM25 searches;
    `context` are the earlier questions whose meaning is blended into the dense query, most recent first;
    `prior_docs` / `prior_passages` are where the previous answer came from. All empty for a question read
    alone (`interpreted_as` is then "")."""

    question: str
    search_text: str
    cues: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    prior_docs: tuple[str, ...] = ()
    prior_passages: tuple[int, ...] = ()
    interpreted_as: str = ""

    @property
    def uses_history(self) -> bool:
        return bool(self.context or self.prior_docs or self.prior_passages)


def read_in_context(question: str, history: Sequence[Turn] | None, *, turns: int = 2) -> Reading:
    """The question alone when it has no back-reference or there is no history; otherwise the question plus
    the content words of the last `turns` questions (the most recent first), with the last answer's place."""
    if not history:
        return Reading(question, question)
    cues = follow_up_cues(question)
    if not cues:
        return Reading(question, question)
    recent = [t for t in reversed(history[-turns:]) if t.question.strip()]
    own = set(content_terms(question))
    extra: list[str] = []
    for turn in recent:
        extra += [w for w in _WORD.findall(turn.question) if (tokenize([w])[0] or [""])[0] not in own
                  and content_terms(w)]
    last = history[-1]
    prior_docs = last.doc_keys
    prior_passages = last.passage_ids
    # The thread's subject: the latest earlier question that reads on its own, else the latest one.
    anchor = next((t.question for t in recent if not follow_up_cues(t.question)), recent[0].question if recent else "")
    topic = anchor.strip().rstrip("?").strip()
    shown = f"{question.strip()} (about: {topic})" if topic else question.strip()
    search = " ".join([question, *extra])
    return Reading(question, search, cues, tuple(t.question for t in recent), prior_docs, prior_passages, shown)
