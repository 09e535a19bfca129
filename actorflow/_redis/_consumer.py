"""The consumer's half of a remote link: the stream read into the receiving link.

Entries are read (``XREADGROUP``) no faster than the link has room (one more waits
undecoded: :data:`READ_AHEAD`), admitted at the
boundary (:class:`~._entries.Intake`: decoded piece by piece, wrong types and poison
dead-lettered) and acknowledged (``XACK`` then ``XDEL``) once their module has handled
every item in them, or, for a module with ``snapshot()``, once a stored snapshot covers
them (held meanwhile: see :class:`~actorflow._transport.Hold`). Every
``claim_idle / 3`` the consumer's keeper thread (:mod:`._keeper`) marks every entry it
holds (held ones included) as busy (``XCLAIM ... JUSTID``, which
resets their idle time), so that no other consumer takes them over while it lives,
whatever its hooks do; every ``claim_idle / 2`` it takes over entries another
consumer has left idle for ``claim_idle`` (``XAUTOCLAIM``), never one it holds itself,
and removes consumers of its group that hold nothing and have long been idle.
"""

from __future__ import annotations

import math
import os
import socket
from functools import partial
from typing import TYPE_CHECKING, Any, final

import trio

from .._logging import get_logger
from .._specs import Remote
from .._transport import Hold, PumpStatistics, RemoteInLink
from .._urls import redact_url
from ._client import MAX_DELAY, Reader, Retrying, connect, ensure_group, load_coredis
from ._deliveries import Deliveries
from ._entries import Intake, is_marker
from ._keeper import Keeper, give_up, take_lease
from ._keys import check_keys, checked
from ._lease import Lease, try_take
from ._producer import room_made
from ._scripts import END, FORGET_IDLE, FORGET_SELF, link_keys

if TYPE_CHECKING:
    from typing import TypeAlias

    import coredis

    Client: TypeAlias = coredis.Redis[bytes]

__all__ = ["ConsumerPump", "hold_limit"]


def _order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id (``b"1718000000000-3"``) as something that sorts in order."""
    millis, _, sequence = entry_id.partition(b"-")
    return int(millis), int(sequence or 0)


@final
class ConsumerPump:
    """Feeds a remote link's receiving half from its stream and acknowledges what was
    handled."""

    def __init__(
        self,
        link: RemoteInLink,
        *,
        url: str,
        stream: str,
        group: str,
        shared: bool,
        remote: Remote,
        accepts: Any = object,
    ) -> None:
        self.link = link
        self.url = url
        self.stream = stream
        self.group = group
        self.shared = shared
        self.remote = remote
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.log = get_logger(link=link.spec.name, stream=stream, consumer=self.consumer)
        self.acknowledged = 0
        self.claimed = 0
        self.intake = Intake(link, self.log, accepts, remote.max_deliveries)
        self.deliveries = Deliveries(self.stream, self.group, self.consumer)
        self.lease = Lease(
            f"{stream}:lease", self.consumer, remote.claim_idle, link.spec.target, self.log
        )
        self._acking: set[bytes] = set()
        """Ids whose acknowledgement is on its way to Redis."""
        self._redis = trio.Lock()
        """Held while acknowledging and while taking entries over: a claim never sees an
        entry whose acknowledgement is under way as one to take."""
        # A quarter of the producer's bound in entries (see ProducerPump.entries), if
        # the link says it: unacknowledged entries hold the producer back at the bound.
        buffer = link.spec.buffer or 0
        self._ack_entries = max(1, max(2, -(-buffer // remote.batch)) // ACK_SHARE)
        link.ack_after = self._ack_entries
        link.hold_after = hold_limit(buffer, remote.batch)
        self._seen_open: bytes | None = None
        self._took_part = False
        self._stopping = False
        self._stop_asked = False
        """A graceful stop was asked (it may read on: see :meth:`stop`)."""
        self._standing_by: trio.CancelScope | None = None
        """Set while it waits for the lease (a standby): a stop cancels the wait."""
        self._keeper: Keeper | None = None

    def __repr__(self) -> str:
        return f"<ConsumerPump {self.stream!r} on {redact_url(self.url)}>"

    def stop(self, *, read_on: bool = False) -> None:
        """Stop reading (a graceful stop of the system): what is here is still handled
        and acknowledged; what is in the stream stays for the group. ``read_on``: its
        producer runs in this process: it reads on to the end that producer writes
        once drained. Either way a standby still waiting for the lease stops waiting:
        it holds nothing, and the holder reads on."""
        self._stop_asked = True
        if self._standing_by is not None:
            self._standing_by.cancel()
        if not read_on:
            self._stopping = True
            self.link.wake_producers()

    def statistics(self) -> PumpStatistics:
        """Entries acknowledged and items taken over so far."""
        return PumpStatistics(
            self.link.name,
            self.stream,
            sending=False,
            moved=self.acknowledged,
            claimed=self.claimed,
        )

    def held(self) -> list[bytes]:
        """Every entry this consumer holds: being fed, in the link, or being acknowledged."""
        link, hold = self.link, self.link.hold
        if hold is None:
            return [*link.remaining, *link.to_ack, *self._acking]
        return [*link.remaining, *link.to_ack, *self._acking, *hold.held]

    async def run(self) -> None:
        retry = Retrying(self.log, self.remote.poll, self.url)
        target = self.link.spec.target
        async with (
            connect(self.url, self.remote.timeout) as client,
            checked(client, retry, self.stream, self.group, target, self.url),
        ):
            await retry(lambda: ensure_group(client, self.stream, self.group))
            try:
                if self.shared or await self._took_lease(client, retry):
                    await self._serve(client, retry)
                else:
                    self.link.close()  # stopped as a standby: it holds nothing
                # A graceful end: wait until what is here was handled and acknowledged.
                while not self._consumer_gone() and (self.link.items or self.link.in_hand):
                    await self.link.wait_for_space()  # woken when the module takes or settles
                await self._released(math.inf)
            except BaseException:
                await self._finish()
                raise
            await self._finish(client)

    async def _serve(self, client: Client, retry: Retrying) -> None:
        """Read the stream into the link until it ends or the system stops, keeping the
        claims and acknowledging what was handled meanwhile."""
        self.link.leased.set()
        async with trio.open_nursery() as helpers:
            # The lease and what is held are kept from a thread: a hook that blocks the
            # loop must not let them lapse (see _keeper).
            self._keeper = _start_keeper(self)
            helpers.start_soon(self._keeper.watch)
            helpers.start_soon(self._acknowledge, client, retry)
            try:
                await self._read(client, retry)
            finally:
                helpers.cancel_scope.cancel()

    async def _took_lease(self, client: Client, retry: Retrying) -> bool:
        """Wait until the stream's lease is this consumer's (a standby until then);
        False if a stop was asked first (asked before it began: the lease is taken
        only if it is free at once)."""
        if self._stop_asked:
            return await retry(partial(try_take, client, self.lease)) is None
        with trio.CancelScope() as self._standing_by:
            await take_lease(self.lease, client, retry, self.url, self.remote.timeout)
        self._standing_by = None
        # Taken over only as the stop came (the holder had ended): that holder read to
        # the end already; what it is stopped for is not to wait, so it does not read.
        return not self._stop_asked

    async def _finish(self, client: Client | None = None) -> None:
        """Also when cancelled (Ctrl-C, a failure): acknowledge what was handled, give up
        the lease (a standby need not wait for it to lapse) and leave the group if
        nothing is left pending here. After a graceful end on the pump's ``client``;
        otherwise (or if that fails) on a client of its own, inside the shield: a
        cancellation has closed the other's connections."""
        self.link.settle()  # what is in hand was handled, unless it was given back
        self.intake.clear()
        await give_up(
            self._keeper,
            self._clean_up,
            client,
            url=self.url,
            reply_within=self.remote.timeout,
            log=self.log,
        )

    async def _clean_up(self, client: Client) -> None:
        """Acknowledge what was handled, then, in one round trip (each step may be
        repeated: a failed clean-up is done again on a fresh client), give up the lease,
        leave the group unless entries were left pending here, and remove the consumers
        that hold nothing and have been idle for twice ``claim_idle``."""
        await self._flush_acks(client, None)
        idle_ms = int(2000 * self.remote.claim_idle)
        async with client.pipeline(transaction=False) as pipe:
            if not self.shared:
                self.lease.release(pipe)
            pipe.eval(FORGET_SELF, [self.stream], [self.group, self.consumer])
            pipe.eval(FORGET_IDLE, [self.stream], [self.group, idle_ms, self.consumer])

    async def _read(self, client: Client, retry: Retrying) -> None:
        reader = Reader(self.url, self.remote.timeout + self.remote.poll)
        try:
            await self._read_with(client, retry, reader)
        finally:
            await reader.close()

    async def _read_with(self, client: Client, retry: Retrying, reader: Reader) -> None:
        link = self.link
        intake = self.intake
        batch = self.remote.batch
        claims = _Every(self.remote.claim_idle / 2)
        # The run under way when this consumer starts is one it may end with.
        self._producer_state(await retry(lambda: client.get(f"{self.stream}:producer")))
        if not self.shared:
            # Alone in the group: what an earlier consumer left pending comes first, in
            # order, before anything newer (it would otherwise wait for claim_idle).
            self._took_part = bool(await retry(partial(self._take_over, client)))
            claims.skip()  # it has just taken everything pending
        while not self._consumer_gone() and not self._stopping:
            room = link.capacity - len(link.items) - link.in_hand_count
            if room < (intake.need(batch) if intake.backlog else batch):
                await link.wait_for_space()
                continue
            if intake.backlog:
                if self.deliveries.uncounted:
                    fed = partial(self.deliveries.count_fed, client, intake.backlog, room)
                    await retry(fed)
                intake.feed(room)
                continue
            # Not right after an outage: a consumer that lives needs a moment to mark
            # again, as busy, the entries that looked idle while Redis was away.
            if claims.due() and retry.calm(self.remote.claim_idle + MAX_DELAY):
                claimed: int = await retry(partial(self._claim, client, room // batch))
                if claimed:
                    continue
            if intake.end_seen:
                if await self._end_once_drained(client, retry):
                    return
            elif await self._next_entries(client, retry, reader, max(room // batch, READ_AHEAD)):
                self._took_part = True
            elif not link.items and not link.in_hand and await self._end(client, retry):
                return
        if self._stopping:
            link.close()

    async def _end_once_drained(self, client: Client, retry: Retrying) -> bool:
        """An end marker came: once the link holds nothing, see at once whether the
        stream has ended (not when a read has waited ``poll`` in vain)."""
        link = self.link
        if link.items or link.in_hand:
            await link.wait_for_space()  # woken when the module takes or settles
            return False
        self.intake.end_seen = False
        return await self._end(client, retry)

    async def _end(self, client: Client, retry: Retrying) -> bool:
        """End the link if the stream has ended."""
        if self.link.hold is not None and self.link.hold.held:
            await self._released_at_end(client, retry)
        if not await retry(partial(self._ended, client)):
            return False
        self.log.info("remote.end_of_stream", acknowledged=self.acknowledged, claimed=self.claimed)
        self.link.close()
        return True

    async def _next_entries(
        self, client: Client, retry: Retrying, reader: Reader, count: int
    ) -> int:
        """Read up to ``count`` new entries and admit them; how many were read (end
        markers not counted)."""
        failures = retry.failures
        block_ms = max(int(self.remote.poll * 1000), 1)
        read = partial(self._next, count=count, block_ms=block_ms)
        entries = await retry(partial(reader, read))
        if retry.failures != failures:
            # A read cut off by a lost connection may have been delivered to us by Redis
            # all the same: fetch what is pending for us and not here, and put it first:
            # it is older than what the retried read brought.
            here = {entry.identifier for entry in entries}
            lost = await retry(partial(self._lost_deliveries, client, here))
            entries = sorted([*lost, *entries], key=lambda entry: _order(entry.identifier))
            if lost and not self._consumer_gone():
                await self._admit_with_deliveries(client, retry, entries)
                return sum(not is_marker(entry) for entry in entries)
        if self._consumer_gone():
            # Read for a consumer that has just ended: they stay pending for another.
            return 0
        self.intake.admit(entries)
        return sum(not is_marker(entry) for entry in entries)

    def _consumer_gone(self) -> bool:
        return self.link.receiver_closed

    async def _next(self, client: Client, count: int, block_ms: int) -> list[Any]:
        coredis = load_coredis()
        try:
            reply = await client.xreadgroup(
                self.group, self.consumer, streams={self.stream: ">"}, count=count, block=block_ms
            )
        except coredis.exceptions.StreamConsumerGroupError:
            # The group is gone (Redis restarted without its data, or the finished
            # link's keys expired): recreate it.
            await ensure_group(client, self.stream, self.group)
            return []
        if not reply:
            return []
        return list(reply.get(self.stream.encode(), ()))

    async def _lost_deliveries(self, client: Client, here: set[bytes]) -> list[Any]:
        """Entries Redis delivered to this consumer that never reached it."""
        known = {*self.held(), *here}
        found: list[Any] = []
        start: str | bytes = b"0-0"
        while True:
            reply = await client.xreadgroup(
                self.group, self.consumer, streams={self.stream: start}, count=500
            )
            entries = (reply or {}).get(self.stream.encode(), ())
            if not entries:
                break
            found.extend(entry for entry in entries if entry.identifier not in known)
            start = entries[-1].identifier
        if found:
            self.log.warning("remote.recovered_deliveries", entries=len(found))
        return found

    async def _admit_with_deliveries(
        self, client: Client, retry: Retrying, entries: list[Any]
    ) -> int:
        """Admit entries delivered before, dead-lettering those delivered too often; how
        many items."""
        ids = [entry.identifier for entry in entries]
        deliveries = await retry(partial(self.deliveries.of, client, ids))
        return self.intake.admit(entries, deliveries)

    async def _take_over(self, client: Client) -> int:
        """Take every entry pending in the group (its consumers have stopped: this one
        holds the lease), in order; how many."""
        found: list[Any] = []
        forget: list[str | int] = [self.group, 0, self.consumer]
        async with self._redis:
            known = set(self.held())
            # Its consumers have stopped (this one holds the lease) and, once it has
            # taken what they held, hold nothing: forgotten in the same round trip as
            # the first page (the common, only one), and again after more pages.
            async with client.pipeline(transaction=False) as pipe:
                first = pipe.xautoclaim(
                    self.stream, self.group, self.consumer, min_idle_time=0, start="0-0", count=500
                )
                pipe.eval(FORGET_IDLE, [self.stream], forget)
            reply = await first
            paged = False
            while True:
                found.extend(entry for entry in reply[1] if entry.identifier not in known)
                if reply[0] in (b"0-0", "0-0"):
                    break
                paged = True
                reply = await client.xautoclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    min_idle_time=0,
                    start=reply[0],
                    count=500,
                )
            if paged:
                await client.eval(FORGET_IDLE, [self.stream], forget)
            if found:
                self.log.warning("remote.taken_over", entries=len(found))
                found.sort(key=lambda entry: _order(entry.identifier))
                deliveries = await self.deliveries.of(client, [e.identifier for e in found])
                await self.deliveries.uncount(client, deliveries)
                self.claimed += self.intake.admit(found, deliveries)
        return len(found)

    async def _claim(self, client: Client, count: int) -> int:
        """Take over entries another consumer left idle for ``claim_idle`` seconds (never
        one held here), and forget consumers long gone; how many entries."""
        coredis = load_coredis()
        idle_ms = int(self.remote.claim_idle * 1000)
        async with self._redis:
            try:
                reply = await client.xautoclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    min_idle_time=idle_ms,
                    start="0-0",
                    count=max(count, 1),
                )
                await client.eval(
                    FORGET_IDLE, [self.stream], [self.group, 2 * idle_ms, self.consumer]
                )
            except coredis.exceptions.StreamConsumerGroupError:
                await ensure_group(client, self.stream, self.group)
                return 0
            held = set(self.held())
            entries = [entry for entry in reply[1] if entry.identifier not in held]
            if not entries:
                return 0
            deliveries = await self.deliveries.of(client, [e.identifier for e in entries])
            count = self.intake.admit(entries, deliveries)
        self.claimed += count
        self.log.warning("remote.claimed", count=count, entries=len(entries))
        return len(entries)

    async def _ended(self, client: Client) -> bool:
        """The producer has closed and the group has finished every entry (then the
        link's keys start to expire)."""
        took_part = b"1" if self._took_part else b"0"
        seen = self._seen_open or b""
        ttl = max(int(self.remote.ttl), 1)
        keys = link_keys(self.stream, self.group)
        # Those blocked in a read have been idle no longer than a poll (and Redis's timer).
        reading_ms = int(1000 * self.remote.poll) + 1000
        peers: list[str | int] = [self.consumer, self.group, reading_ms]
        if not self.shared:
            peers = ["", "", 0]
        async with self._redis:  # an acknowledgement under way is through first
            await self._flush_acks(client, None)
            ended = await client.eval(END, keys, [seen, took_part, ttl, *peers])
        if ended == -1:  # a producer state actorflow never wrote: say which key
            await check_keys(client, self.stream, self.group, self.link.spec.target)
        return bool(ended)

    def _producer_state(self, state: bytes | None) -> None:
        """``open:<generation>`` or ``closed:<generation>``: a run seen open is one this
        consumer takes part in."""
        what, _, generation = (state or b"").partition(b":")
        if what == b"open":
            self._seen_open = generation

    async def _acknowledge(self, client: Client, retry: Retrying) -> None:
        link = self.link
        while True:
            hold = link.hold
            if hold is not None and hold.fresh:
                async with self._redis:
                    await self._handled_once(client, retry, hold)
            if not link.to_ack:
                if hold is None or not hold.fresh:  # more may have come meanwhile
                    await link.wait_for_acks()
                continue
            # Let a few entries gather for one command (the client's cost is per
            # command); the end of the stream and a stop flush at once. Not many, nor
            # long: the producer counts unacknowledged entries against the bound.
            with trio.move_on_after(ACK_DELAY):
                while len(link.to_ack) < self._ack_entries:
                    await link.wait_for_acks()
            async with self._redis:
                await self._flush_acks(client, retry)

    async def _flush_acks(self, client: Client, retry: Retrying | None) -> None:
        ids = self.link.to_ack
        if not ids:
            return
        if self.link.hold is not None:  # a snapshot's marks name them too
            self.link.hold.in_flight = self._in_flight
        self.link.to_ack = []
        self._acking.update(ids)

        async def ack() -> None:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xack(self.stream, self.group, ids)
                pipe.xdel(self.stream, ids)

        try:
            await (retry(ack) if retry is not None else ack())
        except BaseException:
            self.link.to_ack[:0] = ids  # not acknowledged: keep them for the next flush
            raise
        finally:
            self._acking.difference_update(ids)
        room_made(self.url, self.stream)
        markers = self.intake.markers
        if markers:
            self.acknowledged += sum(entry_id not in markers for entry_id in ids)
            markers.difference_update(ids)
        else:
            self.acknowledged += len(ids)

    # -- Held acknowledgements (a module with snapshot(): see _snapshots and Hold) --

    def _in_flight(self) -> set[bytes]:
        return self._acking

    async def _released(self, seconds: float) -> None:
        """Ask the module for a snapshot that covers the entries held (its saves at the
        interval may be far off, or never come), and wait ``seconds`` at most for their
        release (or for the module's end)."""
        link, hold = self.link, self.link.hold
        if hold is None or not hold.held or self._consumer_gone():
            return
        hold.ask()
        with trio.move_on_after(seconds):
            while hold.held and not self._consumer_gone():
                await link.wait_for_acks()

    async def _released_at_end(self, client: Client, retry: Retrying) -> None:
        """Nothing is left to read and entries are held: if the producer has closed,
        the stream cannot end before they are acknowledged, so ask for a snapshot now
        (while it runs, the held entries wait for the interval or the bound)."""
        state = await retry(lambda: client.get(f"{self.stream}:producer"))
        if (state or b"").startswith(b"closed"):
            await self._released(self.remote.poll)

    async def _handled_once(self, client: Client, retry: Retrying, hold: Hold) -> None:
        """Entries handled whole and held for a snapshot: their delivery count is set
        back to none (``XCLAIM ... RETRYCOUNT 0 JUSTID``), so that handling them again
        after a rollback to the last snapshot (a process killed, Redis delivering them
        again) never counts towards ``max_deliveries``: only the entries of the batch
        under way when a consumer died do."""
        fresh, hold.fresh = hold.fresh, []
        held = [entry for entry in fresh if entry in hold.held]
        if not held:
            return

        def reset() -> Any:
            return client.xclaim(
                self.stream, self.group, self.consumer, 0, held, retrycount=0, justid=True
            )

        await retry(reset)


def _start_keeper(pump: ConsumerPump) -> Keeper:
    """The thread that keeps ``pump``'s lease and what it holds (see :mod:`._keeper`)."""
    keeper = Keeper(
        url=pump.url,
        stream=pump.stream,
        group=pump.group,
        consumer=pump.consumer,
        claim_idle=pump.remote.claim_idle,
        timeout=pump.remote.timeout,
        poll=pump.remote.poll,
        lease=None if pump.shared else pump.lease,
        held=pump.held,
        log=pump.log,
    )
    keeper.start()
    return keeper


def hold_limit(buffer: int, batch: int) -> int:
    """How many entries a module with ``snapshot()`` holds before it asks for a
    snapshot: half the stream's bound in entries (held entries are still in the stream,
    so the producer counts them), one if the link's ``buffer`` is not set."""
    return max(1, max(2, -(-buffer // batch)) // 2)


READ_AHEAD = 2
"""Entries a read asks for even when the link has room for only one: the other waits
in the intake, undecoded (pending in Redis all the same, so the producer's bound still
counts it), and saves the next read (the client's cost is per command)."""
ACK_DELAY = 0.005
"""Seconds an acknowledgement may wait for others to travel with."""
ACK_SHARE = 4
"""Acknowledgements travel at once, without waiting longer, when a quarter of the
stream's bound (in entries) awaits them (at once, if the link's ``buffer`` is not set)."""


class _Every:
    """Says when ``period`` seconds have passed since it last said so (at first, at once)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.next = trio.current_time()

    def skip(self) -> None:
        """Not due again for a period."""
        self.next = trio.current_time() + self.period

    def due(self) -> bool:
        now = trio.current_time()
        if now < self.next:
            return False
        self.next = now + self.period
        return True
