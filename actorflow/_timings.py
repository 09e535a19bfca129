"""How long an actor's hook takes per item: bucket counts, read at scrape time.

A leaf module (the actor's drivers feed it, the metrics collector reads it). A sync
hook is timed by the runs of items its pacing hands out between two clock reads it makes
anyway (one bisection and three additions per run, never per item); an async or blocking
hook, which costs microseconds at least, item by item (one more clock read per item).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

import attrs

__all__ = ["BOUNDS", "HandlingTimes"]

BOUNDS: Final = (
    1e-6,
    5e-6,
    1e-5,
    5e-5,
    1e-4,
    5e-4,
    1e-3,
    5e-3,
    1e-2,
    5e-2,
    0.1,
    0.5,
    1.0,
    5.0,
)
"""Upper bounds (seconds per item) of the histogram's buckets, from a microsecond (a
cheap sync hook) to seconds (a blocking call); one more bucket takes the rest."""


@attrs.define(slots=True, eq=False)
class HandlingTimes:
    """A histogram of seconds per item, observed per batch.

    A batch of ``n`` items handled in ``t`` seconds counts as ``n`` items of ``t / n``
    each: the items of one batch are not timed one by one (that would cost a clock read
    per item), so the histogram shows the mean of each batch.

    Invariant: ``sum(counts) == count``; ``counts[i]`` holds the items whose time was
    at most ``BOUNDS[i]`` and more than the bound before (the last, beyond every bound).
    """

    counts: list[int] = attrs.field(factory=lambda: [0] * (len(BOUNDS) + 1))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float, items: int) -> None:
        """``items`` were handled in ``seconds`` together."""
        if items <= 0:
            return
        self.counts[bisect_left(BOUNDS, seconds / items)] += items
        self.count += items
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """The Prometheus buckets: each upper bound (``"+Inf"`` last) and how many items
        took at most that long."""
        buckets: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(repr, BOUNDS), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets
