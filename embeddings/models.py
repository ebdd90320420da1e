"""Result types shared by every layer (frozen, typed, JSON-ready), and the scope vocabulary: which corpus a
document belongs to (the operator's shared one, or one Discord server's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# What qabot says when the articles do not hold the answer (CLI, --json consumers and Discord alike).
NOT_FOUND = "I couldn't find that in the articles I have."
# After NOT_FOUND and the closest articles (Answer.suggestions): how to ask so that it may be found.
NOT_FOUND_HINT = "Try naming the person, place or event you mean, or ask about one of these articles."
SUGGESTIONS = 3  # closest articles named when nothing was found

BASE_SCOPE = ""  # the operator's corpus, visible from every guild


def guild_scope(guild_id: int | None) -> str:
    """A server's own documents: visible only there. No guild (a DM, the CLI): the shared corpus."""
    return BASE_SCOPE if guild_id is None else f"guild:{guild_id}"


@dataclass(frozen=True)
class Citation:
    """Where a passage came from, enough to print "Title, Outlet, date, paragraph N" and a link."""

    doc_key: str
    title: str
    source: str
    outlet: str | None = None
    published: str | None = None
    paragraph: int = 1  # 1-based paragraph number of the passage's first paragraph

    @property
    def url(self) -> str | None:
        return self.source if self.source.startswith(("http://", "https://")) else None

    def short(self) -> str:
        parts = [self.title or self.source]
        if self.outlet:
            parts.append(self.outlet)
        if self.published:
            parts.append(self.published)
        parts.append(f"paragraph {self.paragraph}")
        return ", ".join(parts)


@dataclass(frozen=True)
class PassageHit:
    """One retrieved passage. Offsets are character offsets into its document's cleaned text."""

    passage_id: int
    text: str
    score: float
    citation: Citation
    start: int
    end: int
    dense_score: float = 0.0
    keyword_score: float = 0.0


@dataclass(frozen=True)
class AnswerSentence:
    """A sentence chosen as (part of) the answer; start/end are offsets into the passage text."""

    text: str
    passage_id: int
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Timings:
    encode_ms: float = 0.0
    search_ms: float = 0.0
    answer_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation, oldest first in a history: what was asked, what qabot
    answered ("" when it found nothing), and where that answer came from (the documents' keys and the
    passages' ids; the cited passage first). Follow-ups are read in the light of these."""

    question: str
    answer: str
    doc_keys: tuple[str, ...] = ()
    passage_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Answer:
    question: str
    found: bool
    sentences: tuple[AnswerSentence, ...]
    passages: tuple[PassageHit, ...]
    confidence: float
    timings: Timings = field(default_factory=Timings)
    # How the question was read when the conversation changed that ("" otherwise), e.g.
    # "when did she die? (about: what about his mom?)".
    interpreted_as: str = ""
    # Not found: the titles of the documents the closest passages come from (best first, distinct, at most
    # SUGGESTIONS), so "not found" names where to look. Empty when an answer was found.
    suggestions: tuple[str, ...] = ()

    def as_turn(self) -> Turn:
        """This exchange as the next question's history. Its place is the cited passage, or when nothing
        was found the closest one: a thread stays about what it was looking at, answer or not."""
        best = self.best_passage
        if best is None:
            return Turn(self.question, self.text)
        return Turn(self.question, self.text, (best.citation.doc_key,), (best.passage_id,))

    @property
    def text(self) -> str:
        """The answer sentence(s) as one string; empty when nothing was found."""
        return " ".join(s.text for s in self.sentences) if self.found else ""

    @property
    def best_passage(self) -> PassageHit | None:
        if self.found and self.sentences:
            for p in self.passages:
                if p.passage_id == self.sentences[0].passage_id:
                    return p
        return self.passages[0] if self.passages else None

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "found": self.found,
            "answer": self.text,
            "confidence": round(self.confidence, 4),
            "interpreted_as": self.interpreted_as,
            "suggestions": list(self.suggestions),
            "sentences": [asdict(s) for s in self.sentences] if self.found else [],
            "passages": [
                {
                    "passage_id": p.passage_id,
                    "text": p.text,
                    "score": round(p.score, 4),
                    "title": p.citation.title,
                    "source": p.citation.source,
                    "outlet": p.citation.outlet,
                    "published": p.citation.published,
                    "paragraph": p.citation.paragraph,
                    "doc": p.citation.doc_key,
                }
                for p in self.passages
            ],
            "timings_ms": asdict(self.timings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        """Back from ``to_json`` (what the Discord bot stores to show Sources later); passage offsets into
        their documents and the per-retriever scores are not in the JSON and come back as 0."""
        passages = tuple(
            PassageHit(passage_id=int(p["passage_id"]), text=p["text"], score=float(p["score"]),
                       citation=Citation(doc_key=p["doc"], title=p["title"], source=p["source"],
                                         outlet=p.get("outlet"), published=p.get("published"),
                                         paragraph=int(p.get("paragraph", 1))),
                       start=0, end=0)
            for p in data.get("passages", []))
        sentences = tuple(AnswerSentence(**s) for s in data.get("sentences", []))
        return cls(question=data["question"], found=bool(data["found"]), sentences=sentences, passages=passages,
                   confidence=float(data.get("confidence", 0.0)), interpreted_as=str(data.get("interpreted_as", "")),
                   suggestions=tuple(str(t) for t in data.get("suggestions", ())))

