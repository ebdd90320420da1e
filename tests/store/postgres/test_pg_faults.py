"""The PostgreSQL store under crashes and faults (issue 13's sweep, run against PostgreSQL).

kill -9 of `qabot ingest` / `qabot rm` at every transaction (before and after its commit) and at random
moments; the server going away mid-session; read-only sessions; a full disk; two ingest processes at once; a
corrupted config row; what integrity() reports. Each failure must be one line, and nothing committed may be
lost or mixed. Needs the pgserver fixture."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.base import keyword_text
from tests.fakes.postgres import copy_database, drop_database, read_only
from tests.store.postgres.test_pgstore import assert_consistent
from tests.support import ROOT

psycopg = pytest.importorskip("psycopg")

DIM = 64
PY = sys.executable
BATCH = 4  # passages per commit in the crash runs: several transactions


def pg_service(url: str) -> QAService:
    return QAService(Settings(home=Path("/nonexistent"), store=url), encoder=HashingEncoder(DIM))


def paragraph(i: int, j: int, version: int) -> str:
    # ~60 words: one passage each (chunks hold up to 200 tokens, so keep each story's paragraphs apart
    # by making them long enough to be cut between).
    words = " ".join(f"w{i}x{j}x{k}" for k in range(55))
    return f"Codeword{i}q{version} paragraph {j} of story {i} version {version}: {words}."


def story(i: int, version: int, title: str | None = None, extra: tuple[str, ...] = ()) -> str:
    paras = [paragraph(i, j, version) for j in range(3)] + list(extra)
    return f"{title or f'Story {i} Bulletin'}\n\n" + "\n\n".join(paras) + "\n"


SHARED = paragraph(999, 0, 0)  # one passage text that two documents hold (same title: same embed hash)


def write_v1(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        (folder / f"s{i}.txt").write_text(story(i, 1), encoding="utf-8")
    (folder / "shared_a.txt").write_text(f"Shared Bulletin\n\n{SHARED}\n\n{paragraph(50, 1, 1)}\n", encoding="utf-8")
    return folder


def write_v2(folder: Path) -> Path:
    """s0-s2 updated, s3-s5 unchanged, s6-s8 new; shared_a updated (drops the shared passage), shared_b new
    (holds it): committed in different batches when a batch is small."""
    for i in range(3):
        (folder / f"s{i}.txt").write_text(story(i, 2), encoding="utf-8")
    for i in range(6, 9):
        (folder / f"s{i}.txt").write_text(story(i, 2), encoding="utf-8")
    four = "\n\n".join(paragraph(50, j, 2) for j in range(4))  # a batch of its own (BATCH passages)
    (folder / "shared_a.txt").write_text(f"Shared Bulletin\n\n{four}\n", encoding="utf-8")
    (folder / "shared_b.txt").write_text(f"Shared Bulletin\n\n{SHARED}\n\n{paragraph(51, 1, 2)}\n", encoding="utf-8")
    return folder


def snapshot(url: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """source -> (content hash, passage texts in order)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT d.source, d.content_hash, coalesce(array_agg(p.text ORDER BY p.ordinal)"
                            " FILTER (WHERE p.id IS NOT NULL), '{}') FROM documents d"
                            " LEFT JOIN passages p ON p.doc_id = d.id GROUP BY d.id").fetchall()
    return {r[0]: (r[1], tuple(r[2])) for r in rows}


def assert_vectors_true(url: str) -> None:
    """Every passage's vector (and its embedding row) is the encoder's vector of its text, and non-zero."""
    enc = HashingEncoder(DIM)
    with psycopg.connect(url) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        rows = conn.execute("SELECT p.text, d.title, p.embedding, e.vector FROM passages p"
                            " JOIN documents d ON d.id = p.doc_id"
                            " LEFT JOIN embeddings e ON e.hash = p.embed_hash").fetchall()
    assert rows
    for text, title, emb, row in rows:
        want = enc.encode([keyword_text(title, text)])[0]
        assert row is not None, f"passage without an embedding row: {text[:40]}"
        got, stored = np.asarray(emb.to_numpy()), np.asarray(row.to_numpy())
        assert np.linalg.norm(got) > 0.5
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(stored, want, atol=1e-5)


def assert_whole(url: str, *, queued_orphans_ok: bool = False) -> None:
    assert_consistent(url, queued_orphans_ok=queued_orphans_ok)
    assert_vectors_true(url)
    svc = pg_service(url)
    try:
        report = svc.index.integrity()
        assert report.ok, report.problems
    finally:
        svc.close()


# ---- the shared passage (found in the embedded store's sweep)


def test_a_passage_two_documents_share_keeps_its_embedding_across_batches(pg_url, tmp_path, monkeypatch):
    """shared_a drops the shared passage (its batch's sweep would delete the embedding), shared_b, prepared
    before that commit, reuses it: the ingest must neither fail nor leave shared_b without a vector."""
    from embeddings.ingest import pipeline

    folder = write_v1(tmp_path / "c")
    svc = pg_service(pg_url)
    try:
        assert svc.ingest([str(folder)], progress=False).ok
        write_v2(folder)
        monkeypatch.setattr(pipeline, "COMMIT_EVERY_PASSAGES", 1)  # a batch per document
        report = svc.ingest([str(folder)], progress=False)
        assert report.ok, report.failures
        assert report.count("added") == 4 and report.count("updated") == 4
        ans = svc.ask(SHARED[:80], k=3)
        assert ans.passages and ans.passages[0].text == SHARED
    finally:
        svc.close()
    assert_whole(pg_url)


# ---- kill -9 at every write and at random


DRIVER = """
import os, sys
from embeddings.ingest import pipeline
from embeddings.store.postgres import store as pgstore
pipeline.COMMIT_EVERY_PASSAGES = int(os.environ.get("QABOT_TEST_BATCH", "256"))
when, n = (os.environ.get("QABOT_TEST_CRASH") or "count:0").split(":")
n = int(n)
original = pgstore.PgIndex._write
count = [0]

def write(self, work, attempts=5, **kw):
    count[0] += 1
    if count[0] == n and when == "before":
        def dying(conn):
            work(conn)      # every statement of the transaction ran; the commit never comes
            os._exit(137)
        return original(self, dying, attempts, **kw)
    original(self, work, attempts, **kw)
    print("TX", count[0], file=sys.stderr, flush=True)
    if count[0] == n and when == "after":
        os._exit(137)       # committed; the caller never learns it
pgstore.PgIndex._write = write
from bot.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(url: str, *args: str, crash: str = "", batch: int = 256, timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QABOT_STORE": url, "QABOT_EMBED_MODEL": f"hashing:{DIM}",
           "QABOT_TEST_CRASH": crash, "QABOT_TEST_BATCH": str(batch), **(extra_env or {})}
    return subprocess.run([PY, "-c", DRIVER, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def transactions(r: subprocess.CompletedProcess) -> int:
    return sum(1 for ln in r.stderr.splitlines() if ln.startswith("TX "))


def committed_sources(out: str) -> set[str]:
    return {line.split("\t")[2] for line in out.splitlines() if line.startswith("committed\t")}


def check_after_crash(url: str, folder: Path, old: dict, new: dict, out: str) -> None:
    """Committed-and-printed documents are in their new version; every other one old or new, never mixed;
    nothing committed before is lost."""
    state = snapshot(url)
    for name in committed_sources(out):
        src = str((folder / name).resolve())
        assert state.get(src) == new[src], f"{name} was reported committed but is not in its new version"
    for src, version in state.items():
        assert version in (old.get(src), new.get(src)), f"{src} is neither its old nor its new version"
    for src in old:
        if src in new:  # still in the folder: never lost
            assert src in state, f"{src} (committed before) was lost"
    assert_whole(url, queued_orphans_ok=True)  # a killed writer's sweep is left to the next one


@pytest.fixture
def crash_base(pg_server, pg_url, tmp_path):
    """A store holding v1, the folder rewritten to v2, and the old and new states to compare against."""
    folder = write_v1(tmp_path / "corpus")
    r = run_cli(pg_url, "ingest", "-q", str(folder))
    assert r.returncode == 0, r.stderr
    old = snapshot(pg_url)
    write_v2(folder)
    ref = copy_database(pg_server, pg_url)
    try:
        r = run_cli(ref, "ingest", "-q", str(folder), batch=BATCH)
        assert r.returncode == 0, r.stderr
        new = snapshot(ref)
        count = transactions(r)
    finally:
        drop_database(pg_server, ref)
    assert count >= 3, r.stderr
    return folder, old, new, count


def crash_and_recover(pg_server, base: str, folder: Path, old: dict, new: dict, crash: str = "",
                      kill_after: float | None = None) -> None:
    url = copy_database(pg_server, base)
    try:
        if kill_after is None:
            r = run_cli(url, "ingest", "-q", "-v", str(folder), crash=crash, batch=BATCH)
            assert r.returncode == 137, (crash, r.stdout, r.stderr[-2000:])
            out = r.stdout
        else:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "QABOT_STORE": url, "QABOT_EMBED_MODEL": f"hashing:{DIM}",
                   "QABOT_TEST_BATCH": str(BATCH)}
            proc = subprocess.Popen([PY, "-c", DRIVER, "ingest", "-q", "-v", str(folder)], env=env, cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(kill_after)
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        wait_for_rollback(url)
        check_after_crash(url, folder, old, new, out)
        again = run_cli(url, "ingest", "-q", str(folder), batch=BATCH)  # the next ingest completes the job
        assert again.returncode == 0, again.stderr
        assert snapshot(url) == new
        assert_whole(url)
        svc = pg_service(url)
        try:  # ask finds each document
            for i in (0, 3, 6):
                ans = svc.ask(f"Codeword{i}q{1 if i == 3 else 2} paragraph 1 of story {i}", k=3)
                assert ans.passages and f"story {i} " in ans.passages[0].text
        finally:
            svc.close()
    finally:
        drop_database(pg_server, url)


def wait_for_rollback(url: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:  # the server notices the closed socket and rolls back
        with psycopg.connect(url) as conn:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND pid <> pg_backend_pid()").fetchone()[0]
        if not busy:
            return
        time.sleep(0.05)


def test_kill_9_at_every_ingest_transaction(pg_server, pg_url, crash_base):
    folder, old, new, count = crash_base
    for n in range(1, count + 1):
        for when in ("before", "after"):
            crash_and_recover(pg_server, pg_url, folder, old, new, crash=f"{when}:{n}")


@pytest.mark.slow
def test_kill_9_at_random_moments_of_an_ingest(pg_server, pg_url, crash_base):
    folder, old, new, _ = crash_base
    rng = random.Random(13)
    for _ in range(4):
        crash_and_recover(pg_server, pg_url, folder, old, new, kill_after=rng.uniform(0.8, 2.5))


def test_kill_9_at_every_removal_transaction(pg_server, pg_url, crash_base):
    """`qabot rm PATH` removing a document that shares a passage with another: its transaction and the sweep,
    which must keep the shared embedding. (A shared title is refused since rm removes one document.)"""
    folder, _, new, _ = crash_base
    target = str(folder / "shared_a.txt")
    base = copy_database(pg_server, pg_url)
    try:
        assert run_cli(base, "ingest", "-q", str(folder)).returncode == 0
        probe = copy_database(pg_server, base)
        try:
            r = run_cli(probe, "rm", target)
            assert r.returncode == 0 and r.stdout.count("removed:") == 1, r.stderr
            count = transactions(r)
            after = snapshot(probe)
        finally:
            drop_database(pg_server, probe)
        assert count == 2, r.stderr
        for n in range(1, count + 1):
            for when in ("before", "after"):
                url = copy_database(pg_server, base)
                try:
                    r = run_cli(url, "rm", target, crash=f"{when}:{n}")
                    assert r.returncode == 137, (when, n, r.stderr[-2000:])
                    wait_for_rollback(url)
                    state = snapshot(url)
                    assert {k: v for k, v in state.items() if k in after} == after  # the others untouched
                    for src, version in state.items():
                        assert version == new[src], f"{src} half removed"
                    assert_whole(url, queued_orphans_ok=True)
                    if len(state) > len(after):  # something left to remove: the next rm finishes it
                        assert run_cli(url, "rm", target).returncode == 0
                    else:  # all removed: the next writer sweeps what the killed one queued
                        svc = pg_service(url)
                        with svc.index.writer():
                            pass
                        svc.close()
                    assert snapshot(url) == after
                    assert_consistent(url)
                finally:
                    drop_database(pg_server, url)
    finally:
        drop_database(pg_server, base)


# ---- faults: each one line, nothing committed half, the next call works


def one_line(exc: BaseException) -> str:
    from embeddings.errors import QabotError, user_message

    assert isinstance(exc, QabotError), f"{type(exc).__name__} is not a user-facing error: {exc}"
    text = user_message(exc)
    assert "\n" not in text.strip() and "Traceback" not in text
    return text


def seeded(url: str, folder: Path) -> QAService:
    svc = pg_service(url)
    assert svc.ingest([str(write_v1(folder))], progress=False).ok
    return svc


def terminate_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                                " current_database() AND pid <> pg_backend_pid()").fetchall())


def test_server_dropping_the_sessions_is_survived_by_the_next_call(pg_url, tmp_path):
    """pg_terminate_backend (a server restart, a failover, an idle timeout) kills every pooled connection:
    the next question and the next ingest reconnect instead of failing on a dead socket."""
    svc = seeded(pg_url, tmp_path / "c")
    try:
        assert svc.ask("Codeword1q1 paragraph 1 of story 1").passages
        assert terminate_backends(pg_url) >= 1
        assert svc.ask("Codeword1q1 paragraph 1 of story 1").passages
        assert terminate_backends(pg_url) >= 1
        (tmp_path / "c" / "s9.txt").write_text(story(9, 1), encoding="utf-8")
        assert svc.ingest([str(tmp_path / "c")], progress=False).count("added") == 1
    finally:
        svc.close()


def test_connection_lost_inside_a_write_is_one_line_and_nothing_half(pg_url, tmp_path, monkeypatch):
    from embeddings.store.postgres import store as pgstore

    svc = seeded(pg_url, tmp_path / "c")
    before = snapshot(pg_url)
    original = pgstore.PgStore.put_documents

    def dies(self, conn, docs, vectors, *rest):
        original(self, conn, docs, vectors, *rest)
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # the server goes away mid-transaction

    try:
        write_v2(tmp_path / "c")
        monkeypatch.setattr(pgstore.PgStore, "put_documents", dies)
        with pytest.raises(Exception) as err:
            svc.ingest([str(tmp_path / "c")], progress=False)
        assert "PostgreSQL" in one_line(err.value)
        assert snapshot(pg_url) == before
        monkeypatch.undo()
        assert svc.ingest([str(tmp_path / "c")], progress=False).ok  # the pool reconnects
    finally:
        svc.close()
    assert_whole(pg_url)


def test_server_refusing_connections_is_one_line_then_recovers(pg_server, pg_url, tmp_path, monkeypatch):
    from urllib.parse import urlsplit

    from embeddings.store.postgres.store import PgIndex

    monkeypatch.setattr(PgIndex, "CHECKOUT_TIMEOUT", 2.0)  # how long a call waits for a connection
    svc = seeded(pg_url, tmp_path / "c")
    name = urlsplit(pg_url).path.lstrip("/")
    try:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        started = time.monotonic()
        with pytest.raises(Exception) as err:
            svc.ask("Codeword1q1 paragraph 1 of story 1")
        assert "PostgreSQL" in one_line(err.value)
        assert time.monotonic() - started < 5
        r = run_cli(pg_url, "ask", "Codeword1q1 paragraph 1")
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("qabot: ") and "PostgreSQL" in r.stderr
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    try:
        assert svc.ask("Codeword1q1 paragraph 1 of story 1").passages  # back: the pool reconnects
    finally:
        svc.close()


def test_read_only_sessions_read_and_refuse_writes_in_one_line(pg_url, tmp_path):
    seeded(pg_url, tmp_path / "c").close()
    ro = read_only(pg_url)
    svc = pg_service(ro)
    try:
        assert svc.ask("Codeword2q1 paragraph 1 of story 2").passages
        assert svc.stats().documents == 7 and svc.index.integrity().ok
        write_v2(tmp_path / "c")
        with pytest.raises(Exception) as err:
            svc.ingest([str(tmp_path / "c")], progress=False)
        assert "read-only" in one_line(err.value)
        with pytest.raises(Exception) as err:
            svc.remove(svc.documents()[0].doc_key)
        assert "read-only" in one_line(err.value)
    finally:
        svc.close()
    r = run_cli(ro, "ingest", "-q", str(tmp_path / "c"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "read-only" in r.stderr, r.stderr
    r = run_cli(ro, "ask", "Codeword2q1 paragraph 1 of story 2")
    assert r.returncode == 0, r.stderr


def test_a_role_without_write_grants_reads_and_says_why_it_cannot_write(pg_server, pg_url, tmp_path):
    from urllib.parse import urlsplit, urlunsplit

    seeded(pg_url, tmp_path / "c").close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE qabot_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO qabot_reader")
    p = urlsplit(pg_url)
    reader = urlunsplit((p.scheme, "qabot_reader@" + p.netloc.split("@", 1)[-1], p.path, p.query, p.fragment))
    r = run_cli(reader, "ask", "Codeword2q1 paragraph 1 of story 2")
    assert r.returncode == 0, r.stderr
    write_v2(tmp_path / "c")
    r = run_cli(reader, "ingest", "-q", str(tmp_path / "c"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "permission" in r.stderr and "qabot_reader" in r.stderr, r.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM qabot_reader")
    del pg_server


DISK_FULL_TRIGGER = """
CREATE FUNCTION qabot_test_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device' USING ERRCODE = '53100'; END $$;
CREATE TRIGGER qabot_test_full BEFORE INSERT ON passages FOR EACH STATEMENT EXECUTE FUNCTION qabot_test_full();
"""


def test_disk_full_is_one_line_and_commits_nothing_half(pg_url, tmp_path):
    svc = seeded(pg_url, tmp_path / "c")
    before = snapshot(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(DISK_FULL_TRIGGER)
        write_v2(tmp_path / "c")
        with pytest.raises(Exception) as err:
            svc.ingest([str(tmp_path / "c")], progress=False)
        assert "disk" in one_line(err.value)
        assert snapshot(pg_url) == before
        r = run_cli(pg_url, "ingest", "-q", str(tmp_path / "c"))
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "disk" in r.stderr, r.stderr
        assert snapshot(pg_url) == before
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER qabot_test_full ON passages")
        assert svc.ingest([str(tmp_path / "c")], progress=False).ok
    finally:
        svc.close()
    assert_whole(pg_url)


def test_two_ingest_processes_of_the_same_documents_serialise(pg_url, tmp_path):
    folder = write_v1(tmp_path / "c")
    pg_service(pg_url).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QABOT_STORE": pg_url, "QABOT_EMBED_MODEL": f"hashing:{DIM}",
           "QABOT_TEST_BATCH": "2"}
    procs = [subprocess.Popen([PY, "-c", DRIVER, "ingest", "-q", str(folder)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert assert_consistent(pg_url)["documents"] == 7  # each once
    assert_whole(pg_url)


@pytest.mark.parametrize("value", ['{"model": "hashing:64"', "[]", '{"dimension": 64}', '{"model": "hashing:64",'
                                   ' "dimension": "sixty-four"}'])
def test_corrupted_config_row_is_one_line_saying_what_and_how(pg_url, tmp_path, value):
    seeded(pg_url, tmp_path / "c").close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE qabot_meta SET value = %s WHERE key = 'config'", (value,))
    for args in (("ask", "Codeword2q1"), ("stats",), ("migrate", "--to", str(tmp_path / "copy"))):
        r = run_cli(pg_url, *args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "qabot_meta" in lines[0] and "config" in lines[0], (args, r.stderr)


def test_corrupted_generation_row_is_one_line(pg_url, tmp_path):
    seeded(pg_url, tmp_path / "c").close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE qabot_meta SET value = 'x' WHERE key = 'generation'")
    write_v2(tmp_path / "c")
    r = run_cli(pg_url, "ingest", "-q", str(tmp_path / "c"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "generation" in r.stderr, r.stderr


# ---- integrity() reports real problems


def test_integrity_reports_zero_missing_and_mismatched_vectors_and_scopes(pg_url, tmp_path):
    seeded(pg_url, tmp_path / "c").close()
    svc = pg_service(pg_url)
    try:
        assert svc.index.integrity().ok
        zero = "[" + ",".join(["0"] * DIM) + "]"
        other = "[" + ",".join(["1"] + ["0"] * (DIM - 1)) + "]"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM passages ORDER BY id LIMIT 4")]
            conn.execute("UPDATE passages SET embedding = %s::vector WHERE id = %s", (zero, ids[0]))
            conn.execute("UPDATE passages SET embedding = %s::vector WHERE id = %s", (other, ids[1]))
            conn.execute("UPDATE passages SET scope = 'guild:1' WHERE id = %s", (ids[2],))
            conn.execute("UPDATE passages SET embed_hash = 'nowhere' WHERE id = %s", (ids[3],))
        report = svc.index.integrity()
        assert not report.ok
        text = "; ".join(report.problems)
        assert "zero" in text and "differ" in text and "scope" in text and "lack a stored embedding" in text, text
    finally:
        svc.close()
