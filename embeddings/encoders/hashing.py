"""A model-free encoder: deterministic bag-of-words vectors, for tests and dry runs (`hashing:DIM`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from embeddings.encoders.base import HASHING_PREFIX, vectors_of

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Deterministic bag-of-words vectors (feature hashing). No model, no torch: for tests and dry runs.

    Shares words ⇒ similar vectors, which is enough for tests to check ranking plumbing end to end."""

    def __init__(self, dimension: int = 256, max_tokens: int = 256) -> None:
        self.name = f"{HASHING_PREFIX}{dimension}"
        self.backend = "hashing"
        self.dimension = dimension
        self.max_tokens = max_tokens

    @property
    def vectors(self) -> str:  # a property: tests stand it in for a runtime by setting `backend`
        return vectors_of(self.backend)

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
