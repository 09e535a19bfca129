"""The source driver: call ``start()`` once and send what it produces.

``start()`` may return a sync iterable (pulled in batches that fit both the quantum and
the room downstream, so a stopped source holds nothing back), an async iterable, or
``None`` after emitting itself; a blocking module's generator is pulled in a worker
thread. A source with a ``retry_interval`` tries again while it is active.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import Any

import trio

from .._exceptions import RunError, describe
from .._hooks import HookStyle, hook_style
from .._lifecycle import is_default
from .._link import Link
from .._status import ActorState, EndReason
from ._incarnation import Incarnation, Stop
from ._room import Room

__all__ = ["SourceDriver", "stop_source"]


async def stop_source(room: Room, incarnation: Incarnation) -> None:
    """Ask an active source to stop: ``active`` turns false and ``stop()`` runs once."""
    if incarnation.stop_requested or room.state.is_final or room.state is ActorState.ZOMBIE:
        return
    incarnation.stop_source()
    room.mailbox.notify()
    room.outbox.wake()
    room.log.info("actor.stopping")
    stop = room.module.stop  # type: ignore[attr-defined]
    if is_default(stop):
        return
    try:
        await room.lifecycle(stop)
    except Exception as exc:
        room.errors += 1
        room.log.error("actor.stop_failed", error=describe(exc), exc_info=exc)


def _start_failed(room: Room, exc: Exception) -> RunError:
    """The one error for a ``start()`` that raised (directly or while iterated)."""
    error = RunError(room.name, f"start() raised {describe(exc)}")
    error.__cause__ = exc
    return error


class SourceDriver:
    """Runs one incarnation of a source."""

    __slots__ = ("incarnation", "room")

    def __init__(self, room: Room, incarnation: Incarnation) -> None:
        self.room = room
        self.incarnation = incarnation

    def link_added(self, link: Link) -> None:
        """Nothing to do: every link is read where it is needed."""

    async def run(self) -> None:
        """Produce (trying again while a source with a ``retry_interval`` is active),
        in a scope a graceful stop may put a deadline on. One frame, not two: an idle
        source waits in here, and every frame costs it memory."""
        room, incarnation = self.room, self.incarnation
        if room.system_stopping():
            # Started (restarted) after a graceful stop: nothing more to produce.
            incarnation.active = False
            incarnation.reason = EndReason.STOPPED
            return
        retry_interval = getattr(room.module, "retry_interval", None)
        attempt = 0
        with trio.CancelScope() as scope:
            incarnation.produce_scope = scope
            room.set_state(ActorState.RUNNING)
            while True:
                try:
                    await self._produce()
                    room.mark_ready()
                    break
                except RunError as error:
                    if retry_interval is None or not incarnation.active:
                        raise
                    attempt += 1
                    await self._wait_to_retry(error, attempt, retry_interval)
                    if incarnation.stop_requested:
                        break
                    room.set_state(ActorState.RUNNING)
        incarnation.produce_scope = None
        if scope.cancelled_caught:
            incarnation.reason = EndReason.KILLED
            room.log.warning("actor.killed", timeout=room.settings.stop_timeout)
        elif incarnation.stop_requested:
            incarnation.reason = EndReason.STOPPED

    async def _wait_to_retry(self, error: RunError, attempt: int, interval: float) -> None:
        """A source with a retry interval tries again while it is active; the
        supervisor only hears of it if it gives up."""
        room = self.room
        room.errors += 1
        room.log.warning(
            "actor.retrying",
            attempt=attempt,
            retry_in=interval,
            error=describe(error.__cause__ or error),
        )
        room.set_state(ActorState.BLOCKED, blocked_on="retry")
        with trio.move_on_after(interval):
            await self.incarnation.wait_stopped()

    async def _produce(self) -> None:
        """Call ``start()`` once and send what it produces."""
        room = self.room
        module: Any = room.module
        start = module.start
        try:
            if module.blocking and hook_style(start) is HookStyle.SYNC:
                produced = await room.lifecycle(start)
            else:
                # Called here rather than through room.lifecycle: an idle source waits
                # inside start(), and every frame between costs it memory.
                produced = start()
                if inspect.isawaitable(produced):
                    produced = await produced
        except Stop:
            raise  # a stop while start() emitted: not the module's failure
        except Exception as exc:
            raise _start_failed(room, exc) from exc
        if produced is None:
            room.mark_ready()
            return
        outbox = room.outbox
        if outbox.main not in outbox.outputs:
            _close(produced)
            known = ", ".join(repr(port) for port in outbox.outputs) or "none"
            raise RunError(
                room.name,
                f"start() produced items, which go to the main output port ('out' or the "
                f"only one), but there is none (output ports: {known}): name a port "
                "'out', or send with `await self.emit(item, port)` and return None",
            )
        if hasattr(produced, "__aiter__"):
            await self._pull_async(produced)
        elif hasattr(produced, "__iter__"):
            if module.blocking:
                await self._pull_threaded(iter(produced))
            else:
                await self._pull_sync(iter(produced))
        else:
            raise RunError(
                room.name,
                f"start() returned {type(produced).__name__}; expected an iterable, an "
                "async iterable, or None (after emitting with `await self.emit(...)`)",
            )

    async def _room_out(self) -> int:
        """How many items to pull next: the room in the fullest ``out`` link (at most
        ``max_batch``), waiting while there is none (0: stopping)."""
        room, incarnation = self.room, self.incarnation
        max_batch = room.settings.max_batch
        # A link that drops instead of blocking always has room.
        links = [
            link for link in room.outbox.outputs.get(room.outbox.main, ()) if not link.never_blocks
        ]
        if not links:
            return max_batch
        while incarnation.active and not incarnation.stopping:
            direct = links[0].direct
            if len(links) == 1 and direct is not None and not links[0].items:
                # Fused: what is pulled is handled by call, or handed back into the link
                # if the consumer stops midway; no more than the buffers the call passes
                # through would hold, so they bound how far a fused source runs ahead as
                # they do unfused (``max_batch`` caps what one link alone takes).
                reach = direct.reach()
                return reach if reach > links[0].capacity else min(reach, max_batch)
            fullest = min(links, key=lambda link: link.capacity - len(link.items))
            free = fullest.capacity - len(fullest.items)
            if free > 0 or fullest.receiver_closed:
                return min(max(free, 1), max_batch)
            room.set_state(ActorState.BLOCKED, blocked_on="output:out")
            await fullest.wait_for_space()
            room.set_state(ActorState.RUNNING)
        return 0

    async def _pull_sync(self, iterator: Iterator[Any]) -> None:
        """Pull from a generator no more than the output links can take right now, so a
        stopped source holds nothing back, and send it."""
        room, incarnation = self.room, self.incarnation
        pacing, outbox = room.pacing, room.outbox
        try:
            while incarnation.active:
                limit = await self._room_out()
                if not limit:
                    return
                batch: list[Any] = []
                extend = batch.extend
                try:
                    for size in pacing.strides(limit):
                        before = len(batch)
                        extend(islice(iterator, size))
                        if len(batch) - before < size:
                            # Exhausted: the next pull finds it empty.
                            pacing.partial = len(batch) - before
                            break
                except Exception as exc:
                    # What it produced before failing is valid: it goes out first.
                    outbox.owe(batch, outbox.main)
                    raise _start_failed(room, exc) from exc
                if not batch:
                    return
                await outbox.send(batch, outbox.main)
                if pacing.spent(pacing.deadline):  # also adapts the stride
                    await pacing.yield_()
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _pull_threaded(self, iterator: Iterator[Any]) -> None:
        """A blocking module's generator: each item is pulled in a worker thread."""
        room, incarnation = self.room, self.incarnation
        pacing = room.pacing
        end = object()
        generator = _ThreadedIterator(iterator, end)
        try:
            while incarnation.active:
                began = pacing.now() if pacing.timings is not None else 0.0
                try:
                    item = await room.in_thread(generator.pull)
                except Exception as exc:
                    raise _start_failed(room, exc) from exc
                if item is end:
                    return
                if pacing.timings is not None:  # item by item, the thread included
                    pacing.timings.observe(pacing.now() - began, 1)
                await room.emit(item)
        finally:
            generator.close()

    async def _pull_async(self, iterator: AsyncIterator[Any]) -> None:
        room, incarnation = self.room, self.incarnation
        pacing = room.pacing
        try:
            while incarnation.active:
                began = pacing.now() if pacing.timings is not None else 0.0
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise _start_failed(room, exc) from exc
                if pacing.timings is not None:  # item by item, its awaits included
                    pacing.timings.observe(pacing.now() - began, 1)
                await room.emit(item)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()


def _close(produced: Any) -> None:
    """Close a generator that will not be pulled (an async one is left to the
    collector: closing it needs the event loop and it never ran)."""
    close = getattr(produced, "close", None)
    if close is not None and inspect.isgenerator(produced):
        close()


class _ThreadedIterator:
    """An iterator advanced in worker threads and closed from the event loop.

    A cancelled pull is abandoned and keeps running in its thread; closing the
    generator then would fail with "generator already executing". The close waits
    for nothing: whichever side sees the iterator idle last closes it (closing twice
    is harmless), so it is closed after the last pull and before ``cleanup()``, which
    waits for abandoned calls.
    """

    __slots__ = ("_close_requested", "_end", "_iterator", "_lock")

    def __init__(self, iterator: Iterator[Any], end: object) -> None:
        self._iterator = iterator
        self._end = end
        self._lock = threading.Lock()
        self._close_requested = threading.Event()

    def pull(self) -> Any:
        """The next item, or ``end``; in a worker thread."""
        with self._lock:
            if self._close_requested.is_set():
                return self._end
            try:
                return next(self._iterator, self._end)
            finally:
                if self._close_requested.is_set():
                    self._close()

    def close(self) -> None:
        """Close now if no pull is running, else have the running pull close it."""
        self._close_requested.set()
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
