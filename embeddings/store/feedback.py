"""What both vote stores share: the row, the salted user hash, and the export to evaluation questions.

Export mapping (one JSON object a line, the format of shared/eval/seed/questions.jsonl, so readers'
judgements can grow the test set; rows are grouped by question and decided by the majority of votes):
- thumbs up on an answer      -> ``answerable: true``, ``gold_passage_contains``: the first ~60 characters
  of the passage the answer was taken from, ``answer_contains: []`` (add words by hand to check the answer
  sentence too);
- thumbs up on "I couldn't find that" -> ``answerable: false`` (the reader agrees it isn't in the articles);
- thumbs down (either kind) or a tie -> nobody knows the right answer yet: left out, unless
  ``include_unlabelled`` is set, then written with ``answerable: null`` and ``needs_review: true`` (fill
  it in before `qabot eval` can load the file).
Every row also carries ``votes`` ({"up": n, "down": m}) and ``bot_answer`` for review; the eval loader
ignores unknown fields.

Users are stored only as sha256(salt + user id), with a random salt created once per index: the raw id
never reaches the disk, and hashes from two indexes cannot be joined. Each store keeps its own rows
(store/embedded/feedback.py, store/postgres/feedback.py); neither inherits from the other."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GOLD_PREFIX_CHARS = 60


@dataclass(frozen=True)
class FeedbackRow:
    answer_key: str
    user_hash: str
    scope: str
    question: str
    answer: str
    found: bool
    passage_ids: tuple[int, ...]
    cited_passage: str
    vote: int
    created_at: str


def gold_prefix(passage: str, limit: int = GOLD_PREFIX_CHARS) -> str:
    """The first ~``limit`` characters of a passage, cut back to a word boundary (an exact substring)."""
    text = passage.lstrip()
    if len(text) <= limit:
        return text.rstrip()
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space >= limit // 2 else cut).rstrip()


class Feedback(ABC):
    """A vote store. Subclasses set ``salt`` when opened and implement the row storage."""

    salt: str

    def user_hash(self, user_id: int | str) -> str:
        return hashlib.sha256(f"{self.salt}:{user_id}".encode()).hexdigest()

    @abstractmethod
    def record(self, *, answer_key: str, user_id: int | str, scope: str, question: str, answer: str, found: bool,
               passage_ids: Sequence[int], cited_passage: str, vote: int) -> bool:
        """Store a vote (+1 / -1); a second vote by the same user on the same answer replaces the first.
        Returns True when it replaced an earlier vote."""

    @abstractmethod
    def rows(self) -> list[FeedbackRow]: ...

    @abstractmethod
    def import_rows(self, salt: str, rows: Sequence[FeedbackRow]) -> None:
        """`qabot migrate`: votes keep their user hashes, so the salt comes along (later votes must match)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Feedback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def export(self, *, include_unlabelled: bool = False) -> list[dict[str, Any]]:
        """Eval-question objects (see the module docstring for the mapping), one per distinct question."""
        groups: dict[str, list[FeedbackRow]] = {}
        for r in self.rows():
            groups.setdefault(" ".join(r.question.split()).casefold(), []).append(r)
        out: list[dict[str, Any]] = []
        for key, rows in groups.items():
            up = sum(1 for r in rows if r.vote > 0)
            down = len(rows) - up
            latest = max((r for r in rows if (r.vote > 0) == (up > down)), key=lambda r: r.created_at,
                         default=rows[-1])
            obj: dict[str, Any] = {"id": "fb-" + hashlib.sha1(key.encode()).hexdigest()[:10],
                                   "question": latest.question}
            if up > down and latest.found and gold_prefix(latest.cited_passage):
                obj.update(answerable=True, gold_passage_contains=gold_prefix(latest.cited_passage),
                           answer_contains=[])
            elif up > down and not latest.found:
                obj["answerable"] = False
            elif include_unlabelled:
                obj.update(answerable=None, needs_review=True)
            else:
                continue
            obj.update(votes={"up": up, "down": down}, bot_answer=latest.answer, source="discord-feedback")
            out.append(obj)
        return out
