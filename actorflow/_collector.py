"""The garbage collector rests while a graph is built, and then leaves what was built alone.

Building 100,000 actors allocates millions of objects that live as long as the system;
every full collection meanwhile walks all of them again (half the start-up time, measured
at 20,000 actors), and so does every full collection while the system runs and stops.
So the collector is paused while the graph is built — only around the synchronous steps
(constructing modules, wiring), never across an ``await``, so a module whose
``validate()`` takes its time cannot keep the collector off for the rest of the
process — and what exists after each step is moved to the permanent generation
(``gc.freeze()``), where no collection looks. While the supervisor tree starts (which
awaits, and may wait on a child slow to start) the collector only *rests*: the young
generation is collected every 100,000 allocations instead of every 700, the older ones
more seldom, so garbage made elsewhere meanwhile stays bounded. What the start made is
frozen too. Everything is handed back (``gc.unfreeze()``) when the system has ended, so
that its cycles can be collected once nothing uses them.

The price: cyclic garbage made while the graph was built (by a module's constructor,
say) is frozen with it, and freed only after the system has ended; collecting it first
would walk the whole graph once more, which is the cost this avoids.

An application that disabled the collector, or froze objects itself (before a fork,
say), is left as it is: nothing is paused, frozen or unfrozen then. Of several systems
whose lives overlap, only the first freezes; it unfreezes when it ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

__all__ = ["CollectorRest"]

_RESTING = 100_000
"""Allocations between two collections of the young generation while a graph starts."""
_RESTING_OLDER = 100
"""Collections of a generation between two of the next older one, meanwhile."""


@attrs.define(slots=True)
class CollectorRest:
    """One system's hold on the collector: :meth:`paused` around a synchronous step,
    :meth:`freeze` after it, :meth:`end` (safe to call on any path) when the system has
    ended."""

    _frozen: bool = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No collection during the block (a synchronous step: it must not await)."""
        if not gc.isenabled():
            yield
            return
        gc.disable()
        try:
            yield
        finally:
            gc.enable()

    @contextmanager
    def resting(self) -> Iterator[None]:
        """Collect seldom during the block (it may await: the young generation is
        still collected, every :data:`_RESTING` allocations instead of every 700, so
        garbage made elsewhere meanwhile stays bounded)."""
        thresholds = gc.get_threshold()
        if not gc.isenabled() or thresholds[0] >= _RESTING:
            yield
            return
        gc.set_threshold(_RESTING, _RESTING_OLDER, _RESTING_OLDER)
        try:
            yield
        finally:
            if gc.get_threshold()[0] == _RESTING:  # unless changed meanwhile
                gc.set_threshold(*thresholds)

    def freeze(self) -> None:
        """Move what exists now to the permanent generation, unless the application
        disabled the collector or froze objects itself (or another system did)."""
        if gc.isenabled() and (self._frozen or gc.get_freeze_count() == 0):
            gc.freeze()
            self._frozen = True

    def end(self) -> None:
        """Unfreeze what :meth:`freeze` froze."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()
