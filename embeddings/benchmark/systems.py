"""What the benchmark harness drives: a retrieval system that builds an index from passages, saves it,
opens it again in a fresh process, and answers one question at a time.

Every system (qabot itself, txtai, LangChain) is run in its own subprocess by the harness, so peak RSS
and cold start are its own. Passages are identified by `BenchPassage.key`; `search` returns keys, best
first, so recall@k is computed the same way for every system."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class BenchPassage:
    key: str    # unique within a corpus; what search() returns
    title: str  # headline of the article the passage comes from ("" if none)
    text: str   # raw passage text, about one paragraph


class BenchSystem(Protocol):
    name: str  # e.g. "qabot", "txtai", "txtai-hybrid", "langchain", "langchain-ensemble"

    def build(self, passages: Sequence[BenchPassage], workdir: Path) -> None:
        """Index every passage from raw text (embedding included) and save the index under workdir."""

    def open(self, workdir: Path) -> None:
        """Load the index build() saved, as a new process would (models included)."""

    def search(self, question: str, k: int) -> list[str]:
        """Keys of the k best passages for one question, best first, by the system's full query path."""


def peak_rss_mb() -> float:
    """This process's peak resident set since it exec'd, in MB. Not getrusage's ru_maxrss: Linux carries
    that across exec, so a worker forked by a parent holding a 1 GB index reported 1.2 GB while its own
    peak was 0.5 GB."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # no /proc (macOS): ru_maxrss is bytes there, KiB on Linux

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
