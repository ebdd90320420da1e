"""Choose the answer threshold: the confidence cut that best separates answerable from unanswerable."""

from __future__ import annotations

from collections.abc import Sequence


def best_threshold(confidences: Sequence[float], answerable: Sequence[bool]) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of `confidence >= threshold` == answerable.

    Candidate cuts are midpoints between consecutive observed confidences, so the chosen value sits in
    the gap between the two classes rather than on a training point."""
    if len(confidences) != len(answerable) or not confidences:
        raise ValueError("need equally many confidences and labels, at least one")
    pairs = sorted(zip(confidences, answerable, strict=True))
    n = len(pairs)
    positives = sum(1 for _, a in pairs if a)
    # Threshold below everything: all predicted answerable.
    best_acc, best_t = positives / n, pairs[0][0] - 1e-6
    correct = positives
    for i, (c, a) in enumerate(pairs):
        correct += -1 if a else 1  # moving the cut above pairs[i] flips its prediction to "refuse"
        nxt = pairs[i + 1][0] if i + 1 < n else c + 1e-6
        if nxt == c:
            continue
        acc = correct / n
        if acc > best_acc:
            best_acc, best_t = acc, (c + nxt) / 2
    return best_t, best_acc
