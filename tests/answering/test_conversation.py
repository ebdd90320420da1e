"""Conversations: follow-up detection, the history prior, `qabot chat --json` and the conversational eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embeddings.answering.conversation import follow_up_cues, read_in_context
from embeddings.encoders.hashing import HashingEncoder
from embeddings.evaluation.datasets import load_dataset
from embeddings.evaluation.runner import build_index, evaluate
from embeddings.models import Turn
from tests.cli.test_cli_inputs import _env, run_qabot
from tests.support import ROOT, make_service, write

FERRY = """Harbour Council Approves New Ferry Route

The harbour council approved a new ferry route between Northport and the island of Carrow on Tuesday.

The route will start in May and run twice a day, the council said, because demand from commuters doubled.
"""
# Says "start" and "when" far more than the ferry article: asked alone, "when does it start?" lands here.
SCHOOL = """Riverside School Term Dates

When does the school term start? The school term will start in September, when the new building opens.

Parents asked when lessons start; the head teacher said lessons start at nine, when the bell rings.
"""


@pytest.mark.parametrize("question, cue", [
    ("when did she die?", "pronoun:she"),
    ("why?", "short"),
    ("and Saudi Arabia?", "starts:and"),
    ("where is it based?", "pronoun:it"),
    ("what else did they find?", "follow-up:else"),
    ("what happened?", "no-content"),
])
def test_follow_ups_are_detected(question: str, cue: str) -> None:
    assert cue in follow_up_cues(question)


@pytest.mark.parametrize("question", [
    "why did Egypt cut ties with Iran?",
    "who brokered the detente between Saudi Arabia and Iran?",
    "when was the harbour council ferry route approved?",
])
def test_self_contained_questions_are_read_alone(question: str) -> None:
    assert follow_up_cues(question) == ()
    reading = read_in_context(question, [Turn("who is the Shah?", "The Shah was...", ("abc",), (3,))])
    assert not reading.uses_history
    assert reading.search_text == question and reading.interpreted_as == ""


def test_a_follow_up_borrows_the_previous_question_and_place() -> None:
    history = [Turn("what did the harbour council approve?", "a ferry route", ("doc1",), (7,))]
    reading = read_in_context("when does it start?", history)
    assert reading.uses_history
    assert "harbour" in reading.search_text and "council" in reading.search_text
    assert reading.prior_docs == ("doc1",) and reading.prior_passages == (7,)
    assert reading.interpreted_as == "when does it start? (about: what did the harbour council approve)"


@pytest.fixture()
def service(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    write(docs / "ferry.txt", FERRY)
    write(docs / "school.txt", SCHOOL)
    svc = make_service(tmp_path / "home")
    svc.ingest([str(docs)], progress=False)
    yield svc
    svc.close()


def _doc_title(answer) -> str:
    best = answer.best_passage
    assert best is not None
    return best.citation.title


def test_history_carries_the_thread_to_its_document(service) -> None:
    follow_up = "when does it start?"
    alone = service.ask(follow_up)
    assert _doc_title(alone).startswith("Riverside")  # asked alone, the school article wins
    first = service.ask("what did the harbour council approve?")
    assert _doc_title(first).startswith("Harbour")
    threaded = service.ask(follow_up, history=[first.as_turn()])
    assert _doc_title(threaded).startswith("Harbour")
    assert threaded.interpreted_as.startswith("when does it start? (about:")
    assert threaded.to_json()["interpreted_as"] == threaded.interpreted_as


def test_a_self_contained_question_mid_thread_is_answered_as_alone(service) -> None:
    first = service.ask("what did the harbour council approve?")
    question = "when does the Riverside school term start in September?"
    alone, threaded = service.ask(question), service.ask(question, history=[first.as_turn()])
    assert threaded.interpreted_as == ""
    assert [p.passage_id for p in threaded.passages] == [p.passage_id for p in alone.passages]
    assert threaded.text == alone.text


def test_chat_json_keeps_the_conversation_until_new(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    write(docs / "ferry.txt", FERRY)
    write(docs / "school.txt", SCHOOL)
    assert run_qabot(home, "ingest", "-q", str(docs)).returncode == 0
    stdin = "what did the harbour council approve?\nwhen does it start?\n/new\nwhen does it start?\n"
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "chat", "--json"], input=stdin, env=_env(home),
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["question"] for r in rows] == ["what did the harbour council approve?", "when does it start?",
                                             "when does it start?"]
    assert rows[0]["interpreted_as"] == ""
    assert rows[1]["interpreted_as"].startswith("when does it start? (about: what did the harbour council")
    assert rows[2]["interpreted_as"] == ""  # /new forgot the thread
    assert {"found", "answer", "passages", "sentences", "confidence", "timings_ms"} <= set(rows[1])


def _tiny_conversations(d: Path) -> None:
    d.mkdir()
    passages = [
        {"id": "ferry#0", "doc_id": "ferry", "title": "", "text": FERRY.split("\n\n")[1]},
        {"id": "ferry#1", "doc_id": "ferry", "title": "", "text": FERRY.split("\n\n")[2]},
        {"id": "school#0", "doc_id": "school", "title": "", "text": "The school term will start in September."},
        {"id": "school#1", "doc_id": "school", "title": "", "text": "Lessons start at nine when the bell rings."},
    ]
    rows = [
        {"id": "c1", "question": "when does it start?", "gold_passage_ids": ["ferry#1"], "answers": ["May"],
         "history": [{"turn_id": 1, "question": "which route did the harbour council approve?",
                      "answer": "a new ferry route"}], "depends_on_history": True},
        {"id": "c2", "question": "when will the route start to run twice a day for commuters?",
         "gold_passage_ids": ["ferry#1"], "answers": ["May"],
         "history": [{"turn_id": 1, "question": "when does the school term start?", "answer": "September"}],
         "depends_on_history": False},
    ]
    (d / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    (d / "questions.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k in (
        "id", "question", "gold_passage_ids", "answers")}) + "\n" for r in rows))
    (d / "questions_conv.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_eval_runs_conversations_with_the_bots_own_answers(tmp_path: Path) -> None:
    _tiny_conversations(tmp_path / "conv")
    ds = load_dataset(tmp_path / "conv")
    assert ds.questions[0].history == (("which route did the harbour council approve?", "a new ferry route"),)
    assert "conversational" in ds.split_rule
    encoder = HashingEncoder(256)
    index = build_index(ds, encoder, tmp_path / "cache", progress=False)
    try:
        run = evaluate(ds, index, encoder, modes=("final",), progress=False)
    finally:
        index.close()
    rows = run.rows
    assert {"final", "history", "final:depends", "history:depends", "final:self-contained",
            "history:self-contained"} <= set(rows)
    assert rows["history:depends"]["recall@1"] == 1.0 > rows["final:depends"]["recall@1"]
    assert rows["history:self-contained"]["recall@1"] == rows["final:self-contained"]["recall@1"] == 1.0
    assert run.to_json()["recall@1"] == rows["history"]["recall@1"]
