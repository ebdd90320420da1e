"""Faults and hostile input at the embedded store: shared passages, full disks, read-only media, lost or
damaged files, and processes that share one index directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embeddings.ingest import pipeline
from tests.fakes.faults import storage_fault, tree_state
from tests.support import make_service, write


def para(topic: str, n: int = 6) -> str:
    """A paragraph long enough (> min_tokens) to be a passage of its own."""
    return " ".join(f"The {topic} report sentence {i} describes the harbour council plan in detail." for i in range(n))


def doc(title: str, *topics: str) -> str:
    return title + "\n\n" + "\n\n".join(para(t) for t in topics) + "\n"


def assert_vectors_stored_and_nonzero(svc) -> None:
    idx = svc.index
    ids, _ = idx.store.passage_ids_and_scopes()
    stored = idx.store.vectors_for(ids.tolist(), idx.config.dimension)
    assert np.all(np.linalg.norm(stored, axis=1) > 0), "a passage lost its stored embedding"
    np.testing.assert_array_equal(idx.vectors(ids.tolist()), stored)


# ------------------------------------------------------------------ 2: a passage shared by two documents


@pytest.mark.parametrize("batch", ["same-batch", "consecutive-batches"])
def test_passage_shared_with_a_new_document_keeps_its_embedding_when_the_old_one_is_updated(
        tmp_path, monkeypatch, batch):
    if batch == "consecutive-batches":
        monkeypatch.setattr(pipeline, "COMMIT_EVERY_PASSAGES", 1)  # one document per batch
    svc = make_service(tmp_path / "idx")
    a = write(tmp_path / "a.txt", doc("Shared Title", "seal colony", "ferry route"))
    assert svc.ingest([str(a)], progress=False).ok
    write(a, doc("Shared Title", "ferry timetable"))  # A drops the seal-colony passage...
    b = write(tmp_path / "b.txt", doc("Shared Title", "seal colony", "lighthouse"))  # ...which B reuses
    report = svc.ingest([str(a), str(b)], progress=False)
    assert report.count("updated") == 1 and report.count("added") == 1
    assert_vectors_stored_and_nonzero(svc)
    assert svc.index.integrity().ok
    svc.close()


def test_integrity_reports_a_passage_without_its_embedding(tmp_path):
    svc = make_service(tmp_path / "idx")
    svc.ingest([str(write(tmp_path / "a.txt", doc("T", "seal colony", "ferry route")))], progress=False)
    store = svc.index.store
    with store.transaction() as conn:
        conn.execute("DELETE FROM embeddings WHERE hash = (SELECT embed_hash FROM passages LIMIT 1)")
    svc.index.refresh()
    report = svc.index.integrity()
    assert not report.ok and any("embedding" in p for p in report.problems), report
    # the repair the message names: ingesting the document again embeds what it lacks
    again = svc.ingest([str(tmp_path / "a.txt")], progress=False)
    assert again.count("updated") == 1 and again.embedded == 1
    assert svc.index.integrity().ok
    assert_vectors_stored_and_nonzero(svc)
    svc.close()


# ------------------------------------------------------------------ 5: two processes on one directory


@pytest.mark.parametrize("then", ["ingest", "remove"])
def test_a_long_lived_service_writes_after_another_one_replaced_its_cache_files(tmp_path, then):
    """The bot (A) holds caches loaded from dense-<g>.faiss; a CLI ingest (B) publishes g+1 and deletes
    them. A's next write must not read the deleted file again."""
    home = tmp_path / "idx"
    first = make_service(home)
    assert first.ingest([str(write(tmp_path / "one.txt", doc("One", "seal colony")))], progress=False).ok
    first.close()
    a = make_service(home)  # loads (memory-maps) the published caches
    b = make_service(home)
    assert b.ingest([str(write(tmp_path / "two.txt", doc("Two", "ferry route")))], progress=False).ok
    b.close()
    if then == "ingest":
        assert a.ingest([str(write(tmp_path / "three.txt", doc("Three", "lighthouse")))], progress=False).ok
        assert {d.title for d in a.documents()} == {"One", "Two", "Three"}
    else:
        assert a.remove("One") == ["One"]
        assert {d.title for d in a.documents()} == {"Two"}
    assert a.index.integrity().ok
    assert_vectors_stored_and_nonzero(a)
    a.close()


@pytest.mark.parametrize("ivf", [False, True])
def test_a_memory_mapped_dense_index_stays_writable_after_its_file_is_deleted(tmp_path, ivf):
    from embeddings.store.embedded.dense import DenseIndex

    vectors = np.random.default_rng(0).random((400, 16), dtype=np.float32)
    dense = DenseIndex(16)
    dense.add(np.arange(400), vectors)
    dense.fit_size(100 if ivf else None)
    dense.save(tmp_path / "dense-1.faiss")
    mapped = DenseIndex.load(tmp_path / "dense-1.faiss", 16)
    (tmp_path / "dense-1.faiss").unlink()  # another process published generation 2
    mapped.add([1000], np.ones((1, 16), dtype=np.float32))
    assert len(mapped) == 401 and mapped.kind == ("ivf" if ivf else "flat")
    np.testing.assert_array_equal(mapped.vectors([5, 399]), vectors[[5, 399]])


# ------------------------------------------------------------------ 10: stats during an ingest, and its exit code


def test_integrity_is_ok_while_another_process_is_mid_ingest(tmp_path, monkeypatch):
    """SQLite runs ahead of the published caches while a writer holds the lock: that is the published
    generation being served, not a fault, for a reader opened before the ingest or during it."""
    monkeypatch.setattr(pipeline, "COMMIT_EVERY_PASSAGES", 1)
    home = tmp_path / "idx"
    writer = make_service(home)
    assert writer.ingest([str(write(tmp_path / "one.txt", doc("One", "seal colony")))], progress=False).ok
    published = writer.index.store.generation()
    before = make_service(home)
    seen = []

    def check(_outcomes):
        during = make_service(home)
        for svc in (before, during):
            report = svc.index.integrity()
            seen.append(report)
            assert report.ok, report.problems
            assert report.generation == published < svc.index.store.generation()
        during.close()

    files = [str(write(tmp_path / f"{n}.txt", doc(n, f"{n} topic"))) for n in ("two", "three")]
    assert writer.ingest(files, progress=False, on_commit=check).ok
    assert len(seen) == 4
    after = before.index.integrity()  # the writer has published: the reader catches up
    assert after.ok and after.generation == writer.index.store.generation()
    for svc in (writer, before):
        svc.close()


# ------------------------------------------------------------------ 4 and 6: full disk, read-only medium


def _built(tmp_path, damage: bool = True):
    """An index of two documents; with `damage`, its artifacts.json is gone, so opening must repair."""
    home = tmp_path / "idx"
    svc = make_service(home)
    assert svc.ingest([str(write(tmp_path / "one.txt", doc("One", "seal colony"))),
                       str(write(tmp_path / "two.txt", doc("Two", "ferry route")))], progress=False).ok
    want = [p.passage_id for p in svc.ask("seal colony report", k=3).passages]
    svc.close()
    if damage:
        (home / "artifacts.json").unlink()
    return home, want


def _temp_files(home):
    return sorted(p.name for p in home.rglob("*") if ".tmp" in p.name or p.name.startswith(".qabot-probe"))


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_reading_works_when_repaired_caches_cannot_be_saved(tmp_path, kind):
    home, want = _built(tmp_path)
    before = tree_state(home)
    with storage_fault(home, kind):
        svc = make_service(home)  # the repair is served from memory
        assert [p.passage_id for p in svc.ask("seal colony report", k=3).passages] == want
        assert svc.index.integrity().ok
        assert svc.stats().documents == 2
        svc.close()
    assert not _temp_files(home), "a failed save left temp files"
    assert not (home / "artifacts.json").exists()
    if kind == "read-only":
        assert tree_state(home) == before, "a read-only index was modified"
    svc = make_service(home)  # space again: the next open saves the repair
    assert svc.index.integrity().ok and (home / "artifacts.json").exists()
    svc.close()


@pytest.mark.parametrize("kind, says", [("full", "is full"), ("read-only", "cannot be written")])
def test_writing_says_in_one_line_why_it_cannot(tmp_path, kind, says):
    from embeddings.errors import StorageError, user_message

    home, _ = _built(tmp_path, damage=False)
    article = write(tmp_path / "three.txt", doc("Three", "lighthouse"))
    with storage_fault(home, kind):
        svc = make_service(home)
        for attempt in (lambda: svc.ingest([str(article)], progress=False), lambda: svc.remove("One")):
            with pytest.raises(StorageError) as err:
                attempt()
            assert says in user_message(err.value) and "\n" not in user_message(err.value)
        assert svc.ask("seal colony report").passages
        svc.close()
    assert not _temp_files(home)
    svc = make_service(home)
    assert svc.index.integrity().ok
    svc.close()


def _can_mount() -> bool:
    import shutil as sh
    import subprocess

    if sh.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs mount namespaces (root or CAP_SYS_ADMIN)")
@pytest.mark.parametrize("medium", ["full-tmpfs", "read-only-bind-mount"])
def test_real_full_disk_and_read_only_mount_through_the_cli(tmp_path, medium):
    """The real thing, in a private mount namespace: ask and stats answer, ingest and rm fail in one line,
    and nothing (not even a temp file) is left behind."""
    import os
    import subprocess
    import sys

    home, _ = _built(tmp_path, damage=medium == "full-tmpfs")  # a full disk must also repair in memory
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    article = write(tmp_path / "three.txt", doc("Three", "lighthouse"))
    if medium == "full-tmpfs":
        setup = (f"mount -t tmpfs -o size=1m tmpfs {mnt} && cp -a {home} {mnt}/idx && "
                 f"(dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null; true)")
    else:
        setup = f"cp -a {home} {mnt}/idx && mount --bind {mnt} {mnt} && mount -o remount,ro,bind {mnt}"
    cli = f"{sys.executable} -m bot.cli"
    script = setup + "".join(
        f" && {{ {cli} {cmd} >{tmp_path}/{n}.out 2>{tmp_path}/{n}.err; echo $? >{tmp_path}/{n}.rc; }}"
        for n, cmd in enumerate(["ask 'seal colony report' --json", "stats --json", f"ingest -q {article}",
                                 "rm One"])) + f" && ls -A {mnt}/idx > {tmp_path}/ls"
    env = {**os.environ, "QABOT_HOME": str(mnt / "idx"), "QABOT_EMBED_MODEL": "hashing:256", "NO_COLOR": "1"}
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr

    def result(n):
        return (int((tmp_path / f"{n}.rc").read_text()), (tmp_path / f"{n}.out").read_text(),
                (tmp_path / f"{n}.err").read_text().strip().splitlines())

    rc, out, err = result(0)
    assert rc == 0 and not err and json.loads(out)["passages"], err
    rc, out, err = result(1)
    assert rc == 0 and json.loads(out)["integrity"] == "ok", err
    says = "is full" if medium == "full-tmpfs" else "cannot be written"
    for n in (2, 3):
        rc, _, err = result(n)
        assert rc == 1 and len(err) == 1 and says in err[0], err
    left = (tmp_path / "ls").read_text().split()
    assert not [n for n in left if ".tmp" in n or n.startswith(".qabot-probe")], left


# ------------------------------------------------------------------ 9: damaged files that slip through


def _answers(svc):
    return [(p.passage_id, round(p.score, 5)) for p in svc.ask("seal colony report", k=3).passages]


@pytest.mark.parametrize("content", [
    [{"generation": 1}], "just a string", 7, None, {"generation": "1"}, {"generation": True, "dense": "dense-1.faiss"},
    {"generation": 1, "dense": 5, "keyword_segments": []}, {"generation": 1, "dense": "dense-1.faiss",
                                                            "keyword_segments": "kwseg-0123456789abcdef"},
    {"generation": 1, "dense": "../../etc/passwd", "keyword_segments": []},
], ids=["list", "string", "number", "null", "str-generation", "bool-generation", "int-dense", "str-segments",
        "path-escape"])
def test_artifacts_json_of_the_wrong_shape_is_rebuilt(tmp_path, content):
    home, _ = _built(tmp_path, damage=False)
    svc = make_service(home)
    want = _answers(svc)
    svc.close()
    (home / "artifacts.json").write_text(json.dumps(content))
    svc = make_service(home)
    assert svc.index.integrity().ok and _answers(svc) == want
    assert json.loads((home / "artifacts.json").read_text())["generation"] == svc.index.store.generation()
    svc.close()


SEGMENT_DAMAGE = {
    "rows-out-of-range": lambda a, t: a.update(rows=a["rows"] + 1),
    "lengths-doubled": lambda a, t: a.update(lengths=a["lengths"] * 2),
    "tf-zero": lambda a, t: a.update(tf=np.zeros_like(a["tf"])),
    "tf-moved": lambda a, t: a.update(tf=np.roll(a["tf"], 1)),
    "ids-shifted": lambda a, t: a.update(ids=a["ids"] + 1),
    "indptr-not-monotonic": lambda a, t: a.update(indptr=a["indptr"][::-1].copy()),
    "terms-reversed": lambda a, t: t.reverse(),
    "terms-renamed": lambda a, t: t.__setitem__(slice(None), [w + "x" for w in t]),
}


@pytest.mark.parametrize("damage", list(SEGMENT_DAMAGE))
def test_keyword_segment_with_valid_format_but_wrong_values_is_rebuilt(tmp_path, damage):
    from embeddings.store.embedded.keyword import Segment

    home, _ = _built(tmp_path, damage=False)
    svc = make_service(home)
    want = _answers(svc)
    svc.close()
    seg_dir = home / json.loads((home / "artifacts.json").read_text())["keyword_segments"][0]
    arrays = {f: np.load(seg_dir / f"{f}.npy") for f in Segment.FIELDS}
    terms = json.loads((seg_dir / "terms.json").read_text())
    SEGMENT_DAMAGE[damage](arrays, terms)
    for f, a in arrays.items():
        np.save(seg_dir / f"{f}.npy", a)
    (seg_dir / "terms.json").write_text(json.dumps(terms))
    svc = make_service(home)
    assert svc.index.integrity().ok and _answers(svc) == want
    assert seg_dir.name not in json.loads((home / "artifacts.json").read_text())["keyword_segments"]
    svc.close()


# ------------------------------------------------------------------ 11: stale files, a repair racing a writer


def _leave_stale_files(home):
    """What a writer killed while deleting the previous generation's files leaves behind."""
    import shutil

    art = json.loads((home / "artifacts.json").read_text())
    shutil.copy(home / art["dense"], home / "dense-0.faiss")
    shutil.copytree(home / art["keyword_segments"][0], home / "kwseg-00000000deadbeef")
    (home / ".dense-9.faiss.tmp-4242").write_bytes(b"half")
    return {"dense-0.faiss", "kwseg-00000000deadbeef", ".dense-9.faiss.tmp-4242"}


@pytest.mark.parametrize("then", ["open", "unchanged-ingest"])
def test_stale_generations_are_removed_without_a_changing_ingest(tmp_path, then):
    home, _ = _built(tmp_path, damage=False)
    one = tmp_path / "one.txt"
    stale = _leave_stale_files(home)
    svc = make_service(home)
    if then == "unchanged-ingest":
        assert svc.ingest([str(one)], progress=False).count("unchanged") == 1
    assert not stale & {p.name for p in home.iterdir()}
    assert svc.index.integrity().ok
    svc.close()


def test_a_repair_does_not_overwrite_what_a_writer_published_meanwhile(tmp_path, monkeypatch):
    from embeddings.store.embedded.index import EmbeddedIndex

    home, _ = _built(tmp_path)  # artifacts.json gone: the next open repairs
    writer = make_service(home)  # (repairs and publishes generation g)
    (home / "artifacts.json").unlink()
    real = EmbeddedIndex._rebuild
    raced = []

    def slow_repair(self, *args):
        caches = real(self, *args)
        if self is not writer.index and not raced:  # while the reader repairs, the writer publishes g+1
            raced.append(1)
            assert writer.ingest([str(write(tmp_path / "late.txt", doc("Late", "night ferry")))], progress=False).ok
        return caches

    monkeypatch.setattr(EmbeddedIndex, "_rebuild", slow_repair)
    reader = make_service(home)
    assert raced
    art = json.loads((home / "artifacts.json").read_text())
    assert art["generation"] == writer.index.store.generation() > reader.index._caches.generation
    assert (home / art["dense"]).exists() and all((home / n).exists() for n in art["keyword_segments"])
    assert reader.index.integrity().ok  # and the reader catches up with what the writer published
    writer.close()
    reader.close()
