"""Index.keyword_search: top-k visible rows plus the keyword scores of requested ids, in one call."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embeddings.models import guild_scope
from tests.support import SEEDS, make_service


def test_keyword_search_scope_and_also(tmp_path):
    svc = make_service(tmp_path / "idx")
    svc.ingest([str(SEEDS)], progress=False)
    doc = tmp_path / "g.txt"
    doc.write_text("Tram Notes\n\nThe Southport tram depot opened a museum of Egyptian tram tickets.\n")
    svc.ingest([str(doc)], scope=guild_scope(5), progress=False)
    idx = svc.index
    all_ids = idx._caches.keyword.ids
    guild_pids = set(all_ids[idx._caches.scopes == guild_scope(5)].tolist())

    ids, scores = idx.keyword_search("Egypt Iran ties", 3, "")
    assert len(ids) <= 3 and (scores > 0).all() and list(ids) == sorted(ids)
    assert not guild_pids & set(ids.tolist()), "the base corpus must not see a guild's passages"

    mine, _ = idx.keyword_search("Southport tram tickets", 3, guild_scope(5))
    assert guild_pids <= set(mine.tolist())

    # `also` ids come back with their own scores (0 when no term matches), whatever k is.
    probe = np.array(sorted(all_ids[:2].tolist()) + [10**9])
    ids, scores = idx.keyword_search("Southport tram tickets", 0, "", also=probe)
    np.testing.assert_array_equal(ids, probe)
    full = idx._caches.keyword.scores("Southport tram tickets")
    np.testing.assert_allclose(scores[:2], full[:2], rtol=1e-6)
    assert scores[2] == 0.0

    # No query term in the vocabulary: nothing from the top-k side, `also` still scored (as 0).
    ids, scores = idx.keyword_search("zzzz qqqq", 5, "", also=probe[:1])
    np.testing.assert_array_equal(ids, probe[:1])
    assert scores.tolist() == [0.0]
    svc.close()


def test_tokenize_matches_bm25s_exactly():
    """text.terms.tokenize replaces bm25s.tokenize for speed; indexes built with either must stay readable by
    the other, so the terms must be identical, including odd input and repeated calls (the stem cache)."""
    import bm25s
    import Stemmer

    from embeddings.text.terms import tokenize

    texts = [p for f in sorted(SEEDS.glob("*.txt")) for p in f.read_text().split("\n\n") if p.strip()]
    texts += ["", "a I", "Über naïve café—CO2 emissions' 1990s x2 I'm don't", "THE the The running runs ran",
              "Egypt's ties with Iran; Egypt cut ties.", "数据 données 123 4 _x_ __"]
    stemmer = Stemmer.Stemmer("english")
    want = [list(t) for t in bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False,
                                            show_progress=False)]
    from bm25s.stopwords import STOPWORDS_EN

    from embeddings.text.terms import STOP_WORDS

    assert STOP_WORDS == frozenset(STOPWORDS_EN)
    assert tokenize(texts) == want
    assert [tokenize([t])[0] for t in texts] == want  # one at a time, now from the cache
    assert any(w for w in want)  # the fixture has terms at all


def test_keyword_search_equals_brute_force_over_every_row(tmp_path):
    """The posting-list path must rank exactly as scoring every row and masking other guilds would."""
    svc = make_service(tmp_path / "idx")
    svc.ingest([str(SEEDS)], progress=False)
    doc = tmp_path / "g.txt"
    doc.write_text("Egypt Tram Notes\n\nThe Egypt tram depot in Iran opened a museum of diplomatic ties.\n")
    svc.ingest([str(doc)], scope=guild_scope(7), progress=False)
    idx = svc.index
    kw = idx._caches.keyword
    scopes = idx._caches.scopes
    rng = np.random.default_rng(0)
    vocab_words = [w for w in SEEDS.joinpath(next(p.name for p in SEEDS.glob("*.txt"))).read_text().split()
                   if w.isalpha()]
    queries = ["Why did Egypt cut ties with Iran?", "Egypt Egypt tram", "museum", "zzzz", "the of and"]
    queries += [" ".join(rng.choice(vocab_words, 3)) for _ in range(20)]
    for query in queries:
        full = kw.scores(query)
        for scope in ("", guild_scope(7), guild_scope(8)):
            visible = (scopes == "") | (scopes == scope)
            masked = np.where(visible, full, 0.0)
            for k in (1, 3, 10):
                ids, scores = idx.keyword_search(query, k, scope)
                assert visible[np.searchsorted(kw.ids, ids)].all()
                positive = np.sort(masked[masked > 0])[::-1]
                if len(positive) > k:  # ties at the k-th score may pick either row: compare scores
                    assert len(ids) == k and (scores >= positive[k - 1] - 1e-6).all()
                else:  # every visible row with a term comes back
                    np.testing.assert_array_equal(ids, np.sort(kw.ids[masked > 0]))
                np.testing.assert_allclose(scores, full[np.searchsorted(kw.ids, ids)], rtol=1e-5)
            probe = np.concatenate([rng.choice(kw.ids, 4), [10**9]])
            ids, scores = idx.keyword_search(query, 0, scope, also=probe)
            np.testing.assert_array_equal(ids, np.unique(probe))
            held = np.isin(ids, kw.ids)
            np.testing.assert_allclose(scores[held], full[np.searchsorted(kw.ids, ids[held])], rtol=1e-5)
            assert (scores[~held] == 0).all()
    svc.close()


def _zipf_texts(n: int, seed: int, words: int = 30) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}x" for i in range(400)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf: a few common terms, many rare ones
    weights /= weights.sum()
    return [" ".join(rng.choice(vocab, rng.integers(0, words) if words else 0, p=weights)) for _ in range(n)]


def _bm25s_scores(texts: list[str], query: str) -> np.ndarray:
    """bm25s's own scores: the formula existing users' rankings came from."""
    import bm25s

    from embeddings.text.terms import tokenize

    retriever = bm25s.BM25()
    retriever.index(tokenize(texts), show_progress=False)
    terms = [t for t in tokenize([query])[0] if t in retriever.vocab_dict]
    if not terms:
        return np.zeros(len(texts), dtype=np.float32)
    return np.asarray(retriever.get_scores(terms), dtype=np.float32)


QUERIES = ["w0x w1x", "w350x w399x", "w0x w399x w399x", "w5x", "nothing here", "w0x w0x w1x w2x w3x",
           *[" ".join(np.random.default_rng(9).choice([f"w{i}x" for i in range(400)], 4)) for _ in range(20)]]


def test_sparse_scores_equal_bm25s_scores_for_rare_and_common_terms():
    """Posting-list sums (sorted-unique for rare terms, corpus-sized bincount for common ones) must equal
    bm25s's own get_scores, repeated terms included."""
    from embeddings.store.embedded.keyword import KeywordIndex

    texts = _zipf_texts(600, 3)
    kw = KeywordIndex.build(list(range(100, 700)), texts)
    branches = set()
    for query in QUERIES:
        want = _bm25s_scores(texts, query)
        rows, values = kw.sparse_scores(query)
        np.testing.assert_array_equal(rows, np.flatnonzero(want))
        np.testing.assert_allclose(values, want[rows], rtol=1e-5)
        parts = kw._postings(query)
        if len(parts) > 1:
            branches.add(sum(len(r) for r, _ in parts) * 8 >= len(texts))
    assert branches == {True, False}, "both summation paths must be exercised"


def test_segmented_index_scores_as_one_built_at_once(tmp_path):
    """Ingests add segments and removals rewrite them; whatever the history, every score must equal bm25s
    over the passages left, and the segments must survive a save and load."""
    from embeddings.store.embedded.keyword import KeywordIndex

    texts = _zipf_texts(900, 4)
    texts[5] = texts[300] = ""  # rows without a term count in the average length
    live: dict[int, str] = {}
    kw = KeywordIndex()
    rng = np.random.default_rng(5)
    next_id, cursor = 1, 0
    for step, take in enumerate([150, 150, 300, 40, 3, 1, 40, 1, 3, 1, 12, 1, 3]):
        batch = texts[cursor:cursor + take]
        cursor += take
        ids = np.arange(next_id, next_id + len(batch), dtype=np.int64)
        next_id += len(batch) + int(rng.integers(0, 3))  # ids grow, with gaps (AUTOINCREMENT after deletes)
        gone = np.array(sorted(rng.choice(list(live), min(len(live), int(rng.integers(0, 20))), replace=False)),
                        dtype=np.int64) if live and step % 3 == 2 else np.zeros(0, dtype=np.int64)
        before = {s.name for s in kw.segments}
        kw = kw.updated(gone, ids, iter(batch))
        for i in gone.tolist():
            del live[i]
        live.update(zip(ids.tolist(), batch, strict=True))
        np.testing.assert_array_equal(kw.ids, sorted(live))
        if not len(gone) and take == 1 and len(kw.segments) > 1:
            assert {s.name for s in kw.segments[:-1]} <= before, "a small ingest must not rewrite big segments"
    assert 1 < len(kw.segments) <= 8
    assert all((np.diff(s.indptr) > 0).all() for s in kw.segments), "removed rows' terms must not linger"
    sizes = [len(s) for s in kw.segments]
    assert all(a > 4 * b for a, b in itertools.pairwise(sizes)), sizes  # geometric: O(log n) segments
    kw.save_new(tmp_path)
    loaded = KeywordIndex.load(tmp_path, [s.name for s in kw.segments])
    again = KeywordIndex.load(tmp_path, [s.name for s in kw.segments], reuse=loaded)
    assert all(a is b for a, b in zip(again.segments, loaded.segments, strict=True))
    corpus = [live[i] for i in sorted(live)]
    for query in QUERIES:
        want = _bm25s_scores(corpus, query)
        for index in (kw, loaded):
            rows, values = index.sparse_scores(query)
            np.testing.assert_array_equal(rows, np.flatnonzero(want), err_msg=query)
            np.testing.assert_allclose(values, want[rows], rtol=1e-5, err_msg=query)


def test_segment_rejects_ids_that_do_not_follow():
    from embeddings.store.embedded.keyword import KeywordIndex

    kw = KeywordIndex.build([10, 20], ["alpha beta", "gamma"])
    with pytest.raises(ValueError, match="follow"):
        kw.updated(np.zeros(0, dtype=np.int64), np.array([15]), ["delta"])
    assert kw.updated(np.array([10, 20]), np.zeros(0, dtype=np.int64), []).segments == ()
