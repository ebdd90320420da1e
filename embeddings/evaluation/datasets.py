"""Load the evaluation sets in /work/shared/eval (SQuAD v1.1 dev, SciFact, the seed questions).

The data stays outside the project, read-only: `default_eval_root()` finds it as `<project>/../shared/eval`,
but any directory can be passed to `load_dataset`. Splits follow each set's PROVENANCE.md / README.md:

- SQuAD: "tune" = questions whose article is among the first 24 `doc_id`s in order of first appearance in
  passages.jsonl.gz; "heldout" = the other 24 articles; "all" = both.
- SciFact: the whole set is held out; "heldout" and "all" are the 300 claims, "tune" raises ValueError.
- Seed (questions.jsonl only, no passages): a product acceptance set; "heldout" and "all" are the 16
  questions, "tune" raises ValueError.
- Any other directory with passages + questions: only "all" is defined (there is no documented split to
  follow), so "tune" and "heldout" raise ValueError rather than invent one.

Passages are always the whole corpus, whatever the split: retrieval must search every passage.
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

Split = Literal["tune", "heldout", "all"]
Kind = Literal["squad", "scifact", "seed", "generic"]

SPLITS: tuple[str, ...] = ("tune", "heldout", "all")
# PROVENANCE.md of squad_v1_dev: tune on the first 24 of the 48 articles, hold out the other 24.
SQUAD_TUNE_ARTICLES = 24


@dataclass(frozen=True)
class EvalPassage:
    id: str
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    # Empty for the seed format (which uses gold_passage_contains) and for unanswerable questions.
    gold_passage_ids: tuple[str, ...]
    # SQuAD gold answer strings, or the seed's answer_contains words; may be empty (SciFact).
    answers: tuple[str, ...]
    answerable: bool = True
    gold_passage_contains: str | None = None
    # Seed: ALL answer words must be in the answer sentence; SQuAD: ANY one answer string.
    answer_contains_all: bool = False
    # Article of the gold passage(s) when they all share one; None otherwise (seed, unanswerable, multi-doc).
    doc_id: str | None = None
    # Conversational sets (questions_conv.jsonl): the questions asked just before this one, oldest first, with
    # the set's own (gold) answers to them, and the set's label for whether this one leans on them.
    history: tuple[tuple[str, str], ...] = ()
    depends_on_history: bool | None = None


@dataclass(frozen=True)
class EvalDataset:
    name: str
    # None for the seed format: there is no passages file, the caller ingests the seed articles itself.
    passages: tuple[EvalPassage, ...] | None
    questions: tuple[EvalQuestion, ...]
    split_rule: str


def project_root() -> Path:
    """The qabot checkout this module lives in (embeddings/evaluation/datasets.py -> ../../)."""
    return Path(__file__).resolve().parents[2]


def default_eval_root(root: str | Path | None = None) -> Path:
    """`<project root>/../shared/eval`: the shared, read-only evaluation data (never copied in)."""
    return Path(root if root is not None else project_root()).parent / "shared" / "eval"


# ---------------------------------------------------------------------------------------------- reading


def _find(directory: Path, stem: str) -> Path | None:
    """`stem.jsonl` or `stem.jsonl.gz`; both present is ambiguous, so refuse instead of guessing."""
    found = [p for p in (directory / f"{stem}.jsonl", directory / f"{stem}.jsonl.gz") if p.is_file()]
    if len(found) > 1:
        raise ValueError(f"{directory}: both {found[0].name} and {found[1].name} exist; keep only one")
    return found[0] if found else None


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; every error names the file and the line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
    except UnicodeDecodeError as exc:
        # The decoder reads ahead in blocks, so the line number is only a lower bound.
        raise ValueError(f"{path}: not valid UTF-8 (after line {lineno})") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        # A truncated or mislabelled .gz: say which file rather than surface a bare zlib error.
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from exc


def _str(obj: dict[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _str_list(obj: dict[str, Any], key: str, where: str, *, required: bool) -> tuple[str, ...]:
    if key not in obj and not required:
        return ()
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where}: field {key!r} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _bool(obj: dict[str, Any], key: str, where: str, default: bool | None) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: field {key!r} must be true or false, got {value!r}")
    return value


def _load_passages(path: Path) -> tuple[EvalPassage, ...]:
    passages: list[EvalPassage] = []
    seen: set[str] = set()
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        p = EvalPassage(
            id=_str(obj, "id", where),
            doc_id=_str(obj, "doc_id", where),
            title=_str(obj, "title", where, allow_empty=True),
            text=_str(obj, "text", where),
        )
        if p.id in seen:
            raise ValueError(f"{where}: duplicate passage id {p.id!r}")
        seen.add(p.id)
        passages.append(p)
    if not passages:
        raise ValueError(f"{path}: no passages")
    return tuple(passages)


def _load_questions(path: Path, passages: tuple[EvalPassage, ...]) -> tuple[EvalQuestion, ...]:
    doc_of = {p.id: p.doc_id for p in passages}
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        qid, text = _str(obj, "id", where), _str(obj, "question", where)
        gold = _str_list(obj, "gold_passage_ids", where, required=True)
        answerable = _bool(obj, "answerable", where, default=True)
        if answerable != bool(gold):
            raise ValueError(f"{where}: answerable questions need gold_passage_ids, unanswerable ones none")
        missing = [g for g in gold if g not in doc_of]
        if missing:
            raise ValueError(f"{where}: gold passage ids not in the passages file: {missing}")
        docs = {doc_of[g] for g in gold}
        history = _history(obj, where)
        depends = obj.get("depends_on_history")
        if depends is not None and not isinstance(depends, bool):
            raise ValueError(f"{where}: field 'depends_on_history' must be true or false, got {depends!r}")
        if qid in seen:
            raise ValueError(f"{where}: duplicate question id {qid!r}")
        seen.add(qid)
        questions.append(
            EvalQuestion(
                id=qid,
                question=text,
                gold_passage_ids=gold,
                answers=_str_list(obj, "answers", where, required=False),
                answerable=answerable,
                answer_contains_all=False,  # SQuAD lists alternatives: any one of them is a hit
                doc_id=next(iter(docs)) if len(docs) == 1 else None,
                history=history,
                depends_on_history=depends,
            )
        )
    if not questions:
        raise ValueError(f"{path}: no questions")
    return tuple(questions)


def _history(obj: dict[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    """`history: [{"question", "answer"}, ...]` (coqa_conv's questions_conv.jsonl), oldest first."""
    turns = obj.get("history", [])
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError(f"{where}: field 'history' must be a list of objects, got {turns!r}")
    return tuple((_str(t, "question", where), _str(t, "answer", where, allow_empty=True)) for t in turns)


def _load_seed_questions(path: Path) -> tuple[EvalQuestion, ...]:
    questions: list[EvalQuestion] = []
    seen: set[str] = set()
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        qid, text = _str(obj, "id", where), _str(obj, "question", where)
        # The seed README makes `answerable` explicit on every row, so a missing one is a data error.
        answerable = _bool(obj, "answerable", where, default=None)
        if answerable:
            contains: str | None = _str(obj, "gold_passage_contains", where)
            answers = _str_list(obj, "answer_contains", where, required=False)
        else:
            contains, answers = None, ()
        if qid in seen:
            raise ValueError(f"{where}: duplicate question id {qid!r}")
        seen.add(qid)
        questions.append(
            EvalQuestion(
                id=qid,
                question=text,
                gold_passage_ids=(),
                answers=answers,
                answerable=answerable,
                gold_passage_contains=contains,
                answer_contains_all=True,  # README: the answer sentence must contain all of them
            )
        )
    if not questions:
        raise ValueError(f"{path}: no questions")
    return tuple(questions)


# ------------------------------------------------------------------------------------------------ kinds


def _kind_in(text: str) -> set[str]:
    low = text.lower()
    return {k for k in ("squad", "scifact") if k in low}


def detect_kind(directory: str | Path) -> Kind:
    """squad / scifact from the directory name, else PROVENANCE.md's title, else its whole text; seed when
    there is a questions file and no passages file; generic when nothing (or both names) match."""
    d = Path(directory)
    if _find(d, "passages") is None:
        return "seed"
    prov = d / "PROVENANCE.md"
    text = prov.read_text(encoding="utf-8") if prov.is_file() else ""
    heading = next((ln for ln in text.splitlines() if ln.startswith("#")), "")
    # Most specific first: a copy in a temp dir loses its name, and a PROVENANCE body may cite other sets.
    for source in (d.name, heading, text):
        kinds = _kind_in(source)
        if len(kinds) == 1:
            return kinds.pop()  # type: ignore[return-value]
    return "generic"


# ------------------------------------------------------------------------------------------------ splits


def _squad_split(
    passages: tuple[EvalPassage, ...], questions: tuple[EvalQuestion, ...], split: str
) -> tuple[tuple[EvalQuestion, ...], str]:
    order = list(dict.fromkeys(p.doc_id for p in passages))  # first appearance, as PROVENANCE says
    tune_docs = set(order[:SQUAD_TUNE_ARTICLES])
    n_held = len(order) - len(tune_docs)
    if split == "all":
        return (
            questions,
            f"all questions ({len(order)} articles); retrieval over all {len(passages)} passages",
        )
    bad = [q.id for q in questions if q.doc_id is None]
    if bad:
        raise ValueError(
            f"SQuAD split needs one gold article per question; these have none/several: {bad[:5]}"
        )
    want_tune = split == "tune"
    chosen = tuple(q for q in questions if (q.doc_id in tune_docs) == want_tune)
    rule = (
        f"{split}: questions on the first {len(tune_docs)} articles in passages-file order"
        if want_tune
        else f"{split}: questions on the {n_held} articles after the first {len(tune_docs)} in passages-file order"
    )
    return chosen, rule + f"; retrieval over all {len(passages)} passages"


def load_dataset(path: str | Path, split: str = "all") -> EvalDataset:
    """Load one evaluation directory and select `split` ("tune", "heldout" or "all") of its questions."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    d = Path(path)
    if not d.exists():
        raise FileNotFoundError(f"evaluation directory not found: {d}")
    if not d.is_dir():
        raise NotADirectoryError(f"evaluation path is not a directory: {d}")
    # A conversational set keeps its rows with their history in questions_conv.jsonl: read those when present.
    q_path = _find(d, "questions_conv") or _find(d, "questions")
    if q_path is None:
        raise FileNotFoundError(f"{d}: no questions.jsonl or questions.jsonl.gz")
    kind = detect_kind(d)

    if kind == "seed":
        if split == "tune":
            raise ValueError(f"{d}: the seed questions are a product acceptance set, never for tuning")
        questions = _load_seed_questions(q_path)
        rule = f"{split}: all {len(questions)} seed questions (acceptance set; no tune split)"
        return EvalDataset(name=d.name, passages=None, questions=questions, split_rule=rule)

    p_path = _find(d, "passages")
    assert p_path is not None  # detect_kind returns "seed" exactly when there is no passages file
    if kind == "scifact" and split == "tune":
        # Checked before reading 2.7 MB: PROVENANCE says report on it, never tune on it.
        raise ValueError(f"{d}: SciFact is a held-out set (PROVENANCE.md): never use it for tuning")
    if kind == "generic" and split != "all":
        raise ValueError(f"{d}: no documented split for this dataset; only split='all' is available")

    passages = _load_passages(p_path)
    questions = _load_questions(q_path, passages)
    if kind == "squad":
        questions, rule = _squad_split(passages, questions, split)
    else:
        what = "held-out set, never tuned on" if kind == "scifact" else "no documented split"
        rule = (
            f"{split}: all {len(questions)} questions ({what}); retrieval over all {len(passages)} passages"
        )
    if any(q.history for q in questions):
        rule += f"; conversational ({q_path.name})"
    if not questions:
        raise ValueError(f"{d}: split {split!r} selects no questions")
    return EvalDataset(name=d.name, passages=passages, questions=questions, split_rule=rule)


# ------------------------------------------------------------------------------------------- abstention


def abstention_sets(ds: EvalDataset, *, fraction: float = 0.5, seed: int = 0) -> EvalDataset:
    """Keep the passages of a random `fraction` of the articles; questions whose gold passages were all
    dropped become unanswerable (gold ids emptied), the rest keep only their surviving gold ids.

    Used to calibrate abstention: "index half the articles; questions on the other half have no answer".
    Deterministic for a given `seed` (articles are drawn in first-appearance order, so file order matters,
    not set iteration order)."""
    if ds.passages is None:
        raise ValueError(f"{ds.name}: has no passages file (seed format); cannot drop articles")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    docs = list(dict.fromkeys(p.doc_id for p in ds.passages))
    if len(docs) < 2:
        raise ValueError(f"{ds.name}: needs at least two articles to drop some, has {len(docs)}")
    n_keep = min(max(round(len(docs) * fraction), 1), len(docs) - 1)  # both halves non-empty
    kept_docs = set(random.Random(seed).sample(docs, n_keep))
    passages = tuple(p for p in ds.passages if p.doc_id in kept_docs)
    kept_ids = {p.id for p in passages}

    questions = []
    for q in ds.questions:
        gold = tuple(g for g in q.gold_passage_ids if g in kept_ids)
        if gold:
            questions.append(replace(q, gold_passage_ids=gold))
        else:
            # Its article is not indexed: the right behaviour is now to say "I don't know".
            questions.append(replace(q, gold_passage_ids=(), answerable=False))
    rule = (
        f"{ds.split_rule}; abstention: kept {n_keep}/{len(docs)} articles (seed={seed}), "
        f"questions on dropped articles are unanswerable"
    )
    return EvalDataset(
        name=f"{ds.name}+abstention", passages=passages, questions=tuple(questions), split_rule=rule
    )
