"""From a question to an Answer: retrieve passages, pick the sentence that answers, or say we don't know."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

import numpy as np

from embeddings.answering.conversation import Reading, read_in_context
from embeddings.answering.retrieval import Candidate, Retriever, zscore
from embeddings.config import RetrievalParams
from embeddings.encoders.base import Encoder
from embeddings.errors import BadQuestion
from embeddings.models import (
    BASE_SCOPE,
    SUGGESTIONS,
    Answer,
    AnswerSentence,
    Citation,
    PassageHit,
    Timings,
    Turn,
)
from embeddings.store.base import IndexBackend
from embeddings.store.records import PassageRow
from embeddings.text.phrasing import Rewritten, rewrite
from embeddings.text.terms import tokenize

V = TypeVar("V")
MAX_QUESTION_CHARS = 1000
# Not BM25 stop words, but they never appear in an answer: they would only dilute term-overlap shares.
QUESTION_WORDS = frozenset({"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "did", "doe",
                            "does", "do", "kind", "type", "name", "mani", "much", "were", "was", "is", "are", "be",
                            "been", "has", "have", "had"})

# A sentence opening like this leans on the one before it ("He later..."): show both.
_NEEDS_CONTEXT = re.compile(
    r"^(?:he|she|it|they|this|that|these|those|his|her|its|their|there|however|but|also|additionally|"
    r"moreover|meanwhile|instead|still|such)\b", re.I)
_CAUSE = re.compile(r"\b(?:because|due to|owing to|after|since|as a result|led to|caused|reason|"
                    r"prompted|so that|in order to|amid|following)\b", re.I)
_TIME = re.compile(r"\b(?:1[5-9]\d\d|20\d\d|january|february|march|april|may|june|july|august|september|"
                   r"october|november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
                   r"yesterday|today|century|decade)\b", re.I)
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|hundred|thousand|million|"
                     r"billion|dozen)\b", re.I)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+")


def question_type(question: str) -> str:
    q = question.strip().lower()
    for word, kind in (("why", "why"), ("when", "when"), ("what year", "when"), ("how many", "number"),
                       ("how much", "number"), ("who", "who"), ("whom", "who"), ("whose", "who"),
                       ("where", "where")):
        if q.startswith(word) or f" {word} " in f" {q[:40]} ":
            return kind
    return "other"


def _type_match(kind: str, sentence: str) -> float:
    if kind == "why":
        return 1.0 if _CAUSE.search(sentence) else 0.0
    if kind == "when":
        return 1.0 if _TIME.search(sentence) else 0.0
    if kind == "number":
        return 1.0 if _NUMBER.search(sentence) else 0.0
    if kind in ("who", "where"):
        return 1.0 if _NAME.search(sentence) else 0.0
    return 0.0


def validate_question(question: str) -> str:
    q = " ".join(question.split())
    if not q:
        raise BadQuestion("The question is empty: ask something about the articles.")
    if len(q) > MAX_QUESTION_CHARS:
        raise BadQuestion(f"That question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}.")
    if not re.search(r"\w", q):
        raise BadQuestion("That question has no words to search for.")
    return q


RERANK_FEATURES = ("z_dense", "z_bm25", "z_best_sentence_cosine", "best_sentence_cosine_gap",
                   "best_sentence_overlap", "best_sentence_bigrams", "passage_overlap",
                   "z_dense_when_words_differ", "z_bm25_when_one_stands_out")
SENTENCE_FEATURES = ("cosine", "overlap", "overlap_prev", "bigrams", "type_cue", "passage_prior")
CONFIDENCE_FEATURES = ("best_sentence_cosine", "top_passage_cosine", "best_sentence_overlap",
                       "answer_passage_overlap", "best_sentence_bigrams")


# Per passage id: its sentence spans and their question-dependent features (all but the rank prior).
SentenceMemo = dict[int, tuple[tuple[tuple[int, int], ...], np.ndarray]]


def _bigrams(terms: list[str]) -> frozenset[str]:
    # "a b" strings rather than (a, b) tuples: terms never hold a space, and thousands of cached tuples
    # made every full garbage collection slower (1.5 ms a question at 100k passages, measured).
    return frozenset(map(" ".join, zip(terms, terms[1:], strict=False)))


@dataclass(frozen=True)
class _SentenceTerms:
    """What a passage's sentences contribute to term features, whatever the question: per sentence its
    set of stemmed terms and of adjacent term pairs, and whether it carries a question kind's cue (filled
    per kind as questions of that kind come)."""

    terms: tuple[frozenset[str], ...]
    bigrams: tuple[frozenset[str], ...]
    cues: dict[str, np.ndarray] = field(default_factory=dict)  # question kind -> 0/1 per sentence

    def cue(self, kind: str, row: PassageRow) -> np.ndarray:
        got = self.cues.get(kind)
        if got is None:
            got = np.array([_type_match(kind, row.text[s:e]) for s, e in row.sentences], dtype=np.float32)
            self.cues[kind] = got
        return got


@dataclass(frozen=True)
class _ScoredSentence:
    passage_id: int
    start: int  # offsets into the passage text
    end: int
    cosine: float
    score: float


@dataclass(frozen=True)
class Retrieved:
    """A question's fused candidates and how it was read, before reranking (Answerer.retrieve)."""

    question: str
    qvec: np.ndarray        # the question's own vector (sentences are scored against it)
    search_vec: np.ndarray  # what dense search used (blended with the conversation for a follow-up)
    reading: Reading
    cands: list[Candidate]
    rows: dict[int, PassageRow]
    encoded_at: float       # perf_counter() when encoding was done (for Timings)


class _PassageLRU(Generic[V]):
    """Passage id -> value, the least recently used dropped beyond `size`; shared by the bot's threads.
    Passage ids are never reused (a replaced passage gets a new id), so entries never go stale."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[int, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get_many(self, ids: Iterable[int]) -> dict[int, V]:
        out: dict[int, V] = {}
        with self._lock:
            for pid in ids:
                hit = self._items.get(pid)
                if hit is not None:
                    self._items.move_to_end(pid)
                    out[pid] = hit
        return out

    def put_many(self, items: dict[int, V]) -> None:
        with self._lock:
            self._items.update(items)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class Answerer:
    def __init__(self, index: IndexBackend, encoder: Encoder, params: RetrievalParams | None = None,
                 sentence_cache: int = 4096) -> None:
        self.index = index
        self.encoder = encoder
        self.params = params or index.config.retrieval
        self.retriever = Retriever(index, self.params)
        # Popular passages come back question after question: their rows, sentence matrices and sentence
        # terms are kept (passage ids are never reused, so none of it goes stale).
        self._rows: _PassageLRU[PassageRow] = _PassageLRU(sentence_cache)
        self._vectors: _PassageLRU[np.ndarray] = _PassageLRU(sentence_cache)
        self._terms: _PassageLRU[_SentenceTerms] = _PassageLRU(sentence_cache)
        # Recent questions' vectors, so a follow-up blends in its predecessors' meaning without encoding
        # them again (the previous question of a thread was encoded moments ago).
        self._qvecs: OrderedDict[str, np.ndarray] = OrderedDict()
        self._qvec_lock = threading.Lock()
        self.question_cache = 512

    def _encode_questions(self, texts: list[str]) -> list[np.ndarray]:
        """Question vectors, the recently asked from memory and the rest in one encode call."""
        with self._qvec_lock:
            have = {t: self._qvecs[t] for t in texts if t in self._qvecs}
        todo = list(dict.fromkeys(t for t in texts if t not in have))
        if todo:
            fresh = dict(zip(todo, self.encoder.encode(todo), strict=True))
            with self._qvec_lock:
                self._qvecs.update(fresh)
                while len(self._qvecs) > self.question_cache:
                    self._qvecs.popitem(last=False)
            have.update(fresh)
        return [have[t] for t in texts]

    def rewritten(self, question: str, scope: str = BASE_SCOPE) -> Rewritten:
        """The question read as the articles are written: abbreviations spelt out, countries beside capitals,
        typos fixed into words the articles visible in `scope` hold (text/phrasing.py)."""
        return rewrite(question, lambda word: self._knows(word, scope))

    def _knows(self, word: str, scope: str) -> bool:
        """Whether the articles visible in `scope` hold this word (as the keyword index reads it)."""
        if not tokenize([word])[0]:
            return True  # a stop word: nothing to correct
        ids, _ = self.index.keyword_search(word, 1, scope)
        return len(ids) > 0

    def _prior(self, reading: Reading) -> dict[int, float]:
        """Passages near the previous answer's: 1.0 for it and its neighbours in its document, 0.6 for the
        document's other passages within three of it (ids of one document are consecutive)."""
        if not reading.prior_passages:
            return {}
        anchors = self._passages(list(reading.prior_passages))
        around = sorted({pid + d for pid in anchors for d in range(-3, 4)})
        rows = self._passages(around)
        out: dict[int, float] = {}
        for pid, row in rows.items():
            for a in anchors.values():
                if row.doc_id == a.doc_id:
                    out[pid] = max(out.get(pid, 0.0), 1.0 if abs(row.ordinal - a.ordinal) <= 1 else 0.6)
        return out

    def _passages(self, ids: list[int]) -> dict[int, PassageRow]:
        """Rows of these passages (absent: removed meanwhile), from the cache, then the store."""
        out = self._rows.get_many(ids)
        missing = [i for i in ids if i not in out]
        if missing:
            fresh = self.index.passages(missing)
            self._rows.put_many(fresh)
            out.update(fresh)
        return out

    def _sentence_terms(self, rows: list[PassageRow]) -> dict[int, _SentenceTerms]:
        """Term sets and cues of each sentence of these passages (reranking and answer selection both read
        them); the misses are tokenized in one call (per-call overhead dominates for short sentences)."""
        out = self._terms.get_many(r.id for r in rows)
        todo = [r for r in rows if r.id not in out]
        if todo:
            flat = tokenize([r.text[a:b] for r in todo for a, b in r.sentences])
            fresh: dict[int, _SentenceTerms] = {}
            pos = 0
            for row in todo:
                terms = flat[pos:pos + len(row.sentences)]
                pos += len(row.sentences)
                fresh[row.id] = _SentenceTerms(tuple(frozenset(t) for t in terms), tuple(map(_bigrams, terms)))
            self._terms.put_many(fresh)
            out.update(fresh)
        return out

    def _sentence_vectors(self, rows: list[PassageRow]) -> dict[int, np.ndarray]:
        """Sentence matrices for these passages: memory cache, then the stored ones, then (for indexes
        written before sentence vectors were stored) encoded now."""
        out = self._vectors.get_many(r.id for r in rows)
        todo = [r for r in rows if r.id not in out]
        if todo:
            stored = self.index.store.sentence_vectors_for([r.id for r in todo], self.index.config.dimension)
            fresh: dict[int, np.ndarray] = {}
            for row in todo:
                vecs = stored.get(row.id)
                if vecs is None or len(vecs) != len(row.sentences):
                    vecs = self.encoder.encode([row.text[s:e] for s, e in row.sentences])
                fresh[row.id] = vecs
            self._vectors.put_many(fresh)
            out.update(fresh)
        return out

    def retrieve(self, question: str, *, depth: int, scope: str = BASE_SCOPE,
                 history: Sequence[Turn] | None = None) -> Retrieved:
        """The fused candidates for an already validated question read in its conversation, before any
        reranking: the stage tools/fit_weights.py fits the models after, so it sees exactly what answer() sees."""
        reading = read_in_context(question, history)
        vecs = self._encode_questions([question, *reading.context])
        qvec = vecs[0]
        search_vec = qvec
        if reading.context and self.params.history_dense_weight > 0:
            # The follow-up's own meaning plus a share of its predecessors' (the most recent counts most).
            ctx = sum(v * 0.5 ** i for i, v in enumerate(vecs[1:]))
            blend = qvec + self.params.history_dense_weight * ctx / np.linalg.norm(ctx)
            search_vec = (blend / np.linalg.norm(blend)).astype(np.float32)
        encoded = time.perf_counter()
        prior = self._prior(reading)
        cands = self.retriever.search(reading.search_text, search_vec, depth, scope=scope, prior=prior)
        rows = self._passages([c.passage_id for c in cands])
        cands = [c for c in cands if c.passage_id in rows]  # a concurrent rm may have removed some
        if reading.prior_docs:
            docs = set(reading.prior_docs)
            cands = [replace(c, prior=max(c.prior, 0.6)) if rows[c.passage_id].doc.doc_key in docs else c
                     for c in cands]
        cands = _distinct_texts(cands, rows)
        return Retrieved(question, qvec, search_vec, reading, cands, rows, encoded)

    def answer(self, question: str, *, k: int = 5, scope: str = BASE_SCOPE,
               history: Sequence[Turn] | None = None) -> Answer:
        t0 = time.perf_counter()
        q = validate_question(question)
        self.index.refresh()
        depth = max(k, self.params.answer_passages, self.params.rerank_depth if self.params.rerank_weights else 0)
        said = self.rewritten(q, scope)
        text = said.text
        got = self.retrieve(text, depth=depth, scope=scope, history=history)
        qvec, rows, reading = got.qvec, got.rows, got.reading
        t1 = got.encoded_at
        cands = got.cands
        memo: SentenceMemo = {}
        if self.params.rerank_weights and len(cands) > 1:
            cands = self.rerank(text, qvec, cands, rows, memo=memo)
        t2 = time.perf_counter()
        hits = tuple(_hit(rows[c.passage_id], c) for c in cands[:k])
        best, feats = self.best_sentence(text, qvec, cands[: self.params.answer_passages], rows, memo=memo)
        confidence = 0.0
        if best is not None:
            confidence = self.confidence(self.confidence_features(got, cands, best, feats))
        found = best is not None and confidence >= self.params.answer_threshold
        sentences: tuple[AnswerSentence, ...] = ()
        if found and best is not None:
            sentences = self._with_context(best, rows[best.passage_id])
            # The passage holding the answer leads the list, so "the passage around it" is the first one.
            lead = [h for h in hits if h.passage_id == best.passage_id]
            if not lead:
                c = next(c for c in cands if c.passage_id == best.passage_id)
                lead = [_hit(rows[best.passage_id], c)]
            hits = tuple(lead + [h for h in hits if h.passage_id != best.passage_id])[:k]
        t3 = time.perf_counter()
        timings = Timings(encode_ms=(t1 - t0) * 1e3, search_ms=(t2 - t1) * 1e3, answer_ms=(t3 - t2) * 1e3,
                          total_ms=(t3 - t0) * 1e3)
        return Answer(q, found, sentences, hits, confidence, timings,
                      interpreted_as=reading.interpreted_as if reading.uses_history else
                      (text if said.changes else ""),
                      suggestions=() if found else closest_titles(hits))

    def confidence_features(self, got: Retrieved, cands: list[Candidate], best: _ScoredSentence,
                            feats: np.ndarray) -> np.ndarray:
        """What the confidence model reads (CONFIDENCE_FEATURES) for the chosen sentence. For a follow-up
        ("when did that happen?" shares little with any sentence) the answer is also judged against the
        question as read in its conversation (the blended vector, the borrowed words), whichever says more."""
        row = got.rows[best.passage_id]
        q_terms = set(tokenize([got.question])[0]) - QUESTION_WORDS
        passage_terms = frozenset().union(*self._sentence_terms([row])[row.id].terms)
        covered = len(q_terms & passage_terms) / max(len(q_terms), 1)
        own = np.array([feats[0], cands[0].dense, feats[1], covered, feats[3]], dtype=np.float32)
        if not got.reading.context:
            return own
        vec = self._sentence_vectors([row])[row.id][row.sentences.index((best.start, best.end))]
        terms = set(tokenize([got.reading.search_text])[0]) - QUESTION_WORDS
        said = set(tokenize([row.text[best.start:best.end]])[0])
        read = np.array([float(vec @ got.search_vec), cands[0].dense, len(terms & said) / max(len(terms), 1),
                         len(terms & passage_terms) / max(len(terms), 1), feats[3]], dtype=np.float32)
        return read if self.confidence(read) > self.confidence(own) else own

    def rerank_features(self, question: str, qvec: np.ndarray, cands: list[Candidate],
                        rows: dict[int, PassageRow], *, memo: SentenceMemo | None = None) -> np.ndarray:
        """One row per candidate, in RERANK_FEATURES order: z-scored dense and BM25 scores (over these
        candidates), z-scored best sentence cosine and its gap to the best of all candidates, the best
        sentence's share of question terms and of question bigrams, and the passage's share of question terms.

        The last two make the dense/keyword balance depend on the question: dense scaled by how little of
        the question any candidate contains (a query typed in other words than the article's), keywords by
        how sharply one passage stands out on BM25 (a rare name matched) rather than all scoring alike."""
        best = {c.passage_id: np.zeros(3, dtype=np.float32) - 1.0 for c in cands}
        for pid, _s, _e, f in self.sentence_features(question, qvec, cands, rows, memo=memo):
            b = best[pid]
            np.maximum(b, f[[0, 1, 3]], out=b)
        ms = np.array([best[c.passage_id][0] for c in cands], dtype=np.float32)
        q_terms = {t for t in tokenize([question])[0] if t not in QUESTION_WORDS}
        sentence_terms = self._sentence_terms([rows[c.passage_id] for c in cands])
        covered = np.array([len(q_terms.intersection(frozenset().union(*sentence_terms[c.passage_id].terms)))
                            for c in cands], dtype=np.float32) / max(len(q_terms), 1)
        keyword = np.array([c.keyword for c in cands], dtype=np.float32)
        z_dense = zscore(np.array([c.dense for c in cands], dtype=np.float32))
        z_keyword = zscore(keyword)
        top = float(keyword.max()) if len(keyword) else 0.0
        sharpness = (top - float(np.median(keyword))) / top if top > 0 else 0.0
        return np.stack([
            z_dense, z_keyword,
            zscore(ms), ms - ms.max(),
            np.array([max(best[c.passage_id][1], 0.0) for c in cands], dtype=np.float32),
            np.array([max(best[c.passage_id][2], 0.0) for c in cands], dtype=np.float32),
            covered,
            z_dense * (1.0 - float(covered.max(initial=0.0))),
            z_keyword * sharpness,
        ], axis=1)

    def rerank(self, question: str, qvec: np.ndarray, cands: list[Candidate],
               rows: dict[int, PassageRow], *, memo: SentenceMemo | None = None) -> list[Candidate]:
        weights = np.asarray(self.params.rerank_weights, dtype=np.float32)
        scores = self.rerank_features(question, qvec, cands, rows, memo=memo) @ weights
        scores = scores + self.params.history_rerank_weight * np.array([c.prior for c in cands], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return [replace(cands[i], score=float(scores[i])) for i in order]

    def sentence_features(self, question: str, qvec: np.ndarray, cands: list[Candidate],
                          rows: dict[int, PassageRow], *,
                          memo: SentenceMemo | None = None,
                          ) -> list[tuple[int, int, int, np.ndarray]]:
        """(passage id, start, end, features) for every sentence of the candidate passages.

        Features, in SENTENCE_FEATURES order: cosine to the question; share of question terms in the
        sentence; share found only in the sentence before it (coreference: "the group" after "the MEK");
        share of question bigrams in the sentence (phrases like "Iran-Iraq war"); question-type cue (a
        cause for why, a date for when, a name for who/where); the passage's rank prior.

        All but the prior depend on the question and the passage alone: `memo` keeps them per passage, so
        reranking and answer selection (which re-scores the top passages under new priors) share them."""
        memo = {} if memo is None else memo
        todo = [rows[c.passage_id] for c in cands if c.passage_id not in memo]
        if todo:
            memo.update(self._passage_sentence_features(question, qvec, todo))
        scores = np.array([c.score for c in cands], dtype=np.float32)
        spread = float(scores.max() - scores.min()) if len(scores) else 0.0
        prior = (scores - scores.min()) / spread if spread > 0 else np.ones_like(scores)
        out: list[tuple[int, int, int, np.ndarray]] = []
        for cand, p in zip(cands, prior, strict=True):
            spans, base = memo[cand.passage_id]
            if spans:
                feats = np.empty((len(spans), base.shape[1] + 1), dtype=np.float32)
                feats[:, :-1] = base
                feats[:, -1] = p
                out.extend((cand.passage_id, s, e, f) for (s, e), f in zip(spans, feats, strict=True))
        return out

    def _passage_sentence_features(self, question: str, qvec: np.ndarray,
                                   passages: list[PassageRow],
                                   ) -> SentenceMemo:
        q_tokens = [t for t in tokenize([question])[0] if t not in QUESTION_WORDS]
        q_terms = set(q_tokens)
        q_bigrams = _bigrams(q_tokens)
        n_terms, n_bigrams = max(len(q_terms), 1), max(len(q_bigrams), 1)
        kind = question_type(question)
        matrices = self._sentence_vectors(passages)
        sentence_terms = self._sentence_terms(passages)
        out: SentenceMemo = {}
        for row in passages:
            base = np.zeros((len(row.sentences), 5), dtype=np.float32)
            out[row.id] = (row.sentences, base)
            if not row.sentences:
                continue
            base[:, 0] = matrices[row.id] @ qvec
            cached = sentence_terms[row.id]
            prev: frozenset[str] = frozenset()
            for i, (term_set, bigrams) in enumerate(zip(cached.terms, cached.bigrams, strict=True)):
                own = q_terms & term_set
                base[i, 1] = len(own) / n_terms
                base[i, 2] = len((q_terms & prev) - own) / n_terms
                base[i, 3] = len(q_bigrams & bigrams) / n_bigrams
                prev = term_set
            base[:, 4] = cached.cue(kind, row)
        return out

    def best_sentence(self, question: str, qvec: np.ndarray, cands: list[Candidate],
                      rows: dict[int, PassageRow], *, memo: SentenceMemo | None = None,
                      ) -> tuple[_ScoredSentence | None, np.ndarray]:
        """The best-scoring sentence of these passages and its SENTENCE_FEATURES (None, empty: no sentence)."""
        weights = np.asarray(self.params.sentence_weights, dtype=np.float32)
        scored = self.sentence_features(question, qvec, cands, rows, memo=memo) if cands else []
        if not scored:
            return None, np.zeros(0, dtype=np.float32)
        feats = np.stack([f for *_, f in scored])
        scores = feats @ weights
        i = int(np.argmax(scores))
        pid, start, end, _ = scored[i]
        return _ScoredSentence(pid, start, end, float(feats[i, 0]), float(scores[i])), feats[i]

    def confidence(self, features: np.ndarray) -> float:
        """Probability that the articles hold the answer, from CONFIDENCE_FEATURES (logistic, fitted on the
        tune sets by tools/fit_weights.py)."""
        w = np.asarray(self.params.confidence_weights, dtype=np.float64)
        # A model fitted on fewer features (an index's stored override from before) reads the first ones.
        z = float(np.asarray(features[: len(w)], dtype=np.float64) @ w) + self.params.confidence_bias
        return float(1.0 / (1.0 + np.exp(-z)))

    @staticmethod
    def _with_context(best: _ScoredSentence, row: PassageRow) -> tuple[AnswerSentence, ...]:
        idx = row.sentences.index((best.start, best.end))
        text = row.text[best.start:best.end]
        out = [AnswerSentence(text, row.id, best.start, best.end, best.score)]
        if idx > 0 and _NEEDS_CONTEXT.match(text):
            s, e = row.sentences[idx - 1]
            out.insert(0, AnswerSentence(row.text[s:e], row.id, s, e, best.score))
        return tuple(out)


def _distinct_texts(cands: list[Candidate], rows: dict[int, PassageRow]) -> list[Candidate]:
    """One copy of each passage: the same article ingested twice (a file and its saved copy, an upload
    under another name: same title, same text) is one passage to a reader, and copies would fill the list
    shown with the answer and skew the reranker's per-question z-scores. A copy keeps the best-placed one's
    place; the copy the conversation was about (higher prior) is the one kept, so a thread keeps citing
    the document it cited."""
    kept: dict[tuple[str, str], int] = {}
    out: list[Candidate] = []
    for c in cands:
        row = rows[c.passage_id]
        key = (row.doc.title, row.text)
        at = kept.get(key)
        if at is None:
            kept[key] = len(out)
            out.append(c)
        elif c.prior > out[at].prior:
            out[at] = replace(c, score=out[at].score)
    return out


def closest_titles(hits: Sequence[PassageHit], n: int = SUGGESTIONS) -> tuple[str, ...]:
    """The documents of the closest passages, best first, each once: their titles (the source when a
    document has none). Only names where to look; whether there is an answer is decided elsewhere."""
    names = dict.fromkeys(" ".join((h.citation.title or h.citation.source).split()) for h in hits)
    return tuple(t for t in names if t)[:n]


def _hit(row: PassageRow, cand: Candidate) -> PassageHit:
    d = row.doc
    return PassageHit(
        passage_id=row.id, text=row.text, score=cand.score,
        citation=Citation(doc_key=d.doc_key, title=d.title, source=d.source, outlet=d.outlet,
                          published=d.published, paragraph=row.paragraph),
        start=row.start, end=row.end, dense_score=cand.dense, keyword_score=cand.keyword,
    )
