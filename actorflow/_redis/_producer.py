"""The producer's half of a remote link: what its module sends, written into the stream.

Items travel in entries of up to ``batch`` items (the client's cost is per command), and
an entry whose encoding exceeds :data:`MAX_ENTRY_BYTES` is split, so the consumer never
has to take in more than its link holds. The pump waits while the stream holds its
bound: acknowledged entries are deleted, so the stream's length is what the group has
not finished; the first wait of every run asks Redis, so the bound holds across restarts
of the producer. Each entry is written under an id the pump chose before the first
attempt, so a write retried after its reply was lost (a paused or restarted Redis) is
refused by Redis as a repeat instead of being written twice. A whole batch is written
in the producer's own task, by call into the pump (see :class:`ProducerPump`).
"""

from __future__ import annotations

import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, cast, final

import attrs
import trio

from .._data import encode, encode_items
from .._exceptions import RunError, SerializationError
from .._link import Link
from .._logging import get_logger
from .._specs import Remote
from .._status import DropReason
from .._transport import PumpStatistics
from .._urls import redact_url
from ._client import Retrying, connect, load_coredis
from ._keys import checked, group_kept
from ._scripts import END_FIELD, OPEN, link_keys
from ._sole import sole_producer

if TYPE_CHECKING:
    import coredis

__all__ = ["MAX_ENTRY_BYTES", "ProducerPump", "room_made"]

MAX_ENTRY_BYTES = 4 * 1024 * 1024
"""An entry larger than this (encoded) is split in two, and so on (unless it is one item)."""

_REPEAT = "equal or smaller than the target stream top item"
"""What Redis says when an entry's id is not above every id the stream has seen."""

CALL_GRACE = 1.0
"""Seconds a sending pump's end waits for a producer's write by call under way."""


_WAITING: dict[tuple[Any, str, str], trio.Event] = {}
"""Producers of this process waiting for room in a stream, woken by a consumer of the
same stream in this process when it has acknowledged entries (others poll)."""


async def _room_made(url: str, stream: str, poll: float) -> None:
    """Wait ``poll`` seconds, or less if a consumer here acknowledges entries of ``stream``."""
    key = (trio.lowlevel.current_trio_token(), url, stream)
    event = _WAITING.setdefault(key, trio.Event())
    try:
        with trio.move_on_after(poll):
            await event.wait()
    finally:
        if _WAITING.get(key) is event:
            del _WAITING[key]


def room_made(url: str, stream: str) -> None:
    """Entries of ``stream`` were acknowledged: wake a producer here that waits for room."""
    if _WAITING:
        event = _WAITING.pop((trio.lowlevel.current_trio_token(), url, stream), None)
        if event is not None:
            event.set()


def _encode_batch(batch: list[Any]) -> bytes:
    """``batch`` as one payload: checked for depth as one list (one check, not one per
    item: the common case, and cheaper), or, if that fails, item by item (each item may
    nest as deep as the limit allows, and the error names the item at fault)."""
    try:
        return encode(batch)
    except SerializationError:
        return encode_items(batch)


@attrs.define
class _Ids:
    """The ids of the entries this producer writes: above every id seen, in order."""

    millis: int = 0
    sequence: int = -1

    def next(self) -> bytes:
        now = int(time.time() * 1000)
        if now > self.millis:
            self.millis, self.sequence = now, 0
        else:
            self.sequence += 1
        return b"%d-%d" % (self.millis, self.sequence)

    def above(self, top: bytes) -> bytes:
        """The next id above ``top`` (the stream's last id) and every id written."""
        millis, _, sequence = top.partition(b"-")
        self.millis, self.sequence = max(
            (self.millis, self.sequence), (int(millis), int(sequence))
        )
        return self.next()


@attrs.define
class _Attempt:
    id: bytes
    tries: int = 0


@attrs.define
class _Unconfirmed:
    """An entry a call wrote without learning whether Redis took it: the pump's own
    task writes it again under the same id (a repeat is refused)."""

    fields: dict[bytes, bytes]
    attempt: _Attempt
    count: int


@final
class ProducerPump:
    """Moves what the producer sends on a remote link into its stream.

    While its link is empty, the pump is the link's :class:`~actorflow._link.Fused`
    consumer: the producer hands it a whole batch by call, written to the stream in the
    producer's task (no buffer, no task switch, as a hand-written loop would); anything
    else (a smaller batch, an entry to split, a stream at its bound, a failed write)
    goes back into the link or to :attr:`_returned`, for the pump's own task.
    """

    def __init__(
        self, link: Link, *, url: str, stream: str, group: str, bound: int, remote: Remote
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
        self._estimate = self.entries
        """Entries in the stream as far as the pump knows: at first what Redis says when
        the run opens (an earlier run may have left some)."""
        self._ids = _Ids()
        self._client: coredis.Redis[bytes] | None = None
        """The pump's client, while calls may write on it."""
        self._returned: deque[_Unconfirmed] = deque()
        """Entries a call could not confirm, oldest first: written before anything else."""
        self._busy = False
        """The pump's own task is writing a batch it took (a call waits for it)."""
        self._inside = False
        """A call is writing (the pump's own task waits until it is over)."""
        self._outside: trio.Event | None = None
        self._taken = 0
        """How many items of the call under way were written (or handed on unconfirmed)."""

    def __repr__(self) -> str:
        return f"<ProducerPump {self.stream!r} on {redact_url(self.url)}>"

    def stop(self, *, read_on: bool = False) -> None:
        """Nothing to do: the producer's end, when it comes, closes the stream."""

    def statistics(self) -> PumpStatistics:
        """Items written to the stream so far."""
        return PumpStatistics(self.link.name, self.stream, sending=True, moved=self.written)

    async def run(self) -> None:
        retry = Retrying(self.log, self.remote.poll, self.url)
        state = f"{self.stream}:producer"
        async with (
            connect(self.url, self.remote.timeout) as client,
            checked(client, retry, self.stream, self.group, self.link.spec.source, self.url),
            sole_producer(
                client,
                retry,
                url=self.url,
                stream=self.stream,
                remote=self.remote,
                source=self.link.spec.source,
                log=self.log,
            ),
        ):
            # Each run of the producer is a generation: consumers tell this run's end
            # from the end of a run they (or their group) already consumed.
            keys = link_keys(self.stream, self.group)
            opened = await retry(lambda: client.eval(OPEN, keys, [self.group]))
            generation, self._estimate = cast("list[int]", opened)
            try:
                await self._pump(client, retry)
            finally:
                await self._release()
            await retry(lambda: client.set(state, b"closed:%d" % generation))
            # The end marker wakes consumers blocked in XREADGROUP now, instead of at
            # their next poll; it is written without waiting for room (a consumer that
            # is down must not hold the producer's end), so the stream may hold one
            # entry over its bound.
            await self._write(client, retry, {END_FIELD: b"%d" % generation})
            self.log.info("remote.producer_closed", written=self.written, generation=generation)

    async def _pump(self, client: coredis.Redis[bytes], retry: Retrying) -> None:
        """Write what the producer sends until it ends: what calls left unconfirmed first
        (it is older), then what waits in the link."""
        link = self.link
        self._client = client
        while True:
            if self._inside and (self._returned or link.items or link.closed):
                # What a call writes is older than what is here now. Only then: a call's
                # end wakes this task only if it left work (one wake-up per entry else).
                await self._wait_outside()
                continue
            if self._returned:
                entry = self._returned[0]
                await retry(partial(self._add, client, entry.fields, entry.attempt))
                self._returned.popleft()
                self._estimate += 1
                self.written += entry.count
            elif link.items:
                await self._room(client, retry)
                batch = link.take(self.remote.batch)
                self._busy = True
                self._arm()  # the next batch may come by call, once this one is written
                try:
                    await self._write_batch(client, retry, batch)
                finally:
                    self._busy = False
                    link.wake_producers()  # a call waiting for this write
            elif link.closed:
                return
            else:
                self._arm()
                await self.mailbox.wait()

    async def _write_batch(
        self, client: coredis.Redis[bytes], retry: Retrying, batch: list[Any]
    ) -> None:
        try:
            for index, (payload, count) in enumerate(self._encoded(batch)):
                if index:
                    await self._room(client, retry)
                await self._write(client, retry, {b"p": payload})
                self.written += count
                batch = batch[count:]
        except BaseException:
            # Cut off before Redis confirmed: they may or may not be there.
            self.link.drop(len(batch), DropReason.SHUTDOWN)
            raise

    def _arm(self) -> None:
        """Take the next batch by call, if nothing waits to be written before it."""
        link = self.link
        if (
            self._client is not None
            and not self._inside
            and not self._returned
            and not link.items
            and not link.closed
        ):
            link.direct = self

    async def _wait_outside(self) -> None:
        if self._outside is None:
            self._outside = trio.Event()
        await self._outside.wait()

    async def _release(self) -> None:
        """The pump ends, however: no call writes for it any more; what calls left
        unconfirmed is lost with it. A call under way is not cancelled (a scope per
        call, a per-entry cost on the hot path, ~2% of a run, would buy only this): one
        waiting for the pump's write is woken and gives its items back; one writing is
        given :data:`CALL_GRACE` to see its entry confirmed (ms on a healthy Redis), so
        a failing pump is not held for the client's ``timeout`` by a Redis that hangs.
        A call that ends later counts what it could not confirm itself (see
        :meth:`_left`); its caller, the failing or stopping system's, is cancelled."""
        self._client = None
        self.link.direct = None
        self.link.wake_producers()  # a call waiting for the pump's write: it ends
        with trio.CancelScope(shield=True), trio.move_on_after(CALL_GRACE):
            while self._inside:
                await self._wait_outside()
        self._drop_returned()

    def _drop_returned(self) -> None:
        """The pump has ended: entries calls could not confirm are lost with it."""
        lost = sum(entry.count for entry in self._returned)
        self._returned.clear()
        self.link.drop(lost, DropReason.SHUTDOWN)

    def fresh(self) -> bool:
        """A batch smaller than an entry is never worth a call: it waits in the link,
        where more may join it, for the pump's own task."""
        return False

    def reach(self) -> int:
        """A call takes at most an entry's worth: what the link holds."""
        return self.link.capacity

    async def call(
        self, items: list[Any], caller: Any, pacing: Any, *, taken: bool = False
    ) -> None:
        """Write ``items`` to the stream in the producer's task (``caller``'s, see
        :class:`~actorflow._link.Fused`), a whole entry at a time, once the entry the
        pump's own task is writing (if any) is written; what is left (less than an
        entry, or all if a call cannot write now) goes back into the link."""
        link = self.link
        if not taken:
            link.sent += len(items)
            link.delivered += len(items)
        client = self._client
        if client is None or len(items) < self.remote.batch or self._returned:
            link.requeue(items)
            return
        link.direct = None  # one call at a time
        self._inside = True
        self._taken = 0
        try:
            if self._busy:
                # Woken when that write is over, or as a producer blocked on a full
                # link would be (asked to stop, say): then the pump's task takes over.
                await link.wait_for_space()
            if not self._busy:
                await self._write_by_call(client, items)
        finally:
            self._left(items[self._taken :])
        if self._taken:
            # The producer waited on Redis: that was not work, so its quantum and the
            # clock stride of its items start afresh, as after any wait.
            pacing.restart()
            pacing.last_check = pacing.now()

    async def _write_by_call(self, client: coredis.Redis[bytes], items: list[Any]) -> None:
        """Write whole entries of ``items`` while the stream has room, counting in
        :attr:`_taken` what was written (or handed to the pump's own task unconfirmed)."""
        batch = self.remote.batch
        while (
            len(items) - self._taken >= batch
            and self._estimate < self.entries
            and self._client is client  # not once the pump ended (see _release)
        ):
            try:
                pieces = self._encoded(items[self._taken : self._taken + batch])
            except RunError:
                return  # the pump's own task meets it again, and fails the run
            if len(pieces) > 1:
                return  # too large for one entry: the pump's own task splits it
            ((payload, count),) = pieces
            entry = _Unconfirmed({b"p": payload}, _Attempt(self._ids.next()), count)
            self._taken += count
            try:
                await self._add(client, entry.fields, entry.attempt)
            except Exception:
                # Redis away or refusing: the pump's own task tries again (under the
                # same id), waits out an outage or fails the run, as it does itself.
                self._returned.append(entry)
                return
            except BaseException:
                self._returned.append(entry)
                raise
            self._estimate += 1
            self.written += count

    def _left(self, unwritten: list[Any]) -> None:
        """A call is over: what it did not write goes back into the link (first: it is
        older than anything sent after it); take the next call, or wake the pump."""
        self._inside = False
        outside, self._outside = self._outside, None
        if outside is not None:
            outside.set()
        if self._client is None:  # the pump has ended: no one writes them any more
            self._drop_returned()
        if unwritten:
            self.link.requeue(unwritten)  # wakes the pump's own task
        elif self._returned:
            self.mailbox.notify()
        self._arm()

    def _encoded(self, batch: list[Any]) -> list[tuple[bytes, int]]:
        """The entries that carry ``batch``: one, unless it is too large to be one."""
        try:
            payload = _encode_batch(batch)
        except SerializationError as exc:
            raise RunError(
                self.link.spec.source,
                f"an item it sent on remote link {self.link.spec.name} cannot cross: {exc}",
            ) from exc
        if len(payload) <= MAX_ENTRY_BYTES or len(batch) == 1:
            return [(payload, len(batch))]
        half = len(batch) // 2
        return [*self._encoded(batch[:half]), *self._encoded(batch[half:])]

    async def _write(
        self, client: coredis.Redis[bytes], retry: Retrying, fields: dict[bytes, bytes]
    ) -> None:
        attempt = _Attempt(self._ids.next())
        await retry(partial(self._add, client, fields, attempt))
        self._estimate += 1

    async def _add(
        self, client: coredis.Redis[bytes], fields: dict[bytes, bytes], attempt: _Attempt
    ) -> None:
        """XADD under the attempt's id; an earlier try of the same id may have been
        written though its reply was lost: Redis then refuses this one as a repeat."""
        attempt.tries += 1
        try:
            await client.xadd(self.stream, fields, identifier=attempt.id)
        except load_coredis().exceptions.ResponseError as exc:
            if _REPEAT not in str(exc):
                raise
            if attempt.tries > 1:
                return  # an earlier try of this entry was written
            # Another run (or a clock behind the stream's) wrote above our ids: go past.
            info = await client.xinfo_stream(self.stream)
            top: str | bytes = info["last-generated-id"]
            top_id = top.encode() if isinstance(top, str) else top
            attempt.id, attempt.tries = self._ids.above(top_id), 0
            await self._add(client, fields, attempt)

    async def _room(self, client: coredis.Redis[bytes], retry: Retrying) -> None:
        """Wait while the stream holds its share of entries (acknowledged entries are
        deleted, so its length is what the group has not finished)."""
        if self._estimate < self.entries:
            return
        while True:
            self._estimate = await retry(lambda: client.xlen(self.stream))
            if self._estimate < self.entries:
                return
            await retry(lambda: group_kept(client, self.stream, self.group, self.link.spec.source))
            await _room_made(self.url, self.stream, self.remote.poll)
