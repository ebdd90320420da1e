"""Which encoder a model name and backend ask for, built lazily: `hashing:DIM`, the sentence-transformers
model (torch), or its int8 copy (ONNX Runtime / OpenVINO). The backend and cache come from Settings; nothing
here reads the environment."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings.encoders.base import (
    DEFAULT_BACKEND,
    HASHING_PREFIX,
    INT8_BACKENDS,
    Encoder,
    TokenEmbeddings,
    canonical_model_name,
    check_backend,
    vectors_of,
)
from embeddings.encoders.hashing import HashingEncoder
from embeddings.errors import QabotError


class LazyEncoder:
    """Knows its model name and backend at once, loads the model on first use: `qabot ls` or a rejected
    question should not pay seconds of model loading."""

    def __init__(self, name: str, threads: int | None = None, backend: str = DEFAULT_BACKEND,
                 cache_dir: Path | None = None) -> None:
        self.name = canonical_model_name(name)
        self.backend = "hashing" if self.name.startswith(HASHING_PREFIX) else check_backend(backend)
        self._threads = threads
        self._cache_dir = cache_dir
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = _build_encoder(self.name, self._threads, self.backend, self._cache_dir)
        return self._encoder

    @property
    def vectors(self) -> str:  # known without loading: the backend and this qabot's int8 build name them
        return vectors_of(self.backend)

    @property
    def dimension(self) -> int:  # type: ignore[override]
        return self.loaded.dimension

    @property
    def max_tokens(self) -> int:  # type: ignore[override]
        return self.loaded.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.loaded.count_tokens(text)

    # batch_size None: the loaded backend's own default (64 for torch, smaller for the int8 runtimes)
    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if batch_size is None:
            return self.loaded.encode(texts)
        return self.loaded.encode(texts, batch_size=batch_size)

    def token_embeddings(self, texts: Sequence[str], *, batch_size: int | None = None) -> list[TokenEmbeddings]:
        fn = getattr(self.loaded, "token_embeddings", None)
        if fn is None:
            raise QabotError(f"The {self.backend} encoder has no token embeddings")
        return fn(texts) if batch_size is None else fn(texts, batch_size=batch_size)


def load_encoder(name: str, *, lazy: bool = True, threads: int | None = None, backend: str = DEFAULT_BACKEND,
                 cache_dir: Path | None = None) -> Encoder:
    """The encoder a model name asks for: `hashing:DIM`, the default, or any sentence-transformers name/path.
    `threads` caps intra-op threads (None: the runtime's default, one per core). `backend` is "torch",
    "openvino-int8" or "onnx-int8" (entry points pass Settings.encoder_backend, so ask, ingest and eval follow
    the one setting); `cache_dir` is where int8 copies are built (None: the user cache dir). Hashing models
    ignore both."""
    if lazy:
        return LazyEncoder(name, threads, backend, cache_dir)
    return _build_encoder(canonical_model_name(name), threads, backend, cache_dir)


def _build_encoder(name: str, threads: int | None = None, backend: str = DEFAULT_BACKEND,
                   cache_dir: Path | None = None) -> Encoder:
    if name.startswith(HASHING_PREFIX):
        try:
            dim = int(name[len(HASHING_PREFIX):])
        except ValueError as exc:
            raise QabotError(f"Bad hashing model name {name!r}: expected hashing:DIMENSION") from exc
        return HashingEncoder(dim)
    if check_backend(backend) in INT8_BACKENDS:
        from embeddings.encoders.int8 import Int8Encoder

        return Int8Encoder(name, backend=check_backend(backend), threads=threads, cache_dir=cache_dir)
    from embeddings.encoders.transformer import SentenceTransformerEncoder

    return SentenceTransformerEncoder(name, threads=threads)
