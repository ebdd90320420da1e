"""Index.keyword_search: top-k visible rows plus the keyword scores of requested ids, in one call."""

from __future__ import annotations

import numpy as np

from embeddings.index import guild_scope
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
