"""Where a graph meets its host program: inlets, outlets and variables.

An :class:`Inlet` is a source the host feeds (``await system.send(name, item)``) and
closes to end its stream (``await system.close(name)``); an :class:`Outlet` is a sink
whose items the host reads (``async for item in system.receive(name)``). Both are
bounded, so the host gets backpressure like any actor: ``send`` waits while the inlet's
buffer is full, and a host that reads slowly slows the graph instead of growing memory.
A :class:`Variable` is an inlet that remembers its last value.

Their channels belong to the actor, not to one incarnation of the module: a restart
(the supervisor rebuilding the module) keeps what the inlet holds and the host's
readers of an outlet. What is left when the actor ends for good is counted as dropped,
with its reason, never lost silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import outcome
import trio

from ._module import ModuleContext, Sink, Source
from ._ports import Port
from ._status import DropReason

__all__ = ["Inlet", "Outlet", "OutletReader", "Variable"]


def _check_buffer(buffer: int) -> int:
    if buffer < 1:
        raise ValueError(f"buffer must be at least 1, got {buffer}")
    return buffer


_Channel = TypeVar("_Channel", "_InletChannel", "_OutletChannel")


def _kept(actor: ModuleContext, key: str, make: type[_Channel], buffer: int) -> _Channel:
    """The actor's channel under ``key``, made on first use and ended with the actor
    (not with one incarnation of its module); made after that end, it is ended at once."""
    channel = actor.keep.get(key)
    if channel is None:
        channel = actor.keep[key] = make(actor, buffer)
        if actor.terminated:
            channel.end()
        else:
            actor.at_end.append(channel.end)
    assert isinstance(channel, make)
    return channel


class _InletChannel:
    """An inlet's queue, kept by its actor across restarts.

    Its memory channel is opened when the host first sends: until then the inlet waits
    without one, since a channel and a receive parked on it cost ~3 KB and 12 µs, most
    of what an idle inlet costs. Closed before anything was sent, it never opens one.
    """

    __slots__ = ("_closed", "_pair", "_waiter", "actor", "backlog", "buffer")

    def __init__(self, actor: ModuleContext, buffer: int) -> None:
        self.actor = actor
        self.buffer = buffer
        self.backlog = 0
        """Items the host is sending or has sent that were not emitted yet (an item
        the inlet's task holds between its queue and its link counts too)."""
        self._pair: tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]] | None
        self._pair = None
        self._closed = False
        """Closed for sending before the channel was opened."""
        self._waiter: trio.lowlevel.Task | None = None
        """The inlet's task, waiting for the channel to open (or the inlet to close)."""

    @property
    def send(self) -> trio.MemorySendChannel[Any]:
        """The host's end, opened on first use (closed at once if the inlet was)."""
        pair = self._pair
        if pair is None:
            pair = self._pair = trio.open_memory_channel[Any](self.buffer)
            if self._closed:
                pair[0].close()
            self._wake()
        return pair[0]

    def close_sending(self) -> None:
        """No more sends; what was sent is still received, then the end of stream."""
        if self._pair is None:
            self._closed = True
            self._wake()
        else:
            self._pair[0].close()

    async def receiving(self) -> trio.MemoryReceiveChannel[Any] | None:
        """The inlet's end, once the host has sent something; ``None`` if the inlet was
        closed before that (its stream is empty) or :meth:`interrupt` ended the wait."""
        while self._pair is None:
            if self._closed:
                return None
            assert self._waiter is None, "one incarnation of an inlet receives at a time"
            self._waiter = trio.lowlevel.current_task()
            if not await trio.lowlevel.wait_task_rescheduled(self._abort_wait):
                return None
        return self._pair[1]

    def interrupt(self) -> None:
        """End the inlet's wait for its first item, if it waits (its incarnation stops)."""
        self._wake(go_on=False)

    def _wake(self, *, go_on: bool = True) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter, outcome.Value(go_on))

    def _abort_wait(self, raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def end(self) -> None:
        """The actor has ended for good: refuse more sends, count what never went out."""
        self.backlog = 0  # nothing waits to be emitted any more
        if self._pair is None:
            self._closed = True  # nothing was ever sent: nothing is left
            self._wake()
            return
        send, receive = self._pair
        send.close()
        left = 0
        while True:
            try:
                receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            left += 1
        receive.close()
        if left:
            self.actor.count_drop(left, DropReason.SHUTDOWN)
            self.actor.log.warning(
                "actor.dropped", port="out", reason=DropReason.SHUTDOWN, count=left
            )


class Inlet(Source):
    """A source fed by the host program: every item sent is emitted, in order.

    The stream ends when the host closes the inlet or the system is stopped gracefully;
    a graph with an open inlet does not end by itself. Items sent but not yet emitted
    when the inlet ends for good (the system was cancelled, say) are counted as dropped
    (``"shutdown"``).

    Its output port carries ``typing.Any`` (the host decides what it sends), so it links
    to any input; subclass it with a typed ``outputs`` to have the graph checked.

    Args:
        buffer: How many sent items may wait to be emitted before ``send`` waits.
    """

    outputs: ClassVar[Mapping[str, Port | Any]] = {"out": Port(Any)}
    _what: ClassVar[str] = "inlet"

    def __init__(self, buffer: int = 16) -> None:
        self._buffer = _check_buffer(buffer)

    def _channel(self) -> _InletChannel:
        return _kept(self._bound(), "inlet", _InletChannel, self._buffer)

    async def start(self) -> None:
        # Until the host first sends, the inlet waits without a cancel scope (stop()
        # interrupts that wait): most inlets of a large idle graph never get one.
        receive = await self._channel().receiving()
        if receive is None or self._stop_asked:
            # Closed, interrupted, or stopped after the first send woke it but before
            # it ran (the wake-up said "go on"; the stop came later).
            return
        with trio.CancelScope() as self._incarnation:
            while True:
                try:
                    item = await receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return
                try:
                    await self.emit(self._received(item))
                finally:
                    self._channel().backlog -= 1

    def _received(self, item: Any) -> Any:
        return item

    def backlog(self) -> int:
        """How many items the host sent, or is sending, that were not emitted yet
        (what interaction priority sees of an inlet)."""
        return max(0, self._channel().backlog)  # below 0: sends refused after the end

    async def send(self, item: Any) -> None:
        """Queue ``item`` to be emitted; waits while the buffer is full.

        Raises:
            RuntimeError: The inlet was closed or has stopped.
        """
        channel = self._channel()
        channel.backlog += 1
        sent = False
        try:
            await channel.send.send(item)
            sent = True
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise RuntimeError(f"{self._what} {self.name!r} has stopped") from None
        finally:
            if not sent:
                channel.backlog -= 1

    async def close(self) -> None:
        """End the stream: what was sent before is still emitted, then end of stream."""
        self._channel().close_sending()
        await trio.lowlevel.checkpoint()

    def stop(self) -> None:
        if self._bound().retired:
            # The system stops gracefully: no more sends; what was sent still goes out.
            self._channel().close_sending()
        elif self._incarnation is not None:
            # A restart: this incarnation stops; the queue waits for the next one.
            self._incarnation.cancel()
        else:
            self._stop_asked = True
            self._channel().interrupt()  # the same, while it waits for its first item

    _incarnation: trio.CancelScope | None = None
    _stop_asked: bool = False


class _Unset:
    """No initial value (shown as such in signatures and the API reference)."""

    def __repr__(self) -> str:
        return "<no initial value>"


_UNSET: Any = _Unset()


class Variable(Inlet):
    """A value that the host program sets while the graph runs; every set emits the new
    value downstream, in order.

    Set it with ``await system.set(name, value)`` (or ``await module.set(value)``). A
    variable ends when the system is stopped gracefully, like any source.

    Args:
        initial: Emitted when the variable starts, if given.
        pending: How many sets may wait to be emitted before ``set()`` waits too.
    """

    _what = "variable"

    def __init__(self, initial: Any = _UNSET, pending: int = 16) -> None:
        super().__init__(buffer=pending)
        self.value = None if initial is _UNSET else initial
        self._initial = initial

    async def start(self) -> None:
        if self._initial is not _UNSET:
            await self.emit(self._initial)
        await super().start()

    def _received(self, item: Any) -> Any:
        self.value = item
        return item

    async def set(self, value: Any) -> None:
        """Queue ``value`` to be emitted; waits while ``pending`` sets are queued.

        Raises:
            RuntimeError: The variable has stopped.
        """
        await self.send(value)


class _OutletChannel:
    """An outlet's queue and its readers, kept by its actor across restarts."""

    def __init__(self, actor: ModuleContext, buffer: int) -> None:
        self.actor = actor
        self.send, self.items = trio.open_memory_channel[Any](buffer)
        self.open: set[trio.MemoryReceiveChannel[Any]] = set()
        """The open readers' channels; when the last one closes, the outlet drops."""
        self.abandoned = False
        self.reason = DropReason.NO_READER
        self.warned = False

    def reader(self, name: str) -> OutletReader:
        if self.abandoned:
            raise RuntimeError(
                f"outlet {name!r}: every reader has closed and its items are being "
                "dropped; open a new reader before closing the last one"
            )
        # The first reader takes over the outlet's own channel; later ones clone an open
        # one, so that the channel closes exactly when the last reader does.
        channel = next(iter(self.open)).clone() if self.open else self.items
        self.open.add(channel)
        return OutletReader(self, channel)

    async def put(self, item: Any) -> None:
        try:
            await self.send.send(item)
        except trio.BrokenResourceError:
            self.lost(1)

    def lost(self, count: int) -> None:
        """Count ``count`` items nobody will read, with one warning per reason."""
        if count:
            self.actor.count_drop(count, self.reason)
            if not self.warned:
                self.warned = True
                self.actor.log.warning("actor.dropped", port="in", reason=self.reason, count=count)

    def reader_closed(self, channel: trio.MemoryReceiveChannel[Any]) -> None:
        self.open.discard(channel)
        if not self.open:
            # The last reader: what it left behind goes nowhere; count it.
            self.abandoned = True
            self.lost(channel.statistics().current_buffer_used)
        channel.close()

    def unread(self) -> None:
        """The host can read no more: count what waits and everything that comes."""
        if self.reason == DropReason.UNREAD:
            return
        self.reason, self.warned = DropReason.UNREAD, False
        waiting = next(iter(self.open), self.items)
        self.abandoned = True
        self.lost(waiting.statistics().current_buffer_used)
        for channel in [*self.open, self.items]:
            channel.close()
        self.open.clear()

    def end(self) -> None:
        """The actor has ended for good: the readers' iteration ends after the last item."""
        self.send.close()


class Outlet(Sink):
    """A sink whose items the host program reads: ``async with system.receive(name) as
    items: async for item in items``. Iteration ends after the last item, once the
    outlet's inputs have ended.

    Until a reader comes, items wait in the buffer and then the graph waits for one
    (backpressure). Once every reader has closed, the items it left in the buffer and
    every later item are counted as dropped (``"no_reader"``) with one warning, so a host
    that stops listening never stalls the graph and nothing is lost silently.

    Args:
        buffer: How many items may wait for the host before the outlet waits too
            (and, through backpressure, the graph upstream of it).
    """

    def __init__(self, buffer: int = 16) -> None:
        self._buffer = _check_buffer(buffer)

    def _channel(self) -> _OutletChannel:
        return _kept(self._bound(), "outlet", _OutletChannel, self._buffer)

    def reader(self) -> OutletReader:
        """A new reader of the outlet's items (readers share them: each item goes to
        one reader); close it when done reading.

        Raises:
            RuntimeError: Every earlier reader has closed: the outlet is dropping items.
        """
        return self._channel().reader(self.name)

    async def consume(self, data: Any) -> None:
        await self._channel().put(data)

    def _unread(self) -> None:
        self._channel().unread()


class OutletReader:
    """Reads an :class:`Outlet`'s items: ``async for item in reader``, or
    :meth:`receive` / :meth:`receive_batch`. Close it (or use ``async with``) when done."""

    def __init__(self, outlet: _OutletChannel, channel: trio.MemoryReceiveChannel[Any]) -> None:
        self._outlet = outlet
        self._channel = channel
        self._closed = False

    async def receive(self) -> Any:
        """The next item; waits for one.

        Raises:
            trio.EndOfChannel: The outlet's inputs have ended and every item was read.
        """
        return await self._channel.receive()

    async def receive_batch(self, limit: int = 256) -> list[Any]:
        """The next items, at least one and at most ``limit``, waiting for the first;
        empty once the outlet has ended and everything was read."""
        try:
            batch = [await self._channel.receive()]
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return []
        while len(batch) < limit:
            try:
                batch.append(self._channel.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        return batch

    def close(self) -> None:
        """Stop reading. Closing the last reader counts what is left as dropped."""
        if not self._closed:
            self._closed = True
            self._outlet.reader_closed(self._channel)

    def _give_up(self, taken: int) -> None:
        """Close, counting ``taken`` items that were received but never handed on."""
        self._outlet.lost(taken)
        self.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __aiter__(self) -> OutletReader:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> OutletReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def give_up(reader: OutletReader, taken: int) -> None:
    """Close ``reader``, counting ``taken`` items it received but never handed on (the
    asyncio host's reader, when its loop can take no more)."""
    reader._give_up(taken)


def count_unread(outlet: Outlet) -> None:
    """The host can read no more: ``outlet`` counts what waits, and what comes, as unread."""
    outlet._unread()
