"""How often Redis delivered a consumer's entries: what ``max_deliveries`` counts.

Redis counts a delivery each time an entry is read or claimed into a consumer. A
take-over claims every entry pending at once, though none has reached the module yet:
:class:`Deliveries` sets each count back and makes it again only as its entry is fed,
so a process killed again and again early in a long replay (entries held for a snapshot
come back whole) uses up the deliveries of the entries it was handed, not the backlog's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import attrs

if TYPE_CHECKING:
    from typing import TypeAlias

    import coredis
    from coredis.response.types import StreamPendingExt

    Client: TypeAlias = coredis.Redis[bytes]

__all__ = ["Deliveries"]


@attrs.define(eq=False)
class Deliveries:
    """One consumer's view of the delivery counts of its group's entries."""

    stream: str
    group: str
    consumer: str
    uncounted: dict[bytes, int] = attrs.field(factory=dict)
    """Entries taken over whose delivery is counted only as they are fed: their count
    then."""

    async def of(self, client: Client, ids: list[bytes]) -> dict[bytes, int]:
        """How many times each of ``ids`` has been delivered (pending entries only)."""
        async with client.pipeline(transaction=False) as pipe:
            requests = [
                pipe.xpending(self.stream, self.group, start=i, end=i, count=1) for i in ids
            ]
        counts: dict[bytes, int] = {}
        for request in requests:
            for pending in cast("tuple[StreamPendingExt, ...]", await request):
                counts[cast("bytes", pending.identifier)] = pending.delivered
        return counts

    async def uncount(self, client: Client, deliveries: dict[bytes, int]) -> None:
        """The entries of a take-over (``deliveries``: their counts, this delivery
        included): each count is set back until the entry is fed (:meth:`count_fed`)."""
        by_count: dict[int, list[bytes]] = {}
        for entry_id, count in deliveries.items():
            if count > 0:
                by_count.setdefault(count - 1, []).append(entry_id)
                self.uncounted[entry_id] = count
        await self._set(client, by_count)

    async def count_fed(self, client: Client, backlog: Iterable[Any], room: int) -> None:
        """Count the delivery of the taken-over entries of ``backlog`` about to be fed
        (up to ``room`` items, oldest first), before the module can handle any of them."""
        due: dict[int, list[bytes]] = {}
        left = False
        for entry in backlog:
            if room <= 0:
                left = True
                break
            room -= entry.count - entry.fed
            count = self.uncounted.pop(entry.id, None)
            if count is not None:
                due.setdefault(count, []).append(entry.id)
        await self._set(client, due)
        if not left:
            self.uncounted.clear()  # the rest were dead-lettered when admitted

    async def _set(self, client: Client, by_count: dict[int, list[bytes]]) -> None:
        """Set the delivery count of entries (``XCLAIM ... RETRYCOUNT n JUSTID``)."""
        if not by_count:
            return
        async with client.pipeline(transaction=False) as pipe:
            for count, ids in by_count.items():
                pipe.xclaim(
                    self.stream, self.group, self.consumer, 0, ids, retrycount=count, justid=True
                )
