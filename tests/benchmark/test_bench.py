"""`qabot bench`: corpora built from the shared eval data, and one end-to-end run with the hashing encoder
(figures are not asserted: speed is for benchmarks, not tests; that the run measures and reports is)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from embeddings.benchmark import corpus
from embeddings.benchmark.dense_bench import synthesize
from embeddings.benchmark.qabot_system import QabotSystem
from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
from embeddings.settings import Settings
from tests.support import ROOT, SHARED_EVAL

pytestmark = pytest.mark.skipif(not (SHARED_EVAL / "squad_v1_dev").exists(), reason="shared eval data absent")


def test_speed_corpus_real_first_then_distinct_perturbed_copies():
    real = corpus._real_passages(SHARED_EVAL)
    big = corpus.speed_corpus(len(real) + 500, SHARED_EVAL)
    assert len(big) == len(real) + 500
    assert [p.key for p in big[:len(real)]] == [p.key for p in real]
    assert len({p.key for p in big}) == len(big), "keys must be unique"
    copies = big[len(real):]
    originals = {p.key: p for p in real}
    for c in copies[:200]:
        base = originals[c.key.split("~")[0]]
        assert c.text != base.text and c.title == base.title
        assert abs(len(c.text.split()) - len(base.text.split())) <= 1  # one word dropped, prose kept
    assert corpus.speed_corpus(300, SHARED_EVAL) == corpus.speed_corpus(300, SHARED_EVAL)  # deterministic


def test_fresh_passages_are_new_text_with_the_sources_lengths():
    source = corpus.speed_corpus(300, SHARED_EVAL)
    fresh = corpus.fresh_passages(source, 120)
    assert len(fresh) == 120 and len({p.key for p in fresh} | {p.key for p in source}) == 420
    for f, s in zip(fresh, source, strict=False):
        assert f.text != s.text and abs(len(f.text.split()) - len(s.text.split())) <= 1


def test_recall_corpus_uses_held_out_questions_only():
    passages, questions = corpus.recall_corpus("squad_v1_dev", SHARED_EVAL, limit=50)
    assert len(passages) == 2067 and len(questions) == 50
    keys = {p.key for p in passages}
    tune_articles = set(list(dict.fromkeys(p.key.split("#")[0] for p in passages))[:24])
    for q in questions:
        assert set(q.gold) <= keys
        assert not {g.split("#")[0] for g in q.gold} & tune_articles


def test_articles_group_by_title_and_size():
    passages = corpus.speed_corpus(100, SHARED_EVAL)
    groups = list(corpus.articles(passages, per_article=8))
    assert sum(len(g) for _, _, g in groups) == 100
    for _, title, g in groups:
        assert 1 <= len(g) <= 8 and all(p.title == title for p in g)


def test_synthetic_dense_vectors_are_unit_and_seeded():
    src = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    a, b = synthesize(src, 1000, seed=3), synthesize(src, 1000, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def test_qabot_system_builds_opens_and_finds_its_passages(tmp_path, monkeypatch):
    monkeypatch.setenv("QABOT_EMBED_MODEL", "hashing:256")
    passages, questions = corpus.recall_corpus("squad_v1_dev", SHARED_EVAL, limit=20)
    system = QabotSystem(per_article=1)
    system.build(passages[:300], tmp_path)
    system.open(tmp_path)
    assert system.passages_stored() >= 300
    keys = system.search(passages[5].text[:200], 5)
    assert keys[0] == passages[5].key


def test_bench_cli_end_to_end_json(tmp_path):
    env = dict(os.environ, QABOT_EMBED_MODEL="hashing:128")
    out = subprocess.run([sys.executable, "-m", "bot.cli", "bench", "--passages", "150", "--no-recall", "--json",
                          "--workdir", str(tmp_path), "--plot", str(tmp_path / "b.png")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)["sizes"]["150"]["qabot"]
    for key in ("ingest_passages_per_s", "query_ms_p50", "query_ms_p95", "cold_start_s", "peak_rss_mb", "index_mb"):
        assert figures[key] > 0, key
    assert figures["passages"] >= 150 and figures["query_ms_p95"] >= figures["query_ms_p50"]
    assert (tmp_path / "b.png").stat().st_size > 1000
    # The encoder's ceiling, measured in the same run on the same passages, beside the ingest rate.
    assert figures["encode_only_passages_per_s"] > 0


def test_bench_table_has_the_encoder_only_column(tmp_path):
    env = dict(os.environ, QABOT_EMBED_MODEL="hashing:128")
    out = subprocess.run([sys.executable, "-m", "bot.cli", "bench", "--passages", "120", "--no-recall",
                          "--workdir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = next(line for line in lines if line.startswith("system"))
    row = next(line for line in lines if line.startswith("qabot"))
    assert "ingest p/s" in head and "encoder p/s" in head
    cells = row.split()  # system, ingest p/s, encoder p/s, ...
    assert float(cells[1]) > 0 and float(cells[2]) > 0


def test_bench_copied_size_measures_questions_and_an_ingest_into_the_copy(tmp_path):
    env = dict(os.environ, QABOT_EMBED_MODEL="hashing:128")
    out = subprocess.run([sys.executable, "-m", "bot.cli", "bench", "--passages", "120", "400", "--ingest-limit",
                          "120", "--no-recall", "--json", "--workdir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    big = json.loads(out.stdout)["sizes"]["400"]["qabot"]
    assert not big["ingested"] and big["grown_by"] == 500
    assert big["encode_only_passages_per_s"] is None  # not measured on a copy (it was not ingested)
    assert big["ingest_passages_per_s"] > 0 and big["query_ms_p50"] > 0 and big["peak_rss_mb"] > 0
    svc = QAService(replace(Settings.from_env(), home=tmp_path / "speed-400" / "qabot" / "qabot"),
                    encoder=HashingEncoder(128))
    try:
        assert svc.index.integrity().ok
        assert svc.stats().passages > big["passages"]  # the fresh passages landed in the copy
    finally:
        svc.close()


def test_bench_rejects_bad_arguments(tmp_path):
    for args, msg in ((["--peers", "nope"], "unknown peer"), (["--passages", "5"], "at least 100")):
        out = subprocess.run([sys.executable, "-m", "bot.cli", "bench", *args, "--workdir", str(tmp_path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and msg in out.stderr, out.stderr


def test_replicate_grows_an_index_without_encoding(tmp_path):
    from embeddings.benchmark.replicate import replicate
    from tests.support import SEEDS, make_service

    svc = make_service(tmp_path / "small")
    svc.ingest([str(SEEDS)], progress=False)
    n = svc.stats().passages
    svc.close()
    held = replicate(tmp_path / "small", tmp_path / "big", 3 * n + 1)
    assert held == 4 * n  # whole copies, enough to reach the size asked for
    big = make_service(tmp_path / "big")
    assert big.index.integrity().ok and big.stats().documents == 4 * len(list(SEEDS.glob("*.txt")))
    ids = big.index._caches.keyword.ids
    v = big.index.vectors(ids.tolist())
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    cos = v @ v.T
    np.fill_diagonal(cos, 0)
    assert cos.max() < 0.9999, "copies are jittered, not exact ties"
    assert any("Shah" in p.text for p in big.ask("why did Egypt cut ties with Iran Sadat Shah", k=3).passages)
    big.close()


def test_peak_rss_is_the_workers_own_not_its_parents():
    """A worker forked from a parent holding a lot of memory must not report the parent's peak (Linux
    keeps getrusage's ru_maxrss across exec)."""
    code = ("import numpy as np, subprocess, sys\n"
            "big = np.ones(400 * 2**20 // 8)  # 400 MB resident in the parent\n"
            "out = subprocess.run([sys.executable, '-c', 'from embeddings.benchmark.systems import peak_rss_mb;"
            " print(peak_rss_mb())'], capture_output=True, text=True, check=True).stdout\n"
            "print(float(out), big.sum() > 0)\n")
    child_mb = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=str(ROOT)).stdout.split()[0])
    assert 5 < child_mb < 300, child_mb


def test_plot_draws_only_what_the_run_measured(tmp_path):
    from embeddings.benchmark.harness import BenchReport, RecallResult, SpeedResult
    from embeddings.benchmark.report import plot

    speed = SpeedResult("qabot", 2000, 2400, 30.0, 11.0, 15.0, 0.8, 400.0, 32.0, 60.0)
    recall = RecallResult("qabot", "scifact", 300, {"1": 0.61, "5": 0.77, "10": 0.84}, 19.0)
    titles = plot(BenchReport(speed=[speed]), tmp_path / "speed.png")
    assert len(titles) == 3 and not any("recall" in t for t in titles)  # --no-recall: no empty recall panel
    assert (tmp_path / "speed.png").stat().st_size > 1000
    assert plot(BenchReport(recall=[recall]), tmp_path / "recall.png") == ["recall@1 (held-out, higher is better)"]
    assert len(plot(BenchReport(speed=[speed], recall=[recall]), tmp_path / "both.png")) == 4
    assert plot(BenchReport(), tmp_path / "none.png") == [] and not (tmp_path / "none.png").exists()
