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
Every row also carries ``votes`` ({"up": n, "down": m}) and ``bot_answer`` for review, and ``corrections``:
what readers wrote in the 👎 form ({"wrong": ..., "right": ...}, either may be ""; newest first; [] when
none). The eval loader ignores unknown fields. A correction's "right answer" is a reader's free text, not a
passage, so it does not label the row by itself: a 👎 question with corrections is still written only with
``include_unlabelled``, for review (turn its ``right`` into ``answer_contains`` / ``gold_passage_contains``).

A correction is kept with its vote (one column, ``correction``: JSON text, '' for none). A later 👎 without
one keeps it, a 👎 with one replaces it, and a 👍 clears it (the reader now says the answer was right).

Users are stored only as sha256(salt + user id), with a random salt created once per index: the raw id
never reaches the disk, and hashes from two indexes cannot be joined. Each store keeps its own rows
(store/embedded/feedback.py, store/postgres/feedback.py); neither inherits from the other."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GOLD_PREFIX_CHARS = 60


CORRECTION_CHARS = 1000  # each of "what was wrong" and "the right answer" (the form's own limit too)


@dataclass(frozen=True)
class Correction:
    """What a reader wrote after a 👎: what was wrong, and what the right answer is (both optional)."""

    wrong: str = ""
    right: str = ""

    def __bool__(self) -> bool:
        return bool(self.wrong.strip() or self.right.strip())

    def to_column(self) -> str:
        """The stored form: '' for none, else a JSON object (trimmed, at most CORRECTION_CHARS each)."""
        wrong, right = self.wrong.strip()[:CORRECTION_CHARS], self.right.strip()[:CORRECTION_CHARS]
        return json.dumps({"wrong": wrong, "right": right}, ensure_ascii=False) if wrong or right else ""

    @classmethod
    def from_column(cls, text: str | None) -> Correction:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(str(data.get("wrong", "")), str(data.get("right", "")))


def upsert_correction(old: str, vote: int, new: Correction | None) -> str:
    """The correction column after a vote (the rule in the module docstring), from its current value."""
    if vote > 0:
        return ""
    return new.to_column() if new is not None else old


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
    correction: Correction = Correction()


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
               passage_ids: Sequence[int], cited_passage: str, vote: int,
               correction: Correction | None = None) -> bool:
        """Store a vote (+1 / -1); a second vote by the same user on the same answer replaces the first.
        ``correction`` (a 👎's form) is kept with the vote as ``upsert_correction`` says. Returns True when it
        replaced an earlier vote."""

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
            corrections = [{"wrong": r.correction.wrong, "right": r.correction.right}
                           for r in sorted(rows, key=lambda r: r.created_at, reverse=True) if r.correction]
            obj.update(votes={"up": up, "down": down}, bot_answer=latest.answer, corrections=corrections,
                       source="discord-feedback")
            out.append(obj)
        return out
