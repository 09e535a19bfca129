"""Items per second per actor, smoothed: what the live view, the summary and the
dashboard show as a rate (kept apart from the view so the dashboard's publishing, in
every process with remote links, does not load rich)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from ._status import ActorStatus, SystemStatus

__all__ = ["Rates", "StatusRates", "counts_from_status"]


@attrs.define
class Rates:
    """Items per second per row, from counter deltas between refreshes.

    Each new measurement moves the rate towards the instantaneous one by an exponential
    moving average with time constant ``window``, so an actor that works in bursts does
    not flicker between zero and its peak at every refresh.

    Attributes:
        window: Smoothing time constant in seconds: after a step change in throughput,
            about 63% of the change shows after one window.
    """

    window: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    _seen: dict[str, tuple[float, int]] = attrs.field(factory=dict, init=False, repr=False)
    _rates: dict[str, float] = attrs.field(factory=dict, init=False, repr=False)

    def update(self, counts: Mapping[str, int], now: float) -> dict[str, float]:
        """Take each row's cumulative count at time ``now`` (seconds, any origin).

        A row is first measured on its second count. A count that went down (a counter
        that was reset) starts the row's measurement again from there.

        Returns:
            The smoothed rate of every row measured so far.
        """
        for name, count in counts.items():
            last = self._seen.get(name)
            if last is not None and now <= last[0]:
                continue  # no time has passed: nothing to measure yet
            self._seen[name] = (now, count)
            if last is None or count < last[1]:
                continue
            elapsed = now - last[0]
            instant = (count - last[1]) / elapsed
            previous = self._rates.get(name)
            if previous is None:
                self._rates[name] = instant
            else:
                weight = 1.0 - math.exp(-elapsed / self.window)
                self._rates[name] = previous + weight * (instant - previous)
        return dict(self._rates)

    def forget(self, name: str) -> None:
        """Row ``name`` is gone (a module removed): one of that name later is measured
        afresh, not smoothed from the old one's rate."""
        self._seen.pop(name, None)
        self._rates.pop(name, None)


def _counted(actor: ActorStatus) -> int:
    """What an actor's rate counts: items a source emits, items others take in."""
    return actor.emitted if actor.kind == "source" else actor.received


def counts_from_status(status: SystemStatus) -> dict[str, int]:
    """Each actor's cumulative count for :class:`Rates`."""
    return {name: _counted(actor) for name, actor in status.actors.items()}


@attrs.define
class StatusRates:
    """Each actor's :class:`Rates` from a system's successive statuses, where a module
    removed since the last look (gone, or removed and added again under its name in
    between) is measured afresh, not smoothed from the removed one's rate."""

    rates: Rates = attrs.field(factory=Rates)
    _names: frozenset[str] = attrs.field(factory=frozenset, init=False)
    _removed: Mapping[str, Any] = attrs.field(factory=dict, init=False)
    """``SystemStatus.removed`` at the last look: a change says a module was removed."""

    def forget_removed(self, status: SystemStatus) -> list[str]:
        """Forget the modules removed since the last look; their names."""
        gone = [name for name in self._names if name not in status.actors]
        gone += [
            name
            for name, ended in status.removed.items()
            if self._removed.get(name) != ended and name in self._names
        ]
        for name in gone:
            self.rates.forget(name)
        self._names, self._removed = frozenset(status.actors), status.removed
        return gone

    def update(self, status: SystemStatus, now: float) -> dict[str, float]:
        """The rates with ``status``'s counts at ``now`` (see :meth:`Rates.update`);
        call :meth:`forget_removed` with the same status first."""
        return self.rates.update(counts_from_status(status), now)
