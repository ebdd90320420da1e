from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embeddings.evaluation.calibrate import best_threshold


def _accuracy(t, confs, labels):
    return sum((c >= t) == a for c, a in zip(confs, labels, strict=True)) / len(confs)


def test_separable_classes_get_a_cut_in_the_gap():
    t, acc = best_threshold([0.1, 0.2, 0.25, 0.6, 0.7], [False, False, False, True, True])
    assert 0.25 < t < 0.6 and acc == 1.0


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60))
def test_threshold_is_optimal_among_all_cuts(pairs):
    confs = [c for c, _ in pairs]
    labels = [a for _, a in pairs]
    t, acc = best_threshold(confs, labels)
    assert _accuracy(t, confs, labels) == pytest.approx(acc)
    cuts = sorted(set(confs)) + [max(confs) + 1]
    assert acc >= max(_accuracy(c, confs, labels) for c in cuts) - 1e-12


def test_rejects_mismatched_input():
    with pytest.raises(ValueError):
        best_threshold([0.1], [])
    rng = random.Random(0)
    confs = [rng.random() for _ in range(100)]
    assert best_threshold(confs, [True] * 100)[1] == 1.0
