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

    terminated: bool

    def awaits_links(self) -> bool: ...

    def wake_unlinked(self) -> None: ...


class Peers:
    """The actors bound to one system."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: list[Peer] = []

    def others_ended(self, me: Peer) -> bool:
        """Every actor but ``me`` has ended or, like it, only waits for a link."""
        return all(peer is me or peer.terminated or peer.awaits_links() for peer in self.members)

    def ended(self, peer: Peer) -> None:
        """``peer`` ended: wake the unlinked ones, to see whether they are the last."""
        for other in self.members:
            if other is not peer and not other.terminated and other.awaits_links():
                other.wake_unlinked()


_systems: weakref.WeakKeyDictionary[object, Peers] = weakref.WeakKeyDictionary()


def peers_of(system: object) -> Peers:
    """The peers bound to ``system`` (made on first use, forgotten with it)."""
    peers = _systems.get(system)
    if peers is None:
        peers = _systems[system] = Peers()
    return peers
