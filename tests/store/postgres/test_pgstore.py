"""PostgreSQL store beyond the shared contract: migrations, guild recall, concurrent processes, kill -9,
copying between stores (`qabot migrate`), and the CLI's store line. Needs the pgserver fixture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoders.hashing import HashingEncoder
from embeddings.models import guild_scope
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.records import NewDocument, NewPassage, PassageVectors
from tests.support import ROOT, SEEDS

psycopg = pytest.importorskip("psycopg")

ARTICLE = """Harbour Council Approves New Ferry Route

The harbour council approved a new ferry route between Northport and the island of Carrow on Tuesday.

The route will start in May and run twice a day, the council said, because demand from commuters doubled.

Critics said the ferry would harm the seal colony near Carrow, which biologists have counted since 1990.
"""

TOPICS = ("harbour ferry", "mountain railway", "river bridge", "city tram", "island airport", "canal lock",
          "coastal road", "valley tunnel", "desert pipeline", "forest trail", "lake steamer", "border crossing")


def pg_service(url: str, dim: int = 256) -> QAService:
    return QAService(Settings(home=Path("/nonexistent"), store=url), encoder=HashingEncoder(dim))


def article(i: int, topic: str, extra: str = "") -> str:
    body = "\n\n".join(f"Report {i} on the {topic}: paragraph {j} says officials in town {i} met on day {j} "
                       f"to discuss the {topic} budget and its delays. {extra}" for j in range(3))
    return f"The {topic.title()} Story Number {i}\n\n{body}\n"


def write_corpus(folder: Path, start: int, n: int, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / f"doc{i:03d}.txt").write_text(article(i, TOPICS[i % len(TOPICS)], extra), encoding="utf-8")
    return folder


def assert_consistent(url: str, *, queued_orphans_ok: bool = False) -> dict[str, int]:
    """No half-written state: every passage has its document and embedding, no orphans, no duplicates.
    `queued_orphans_ok`: embeddings without passages are allowed if queued for the sweep (a killed writer's)."""
    with psycopg.connect(url) as conn:
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert q("SELECT count(*) FROM passages p LEFT JOIN documents d ON d.id = p.doc_id WHERE d.id IS NULL") == 0
        assert q("SELECT count(*) FROM passages p LEFT JOIN embeddings e ON e.hash = p.embed_hash"
                 " WHERE e.hash IS NULL") == 0
        queued = " AND NOT EXISTS (SELECT 1 FROM qabot_sweep s WHERE s.hash = e.hash)" if queued_orphans_ok else ""
        assert q("SELECT count(*) FROM embeddings e WHERE NOT EXISTS"
                 " (SELECT 1 FROM passages p WHERE p.embed_hash = e.hash)" + queued) == 0
        assert q("SELECT count(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM passages p"
                 " WHERE p.doc_id = d.id)") == 0
        assert q("SELECT count(*) FROM (SELECT scope, source FROM documents GROUP BY 1, 2 HAVING count(*) > 1) x") == 0
        # Each document has its passages 0..n-1 exactly once: nothing half-replaced.
        assert q("SELECT count(*) FROM (SELECT doc_id FROM passages GROUP BY doc_id"
                 " HAVING count(*) <> max(ordinal) + 1 OR count(DISTINCT ordinal) <> count(*)) x") == 0
        return {"documents": q("SELECT count(*) FROM documents"), "passages": q("SELECT count(*) FROM passages")}


# ---- schema


def test_migrations_are_versioned_idempotent_and_safe_for_concurrent_starters(pg_url):
    from embeddings.store.postgres.schema import LATEST, migrate

    def open_close(_: int) -> str:
        svc = pg_service(pg_url)
        cfg = svc.index.config.model
        svc.close()
        return cfg

    with ThreadPoolExecutor(4) as pool:  # four processes' worth of first starts on an empty database
        assert set(pool.map(open_close, range(4))) == {"hashing:256"}
    with psycopg.connect(pg_url) as conn:
        assert migrate(conn) == []
        rows = conn.execute("SELECT version FROM qabot_schema_migrations").fetchall()
        assert [r[0] for r in rows] == list(range(1, LATEST + 1))
        assert conn.execute("SELECT count(*) FROM qabot_meta WHERE key = 'config'").fetchone()[0] == 1
        typ = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                           " WHERE attrelid = 'passages'::regclass AND attname = 'embedding'").fetchone()[0]
        assert typ == "vector(256)"


def test_open_without_create_on_empty_database_says_so(pg_url):
    from embeddings.errors import IndexCorrupt

    with pytest.raises(IndexCorrupt, match="No qabot store"):
        QAService(Settings(home=Path("/x"), store=pg_url), encoder=HashingEncoder(256), create=False)


def test_unreachable_server_is_a_user_facing_error(tmp_path):
    from embeddings.errors import QabotError, user_message

    with pytest.raises(QabotError) as err:
        pg_service(f"postgresql://qabot:secret@/nodb?host={tmp_path}&connect_timeout=2")
    assert "Cannot use PostgreSQL" in user_message(err.value) and "secret" not in user_message(err.value)


def test_redact_url():
    from embeddings.store.urls import redact_url

    assert redact_url("postgresql://bot:hunter2@db.example:5432/qa") == "postgresql://bot:***@db.example:5432/qa"
    assert redact_url("postgres://db/qa?password=hunter2&sslmode=require") == \
        "postgres://db/qa?password=***&sslmode=require"
    assert redact_url("postgresql:///qa") == "postgresql:///qa"


# ---- read replicas


def test_questions_read_the_replica_and_writes_go_to_the_primary(pg_server, pg_url, tmp_path):
    """The "replica" is a read-only copy of the primary taken after the first ingest: answers must come from
    it (so they cannot see what was ingested after the copy: replica lag), every write must reach the
    primary (a write on the copy would fail: its sessions are read-only)."""
    from tests.fakes.postgres import copy_database, drop_database, read_only

    first = pg_service(pg_url)
    first.ingest([str(SEEDS)], progress=False)
    first.close()
    replica_db = copy_database(pg_server, pg_url)
    # trust authentication on the test server ignores the password: it is here to be masked.
    replica = read_only(replica_db.replace("postgresql://postgres:@", "postgresql://postgres:hunter2@", 1))
    assert "hunter2" in replica
    svc = QAService(Settings(home=Path("/nonexistent"), store=pg_url, store_read=(replica,)),
                    encoder=HashingEncoder(256))
    try:
        idx = svc.index
        # (c) the replica pool cannot write, so a write routed to it would fail the steps below.
        with idx._read.connection() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("UPDATE qabot_meta SET value = value WHERE key = 'generation'")
        # (b) writes and the reads that decide them go to the primary.
        ferry = tmp_path / "ferry.txt"
        ferry.write_text(ARTICLE, encoding="utf-8")
        assert svc.ingest([str(ferry)], progress=False).count("added") == 1
        assert svc.ingest([str(ferry)], progress=False).count("unchanged") == 1, "decided on the primary"
        assert svc.ask("why did Egypt cut ties with Iran?").passages
        assert svc.record_feedback(answer_key="r1", user_id=1, answer=svc.ask("ferry route"), vote=1) is False
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 2
            assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
        # (a) questions are answered from the replica, which never received the ferry article.
        assert svc.stats().documents == 1
        ans = svc.ask("When will the ferry route start between Northport and Carrow?", k=5)
        assert all("ferry" not in p.text for p in ans.passages)
        assert len(idx.keyword_search("ferry Northport Carrow", 10)[0]) == 0
        assert svc.remove(str(ferry)) == ["Harbour Council Approves New Ferry Route"]  # found on the primary
        line = idx.describe()
        assert "hunter2" not in line and "postgres:***@" in line and "reads from" in line
        assert "hunter2" not in svc.stats().home
    finally:
        svc.close()
        drop_database(pg_server, replica_db)
    # Unset, everything reads the primary again: the ferry article came and went there.
    again = pg_service(pg_url)
    assert again.stats().documents == 1 and again.index.store.generation() == 3
    again.close()


def test_replica_settings_errors_are_clear_and_masked(pg_url, tmp_path):
    from embeddings.errors import InputError, QabotError, user_message

    assert Settings.from_env({"QABOT_STORE": "postgresql://p/qa",
                              "QABOT_STORE_READ": "postgresql://u:p@h1:5432,h2:5432/qa, postgres://r2/qa"}
                             ).store_read == ("postgresql://u:p@h1:5432,h2:5432/qa", "postgres://r2/qa")
    assert Settings.from_env({}).store_read == ()
    for bad in ("mysql://bot:hunter2@db/qa", "bot:hunter2@db/qa"):
        with pytest.raises(InputError, match="postgresql://") as err:
            QAService(Settings(home=Path("/x"), store=pg_url, store_read=(bad,)), encoder=HashingEncoder(256))
        assert "hunter2" not in str(err.value)
    with pytest.raises(InputError, match="QABOT_STORE is not a postgresql://"):
        Settings.from_env({"QABOT_STORE_READ": "postgresql://r/qa", "QABOT_HOME": str(tmp_path)})
    with pytest.raises(QabotError) as err:
        QAService(Settings(home=Path("/x"), store=pg_url,
                           store_read=(f"postgresql://bot:hunter2@/nodb?host={tmp_path}&connect_timeout=2",)),
                  encoder=HashingEncoder(256))
    assert "read replica" in user_message(err.value) and "hunter2" not in user_message(err.value)


# ---- keyword search


def test_keyword_search_ranks_the_rows_of_rare_lexemes_with_every_lexeme(pg_url, tmp_path):
    """With statistics, rows holding only very common lexemes are not ranked (KEYWORD_BUDGET); the rows
    that are ranked keep the score the exhaustive query gives them, and `also` ids are still scored."""
    svc = pg_service(pg_url)
    (tmp_path / "ferry.txt").write_text(ARTICLE, encoding="utf-8")
    svc.ingest([str(write_corpus(tmp_path / "c", 0, 12)), str(tmp_path / "ferry.txt")], progress=False)
    idx = svc.index
    question = "seal colony budget"
    full_ids, full_scores = idx.keyword_search(question, 100)
    full = dict(zip(full_ids.tolist(), full_scores.tolist(), strict=True))
    texts = {i: r.text for i, r in idx.passages(list(full)).items()}
    seal = {i for i, t in texts.items() if "seal" in t}
    assert len(seal) == 1 and len(full) > 12, "every 'budget' passage matches the OR query"
    idx.KEYWORD_BUDGET = 2
    same, _ = idx.keyword_search(question, 100)
    assert set(same.tolist()) == set(full), "no statistics yet: every estimate is 0, the plain query"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE passages")
    ids, scores = idx.keyword_search(question, 100)
    assert set(ids.tolist()) == seal, "'budget' is in every document: its rows are not candidates"
    assert scores.tolist() == pytest.approx([full[i] for i in ids.tolist()]), "ranked against every lexeme"
    other = max(set(full) - seal)
    ids, scores = idx.keyword_search(question, 1, also=np.array([other]))
    assert dict(zip(ids.tolist(), scores.tolist(), strict=True)) == pytest.approx({**{i: full[i] for i in seal},
                                                                                    other: full[other]})
    idx.KEYWORD_BUDGET = 10**9
    assert set(idx.keyword_search(question, 100)[0].tolist()) == set(full)
    svc.close()


# ---- guild filtering keeps recall


def _synthetic(scope: str, n_docs: int, per_doc: int, rng: np.random.Generator, centers: np.ndarray, tag: str):
    docs, vectors = [], {}
    for d in range(n_docs):
        passages = []
        for j in range(per_doc):
            v = centers[rng.integers(len(centers))] + 0.35 * rng.standard_normal(centers.shape[1])
            v = (v / np.linalg.norm(v)).astype(np.float32)
            h = f"{tag}-{d}-{j}"
            vectors[h] = PassageVectors(v, v[None, :])
            passages.append(NewPassage(j, j, j * 10, j * 10 + 9, f"text {h}", h, ((j * 10, j * 10 + 9),)))
        docs.append(NewDocument(f"{tag}{d}", scope, f"src://{tag}/{d}", f"T {tag} {d}", None, None, "2026-01-01",
                                f"c{tag}{d}", "x" * (per_doc * 10), tuple(passages)))
    return docs, vectors


def test_guild_filtered_dense_search_keeps_recall(pg_url):
    dim = 64
    svc = pg_service(pg_url, dim)
    idx = svc.index
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((40, dim))
    with idx.bulk_load(), idx.writer() as w:
        for scope, n_docs, tag in (("", 30, "b"), (guild_scope(1), 3, "g"), (guild_scope(2), 10, "o")):
            docs, vectors = _synthetic(scope, n_docs, 100, rng, centers, tag)
            w.put_documents(docs, vectors)
    ids, scopes = idx.store.passage_ids_and_scopes()
    all_vecs = idx.vectors(ids.tolist())
    scopes_arr = np.array(scopes, dtype=object)
    recalls = {"": [], guild_scope(1): []}
    for _ in range(20):
        q = centers[rng.integers(len(centers))] + 0.35 * rng.standard_normal(dim)
        q = (q / np.linalg.norm(q)).astype(np.float32)
        for scope in recalls:
            visible = (scopes_arr == "") | (scopes_arr == scope)
            sims = all_vecs @ q
            sims[~visible] = -np.inf
            truth = set(ids[np.argsort(-sims)[:10]].tolist())
            got, _ = idx.dense_search(q, 10, scope)
            assert {scopes_arr[np.searchsorted(ids, i)] for i in got.tolist()} <= {"", scope}
            recalls[scope].append(len(truth & set(got.tolist())) / 10)
            exact, _ = idx.exact_search(q, 10, scope)
            assert set(exact.tolist()) == truth
    # 3000 base rows in the HNSW index, 300 guild rows scanned exactly, 1000 of another guild never seen.
    assert np.mean(recalls[guild_scope(1)]) >= 0.95, recalls
    assert np.mean(recalls[""]) >= 0.95, recalls
    with psycopg.connect(pg_url) as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM passages WHERE scope = '' ORDER BY embedding <#> %s::vector LIMIT 10",
            (str([0.1] * dim),)).fetchall())
    assert "passages_base_hnsw" in plan
    svc.close()


# ---- several processes at once

WRITER = """
import sys
from pathlib import Path
from embeddings.settings import Settings
from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
url, shared, own, drop = sys.argv[1:5]
svc = QAService(Settings(home=Path("/nonexistent"), store=url), encoder=HashingEncoder(256))
for _ in range(2):
    report = svc.ingest([shared, own], progress=False)
    assert report.ok, report.failures
removed = svc.remove(drop)
assert len(removed) == 1, removed
svc.close()
print("done", flush=True)
"""


def test_two_writer_processes_and_a_reader_at_once(pg_url, tmp_path):
    pg_service(pg_url).close()  # created once; the writers find it
    shared = write_corpus(tmp_path / "shared", 0, 24)
    own = [write_corpus(tmp_path / f"own{w}", 100 + 10 * w, 6) for w in range(2)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, str(shared), str(own[w]),
                               str(own[w] / f"doc{100 + 10 * w:03d}.txt")], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(2)]
    reader = pg_service(pg_url)
    errors: list[BaseException] = []
    answers = 0
    try:
        while any(p.poll() is None for p in procs):
            try:
                ans = reader.ask("What did officials say about the mountain railway budget?", k=5)
                answers += 1
                assert all(p.text.startswith("Report ") for p in ans.passages)
                # Every committed snapshot is whole: no passage without its document or embedding, no
                # duplicate (scope, source), no half-replaced document. An embedding a replacement left
                # unused may wait in qabot_sweep until its writer finishes; after both have, none is left.
                assert_consistent(pg_url, queued_orphans_ok=True)
            except BaseException as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)
                break
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        reader.close()
    assert not errors, errors
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "done" in out, err[-3000:]
    counts = assert_consistent(pg_url)
    assert counts["documents"] == 24 + 2 * 5, "shared documents once each, own ones minus the removed"
    assert answers > 0
    svc = pg_service(pg_url)
    try:
        sources = [d.source for d in svc.documents()]
        assert len(sources) == len(set(sources))
        assert svc.index.integrity().ok
        ans = svc.ask("Report 7 on the mountain railway budget", k=3)
        assert ans.passages and "mountain railway" in ans.passages[0].text
    finally:
        svc.close()


KILLED = """
import sys, time
from pathlib import Path
from embeddings.store.postgres import store as pgstore
from embeddings.settings import Settings
from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
url, folder = sys.argv[1:3]
original = pgstore.PgStore.put_documents

def stalls_halfway(self, conn, docs, vectors):
    original(self, conn, docs[: len(docs) // 2], vectors)   # half the batch written, not committed
    print("MID", len(docs), flush=True)
    time.sleep(300)

pgstore.PgStore.put_documents = stalls_halfway
svc = QAService(Settings(home=Path("/nonexistent"), store=url), encoder=HashingEncoder(256))
svc.ingest([folder], progress=False)
"""


def test_kill_9_during_ingest_leaves_nothing_half_written(pg_url, tmp_path):
    svc = pg_service(pg_url)
    svc.ingest([str(SEEDS)], progress=False)
    before = assert_consistent(pg_url)
    gen = svc.index.store.generation()
    folder = write_corpus(tmp_path / "batch", 0, 20)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, pg_url, str(folder)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("MID"), proc.stderr.read()[-3000:]
    # While the doomed transaction is open, readers see the old state (and are not blocked).
    assert svc.stats().documents == before["documents"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:  # the server notices the closed socket and rolls back
        with psycopg.connect(pg_url) as conn:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND state LIKE 'idle in transaction%'").fetchone()[0]
        if not busy:
            break
        time.sleep(0.1)
    assert assert_consistent(pg_url) == before
    assert svc.index.store.generation() == gen
    # The killed writer's per-document locks died with it: the same ingest now completes at once.
    report = svc.ingest([str(folder)], progress=False)
    assert report.ok and report.count("added") == 20
    assert assert_consistent(pg_url)["documents"] == before["documents"] + 20
    svc.close()


# ---- copying between stores


def _answers(svc: QAService, questions, scope: str = "") -> list[tuple]:
    out = []
    for q in questions:
        a = svc.ask(q, k=5, scope=scope)
        out.append((a.found, a.text, round(a.confidence, 5), tuple(p.text for p in a.passages),
                    tuple(p.citation.short() for p in a.passages)))
    return out


QUESTIONS = ("why did Egypt cut ties with Iran?", "When will the ferry route start?",
             "What do critics say about the seal colony?", "mountain railway budget delays")


def test_migrate_round_trip_embedded_to_postgresql_and_back(pg_url, tmp_path):
    from embeddings.store.migrate import copy_index

    src = QAService(Settings(home=tmp_path / "a"), encoder=HashingEncoder(256))
    f = tmp_path / "ferry.txt"
    f.write_text(ARTICLE, encoding="utf-8")
    src.ingest([str(SEEDS), str(write_corpus(tmp_path / "c", 0, 6))], progress=False)
    src.ingest([str(f)], scope=guild_scope(5), progress=False)
    src.remove(src.documents()[1].doc_key)  # a gap in the ids
    src.index.save_config(src.index.config.with_retrieval(answer_threshold=0.41))
    ans = src.ask(QUESTIONS[0])
    src.record_feedback(answer_key="m1", user_id=9, answer=ans, vote=1)
    before = _answers(src, QUESTIONS) + _answers(src, QUESTIONS, guild_scope(5))
    counts = src.index.store.counts()

    report = copy_index(src.index, pg_url, progress=False)
    assert (report.documents, report.passages, report.feedback) == (counts["documents"], counts["passages"], 1)
    pg = pg_service(pg_url)
    assert pg.index.store.counts() == counts
    assert pg.index.config.retrieval.answer_threshold == 0.41
    assert pg.export_feedback() == src.export_feedback()
    # The same user's second vote replaces the copied one: the salt came along.
    assert pg.record_feedback(answer_key="m1", user_id=9, answer=ans, vote=-1) is True
    pg_ans = _answers(pg, QUESTIONS) + _answers(pg, QUESTIONS, guild_scope(5))
    assert [a[3][:1] for a in pg_ans] == [b[3][:1] for b in before], "same top passage in PostgreSQL"

    back_home = tmp_path / "b"
    copy_index(pg.index, str(back_home), progress=False)
    pg.close()
    back = QAService(Settings(home=back_home), encoder=HashingEncoder(256))
    assert back.index.store.counts() == counts and back.index.integrity().ok
    assert _answers(back, QUESTIONS) + _answers(back, QUESTIONS, guild_scope(5)) == before
    assert back.index.config.retrieval.answer_threshold == 0.41
    back.close()
    src.close()


def test_cli_migrate_and_stats_name_the_store(pg_url, tmp_path, monkeypatch, capsys):
    from bot.cli import main

    home = tmp_path / "idx"
    svc = QAService(Settings(home=home, embed_model="hashing:256"), encoder=HashingEncoder(256))
    svc.ingest([str(SEEDS)], progress=False)
    svc.close()
    monkeypatch.setenv("QABOT_HOME", str(home))
    monkeypatch.setenv("QABOT_EMBED_MODEL", "hashing:256")
    monkeypatch.delenv("QABOT_STORE", raising=False)
    assert main(["migrate", "--to", pg_url, "-q"]) == 0
    assert "copied 1 documents" in capsys.readouterr().out
    monkeypatch.setenv("QABOT_STORE", pg_url)
    assert main(["stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["store"].startswith("postgresql (postgresql://") and data["documents"] == 1
    assert data["integrity"] == "ok"
    monkeypatch.delenv("QABOT_STORE")
    assert main(["stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["store"].startswith("embedded")


def test_concurrent_replacements_of_one_document_never_duplicate(pg_url, tmp_path):
    svc = pg_service(pg_url)
    # Four versions of one source, ingested from four threads (one pool each via four services).
    services = [pg_service(pg_url) for _ in range(4)]
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        barrier.wait()
        art = article(i, TOPICS[i])
        for _ in range(3):
            report = services[i].ingest_bytes(art.encode(), name="same.txt", source="shared://same", kind="text")
            assert report.ok, report.failures

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, range(4)))
    for s in services:
        s.close()
    counts = assert_consistent(pg_url)
    assert counts["documents"] == 1
    svc.close()
