"""Remote links: a link carried over a Redis stream, so that its producer and its
consumer may run in different processes or on different machines.

This module only describes a remote link; :mod:`actorflow._redis` carries it (and is the
only part of actorflow that imports the Redis client, an optional extra).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from ._link import Link, Mailbox
from ._specs import LinkSpec
from ._specs import Remote as Remote
from ._specs import to_remote as to_remote

__all__ = ["Remote", "RemoteInLink", "to_remote"]


class RemoteInLink(Link):
    """The receiving half of a remote link, in the consumer's process.

    Items arrive from the stream (see :class:`actorflow._redis.ConsumerPump`), several
    to an entry. An entry is acknowledged only once its module has handled (or
    dead-lettered) every item in it: the items of a batch are settled when the actor
    takes its next batch, waits for input, or ends; items given back after a crash keep
    their entry and are settled when handled. What is still buffered when the actor ends
    stays pending in the stream, for another consumer of the group (counted as
    ``returned``, not lost); its entries come again whole, so an item handled here may
    be handled once more there (at least once).
    """

    __slots__ = ("_acks", "ids", "in_hand", "remaining", "to_ack")

    def __init__(self, spec: LinkSpec, capacity: int, mailbox: Mailbox) -> None:
        super().__init__(spec, capacity, mailbox, None)
        self.name = f"{spec.name} (from the stream)"
        self.ids: deque[bytes] = deque()
        """The entry of every buffered item, in order."""
        self.in_hand: list[bytes] = []
        self.remaining: dict[bytes, int] = {}
        """Entries here with items not yet handled, and how many."""
        self.to_ack: list[bytes] = []
        self._acks = trio.lowlevel.ParkingLot()
        mailbox.remote.append(self)

    def deliver(self, entries: list[tuple[bytes, list[Any]]]) -> None:
        """Append the items of entries read from the stream."""
        count = 0
        for entry_id, items in entries:
            if entry_id in self.remaining or not items:
                if not items:
                    self.to_ack.append(entry_id)
                continue
            self.remaining[entry_id] = len(items)
            self.ids.extend([entry_id] * len(items))
            self.items.extend(items)
            count += len(items)
        self.sent += count
        self.mailbox.notify()

    def take(self, limit: int) -> list[Any]:
        self.settle()  # the batch taken before this one has been handled
        batch = super().take(limit)
        ids = self.ids
        self.in_hand = [ids.popleft() for _ in batch]
        return batch

    def requeue(self, items: list[Any]) -> None:
        back = len(items)
        if back:
            self.ids.extendleft(reversed(self.in_hand[-back:]))
            del self.in_hand[-back:]
        super().requeue(items)

    def remove_item(self, item: Any) -> None:
        """Take one given item out of the middle (a progressive module's join by key);
        it is in hand until the module next waits or takes."""
        index = next(i for i, candidate in enumerate(self.items) if candidate is item)
        del self.items[index]
        entry_id = self.ids[index]
        del self.ids[index]
        self.in_hand.append(entry_id)
        self.delivered += 1
        self.wake_producers()

    def settle(self) -> None:
        """The items in hand have been handled (or dead-lettered): acknowledge them."""
        if self.in_hand:
            remaining = self.remaining
            for entry_id in self.in_hand:
                left = remaining[entry_id] - 1
                if left:
                    remaining[entry_id] = left
                else:
                    del remaining[entry_id]
                    self.to_ack.append(entry_id)
            self.in_hand = []
            self._acks.unpark_all()
            self.wake_producers()  # the pump counts items in hand against its room

    async def wait_for_acks(self) -> None:
        await self._acks.park()

    def close_receiver(self) -> None:
        self.settle()
        super().close_receiver()
        self._acks.unpark_all()

    def discard(self, reason: str) -> int:
        """Items still buffered stay pending in the stream, for another consumer."""
        count = len(self.items)
        self.items.clear()
        self.ids.clear()
        self.remaining.clear()
        if count:
            self.returned += count
            self._log.warning("remote.left_pending", count=count, reason=reason)
        self.wake_producers()
        return 0

    def hand_back(self) -> list[Any]:  # pragma: no cover - remote links are not removable
        raise RuntimeError("a remote link cannot be removed while the system runs")
