"""Crash-safe file replacement: write a temp file, fsync it, rename it over the target, fsync the folder.

A reader (or a process killed mid-write) therefore sees either the old file or the new one, never half."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)  # a full disk must not also keep the half-written temp file
        raise
    fsync_dir(path.parent)


def discard(path: Path) -> None:
    """Remove a temp file or folder of a write that failed, quietly (it may not exist)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Make a fully written temp folder visible under its final name (the final name must be new)."""
    try:
        for child in tmp_dir.iterdir():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp_dir)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
    except BaseException:
        discard(tmp_dir)
        raise
    fsync_dir(final_dir.parent)
