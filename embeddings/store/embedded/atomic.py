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
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Make a fully written temp folder visible under its final name (the final name must be new)."""
    for child in tmp_dir.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp_dir)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)
    fsync_dir(final_dir.parent)
