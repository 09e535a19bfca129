"""Moving items between actors: bounded links and the mailbox that merges them.

A :class:`Link` is a bounded FIFO counted in *items*, built on trio's ``ParkingLot``
rather than on ``trio.open_memory_channel``, for two reasons:

* speed: a memory channel's ``send``/``receive`` always checkpoints, i.e. yields to the
  scheduler once per item. A link moves whole micro-batches and never yields while there
  is room; the actor decides when to yield, once its quantum is spent.
* control: later policies (drop oldest, latest only, removing a link and handing back
  what it holds) need to reach into the buffer, which a memory channel hides.

Everything runs in one trio thread, so no locking is needed: a state change and the
wake-up it causes happen between two checkpoints.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ._logging import get_logger
from ._specs import LinkSpec
from ._specs import Overflow as Overflow
from ._status import DropReason, LinkStatus

if TYPE_CHECKING:
    import structlog

__all__ = ["POOL_LIMIT", "Fused", "Link", "Mailbox", "NamedLink", "Overflow", "RemovedLinks"]

POOL_LIMIT = 1024
"""The most items one call hands a fused chain, however many buffers it pools (see
:meth:`Fused.reach`): larger batches save nothing measurable and hold more at once."""


class Fused(Protocol):
    """A consumer its producer may hand batches to by call (stage fusion, see
    ``_actor/_fusion.py``), while it is set as the link's :attr:`Link.direct`."""

    def call(
        self, items: list[Any], caller: Any, pacing: Any, *, taken: bool = False
    ) -> Awaitable[None]:
        """Handle ``items`` in the caller's task."""
        ...

    def fresh(self) -> bool:
        """Whether a small batch from outside any call is worth a call now."""
        ...

    def reach(self) -> int:
        """The most items one call may hand it."""
        ...


class _NoItems(deque[Any]):
    """The buffer of a link that was never given an item: one shared, always empty.

    Most links of a large idle graph never carry anything, and an empty deque costs 760
    bytes (CPython allocates its first block eagerly). Reading it works like any empty
    deque; adding to it raises, so a writer that forgot :meth:`Link._buffer` fails loudly
    instead of losing items.
    """

    __slots__ = ()

    def _refuse(self, *args: object) -> None:
        raise TypeError("the shared empty buffer cannot hold items: use Link._buffer()")

    append = appendleft = extend = extendleft = insert = _refuse

    def __iadd__(self, items: object) -> _NoItems:
        self._refuse()
        return self


_NO_ITEMS: deque[Any] = _NoItems()


class Link:
    """The running side of a :class:`LinkSpec`: a bounded FIFO of items."""

    __slots__ = (
        "_delivered_shown",
        "_dropping_since",
        "_logger",
        "_name",
        "_space",
        "capacity",
        "closed",
        "copier",
        "dedicated",
        "delivered",
        "direct",
        "dropped",
        "folded",
        "history",
        "items",
        "latest_only",
        "mailbox",
        "never_blocks",
        "overflow",
        "receiver_closed",
        "removed",
        "returned",
        "sent",
        "spec",
    )

    def __init__(
        self,
        spec: LinkSpec,
        capacity: int,
        mailbox: Mailbox,
        copier: Callable[[Any], Any] | None,
    ) -> None:
        self.spec = spec
        self._name: str | None = None
        self.capacity = capacity
        self.mailbox = mailbox
        self.copier = copier
        self.items: deque[Any] = _NO_ITEMS
        """What waits to be taken, oldest first (the shared empty buffer until the first
        item comes: read it freely, add to it through :meth:`_buffer`)."""
        self.closed = False
        """The producer is done: no more items will come."""
        self.receiver_closed = False
        """The consumer is gone: offered items are dropped (and counted)."""
        self.removed = False
        """Removed from the system: its consumer's mailbox lets go of it once drained."""
        self.sent = 0
        self.delivered = 0
        self._delivered_shown = 0
        """The most ``delivered`` ever reported: items given back after a crash take
        it down until retaken, and a reported counter must never go down."""
        self.returned = 0
        self.dropped: dict[str, int] = {}
        self.folded: LinkStatus | None = None
        """Once removed and drained: its counts as added to its name's
        :class:`RemovedLinks` (taken back out if it is given items again)."""
        self.history: RemovedLinks | None = None
        """Once removed: the tally of its name, told when the mailbox lets go of it."""
        self._space: trio.lowlevel.ParkingLot | None = None
        """Producers waiting for room; made when the first one waits."""
        self.overflow: Overflow = spec.overflow
        self.latest_only: bool = spec.latest_only
        self.never_blocks = self.latest_only or self.overflow is not Overflow.BLOCK
        self.dedicated = spec.workers != 1
        """Served by worker tasks of its own, not by the consumer's main loop."""
        """Whether this link drops instead of making its producer wait."""
        self._dropping_since: int | None = None
        self._logger: structlog.typing.FilteringBoundLogger | None = None
        self.direct: Fused | None = None
        """Stage fusion: while set, the producer hands a batch to the consumer by calling
        it (``direct.call(items, producer, its_pacing)``) instead of buffering it,
        provided the buffer is empty. Set and cleared by the consumer only."""
        mailbox.links.append(self)

    @property
    def name(self) -> str:
        """The link's name in logs and status (the spec's, unless set): built when
        asked, since an idle link is rarely named."""
        return self.spec.name if self._name is None else self._name

    @name.setter
    def name(self, name: str) -> None:
        self._name = name

    def _buffer(self) -> deque[Any]:
        """The buffer to add items to: a deque of its own from the first item on."""
        buffer = self.items
        if buffer is _NO_ITEMS:
            buffer = self.items = deque()
        return buffer

    @property
    def _log(self) -> structlog.typing.FilteringBoundLogger:
        """The link's logger, made on first use (most links never log)."""
        if self._logger is None:
            self._logger = get_logger(link=self.spec.name)
        return self._logger

    def drop(self, count: int, reason: str) -> None:
        """Count ``count`` items as lost on this link, for ``reason``."""
        if count:
            history = self.history if self.folded is not None else None
            if history is not None:  # counted in its name's tally: count it there again
                history.reclaim(self)
            self.dropped[reason] = self.dropped.get(reason, 0) + count
            if history is not None:
                history.release(self)

    def offer(self, items: list[Any], start: int = 0) -> int:
        """Append as many of ``items[start:]`` as fit; return the index reached.

        Never blocks. When the consumer is gone, or the link was removed, the items are
        counted as dropped (``"receiver_closed"``, ``"link_removed"``) and reported as
        handled.
        """
        total = len(items)
        if self.receiver_closed:
            gone = DropReason.LINK_REMOVED if self.removed else DropReason.RECEIVER_CLOSED
            self.drop(total - start, gone)
            return total
        if self.never_blocks:
            self._offer_lossy(items if start == 0 else items[start:])
            return total
        buffer = self.items
        room = self.capacity - len(buffer)
        if room <= 0:
            return start
        if buffer is _NO_ITEMS:
            buffer = self.items = deque()
        if total - start <= room:
            buffer.extend(items if start == 0 else items[start:])
            self.sent += total - start
            self.mailbox.notify()
            return total
        buffer.extend(items[start : start + room])
        self.sent += room
        self.mailbox.notify()
        return start + room

    def _offer_lossy(self, items: list[Any]) -> None:
        """Accept ``items`` without ever blocking, dropping by the link's policy."""
        buffer = self._buffer()
        lost = 0
        reason = DropReason.OVERFLOW
        if self.latest_only:
            # Only the newest pending item is kept; what it replaces is counted.
            reason = DropReason.REPLACED
            lost = len(buffer) + len(items) - 1
            buffer.clear()
            buffer.append(items[-1])
            self.sent += 1
        elif self.overflow is Overflow.DROP_NEWEST:
            room = max(self.capacity - len(buffer), 0)
            buffer.extend(items[:room])
            self.sent += min(room, len(items))
            lost = len(items) - min(room, len(items))
        else:  # DROP_OLDEST
            buffer.extend(items)
            self.sent += len(items)
            while len(buffer) > self.capacity:
                buffer.popleft()
                lost += 1
        if lost:
            self.drop(lost, reason)
            if self._dropping_since is None:
                self._dropping_since = self.dropped[reason] - lost
                self._log.warning("link.dropping", reason=reason, policy=self._policy_name())
        elif self._dropping_since is not None:
            self._stopped_dropping(reason)
        self.mailbox.notify()

    def _policy_name(self) -> str:
        return "latest_only" if self.latest_only else self.overflow.value

    def _stopped_dropping(self, reason: str) -> None:
        assert self._dropping_since is not None
        count = self.dropped.get(reason, 0) - self._dropping_since
        self._dropping_since = None
        self._log.warning(
            "link.dropping_stopped", reason=reason, policy=self._policy_name(), count=count
        )

    async def wait_for_space(self) -> None:
        """Sleep until the consumer takes items or goes away."""
        if self._space is None:
            self._space = trio.lowlevel.ParkingLot()
        await self._space.park()

    def take(self, limit: int) -> list[Any]:
        """Remove and return up to ``limit`` items (the caller checked there is one)."""
        buffer = self.items
        if len(buffer) <= limit:
            batch = list(buffer)
            buffer.clear()
        else:
            popleft = buffer.popleft
            batch = [popleft() for _ in range(limit)]
        self.delivered += len(batch)
        if self._space:
            self._space.unpark_all()
        if self.removed and not buffer:
            self.mailbox.stale = True  # let go of it at the mailbox's next read
        return batch

    def requeue(self, items: list[Any]) -> None:
        """Put items the consumer took but did not handle back at the front, in order.

        They were counted as delivered when taken; they will be again when retaken.
        The buffer may exceed its capacity by these items until they are retaken.
        """
        self._buffer().extendleft(reversed(items))
        self.delivered -= len(items)
        if self.removed:
            self.mailbox.hold(self)  # released when drained again: it holds items now
        self.mailbox.notify()

    def remove_item(self, item: Any) -> None:
        """Take one given item (this very object: equal ones may wait beside it) out of
        the middle of the buffer (a join by key)."""
        items = self.items
        for index, waiting in enumerate(items):
            if waiting is item:
                del items[index]
                break
        else:
            raise ValueError(f"link {self.name}: the item is not waiting")
        self.delivered += 1
        self.wake_producers()

    def settle(self) -> None:
        """What was taken has been handled; only a remote link has anything to do."""

    def wake_producers(self) -> None:
        """Wake producers waiting for room, so they re-check why they wait."""
        if self._space:
            self._space.unpark_all()

    def close(self) -> None:
        """The producer is done: the consumer sees the end of stream once drained.

        A link closed while its producer still runs was removed from the system: the
        producer, woken if it waits for room here, sends nothing more into it.
        """
        self.closed = True
        self.mailbox.notify()
        self.wake_producers()

    def retire(self) -> None:
        """The link was removed (and closed): its consumer's mailbox lets go of it now if
        it holds nothing, else once drained, so add/remove cycles leave nothing behind
        even when the consumer gets no turn between them."""
        self.removed = True
        # Nothing more goes in (a producer ending with items owed to it offers them):
        # what is offered now is counted as lost to the removal, not stranded in a link
        # its consumer no longer reads.
        self.receiver_closed = True
        mailbox = self.mailbox
        if self.items:
            mailbox.stale = True
        else:
            mailbox.release(self)
        mailbox.notify()

    def close_receiver(self) -> None:
        """The consumer is gone: wake waiting producers; later items are dropped."""
        self.receiver_closed = True
        self.wake_producers()

    def finish_dropping(self) -> None:
        """Log the end of a dropping episode still open when the link's life ends."""
        if self._dropping_since is not None:
            self._stopped_dropping(
                DropReason.REPLACED if self.latest_only else DropReason.OVERFLOW
            )

    def hand_back(self) -> list[Any]:
        """Remove and return everything buffered (the link is being removed)."""
        items = list(self.items)
        self.items.clear()
        self.returned += len(items)
        self.wake_producers()
        return items

    def discard(self, reason: str) -> int:
        """Drop what is still buffered, counted under ``reason``; return how many."""
        count = len(self.items)
        self.items.clear()
        self.drop(count, reason)
        self.wake_producers()
        return count

    def status(self) -> LinkStatus:
        delivered = self._delivered_shown = max(self.delivered, self._delivered_shown)
        return LinkStatus(
            name=self.name,
            capacity=self.capacity,
            depth=len(self.items),
            sent=self.sent,
            delivered=delivered,
            dropped=dict(self.dropped),
            closed=self.closed,
            returned=self.returned,
            target=self.spec.target,
        )


def _combined(total: LinkStatus, part: LinkStatus, sign: int = 1) -> LinkStatus:
    """``total`` with the counts of ``part`` added (``sign=-1``: taken out)."""
    dropped = dict(total.dropped)
    for reason, count in part.dropped.items():
        dropped[reason] = dropped.get(reason, 0) + sign * count
    return attrs.evolve(
        total,
        depth=total.depth + sign * part.depth,
        sent=total.sent + sign * part.sent,
        delivered=total.delivered + sign * part.delivered,
        returned=total.returned + sign * part.returned,
        dropped={reason: count for reason, count in dropped.items() if count},
    )


@attrs.define(slots=True, eq=False)
class RemovedLinks:
    """Every link removed under one name, so that what they counted never leaves the
    status when a link of that name is added again.

    Invariant: a removed link is either in :attr:`draining` (its consumer's mailbox
    still holds it: it may still hold or be given items) or counted in :attr:`done`
    (with its own ``folded`` snapshot); the mailbox tells which as it lets go of a
    link or takes it back, so each costs constant time and add/remove cycles hold
    nothing but one tally per name.
    """

    draining: dict[Link, None] = attrs.field(factory=dict)
    """In the order removed (a dict: let go of in any order in constant time)."""
    done: LinkStatus | None = None

    def add(self, link: Link) -> None:
        """``link`` is being removed; its mailbox still holds it."""
        link.history = self
        self.draining[link] = None

    def release(self, link: Link) -> None:
        """The mailbox let go of ``link`` (removed and drained): count it in :attr:`done`."""
        if link not in self.draining:
            return  # already counted
        del self.draining[link]
        link.folded = snapshot = link.status()
        # The newest link's capacity and closed flag lead, as in :meth:`status`.
        self.done = snapshot if self.done is None else _combined(snapshot, self.done)

    def reclaim(self, link: Link) -> None:
        """A drained link was given items back (its consumer failed mid-batch): count
        it live again."""
        if link.folded is not None and self.done is not None:
            self.done = _combined(self.done, link.folded, -1)
            link.folded = None
            self.draining[link] = None

    def status(self, live: Link | None) -> LinkStatus:
        """The counts of every link of the name, the live one's (if any) included; its
        capacity and closed flag are the newest link's."""
        parts = [link.status() for link in self.draining]
        if self.done is not None:
            parts.insert(0, self.done)
        if live is not None:
            parts.append(live.status())
        newest = parts[-1]
        total = attrs.evolve(newest, depth=0, sent=0, delivered=0, returned=0, dropped={})
        for part in parts:
            total = _combined(total, part)
        return total


@attrs.frozen
class NamedLink:
    """What the status lists under a link's name: the live link and its removed
    namesakes, counted together."""

    live: Link | None
    removed: RemovedLinks

    def status(self) -> LinkStatus:
        return self.removed.status(self.live)


class Mailbox:
    """All links into one actor, read fairly (round robin) as one stream of batches."""

    __slots__ = ("_lot", "_next", "_waiter", "links", "order", "remote", "stale", "version")

    def __init__(self) -> None:
        self.links: list[Link] = []
        self.remote: list[Any] = []
        """Links from remote streams, whose items are acknowledged once handled."""
        self._waiter: trio.lowlevel.Task | None = None
        """The first task waiting for input (the actor's loop), parked without a lot: a
        parking lot and a parked task's entry in it cost ~900 bytes per idle actor."""
        self._lot: trio.lowlevel.ParkingLot | None = None
        """Any other waiters (a link's worker tasks); made when one comes."""
        self._next = 0
        self.version = 0
        """Counts notifications: lets a waiter tell whether anything new happened."""
        self.stale = False
        """A removed link may be drained: :meth:`purge` at the next read or wait."""
        self.order: deque[list[Any]] = deque()
        """Items put back to be handled again in the order first handled, across links:
        ``[link, count]`` runs, taken before the round robin resumes."""

    def notify(self) -> None:
        """Wake the owner if it waits for input."""
        self.version += 1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)
        if self._lot:
            self._lot.unpark_all()

    def all_closed(self) -> bool:
        """No producer will send anything more (feedback links aside)."""
        return all(link.closed for link in self.links if not link.spec.feedback)

    def take(self, limit: int) -> tuple[Link, list[Any]] | None:
        """The next batch of at most ``limit`` items from one link, or ``None`` if all are empty.

        Links are visited round robin so that one busy producer cannot starve the others
        in a fan-in.
        """
        if self.stale:
            self.purge()
        if self.order:
            got = self._take_in_order(limit)
            if got is not None:
                return got
        links = self.links
        count = len(links)
        start = self._next
        for offset in range(count):
            index = (start + offset) % count
            link = links[index]
            if link.items and not link.dedicated:
                self._next = (index + 1) % count
                return link, link.take(limit)
        return None

    def _take_in_order(self, limit: int) -> tuple[Link, list[Any]] | None:
        """The next batch of :attr:`order`'s first run (runs whose link is gone, read
        by workers or emptied are dropped)."""
        order = self.order
        while order:
            run = order[0]
            link, count = run
            if not link.items or link.dedicated or link not in self.links:
                order.popleft()
                continue
            size = min(count, limit)
            if size >= count:
                order.popleft()
            else:
                run[1] = count - size
            return link, link.take(size)
        return None

    def exhausted(self) -> bool:
        """Every non-feedback link is closed and drained: the end of stream has arrived."""
        for link in self.links:  # a plain loop: asked whenever the mailbox is empty
            if not (link.closed and not link.items) and not (link.spec.feedback or link.dedicated):
                return False
        return True

    def purge(self) -> None:
        """Let go of removed links drained since (only when the mailbox itself is read or
        waited on: a reader taking from one may be walking :attr:`links`)."""
        self.stale = False
        kept: list[Link] = []
        gone: list[Link] = []
        for link in self.links:
            (gone if link.removed and not link.items else kept).append(link)
        if gone:
            self.links[:] = kept
            self._next = 0
            for link in gone:
                if link.history is not None:
                    link.history.release(link)

    def release(self, link: Link) -> None:
        """Let go of the removed, empty ``link`` now (no reader is walking :attr:`links`:
        they never yield while they do)."""
        links = self.links
        try:
            index = links.index(link)
        except ValueError:
            return
        del links[index]
        if index < self._next:
            self._next -= 1
        if self._next >= len(links):
            self._next = 0
        if link.history is not None:
            link.history.release(link)

    def hold(self, link: Link) -> None:
        """Read a released link again (items were put back into it); its name's tally
        counts it live again."""
        if link not in self.links:
            self.links.append(link)
            if link.history is not None:
                link.history.reclaim(link)

    def depth(self) -> int:
        return sum(len(link.items) for link in self.links)

    def settle(self) -> None:
        """Everything taken so far has been handled: remote links acknowledge it."""
        for link in self.remote:
            link.settle()

    async def wait(self) -> None:
        """Sleep until an incoming link gets items or closes."""
        if self.stale:
            self.purge()
        if self.remote:
            self.settle()
        if self._waiter is None:
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
            return
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()

    def _abort_wait(self, raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        """The first waiter is cancelled: it no longer waits."""
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED
