"""The garbage collector rests while a graph is built, and then leaves what was built alone.

Building 100,000 actors allocates millions of objects that live as long as the system;
every full collection meanwhile walks all of them again (half the start-up time, measured
at 20,000 actors), and so does every full collection while the system runs and stops.
So the collector is paused while the graph is built and started, what exists then is
moved to the permanent generation (``gc.freeze()``), where no collection looks, and it is
handed back (``gc.unfreeze()``) when the system has ended, so that its cycles can be
collected once nothing uses them.

The price: cyclic garbage made while the graph was built (by a module's constructor,
say) is frozen with it, and freed only after the system has ended; collecting it first
would walk the whole graph once more, which is the cost this avoids.

An application that disabled the collector, or froze objects itself (before a fork,
say), is left as it is: nothing is paused, frozen or unfrozen then.
"""

from __future__ import annotations

import gc

import attrs

__all__ = ["CollectorRest"]


@attrs.define(slots=True)
class CollectorRest:
    """One system's hold on the collector: paused from :meth:`begin`, frozen by
    :meth:`freeze`, everything undone by :meth:`end` (safe to call on any path)."""

    _paused: bool = False
    _frozen: bool = False

    @classmethod
    def begin(cls) -> CollectorRest:
        """Pause the collector, unless the application disabled it already."""
        rest = cls()
        if gc.isenabled():
            gc.disable()
            rest._paused = True
        return rest

    def freeze(self) -> None:
        """The graph is built and started: freeze what exists, and resume collecting."""
        if self._paused and gc.get_freeze_count() == 0:
            gc.freeze()
            self._frozen = True
        self._resume()

    def end(self) -> None:
        """Resume collecting if still paused, and unfreeze what :meth:`freeze` froze."""
        self._resume()
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            gc.enable()
