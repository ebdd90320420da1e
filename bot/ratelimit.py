"""A per-user token bucket: bursts of a few questions are fine, a steady flood is not.

Each user has a bucket of ``capacity`` tokens that refills continuously at ``capacity / window`` tokens a
second; a question costs one token (a follow-up in one's own answer thread costs less). Pure and clock-free:
callers pass ``now`` (time.monotonic() in the bot), so tests need no sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    capacity: float
    window: float  # seconds to refill an empty bucket
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)  # user -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0 and self.window > 0

    def _level(self, key: int, now: float, capacity: float, window: float) -> float:
        tokens, at = self._buckets.get(key, (capacity, now))
        return min(capacity, tokens + (now - at) * capacity / window)

    def take(self, key: int, now: float, cost: float = 1.0, *, capacity: float | None = None,
             window: float | None = None) -> float:
        """Spend ``cost`` tokens of ``key``'s bucket: 0.0 when allowed, else the seconds until it would be
        (nothing is spent then). ``capacity`` / ``window`` override the defaults (a server's own limit)."""
        capacity = self.capacity if capacity is None else capacity
        window = self.window if window is None else window
        if capacity <= 0 or window <= 0:
            return 0.0
        level = self._level(key, now, capacity, window)
        if level + 1e-9 >= cost:
            self._buckets[key] = (level - cost, now)
            return 0.0
        return (cost - level) * window / capacity
