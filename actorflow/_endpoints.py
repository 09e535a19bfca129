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

__all__ = ["Inlet", "Outlet", "Variable"]


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
    """A sink whose items the host program reads: ``async for item in
    system.receive(name)``. The host's iteration ends after the last item, when the
    outlet's inputs have ended.

    Until a reader comes, items wait in the buffer and then the graph waits for one
    (backpressure). Once every reader has closed, items are counted as dropped
    (``"no_reader"``) and logged once, so a host that stops listening never stalls the
    graph and nothing is lost silently.

    Args:
        buffer: How many items may wait for the host before the outlet waits too
            (and, through backpressure, the graph upstream of it).
    """

    def __init__(self, buffer: int = 16) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        self._send, self._items = trio.open_memory_channel[Any](buffer)
        self._readers = 0
        self._warned = False

    def reader(self) -> trio.MemoryReceiveChannel[Any]:
        """A new reader of the outlet's items (readers share them, each item goes to
        one); close it when done reading."""
        reader = self._items.clone()
        self._readers += 1
        if self._readers == 1:
            self._items.close()  # from now on, the readers alone keep the outlet open
        return reader

    async def consume(self, data: Any) -> None:
        try:
            await self._send.send(data)
        except trio.BrokenResourceError:
            actor = self._bound()
            actor._drop(1, "no_reader")
            if not self._warned:
                self._warned = True
                self.log.warning("actor.dropped", port="in", reason="no_reader", count=1)

    def cleanup(self) -> None:
        self._send.close()
