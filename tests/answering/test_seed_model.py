"""The real model over seeds/, driven by ../shared/eval/seed/questions.jsonl: the product's acceptance set."""

from __future__ import annotations

import json

import pytest

from embeddings.encoders.base import DEFAULT_BACKEND
from tests.support import SHARED_EVAL

SEED_QUESTIONS = SHARED_EVAL / "seed" / "questions.jsonl"
pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not SEED_QUESTIONS.exists(), reason=f"{SEED_QUESTIONS} not present")]


def _questions() -> list[dict]:
    if not SEED_QUESTIONS.exists():
        return []
    return [json.loads(line) for line in SEED_QUESTIONS.read_text().splitlines() if line.strip()]


def test_egypt_iran_example_puts_sadat_shah_sentence_first(seed_service):
    answer = seed_service.ask("why did Egypt cut ties with Iran?")
    assert answer.found
    first = answer.sentences[0].text
    assert "Sadat" in first and "Shah" in first
    assert "Egypt severed diplomatic ties with Iran" in answer.passages[0].text
    cite = answer.passages[0].citation
    assert cite.title.startswith("Iran’s Supreme Leader") and cite.paragraph == 6
    s = answer.sentences[0]
    assert answer.passages[0].text[s.start:s.end] == s.text


# Known miss of the default backend, measured 2026-12-03 (not loosened): with the confidence model refitted on
# onnx-int8 vectors over the mixed tune sets, seed-7 still scores 0.41 against the 0.47 threshold (torch's
# vectors gave it 0.525 under the SQuAD-only model). Strict: if it starts passing, this mark must go.
INT8_MISSES = {"seed-7": "onnx-int8 refuses it: confidence 0.41 against the 0.47 threshold"}


def _answerable() -> list:
    out = []
    for q in _questions():
        if not q["answerable"]:
            continue
        miss = INT8_MISSES.get(q["id"]) if DEFAULT_BACKEND == "onnx-int8" else None
        out.append(pytest.param(q, id=q["id"], marks=[pytest.mark.xfail(strict=True, reason=miss)] if miss else []))
    return out


@pytest.mark.parametrize("row", _answerable())
def test_answerable_seed_question_is_answered(seed_service, row):
    answer = seed_service.ask(row["question"])
    assert answer.found, f"refused with confidence {answer.confidence:.3f}"
    text = answer.text.lower()
    missing = [w for w in row["answer_contains"] if w.lower() not in text]
    assert not missing, f"answer {answer.text!r} lacks {missing}"
    # The gold paragraph is among the passages shown with the answer (another paragraph may also answer).
    assert any(row["gold_passage_contains"] in p.text for p in answer.passages[:5])


@pytest.mark.parametrize("row", [q for q in _questions() if not q["answerable"]], ids=lambda q: q["id"])
def test_unanswerable_seed_question_is_refused(seed_service, row):
    answer = seed_service.ask(row["question"])
    assert not answer.found and answer.text == "" and answer.sentences == ()
    assert answer.to_json()["answer"] == ""
