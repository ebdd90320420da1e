"""`qabot reindex` and the default encoder backend: an index built with one runtime (torch) is re-embedded
with another (onnx-int8) from its stored text, crash-safely, on both stores; which backend a process runs
when QABOT_ENCODER_BACKEND is unset. The hashing encoder, given a backend name and other vectors, stands in
for the runtimes of one model."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from embeddings.config import IndexConfig
from embeddings.encoders.base import DEFAULT_BACKEND, DEFAULT_MODEL
from embeddings.encoders.hashing import HashingEncoder
from embeddings.errors import IndexMismatch
from embeddings.ingest import reindex as reindex_mod
from embeddings.ingest.pipeline import embed_passages
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.base import keyword_text
from embeddings.store.embedded.index import EmbeddedIndex
from tests.support import ARTICLE, SEEDS, write

DIM = 64
QUESTION = "why did Egypt cut ties with Iran?"


class Runtime(HashingEncoder):
    """One model (same name, so the index accepts it) on a named runtime; `shift` makes its vectors differ."""

    def __init__(self, backend: str, shift: int = 0) -> None:
        super().__init__(DIM)
        self.backend = backend
        self.shift = shift

    def encode(self, texts, *, batch_size: int = 64) -> np.ndarray:
        return np.ascontiguousarray(np.roll(super().encode(texts), self.shift, axis=1))


TORCH, INT8 = Runtime("torch"), Runtime("onnx-int8", shift=5)


@pytest.fixture(params=["embedded", "postgresql"])
def settings(request, tmp_path) -> Settings:
    if request.param == "embedded":
        return Settings(home=tmp_path / "idx")
    return Settings(home=tmp_path / "unused", store=request.getfixturevalue("pg_url"))


def build(settings: Settings, tmp_path) -> None:
    svc = QAService(settings, encoder=TORCH)
    svc.ingest([str(SEEDS), str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    svc.close()


def expected_vectors(svc: QAService, encoder: Runtime) -> tuple[np.ndarray, dict[int, np.ndarray], list[int]]:
    """What ingest with `encoder` stores for every passage: passage and sentence vectors."""
    store = svc.index.store
    ids = store.passage_ids_and_scopes()[0].tolist()
    rows = store.passages(ids)
    jobs = [reindex_mod.EmbedJob(str(i), keyword_text(rows[i].doc.title, rows[i].text),
                                 tuple(rows[i].text[s:e] for s, e in rows[i].sentences)) for i in ids]
    vecs = embed_passages(encoder, jobs)
    return np.stack([vecs[str(i)].passage for i in ids]), {i: vecs[str(i)].sentences for i in ids}, ids


def test_reindex_re_embeds_every_passage_and_sentence_and_records_the_backend(settings, tmp_path):
    build(settings, tmp_path)
    svc = QAService(settings, encoder=INT8)
    try:
        before = svc.ask(QUESTION)
        want, want_sents, ids = expected_vectors(svc, INT8)
        old = svc.index.store.vectors_for(ids, DIM)
        assert not np.allclose(old, want)  # the stand-in runtimes really differ
        report = svc.reindex(progress=False)
        assert (report.backend_before, report.backend) == ("torch", "onnx-int8")
        assert report.passages == len(ids) and report.embedded == len(ids) and report.resumed == 0
        assert not report.unchanged
        again = svc.reindex(progress=False)
        assert again.unchanged and again.embedded == 0 and again.passages == len(ids)
        np.testing.assert_allclose(svc.index.store.vectors_for(ids, DIM), want, atol=1e-6)
        got_sents = svc.index.store.sentence_vectors_for(ids, DIM)
        for i in ids:
            np.testing.assert_allclose(got_sents[i], want_sents[i], atol=1e-6)
        np.testing.assert_allclose(svc.index.vectors(ids), want, atol=1e-6)  # the served dense index too
        assert svc.index.integrity().ok and svc.index.config.encoder_backend == "onnx-int8"
        assert svc.ask(QUESTION).text == before.text
    finally:
        svc.close()
    again = QAService(settings, encoder=INT8)  # reopened: the store says onnx-int8, and takes its writes
    try:
        assert again.index.config.encoder_backend == "onnx-int8"
        again.ingest([str(write(tmp_path / "ferry.txt", ARTICLE + "\nA new paragraph about the ferry.\n"))],
                     progress=False)
    finally:
        again.close()
    old_runtime = QAService(settings, encoder=TORCH)
    try:
        with pytest.raises(IndexMismatch, match=r"onnx-int8 vectors.*qabot reindex"):
            old_runtime.ingest([str(SEEDS)], progress=False)
    finally:
        old_runtime.close()


def test_a_reindex_killed_midway_leaves_the_old_index_and_resumes(settings, tmp_path, monkeypatch):
    build(settings, tmp_path)
    monkeypatch.setattr(reindex_mod, "COMMIT_EVERY_PASSAGES", 4)
    svc = QAService(settings, encoder=INT8)
    ids = svc.index.store.passage_ids_and_scopes()[0].tolist()
    old = svc.index.store.vectors_for(ids, DIM)
    generation = svc.index.store.generation()
    calls = {"n": 0}
    real = reindex_mod.embed_passages

    def dies_on_second_batch(encoder, jobs, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after one batch was staged
        return real(encoder, jobs, **kw)

    monkeypatch.setattr(reindex_mod, "embed_passages", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        svc.reindex(progress=False)
    # Nothing served changed: old vectors, old backend, same generation (readers did not even reload).
    np.testing.assert_array_equal(svc.index.store.vectors_for(ids, DIM), old)
    assert svc.index.store.generation() == generation
    svc.close()
    reader = QAService(settings, encoder=TORCH)
    # It still answers from its own vectors (the answer's passage: whether the hashing stand-in's scores clear
    # the threshold calibrated for the real model is beside the point here).
    assert reader.index.config.encoder_backend == "torch"
    assert "Egypt severed diplomatic ties with Iran" in reader.ask(QUESTION).passages[0].text
    reader.close()

    monkeypatch.setattr(reindex_mod, "embed_passages", real)
    svc = QAService(settings, encoder=INT8)
    try:
        report = svc.reindex(progress=False)
        assert report.resumed == 4 and report.embedded == report.passages - 4
        want, _, _ = expected_vectors(svc, INT8)
        np.testing.assert_allclose(svc.index.store.vectors_for(ids, DIM), want, atol=1e-6)
    finally:
        svc.close()


def test_a_crash_after_the_swap_commits_is_repaired_on_open(tmp_path, monkeypatch):
    """SQLite commits the vectors with the backend; config.json and the dense cache follow. Killed in
    between, the next open takes SQLite's word and rebuilds the dense cache from the new vectors."""
    settings = Settings(home=tmp_path / "idx")
    build(settings, tmp_path)
    svc = QAService(settings, encoder=INT8)
    monkeypatch.setattr(EmbeddedIndex, "_after_reindex", lambda self, backend: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        svc.reindex(progress=False)
    svc.close()
    monkeypatch.undo()
    assert json.loads((settings.home / "config.json").read_text())["encoder_backend"] == "torch"  # stale file
    from embeddings.store.embedded.index import recorded_backend_at

    assert recorded_backend_at(settings.home) == "onnx-int8"  # what an unset QABOT_ENCODER_BACKEND will pick
    again = QAService(settings, encoder=INT8)
    try:
        assert again.index.config.encoder_backend == "onnx-int8" and again.index.integrity().ok
        want, _, ids = expected_vectors(again, INT8)
        np.testing.assert_allclose(again.index.vectors(ids), want, atol=1e-6)
        again.ingest([str(SEEDS)], progress=False)  # writes allowed, and config.json repaired under the lock
    finally:
        again.close()
    assert json.loads((settings.home / "config.json").read_text())["encoder_backend"] == "onnx-int8"
    with pytest.raises(IndexMismatch, match="qabot reindex"):  # and torch writes are refused
        with EmbeddedIndex(settings.home, TORCH).writer():
            pass


def test_a_writer_opened_before_a_reindex_cannot_add_old_vectors(settings, tmp_path):
    """A bot that opened the index with torch, then another process reindexed: its next write is refused."""
    build(settings, tmp_path)
    bot = QAService(settings, encoder=TORCH)
    other = QAService(settings, encoder=INT8)
    other.reindex(progress=False)
    other.close()
    try:
        with pytest.raises(IndexMismatch, match="qabot reindex|restart it"):
            bot.ingest([str(write(tmp_path / "new.txt", "A Title\n\n" + ARTICLE))], progress=False)
        assert bot.ask(QUESTION).found  # reading goes on
    finally:
        bot.close()


def test_a_reindex_reads_the_backend_as_recorded_now_not_as_when_it_opened(settings, tmp_path):
    """A process opened on torch vectors; another reindexed onto onnx-int8 since. Its own reindex onto torch
    must re-embed (not take the index for torch's already) and leave torch recorded."""
    build(settings, tmp_path)
    late = QAService(settings, encoder=TORCH)
    other = QAService(settings, encoder=INT8)
    other.reindex(progress=False)
    other.close()
    try:
        report = late.reindex(progress=False)
        assert not report.unchanged and (report.backend_before, report.backend) == ("onnx-int8", "torch")
        assert report.embedded == report.passages
    finally:
        late.close()
    again = QAService(settings, encoder=TORCH)
    try:
        assert again.index.config.encoder_backend == "torch"
    finally:
        again.close()


# ---- which backend a process runs ------------------------------------------------------------------------


def _torch_index(home) -> None:
    """An index directory as qabot wrote it before onnx-int8 was the default: config.json says torch."""
    home.mkdir(parents=True)
    cfg = IndexConfig(model=DEFAULT_MODEL, dimension=384, max_tokens=256, encoder_backend="torch")
    (home / "config.json").write_text(cfg.to_json())
    sqlite3.connect(home / "qabot.sqlite3").close()


def test_unset_backend_follows_the_index_explicit_one_is_used_and_refused_for_writes(tmp_path):
    assert DEFAULT_BACKEND == "onnx-int8"
    assert Settings.from_env({}).encoder_backend is None
    assert Settings.from_env({"QABOT_ENCODER_BACKEND": " Torch "}).encoder_backend == "torch"
    home = tmp_path / "idx"
    _torch_index(home)
    # Lazy encoders: nothing is loaded, the backend is known at once.
    unset = QAService(Settings(home=home), create=False)
    try:
        assert unset.encoder.backend == "torch"  # the old index keeps its runtime: no action needed
        with unset.index.writer():
            pass
    finally:
        unset.close()
    explicit = QAService(Settings(home=home, encoder_backend="onnx-int8"), create=False)
    try:
        assert explicit.encoder.backend == "onnx-int8"  # reading with another runtime is allowed
        with pytest.raises(IndexMismatch) as exc, explicit.index.writer():
            pass
        message = str(exc.value)
        assert "\n" not in message and "qabot reindex" in message and "torch" in message
    finally:
        explicit.close()
    assert Settings(home=tmp_path / "new").backend_for(None) == DEFAULT_BACKEND
    assert Settings(home=home).backend_for("hashing") == DEFAULT_BACKEND
    assert Settings(home=home, encoder_backend="torch").backend_for("onnx-int8") == "torch"


def test_cli_reindex_prints_one_line_and_the_index_records_the_backend(tmp_path, monkeypatch, capsys):
    from bot import cli

    home = tmp_path / "idx"
    monkeypatch.setenv("QABOT_HOME", str(home))
    monkeypatch.setenv("QABOT_EMBED_MODEL", f"hashing:{DIM}")
    monkeypatch.delenv("QABOT_ENCODER_BACKEND", raising=False)
    assert cli.main(["ingest", "-q", str(SEEDS)]) == 0
    capsys.readouterr()
    n = EmbeddedIndex(home, HashingEncoder(DIM)).store.counts()["passages"]
    before = EmbeddedIndex(home, HashingEncoder(DIM)).store.generation()
    assert cli.main(["reindex", "-q"]) == 0  # already this encoder's vectors: nothing is embedded or written
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"the index already holds hashing vectors ({n} passages): nothing to re-embed "
                   "(--force re-embeds them anyway)"], out
    assert EmbeddedIndex(home, HashingEncoder(DIM)).store.generation() == before  # no swap committed
    assert cli.main(["reindex", "-q", "--force"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"re-embedded {n} passages with hashing"), out
    assert EmbeddedIndex(home, HashingEncoder(DIM)).store.generation() > before  # the forced swap
    assert EmbeddedIndex(home, HashingEncoder(DIM)).integrity().ok
    assert cli.main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encoder_backend"] == "hashing"


@pytest.mark.model
def test_a_torch_index_reindexed_onto_onnx_int8_gives_the_readme_answer(tmp_path):
    """The real upgrade path: an index built with torch (as every index before this release), re-embedded
    with the new default, answers the README's question with the same sentence and passage."""
    pytest.importorskip("onnxruntime")
    home = tmp_path / "idx"
    old = QAService(Settings(home=home, encoder_backend="torch"))
    old.ingest([str(SEEDS)], progress=False)
    before = old.ask(QUESTION)
    old_vectors = old.index.vectors(old.index.store.passage_ids_and_scopes()[0].tolist())
    old.close()
    svc = QAService(Settings(home=home, encoder_backend=DEFAULT_BACKEND))
    try:
        report = svc.reindex(progress=False)
        assert (report.backend_before, report.backend) == ("torch", "onnx-int8")
        ids = svc.index.store.passage_ids_and_scopes()[0].tolist()
        cos = np.sum(svc.index.vectors(ids) * old_vectors, axis=1)
        assert 0.97 < cos.min() and cos.max() < 0.99999  # the int8 runtime's vectors, not torch's copied
        after = svc.ask(QUESTION)
        assert after.text == before.text and after.passages[0].text == before.passages[0].text
    finally:
        svc.close()
    unset = QAService(Settings(home=home))  # QABOT_ENCODER_BACKEND unset now follows the reindexed index
    try:
        assert unset.encoder.backend == "onnx-int8"
    finally:
        unset.close()


# ---- a change of the int8 build recipe ---------------------------------------------------------------------


def test_an_index_of_an_earlier_int8_build_answers_refuses_writes_and_reindexes_onto_the_new_build(
        settings, tmp_path, monkeypatch):
    """Build 1 vectors were recorded as the bare backend name. After a recipe change (INT8_BUILD_VERSION 2),
    the same runtime makes other vectors: the old index still answers, a write is refused in one line naming
    `qabot reindex`, and the reindex records the new build, after which writes go through."""
    from embeddings.encoders import base as encoder_base

    old_build = Runtime("onnx-int8", shift=5)
    svc = QAService(settings, encoder=old_build)
    svc.ingest([str(SEEDS)], progress=False)
    assert svc.index.config.encoder_backend == "onnx-int8"  # build 1: the name every existing index records
    svc.close()

    monkeypatch.setattr(encoder_base, "INT8_BUILD_VERSION", "2")
    new_build = Runtime("onnx-int8", shift=9)
    assert new_build.vectors == "onnx-int8@2"
    assert settings.backend_for("onnx-int8@2") == "onnx-int8"  # the runtime that makes them
    svc = QAService(settings, encoder=new_build)
    try:
        assert svc.ask(QUESTION).passages  # reading an earlier build's vectors is allowed (the stand-ins'
        # vectors are unrelated, so whether it is found says nothing here)
        with pytest.raises(IndexMismatch) as exc:
            svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
        message = str(exc.value)
        assert "\n" not in message and "qabot reindex" in message and "onnx-int8@2" in message
        assert "QABOT_ENCODER_BACKEND" not in message  # no setting brings back the old recipe
        report = svc.reindex(progress=False)
        assert (report.backend_before, report.backend) == ("onnx-int8", "onnx-int8@2")
        assert svc.index.config.encoder_backend == "onnx-int8@2"
        svc.ingest([str(write(tmp_path / "ferry.txt", ARTICLE))], progress=False)
    finally:
        svc.close()
    again = QAService(settings, encoder=new_build)  # what was recorded survives a restart
    try:
        assert again.index.config.encoder_backend == "onnx-int8@2"
        with again.index.writer():
            pass
    finally:
        again.close()


def test_a_copy_records_the_sources_vectors_by_name_whatever_build_this_qabot_makes(monkeypatch):
    from embeddings.encoders import base as encoder_base
    from embeddings.store.base import encoder_backend
    from embeddings.store.migrate import StoredModel

    monkeypatch.setattr(encoder_base, "INT8_BUILD_VERSION", "2")
    assert encoder_backend(StoredModel(DEFAULT_MODEL, 384, 256, "onnx-int8")) == "onnx-int8"  # still build 1
    copied = StoredModel(DEFAULT_MODEL, 384, 256, "onnx-int8@2")
    assert (encoder_backend(copied), copied.backend) == ("onnx-int8@2", "onnx-int8")
    assert encoder_backend(StoredModel(DEFAULT_MODEL, 384, 256, "torch")) == "torch"
