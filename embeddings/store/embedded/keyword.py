"""Keyword index: BM25 over stemmed, stop-worded passage text with its headline, kept in immutable segments.

An ingest adds a segment of its own passages instead of re-indexing the corpus (a full rebuild at 100k
passages took ~90 s and 0.8 GB to add 500). Scores are not stored: they depend on corpus-wide statistics,
which are summed over the segments at question time for the question's terms only, so a segmented index
ranks exactly as one built at once. The formula is bm25s's default ("lucene" BM25, k1=1.5, b=0.75), which
earlier indexes used; a test pins equality with bm25s."""

from __future__ import annotations

import itertools
import json
import math
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from embeddings.store.embedded import atomic
from embeddings.text.terms import TOKENIZE_CHUNK, tokenize

K1, B = 1.5, 0.75
# A segment is merged into the one before it once it holds a quarter of that one's rows: segment sizes
# shrink geometrically (O(log n) of them), and each row is rewritten O(log n) times over its life.
MERGE_RATIO = 4
MAX_SEGMENTS = 24  # removals can leave small segments mid-list; past this the smallest pair merges


class Segment:
    """An immutable slice of the keyword index: the term postings of some passages (ids ascending, all above
    the previous segment's). Term frequencies and row lengths are stored, not scores."""

    FIELDS = ("ids", "lengths", "indptr", "rows", "tf")

    def __init__(self, name: str, ids: np.ndarray, lengths: np.ndarray, terms: list[str], indptr: np.ndarray,
                 rows: np.ndarray, tf: np.ndarray) -> None:
        self.name = name  # its directory once saved; a new name for every new content
        self.ids = ids  # int64; local row i is passage ids[i]
        self.lengths = lengths  # int32: row i's terms after stop words (BM25's document length)
        self.terms = terms  # local term j's postings: rows[indptr[j]:indptr[j + 1]], rows ascending
        self.vocab = {t: j for j, t in enumerate(terms)}
        self.indptr = indptr  # int64
        self.rows = rows  # int32
        self.tf = tf  # float32 term frequency of each posting

    def __len__(self) -> int:
        return len(self.ids)

    def term_of_postings(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.terms), dtype=np.int32), np.diff(self.indptr))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for field in self.FIELDS:
            np.save(directory / f"{field}.npy", getattr(self, field), allow_pickle=False)
        (directory / "terms.json").write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Segment:
        arrays = {f: np.load(directory / f"{f}.npy", allow_pickle=False) for f in cls.FIELDS}
        terms = json.loads((directory / "terms.json").read_text(encoding="utf-8"))
        problem = _check_segment(arrays, terms)
        if problem:
            raise ValueError(f"keyword segment {directory} is inconsistent: {problem}")
        return cls(directory.name, terms=terms, **arrays)

    def row_terms(self, row: int) -> dict[str, int]:
        """Term counts of one row, read back from the postings (O(postings); for spot checks)."""
        at = np.flatnonzero(self.rows == row)
        term = np.searchsorted(self.indptr, at, side="right") - 1
        return {self.terms[int(j)]: int(round(float(c))) for j, c in zip(term, self.tf[at], strict=True)}


def _check_segment(a: dict[str, np.ndarray], terms: object) -> str:
    """What is wrong with a loaded segment's arrays, cheaply (linear in its postings), or ''. Catches files
    of valid format holding wrong values, which would crash questions or rank them wrongly."""
    ids, lengths, indptr, rows, tf = (a[f] for f in Segment.FIELDS)
    if any(x.ndim != 1 for x in (ids, lengths, indptr, rows, tf)):
        return "arrays must be one-dimensional"
    if not all(np.issubdtype(x.dtype, np.integer) for x in (ids, lengths, indptr, rows)) \
            or not np.issubdtype(tf.dtype, np.floating):
        return "wrong array types"
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms) or len(set(terms)) != len(terms):
        return "terms must be distinct strings"
    n = len(ids)
    if len(indptr) != len(terms) + 1 or len(lengths) != n or not len(rows) == len(tf) == (indptr[-1] if len(indptr) else -1):
        return "array sizes disagree"
    if indptr[0] != 0 or (np.diff(indptr) <= 0).any():
        return "term offsets are not increasing"  # (a term without postings is dropped when built)
    if n > 1 and (np.diff(ids) <= 0).any():
        return "passage ids are not ascending"
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        return "postings name rows the segment does not have"
    if not np.isfinite(tf).all() or (tf < 1).any() or (tf != np.round(tf)).any():
        return "term frequencies are not positive whole numbers"
    if (lengths < 0).any() or not np.array_equal(np.bincount(rows, weights=tf, minlength=n), lengths):
        return "row lengths differ from the sum of their term frequencies"
    # each term's rows ascending: row order may only restart where the next term begins
    restart = np.flatnonzero(np.diff(rows) <= 0) + 1
    if len(restart) and not np.isin(restart, indptr).all():
        return "a term's postings are not in row order"
    return ""


def _new_name() -> str:
    return f"kwseg-{secrets.token_hex(8)}"


def _from_postings(ids: np.ndarray, lengths: np.ndarray, terms: list[str], term: np.ndarray, row: np.ndarray,
                   tf: np.ndarray) -> Segment:
    """A segment from postings in row order (term-major order is made here by a stable sort on term)."""
    counts = np.bincount(term, minlength=len(terms))
    if len(counts) and not counts.all():  # terms whose every row was removed: dropped, not carried on
        live = counts > 0
        term = (np.cumsum(live) - 1)[term]
        terms = [t for t, keep in zip(terms, live, strict=True) if keep]
        counts = counts[live]
    order = np.argsort(term, kind="stable")
    indptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Segment(_new_name(), ids, lengths.astype(np.int32), terms, indptr, row[order].astype(np.int32),
                   tf[order].astype(np.float32))


def build_segment(ids: np.ndarray, texts: Iterable[str]) -> Segment:
    """The segment of texts[i] as passage ids[i]. `texts` may be a generator: it is tokenized a chunk at a
    time and only integer postings are kept, so building 100k passages holds no lists of words."""
    vocab: dict[str, int] = {}
    terms_p, rows_p, tf_p, lengths = [], [], [], []
    row0 = 0
    pending = iter(texts)
    while chunk := list(itertools.islice(pending, TOKENIZE_CHUNK)):
        tokens = tokenize(chunk)
        sizes = [len(t) for t in tokens]
        lengths.extend(sizes)
        flat = np.fromiter((vocab.setdefault(w, len(vocab)) for ws in tokens for w in ws), dtype=np.int64,
                           count=sum(sizes))
        rows = np.repeat(np.arange(len(chunk), dtype=np.int64), sizes)
        # (row, term) pairs with their counts, in row order: the key sorts rows first
        keys, tf = np.unique(rows << 32 | flat, return_counts=True)
        terms_p.append((keys & 0xFFFFFFFF).astype(np.int32))
        rows_p.append((keys >> 32) + row0)
        tf_p.append(tf)
        row0 += len(chunk)
    if row0 != len(ids):
        raise ValueError(f"{len(ids)} ids but {row0} texts")
    if not row0:
        return _from_postings(ids, np.zeros(0), [], np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    return _from_postings(ids, np.asarray(lengths), list(vocab), np.concatenate(terms_p), np.concatenate(rows_p),
                          np.concatenate(tf_p))


def merge_segments(a: Segment, b: Segment) -> Segment:
    """One segment holding a's rows then b's (b's ids must all be above a's)."""
    vocab = dict(a.vocab)
    terms = list(a.terms)
    for t in b.terms:
        if t not in vocab:
            vocab[t] = len(terms)
            terms.append(t)
    b_map = np.fromiter((vocab[t] for t in b.terms), dtype=np.int32, count=len(b.terms))
    # a's postings are term-major; sorting the concatenation by term (stably) keeps each term's a-rows
    # before its b-rows, which is row order because b's rows come after a's.
    term = np.concatenate([a.term_of_postings(), b_map[b.term_of_postings()]])
    row = np.concatenate([a.rows.astype(np.int64), b.rows.astype(np.int64) + len(a)])
    return _from_postings(np.concatenate([a.ids, b.ids]), np.concatenate([a.lengths, b.lengths]), terms, term, row,
                          np.concatenate([a.tf, b.tf]))


def drop_rows(seg: Segment, remove_ids: np.ndarray) -> Segment | None:
    """seg without the passages in remove_ids (itself when none are there, None when all are)."""
    keep = ~np.isin(seg.ids, remove_ids)
    if keep.all():
        return seg
    if not keep.any():
        return None
    new_row = np.cumsum(keep) - 1
    held = keep[seg.rows]
    term = seg.term_of_postings()[held]
    return _from_postings(seg.ids[keep], seg.lengths[keep], list(seg.terms), term, new_row[seg.rows[held]],
                          seg.tf[held])


def _settle(segments: list[Segment]) -> list[Segment]:
    while len(segments) > 1 and len(segments[-2]) <= MERGE_RATIO * len(segments[-1]):
        segments[-2:] = [merge_segments(segments[-2], segments[-1])]
    while len(segments) > MAX_SEGMENTS:
        i = min(range(len(segments) - 1), key=lambda j: len(segments[j]) + len(segments[j + 1]))
        segments[i:i + 2] = [merge_segments(segments[i], segments[i + 1])]
    return segments


class KeywordIndex:
    """BM25 over a list of segments; row i of the whole (segments in order) is passage ids[i]."""

    def __init__(self, segments: Sequence[Segment] = ()) -> None:
        self.segments = tuple(s for s in segments if len(s))
        parts = [s.ids for s in self.segments]
        self.ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if len(self.ids) > 1 and not (np.diff(self.ids) > 0).all():
            raise ValueError("keyword segments must hold ascending, distinct passage ids")
        self._offsets = np.cumsum([0] + [len(s) for s in self.segments])[:-1].tolist()
        lengths = np.concatenate([s.lengths for s in self.segments]).astype(np.float64) if parts else np.zeros(0)
        avg = float(lengths.mean()) if len(lengths) else 1.0
        # BM25's length normalisation of each row; it moves with the corpus average, so it is made here
        self._norm = K1 * ((1 - B) + B * lengths / avg) if avg > 0 else np.full(len(lengths), K1)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: Sequence[int], texts: Iterable[str]) -> KeywordIndex:
        """The index of texts[i] as passage ids[i] (ascending), in one segment."""
        return cls([build_segment(np.asarray(ids, dtype=np.int64), texts)])

    def updated(self, remove_ids: np.ndarray, add_ids: np.ndarray, add_texts: Iterable[str]) -> KeywordIndex:
        """A new index without remove_ids and with add_ids (all above the ids kept); self is unchanged,
        so a reader holding it is never disturbed. Only segments that lose rows are rewritten."""
        segments: list[Segment] = []
        for seg in self.segments:
            kept = drop_rows(seg, remove_ids) if len(remove_ids) else seg
            if kept is not None:
                segments.append(kept)
        if len(add_ids):
            if segments and int(add_ids[0]) <= int(segments[-1].ids[-1]):
                raise ValueError("new passage ids must follow the indexed ones")
            segments.append(build_segment(np.asarray(add_ids, dtype=np.int64), add_texts))
        return KeywordIndex(_settle(segments))

    def _postings(self, query: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """(global rows, BM25 score) of each query term's postings, a term repeated as often as asked."""
        out = []
        n = len(self.ids)
        for term in tokenize([query])[0]:
            hits = [(seg, off, seg.vocab[term]) for seg, off in zip(self.segments, self._offsets, strict=True)
                    if term in seg.vocab]
            df = sum(int(seg.indptr[j + 1] - seg.indptr[j]) for seg, _, j in hits)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for seg, off, j in hits:
                lo, hi = seg.indptr[j], seg.indptr[j + 1]
                if lo == hi:
                    continue
                rows = seg.rows[lo:hi] + np.int64(off)
                tf = seg.tf[lo:hi]
                out.append((rows, idf * tf / (self._norm[rows] + tf)))
        return out

    def sparse_scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores): the rows holding at least one query term (ascending, row i is passage ids[i]) and
        their BM25 scores. Read from the query terms' posting lists alone, so a question costs what its
        terms' postings cost, not the size of the corpus. A repeated term counts again (as in bm25s)."""
        parts = self._postings(query)
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = np.concatenate([r for r, _ in parts])
        values = np.concatenate([v for _, v in parts])
        if len(parts) == 1:
            return rows, values.astype(np.float32)  # one posting list: sorted, unique
        if len(rows) * 8 >= len(self.ids):
            # Common terms: their postings already cover a good share of the corpus, and summing into a
            # corpus-sized array is linear where sorting the postings (below) is not (3 ms at 100k).
            total = np.bincount(rows, weights=values, minlength=len(self.ids))
            hit = np.flatnonzero(total)
            return hit.astype(np.int64), total[hit].astype(np.float32)
        unique, at = np.unique(rows, return_inverse=True)
        return unique.astype(np.int64), np.bincount(at, weights=values, minlength=len(unique)).astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for the query (rows align with self.ids)."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        rows, values = self.sparse_scores(query)
        out[rows] = values
        return out

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def save_new(self, home: Path) -> None:
        """Write the segments not yet in `home` (saved ones never change), each published atomically."""
        for seg in self.segments:
            final = home / seg.name
            if final.exists():
                continue
            tmp = home / f".{seg.name}.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            try:
                seg.save(tmp)
            except BaseException:
                atomic.discard(tmp)
                raise
            atomic.publish_dir(tmp, final)

    @classmethod
    def load(cls, home: Path, names: Sequence[str], reuse: KeywordIndex | None = None) -> KeywordIndex:
        """The index of saved segments `names`; those already in `reuse` are taken from memory, so a reader
        catching up with an ingest reads only the new segments."""
        have = {s.name: s for s in reuse.segments} if reuse is not None else {}
        return cls([have[n] if n in have else Segment.load(home / n) for n in names])
