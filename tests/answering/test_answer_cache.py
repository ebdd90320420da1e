"""The answerer's per-passage caches: bounded, recency-ordered, and actually consulted."""

from __future__ import annotations

from embeddings.answering.answer import _PassageLRU
from tests.support import SEEDS, make_service


def test_passage_lru_keeps_the_most_recently_used():
    lru: _PassageLRU[str] = _PassageLRU(2)
    lru.put_many({1: "a", 2: "b"})
    assert lru.get_many([1]) == {1: "a"}  # 1 is now the most recent
    lru.put_many({3: "c"})
    assert lru.get_many([1, 2, 3]) == {1: "a", 3: "c"}
    assert lru.get_many([]) == {}


def test_answerer_reads_sentence_vectors_from_the_store_once(tmp_path, monkeypatch):
    svc = make_service(tmp_path / "idx")
    svc.ingest([str(SEEDS)], progress=False)
    store = svc.index.store
    calls: list[list[int]] = []
    real = store.sentence_vectors_for

    def counting(ids, dim):
        calls.append(list(ids))
        return real(ids, dim)

    monkeypatch.setattr(store, "sentence_vectors_for", counting)
    first = svc.ask("Why did Egypt cut ties with Iran?")
    assert calls, "the first question must read sentence vectors from the store"
    read = len(calls)
    second = svc.ask("Why did Egypt cut ties with Iran?")
    assert len(calls) == read, "the same passages again must come from the cache"
    assert [h.passage_id for h in first.passages] == [h.passage_id for h in second.passages]
    assert [s.text for s in first.sentences] == [s.text for s in second.sentences]
    svc.close()


def test_answerer_reads_passage_rows_once_and_cached_features_equal_fresh_ones(tmp_path, monkeypatch):
    svc = make_service(tmp_path / "idx")
    svc.ingest([str(SEEDS)], progress=False)
    fetched: list[int] = []
    real = svc.index.passages

    def counting(ids):
        fetched.extend(ids)
        return real(ids)

    monkeypatch.setattr(svc.index, "passages", counting)
    question = "When did Egypt cut ties with Iran, and why?"
    first = svc.ask(question)
    assert fetched, "the first question must read its passages from the store"
    read = len(fetched)
    again = svc.ask(question)
    assert len(fetched) == read, "rows of passages already read must come from the cache"
    fresh = make_service(tmp_path / "idx")  # a new answerer: every cache empty
    cold = fresh.ask(question)
    for a in (again, cold):
        assert [(h.passage_id, round(h.score, 5)) for h in a.passages] == \
               [(h.passage_id, round(h.score, 5)) for h in first.passages]
        assert [s.text for s in a.sentences] == [s.text for s in first.sentences]
        assert round(a.confidence, 6) == round(first.confidence, 6)
    fresh.close()
    svc.close()
