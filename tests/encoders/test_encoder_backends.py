"""Encoder backends: the int8 runtimes against torch fp32, token embeddings, settings, telemetry, install hints.

Real-model tests are marked `model`; int8 ones skip only when their runtime (the `int8` extra) is not
importable. The first int8 run builds the quantised model into the user cache (a minute or few)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoders.base import DEFAULT_BACKEND, DEFAULT_MODEL, length_batches, pad_batch
from embeddings.encoders.factory import LazyEncoder, load_encoder
from embeddings.encoders.hashing import HashingEncoder
from embeddings.encoders.transformer import SentenceTransformerEncoder
from embeddings.errors import QabotError
from embeddings.settings import Settings
from tests.support import ROOT, SEEDS

RUNTIMES = {"openvino-int8": "openvino", "onnx-int8": "onnxruntime"}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


INT8_PARAMS = [
    pytest.param(b, marks=pytest.mark.skipif(not _has(m), reason=f"{m} not installed (pip install 'qabot[int8]')"))
    for b, m in RUNTIMES.items()
]


def seed_paragraphs() -> list[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt")))
    return [p.strip() for p in text.split("\n\n") if len(p.split()) >= 20]


QUESTIONS = [
    "Who is the sultan of Oman visiting Tehran as a mediator?",
    "When did Egypt cut diplomatic ties with Iran?",
    "Which hacker group defaced the presidency websites?",
    "Which country brokered the détente between Saudi Arabia and Iran?",
    "Where is the MEK based today?",
    "What hacking incidents has Iran experienced before?",
]


# ------------------------------------------------------------------------------------- no model needed


def test_backend_attribute_and_setting(monkeypatch):
    assert HashingEncoder(32).backend == "hashing"
    assert LazyEncoder("hashing:32", backend="openvino-int8").backend == "hashing"  # hashing ignores it
    # Lazy: the backend is known (the index records it) without loading anything.
    assert load_encoder(DEFAULT_MODEL, backend="onnx-int8").backend == "onnx-int8"
    assert load_encoder(DEFAULT_MODEL, backend="torch").name == DEFAULT_MODEL  # the name stays the model's
    # The environment is read once, by Settings; load_encoder only takes values (its default: DEFAULT_BACKEND).
    monkeypatch.setenv("QABOT_ENCODER_BACKEND", "openvino-int8")
    assert load_encoder(DEFAULT_MODEL).backend == DEFAULT_BACKEND
    assert DEFAULT_BACKEND == "onnx-int8"  # the fast path is the default (issue 14)
    assert Settings.from_env({}).encoder_backend is None  # unset: the index's own backend, else the default
    assert Settings(home=Path("/x")).backend_for(None) == DEFAULT_BACKEND
    assert Settings.from_env({"QABOT_ENCODER_BACKEND": " ONNX-int8 "}).encoder_backend == "onnx-int8"
    assert Settings.from_env({"QABOT_ENCODER_CACHE": "/tmp/enc"}).encoder_cache == Path("/tmp/enc")


def test_unknown_backend_is_refused():
    with pytest.raises(QabotError, match="Unknown encoder backend"):
        load_encoder(DEFAULT_MODEL, backend="cuda-fp4")


@pytest.mark.parametrize("backend,hint", [("openvino-int8", r"pip install 'torch==2\.13\.0' 'qabot\[int8\]'"),
                                          ("onnx-int8", r"reinstall qabot .*QABOT_ENCODER_BACKEND=torch")])
def test_missing_runtime_gives_install_hint(monkeypatch, backend, hint):
    # onnxruntime is a main dependency (the default backend): missing, the install is broken, no extra helps.
    monkeypatch.setitem(sys.modules, RUNTIMES[backend], None)  # import raises ImportError
    with pytest.raises(QabotError, match=hint):
        load_encoder(DEFAULT_MODEL, lazy=False, backend=backend)


def test_telemetry_env_is_set_before_runtime_import(monkeypatch):
    from embeddings.encoders import int8 as encoder_int8

    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delitem(sys.modules, "openvino_telemetry", raising=False)
    encoder_int8.disable_runtime_telemetry()
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert sys.modules.get("openvino_telemetry", "missing") is None  # unimportable: OpenVINO's tools use stubs


@pytest.mark.skipif(not (_has("openvino") and _has("nncf")), reason="openvino/nncf not installed")
def test_openvino_and_nncf_telemetry_are_stubs():
    # A fresh interpreter outside pytest (NNCF switches telemetry off by itself under pytest).
    code = (
        "import embeddings.encoders.int8 as m; m.disable_runtime_telemetry()\n"
        "import openvino, nncf\n"
        "from openvino.tools.ovc import telemetry_utils as t\n"
        "from nncf.telemetry.wrapper import telemetry, NNCFTelemetryStub\n"
        "print(t.tm.__name__, isinstance(telemetry, NNCFTelemetryStub))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI", "NNCF_DEV", "PYTEST_CURRENT_TEST")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "True"], out.stdout + out.stderr


def test_int8_calibration_reads_the_checkouts_seed_articles():
    # A fresh encoder cache builds from these: with none found the build failed in the tokenizer (IndexError).
    from embeddings.encoders import int8 as encoder_int8

    seeds, _ = encoder_int8._calibration_files()
    assert seeds and seeds == sorted(SEEDS.glob("*.txt"))
    assert len(encoder_int8.calibration_texts()) > len(seeds)


def test_int8_build_says_where_it_caches_and_shows_each_stage(tmp_path, monkeypatch):
    """A first run must not sit silent through the export: one line naming the cache, then a line per stage."""
    from embeddings.encoders import int8 as encoder_int8

    def fake_build(name, path, backend, out, stage):
        for s in encoder_int8.BUILD_STAGES[backend]:
            stage(s)
        for f in encoder_int8.REQUIRED_FILES[backend]:  # what a complete entry holds (entry_problem checks)
            (out / f).write_text("x")
        return encoder_int8.Int8Meta("1", backend, name, path, 8, 16, "mean", ("input_ids",), 0, 0, 0.999, 1.0)

    monkeypatch.setattr(encoder_int8, "_build", fake_build)
    lines: list[str] = []
    built = encoder_int8.ensure_built(DEFAULT_MODEL, "onnx-int8", tmp_path, say=lines.append)
    assert (built / "meta.json").is_file() and built.parent == tmp_path
    assert len(lines) == 6 and str(built) in lines[0] and all(str(built) not in x for x in lines[1:])
    assert [x.split("] ")[1].split(" (")[0] for x in lines[1:5]] == list(encoder_int8.BUILD_STAGES["onnx-int8"])
    assert "[1/4]" in lines[1] and "[4/4]" in lines[4] and "ready" in lines[5]
    lines.clear()
    assert encoder_int8.ensure_built(DEFAULT_MODEL, "onnx-int8", tmp_path, say=lines.append) == built
    assert lines == []  # cached: silent


def test_length_batches_and_padding():
    batches = length_batches([3, 9, 1, 7, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]  # longest first, every index once
    feats = pad_batch([{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1]},
                       {"input_ids": [5], "attention_mask": [1]}], pad_id=9)
    assert feats["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]]
    assert feats["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# ------------------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def torch_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def int8_encoders() -> dict[str, object]:
    return {}


def _int8(cache: dict[str, object], backend: str):
    if backend not in cache:
        cache[backend] = load_encoder(DEFAULT_MODEL, lazy=False, backend=backend)
    return cache[backend]


@pytest.mark.model
def test_torch_encode_matches_sentence_transformers(torch_encoder):
    texts = seed_paragraphs()[:6] + ["short", "a question about Iran?"]
    ours = torch_encoder.encode(texts, batch_size=3)
    theirs = torch_encoder._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.model
def test_torch_token_embeddings_pool_to_encode(torch_encoder):
    long = " ".join(seed_paragraphs()) * 2  # beyond max_tokens: truncated exactly as encode() truncates
    texts = ["Who brokered the Saudi-Iran détente?", long, *seed_paragraphs()[:4], "x"]
    toks = torch_encoder.token_embeddings(texts, batch_size=3)
    assert len(toks) == len(texts)
    pooled = np.stack([vecs.mean(axis=0) for vecs, _ in toks])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, torch_encoder.encode(texts), atol=1e-5)
    vecs, offsets = toks[1]
    assert vecs.dtype == np.float32 and vecs.shape == (torch_encoder.max_tokens, torch_encoder.dimension)
    assert offsets.shape == (torch_encoder.max_tokens, 2)
    assert offsets[0].tolist() == [0, 0] and offsets[-1].tolist() == [0, 0]  # [CLS], [SEP]
    q_vecs, q_off = toks[0]
    assert [texts[0][s:e] for s, e in q_off[1:-1]][:4] == ["Who", "broker", "ed", "the"]  # wordpieces
    assert q_vecs.shape[0] == torch_encoder.count_tokens(texts[0])


@pytest.mark.model
@pytest.mark.parametrize("backend", INT8_PARAMS)
def test_int8_close_to_fp32(torch_encoder, int8_encoders, backend):
    enc = _int8(int8_encoders, backend)
    assert enc.backend == backend and enc.name == DEFAULT_MODEL
    assert (enc.dimension, enc.max_tokens) == (torch_encoder.dimension, torch_encoder.max_tokens)
    texts = seed_paragraphs() + QUESTIONS
    cos = np.sum(enc.encode(texts) * torch_encoder.encode(texts), axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, cos
    assert [enc.count_tokens(t) for t in texts] == [torch_encoder.count_tokens(t) for t in texts]


@pytest.mark.model
@pytest.mark.parametrize("backend", INT8_PARAMS)
def test_int8_ranks_like_fp32(torch_encoder, int8_encoders, backend):
    enc = _int8(int8_encoders, backend)
    corpus = seed_paragraphs()
    for e in (torch_encoder, enc):
        scores = e.encode(QUESTIONS) @ e.encode(corpus).T
        ranks = np.argsort(-scores, axis=1)
        if e is torch_encoder:
            want = ranks
        else:
            assert ranks[:, 0].tolist() == want[:, 0].tolist()
            for got, ref in zip(ranks[:, :3], want[:, :3], strict=True):
                assert len(set(got) & set(ref)) >= 2


@pytest.mark.model
@pytest.mark.parametrize("backend", INT8_PARAMS)
def test_int8_token_embeddings(torch_encoder, int8_encoders, backend):
    enc = _int8(int8_encoders, backend)
    long = " ".join(seed_paragraphs()) * 2
    texts = ["Where is the MEK based today?", long, *seed_paragraphs()[:3]]
    toks = enc.token_embeddings(texts, batch_size=2)
    pooled = np.stack([v.mean(axis=0) for v, _ in toks])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, enc.encode(texts, batch_size=2), atol=1e-5)
    ref = torch_encoder.token_embeddings(texts)
    for (v, off), (rv, roff) in zip(toks, ref, strict=True):
        assert v.dtype == np.float32 and v.shape == rv.shape
        assert off.tolist() == roff.tolist()  # same tokenization and truncation as the torch backend


@pytest.mark.model
@pytest.mark.parametrize("backend", INT8_PARAMS)
def test_int8_cache_entry(int8_encoders, backend):
    from embeddings.encoders.base import INT8_BUILD_VERSION, resolve_model_path
    from embeddings.encoders.int8 import Int8Meta, cache_key, cache_root, ensure_built

    _int8(int8_encoders, backend)
    entry = ensure_built(DEFAULT_MODEL, backend)  # built by the fixture: found, not rebuilt
    assert entry.name == cache_key(DEFAULT_MODEL, resolve_model_path(DEFAULT_MODEL), backend)
    meta = Int8Meta.read(entry / "meta.json")
    assert (meta.backend, meta.build_version, meta.pooling) == (backend, INT8_BUILD_VERSION, "mean")
    assert not list(cache_root().glob(".build-*")), "a finished build leaves no temp dir"


def test_int8_cache_key_follows_the_calibration_text(monkeypatch, tmp_path):
    """OpenVINO's static ranges come from the calibration text, so other text (e.g. ../shared/eval absent)
    must mean another cache entry; ONNX's dynamic quantisation reads no text, so its key ignores it."""
    from embeddings.encoders import int8 as encoder_int8

    (tmp_path / "config.json").write_text("{}")
    keys = {}
    for sources in ([("a.txt", 10)], [("a.txt", 10), ("passages.jsonl.gz", 99)]):
        monkeypatch.setattr(encoder_int8, "calibration_sources", lambda s=sources: s)
        keys[len(sources)] = {b: encoder_int8.cache_key("m", str(tmp_path), b) for b in encoder_int8.INT8_BACKENDS}
    assert keys[1]["openvino-int8"] != keys[2]["openvino-int8"]
    assert keys[1]["onnx-int8"] == keys[2]["onnx-int8"]
    assert encoder_int8.calibration_sources()  # the seed article at least


@pytest.mark.model
@pytest.mark.parametrize("backend", INT8_PARAMS)
def test_int8_parallel_lanes_match_one_runner(int8_encoders, backend):
    """Ingest runs batches on one single-thread runner per core; results must be those of one runner, in
    the callers' order, for encode and token_embeddings alike."""
    enc = _int8(int8_encoders, backend)
    texts = seed_paragraphs() + QUESTIONS
    assert len(texts) > 4 * 3  # several batches of 4, so the lanes are used
    saved = enc._max_threads
    try:
        enc._max_threads = 2
        lanes_vecs, lanes_toks = enc.encode(texts, batch_size=4), enc.token_embeddings(texts, batch_size=4)
        assert (1, 1) in enc._runners, "the second lane was never used"
        enc._max_threads = 1
        one_vecs, one_toks = enc.encode(texts, batch_size=4), enc.token_embeddings(texts, batch_size=4)
    finally:
        enc._max_threads = saved
    np.testing.assert_allclose(lanes_vecs, one_vecs, atol=1e-5)
    for (v, off), (ov, ooff) in zip(lanes_toks, one_toks, strict=True):
        np.testing.assert_allclose(v, ov, atol=1e-4)
        assert off.tolist() == ooff.tolist()


@pytest.mark.model
@pytest.mark.parametrize("backend", INT8_PARAMS)
def test_int8_question_runs_on_the_question_runner(int8_encoders, backend):
    """A question is encoded by the runner on QUESTION_THREADS (both cores for ONNX Runtime, capped by the
    encoder's threads), and gets the vector a one-thread runner gives."""
    from embeddings.encoders import int8 as encoder_int8

    enc = _int8(int8_encoders, backend)
    want_threads = min(enc._max_threads, encoder_int8.QUESTION_THREADS[backend])
    used: list[tuple[int, int]] = []
    runner = enc._runner

    def spy(threads, slot=0):
        used.append((threads, slot))
        return runner(threads, slot)

    enc._runner = spy
    try:
        got = enc.encode(QUESTIONS[:1])
    finally:
        del enc._runner
    assert used == [(want_threads, 0)]
    one = enc._runner(1)
    feats = enc._features(enc._tokenize(QUESTIONS[:1]))
    hidden = one({k: feats[k] for k in enc._meta.input_names})
    ref = encoder_int8.normalize_rows(encoder_int8.pool(hidden, feats["attention_mask"], enc._meta.pooling))
    np.testing.assert_allclose(got, ref, atol=1e-4)
