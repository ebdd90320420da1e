"""The int8 encoder's cache under crashes and faults (issue 13's sweep): kill -9 during a build, corrupt
entries, an unwritable cache, two processes starting together. The build itself is replaced by a fast fake
(`_build` writes the files a real one writes) except in the one test that loads a real entry; every test uses
its own cache_dir, never the user cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embeddings.encoders import int8
from embeddings.encoders.base import DEFAULT_MODEL
from embeddings.errors import QabotError, user_message
from tests.support import ROOT

BACKEND = "onnx-int8"

FAKE = """
import os, sys, time
from pathlib import Path
from embeddings.encoders import int8

def fake_build(name, path, backend, out, stages=None):
    log = os.environ.get("FAKE_BUILD_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
    (out / "tokenizer.json").write_text("{}")
    with open(out / "model.onnx", "wb") as fh:
        fh.write(b"half")
        fh.flush()
        if os.environ.get("FAKE_BUILD_STALL"):
            print("BUILDING", flush=True)
            time.sleep(300)
        time.sleep(float(os.environ.get("FAKE_BUILD_SECONDS", "0")))
        fh.write(b"x" * 1000)
    return int8.Int8Meta(build_version=int8.INT8_BUILD_VERSION, backend=backend, model=name, model_path=path,
                         dimension=8, max_tokens=16, pooling="mean", input_names=("input_ids",), pad_id=0,
                         calibration_texts=0, check_cosine=1.0, build_seconds=0.0)

int8._build = fake_build
"""


@pytest.fixture
def fake_build(monkeypatch):
    # FAKE assigns int8._build itself: registering the real one first makes monkeypatch put it back after
    # the test (it used to stay faked for the rest of the session).
    monkeypatch.setattr(int8, "_build", int8._build)
    scope: dict = {}
    exec(FAKE, scope)  # noqa: S102 - the same fake the subprocesses use
    calls: list[Path] = []

    def counting(name, path, backend, out, stages=None):
        calls.append(out)
        return scope["fake_build"](name, path, backend, out)

    monkeypatch.setattr(int8, "_build", counting)
    return calls


def run(cache: Path, *, env: dict[str, str] | None = None, background: bool = False):
    code = FAKE + f"\nprint(int8.ensure_built({DEFAULT_MODEL!r}, {BACKEND!r}, Path({str(cache)!r})), flush=True)\n"
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if background:
        return subprocess.Popen([sys.executable, "-c", code], env=full, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.is_dir())


def test_kill_9_during_a_build_leaves_nothing_used_and_the_next_start_builds(tmp_path, fake_build):
    cache = tmp_path / "cache"
    proc = run(cache, env={"FAKE_BUILD_STALL": "1"}, background=True)
    assert proc.stdout.readline().strip() == "BUILDING", proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    left = entries(cache)
    assert len(left) == 1 and left[0].startswith(".build-"), left  # only the killed build's temp dir
    entry = int8.ensure_built(DEFAULT_MODEL, BACKEND, cache)
    assert len(fake_build) == 1 and int8.entry_problem(entry, BACKEND) is None
    assert entries(cache) == [entry.name], "the killed build's temp dir is cleared"
    assert (entry / "model.onnx").stat().st_size == 1004


@pytest.mark.parametrize("damage", ["truncate model", "empty tokenizer", "missing model", "bad json", "not meta",
                                    "other version"])
def test_a_corrupt_entry_is_detected_and_rebuilt(tmp_path, fake_build, damage, capsys):
    cache = tmp_path / "cache"
    entry = int8.ensure_built(DEFAULT_MODEL, BACKEND, cache)
    meta = entry / "meta.json"
    if damage == "truncate model":
        with open(entry / "model.onnx", "r+b") as fh:
            fh.truncate(10)
    elif damage == "empty tokenizer":
        (entry / "tokenizer.json").write_text("")
    elif damage == "missing model":
        (entry / "model.onnx").unlink()
    elif damage == "bad json":
        meta.write_text('{"build_version": "1", "back')
    elif damage == "not meta":
        meta.write_text("[1, 2]")
    else:
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "build_version": "0"}))
    assert int8.entry_problem(entry, BACKEND) is not None
    capsys.readouterr()
    again = int8.ensure_built(DEFAULT_MODEL, BACKEND, cache)
    assert again == entry and len(fake_build) == 2
    assert int8.entry_problem(entry, BACKEND) is None
    assert "unusable" in capsys.readouterr().err
    assert entries(cache) == [entry.name]


def test_an_unwritable_cache_is_one_line_naming_it_and_the_setting(tmp_path, fake_build):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(QabotError) as err:  # (root ignores permission bits: a file in the way instead)
        int8.ensure_built(DEFAULT_MODEL, BACKEND, blocker / "cache")
    text = user_message(err.value)
    assert "\n" not in text and str(blocker / "cache") in text and "QABOT_ENCODER_CACHE" in text


def test_a_full_cache_disk_is_one_line_and_leaves_no_entry(tmp_path, monkeypatch):
    import errno

    def full(name, path, backend, out, stages=None):
        (out / "model.onnx").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(int8, "_build", full)
    cache = tmp_path / "cache"
    with pytest.raises(QabotError) as err:
        int8.ensure_built(DEFAULT_MODEL, BACKEND, cache)
    text = user_message(err.value)
    assert "No space left" in text and str(cache) in text and "QABOT_ENCODER_CACHE" in text and "\n" not in text
    assert entries(cache) == []


def test_a_complete_entry_in_a_read_only_cache_is_used_without_the_lock(tmp_path, fake_build, monkeypatch):
    cache = tmp_path / "cache"
    entry = int8.ensure_built(DEFAULT_MODEL, BACKEND, cache)

    class NoLock:
        def __init__(self, *a, **k):
            raise PermissionError(13, "Permission denied")

    import filelock

    monkeypatch.setattr(filelock, "FileLock", NoLock)
    assert int8.ensure_built(DEFAULT_MODEL, BACKEND, cache) == entry


def test_two_processes_starting_together_build_once(tmp_path):
    cache = tmp_path / "cache"
    log = tmp_path / "builds.log"
    env = {"FAKE_BUILD_LOG": str(log), "FAKE_BUILD_SECONDS": "1.5"}
    procs = [run(cache, env=env, background=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert len(log.read_text().split()) == 1, "built twice"
    assert outs[0][0] == outs[1][0]
    assert entries(cache) == [Path(outs[0][0].strip()).name]


def _user_entry() -> Path | None:
    root = int8.cache_root()
    if not root.is_dir():
        return None
    found = sorted(p for p in root.glob(f"*-{BACKEND}-*") if p.is_dir() and int8.entry_problem(p, BACKEND) is None)
    return found[0] if found else None


def test_a_model_file_the_runtime_cannot_read_is_one_line_naming_the_directory(tmp_path):
    """An entry from before sizes were recorded, its model overwritten in place: not caught by the cheap check,
    so loading it must say which directory to delete (never a traceback, never vectors from a wrong model)."""
    pytest.importorskip("onnxruntime")
    src = _user_entry()
    if src is None:
        pytest.skip("no built onnx-int8 entry in the user cache to copy")
    from embeddings.encoders.base import resolve_model_path

    cache = tmp_path / "cache"
    dst = cache / int8.cache_key(DEFAULT_MODEL, resolve_model_path(DEFAULT_MODEL), BACKEND)
    dst.mkdir(parents=True)
    for name in ("meta.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, dst / name)
    meta = json.loads((dst / "meta.json").read_text())
    meta.pop("files", None)
    (dst / "meta.json").write_text(json.dumps(meta))
    (dst / "model.onnx").write_bytes(b"garbage, not a model" * 100)
    enc = int8.Int8Encoder(DEFAULT_MODEL, backend=BACKEND, cache_dir=cache)
    started = time.monotonic()
    with pytest.raises(QabotError) as err:
        enc.encode(["a question"])
    text = user_message(err.value)
    assert "\n" not in text and str(dst) in text and "delete" in text
    assert time.monotonic() - started < 30


def test_a_model_changed_in_place_fails_its_check_sentence_with_one_line(tmp_path):
    """A model file rewritten with other weights of the same size passes the cheap size check; the runner's
    check sentence, recorded at build, catches it before any vector is returned."""
    pytest.importorskip("onnxruntime")
    src = int8.ensure_built(DEFAULT_MODEL, BACKEND, tmp_path / "built")  # a real build (15-60 s), with its probe
    meta = json.loads((src / "meta.json").read_text())
    assert len(meta["probe"]) == meta["dimension"]
    good = int8.Int8Encoder(DEFAULT_MODEL, backend=BACKEND, cache_dir=tmp_path / "built")
    vec = good.encode([int8.PROBE_TEXT])[0]
    assert float(vec @ np.asarray(meta["probe"])) > int8.PROBE_MIN_COSINE  # the check passes on the real entry

    # Stand-in for changed weights: the same entry, but its record says another model made the probe.
    meta["probe"] = [-x for x in meta["probe"]]
    (src / "meta.json").write_text(json.dumps(meta))
    assert int8.entry_problem(src, BACKEND) is None  # sizes alone see nothing wrong
    enc = int8.Int8Encoder(DEFAULT_MODEL, backend=BACKEND, cache_dir=tmp_path / "built")
    with pytest.raises(QabotError) as err:
        enc.encode(["a question"])
    text = user_message(err.value)
    assert "\n" not in text and str(src) in text and "delete" in text and "check sentence" in text
