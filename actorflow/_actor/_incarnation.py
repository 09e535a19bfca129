"""One incarnation: the state that lives exactly as long as one run of a module.

A restart makes a fresh :class:`Incarnation`, so nothing has to be reset by hand; what
outlives it (the mailbox, the counters, owed items, ``keep``) stays on the actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from .._status import EndReason

if TYPE_CHECKING:
    from .._snapshots import Journal

__all__ = ["Incarnation", "Stop"]


class Stop(Exception):
    """Internal: the incarnation was asked to stop; unwinds the handling loops."""


@attrs.define(slots=True, eq=False)
class Incarnation:
    """The flags of one run of a module.

    Invariants: ``stopping`` only turns true; ``active`` only turns false; ``reason`` is
    set once the run knows why it ends.
    """

    number: int
    journal: Journal | None = None
    """What the module handled since its last snapshot (a processor's or sink's with
    ``snapshot()``, fed locally): its handlers journal each batch."""
    stopping: bool = False
    """A stop was requested: finish the current item, then end."""
    killed: bool = False
    """The supervisor is about to cancel this run."""
    stop_requested: bool = False
    """A source's ``stop()`` hook was called."""
    active: bool = True
    """What ``Module.active`` says: false once a source was asked to stop."""
    reason: EndReason | None = None
    produce_scope: trio.CancelScope | None = None
    """A source's ``start()`` runs in it: a graceful stop may put a deadline on it."""
    _stopped: trio.Event | None = None

    def stop_source(self) -> None:
        """Mark a source as stopping and wake whoever waits for it (see :meth:`wait_stopped`)."""
        self.stop_requested = True
        self.active = False
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        """Sleep until :meth:`stop_source` (the Event is made only if someone waits)."""
        if self.stop_requested:
            return
        if self._stopped is None:
            self._stopped = trio.Event()
        await self._stopped.wait()
