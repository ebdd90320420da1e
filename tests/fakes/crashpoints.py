"""Child process of tests/store/embedded/test_crash_points.py: runs one operation on an index and dies (os._exit(137), as
SIGKILL would leave it) at its N-th write point, or runs it whole (N = 0) and prints how many there were.

Write points: before and after each atomic file write, folder publish, dense-file save, keyword-segment
save, SQLite transaction (before BEGIN, after COMMIT), meta write, rename and deletion (os.replace,
Path.unlink, shutil.rmtree) the operation performs.

    python -m tests.fakes.crashpoints HOME OP N [IVF_THRESHOLD] [FILES...]
OP: add | update | rm | ivf (ingest FILES) or rm (remove FILES[0] by title) or repair (open only)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from embeddings.encoders.hashing import HashingEncoder
from embeddings.service import QAService
from embeddings.settings import Settings
from embeddings.store.embedded import atomic, dense, index, keyword, sqlite

DIM = 64
count = 0
crash_at = 0


def point() -> None:
    global count
    count += 1
    if count == crash_at:
        os._exit(137)


def around(owner, name: str) -> None:
    real = getattr(owner, name, None)
    if real is None:  # (an older qabot, when checking that the sweep fails on it)
        return

    def call(*args, **kwargs):
        point()
        out = real(*args, **kwargs)
        point()
        return out

    setattr(owner, name, call)


def install() -> None:
    around(atomic, "write_bytes")
    around(atomic, "publish_dir")
    around(dense.DenseIndex, "save")
    around(keyword.Segment, "save")
    around(sqlite.SqliteStore, "put_meta")
    around(os, "replace")
    around(pathlib.Path, "unlink")
    around(shutil, "rmtree")
    real_tx = sqlite.SqliteStore.transaction

    @contextmanager
    def transaction(self):
        point()
        with real_tx(self) as conn:
            yield conn
        point()

    sqlite.SqliteStore.transaction = transaction  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    global crash_at
    home, op, crash_at = Path(argv[0]), argv[1], int(argv[2])
    if len(argv) > 3 and int(argv[3]):
        dense.IVF_THRESHOLD = int(argv[3])
    files = argv[4:]
    if os.environ.get("CRASHPOINTS_BATCH"):  # several batches (commits) per ingest
        from embeddings.ingest import pipeline

        pipeline.COMMIT_EVERY_PASSAGES = int(os.environ["CRASHPOINTS_BATCH"])
    install()
    svc = QAService(Settings(home=home), encoder=HashingEncoder(DIM))  # (op "repair": the open is the op)
    if op == "rm":
        svc.remove(files[0])
    elif op != "repair":
        report = svc.ingest(files, progress=False)
        assert report.ok, report.failures
    svc.close()
    print(json.dumps({"points": count}))
    return 0


if __name__ == "__main__":
    assert index  # (imported so its module-level names are the patched ones' users)
    sys.exit(main(sys.argv[1:]))
