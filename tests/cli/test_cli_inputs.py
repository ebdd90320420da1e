"""Bad and awkward inputs through the real `qabot` CLI (subprocesses), plus in-process URL failures.

Every refusal must: exit 2, print exactly one line on stderr that names the input, and leave the index
exactly as it was (`qabot ls --json` and `qabot stats --json` identical, integrity "ok").
URL tests that need a local HTTP server run in-process, because the CLI refuses loopback addresses by design."""

from __future__ import annotations

import functools
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from embeddings.encoders.hashing import HashingEncoder
from embeddings.errors import UnsupportedInput
from embeddings.ingest.fetch import fetch_url
from embeddings.ingest.pipeline import Ingestor
from embeddings.service import QAService
from embeddings.settings import Settings
from tests.support import ROOT

SEED = ROOT / "seeds" / "000_db06b687ad4f3416.txt"
MODEL = "hashing:64"
HASHING_THRESHOLD = 0.3


# ------------------------------------------------------------------ helpers


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_") and k != "DISCORD_TOKEN"}
    env.update(QABOT_HOME=str(home), QABOT_EMBED_MODEL=MODEL, NO_COLOR="1", HF_HUB_OFFLINE="1")
    return env


def run_qabot(home: Path, *args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=_env(home), cwd=str(cwd or ROOT),
                          capture_output=True, text=True, timeout=timeout)


def snapshot(home: Path) -> tuple[list[dict], dict]:
    """`qabot ls --json` and `qabot stats --json` (run side by side: both only read)."""
    procs = [subprocess.Popen([sys.executable, "-m", "bot.cli", cmd, "--json"], env=_env(home), cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in ("ls", "stats")]
    (ls_out, ls_err), (st_out, st_err) = (p.communicate(timeout=60) for p in procs)
    assert procs[0].returncode == 0, ls_err
    assert procs[1].returncode == 0, st_err
    ls = subprocess.CompletedProcess([], 0, ls_out, ls_err)
    st = subprocess.CompletedProcess([], 0, st_out, st_err)
    stats = json.loads(st.stdout)
    assert stats["integrity"] == "ok", stats
    stats.pop("home")  # each test works on its own copy of the index
    return json.loads(ls.stdout), stats


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


def ask_json(home: Path, question: str, k: int = 50) -> dict:
    proc = run_qabot(home, "ask", question, "--json", "--k", str(k))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def article(title: str, topic: str, marker: str, paragraphs: int = 3) -> str:
    """A small article whose paragraphs are long enough (> min_tokens) to be passages of their own."""
    paras = [" ".join(f"The {topic} report {marker} sentence {p}.{i} describes the harbour council plan in detail."
                      for i in range(6)) for p in range(paragraphs)]
    return title + "\n\n" + "\n\n".join(paras) + "\n"


# ------------------------------------------------------------------ the shared, non-empty index


@pytest.fixture(scope="module")
def base_index(tmp_path_factory) -> tuple[Path, tuple[list[dict], dict]]:
    root = tmp_path_factory.mktemp("base")
    src = root / "articles" / "iran_egypt.txt"
    src.parent.mkdir()
    shutil.copy(SEED, src)
    proc = run_qabot(root / "idx", "ingest", str(src))
    assert proc.returncode == 0, proc.stderr
    assert "1 added" in proc.stdout
    # The confidence model is calibrated on the real model's cosines; the hashing stand-in scores the example
    # question 0.44. The index records its own threshold, as an operator's tuned index would (config.json).
    with QAService(Settings(home=root / "idx", embed_model=MODEL)) as svc:
        svc.index.save_config(svc.index.config.with_retrieval(answer_threshold=HASHING_THRESHOLD))
    snap = snapshot(root / "idx")
    assert len(snap[0]) == 1 and snap[0][0]["passages"] > 0
    return root / "idx", snap


@pytest.fixture
def home(base_index, tmp_path) -> Path:
    """A private copy of the base index (one seed article), so each test starts from the same state."""
    dest = tmp_path / "idx"
    shutil.copytree(base_index[0], dest)
    return dest


@pytest.fixture
def base_snapshot(base_index) -> tuple[list[dict], dict]:
    return base_index[1]


# ------------------------------------------------------------------ bad files and URLs


def _listener(family: int, host: str) -> socket.socket | None:
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((host, 0))
        s.listen(8)
        return s
    except OSError:
        return None


def _no_connection_arrived(sock: socket.socket | None) -> bool:
    if sock is None:
        return True
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _big_text(path: Path) -> str:
    para = b"Lorem ipsum dolor sit amet, the harbour council met again on Tuesday to discuss the ferry. " * 8
    block = (para + b"\n\n") * 1000
    with open(path, "wb") as fh:
        while fh.tell() < 20 * 1024 * 1024:
            fh.write(block)
    return str(path)


NAV_ONLY = b"""<!doctype html><html><head><title>Example News</title></head><body>
<nav><a href="/">Home</a> <a href="/world">World</a> <a href="/politics">Politics</a> <a href="/sport">Sport</a></nav>
<ul class="menu"><li><a href="/a">Business</a></li><li><a href="/b">Science</a></li><li><a href="/c">Culture</a></li></ul>
<ul class="footer"><li><a href="/about">About us</a></li><li><a href="/contact">Contact</a></li>
<li><a href="/privacy">Privacy</a></li></ul></body></html>"""

def _fifo(path: Path) -> str:
    os.mkfifo(path)  # nobody ever writes to it: reading it would block forever
    return str(path)


def _symlink(path: Path, target: str) -> str:
    path.symlink_to(target)
    return str(path)


# id -> (make the argument in tmp_path, substrings the error line must contain)
BAD_INPUTS: dict[str, tuple[Callable[[Path], str], tuple[str, ...]]] = {
    "missing-path": (lambda d: str(d / "no_such_article.txt"), ("no such file",)),
    "pdf": (lambda d: _write(d / "paper.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" * 20),
            ("unsupported file type '.pdf'",)),
    "docx": (lambda d: _write(d / "letter.docx", b"PK\x03\x04" + bytes(200)), ("unsupported file type '.docx'",)),
    "empty": (lambda d: _write(d / "empty.txt", b""), ("empty",)),
    "whitespace-only": (lambda d: _write(d / "blank.txt", b"  \n\t\n\r\n   \n"), ("empty",)),
    "binary": (lambda d: _write(d / "random.txt", random.Random(7).randbytes(4096) + b"\x00" * 64),
               ("binary",)),
    "invalid-utf8": (lambda d: _write(d / "latin1.txt",
                                      "Caf\u00e9 society in the harbour town.\n\nMore text here.".encode("latin-1")),
                     ("not valid utf-8",)),
    "too-large-20MB": (lambda d: _big_text(d / "huge.txt"), ("mb", "limit")),
    "fifo": (lambda d: _fifo(d / "x.txt"), ("not a regular file",)),
    "symlink-to-dev-zero": (lambda d: _symlink(d / "zero.txt", "/dev/zero"), ("not a regular file",)),
    "utf8-bom-then-binary": (lambda d: _write(d / "bom.txt", b"\xef\xbb\xbf" + bytes(
        b & 0x7F for b in random.Random(7).randbytes(4096))), ("binary",)),
    "utf16-bom-then-binary": (lambda d: _write(d / "bom16.txt", b"\xff\xfe" + b"\x01\x00\x00\x00\x10\x20\x00\x00" * 512),
                              ("binary",)),
    "too-long-name": (lambda d: str(d / ("a" * 300 + ".txt")), ("file name too long",)),
    "unknown-user": (lambda d: "~no_such_user_qabot/article.txt", ("no such user", "~no_such_user_qabot")),
    "navigation-only-html": (lambda d: _write(d / "menu.html", NAV_ONLY), ("navigation",)),
    "ftp-url": (lambda d: "ftp://example.com/article.txt", ("only http:// and https://",)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_index_unchanged(case, home, base_snapshot, tmp_path):
    make, expected = BAD_INPUTS[case]
    arg = make(tmp_path)
    start = time.monotonic()
    proc = run_qabot(home, "ingest", arg)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {arg}: "), lines[0]
    for part in expected:
        assert part.lower() in lines[0].lower(), lines[0]
    assert "0 added, 0 updated, 0 unchanged, 1 failed" in proc.stdout
    assert elapsed < 10, f"{case} took {elapsed:.1f} s"  # the 20 MB file is refused by its size, not read
    assert snapshot(home) == base_snapshot


def test_each_bad_input_fails_alone_and_the_good_ones_are_ingested(home, base_snapshot, tmp_path):
    """One command, several faulty inputs beside good ones: a line each, naming it; the good files go in."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "good.txt").write_text(article("Ferry Timetable Changes", "ferry", "goodmarker"), encoding="utf-8")
    bad_name = os.fsdecode(bytes(folder) + b"/bad\xff.txt")
    Path(bad_name).write_text(article("Badly Named", "name", "badnamemarker"), encoding="utf-8")
    beside = tmp_path / "beside.txt"
    beside.write_text(article("Bridge Repairs Begin", "bridge", "besidemarker"), encoding="utf-8")
    too_long = str(tmp_path / ("b" * 300 + ".txt"))
    proc = run_qabot(home, "ingest", str(folder), too_long, "~no_such_user_qabot/x.txt", str(beside))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert "Traceback" not in proc.stderr
    assert len(lines) == 3, proc.stderr
    assert lines[0] == f"error: {folder}/bad\\xff.txt: the file name is not valid UTF-8; rename the file"
    assert lines[1].startswith(f"error: {too_long}: cannot read: ") and "too long" in lines[1]
    assert lines[2] == "error: ~no_such_user_qabot/x.txt: no such user '~no_such_user_qabot'"
    assert "2 added, 0 updated, 0 unchanged, 3 failed" in proc.stdout
    sources = {d["source"] for d in snapshot(home)[0]}
    assert {str((folder / "good.txt").resolve()), str(beside.resolve())} <= sources


def test_file_reporting_a_small_size_is_read_only_to_the_limit(monkeypatch):
    """/proc files report size 0 (as a FIFO or device would): at most limit + 1 bytes are read."""
    from embeddings.ingest import pipeline
    from embeddings.ingest.pipeline import SourceRef, read_source

    monkeypatch.setattr(pipeline, "MAX_INPUT_BYTES", 64)
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(UnsupportedInput, match=r"^maps\.txt: over the 0 MB limit"):
        read_source(SourceRef("maps.txt", "/proc/self/maps", False))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254"])
def test_private_url_is_refused_without_connecting(host, home, base_snapshot):
    # A real listener on loopback: if qabot connected at all, a connection would be waiting in its backlog.
    v6 = host == "[::1]"
    sock = _listener(socket.AF_INET6 if v6 else socket.AF_INET, "::1" if v6 else "127.0.0.1")
    port = sock.getsockname()[1] if sock and host in ("localhost", "127.0.0.1", "[::1]") else 80
    url = f"http://{host}:{port}/latest/meta-data/"
    try:
        start = time.monotonic()
        proc = run_qabot(home, "ingest", url)
        elapsed = time.monotonic() - start
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        lines = error_lines(proc)
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: {url}: "), lines[0]
        assert "non-public address" in lines[0], lines[0]
        assert _no_connection_arrived(sock), "qabot connected to a private address"
        assert elapsed < 10  # 10.0.0.1 / 169.254.169.254 would otherwise hang until the fetch timeout
    finally:
        if sock:
            sock.close()
    assert snapshot(home) == base_snapshot


def test_same_file_twice_is_ingested_once_and_then_unchanged(home, base_snapshot, tmp_path):
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "ferrymarker"), encoding="utf-8")
    # The same file three times: twice absolute, once relative to the working directory.
    proc = run_qabot(home, "ingest", str(f), str(f), "./ferry.txt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    added = [ln for ln in proc.stdout.splitlines() if ln.startswith("added:")]
    assert len(added) == 1, proc.stdout
    assert "1 added, 0 updated, 0 unchanged, 0 failed" in proc.stdout
    docs, stats = snapshot(home)
    mine = [d for d in docs if d["source"] == str(f.resolve())]
    assert len(mine) == 1 and mine[0]["passages"] == 3
    assert f"; {mine[0]['passages']} passages embedded" in proc.stdout  # embedded once, not twice
    assert stats["documents"] == base_snapshot[1]["documents"] + 1
    assert stats["passages"] == base_snapshot[1]["passages"] + 3

    again = run_qabot(home, "ingest", str(f))
    assert again.returncode == 0, again.stderr
    assert f"unchanged (already ingested): {f}" in again.stdout
    assert "0 added, 0 updated, 1 unchanged, 0 failed; 0 passages embedded" in again.stdout
    assert snapshot(home) == (docs, stats)  # not even ingested_at moved


# ------------------------------------------------------------------ replacement and removal


def test_changed_document_replaces_its_passages(home, base_snapshot, tmp_path):
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "oldferrymarker", paragraphs=4), encoding="utf-8")
    first = run_qabot(home, "ingest", str(f))
    assert first.returncode == 0 and "1 added" in first.stdout, first.stderr
    assert any("oldferrymarker" in p["text"] for p in ask_json(home, "oldferrymarker report")["passages"])

    # New text: two paragraphs, neither containing the old marker.
    f.write_text(article("Harbour Ferry Plan Approved", "crossing", "newcrossingmarker", paragraphs=2),
                 encoding="utf-8")
    second = run_qabot(home, "ingest", str(f))
    assert second.returncode == 0, second.stderr
    assert f"updated: {f} [" in second.stdout and ", 2 passages" in second.stdout, second.stdout
    assert "0 added, 1 updated, 0 unchanged, 0 failed" in second.stdout

    docs, stats = snapshot(home)
    mine = [d for d in docs if d["source"] == str(f.resolve())]
    assert len(mine) == 1 and mine[0]["passages"] == 2
    assert stats["documents"] == base_snapshot[1]["documents"] + 1
    assert stats["passages"] == base_snapshot[1]["passages"] + 2
    old = ask_json(home, "oldferrymarker report harbour council plan")
    assert old["passages"], "the question should still retrieve something"
    assert all("oldferrymarker" not in p["text"] for p in old["passages"])
    new = ask_json(home, "newcrossingmarker report")
    assert any("newcrossingmarker" in p["text"] and p["source"] == str(f.resolve()) for p in new["passages"])


def test_rm_removes_document_entirely(home, base_snapshot, tmp_path):
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "ferrymarker"), encoding="utf-8")
    assert run_qabot(home, "ingest", str(f)).returncode == 0
    docs, _ = snapshot(home)
    key = next(d["doc"] for d in docs if d["source"] == str(f.resolve()))
    assert any(p["source"] == str(f.resolve()) for p in ask_json(home, "ferrymarker report")["passages"])

    proc = run_qabot(home, "rm", key)
    assert proc.returncode == 0, proc.stderr
    assert "removed: Harbour Ferry Plan Approved" in proc.stdout
    docs_after, stats_after = snapshot(home)
    assert all(d["doc"] != key for d in docs_after)
    assert docs_after == base_snapshot[0]  # back to exactly the one seed article
    drop = {"index_bytes"}  # SQLite does not shrink its file on delete
    assert {k: v for k, v in stats_after.items() if k not in drop} == \
        {k: v for k, v in base_snapshot[1].items() if k not in drop}
    answer = ask_json(home, "ferrymarker report harbour council plan")
    assert all(p["source"] != str(f.resolve()) and "ferrymarker" not in p["text"] for p in answer["passages"])


def test_rm_by_a_shared_title_refuses_and_lists_the_candidates(home, base_snapshot, tmp_path):
    """Two README.md in different folders, same title: `rm TITLE` removes neither and lists both keys;
    a unique title, a key and a path each remove exactly one document."""
    paths = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "README.md")
        paths[-1].write_text(article("Project Readme", "readme", f"{folder}marker"), encoding="utf-8")
    assert run_qabot(home, "ingest", *map(str, paths)).returncode == 0
    docs, _ = snapshot(home)
    keys = {d["source"]: d["doc"] for d in docs}
    proc = run_qabot(home, "rm", "Project Readme")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert error_lines(proc) == ["qabot: 2 documents have the title 'Project Readme'; remove one by its key:",
                                 *(f"  {keys[str(p.resolve())]}  {p.resolve()}" for p in paths)]
    assert snapshot(home)[0] == docs  # nothing removed
    proc = run_qabot(home, "rm", keys[str(paths[0].resolve())])
    assert proc.returncode == 0 and proc.stdout == "removed: Project Readme\n", proc.stderr
    proc = run_qabot(home, "rm", "Project Readme")  # now unique
    assert proc.returncode == 0 and proc.stdout == "removed: Project Readme\n", proc.stderr
    assert snapshot(home)[0] == base_snapshot[0]


def test_rm_unknown_document_is_an_input_error(home, base_snapshot):
    proc = run_qabot(home, "rm", "0123456789ab")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("qabot: ") and "0123456789ab" in lines[0], proc.stderr
    assert snapshot(home) == base_snapshot


def test_second_writer_gets_clear_error(home, base_snapshot, tmp_path):
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "ferrymarker"), encoding="utf-8")
    with FileLock(str(home / "writer.lock")):
        proc = run_qabot(home, "ingest", str(f))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("qabot: "), proc.stderr
    assert "Another qabot process is writing" in lines[0]
    assert snapshot(home) == base_snapshot


# ------------------------------------------------------------------ questions


@pytest.mark.parametrize("question, expected", [
    ("", "empty"),
    ("   \t  ", "empty"),
    ("why " * 2500, "limit is 1,000"),
    ("?!...", "no words"),
    ("\U0001f914\U0001f914", "no words"),
], ids=["empty", "whitespace", "10000-chars", "punctuation", "emoji"])
def test_bad_question_is_refused(question, expected, home):
    assert len(question) == 10_000 or len(question) < 20
    proc = run_qabot(home, "ask", question, "--json")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("qabot: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert proc.stdout == ""


def _check_answer_json(data: dict) -> None:
    assert isinstance(data["found"], bool)
    assert isinstance(data["answer"], str)
    assert (data["answer"] != "") == data["found"]
    assert isinstance(data["passages"], list)
    for p in data["passages"]:
        assert isinstance(p["text"], str) and p["text"]
        assert isinstance(p["score"], (int, float))
        assert isinstance(p["title"], str) and isinstance(p["source"], str)


@pytest.mark.parametrize("question", [
    "埃及为什么与伊朗断交？",
    "لماذا قطعت مصر علاقاتها مع إيران؟",
    "Почему Египет разорвал отношения с Ираном?",
], ids=["chinese", "arabic", "russian"])
def test_question_in_other_scripts_is_answered_or_not_found(question, home):
    proc = run_qabot(home, "ask", question, "--json")
    assert proc.returncode == 0, proc.stderr
    _check_answer_json(json.loads(proc.stdout))


def test_answer_json_shape_for_a_found_answer(home, base_snapshot):
    data = ask_json(home, "why did Egypt cut ties with Iran?", k=5)
    _check_answer_json(data)
    assert data["found"] is True and "Egypt" in data["answer"]
    assert 1 <= len(data["passages"]) <= 5
    assert {p["source"] for p in data["passages"]} == {base_snapshot[0][0]["source"]}


def test_not_found_names_the_closest_articles_in_json_and_text(home, base_snapshot):
    """Not found is not a dead end: the closest passages' documents are named (the refusal itself stays)."""
    question = "what colour is the harbour master's bicycle?"
    data = ask_json(home, question, k=5)
    _check_answer_json(data)
    assert data["found"] is False and data["answer"] == ""
    assert data["suggestions"] == [base_snapshot[0][0]["title"]]  # one seed document: named once
    proc = run_qabot(home, "ask", question)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "I couldn't find that in the articles I have."
    assert "naming the person, place or event" in lines[1]
    assert lines[2] == f"  - {base_snapshot[0][0]['title']}"
    found = ask_json(home, "why did Egypt cut ties with Iran?", k=5)
    assert found["found"] is True and found["suggestions"] == []


# ------------------------------------------------------------------ URLs against a local server (in-process)

GOOD_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Lighthouse Keepers Return</title></head>
<body><nav><a href="/">Home</a></nav><article><h1>Lighthouse Keepers Return</h1>
<p>The lighthouse on Skerryvane will be staffed again from next spring, the maritime agency said on Monday,
because automated lamps failed three times during the winter storms and fishermen complained.</p>
<p>Two keepers, trained at the old coastguard school, will live in the tower for a month at a time and
log every passing vessel, as keepers did until the station was automated in 1998.</p>
<p>The agency said the plan would cost less than repairing the automated lamps a fourth time, and that the
keepers would also record seabird numbers for the island's conservation trust.</p></article></body></html>"""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def do_GET(self) -> None:
        stop: threading.Event = self.server.stop  # type: ignore[attr-defined]
        if self.path == "/good":
            self._send(200, GOOD_PAGE)
        elif self.path == "/404":
            self._send(404, b"<html><body>not here</body></html>")
        elif self.path == "/500":
            self._send(500, b"<html><body>boom</body></html>")
        elif self.path == "/hang":  # accepts, reads the request, never answers
            stop.wait(30)
        elif self.path == "/trickle":  # answers, then sends one byte every 0.2 s forever
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                while not stop.wait(0.2):
                    self.wfile.write(b"x")
                    self.wfile.flush()
            except OSError:
                pass
        else:
            self._send(404, b"unknown")


@pytest.fixture
def server() -> Iterator[tuple[str, threading.Event]]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.stop = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv.stop  # type: ignore[attr-defined]
    finally:
        srv.stop.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def svc(tmp_path) -> Iterator[QAService]:
    service = QAService(Settings(home=tmp_path / "inproc"), encoder=HashingEncoder(64))
    src = tmp_path / "iran_egypt.txt"
    shutil.copy(SEED, src)
    assert service.ingest([str(src)], progress=False).count("added") == 1
    service.ingestor = Ingestor(service.index, allow_private_urls=True, fetch=functools.partial(fetch_url, timeout=1.0))
    yield service
    service.close()


def _state(service: QAService) -> tuple:
    assert service.index.integrity().ok, service.index.integrity().problems
    docs = [(d.doc_key, d.source, d.content_hash, d.passages, d.ingested_at) for d in service.documents()]
    return docs, service.index.store.counts(), service.index.store.generation()


@pytest.mark.parametrize("path, expected", [
    ("/hang", "Timed out after 1 s"),
    ("/trickle", "Timed out after 1 s"),  # one byte every 0.2 s: the deadline covers the whole fetch
    ("/404", "HTTP 404 Not Found"),
    ("/500", "HTTP 500 Internal Server Error"),
])
def test_url_failure_is_clear_and_changes_nothing(path, expected, server, svc):
    base, stop = server
    url = base + path
    before = _state(svc)
    result: dict[str, Any] = {}

    def work() -> None:
        result["report"] = svc.ingest([url], progress=False)

    start = time.monotonic()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(6)
    elapsed = time.monotonic() - start
    if worker.is_alive():  # let the server stop so the stuck fetch ends before the index is closed
        stop.set()
        worker.join(10)
        pytest.fail(f"ingest of {url} still running after 6 s with a 1 s timeout")
    report = result["report"]
    assert elapsed < 4, f"{url} took {elapsed:.1f} s"
    assert not report.ok and len(report.failures) == 1 and not report.outcomes
    failure = report.failures[0]
    assert failure.name == url
    assert expected in failure.message and "\n" not in failure.message, failure.message
    assert _state(svc) == before


def test_mixed_run_ingests_the_good_url_and_reports_the_bad_one(server, svc):
    base, _ = server
    before_docs = len(svc.documents())
    report = svc.ingest([base + "/good", base + "/404"], progress=False)
    assert [o.name for o in report.outcomes] == [base + "/good"] and report.count("added") == 1
    assert [(f.name, "HTTP 404" in f.message) for f in report.failures] == [(base + "/404", True)]
    docs = svc.documents()
    assert len(docs) == before_docs + 1
    assert {d.source for d in docs} >= {base + "/good"} and all("/404" not in d.source for d in docs)
    answer = svc.ask("Why will the Skerryvane lighthouse be staffed again?")
    assert answer.passages and answer.passages[0].citation.source == base + "/good"
    assert svc.index.integrity().ok


# ------------------------------------------------------------------ store faults through the CLI


def test_stats_exits_1_when_integrity_really_fails(home):
    import sqlite3

    con = sqlite3.connect(home / "qabot.sqlite3")
    con.execute("DELETE FROM embeddings WHERE hash = (SELECT embed_hash FROM passages LIMIT 1)")
    con.commit()
    con.close()
    proc = run_qabot(home, "stats", "--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "no stored embedding" in json.loads(proc.stdout)["integrity"]


def test_lost_config_is_recovered_from_the_database(home, base_snapshot, tmp_path):
    want = json.loads((home / "config.json").read_text())
    (home / "config.json").unlink()
    proc = run_qabot(home, "ask", "why did Egypt cut ties with Iran?", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((home / "config.json").read_text()) == want
    (home / "config.json").unlink()
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "ferrymarker"), encoding="utf-8")
    other = subprocess.run([sys.executable, "-m", "bot.cli", "ingest", str(f)], cwd=str(ROOT), capture_output=True,
                           text=True, timeout=60, env={**_env(home), "QABOT_EMBED_MODEL": "hashing:32"})
    assert other.returncode == 1 and len(error_lines(other)) == 1 and MODEL in other.stderr, other.stderr
    assert json.loads((home / "config.json").read_text()) == want  # the original model, not the one set
    proc = run_qabot(home, "ingest", str(f))
    assert proc.returncode == 0, proc.stderr
    assert len(snapshot(home)[0]) == 2


def test_lost_config_of_an_index_that_does_not_record_it_is_refused_in_one_line(home, base_snapshot, tmp_path):
    import sqlite3

    con = sqlite3.connect(home / "qabot.sqlite3")
    con.execute("DELETE FROM meta WHERE key = 'config'")  # as written by qabot before it recorded its config
    con.commit()
    con.close()
    (home / "config.json").unlink()
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "ferrymarker"), encoding="utf-8")
    for args in (("ask", "why did Egypt cut ties with Iran?"), ("ingest", str(f)), ("stats",)):
        proc = run_qabot(home, *args)
        lines = error_lines(proc)
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert "config.json" in lines[0] and "64" in lines[0], lines  # says how to recover, with the dimension
        assert not (home / "config.json").exists()


@pytest.mark.parametrize("garbage", [b"this is not a database" * 100, b"SQLite format 3\x00" + bytes(80)],
                         ids=["text", "bad-header"])
def test_corrupt_database_is_one_line_naming_the_file(home, garbage):
    (home / "qabot.sqlite3").write_bytes(garbage)
    for name in ("qabot.sqlite3-wal", "qabot.sqlite3-shm"):
        (home / name).unlink(missing_ok=True)
    for args in (("ask", "why did Egypt cut ties with Iran?"), ("stats",), ("ls",)):
        proc = run_qabot(home, *args)
        lines = error_lines(proc)
        assert proc.returncode == 1 and len(lines) == 1 and "qabot.sqlite3" in lines[0], proc.stderr


def test_writer_lock_that_is_not_a_file_is_one_line(home, base_snapshot, tmp_path):
    (home / "writer.lock").unlink()
    (home / "writer.lock").mkdir()
    f = tmp_path / "ferry.txt"
    f.write_text(article("Harbour Ferry Plan Approved", "ferry", "ferrymarker"), encoding="utf-8")
    proc = run_qabot(home, "ingest", str(f))
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1 and "writer.lock" in lines[0], proc.stderr
    proc = run_qabot(home, "ask", "why did Egypt cut ties with Iran?")
    assert proc.returncode == 0, proc.stderr  # reading does not need the lock


# ------------------------------------------------------------------ asking before anything was added


def test_asking_without_an_index_or_articles_says_how_to_add_them(home: Path, tmp_path: Path, base_index) -> None:
    missing = tmp_path / "nothing-here"
    for args in (("ask", "why did Egypt cut ties with Iran?"), ("chat",)):
        proc = run_qabot(missing, *args)
        assert proc.returncode == 1 and error_lines(proc) == [
            f"qabot: No qabot index at {missing}: run `qabot ingest PATH` first"], proc.stderr
        assert not missing.exists()  # asking never creates an index
    proc = run_qabot(home, "rm", snapshot(home)[0][0]["doc"])  # an index whose only article was removed
    assert proc.returncode == 0, proc.stderr
    proc = run_qabot(home, "ask", "why did Egypt cut ties with Iran?", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["found"] is False  # stdout: the JSON alone
    (hint,) = error_lines(proc)
    assert "has no articles yet" in hint and "qabot ingest" in hint
    refused = run_qabot(base_index[0], "ask", "quelle heure est-il à Lisbonne?", "--json")
    assert json.loads(refused.stdout)["found"] is False and not error_lines(refused)  # articles, no answer: no hint
