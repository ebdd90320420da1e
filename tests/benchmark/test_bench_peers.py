"""The benchmark's peer systems (txtai, LangChain) build, save, reopen in a new object and find a known passage.

Each test needs its library (the `bench` extras) and the real model; it is skipped when the library is missing."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from embeddings.benchmark.systems import BenchPassage
from embeddings.evaluation.datasets import default_eval_root

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SQUAD = default_eval_root() / "squad_v1_dev"
# Questions on the first paragraph of three different articles, and the key each must find in the top 3.
KNOWN = [
    ("Where did the black death originate?", "Black_Death#0"),
    ("In 2004 the Orange revolution occurred in what country?", "Civil_disobedience#0"),
    ("How many square kilometers is the Amazon Basin?", "Amazon_rainforest#0"),
]
# Punctuation a SQL-backed store (txtai with content=True) must pass through as plain text.
AWKWARD = "What's the \"Amazon\" called in Dutch; -- or isn't it (in English)?"


def _passages(n: int = 30) -> list[BenchPassage]:
    """The first paragraph of each of the first n articles of SQuAD v1.1 dev."""
    path = SQUAD / "passages.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"no SQuAD passages at {path}")
    out: list[BenchPassage] = []
    seen: set[str] = set()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["doc_id"] in seen:
                continue
            seen.add(row["doc_id"])
            out.append(BenchPassage(key=row["id"], title=row["title"], text=row["text"]))
            if len(out) == n:
                break
    return out


def _roundtrip(name: str, tmp_path: Path) -> None:
    from embeddings.benchmark.peers import PEERS

    passages = _passages()
    assert {key for _, key in KNOWN} <= {p.key for p in passages}
    PEERS[name]().build(passages, tmp_path)
    assert any(tmp_path.iterdir()), "build() saved nothing"

    system = PEERS[name]()  # a new object: everything must come from disk
    assert system.name == name
    system.open(tmp_path)
    for question, key in KNOWN:
        found = system.search(question, 3)
        assert len(found) <= 3 and len(set(found)) == len(found)
        assert key in found, (question, found)
    found = system.search(AWKWARD, 5)
    assert len(found) == 5 and all(isinstance(k, str) for k in found)


@pytest.mark.model
def test_txtai_dense(tmp_path: Path) -> None:
    pytest.importorskip("txtai")
    _roundtrip("txtai", tmp_path)


@pytest.mark.model
def test_txtai_hybrid(tmp_path: Path) -> None:
    pytest.importorskip("txtai")
    _roundtrip("txtai-hybrid", tmp_path)


@pytest.mark.model
def test_langchain_faiss(tmp_path: Path) -> None:
    pytest.importorskip("langchain_community")
    pytest.importorskip("langchain_huggingface")
    _roundtrip("langchain", tmp_path)


@pytest.mark.model
def test_langchain_ensemble(tmp_path: Path) -> None:
    pytest.importorskip("langchain_community")
    pytest.importorskip("langchain_huggingface")
    pytest.importorskip("langchain_classic")
    pytest.importorskip("rank_bm25")
    _roundtrip("langchain-ensemble", tmp_path)


def test_peers_are_registered() -> None:
    from embeddings.benchmark.peers import PEERS

    assert set(PEERS) == {"txtai", "txtai-hybrid", "langchain", "langchain-ensemble"}
    assert all(PEERS[name].name == name for name in PEERS)  # type: ignore[attr-defined]
