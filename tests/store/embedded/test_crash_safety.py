"""SIGKILL an ingest at random moments; the index must always reopen consistent, losing at most the batch in flight.

One index is reused across all trials, so later kills land on an index that already holds data and is
replacing documents (every trial after the first re-ingests a folder in which about half the articles
changed). Two writers are killed:

* ``qabot ingest -v DIR`` (the real CLI): batches of ~256 passages, one SQLite commit each, caches
  published once at the end;
* a small driver calling ``QAService.ingest`` once per file: one commit *and* one cache publish per file,
  so many kills land while dense-*.faiss / kwseg-*/ / artifacts.json are being written.

What is asserted after each kill (on a byte copy of the killed index, opened in-process with a fresh
QAService; every fourth trial also through a fresh `qabot stats/ask` process first):

1. it opens, without calling the encoder (caches are rebuilt from stored embeddings, never re-embedded);
2. integrity: FAISS ids == BM25 ids == SQLite passage ids, cache generation == SQLite generation, and
   artifacts.json names that generation (the repair was persisted);
3. with B = state before the trial, T = target state (the versions on disk), C = documents printed as
   ``committed`` before the kill, A = state after:
   * every d in C has A[d] == T[d]  (committed means durable: present, with the new version);
   * every d not in C has A[d] in {B[d], T[d]}  (never a mix, never lost, never half-replaced);
   * the documents not in C that did change are a prefix (in processing order) of the documents after
     the last committed one that needed a change: exactly one batch at most landed unreported, namely
     the one committed just before the kill, whose line was not printed yet;
   * if the process exited on its own, A == T;
4. every present document is whole: its passages tile its text (passage text == text[start:end], ordinals
   0..n-1, every non-space character covered), every passage has a stored embedding and its FAISS vector
   equals the embedding of its text, no embedding is orphaned, and `ask` for the document's marker word
   returns a passage of it.

Separately, damaged artifacts (artifacts.json deleted/garbage/stale, dense file deleted/truncated, each
keyword segment file truncated) must be rebuilt from SQLite on the next open, without re-embedding."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoders.hashing import HashingEncoder
from embeddings.ingest.pipeline import doc_key_for
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.base import keyword_text
from embeddings.store.embedded.index import EmbeddedIndex
from tests.support import ROOT

pytestmark = pytest.mark.slow

MODEL = "hashing:64"
N_DOCS = 60
TRIALS = 28
SEED = 20240611

DRIVER = r"""
import sys
from embeddings.settings import Settings
from embeddings.service import QAService

svc = QAService(Settings.from_env())

def committed(outcomes):
    for o in outcomes:
        print(f"committed\t{o.doc_key}\t{o.name}", flush=True)

for path in sys.argv[1:]:
    report = svc.ingest([path], progress=False, on_commit=committed)
    if not report.ok:
        sys.exit(f"failed: {report.failures}")
svc.close()
"""

_VOCAB_RNG = random.Random(SEED)
VOCAB = sorted({"".join(_VOCAB_RNG.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_VOCAB_RNG.randint(3, 9)))
                for _ in range(4000)})
VERSION_RE = re.compile(r"\bvermark(\d{3})x(\d+)\b")


class CountingEncoder(HashingEncoder):
    """The hashing encoder, counting how many texts it was asked to encode."""

    def __init__(self, dimension: int = 64) -> None:
        super().__init__(dimension)
        self.texts = 0

    def encode(self, texts, *, batch_size: int = 64):
        self.texts += len(texts)
        return super().encode(texts, batch_size=batch_size)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_") and k != "DISCORD_TOKEN"}
    env.update(QABOT_HOME=str(home), QABOT_EMBED_MODEL=MODEL, NO_COLOR="1", HF_HUB_OFFLINE="1")
    return env


# ------------------------------------------------------------------ a corpus with versions


def _paragraph(rng: random.Random, marks: str) -> str:
    sentences, words = [], 0
    while words < 55:
        n = rng.randint(8, 15)
        words += n
        sentences.append(" ".join(rng.choice(VOCAB) for _ in range(n)).capitalize() + ".")
    return f"{marks} " + " ".join(sentences)


class Corpus:
    """N_DOCS articles in one folder. Version v of article i keeps some paragraphs of earlier versions (so
    their embeddings are reused on re-ingest) and replaces others; its first paragraph names the version."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.version = [0] * N_DOCS
        for i in range(N_DOCS):
            self.write(i)

    def path(self, i: int) -> Path:
        return self.folder / f"{i:03d}.txt"

    def key(self, i: int) -> str:
        return doc_key_for("", str(self.path(i).resolve()))

    def text(self, i: int, v: int) -> str:
        n = 12 + random.Random(f"{i}/{v}/n").randint(0, 8)
        paras = []
        for j in range(n):
            own = v > 0 and (j + v) % 3 == 0
            rng = random.Random(f"{i}/{v if own else 'base'}/{j}")
            marks = f"docmark{i:03d}" + (f" vermark{i:03d}x{v}" if j == 0 else "")
            paras.append(_paragraph(rng, marks))
        return f"Article {i:03d} on {VOCAB[i * 7]} and {VOCAB[i * 11]}\n\n" + "\n\n".join(paras) + "\n"

    def write(self, i: int) -> None:
        self.path(i).write_text(self.text(i, self.version[i]), encoding="utf-8")

    def bump(self, indices: list[int]) -> None:
        for i in indices:
            self.version[i] += 1
            self.write(i)

    def target(self) -> dict[str, int]:
        return {self.key(i): self.version[i] for i in range(N_DOCS)}


# ------------------------------------------------------------------ running and killing writers


def start_writer(kind: str, home: Path, corpus: Corpus, order: list[int]) -> subprocess.Popen:
    if kind == "cli":
        cmd = [sys.executable, "-m", "bot.cli", "ingest", "-v", "-q", str(corpus.folder)]
    else:
        cmd = [sys.executable, "-c", DRIVER, *(str(corpus.path(i)) for i in order)]
    return subprocess.Popen(cmd, env=_env(home), cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def committed_keys(stdout: str) -> list[str]:
    return [ln.split("\t")[1] for ln in stdout.splitlines() if ln.startswith("committed\t")]


# ------------------------------------------------------------------ checking an index


def _sql(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / EmbeddedIndex.DB)


def open_and_check(home: Path, corpus: Corpus, rng: random.Random) -> dict[str, int]:
    """Open like a fresh process would, check everything in the module docstring's points 1, 2 and 4;
    returns {doc_key: version} of the documents present."""
    enc = CountingEncoder(64)
    svc = QAService(Settings(home=home), encoder=enc)
    try:
        assert enc.texts == 0, "opening re-embedded passages instead of using the stored embeddings"
        report = svc.index.integrity()
        assert report.ok, report.problems
        generation = svc.index.store.generation()
        art = json.loads((home / EmbeddedIndex.ARTIFACTS).read_text()) if generation else None
        if art is not None:  # the (possibly repaired) caches on disk are the ones for this generation
            assert art["generation"] == generation
            assert (home / art["dense"]).is_file()
            assert all((home / name).is_dir() for name in art["keyword_segments"])

        con = _sql(home)
        try:
            versions = _check_documents(con, corpus)
            ids = [r[0] for r in con.execute("SELECT id FROM passages ORDER BY id")]
            rows = con.execute("SELECT p.text, d.title FROM passages p JOIN documents d ON d.id = p.doc_id"
                               " ORDER BY p.id").fetchall()
        finally:
            con.close()
        # FAISS holds, for every passage, the embedding of that passage (not a neighbour's, not zeros).
        if ids:
            expected = HashingEncoder(64).encode([keyword_text(title, text) for text, title in rows])
            np.testing.assert_allclose(svc.index.vectors(ids), expected, atol=1e-5)

        present = sorted(versions)
        keys = {corpus.key(i): i for i in range(N_DOCS)}
        for key in rng.sample(present, min(4, len(present))):
            answer = svc.ask(f"docmark{keys[key]:03d}", k=5)
            assert any(p.citation.doc_key == key for p in answer.passages), f"ask finds nothing from {key}"
        absent = [k for k in keys if k not in versions]
        for key in rng.sample(absent, min(2, len(absent))):
            answer = svc.ask(f"docmark{keys[key]:03d}", k=5)
            assert all(f"docmark{keys[key]:03d}" not in p.text for p in answer.passages)
        return versions
    finally:
        svc.close()


def _check_documents(con: sqlite3.Connection, corpus: Corpus) -> dict[str, int]:
    keys = {corpus.key(i): i for i in range(N_DOCS)}
    versions: dict[str, int] = {}
    docs = con.execute("SELECT id, doc_key, source, text FROM documents").fetchall()
    for doc_id, key, source, text in docs:
        assert key in keys, f"unknown document {key} {source}"
        i = keys[key]
        assert source == str(corpus.path(i).resolve())
        found = VERSION_RE.findall(text)
        assert len(found) == 1 and int(found[0][0]) == i, f"{source}: version marker {found}"
        version = int(found[0][1])
        assert text == _expected_text(corpus, i, version), f"{source}: stored text is not version {version}"
        versions[key] = version
        passages = con.execute('SELECT ordinal, start, "end", text FROM passages WHERE doc_id = ? ORDER BY ordinal',
                               (doc_id,)).fetchall()
        assert passages, f"{source} has no passages"
        assert [p[0] for p in passages] == list(range(len(passages))), f"{source}: ordinals have gaps"
        covered = np.zeros(len(text), dtype=bool)
        for _, start, end, ptext in passages:
            assert text[start:end] == ptext
            covered[start:end] = True
        uncovered = [c for c, cov in zip(text, covered, strict=True) if not cov and not c.isspace()]
        assert not uncovered, f"{source}: {len(uncovered)} characters in no passage"
    missing = con.execute("SELECT COUNT(*) FROM passages p LEFT JOIN embeddings e ON e.hash = p.embed_hash"
                          " WHERE e.hash IS NULL").fetchone()[0]
    assert missing == 0, f"{missing} passages without a stored embedding"
    orphans = con.execute("SELECT COUNT(*) FROM embeddings WHERE hash NOT IN (SELECT embed_hash FROM passages)"
                          ).fetchone()[0]
    assert orphans == 0, f"{orphans} orphaned embeddings"
    return versions


def _expected_text(corpus: Corpus, i: int, version: int) -> str:
    # What extraction keeps of our file: the body without the title line.
    return corpus.text(i, version).split("\n\n", 1)[1].rstrip("\n")


def check_transition(before: dict[str, int], target: dict[str, int], after: dict[str, int],
                     order: list[str], committed: list[str], finished: bool) -> int:
    """Point 3 of the module docstring; returns how many documents landed without their line."""
    c = set(committed)
    assert c <= set(target), "committed lines name documents that were not ingested"
    for key in c:
        assert after.get(key) == target[key], f"{key} was reported committed but holds {after.get(key)}"
    changed = [k for k in order if k not in c and after.get(k) != before.get(k)]
    for key in changed:
        assert after.get(key) == target[key], f"{key} holds neither its old nor its new version"
    last = max((order.index(k) for k in c), default=-1)
    need = [k for k in order[last + 1:] if before.get(k) != target[k]]
    assert changed == need[:len(changed)], (
        f"documents changed without being reported: {changed}; only a prefix of {need} may (one batch)")
    if finished:
        assert after == target, "the ingest finished but the index does not hold the files' versions"
    return len(changed)


def cli_check(home: Path, corpus: Corpus, versions: dict[str, int]) -> None:
    """A fresh `qabot` process opens the (crashed) index, reports integrity ok and answers from it."""
    st = subprocess.run([sys.executable, "-m", "bot.cli", "stats", "--json"], env=_env(home), cwd=str(ROOT),
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stderr
    stats = json.loads(st.stdout)
    assert stats["integrity"] == "ok" and stats["documents"] == len(versions), stats
    if versions:
        key = sorted(versions)[0]
        i = next(i for i in range(N_DOCS) if corpus.key(i) == key)
        ask = subprocess.run([sys.executable, "-m", "bot.cli", "ask", f"docmark{i:03d}", "--json"], env=_env(home),
                             cwd=str(ROOT), capture_output=True, text=True, timeout=60)
        assert ask.returncode == 0, ask.stderr
        assert any(p["doc"] == key for p in json.loads(ask.stdout)["passages"])


# ------------------------------------------------------------------ the kill trials


def test_sigkill_during_ingest_never_corrupts_the_index(tmp_path):
    rng = random.Random(SEED)
    corpus = Corpus(tmp_path / "articles")

    # Calibration (and the uninterrupted control): one full CLI ingest into a scratch index.
    scratch = tmp_path / "scratch"
    t0 = time.monotonic()
    proc = start_writer("cli", scratch, corpus, list(range(N_DOCS)))
    out, err = proc.communicate(timeout=120)
    full = time.monotonic() - t0
    assert proc.returncode == 0, err
    assert set(committed_keys(out)) == set(corpus.target())
    assert len(re.findall(r"^committed", out, re.M)) == N_DOCS
    assert open_and_check(scratch, corpus, rng) == corpus.target()
    assert 0.3 < full < 30

    home = tmp_path / "idx"
    state: dict[str, int] = {}
    killed = landed_unreported = partial = 0
    for trial in range(TRIALS):
        kind = "driver" if trial % 3 == 2 else "cli"
        if trial:
            corpus.bump(rng.sample(range(N_DOCS), N_DOCS // 2))
        order_idx = list(range(N_DOCS))
        if kind == "driver":
            rng.shuffle(order_idx)
        order = [corpus.key(i) for i in order_idx]
        target = corpus.target()
        delay = rng.uniform(0.0, full)

        proc = start_writer(kind, home, corpus, order_idx)
        time.sleep(delay)
        was_running = proc.poll() is None
        if was_running:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        finished = proc.returncode == 0
        assert finished or (was_running and proc.returncode == -signal.SIGKILL), (trial, proc.returncode, err)
        killed += not finished

        if not (home / EmbeddedIndex.CONFIG).exists():  # killed before the index existed at all
            assert not committed_keys(out)
            continue
        # Check a byte copy, so the next trial's writer meets the index exactly as the kill left it.
        check = tmp_path / f"check-{trial}"
        shutil.copytree(home, check)
        if trial % 4 == 3:
            cli_check(check, corpus, _peek_versions(check, corpus))
        stale = _caches_behind(check)
        after = open_and_check(check, corpus, rng)
        n = check_transition(state, target, after, order, committed_keys(out), finished)
        landed_unreported += n > 0
        partial += (not finished) and after != target and after != state
        print(f"trial {trial:2d} {kind:6} delay {delay:.2f} {'killed' if not finished else 'finished'}"
              f" committed {len(committed_keys(out)):2d} unreported {n} changed"
              f" {sum(after.get(k) != state.get(k) for k in target):2d} stale-caches {stale}")
        state = after
        shutil.rmtree(check)

    # The trials must actually have hit running writers, and mid-ingest states.
    assert killed >= TRIALS // 2, f"only {killed} of {TRIALS} trials killed a running writer"
    assert partial >= 4, f"only {partial} kills left a partially ingested index"

    # Finally let one ingest run to completion on the much-crashed index: it converges to the files.
    proc = start_writer("cli", home, corpus, list(range(N_DOCS)))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert open_and_check(home, corpus, rng) == corpus.target()
    print(f"{TRIALS} trials, {killed} killed, {partial} partial, {landed_unreported} with an unreported batch;"
          f" full ingest {full:.2f} s")


def _caches_behind(home: Path) -> str:
    """How the kill left the caches: "" (current), "behind" (artifacts.json older than SQLite) and/or
    "tmp" (a half-published cache file or folder lying around)."""
    what = []
    try:
        art = json.loads((home / EmbeddedIndex.ARTIFACTS).read_text())["generation"]
    except (OSError, ValueError, KeyError):
        art = None
    with _sql(home) as con:
        row = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    if art != (int(row[0]) if row else 0):
        what.append("behind")
    if any(p.name.startswith((".kwseg-", ".dense-", ".artifacts")) for p in home.iterdir()):
        what.append("tmp")
    return "+".join(what) or "-"


def _peek_versions(home: Path, corpus: Corpus) -> dict[str, int]:
    con = _sql(home)
    try:
        return {key: int(VERSION_RE.search(text)[2]) for key, text in con.execute("SELECT doc_key, text FROM documents")}
    finally:
        con.close()


# ------------------------------------------------------------------ damaged artifacts, directly


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Corpus, list[tuple[int, float]]]:
    root = tmp_path_factory.mktemp("built")
    corpus = Corpus(root / "articles")
    home = root / "idx"
    svc = QAService(Settings(home=home), encoder=HashingEncoder(64))
    try:
        report = svc.ingest([str(corpus.path(i)) for i in range(12)], progress=False)
        assert report.ok and report.count("added") == 12
        corpus.bump([0, 1, 2])  # give the index a replacement too (orphans dropped, generation > 1)
        assert svc.ingest([str(corpus.path(i)) for i in range(3)], progress=False).count("updated") == 3
        baseline = _ask_fingerprint(svc)
    finally:
        svc.close()
    return home, corpus, baseline


def _ask_fingerprint(svc: QAService) -> list[tuple[int, float]]:
    out = []
    for q in ("docmark003", "docmark007 vermark000x1", f"{VOCAB[5]} {VOCAB[77]} {VOCAB[300]}"):
        out += [(p.passage_id, round(p.score, 4)) for p in svc.ask(q, k=8).passages]
    return out


def _damage_cases(home: Path) -> list[str]:
    art = json.loads((home / EmbeddedIndex.ARTIFACTS).read_text())
    files = sorted(p.name for p in (home / art["keyword_segments"][-1]).iterdir())
    assert {"ids.npy", "terms.json", "rows.npy"} <= set(files) and len(files) >= 6, files
    return ["delete-artifacts", "garbage-artifacts", "truncate-artifacts", "stale-generation", "delete-dense",
            "truncate-dense", "empty-dense", "delete-keyword-dir"] + [f"truncate-keyword/{f}" for f in files]


def _damage(home: Path, case: str) -> None:
    art_path = home / EmbeddedIndex.ARTIFACTS
    art = json.loads(art_path.read_text())
    dense, keyword = home / art["dense"], home / art["keyword_segments"][-1]

    def truncate(p: Path) -> None:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    if case == "delete-artifacts":
        art_path.unlink()
    elif case == "garbage-artifacts":
        art_path.write_bytes(b"\x00\xffnot json{")
    elif case == "truncate-artifacts":
        truncate(art_path)
    elif case == "stale-generation":  # a writer died after committing, before publishing its caches
        art_path.write_text(json.dumps({**art, "generation": art["generation"] - 1}))
    elif case == "delete-dense":
        dense.unlink()
    elif case == "truncate-dense":
        truncate(dense)
    elif case == "empty-dense":
        dense.write_bytes(b"")
    elif case == "delete-keyword-dir":
        shutil.rmtree(keyword)
    elif case.startswith("truncate-keyword/"):
        truncate(keyword / case.split("/", 1)[1])
    else:  # pragma: no cover
        raise AssertionError(case)


def test_damaged_artifacts_are_rebuilt_from_sqlite_without_reembedding(built, tmp_path, monkeypatch):
    base, corpus, baseline = built
    cases = _damage_cases(base)
    with _sql(base) as con:
        counts = con.execute("SELECT (SELECT COUNT(*) FROM passages), (SELECT COUNT(*) FROM embeddings)").fetchone()
    for case in cases:
        home = tmp_path / case.replace("/", "_")
        shutil.copytree(base, home)
        _damage(home, case)

        enc = CountingEncoder(64)
        svc = QAService(Settings(home=home), encoder=enc)
        try:
            assert enc.texts == 0, f"{case}: opening re-embedded {enc.texts} texts"
            report = svc.index.integrity()
            assert report.ok, (case, report.problems)
            assert _ask_fingerprint(svc) == baseline, f"{case}: answers differ from the undamaged index"
        finally:
            svc.close()
        with _sql(home) as con:
            assert con.execute("SELECT (SELECT COUNT(*) FROM passages), (SELECT COUNT(*) FROM embeddings)"
                               ).fetchone() == counts, case
        art = json.loads((home / EmbeddedIndex.ARTIFACTS).read_text())
        with _sql(home) as con:
            generation = int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        assert art["generation"] == generation, case

        # The repair was persisted: the next open loads the caches and does not rebuild again.
        with monkeypatch.context() as m:
            def no_rebuild(*a, _case=case, **k):
                raise AssertionError(f"{_case}: caches rebuilt a second time")
            m.setattr(EmbeddedIndex, "_rebuild", no_rebuild)
            svc = QAService(Settings(home=home), encoder=HashingEncoder(64))
            try:
                assert svc.index.integrity().ok
                assert _ask_fingerprint(svc) == baseline
            finally:
                svc.close()
        assert open_and_check(home, corpus, random.Random(case)) == {corpus.key(i): corpus.version[i]
                                                                      for i in range(12)}
        shutil.rmtree(home)
