"""The dense index: exact below the size threshold, IVF above it, memory-mapped when loaded."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.models import guild_scope
from embeddings.store.embedded import dense
from embeddings.store.embedded.dense import DenseIndex, build_flat
from tests.support import SEEDS, make_service


def clustered(n: int, d: int = 32, centres: int = 40, seed: int = 0) -> np.ndarray:
    # Real embeddings cluster by topic; uniform random vectors would be an unfair test of any ANN index.
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_small_index_stays_exact():
    x = clustered(500)
    ix = DenseIndex(32)
    ix.add(np.arange(500), x)
    assert not ix.fit_size(threshold=1000)
    assert ix.kind == "flat"


def test_a_question_searches_on_one_openmp_thread_and_leaves_the_setting_alone():
    faiss = pytest.importorskip("faiss")
    x = clustered(300)
    ix = DenseIndex(32)
    ix.add(np.arange(300), x)
    seen: list[int] = []
    inner = ix._index

    class Spy:  # records the OpenMP threads in force when faiss is asked
        def __getattr__(self, name: str):
            return getattr(inner, name)

        def search(self, *args, **kwargs):
            seen.append(faiss.omp_get_max_threads())
            return inner.search(*args, **kwargs)

    ix._index = Spy()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        ids, _ = ix.search(x[7], 5)
        assert seen == [1]
        assert faiss.omp_get_max_threads() == 2  # builds on this thread keep their threads
    finally:
        faiss.omp_set_num_threads(before)
    assert ids[0] == 7


def test_switches_to_ivf_above_threshold_and_keeps_recall():
    x = clustered(6000)
    ids = np.arange(6000) * 3 + 1  # ids are passage ids, not positions
    ix = DenseIndex(32)
    ix.add(ids, x)
    assert ix.fit_size(threshold=5000) and ix.kind == "ivf"
    assert ix.nprobe >= dense.MIN_PROBES
    np.testing.assert_array_equal(ix.ids(), ids)
    np.testing.assert_allclose(ix.vectors([ids[7]]), x[7:8], atol=1e-6)
    exact = build_flat(x, ids)
    q = clustered(100, seed=9)
    _, truth = exact.search(q, 10)
    hits = sum(len(set(ix.search(q[i], 10)[0]) & set(truth[i])) for i in range(100))
    assert hits / 1000 >= 0.95


def test_ivf_filters_inside_the_scan():
    x = clustered(6000)
    ix = DenseIndex(32)
    ix.add(np.arange(6000), x)
    ix.fit_size(threshold=5000)
    top, _ = ix.search(x[0], 10)
    excluded = top[:5]
    got, _ = ix.search(x[0], 10, exclude=excluded)
    assert len(got) == 10, "exclusion must not shrink the result list"
    assert not set(got) & set(excluded)


@pytest.mark.parametrize("threshold", [5000, 10**9])  # IVF and exact
def test_exclusion_selector_is_reused_per_array_and_never_stale(threshold):
    x = clustered(6000)
    ix = DenseIndex(32)
    ix.add(np.arange(6000), x)
    ix.fit_size(threshold=threshold)
    top, _ = ix.search(x[0], 10)
    first, second = top[:3].copy(), top[3:6].copy()
    got1, _ = ix.search(x[0], 10, exclude=first)
    sel = ix._selector(first)
    assert ix._selector(first) is sel, "the same array must reuse its selector"
    got2, _ = ix.search(x[0], 10, exclude=second)  # another array: its own selector, not the cached one
    assert not set(got1) & set(first) and not set(got2) & set(second)
    assert set(first) <= set(got2), "rows excluded by another scope's array must be visible here"
    again, _ = ix.search(x[0], 10, exclude=first)
    np.testing.assert_array_equal(again, got1)


def test_mapped_load_round_trips_and_accepts_writes(tmp_path):
    x = clustered(6000)
    ix = DenseIndex(32)
    ix.add(np.arange(6000), x)
    ix.fit_size(threshold=5000)
    ix.save(tmp_path / "d.faiss")
    loaded = DenseIndex.load(tmp_path / "d.faiss", 32)
    assert loaded.kind == "ivf" and loaded.nprobe == ix.nprobe
    np.testing.assert_array_equal(loaded.ids(), ix.ids())
    np.testing.assert_array_equal(loaded.search(x[3], 5)[0], ix.search(x[3], 5)[0])
    # A mapped IVF index would abort the process on a write; the index reads a private copy first.
    loaded.remove([3])
    loaded.add([10_000], x[3:4])
    assert len(loaded) == 6000 and 3 not in loaded.ids() and 10_000 in loaded.ids()
    assert loaded.search(x[3], 1)[0][0] == 10_000


def test_shrinking_goes_back_to_exact():
    x = clustered(6000)
    ix = DenseIndex(32)
    ix.add(np.arange(6000), x)
    ix.fit_size(threshold=5000)
    ix.remove(np.arange(4000))
    assert ix.fit_size(threshold=5000) and ix.kind == "flat"
    np.testing.assert_array_equal(ix.ids(), np.arange(4000, 6000))


def test_load_rejects_other_dimension(tmp_path):
    ix = DenseIndex(32)
    ix.add([1], clustered(1))
    ix.save(tmp_path / "d.faiss")
    with pytest.raises(Exception, match="32-dimensional"):
        DenseIndex.load(tmp_path / "d.faiss", 64)


def test_index_over_threshold_answers_forgets_and_isolates_guilds(tmp_path, monkeypatch):
    """The whole path with a tiny threshold: ingest switches to IVF, a reopened (mapped) index answers,
    forgetting a document works on it, and guild exclusion holds."""
    monkeypatch.setattr(dense, "IVF_THRESHOLD", 20)
    monkeypatch.setattr(dense, "MIN_PROBES", 64)  # few vectors: probe every cell so answers are exact
    home = tmp_path / "idx"
    svc = make_service(home)
    svc.ingest([str(SEEDS)], progress=False)
    topics = ["lighthouse", "orchard", "glacier", "violin", "bakery", "comet", "harvest", "canal", "tram",
              "falcon", "quarry", "meadow", "reef", "saddle", "tunnel", "vineyard", "windmill", "zeppelin"]
    many = tmp_path / "almanac.txt"
    many.write_text("Village Almanac\n\n" + "\n\n".join(
        " ".join(f"The {t} committee met on day {i} to discuss the {t} budget and the {t} repairs." for i in range(6))
        for t in topics) + "\n")
    svc.ingest([str(many)], progress=False)
    guild_doc = tmp_path / "guild.txt"
    guild_doc.write_text("Ferry News\n\nThe Carrow ferry carries forty bicycles and sails at dawn every Sunday.\n")
    svc.ingest([str(guild_doc)], scope=guild_scope(7), progress=False)
    assert svc.index._caches.dense.kind == "ivf"
    svc.close()

    svc = make_service(home)
    assert svc.index._caches.dense._mapped and svc.index.integrity().ok
    ans = svc.ask("why did Egypt cut ties with Iran after the revolution Sadat Shah?", k=3)
    assert any("Shah" in p.text for p in ans.passages)
    qvec = svc.encoder.encode(["Carrow ferry bicycles dawn Sunday"])[0]
    theirs, _ = svc.index.dense_search(qvec, 50, guild_scope(8))
    mine, _ = svc.index.dense_search(qvec, 50, guild_scope(7))
    guild_ids = set(np.flatnonzero(svc.index._caches.scopes == guild_scope(7)).tolist())
    guild_pids = {int(svc.index._caches.keyword.ids[i]) for i in guild_ids}
    assert guild_pids and not guild_pids & set(theirs.tolist()) and guild_pids & set(mine.tolist())
    svc.remove(str(guild_doc), scope=guild_scope(7))
    assert svc.index.integrity().ok
    svc.close()
