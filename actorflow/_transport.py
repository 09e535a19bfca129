"""What the system needs of a transport: pumps that carry remote links, and the
receiving half of such a link, with the backend that carries them loaded by name.

The system never names a backend. It asks :func:`backend_for` for the one that serves a
link's URL, and that module is imported only then (as anyio's core asks for its event
loop backend), so a graph without remote links never imports any transport code, and
the transport's client library is an optional extra.

A backend carries a remote link with two pumps, one in each process it joins:

* the *sending* pump drains a plain :class:`~actorflow._link.Link` (the producer's
  output, made by :func:`sending_link`) into the stream;
* the *receiving* pump feeds a :class:`RemoteInLink` from the stream and acknowledges
  entries once their items have been handled.
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

import attrs
import trio

from ._link import Link, Mailbox
from ._specs import LinkSpec

__all__ = [
    "Backend",
    "Hold",
    "Pump",
    "PumpStatistics",
    "RemoteInLink",
    "backend_for",
    "load_backend",
    "sending_link",
]

_SCHEMES = {"redis": "redis", "rediss": "redis", "unix": "redis"}
"""URL scheme → backend name; a backend ``name`` lives in ``actorflow._<name>``."""

_DEFAULT = "redis"
"""The backend of a URL whose scheme no backend claims (``Settings.remote_url`` is not
checked): Redis, which has always been handed such URLs."""


@attrs.frozen
class PumpStatistics:
    """A snapshot of what one pump has carried, taken without yielding.

    Attributes:
        link: The name of the link half the pump serves.
        stream: Where the link's items travel (a Redis stream key, say).
        sending: True for the producer's pump, False for the consumer's.
        moved: Items written to the stream (sending) or entries acknowledged (receiving).
        claimed: Items taken over from another consumer (receiving only).
    """

    link: str
    stream: str
    sending: bool
    moved: int
    claimed: int = 0


class Pump(Protocol):
    """What carries one half of a remote link between this process and its stream."""

    @property
    def link(self) -> Link:
        """The half of the link that runs here: the producer's output, or the consumer's
        :class:`RemoteInLink`."""
        ...

    async def run(self) -> None:
        """Carry items until the link ends; raise if it cannot (an unreachable server is
        waited out, not raised)."""

    def stop(self, *, read_on: bool = False) -> None:
        """A graceful stop of the system: stop reading what is not here yet (nothing to
        do for a sending pump, which ends when its producer does). ``read_on``: the
        link's producer runs in this process: read on to the end it writes once
        drained (its stream may be full: stopped, this would leave it waiting)."""

    def statistics(self) -> PumpStatistics:
        """What it has carried so far."""
        ...


class Backend(Protocol):
    """Makes the pumps of remote links: one module per transport."""

    def sender(self, spec: LinkSpec, *, url: str, graph: str, bound: int) -> Pump:
        """The pump that writes what the producer of ``spec`` sends into the stream,
        holding at most about ``bound`` items there (backpressure)."""
        ...

    def receiver(
        self,
        spec: LinkSpec,
        mailbox: Mailbox,
        *,
        url: str,
        graph: str,
        shared: bool,
        accepts: Any = object,
    ) -> Pump:
        """The pump that reads the stream of ``spec`` into ``mailbox`` (its consumer's),
        alone or, if ``shared``, competing with other processes; items that are not of
        type ``accepts`` (the input port's) are dead-lettered at the boundary."""
        ...


def load_backend(name: str) -> Backend:
    """The backend called ``name``, imported now if it was not yet."""
    module = importlib.import_module(f"actorflow._{name}")
    return cast("Backend", module.backend)


def backend_for(url: str) -> Backend:
    """The backend that serves ``url`` (by its scheme)."""
    return load_backend(_SCHEMES.get(url.partition("://")[0], _DEFAULT))


def sending_link(spec: LinkSpec, capacity: int) -> Link:
    """The producer's half of a remote link: a link of its own, drained by a pump."""
    link = Link(spec, capacity, Mailbox(), None)
    link.name = f"{spec.name} (to the stream)"
    return link


@attrs.define(slots=True, eq=False)
class _Run:
    """Consecutive items of one stream entry: per-entry bookkeeping, not per item."""

    entry: bytes
    count: int


@attrs.define(slots=True, eq=False)
class Hold:
    """The acknowledgements a remote link holds for a module with ``snapshot()``: an
    entry is acknowledged once a snapshot that holds the effect of all its items is
    stored, not once they are handled, so that after a crash Redis delivers again what
    the last snapshot does not hold (see ``_snapshots``).

    Invariants: ``handled`` counts, for each entry here not yet released, the items of
    it fed to the module and handled (those a snapshot holds included); ``held`` holds
    the entries all of whose items are handled, in the order finished, until a snapshot
    covers them; ``skip`` holds, after a restore, how many of an entry's first items
    (``-1``: all) the restored snapshot covers: they are not fed again.
    """

    limit: int = 1
    """At this many entries held, a snapshot is asked for (the stream's bound counts
    them: they are still in it)."""
    held: dict[bytes, None] = attrs.field(factory=dict)
    handled: dict[bytes, int] = attrs.field(factory=dict)
    skip: dict[bytes, int] = attrs.field(factory=dict)
    fresh: list[bytes] = attrs.field(factory=list)
    """Entries held whose delivery count the pump has not yet reset (a replay after a
    rollback is no attempt: see the pump)."""
    ask: Callable[[], None] = lambda: None
    """Asks the module's runtime for a snapshot (set by ``_snapshots``)."""
    in_flight: Callable[[], Iterable[bytes]] = lambda: ()
    """Entries whose acknowledgement is on its way to Redis (set by the pump)."""


class RemoteInLink(Link):
    """The receiving half of a remote link, in the consumer's process.

    Items arrive from the stream (fed by a receiving :class:`Pump`), several
    to an entry. An entry is acknowledged only once its module has handled (or
    dead-lettered) every item in it: the items of a batch are settled when the actor
    takes its next batch, waits for input, or ends; items given back after a crash keep
    their entry and are settled when handled. What is still buffered when the actor ends
    stays pending in the stream, for another consumer of the group (counted as
    ``returned``, not lost); its entries come again whole, so an item handled here may
    be handled once more there (at least once). For a module with ``snapshot()`` a
    :class:`Hold` keeps an entry handled in full from acknowledgement until a snapshot
    covers it.

    Invariant: ``runs`` (buffered) and ``in_hand`` (taken, not settled) count, entry by
    entry and in order, exactly the items in :attr:`items` and the ``in_hand_count``
    items taken; ``remaining`` counts what of each entry is not yet handled.
    """

    __slots__ = (
        "_acks",
        "ack_after",
        "hold",
        "hold_after",
        "in_hand",
        "in_hand_count",
        "leased",
        "remaining",
        "runs",
        "to_ack",
    )

    def __init__(self, spec: LinkSpec, capacity: int, mailbox: Mailbox) -> None:
        super().__init__(spec, capacity, mailbox, None)
        self.name = f"{spec.name} (from the stream)"
        self.runs: deque[_Run] = deque()
        """The entries of the buffered items, in order."""
        self.in_hand: list[_Run] = []
        """The entries of the items taken and not yet settled."""
        self.in_hand_count = 0
        self.remaining: dict[bytes, int] = {}
        """Entries here with items not yet handled, and how many."""
        self.to_ack: list[bytes] = []
        self.ack_after = 1
        """Entries awaiting acknowledgement that wake the acknowledger (the first one
        always does, to start its wait for others): fewer wake-ups per entry."""
        self._acks = trio.lowlevel.ParkingLot()
        self.hold: Hold | None = None
        """Set for a module with ``snapshot()``: acknowledgements wait for a snapshot."""
        self.hold_after = 1
        """The :attr:`Hold.limit` of this link (set by its pump, which knows the bound)."""
        self.leased = trio.Event()
        """Set once its pump may read (it holds the stream's lease, or the stage is
        shared): a module with state restores only then, so a standby neither works
        from a snapshot older than the holder's last nor saves over it."""
        mailbox.remote.append(self)

    def expect(self, entry_id: bytes, count: int) -> None:
        """An entry of ``count`` items has been read: it is acknowledged once they have
        all been handled (they may arrive in pieces, see :meth:`feed`)."""
        if count:
            self.remaining[entry_id] = count
        else:
            self.to_ack.append(entry_id)
            self._acks.unpark_all()

    def feed(self, entry_id: bytes, items: list[Any], skipped: int = 0) -> None:
        """Append ``items`` of an entry :meth:`expect` announced; ``skipped`` more of its
        items were dropped on the way (they count as handled)."""
        hold = self.hold
        if hold is not None and entry_id in hold.skip:
            items, skipped = self._covered(hold, entry_id, items, skipped)
        if items:
            runs = self.runs
            if runs and runs[-1].entry == entry_id:
                runs[-1].count += len(items)
            else:
                runs.append(_Run(entry_id, len(items)))
            self._buffer().extend(items)
            self.sent += len(items)
            self.mailbox.notify()
        if skipped:
            left = self.remaining[entry_id] - skipped
            if left:
                self.remaining[entry_id] = left
            else:
                del self.remaining[entry_id]
                self._finished(entry_id)

    def _finished(self, entry_id: bytes) -> None:
        """Every item of an entry is handled: acknowledged, or held if a snapshot is to
        cover it first (one none of whose items reached the module is acknowledged)."""
        hold = self.hold
        if hold is not None:
            hold.skip.pop(entry_id, None)
            if hold.handled.get(entry_id):
                hold.held[entry_id] = None
                hold.fresh.append(entry_id)
                self._acks.unpark_all()
                if len(hold.held) >= hold.limit:
                    hold.ask()
                return
        self.to_ack.append(entry_id)
        self._acks.unpark_all()

    def take(self, limit: int) -> list[Any]:
        self.settle()  # the batch taken before this one has been handled
        batch = super().take(limit)
        count = self.in_hand_count = len(batch)
        runs, hand = self.runs, self.in_hand
        while count:
            head = runs[0]
            if head.count <= count:
                hand.append(runs.popleft())
                count -= head.count
            else:
                head.count -= count
                hand.append(_Run(head.entry, count))
                count = 0
        return batch

    def requeue(self, items: list[Any]) -> None:
        back = len(items)
        self.in_hand_count -= back
        runs, hand = self.runs, self.in_hand
        while back:
            last = hand[-1]
            moved = min(back, last.count)
            if runs and runs[0].entry == last.entry:
                runs[0].count += moved
            else:
                runs.appendleft(_Run(last.entry, moved))
            last.count -= moved
            if not last.count:
                hand.pop()
            back -= moved
        super().requeue(items)

    def remove_item(self, item: Any) -> None:
        """Take one given item out of the middle (a progressive module's join by key);
        it is in hand until the module next waits or takes."""
        index = next(i for i, candidate in enumerate(self.items) if candidate is item)
        del self.items[index]
        for run in self.runs:
            if index < run.count:
                break
            index -= run.count
        run.count -= 1
        if not run.count:
            self.runs.remove(run)
        self.in_hand.append(_Run(run.entry, 1))
        self.in_hand_count += 1
        self.delivered += 1
        self.wake_producers()

    def settle(self) -> None:
        """The items in hand have been handled (or dead-lettered): acknowledge them."""
        if self.in_hand and self.hold is not None:
            self._settle_held(self.hold)
        elif self.in_hand:
            remaining, to_ack = self.remaining, self.to_ack
            waiting = len(to_ack)
            for run in self.in_hand:
                left = remaining[run.entry] - run.count
                if left:
                    remaining[run.entry] = left
                else:
                    del remaining[run.entry]
                    to_ack.append(run.entry)
            self.in_hand = []
            self.in_hand_count = 0
            if len(to_ack) > waiting and (not waiting or len(to_ack) >= self.ack_after):
                self._acks.unpark_all()
            self.wake_producers()  # the pump counts items in hand against its room

    def _settle_held(self, hold: Hold) -> None:
        """:meth:`settle` for a module with ``snapshot()``: entries are held."""
        remaining, handled = self.remaining, hold.handled
        for run in self.in_hand:
            entry = run.entry
            handled[entry] = handled.get(entry, 0) + run.count
            left = remaining[entry] - run.count
            if left:
                remaining[entry] = left
            else:
                del remaining[entry]
                self._finished(entry)
        self.in_hand = []
        self.in_hand_count = 0
        self.wake_producers()

    def _covered(
        self, hold: Hold, entry_id: bytes, items: list[Any], skipped: int
    ) -> tuple[list[Any], int]:
        """Leave out the first items of an entry the restored snapshot covers; returns
        the rest and how many of the entry's items count as handled."""
        covered = hold.skip[entry_id]
        if covered < 0:  # the whole entry: acknowledged once all of it has come
            return [], skipped + len(items)
        count = min(covered, len(items))
        if count == covered:
            del hold.skip[entry_id]
        else:
            hold.skip[entry_id] = covered - count
        if count:
            hold.handled[entry_id] = hold.handled.get(entry_id, 0) + count
        return items[count:], skipped + count

    def skip_covered(self, skip: dict[bytes, int]) -> None:
        """A snapshot restored in a new process covers these items of entries Redis
        delivers again (by entry, the first so many, ``-1``: all): leave them out, from
        what is buffered already and from what comes."""
        hold = self.hold
        assert hold is not None
        hold.skip.update(skip)
        if not any(run.entry in skip for run in self.runs):
            return
        items, runs = list(self.items), list(self.runs)
        self.items.clear()
        self.runs.clear()
        start = 0
        for run in runs:
            piece = items[start : start + run.count]
            start += run.count
            self.sent -= len(piece)  # fed again below
            self.feed(run.entry, piece)

    def replay(self, items: list[Any], entries: list[bytes]) -> None:
        """Put back at the front items handled since the last snapshot (after an
        in-process crash), ``entries`` naming each one's entry: they are handled
        again, and their entries acknowledged only once a snapshot covers them."""
        hold = self.hold
        assert hold is not None
        self.settle()  # what the crashed batch left in hand was dead-lettered
        runs: list[_Run] = []
        for entry in entries:
            if runs and runs[-1].entry == entry:
                runs[-1].count += 1
            else:
                runs.append(_Run(entry, 1))
        remaining, handled = self.remaining, hold.handled
        for run in reversed(runs):
            entry = run.entry
            remaining[entry] = remaining.get(entry, 0) + run.count
            hold.held.pop(entry, None)
            left = handled.get(entry, 0) - run.count
            if left > 0:
                handled[entry] = left
            else:
                handled.pop(entry, None)
            if self.runs and self.runs[0].entry == entry:
                self.runs[0].count += run.count
            else:
                self.runs.appendleft(run)
        Link.requeue(self, items)

    def covering(self) -> list[bytes]:
        """The entries a snapshot taken now covers whole (they are released once it is
        stored); what is in hand was handled."""
        self.settle()
        return list(self.hold.held) if self.hold is not None else []

    def covered(self) -> list[list[Any]]:
        """What a snapshot taken now holds of the entries not yet acknowledged, as
        ``[entry, count]`` pairs (``-1``: all its items): after a crash, Redis delivers
        them again, and what the snapshot holds of them is left out."""
        hold = self.hold
        if hold is None:
            return []
        whole = {*self.to_ack, *hold.in_flight(), *hold.held}
        whole.update(entry for entry, count in hold.skip.items() if count < 0)
        pairs: list[list[Any]] = [[entry, -1] for entry in whole]
        pairs.extend(
            [entry, hold.handled.get(entry, 0) + hold.skip.get(entry, 0)]
            for entry in {*hold.skip, *hold.handled}.difference(whole)
        )
        return pairs

    def release(self, entries: list[bytes]) -> None:
        """A snapshot that covers ``entries`` (from :meth:`covering`) is stored: they are
        acknowledged."""
        hold = self.hold
        if hold is None or not entries:
            return
        for entry in entries:
            if entry in hold.held:
                del hold.held[entry]
                hold.handled.pop(entry, None)
                self.to_ack.append(entry)
        self._acks.unpark_all()

    async def wait_for_acks(self) -> None:
        """Until an entry awaits acknowledgement, or ``ack_after`` of them do."""
        await self._acks.park()

    def close_receiver(self) -> None:
        self.settle()
        super().close_receiver()
        self._acks.unpark_all()

    def discard(self, reason: str) -> int:
        """Items still buffered stay pending in the stream, for another consumer."""
        count = len(self.items)
        self.items.clear()
        self.runs.clear()
        self.remaining.clear()
        if count:
            self.returned += count
            self._log.warning("remote.left_pending", count=count, reason=reason)
        self.wake_producers()
        return 0

    def hand_back(self) -> list[Any]:  # pragma: no cover - remote links are not removable
        raise RuntimeError("a remote link cannot be removed while the system runs")
