"""Text to terms: lower-cased, stop-worded, Snowball-stemmed tokens. One definition for BM25 (both stores'
keyword search ranks on it) and for answering (term overlap between a question and a sentence)."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

from embeddings.errors import QabotError

_stemmer: Any = None


def _get_stemmer() -> Any:
    global _stemmer
    if _stemmer is None:
        try:
            import Stemmer
        except ImportError as exc:  # pragma: no cover - packaging error
            raise QabotError("PyStemmer is not installed: pip install PyStemmer") from exc
        _stemmer = Stemmer.Stemmer("english")
    return _stemmer


# bm25s.tokenize's defaults (lower-cased, scikit-learn's token pattern, English stop words, Snowball
# stems), redone here because its per-call cost (a stop-word set rebuilt per text, progress-bar objects)
# was ~4 ms of every answer at 100k passages: questions, and the sentences of passages new to the cache,
# are tokenized one small batch at a time. Equality with bm25s is a test: the evaluation's tuned weights
# and the scores users saw came from it. Its stop words (Lucene's English list) are copied, not imported:
# importing bm25s pulls in scipy and numba, 0.7 s of every cold start and ~40 MB.
# scikit-learn's pattern is (?u)\b\w\w+\b. Without the \b's it finds the same tokens (a greedy \w\w+ always
# takes a whole run of word characters, whose ends are boundaries) in 25-30% less time, which is most of
# tokenizing the sentences of passages new to the answer cache.
_TOKEN = re.compile(r"\w\w+")
STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with"))
_STEM_CACHE_MAX = 200_000
TOKENIZE_CHUNK = 2048  # texts per tokenize() call when building
_stems: dict[str, str] = {}
_stems_lock = threading.Lock()


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Stemmed, stop-worded terms of each text, exactly as bm25s.tokenize(stopwords="en", stemmer=...)."""
    stop = STOP_WORDS
    words = [[w for w in _TOKEN.findall(t.lower()) if w not in stop] for t in texts]
    with _stems_lock:  # PyStemmer objects are not thread-safe; the cache is bounded by a clear
        if len(_stems) > _STEM_CACHE_MAX:
            _stems.clear()
        new = list({w for ws in words for w in ws if w not in _stems})
        if new:
            _stems.update(zip(new, _get_stemmer().stemWords(new), strict=True))
        return [[_stems[w] for w in ws] for ws in words]
