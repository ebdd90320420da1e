"""Benchmark corpora built from the shared evaluation data.

Speed corpora: SQuAD paragraphs and SciFact abstracts, then perturbed copies of them (one word dropped, two
neighbours swapped) until the size is reached, so every passage is new to the embedding cache and the
text stays real prose. Recall corpora: a dataset's passages as they are, with its held-out questions."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embeddings.benchmark.systems import BenchPassage
from embeddings.evaluation.datasets import default_eval_root, load_dataset

SPEED_SOURCES = ("squad_v1_dev", "scifact")
RECALL_SETS = ("squad_v1_dev", "scifact")


@dataclass(frozen=True)
class BenchQuestion:
    question: str
    gold: tuple[str, ...]  # passage keys that answer it


def eval_dir(eval_root: str | Path | None) -> Path:
    """The shared eval directory (../shared/eval beside the project unless given)."""
    return Path(eval_root) if eval_root is not None else default_eval_root()


def _real_passages(eval_root: str | Path | None) -> list[BenchPassage]:
    out: list[BenchPassage] = []
    for name in SPEED_SOURCES:
        ds = load_dataset(eval_dir(eval_root) / name, "all")
        assert ds.passages is not None
        out.extend(BenchPassage(f"{name}:{p.id}", p.title, p.text) for p in ds.passages)
    return out


_SPACE = re.compile(r"\s+")


def perturb(text: str, rng: random.Random) -> str:
    words = _SPACE.split(text.strip())
    if len(words) > 4:
        del words[rng.randrange(1, len(words))]
        i = rng.randrange(1, len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def speed_corpus(size: int, eval_root: str | Path | None = None, *, seed: int = 0) -> list[BenchPassage]:
    """`size` passages: the real ones first, then perturbed copies (copy c of passage k is keyed k~c)."""
    if size < 1:
        raise ValueError("a corpus needs at least one passage")
    real = _real_passages(eval_root)
    rng = random.Random(seed)
    out = real[:size]
    copy = 0
    while len(out) < size:
        copy += 1
        for p in real:
            if len(out) >= size:
                break
            out.append(BenchPassage(f"{p.key}~{copy}", p.title, perturb(p.text, rng)))
    return out


def fresh_passages(source: list[BenchPassage], n: int, *, seed: int = 1) -> list[BenchPassage]:
    """n passages like source's first n, each a new perturbed copy (keyed k~fresh): text no index built from
    `source` holds, with the same length mix, so an ingest rate measured on them compares with source's."""
    rng = random.Random(seed)
    return [BenchPassage(f"{p.key}~fresh", p.title, perturb(p.text, rng)) for p in source[:n]]


def recall_corpus(name: str, eval_root: str | Path | None = None,
                  limit: int | None = None) -> tuple[list[BenchPassage], list[BenchQuestion]]:
    """A dataset's passages and its held-out answerable questions (never its tuning split)."""
    ds = load_dataset(eval_dir(eval_root) / name, "heldout")
    assert ds.passages is not None
    passages = [BenchPassage(p.id, p.title, p.text) for p in ds.passages]
    questions = [BenchQuestion(q.question, q.gold_passage_ids) for q in ds.questions
                 if q.answerable and q.gold_passage_ids]
    if limit is not None and len(questions) > limit:
        questions = random.Random(0).sample(questions, limit)
    return passages, questions


def articles(passages: list[BenchPassage], per_article: int = 8) -> Iterator[tuple[str, str, list[BenchPassage]]]:
    """Group consecutive passages of one title into articles of up to `per_article` paragraphs:
    (article key, title, passages). qabot ingests articles, as a user would, and chunks them itself."""
    group: list[BenchPassage] = []
    for p in passages:
        if group and (p.title != group[0].title or len(group) >= per_article):
            yield group[0].key, group[0].title, group
            group = []
        group.append(p)
    if group:
        yield group[0].key, group[0].title, group
