"""The crash-point sweep: every write point of add, update, rm, an update that switches the dense index to
IVF, and a reader's repair, is crashed at in turn (tests/fakes/crashpoints.py: the child os._exit(137)s at its
N-th write point, for N = 1 .. all of them), and each crashed index must reopen with:

* nothing committed lost or mixed: every document is exactly as before the operation or exactly as after
  it (each operation here is one SQLite transaction), and running the operation again completes it;
* integrity ok, the repair persisted (artifacts.json names SQLite's generation), no temp or stale files;
* every passage's stored embedding equal to the embedding of its text and non-zero, its FAISS vector
  equal to the stored one, no orphaned embeddings, and no re-embedding on open.

Default: a small index, each operation one commit (~30 s in all on one core). `-m slow`: a bigger index
and a commit per document, so crashes also land between the batches of one ingest."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.base import keyword_text
from embeddings.store.embedded import dense
from tests.fakes.crashpoints import DIM
from tests.support import ROOT

IVF_AT = 24  # passages: the "ivf" operation crosses it (dense.IVF_THRESHOLD is 50k otherwise)


class CountingEncoder(HashingEncoder):
    calls = 0

    def encode(self, texts, *, batch_size: int = 64):
        CountingEncoder.calls += len(texts)
        return super().encode(texts, batch_size=batch_size)


def para(topic: str, n: int = 6) -> str:
    return " ".join(f"The {topic} report sentence {i} describes the harbour council plan in detail." for i in range(n))


def article(title: str, *topics: str) -> str:
    return title + "\n\n" + "\n\n".join(para(t) for t in topics) + "\n"


def documents(home: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """source -> (content hash, passage texts): what must be exactly before or exactly after."""
    con = sqlite3.connect(f"file:{home / 'qabot.sqlite3'}?mode=ro", uri=True)
    try:
        docs = {}
        for doc_id, source, chash in con.execute("SELECT id, source, content_hash FROM documents"):
            texts = tuple(t for (t,) in con.execute("SELECT text FROM passages WHERE doc_id = ? ORDER BY ordinal",
                                                     (doc_id,)))
            docs[source] = (chash, texts)
        return docs
    finally:
        con.close()


def run_child(home: Path, op: str, n: int, files: list[str], batch: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "CRASHPOINTS_BATCH": str(batch or "")}
    return subprocess.run([sys.executable, "-m", "tests.fakes.crashpoints", str(home), op, str(n),
                           str(IVF_AT if op == "ivf" else 0), *files],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)


def check_invariants(home: Path, before: dict, after: dict, op: str, *, one_commit: bool = True) -> None:
    CountingEncoder.calls = 0
    svc = QAService(Settings(home=home), encoder=CountingEncoder(DIM))
    try:
        assert CountingEncoder.calls == 0, "opening re-embedded passages"
        state = documents(home)
        if one_commit:
            assert state in (before, after), "a document is lost, half-written or mixed"
        for source in before.keys() | after.keys() | state.keys():  # each document is one version or the other
            assert state.get(source) in (before.get(source), after.get(source)), f"{source} is lost or mixed"
        report = svc.index.integrity()
        assert report.ok, report.problems
        art = json.loads((home / "artifacts.json").read_text())
        assert art["generation"] == svc.index.store.generation(), "the repair was not persisted"
        live = {"config.json", "qabot.sqlite3", "qabot.sqlite3-wal", "qabot.sqlite3-shm", "writer.lock",
                "artifacts.json", art["dense"], *art["keyword_segments"]}
        extra = {p.name for p in home.iterdir()} - live
        assert not extra, f"temp or stale files left: {extra}"
        store = svc.index.store
        ids, _ = store.passage_ids_and_scopes()
        rows = svc.index.passages(ids.tolist())
        stored = store.vectors_for(ids.tolist(), DIM)
        expected = HashingEncoder(DIM).encode([keyword_text(rows[i].doc.title, rows[i].text) for i in ids.tolist()])
        assert np.all(np.linalg.norm(stored, axis=1) > 0), "a stored embedding is missing or zero"
        np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(svc.index.vectors(ids.tolist()), stored)
        con = sqlite3.connect(f"file:{home / 'qabot.sqlite3'}?mode=ro", uri=True)
        orphans = con.execute("SELECT COUNT(*) FROM embeddings WHERE hash NOT IN (SELECT embed_hash FROM passages)"
                              ).fetchone()[0]
        con.close()
        assert orphans == 0, f"{orphans} orphaned embeddings"
        if op == "ivf" and state == after:
            assert svc.index._caches.dense.kind == "ivf"
    finally:
        svc.close()


def build(root: Path, size: int) -> tuple[Path, dict[str, list[str]]]:
    """A template index and, per operation, its arguments (files to ingest, or a title to remove)."""
    src = root / "src"
    src.mkdir()
    files = {}
    for i in range(size):
        files[f"base{i}"] = src / f"base{i}.txt"
        files[f"base{i}"].write_text(article(f"Base {i}", f"seal colony {i}", f"ferry route {i}"))
    home = root / "template"
    svc = QAService(Settings(home=home), encoder=HashingEncoder(DIM))
    assert svc.ingest([str(p) for p in files.values()], progress=False).ok
    svc.close()
    new = src / "new.txt"
    new.write_text(article("New", "lighthouse", "harbour wall"))
    # update: base0 drops its seal-colony passage, which a new document with the same title reuses
    upd = src / "upd" / "base0.txt"
    upd.parent.mkdir()
    (src / "base0.txt").write_text(article("Base 0", "ferry timetable"))
    shared = src / "shared.txt"
    shared.write_text(article("Base 0", "seal colony 0", "night ferry"))
    ivf = []
    for i in range(IVF_AT // 3):  # 3 passages each: past IVF_AT with the base documents
        ivf.append(src / f"ivf{i}.txt")
        ivf[-1].write_text(article(f"Grow {i}", *(f"growth topic {i} {k}" for k in range(3))))
    ops = {"add": [str(new)], "update": [str(src / "base0.txt"), str(shared)], "rm": ["Base 1"],
           "ivf": [str(p) for p in ivf], "repair": []}
    return home, ops


def sweep(tmp_path: Path, op: str, size: int, monkeypatch, batch: int = 0) -> int:
    monkeypatch.setattr(dense, "IVF_THRESHOLD", IVF_AT)  # (the verifier's repairs fit the same way)
    template, ops = build(tmp_path, size)
    if op == "repair":
        (template / "artifacts.json").unlink()  # as after a writer killed before publishing
    before = documents(template)
    whole = tmp_path / "whole"
    shutil.copytree(template, whole)
    done = run_child(whole, op, 0, ops[op], batch)
    assert done.returncode == 0, done.stderr
    total = json.loads(done.stdout)["points"]
    after = documents(whole)
    assert op == "repair" or after != before
    assert total >= 2
    print(f"{op}: {total} write points")
    for n in range(1, total + 1):
        home = tmp_path / f"crash{n}"
        shutil.copytree(template, home)
        proc = run_child(home, op, n, ops[op], batch)
        assert proc.returncode == 137, (n, proc.returncode, proc.stderr)
        try:
            check_invariants(home, before, after, op, one_commit=not batch)
            if documents(home) != after:  # doing it again (here, in-process) completes it
                svc = QAService(Settings(home=home), encoder=HashingEncoder(DIM))
                if op == "rm":
                    svc.remove(ops[op][0])
                elif op != "repair":
                    assert svc.ingest(ops[op], progress=False).ok
                svc.close()
            assert documents(home) == after
            check_invariants(home, after, after, op)
        except AssertionError as exc:
            raise AssertionError(f"{op}: crash at write point {n} of {total}: {exc}") from exc
        shutil.rmtree(home)
    return total


OPS = ["add", "update", "rm", "ivf", "repair"]


@pytest.mark.parametrize("op", OPS)
def test_crash_at_every_write_point(tmp_path, op, monkeypatch):
    sweep(tmp_path, op, size=3, monkeypatch=monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("op", OPS)
def test_crash_at_every_write_point_bigger_index(tmp_path, op, monkeypatch):
    sweep(tmp_path, op, size=12, monkeypatch=monkeypatch, batch=2)  # a commit per document
