"""Carrying remote links over Redis Streams, with the coredis client.

One stream per link; one consumer group per receiving module (named after it); one
consumer per process running that module. Payloads are the lossless msgpack encoding
of :mod:`actorflow._data`.

* A :class:`ProducerPump` drains the sending half of the link into the stream, in
  pipelined batches, and waits while the stream holds ``buffer`` items or more: entries
  are deleted once acknowledged, so the stream's length is what the group has not
  finished (undelivered plus pending), and a slow consumer slows its producer instead of
  filling Redis.
* A :class:`ConsumerPump` reads the stream into the receiving half of the link
  (:class:`~actorflow._remote.RemoteInLink`), acknowledges (and deletes) entries once
  their module has handled them, takes over entries left pending by a consumer that
  has been silent for ``claim_idle`` seconds (``XAUTOCLAIM``), and closes the link when
  the producer has closed and the stream is empty: the end of stream crosses too.
* A module that is not shared holds a lease on its stream: a second instance waits,
  as a standby, until the first stops.

Every Redis call is retried while the server cannot be reached (one warning, then one
``remote.recovered`` event), so a Redis restart delays items but loses none that it
had accepted (run Redis with ``appendonly yes`` for that). coredis reports errors raised
inside ``async with client`` as exception groups; they are unwrapped here, so users see
the error itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._data import decode, encode
from ._exceptions import RunError, SerializationError, _describe, single_errors
from ._link import Link, Mailbox
from ._logging import get_logger
from ._remote import Remote, RemoteInLink
from ._store import _MISSING, _decoded, _encode

if TYPE_CHECKING:
    import coredis

__all__ = ["ConsumerPump", "ProducerPump", "RedisStore", "connect", "stream_key"]

T = TypeVar("T")


def _coredis() -> Any:
    try:
        import coredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "remote links need the Redis client: pip install 'actorflow[redis]'"
        ) from exc
    return coredis


def stream_key(graph: str, source: str, source_port: str, target: str, target_port: str) -> str:
    """The default stream of a remote link."""
    return f"actorflow:{graph}:{source}.{source_port}>{target}.{target_port}"


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client for ``url``, whose errors arrive as themselves, not as groups."""
    coredis = _coredis()
    # No retries inside the client: ours must see every failure, to recover what a
    # read whose reply was lost delivered all the same.
    client = coredis.Redis.from_url(
        url, decode_responses=False, retry_policy=coredis.retry.NoRetryPolicy()
    )
    with single_errors():
        async with client:
            yield client


def _order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id (``b"1718000000000-3"``) as something that sorts in order."""
    millis, _, sequence = entry_id.partition(b"-")
    return int(millis), int(sequence or 0)


class _Retrying:
    """Runs Redis calls again while the server cannot be reached, saying so once."""

    def __init__(self, log: Any, poll: float) -> None:
        self.log = log
        self.poll = poll
        self.failing = 0
        self.failures = 0
        """Every failed attempt so far: tells a caller that a call had to be retried."""

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        coredis = _coredis()
        errors = coredis.exceptions
        retryable = (
            errors.ConnectionError,
            errors.BusyLoadingError,  # a restarted server still reading its data
            errors.TryAgainError,
            TimeoutError,
            OSError,
        )
        delay = self.poll
        while True:
            try:
                result = await call()
            except retryable as exc:
                self.failing += 1
                self.failures += 1
                if self.failing == 1:
                    self.log.warning("remote.unreachable", error=_describe(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if self.failing:
                self.log.info("remote.recovered", after_failures=self.failing)
                self.failing = 0
            return result


class _Reader:
    """Blocking reads on a client of their own, thrown away after any failure.

    coredis loses a pooled connection for every connection that dies during a blocking
    command, so a long-lived client would run out of them after enough blips and then
    wait for ever; a fresh client starts with a full pool.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def __call__(self, read: Callable[[Any], Awaitable[T]]) -> T:
        if self._client is None:
            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(connect(self.url))
            self._stack = stack
        try:
            return await read(self._client)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stack.aclose()


async def _ensure_group(client: Any, stream: str, group: str) -> None:
    coredis = _coredis()
    with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):
        await client.xgroup_create(stream, group, identifier="0", mkstream=True)


class ProducerPump:
    """Moves what the producer sends on a remote link into its stream."""

    def __init__(
        self,
        link: Link,
        mailbox: Mailbox,
        *,
        url: str,
        stream: str,
        group: str,
        bound: int,
        remote: Remote,
    ) -> None:
        self.link = link
        self.mailbox = mailbox
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

    async def run(self) -> None:
        retry = _Retrying(self.log, self.remote.poll)
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
                        link.drop(len(batch), "shutdown")
                        raise
                    self.written += len(batch)
                    self._estimate += 1
                elif link.closed:
                    break
                else:
                    await self.mailbox.wait()
            await retry(lambda: client.set(state, b"closed:%d" % generation))
            self.log.info("remote.producer_closed", written=self.written, generation=generation)

    async def _write(self, client: Any, batch: list[Any]) -> None:
        # One entry per batch: the client's cost is per command, so items travel together.
        try:
            payload = encode(batch)
        except SerializationError as exc:
            raise RunError(
                self.link.spec.source,
                f"an item it sent on remote link {self.link.spec.name} cannot cross: {exc}",
            ) from exc
        await client.xadd(self.stream, {b"p": payload})

    async def _room(self, client: Any, retry: _Retrying) -> None:
        """Wait while the stream holds its share of entries (acknowledged entries are
        deleted, so its length is what the group has not finished)."""
        if self._estimate < self.entries:
            return
        while True:
            self._estimate = await retry(lambda: client.xlen(self.stream))
            if self._estimate < self.entries:
                return
            await trio.sleep(self.remote.poll)


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

    async def run(self) -> None:
        retry = _Retrying(self.log, self.remote.poll)
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
                self.log.warning("remote.cleanup_failed", error=_describe(exc))
        if scope.cancelled_caught:
            self.log.warning("remote.cleanup_failed", error="Redis did not answer in 5 s")

    async def _read(self, client: Any, retry: _Retrying) -> None:
        reader = _Reader(self.url)
        try:
            await self._read_with(client, retry, reader)
        finally:
            await reader.close()

    async def _read_with(self, client: Any, retry: _Retrying, reader: _Reader) -> None:
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

    async def _next(self, client: Any, count: int, block_ms: int) -> list[tuple[bytes, Any]]:
        coredis = _coredis()
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

    async def _lost_deliveries(self, client: Any, here: set[bytes]) -> list[tuple[bytes, Any]]:
        """Entries Redis delivered to this consumer that never reached it."""
        link = self.link
        known = {*link.remaining, *link.to_ack, *self._acking, *here}
        found: list[tuple[bytes, Any]] = []
        start = b"0-0"
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

    async def _take_over(self, client: Any) -> list[tuple[bytes, Any]]:
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

    async def _keep_held(self, client: Any, retry: _Retrying) -> None:
        """Every claim_idle / 3, mark what is held here as busy (even while the pump
        waits for room), so that a peer never takes over entries this one works on."""
        while True:
            await trio.sleep(self.remote.claim_idle / 3)
            await retry(partial(self._touch, client))

    async def _touch(self, client: Any) -> None:
        """Entries held here are not idle: reset their idle time, so that no other
        consumer of a shared group takes them over while this one works."""
        held = list(self.link.remaining)
        if held:
            await client.xclaim(self.stream, self.group, self.consumer, 0, held, justid=True)

    async def _claim(self, client: Any, count: int) -> list[tuple[bytes, Any]]:
        """Take over entries another consumer left pending for ``claim_idle`` seconds."""
        coredis = _coredis()
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
                error=_describe(exc),
                fields=sorted(key.decode(errors="replace") for key in entry.field_values),
            )
            return entry.identifier, []
        return entry.identifier, items if isinstance(items, list) else [items]

    async def _ended(self, client: Any) -> bool:
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

    async def _acknowledge(self, client: Any, retry: _Retrying) -> None:
        while True:
            if not self.link.to_ack:
                await self.link.wait_for_acks()
                continue
            await self._flush_acks(client, retry)

    async def _flush_acks(self, client: Any, retry: _Retrying | None) -> None:
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

    async def _take_lease(self, client: Any, retry: _Retrying) -> None:
        """Wait until this process may consume the stream alone (not shared)."""
        waiting = False
        while True:
            taken = await retry(
                lambda: client.set(
                    self._lease,
                    self.consumer,
                    condition=_coredis().PureToken.NX,
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

    async def _keep_lease(self, client: Any, retry: _Retrying) -> None:
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


class RedisStore:
    """Shared data on a Redis server: the API of :class:`~actorflow.MemoryStore`, shared
    by every process (and machine) that uses the server, kept as long as Redis keeps it.

    It holds a connection, so open it around the systems that use it::

        async with RedisStore("redis://127.0.0.1:6379/0") as store:
            async with open_system(graph, store=store) as system:
                ...

    Each module namespace is one Redis hash (``<prefix>:<namespace>``), values are the
    lossless msgpack encoding; calls wait (warning once) while the server is unreachable.
    Needs ``pip install 'actorflow[redis]'``.
    """

    def __init__(self, url: str, *, prefix: str = "actorflow:shared", poll: float = 0.05) -> None:
        self.url = url
        self.prefix = prefix
        self._retry = _Retrying(get_logger(store="redis", url=url), poll)
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> RedisStore:
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(connect(self.url))
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.__aexit__(*exc_info)

    def _connected(self) -> Any:
        if self._client is None:
            raise RuntimeError(
                "RedisStore is not open: use `async with RedisStore(url) as store:` around "
                "the systems that use it"
            )
        return self._client

    def _key(self, module: str) -> str:
        return f"{self.prefix}:{module}"

    async def get(self, module: str, name: str, default: Any = _MISSING) -> Any:
        """The value of ``module``/``name`` (see :meth:`MemoryStore.get`)."""
        client = self._connected()
        payload = await self._retry(partial(client.hget, self._key(module), name))
        return _decoded(module, name, payload, default)

    async def put(self, module: str, name: str, value: Any) -> None:
        """Set ``module``/``name`` (see :meth:`MemoryStore.put`)."""
        payload = _encode(module, name, value)
        client = self._connected()
        await self._retry(partial(client.hset, self._key(module), {name: payload}))

    async def delete(self, module: str, name: str) -> None:
        """Remove ``module``/``name`` (no error if it is not set)."""
        client = self._connected()
        await self._retry(partial(client.hdel, self._key(module), [name]))

    async def names(self, module: str) -> list[str]:
        """The names set under ``module``, sorted."""
        client = self._connected()
        keys = await self._retry(partial(client.hkeys, self._key(module)))
        return sorted(key.decode() if isinstance(key, bytes) else key for key in keys)

    async def aclose(self) -> None:
        """Close the connection (what ``async with`` does on the way out)."""
        await self.__aexit__(None, None, None)
