"""The actors of one running system, as they are bound to it, for the one question an
actor cannot answer alone: is anything else still running?

A processor or sink that has never had an input link waits for one (links may be added
while the system runs) until every other actor of its system has ended: then nothing is
left that a link could bring items from, and it ends too.
"""

from __future__ import annotations

import weakref
from typing import Protocol

__all__ = ["Peer", "Peers", "peers_of"]


class Peer(Protocol):
    """What the peers ask of an actor."""

    def wake_unlinked(self) -> None: ...


class Peers:
    """The actors bound to one system: how many have not ended, and which of those wait
    for a first link. Every question is answered in constant time (an actor's end is
    not a walk over all the others: that made stopping quadratic)."""

    __slots__ = ("live", "waiting")

    def __init__(self) -> None:
        self.live = 0
        """Actors bound to the system that have not ended."""
        self.waiting: set[Peer] = set()
        """Actors (not ended) that wait for a first input link."""

    def join(self) -> Peers:
        """One more actor is bound to the system."""
        self.live += 1
        return self

    def wait(self, me: Peer) -> bool:
        """``me`` waits for a first link: whether anything else still runs (if nothing
        does, no link can bring it items, and it ends)."""
        if me not in self.waiting:
            self.waiting.add(me)
            self._wake_waiting(me)  # they may be the last ones running but for me
        return self.live > len(self.waiting)

    def linked(self, me: Peer) -> None:
        """``me`` has a link now: it no longer waits."""
        self.waiting.discard(me)

    def ended(self, peer: Peer) -> None:
        """``peer`` ended for good: wake the waiting ones, to see whether they are last."""
        self.live -= 1
        self.waiting.discard(peer)
        self._wake_waiting(peer)

    def _wake_waiting(self, but: Peer) -> None:
        for other in list(self.waiting):
            if other is not but:
                other.wake_unlinked()


_systems: weakref.WeakKeyDictionary[object, Peers] = weakref.WeakKeyDictionary()


def peers_of(system: object) -> Peers:
    """The peers bound to ``system`` (made on first use, forgotten with it)."""
    peers = _systems.get(system)
    if peers is None:
        peers = _systems[system] = Peers()
    return peers
