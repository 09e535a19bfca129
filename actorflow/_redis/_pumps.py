"""Carrying remote links over Redis Streams: the pumps of the Redis backend.

One stream per link; one consumer group per receiving module (named after it); one
consumer per process running that module. Payloads are the lossless msgpack encoding
of :mod:`actorflow._data`.

* A :class:`ProducerPump` drains the sending half of the link into the stream, in
  pipelined batches, and waits while the stream holds ``buffer`` items or more: entries
  are deleted once acknowledged, so the stream's length is what the group has not
  finished (undelivered plus pending), and a slow consumer slows its producer instead of
  filling Redis.
* A :class:`ConsumerPump` reads the stream into the receiving half of the link
  (:class:`~actorflow._transport.RemoteInLink`), acknowledges (and deletes) entries once
  their module has handled them, takes over entries left pending by a consumer that
  has been silent for ``claim_idle`` seconds (``XAUTOCLAIM``), and closes the link when
  the producer has closed and the stream is empty: the end of stream crosses too.
* A module that is not shared holds a lease on its stream: a second instance waits,
  as a standby, until the first stops.

Every Redis call is retried while the server cannot be reached (one warning, then one
``remote.recovered`` event), so a Redis restart delays items but loses none that it
had accepted (run Redis with ``appendonly yes`` for that).
"""

from __future__ import annotations

import contextlib
import os
import socket
from functools import partial
from typing import TYPE_CHECKING, Any, final

import trio

from .._data import decode, encode
from .._exceptions import RunError, SerializationError, describe
from .._link import Link, Mailbox
from .._logging import get_logger
from .._specs import LinkSpec, Remote
from .._status import DropReason
from .._transport import PumpStatistics, RemoteInLink, sending_link
from ._client import Reader, Retrying, connect, load_coredis

if TYPE_CHECKING:
    from typing import TypeAlias

    import coredis

    Client: TypeAlias = coredis.Redis[bytes]

__all__ = ["ConsumerPump", "ProducerPump", "RedisBackend", "backend", "stream_key"]


def stream_key(graph: str, source: str, source_port: str, target: str, target_port: str) -> str:
    """The default stream of a remote link."""
    return f"actorflow:{graph}:{source}.{source_port}>{target}.{target_port}"


def _order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id (``b"1718000000000-3"``) as something that sorts in order."""
    millis, _, sequence = entry_id.partition(b"-")
    return int(millis), int(sequence or 0)


async def _ensure_group(client: Client, stream: str, group: str) -> None:
    coredis = load_coredis()
    with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):
        await client.xgroup_create(stream, group, identifier="0", mkstream=True)


@final
class ProducerPump:
    """Moves what the producer sends on a remote link into its stream."""

    def __init__(
        self,
        link: Link,
        *,
        url: str,
        stream: str,
        group: str,
        bound: int,
        remote: Remote,
    ) -> None:
        self.link = link
        self.mailbox = link.mailbox
        """Wakes the pump when the producer sends or closes (the link's own)."""
        self.url = url
        self.stream = stream
        self.group = group
        self.remote = remote
        self.entries = max(2, -(-bound // remote.batch))
        """The most entries the stream may hold: ``bound`` items in full entries (two at
        least, so that one can be read while the next is written)."""
        self.written = 0
        self.log = get_logger(link=link.spec.name, stream=stream)
        self._estimate = 0

    def stop(self) -> None:
        """Nothing to do: the producer's end, when it comes, closes the stream."""

    def statistics(self) -> PumpStatistics:
        """Items written to the stream so far."""
        return PumpStatistics(self.link.name, self.stream, sending=True, moved=self.written)

    async def run(self) -> None:
        retry = Retrying(self.log, self.remote.poll)
        state = f"{self.stream}:producer"
        async with connect(self.url) as client:
            await retry(lambda: _ensure_group(client, self.stream, self.group))
            # Each run of the producer is a generation: consumers tell this run's end
            # from the end of a run they (or their group) already consumed.
            generation = await retry(lambda: client.incr(f"{self.stream}:generation"))
            await retry(lambda: client.set(state, b"open:%d" % generation))
            link = self.link
            while True:
                if link.items:
                    await self._room(client, retry)
                    batch = link.take(self.remote.batch)
                    try:
                        await retry(partial(self._write, client, batch))
                    except BaseException:
                        # Cut off before Redis confirmed: they may or may not be there.
                        link.drop(len(batch), DropReason.SHUTDOWN)
                        raise
                    self.written += len(batch)
                    self._estimate += 1
                elif link.closed:
                    break
                else:
                    await self.mailbox.wait()
            await retry(lambda: client.set(state, b"closed:%d" % generation))
            self.log.info("remote.producer_closed", written=self.written, generation=generation)

    async def _write(self, client: Client, batch: list[Any]) -> None:
        # One entry per batch: the client's cost is per command, so items travel together.
        try:
            payload = encode(batch)
        except SerializationError as exc:
            raise RunError(
                self.link.spec.source,
                f"an item it sent on remote link {self.link.spec.name} cannot cross: {exc}",
            ) from exc
        await client.xadd(self.stream, {b"p": payload})

    async def _room(self, client: Client, retry: Retrying) -> None:
        """Wait while the stream holds its share of entries (acknowledged entries are
        deleted, so its length is what the group has not finished)."""
        if self._estimate < self.entries:
            return
        while True:
            self._estimate = await retry(lambda: client.xlen(self.stream))
            if self._estimate < self.entries:
                return
            await trio.sleep(self.remote.poll)


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
        self._acking: set[bytes] = set()
        """Ids whose acknowledgement is on its way to Redis."""
        self._seen_open: bytes | None = None
        self._took_part = False
        self._stopping = False
        self._lease = f"{stream}:lease"
        self._lease_ms = max(int(remote.claim_idle * 1000), 1000)

    def stop(self) -> None:
        """Stop reading (a graceful stop of the system): what is here is still handled
        and acknowledged; what is in the stream stays for the group."""
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

    async def run(self) -> None:
        retry = Retrying(self.log, self.remote.poll)
        async with connect(self.url) as client:
            await retry(lambda: _ensure_group(client, self.stream, self.group))
            try:
                async with trio.open_nursery() as helpers:
                    if not self.shared:
                        await self._take_lease(client, retry)
                        helpers.start_soon(self._keep_lease, client, retry)
                    helpers.start_soon(self._acknowledge, client, retry)
                    if self.shared:
                        helpers.start_soon(self._keep_held, client, retry)
                    try:
                        await self._read(client, retry)
                    finally:
                        helpers.cancel_scope.cancel()
                # A graceful end: wait until what is here was handled and acknowledged.
                while not self._consumer_gone() and (self.link.items or self.link.in_hand):
                    await self.link.wait_for_acks()
            finally:
                await self._finish()

    async def _finish(self) -> None:
        """Also when cancelled (Ctrl-C, a failure): acknowledge what was handled and
        give up the lease, so that a standby need not wait for it to lapse. A client of
        its own, inside the shield: a cancellation has closed the other's connections."""
        self.link.settle()  # what is in hand was handled, unless it was given back
        with trio.CancelScope(shield=True), trio.move_on_after(5) as scope:
            try:
                async with connect(self.url) as client:
                    await self._flush_acks(client, None)
                    if not self.shared:
                        await client.eval(_RELEASE, [self._lease], [self.consumer])
            except Exception as exc:
                self.log.warning("remote.cleanup_failed", error=describe(exc))
        if scope.cancelled_caught:
            self.log.warning("remote.cleanup_failed", error="Redis did not answer in 5 s")

    async def _read(self, client: Client, retry: Retrying) -> None:
        reader = Reader(self.url)
        try:
            await self._read_with(client, retry, reader)
        finally:
            await reader.close()

    async def _read_with(self, client: Client, retry: Retrying, reader: Reader) -> None:
        link = self.link
        remote = self.remote
        claim_every = remote.claim_idle / 2
        next_claim = trio.current_time()
        block_ms = max(int(remote.poll * 1000), 1)
        # The run under way when this consumer starts is one it may end with.
        self._producer_state(await retry(lambda: client.get(f"{self.stream}:producer")))
        if not self.shared:
            # Alone in the group: what an earlier consumer left pending comes first, in
            # order, before anything newer (it would otherwise wait for claim_idle).
            taken = await retry(partial(self._take_over, client))
            self._took_part = bool(taken)
            link.deliver(taken)
        while not self._consumer_gone() and not self._stopping:
            room = (link.capacity - len(link.items) - len(link.in_hand)) // remote.batch
            if room <= 0:
                await link.wait_for_space()
                continue
            entries: list[tuple[bytes, Any]] = []
            if trio.current_time() >= next_claim:
                next_claim = trio.current_time() + claim_every
                entries = await retry(partial(self._claim, client, room))
            if not entries:
                failures = retry.failures
                read = partial(self._next, count=room, block_ms=block_ms)
                entries = await retry(partial(reader, read))
                if retry.failures != failures:
                    # A read cut off by a lost connection may have been delivered to us
                    # by Redis all the same: fetch what is pending for us and not here,
                    # and put it first: it is older than what the retried read brought.
                    here = {entry_id for entry_id, _ in entries}
                    lost = await retry(partial(self._lost_deliveries, client, here))
                    entries = sorted([*lost, *entries], key=lambda entry: _order(entry[0]))
            if self._consumer_gone():
                # Read for a consumer that has just ended: they stay pending for another.
                break
            if entries:
                self._took_part = True
                link.deliver(entries)
            elif not link.items and not link.in_hand and await retry(partial(self._ended, client)):
                self.log.info(
                    "remote.end_of_stream", acknowledged=self.acknowledged, claimed=self.claimed
                )
                link.close()
                return
        if self._stopping:
            link.close()

    def _consumer_gone(self) -> bool:
        return self.link.receiver_closed

    async def _next(self, client: Client, count: int, block_ms: int) -> list[tuple[bytes, Any]]:
        coredis = load_coredis()
        try:
            reply = await client.xreadgroup(
                self.group, self.consumer, streams={self.stream: ">"}, count=count, block=block_ms
            )
        except coredis.exceptions.StreamConsumerGroupError:
            # The group is gone (Redis restarted without its data): recreate it.
            await _ensure_group(client, self.stream, self.group)
            return []
        if not reply:
            return []
        return [self._decoded(entry) for entry in reply.get(self.stream.encode(), ())]

    async def _lost_deliveries(self, client: Client, here: set[bytes]) -> list[tuple[bytes, Any]]:
        """Entries Redis delivered to this consumer that never reached it."""
        link = self.link
        known = {*link.remaining, *link.to_ack, *self._acking, *here}
        found: list[tuple[bytes, Any]] = []
        start: str | bytes = b"0-0"
        while True:
            reply = await client.xreadgroup(
                self.group, self.consumer, streams={self.stream: start}, count=500
            )
            entries = (reply or {}).get(self.stream.encode(), ())
            if not entries:
                break
            found.extend(self._decoded(e) for e in entries if e.identifier not in known)
            start = entries[-1].identifier
        if found:
            self.log.warning("remote.recovered_deliveries", entries=len(found))
        return found

    async def _take_over(self, client: Client) -> list[tuple[bytes, Any]]:
        """Every entry pending in the group (its consumers have stopped: this one holds
        the lease), in order."""
        found: list[tuple[bytes, Any]] = []
        start: Any = "0-0"
        while True:
            reply = await client.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_time=0, start=start, count=500
            )
            found.extend(self._decoded(entry) for entry in reply[1])
            start = reply[0]
            if start in (b"0-0", "0-0"):
                break
        if found:
            self.claimed += sum(len(items) for _, items in found)
            self.log.warning("remote.taken_over", entries=len(found))
        return sorted(found, key=lambda entry: _order(entry[0]))

    async def _keep_held(self, client: Client, retry: Retrying) -> None:
        """Every claim_idle / 3, mark what is held here as busy (even while the pump
        waits for room), so that a peer never takes over entries this one works on."""
        while True:
            await trio.sleep(self.remote.claim_idle / 3)
            await retry(partial(self._touch, client))

    async def _touch(self, client: Client) -> None:
        """Entries held here are not idle: reset their idle time, so that no other
        consumer of a shared group takes them over while this one works."""
        held = list(self.link.remaining)
        if held:
            await client.xclaim(self.stream, self.group, self.consumer, 0, held, justid=True)

    async def _claim(self, client: Client, count: int) -> list[tuple[bytes, Any]]:
        """Take over entries another consumer left pending for ``claim_idle`` seconds."""
        coredis = load_coredis()
        try:
            reply = await client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.remote.claim_idle * 1000),
                start="0-0",
                count=count,
            )
        except coredis.exceptions.StreamConsumerGroupError:
            await _ensure_group(client, self.stream, self.group)
            return []
        entries = [self._decoded(entry) for entry in reply[1]]
        if entries:
            count = sum(len(items) for _, items in entries)
            self.claimed += count
            self.log.warning("remote.claimed", count=count, entries=len(entries))
        return entries

    def _decoded(self, entry: Any) -> tuple[bytes, list[Any]]:
        try:
            items = decode(entry.field_values[b"p"])
        except (KeyError, SerializationError) as exc:
            # Not ours, or damaged: counted, logged, acknowledged; the stream goes on.
            self.link.drop(1, "undecodable")
            self.log.error(
                "remote.undecodable",
                entry=entry.identifier.decode(),
                error=describe(exc),
                fields=sorted(key.decode(errors="replace") for key in entry.field_values),
            )
            return entry.identifier, []
        return entry.identifier, items if isinstance(items, list) else [items]

    async def _ended(self, client: Client) -> bool:
        """The producer has closed and the group has finished every entry."""
        await self._flush_acks(client, None)
        done_key = f"{self.stream}:done:{self.group}"
        async with client.pipeline(transaction=False) as pipe:
            state_request = pipe.get(f"{self.stream}:producer")
            length_request = pipe.xlen(self.stream)
            done_request = pipe.get(done_key)
        state, length, done = await state_request, await length_request, await done_request
        what, generation = self._producer_state(state)
        if what != b"closed" or length:
            return False
        # The end of a run this group already consumed counts only for the consumers
        # that took part in it (saw it open, or got entries); a consumer started after
        # it ended waits for the next run.
        if done == generation and self._seen_open != generation and not self._took_part:
            return False
        await client.set(done_key, generation)
        return True

    def _producer_state(self, state: bytes | None) -> tuple[bytes, bytes]:
        """``open:<generation>`` or ``closed:<generation>``, split; a run seen open is
        one this consumer takes part in."""
        what, _, generation = (state or b"").partition(b":")
        if what == b"open":
            self._seen_open = generation
        return what, generation

    async def _acknowledge(self, client: Client, retry: Retrying) -> None:
        while True:
            if not self.link.to_ack:
                await self.link.wait_for_acks()
                continue
            await self._flush_acks(client, retry)

    async def _flush_acks(self, client: Client, retry: Retrying | None) -> None:
        ids = self.link.to_ack
        if not ids:
            return
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
        self.acknowledged += len(ids)

    async def _take_lease(self, client: Client, retry: Retrying) -> None:
        """Wait until this process may consume the stream alone (not shared)."""
        waiting = False
        while True:
            taken = await retry(
                lambda: client.set(
                    self._lease,
                    self.consumer,
                    condition=load_coredis().PureToken.NX,
                    px=self._lease_ms,
                )
            )
            if taken:
                if waiting:
                    self.log.info("remote.lease_taken")
                return
            if not waiting:
                waiting = True
                owner = await retry(lambda: client.get(self._lease))
                self.log.warning(
                    "remote.standby",
                    owner=owner.decode() if isinstance(owner, bytes) else owner,
                    hint="the module is not shared: this instance waits to take over",
                )
            await trio.sleep(self._lease_ms / 3000)

    async def _keep_lease(self, client: Client, retry: Retrying) -> None:
        while True:
            await trio.sleep(self._lease_ms / 3000)
            kept = await retry(
                lambda: client.eval(_RENEW, [self._lease], [self.consumer, self._lease_ms])
            )
            if not kept:
                raise RunError(
                    self.link.spec.target,
                    f"lost its lease on stream {self.stream!r} (silent for more than "
                    f"{self._lease_ms / 1000:g} s); another instance may have taken over",
                )


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@final
class RedisBackend:
    """Carries remote links over Redis Streams (see :class:`~actorflow.Remote`)."""

    def sender(self, spec: LinkSpec, *, url: str, graph: str, bound: int) -> ProducerPump:
        """The producer's pump: its link holds up to a batch, the stream ``bound`` items."""
        remote = _remote_of(spec)
        return ProducerPump(
            sending_link(spec, remote.batch),
            url=url,
            stream=_stream_of(spec, graph),
            group=spec.target,
            bound=bound,
            remote=remote,
        )

    def receiver(
        self, spec: LinkSpec, mailbox: Mailbox, *, url: str, graph: str, shared: bool
    ) -> ConsumerPump:
        """The consumer's pump, feeding a :class:`RemoteInLink` into ``mailbox``."""
        remote = _remote_of(spec)
        # Room for two entries: one to read while the module works on the other.
        inbound = RemoteInLink(spec, 2 * remote.batch, mailbox)
        return ConsumerPump(
            inbound,
            url=url,
            stream=_stream_of(spec, graph),
            group=spec.target,
            shared=shared,
            remote=remote,
        )


def _remote_of(spec: LinkSpec) -> Remote:
    if spec.remote is None:
        raise ValueError(f"link {spec.name} is not remote")
    return spec.remote


def _stream_of(spec: LinkSpec, graph: str) -> str:
    remote = _remote_of(spec)
    return remote.stream or stream_key(
        graph, spec.source, spec.source_port, spec.target, spec.target_port
    )


backend = RedisBackend()
"""What :func:`actorflow._transport.load_backend` finds here."""
