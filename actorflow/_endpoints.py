"""Where a graph meets its host program: inlets, outlets and variables.

An :class:`Inlet` is a source the host feeds (``await system.send(name, item)``) and
closes to end its stream (``await system.close(name)``); an :class:`Outlet` is a sink
whose items the host reads (``async for item in system.receive(name)``). Both are
bounded, so the host gets backpressure like any actor: ``send`` waits while the inlet's
buffer is full, and a host that reads slowly slows the graph instead of growing memory.
A :class:`Variable` is an inlet that remembers its last value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import trio

from ._module import Sink, Source
from ._ports import Port

__all__ = ["Inlet", "Outlet", "OutletReader", "Variable"]


class Inlet(Source):
    """A source fed by the host program: every item sent is emitted, in order.

    The stream ends when the host closes the inlet or the system is stopped gracefully;
    a graph with an open inlet does not end by itself.

    Its output port carries ``typing.Any`` (the host decides what it sends), so it links
    to any input; subclass it with a typed ``outputs`` to have the graph checked.

    Args:
        buffer: How many sent items may wait to be emitted before ``send`` waits.
    """

    outputs: ClassVar[Mapping[str, Port | Any]] = {"out": Port(Any)}

    def __init__(self, buffer: int = 16) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        self._send, self._receive = trio.open_memory_channel[Any](buffer)

    async def start(self) -> None:
        async with self._receive:
            async for item in self._receive:
                await self.emit(self._received(item))

    def _received(self, item: Any) -> Any:
        return item

    async def send(self, item: Any) -> None:
        """Queue ``item`` to be emitted; waits while the buffer is full.

        Raises:
            RuntimeError: The inlet was closed or has stopped.
        """
        try:
            await self._send.send(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise RuntimeError(f"{self._what} {self.name!r} has stopped") from None

    async def close(self) -> None:
        """End the stream: what was sent before is still emitted, then end of stream."""
        await self._send.aclose()

    def stop(self) -> None:
        self._send.close()

    _what: ClassVar[str] = "inlet"


_UNSET: Any = object()


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
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        self._send, self._items = trio.open_memory_channel[Any](buffer)
        self._open: set[trio.MemoryReceiveChannel[Any]] = set()
        """The open readers' channels; when the last one closes, the outlet drops."""
        self._abandoned = False
        self._warned = False

    def reader(self) -> OutletReader:
        """A new reader of the outlet's items (readers share them: each item goes to
        one reader); close it when done reading.

        Raises:
            RuntimeError: Every earlier reader has closed: the outlet is dropping items.
        """
        if self._abandoned:
            raise RuntimeError(
                f"outlet {self.name!r}: every reader has closed and its items are being "
                "dropped; open a new reader before closing the last one"
            )
        # The first reader takes over the outlet's own channel; later ones clone an open
        # one, so that the channel closes exactly when the last reader does.
        channel = next(iter(self._open)).clone() if self._open else self._items
        self._open.add(channel)
        return OutletReader(self, channel)

    async def consume(self, data: Any) -> None:
        try:
            await self._send.send(data)
        except trio.BrokenResourceError:
            self._lost(1)

    def _lost(self, count: int) -> None:
        if count:
            self._bound()._drop(count, "no_reader")
            if not self._warned:
                self._warned = True
                self.log.warning("actor.dropped", port="in", reason="no_reader", count=count)

    def _reader_closed(self, channel: trio.MemoryReceiveChannel[Any]) -> None:
        self._open.discard(channel)
        if not self._open:
            # The last reader: what it left behind goes nowhere; count it.
            self._abandoned = True
            self._lost(channel.statistics().current_buffer_used)
        channel.close()

    def _unread(self) -> None:
        """The host can read no more (its asyncio block has ended): count what waits."""
        if self._abandoned:
            return
        self._abandoned = True
        channel = next(iter(self._open), self._items)
        count = channel.statistics().current_buffer_used
        if count:
            self._bound()._drop(count, "unread")
            self.log.warning("actor.dropped", port="in", reason="unread", count=count)
        for reader in [*self._open, self._items]:
            reader.close()
        self._open.clear()

    def cleanup(self) -> None:
        self._send.close()


class OutletReader:
    """Reads an :class:`Outlet`'s items: ``async for item in reader``, or
    :meth:`receive` / :meth:`receive_batch`. Close it (or use ``async with``) when done."""

    def __init__(self, outlet: Outlet, channel: trio.MemoryReceiveChannel[Any]) -> None:
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
        except trio.EndOfChannel:
            return []
        while len(batch) < limit:
            try:
                batch.append(self._channel.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    def close(self) -> None:
        """Stop reading. Closing the last reader counts what is left as dropped."""
        if not self._closed:
            self._closed = True
            self._outlet._reader_closed(self._channel)

    def _give_up(self, taken: int) -> None:
        """Close, counting ``taken`` items that were received but never handed on."""
        self._outlet._lost(taken)
        self.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __aiter__(self) -> OutletReader:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._channel.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> OutletReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
