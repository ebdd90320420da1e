"""Storage faults simulated at Python's file-system calls, for CI (no root, no mounts needed).

`storage_fault(home, "full")`: creating files or folders under `home` fails with ENOSPC the way a full disk
fails: a new file is created, then writing to it fails (so a temp file is left unless qabot removes it).
`storage_fault(home, "read-only")`: every write under `home` fails with EROFS, as on a read-only mount
(chmod does not stop root, which the tests run as).

SQLite's own file access is C code these patches cannot reach: qabot probes the directory with os.open
before opening the database, so the simulation drives the same code path as a real full or read-only
medium, and tests check the directory was not modified. tests/test_store_faults.py also runs the real
thing on a tmpfs / read-only bind mount when the machine allows mounts."""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _FailingWrites(io.RawIOBase):
    """A file opened for writing on a full disk: it exists, but no byte fits."""

    def __init__(self, fh, code: int) -> None:
        self._fh = fh
        self._code = code

    def write(self, data) -> int:
        raise OSError(self._code, os.strerror(self._code))

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()
        super().close()


@contextmanager
def storage_fault(home: Path, kind: str) -> Iterator[None]:
    code = errno.ENOSPC if kind == "full" else errno.EROFS
    root = str(Path(home).resolve())

    def under(path) -> bool:
        try:
            p = os.path.abspath(os.fspath(path))
        except TypeError:
            return False
        return p == root or p.startswith(root + os.sep)

    def fail(path=""):
        raise OSError(code, os.strerror(code), os.fspath(path) if path else None)

    real_open, real_os_open = builtins.open, os.open
    real = {name: getattr(os, name) for name in ("mkdir", "replace", "rename", "unlink", "remove", "rmdir")}
    real_rmtree = shutil.rmtree

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, int) or not under(file) or not any(c in mode for c in "wax+"):
            return real_open(file, mode, *args, **kwargs)
        if kind != "full":
            fail(file)
        fh = real_open(file, mode, *args, **kwargs)  # the file is created...
        raw = _FailingWrites(fh, code)               # ...but nothing can be written to it
        return raw if "b" in mode and kwargs.get("buffering", -1) == 0 else (
            io.BufferedWriter(raw) if "b" in mode else io.TextIOWrapper(io.BufferedWriter(raw)))

    def fake_os_open(path, flags, *args, **kwargs):
        if under(path) and flags & WRITE_FLAGS:
            exists = os.path.exists(path)
            if kind != "full" or not exists:  # (a full disk still opens existing files, e.g. writer.lock)
                fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(name):
        def call(path, *args, **kwargs):
            if under(path) and (kind != "full" or name == "mkdir"):
                fail(path)
            return real[name](path, *args, **kwargs)
        return call

    def fake_rmtree(path, *args, **kwargs):
        if under(path) and kind != "full":
            fail(path)
        return real_rmtree(path, *args, **kwargs)

    patches = [(builtins, "open", fake_open), (io, "open", fake_open), (os, "open", fake_os_open),
               (shutil, "rmtree", fake_rmtree), *[(os, name, guard(name)) for name in real]]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, value in patches:
        setattr(mod, name, value)
    try:
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def tree_state(home: Path) -> dict[str, tuple[int, int]]:
    """Every file under home with its size and modification time (to show nothing was written)."""
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(home.rglob("*"))}
