"""Hosting a system inside a running asyncio loop, through trio's guest mode.

Trio runs as a *guest* of the asyncio loop (``trio.lowlevel.start_guest_run``): both
loops share the thread, asyncio stays in charge of it, and trio's I/O waits happen in a
helper thread trio manages. Every call from the asyncio side into the system crosses
through the run's :class:`trio.lowlevel.TrioToken` (``run_sync_soon``), and every answer
comes back through ``loop.call_soon_threadsafe``: the two documented doors, nothing else.

The guest run lives exactly as long as the ``async with`` block of :func:`open_system`,
so what an outlet still holds after the system ended can be read inside the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs
import outcome
import trio

from ._endpoints import Outlet
from ._graph import Graph
from ._heartbeat import Reporter
from ._settings import Settings
from ._status import SystemState, SystemStatus
from ._store import Store
from ._system import System, _single
from ._system import open_system as _open_trio_system

__all__ = ["AioSystem", "SystemEndedError", "open_system", "run"]

T = TypeVar("T")

_hosting: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
"""Loops that host a guest run of ours: trio allows one guest run per host loop."""


class SystemEndedError(RuntimeError):
    """A call reached a system whose run had already ended."""


def _settle(
    future: asyncio.Future[T],
    result: outcome.Outcome[T],
    orphan: Callable[[T], object] | None = None,
) -> None:
    """Give ``result`` to ``future``; if its awaiting task was cancelled meanwhile, hand
    a value to ``orphan`` instead (so items taken for it are counted, not lost)."""
    if future.cancelled() and orphan is not None and isinstance(result, outcome.Value):
        orphan(result.value)
    if not future.done():
        if isinstance(result, outcome.Error):
            future.set_exception(result.error)
        else:
            future.set_result(result.unwrap())


@attrs.define(eq=False)
class AioSystem:
    """The asyncio side of a running system: every method is called from asyncio code.

    Errors inside the graph reach the awaiting asyncio task as the same exceptions a
    trio host gets (``RunError``, ``EscalationError``, ``CleanupError``, ...).
    """

    _loop: asyncio.AbstractEventLoop
    _token: trio.lowlevel.TrioToken
    _system: System
    _calls: trio.Nursery
    _release: trio.Event
    _finished: asyncio.Future[SystemStatus]
    _ended: asyncio.Future[None]

    # -- crossing the border -----------------------------------------------------------

    def _run_soon(self, fn: Callable[[], object]) -> bool:
        """Schedule ``fn`` in trio; False if the run is already over."""
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            return False
        return True

    async def _call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        orphan: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``await fn(*args)`` in trio; a cancelled asyncio caller cancels it there.

        ``orphan`` receives the result if it arrives after the caller was cancelled.
        """
        answer: asyncio.Future[T] = self._loop.create_future()
        scope = trio.CancelScope()

        async def in_trio() -> None:
            result: outcome.Outcome[T] = outcome.Error(
                SystemEndedError("the system ended before the call completed")
            )
            try:
                with scope:
                    result = await outcome.acapture(fn, *args)
            finally:
                self._loop.call_soon_threadsafe(_settle, answer, result, orphan)

        def start() -> None:
            try:
                self._calls.start_soon(in_trio)
            except RuntimeError:  # the nursery has closed: the system is ending
                _settle(answer, outcome.Error(SystemEndedError("the system has ended")))

        if not self._run_soon(start):
            raise SystemEndedError("the system has ended")
        try:
            return await answer
        except asyncio.CancelledError:
            self._run_soon(scope.cancel)
            raise

    async def _call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in trio (between its tasks) and return the result."""
        answer: asyncio.Future[T] = self._loop.create_future()

        def in_trio() -> None:
            result = outcome.capture(fn, *args)
            self._loop.call_soon_threadsafe(_settle, answer, result)

        if not self._run_soon(in_trio):
            raise SystemEndedError("the system has ended")
        return await answer

    # -- the API -----------------------------------------------------------------------

    async def send(self, name: str, item: Any) -> None:
        """Send ``item`` into the :class:`~actorflow.Inlet` ``name``; waits while its
        buffer is full (see :meth:`System.send`)."""
        await self._call(self._system.send, name, item)

    async def close(self, name: str) -> None:
        """Close the :class:`~actorflow.Inlet` ``name`` (see :meth:`System.close`)."""
        await self._call(self._system.close, name)

    async def set(self, name: str, value: Any) -> None:
        """Set the :class:`~actorflow.Variable` ``name`` (see :meth:`System.set`)."""
        await self._call(self._system.set, name, value)

    async def receive(self, name: str, *, batch: int = 256) -> AsyncIterator[Any]:
        """Iterate over the items of the :class:`~actorflow.Outlet` ``name``, until its
        inputs have ended. Items cross to asyncio up to ``batch`` at a time; if the
        iteration stops early, the items fetched but not yielded are counted as
        dropped (``"no_reader"``), never lost silently."""
        reader = await self._call_sync(self._system.receive, name)

        def lost(items: list[Any]) -> None:
            self._run_soon(lambda: reader._give_up(len(items)))

        waiting: list[Any] = []
        try:
            while True:
                waiting = await self._call(reader.receive_batch, batch, orphan=lost)
                if not waiting:
                    return
                waiting.reverse()
                while waiting:
                    yield waiting.pop()
        finally:
            unread = len(waiting)
            self._run_soon(lambda: reader._give_up(unread))

    async def status(self) -> SystemStatus:
        """A snapshot of every actor and link (see :meth:`System.status`); after the
        block of :func:`open_system` has ended, the final one."""
        if self._finished.done():
            return self._finished.result()
        return await self._call_sync(self._system.status)

    async def stop(self) -> None:
        """Stop gracefully: sources stop, everything in flight drains (see
        :meth:`System.stop`)."""
        await self._call(self._system.stop)

    def cancel(self) -> None:
        """Stop at once, with cleanups (see :meth:`System.cancel`)."""
        self._run_soon(self._system.cancel)

    async def wait(self) -> None:
        """Wait until every actor has ended, or raise the error the system failed with.

        Outlets can still be read afterwards, inside the block.
        """
        await asyncio.shield(self._ended)


async def _watch_end(
    system: System, loop: asyncio.AbstractEventLoop, ended: asyncio.Future[None]
) -> None:
    await system.wait()
    if system.status().state is not SystemState.FAILED:  # a failure comes with the outcome
        loop.call_soon_threadsafe(_settle, ended, outcome.Value(None))


def _count_unread(system: System) -> None:
    """Items still in outlets when the guest run ends can no longer be read: count them."""
    for name in system.actors:
        module = system._actor_named(name).module
        if isinstance(module, Outlet):
            module._unread()


@contextlib.asynccontextmanager
async def open_system(
    graph: Graph,
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    reporters: Sequence[Reporter] = (),
    **overrides: Any,
) -> AsyncIterator[AioSystem]:
    """Run ``graph`` inside the running asyncio loop for the duration of the block.

    The asyncio twin of :func:`actorflow.open_system`, with the same arguments and
    errors: leaving the block waits until the system has ended by itself (or was
    stopped); an exception in the block, including the ``CancelledError`` of a
    cancelled task or of Ctrl-C under ``asyncio.run``, cancels the system, waits for
    every cleanup, and is re-raised.

    Raises:
        RuntimeError: This loop already hosts a system (trio allows one guest run per
            loop): run several graphs in one system, or in one ``open_system`` each,
            one after the other.
    """
    loop = asyncio.get_running_loop()
    if loop in _hosting:
        raise RuntimeError(
            "this asyncio loop already hosts an actorflow system (trio allows one guest "
            "run per host loop); leave the first open_system() block before opening "
            "another"
        )
    started: asyncio.Future[AioSystem] = loop.create_future()
    finished: asyncio.Future[SystemStatus] = loop.create_future()
    ended: asyncio.Future[None] = loop.create_future()
    # Awaited only if the host calls wait(): mark its error as seen, so asyncio does
    # not report it as never retrieved (it is raised when the block ends anyway).
    ended.add_done_callback(lambda future: future.cancelled() or future.exception())
    release = trio.Event()

    async def trio_main() -> SystemStatus:
        try:
            # The nursery serving the host's calls is outside the system, so the calls
            # go on until the system has ended (a reader draining an outlet may be what
            # lets it end), and a failing system never leaks a Cancelled into them.
            async with trio.open_nursery() as calls:
                async with _open_trio_system(
                    graph, settings, store=store, reporters=reporters, **overrides
                ) as system:
                    calls.start_soon(_watch_end, system, loop, ended)
                    host = AioSystem(
                        loop,
                        trio.lowlevel.current_trio_token(),
                        system,
                        calls,
                        release,
                        finished,
                        ended,
                    )
                    loop.call_soon_threadsafe(_settle, started, outcome.Value(host))
                    await release.wait()  # the host's block has ended
                    await system.wait()
                    _count_unread(system)
                calls.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            single = _single(group)
            if single is None:
                raise
            raise single from None
        return system.status()

    def done(result: outcome.Outcome[SystemStatus]) -> None:
        _hosting.discard(loop)
        if isinstance(result, outcome.Error):  # e.g. the graph was invalid: never started
            _settle(started, outcome.Error(result.error))
            _settle(ended, outcome.Error(result.error))
        else:
            _settle(ended, outcome.Value(None))
        _settle(finished, result)

    _hosting.add(loop)
    try:
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=done,
            # asyncio owns signal.set_wakeup_fd (and, under asyncio.run, SIGINT).
            host_uses_signal_set_wakeup_fd=True,
        )
    except BaseException:
        _hosting.discard(loop)
        raise
    try:
        host = await asyncio.shield(started)
    except asyncio.CancelledError:
        await _finish_despite_cancellation(finished, cancel=None)
        raise
    try:
        yield host
    except BaseException as exc:
        host.cancel()
        host._run_soon(release.set)
        try:
            await _finish_despite_cancellation(finished, cancel=None)
        except Exception as error:
            exc.add_note(f"the system also failed: {error}")
        raise
    host._run_soon(release.set)
    await _finish_despite_cancellation(finished, cancel=host)


async def _finish_despite_cancellation(
    finished: asyncio.Future[SystemStatus], cancel: AioSystem | None
) -> SystemStatus:
    """Wait for the guest run to end. If the waiting task is cancelled meanwhile, the
    system is cancelled (with cleanups) and still waited for: trio must finish before
    its host loop goes, and cleanups must run. The cancellation is re-raised after."""
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            status = await asyncio.shield(finished)
            break
        except asyncio.CancelledError as exc:
            if finished.done():
                raise  # the run itself ended with a CancelledError: nothing to wait for
            cancelled = exc
            if cancel is not None:
                cancel.cancel()
    if cancelled is not None:
        raise cancelled
    return status


async def run(
    graph: Graph,
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    reporters: Sequence[Reporter] = (),
    **overrides: Any,
) -> SystemStatus:
    """Run ``graph`` to its end inside the running asyncio loop; return its final status.

    The asyncio twin of :func:`actorflow.run`. Cancelling the awaiting task (or Ctrl-C
    under ``asyncio.run``) cancels the system in order, with every cleanup.
    """
    async with open_system(
        graph, settings, store=store, reporters=reporters, **overrides
    ) as system:
        pass
    return await system.status()
