"""Metrics against ranx, dataset loading against the shared eval files, answer normalisation."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embeddings.evaluation import (
    RESULT_KEYS,
    EvalQuestion,
    MetricAccumulator,
    abstention_sets,
    answer_hit,
    default_eval_root,
    detect_kind,
    fraction_recall_at_k,
    load_dataset,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
)
from tests.support import ROOT

EVAL_ROOT = ROOT.parent / "shared" / "eval"
needs_eval = pytest.mark.skipif(
    not (EVAL_ROOT / "squad_v1_dev").is_dir(), reason=f"shared eval data absent at {EVAL_ROOT}"
)



# ----------------------------------------------------------------------------------------- vs ranx


def _random_queries(n: int, seed: int) -> list[tuple[list[str], set[str]]]:
    """Rankings of 1-20 distinct ids out of 30, gold of 1-5 ids (often partly outside the ranking)."""
    rng = random.Random(seed)
    pool = [f"d{i}" for i in range(30)]
    out = []
    for _ in range(n):
        ranked = rng.sample(pool, rng.randint(1, 20))
        gold = set(rng.sample(pool, rng.choice([1, 1, 1, 2, 3, 5])))
        out.append((ranked, gold))
    return out


def test_metrics_match_ranx_per_query() -> None:
    from ranx import Qrels, Run, evaluate

    queries = _random_queries(400, seed=7)
    assert sum(len(g) > 1 for _, g in queries) > 100  # multi-gold queries are really exercised
    qrels = Qrels({f"q{i}": {d: 1 for d in g} for i, (_, g) in enumerate(queries)})
    run = Run({f"q{i}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, (r, _) in enumerate(queries)})
    ours = {
        "hit_rate@1": lambda r, g: recall_at_k(r, g, 1),
        "hit_rate@5": lambda r, g: recall_at_k(r, g, 5),
        "hit_rate@10": lambda r, g: recall_at_k(r, g, 10),
        "recall@10": lambda r, g: fraction_recall_at_k(r, g, 10),
        "mrr@10": lambda r, g: mrr_at_k(r, g, 10),
        "ndcg@10": lambda r, g: ndcg_at_k(r, g, 10),
        "ndcg@3": lambda r, g: ndcg_at_k(r, g, 3),
    }
    theirs = evaluate(qrels, run, list(ours), return_mean=False, make_comparable=True)
    order = list(qrels.keys())  # ranx returns per-query scores in its qrels key order
    for name, fn in ours.items():
        expected = dict(zip(order, theirs[name], strict=True))
        for i, (ranked, gold) in enumerate(queries):
            assert fn(ranked, gold) == pytest.approx(expected[f"q{i}"], abs=1e-6), (name, ranked, gold)


def test_accumulator_means_match_ranx() -> None:
    from ranx import Qrels, Run, evaluate

    queries = _random_queries(200, seed=11)
    acc = MetricAccumulator()
    for i, (ranked, gold) in enumerate(queries):
        q = EvalQuestion(id=f"q{i}", question="?", gold_passage_ids=tuple(sorted(gold)), answers=())
        acc.add(q, ranked, latency_ms=1.0)
    qrels = Qrels({f"q{i}": {d: 1 for d in g} for i, (_, g) in enumerate(queries)})
    run = Run({f"q{i}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, (r, _) in enumerate(queries)})
    ref = evaluate(qrels, run, ["hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10", "ndcg@10"])
    res = acc.result()
    for ours, theirs in [
        ("recall@1", "hit_rate@1"),
        ("recall@5", "hit_rate@5"),
        ("recall@10", "hit_rate@10"),
        ("mrr@10", "mrr@10"),
        ("ndcg@10", "ndcg@10"),
    ]:
        assert res[ours] == pytest.approx(round(float(ref[theirs]), 4), abs=1e-6), ours


@settings(max_examples=200, deadline=None)
@given(
    ranked=st.lists(st.sampled_from([f"d{i}" for i in range(12)]), max_size=15),
    gold=st.sets(st.sampled_from([f"d{i}" for i in range(12)]), min_size=1, max_size=4),
    k=st.integers(1, 12),
)
def test_metric_properties(ranked: list[str], gold: set[str], k: int) -> None:
    r, m, n = recall_at_k(ranked, gold, k), mrr_at_k(ranked, gold, k), ndcg_at_k(ranked, gold, k)
    assert 0.0 <= m <= r <= 1.0 and 0.0 <= n <= 1.0 + 1e-12
    assert (r == 0.0) == (m == 0.0) == (n == 0.0)
    # A repeated id counts once, at its first rank: same scores as the de-duplicated ranking.
    distinct = list(dict.fromkeys(ranked))
    assert (r, m, n) == (
        recall_at_k(distinct, gold, k),
        mrr_at_k(distinct, gold, k),
        ndcg_at_k(distinct, gold, k),
    )


def test_metric_edge_cases() -> None:
    assert recall_at_k(["a", "b"], {"b"}, 1) == 0.0 and recall_at_k(["a", "b"], {"b"}, 2) == 1.0
    assert mrr_at_k(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert ndcg_at_k(["g1", "g2"], {"g1", "g2", "g3"}) == pytest.approx(
        (1 + 1 / np.log2(3)) / (1 + 1 / np.log2(3) + 0.5)
    )
    assert ndcg_at_k(["b", "a", "a"], {"a"}) == pytest.approx(1 / np.log2(3))
    assert recall_at_k([], {"a"}, 5) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(["a"], set(), 1)
    with pytest.raises(ValueError):
        mrr_at_k(["a"], {"a"}, 0)


def test_percentile_matches_numpy() -> None:
    rng = random.Random(3)
    for n in (1, 2, 7, 100):
        xs = [rng.uniform(0, 500) for _ in range(n)]
        for p in (0, 5, 50, 95, 99.5, 100):
            assert percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)), abs=1e-9)
    with pytest.raises(ValueError):
        percentile([], 50)


# ------------------------------------------------------------------------------------- accumulator


def _q(qid: str, **kw: object) -> EvalQuestion:
    base: dict[str, object] = {"id": qid, "question": "?", "gold_passage_ids": (), "answers": ()}
    return EvalQuestion(**{**base, **kw})  # type: ignore[arg-type]


def test_accumulator_keys_answers_abstention_latency() -> None:
    acc = MetricAccumulator()
    acc.add(
        _q("a", gold_passage_ids=("p1",), answers=("Denver Broncos",)),
        ["p2", "p1"],
        answer_sentence="The Denver Broncos won.",
        abstained=False,
        latency_ms=10,
    )
    acc.add(
        _q("b", gold_passage_ids=("p3",), answers=("Carolina",)),
        ["p3"],
        answer_sentence=None,
        abstained=True,
        latency_ms=20,
    )  # wrongly abstained: answer miss
    acc.add(_q("c", answerable=False), ["p9"], answer_sentence=None, abstained=True, latency_ms=30)
    acc.add(_q("d", answerable=False), ["p9"], answer_sentence="Something.", abstained=False, latency_ms=40)
    res = acc.result()
    assert tuple(res) == RESULT_KEYS
    assert res["recall@1"] == 0.5 and res["recall@5"] == 1.0 and res["mrr@10"] == 0.75
    assert res["answer_hit"] == 0.5
    assert res["abstention_accuracy"] == 0.5  # a right, b wrong, c right, d wrong
    assert res["n_questions"] == 4
    assert res["latency_ms_p50"] == 25.0 and res["latency_ms_p95"] == 38.5
    with pytest.raises(ValueError, match="twice"):
        acc.add(_q("a", gold_passage_ids=("p1",)), ["p1"], latency_ms=1)


def test_accumulator_none_cases_and_rounding() -> None:
    assert MetricAccumulator().result()["n_questions"] == 0
    assert MetricAccumulator().result()["recall@1"] is None
    acc = MetricAccumulator()
    for i, ranked in enumerate([["g"], ["x", "g"], ["x", "y", "g"]]):
        acc.add(_q(f"q{i}", gold_passage_ids=("g",), answers=("x",)), ranked, abstained=False, latency_ms=1)
    res = acc.result()
    assert res["mrr@10"] == round((1 + 1 / 2 + 1 / 3) / 3, 4) == 0.6111
    assert res["answer_hit"] is None  # no answer sentence reported: a retrieval-only run
    assert res["abstention_accuracy"] is None  # no unanswerable question in the set


def test_accumulator_seed_format_uses_texts() -> None:
    q = _q(
        "s",
        gold_passage_contains="Oman has long served",
        answers=("Oman", "intermediary"),
        answer_contains_all=True,
    )
    acc = MetricAccumulator()
    texts = [
        "Nothing here.",
        "Indeed  OMAN has long\nserved as an intermediary.",
        "Oman has long served again",
    ]
    acc.add(
        q, ["c1", "c2", "c3"], ranked_texts=texts, answer_sentence="Oman, the intermediary.", latency_ms=5
    )
    res = acc.result()
    assert (res["recall@1"], res["recall@5"], res["mrr@10"]) == (0.0, 1.0, 0.5)
    assert res["ndcg@10"] == round(1 / np.log2(3), 4)  # second matching chunk does not count again
    assert res["answer_hit"] == 1.0
    with pytest.raises(ValueError, match="ranked_texts"):
        MetricAccumulator().add(q, ["c1"], latency_ms=1)


# ----------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("sentence", "answers", "require_all", "expected"),
    [
        ("The game was won by the Denver Broncos.", ["Denver Broncos"], False, True),
        ("It was played at Levi’s Stadium in 2016.", ["Levi's Stadium"], False, True),  # curly apostrophe
        ("Egypt cut ties after Sadat's welcome to the Shah.", ["Sadat", "Shah"], True, True),
        ("Egypt cut ties after Sadat's decision.", ["Sadat", "Shah"], True, False),
        ("Egypt cut ties after Sadat's decision.", ["Sadat", "Shah"], False, True),
        ("A woman mediated.", ["Oman"], False, False),  # whole words only
        ("Oman mediated.", ["an Oman"], False, True),  # articles dropped from the answer too
        ("Score: 24–10, final.", ["24-10"], False, True),  # en dash vs hyphen both become spaces
        ("Tesla was the fourth of five children.", ["four"], False, False),
        ("nothing", ["The"], False, False),  # answer normalises to nothing: cannot hit
    ],
)
def test_answer_hit(sentence: str, answers: list[str], require_all: bool, expected: bool) -> None:
    assert answer_hit(sentence, answers, require_all=require_all) is expected


def test_normalize_answer() -> None:
    assert normalize_answer("  The  Quick, brown FOX!  ") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # "the" only as a whole word
    with pytest.raises(ValueError):
        answer_hit("x", [], require_all=False)


# ------------------------------------------------------------------------------------ real datasets


@pytest.fixture(scope="module")
def squad() -> dict[str, object]:
    d = EVAL_ROOT / "squad_v1_dev"
    return {s: load_dataset(d, s) for s in ("all", "tune", "heldout")}


@needs_eval
def test_default_eval_root_is_shared_dir() -> None:
    assert default_eval_root() == EVAL_ROOT


@needs_eval
def test_squad_counts_and_split(squad: dict) -> None:
    full, tune, held = squad["all"], squad["tune"], squad["heldout"]
    assert len(full.passages) == 2067 and len(full.questions) == 10570
    assert tune.passages == full.passages and held.passages == full.passages  # retrieval over everything
    assert all(q.answerable and q.answers and len(q.gold_passage_ids) == 1 for q in full.questions)
    tune_ids, held_ids = {q.id for q in tune.questions}, {q.id for q in held.questions}
    assert not tune_ids & held_ids and tune_ids | held_ids == {q.id for q in full.questions}
    order = list(dict.fromkeys(p.doc_id for p in full.passages))
    assert len(order) == 48
    assert {q.doc_id for q in tune.questions} == set(order[:24])
    assert {q.doc_id for q in held.questions} == set(order[24:])
    # doc_id really is the gold passage's article
    by_id = {p.id: p for p in full.passages}
    assert all(by_id[q.gold_passage_ids[0]].doc_id == q.doc_id for q in full.questions)


@needs_eval
def test_squad_answers_found_in_gold_passages(squad: dict) -> None:
    full = squad["all"]
    by_id = {p.id: p.text for p in full.passages}
    misses = {
        q.id
        for q in full.questions
        if not answer_hit(by_id[q.gold_passage_ids[0]], q.answers, require_all=q.answer_contains_all)
    }
    # The one miss is a sub-word span: "four" taken from "the fourth of five children".
    assert misses == {"56dfa1d34a1a83140091ebd4"}


@needs_eval
def test_scifact_is_heldout_only() -> None:
    d = EVAL_ROOT / "scifact"
    assert detect_kind(d) == "scifact"
    with pytest.raises(ValueError, match="never"):
        load_dataset(d, "tune")
    ds = load_dataset(d, "heldout")
    assert len(ds.passages) == 5183 and len(ds.questions) == 300
    assert any(len(q.gold_passage_ids) > 1 for q in ds.questions)
    assert {q.id for q in load_dataset(d, "all").questions} == {q.id for q in ds.questions}


@needs_eval
def test_seed_questions() -> None:
    d = EVAL_ROOT / "seed"
    ds = load_dataset(d)
    assert ds.passages is None and len(ds.questions) == 16
    assert sum(not q.answerable for q in ds.questions) == 3
    first = ds.questions[0]
    assert first.id == "seed-1" and first.gold_passage_contains == "Egypt severed diplomatic ties with Iran"
    assert first.answers == ("Sadat", "Shah") and first.answer_contains_all
    assert all(q.gold_passage_contains and q.answers for q in ds.questions if q.answerable)
    assert load_dataset(d, "heldout").questions == ds.questions
    with pytest.raises(ValueError, match="tuning"):
        load_dataset(d, "tune")


@needs_eval
def test_abstention_sets_on_squad(squad: dict) -> None:
    full = squad["all"]
    a, b = abstention_sets(full, seed=1), abstention_sets(full, seed=1)
    assert a == b
    assert abstention_sets(full, seed=2).passages != a.passages
    kept = {p.doc_id for p in a.passages}
    assert len(kept) == 24
    assert {p.id for p in a.passages} == {p.id for p in full.passages if p.doc_id in kept}
    for old, new in zip(full.questions, a.questions, strict=True):
        assert new.answerable == (old.doc_id in kept)
        assert new.gold_passage_ids == (old.gold_passage_ids if new.answerable else ())


# -------------------------------------------------------------------------------------- tiny files


def _write(path: Path, rows: list[object], *, raw_lines: dict[int, str] | None = None) -> None:
    lines = [json.dumps(r) for r in rows]
    for i, text in (raw_lines or {}).items():
        lines.insert(i - 1, text)
    data = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(data)
    else:
        path.write_text(data, encoding="utf-8")


def _tiny(directory: Path, n_docs: int, *, gz: bool) -> list[str]:
    """n_docs articles with 2 passages each, named so that sorted order differs from file order."""
    directory.mkdir()
    docs = [f"art{(i * 7) % n_docs:02d}" for i in range(n_docs)]
    passages = [
        {"id": f"{d}#{k}", "doc_id": d, "title": d, "text": f"text {d} {k}"} for d in docs for k in (0, 1)
    ]
    questions = [
        {"id": f"q-{d}", "question": f"about {d}?", "gold_passage_ids": [f"{d}#1"], "answers": ["x"]}
        for d in reversed(docs)
    ]
    ext = ".jsonl.gz" if gz else ".jsonl"
    _write(directory / f"passages{ext}", passages)
    _write(directory / f"questions{'.jsonl' if gz else '.jsonl.gz'}", questions)  # mix plain and gzip
    return docs


@pytest.mark.parametrize("gz", [True, False])
def test_tiny_squad_split_by_first_appearance(tmp_path: Path, gz: bool) -> None:
    docs = _tiny(tmp_path / "squad_tiny", 30, gz=gz)
    tune = load_dataset(tmp_path / "squad_tiny", "tune")
    held = load_dataset(tmp_path / "squad_tiny", "heldout")
    assert len(tune.passages) == 60
    assert {q.doc_id for q in tune.questions} == set(docs[:24])
    assert {q.doc_id for q in held.questions} == set(docs[24:])


def test_kind_from_provenance_and_generic(tmp_path: Path) -> None:
    _tiny(tmp_path / "copy", 4, gz=False)
    assert detect_kind(tmp_path / "copy") == "generic"
    assert len(load_dataset(tmp_path / "copy").questions) == 4
    for split in ("tune", "heldout"):
        with pytest.raises(ValueError, match="only split='all'"):
            load_dataset(tmp_path / "copy", split)
    (tmp_path / "copy" / "PROVENANCE.md").write_text("# SciFact, as passages\nunlike SQuAD ...\n")
    assert detect_kind(tmp_path / "copy") == "scifact"
    with pytest.raises(ValueError, match="never"):
        load_dataset(tmp_path / "copy", "tune")


def test_malformed_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset(tmp_path, "train")
    d = tmp_path / "bad"
    _tiny(d, 2, gz=False)
    _write(
        d / "passages.jsonl",
        [{"id": f"a#{i}", "doc_id": "a", "title": "", "text": "t"} for i in range(3)],
        raw_lines={3: '{"id": "a#9", "doc_id": '},
    )  # truncated third line
    with pytest.raises(ValueError, match=r"passages\.jsonl:3: invalid JSON"):
        load_dataset(d)
    _write(d / "passages.jsonl", [{"id": "a#0", "doc_id": "a", "title": "", "text": "t"}, {"id": "a#1"}])
    with pytest.raises(ValueError, match=r"passages\.jsonl:2: field 'doc_id'"):
        load_dataset(d)
    _write(d / "passages.jsonl", [{"id": "a#0", "doc_id": "a", "title": "", "text": "t"}])
    with pytest.raises(ValueError, match=r"questions\.jsonl\.gz:1: gold passage ids not in"):
        load_dataset(d)
    _write(d / "passages.jsonl.gz", [{"id": "a#0", "doc_id": "a", "title": "", "text": "t"}])
    with pytest.raises(ValueError, match="both"):
        load_dataset(d)
    (d / "questions.jsonl.gz").unlink()
    with pytest.raises(FileNotFoundError, match="no questions"):
        load_dataset(d)


def test_seed_format_errors(tmp_path: Path) -> None:
    _write(
        tmp_path / "questions.jsonl",
        [{"id": "s1", "question": "q?", "answerable": True, "answer_contains": ["x"]}],
    )
    with pytest.raises(ValueError, match=r"questions\.jsonl:1: field 'gold_passage_contains'"):
        load_dataset(tmp_path)
    _write(tmp_path / "questions.jsonl", [{"id": "s1", "question": "q?", "answerable": False}, "oops"])
    with pytest.raises(ValueError, match=r"questions\.jsonl:2: expected a JSON object"):
        load_dataset(tmp_path)


def test_abstention_sets_multi_gold_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "multi"
    d.mkdir()
    passages = [{"id": f"{c}#0", "doc_id": c, "title": c, "text": c} for c in "abcd"]
    questions = [
        {"id": "q1", "question": "?", "gold_passage_ids": ["a#0", "b#0", "c#0", "d#0"], "answers": []},
        {"id": "q2", "question": "?", "gold_passage_ids": ["a#0"], "answers": []},
        {"id": "q3", "question": "?", "gold_passage_ids": [], "answers": [], "answerable": False},
    ]
    _write(d / "passages.jsonl", passages)
    _write(d / "questions.jsonl", questions)
    ds = load_dataset(d)
    assert ds.questions[0].doc_id is None and ds.questions[1].doc_id == "a"
    for seed in range(10):
        ab = abstention_sets(ds, seed=seed)
        kept = {p.id for p in ab.passages}
        assert len(kept) == 2
        q1, q2, q3 = ab.questions
        assert q1.answerable and set(q1.gold_passage_ids) == kept  # some gold always survives
        assert q2.answerable == ("a#0" in kept)
        assert not q3.answerable
    with pytest.raises(ValueError, match="fraction"):
        abstention_sets(ds, fraction=1.0)
    seed_dir = tmp_path / "seedlike"
    seed_dir.mkdir()
    _write(seed_dir / "questions.jsonl", [{"id": "s", "question": "q?", "answerable": False}])
    with pytest.raises(ValueError, match="seed format"):
        abstention_sets(load_dataset(seed_dir))


def test_eval_caches_keep_each_int8_builds_vectors_apart(tmp_path: Path, monkeypatch) -> None:
    """A cached evaluation index is keyed by the vectors' name: after an int8 recipe change it is built
    afresh rather than scored with the earlier build's vectors (torch's and build 1's keys stay as they were)."""
    from embeddings.encoders import base as encoder_base
    from embeddings.encoders.hashing import HashingEncoder
    from embeddings.evaluation.runner import build_index, build_seed_index

    class Int8Stand(HashingEncoder):
        def __init__(self) -> None:
            super().__init__(32)
            self.backend = "onnx-int8"

    _tiny(tmp_path / "squad_tiny", 2, gz=False)
    ds = load_dataset(tmp_path / "squad_tiny", "tune")
    seeds = ROOT / "seeds"
    cache = tmp_path / "cache"

    def homes() -> list[Path]:
        out = []
        for index in (build_index(ds, Int8Stand(), cache, progress=False), build_seed_index([seeds], Int8Stand(), cache)):
            out.append(index.home)
            index.close()
        return out

    build_1 = homes()
    monkeypatch.setattr(encoder_base, "INT8_BUILD_VERSION", "2")
    build_2 = homes()
    assert all(a != b for a, b in zip(build_1, build_2, strict=True))
    monkeypatch.setattr(encoder_base, "INT8_BUILD_VERSION", "1")
    assert homes() == build_1
