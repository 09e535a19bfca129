"""Hosting a system inside a running asyncio loop, through trio's guest mode.

Trio runs as a *guest* of the asyncio loop (``trio.lowlevel.start_guest_run``): both
loops share the thread, asyncio stays in charge of it, and trio's I/O waits happen in a
helper thread trio manages. Every call from the asyncio side into the system crosses
through the run's :class:`trio.lowlevel.TrioToken` (``run_sync_soon``), and every answer
comes back through ``loop.call_soon_threadsafe``: the two documented doors, nothing else.

The guest run lives exactly as long as the ``async with`` block of :func:`open_system`,
so what an outlet still holds after the system ended can be read inside the block. A
system that fails while the block runs interrupts the block (its task is cancelled and
the failure is raised from the ``async with``), as a trio host's block is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import attrs
import outcome
import trio

from ._checks import check_seconds
from ._endpoints import OutletReader, give_up
from ._exceptions import ActorflowError, single_errors
from ._graph import Graph
from ._heartbeat import Reporter
from ._module import Module
from ._settings import Settings
from ._specs import LinkSpec
from ._status import EndReason, SystemStatus
from ._store import Store
from ._system import System, check_arguments, count_unread, end_reason, preview_error
from ._system import open_system as _open_trio_system

__all__ = ["AioSystem", "SystemEndedError", "open_system", "run"]

T = TypeVar("T")

_hosting: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
"""Loops that host a guest run of ours: trio allows one guest run per host loop."""


class SystemEndedError(ActorflowError, RuntimeError):
    """A call reached a system whose run had already ended, or an outlet's stream was
    cut short because the system was cancelled."""


def _settle(
    future: asyncio.Future[T],
    result: outcome.Outcome[T],
    orphan: Callable[[T], object] | None = None,
) -> None:
    """Give ``result`` to ``future``; if its awaiting task was cancelled meanwhile, hand
    a value to ``orphan`` instead (so what was taken for it is accounted for)."""
    if future.cancelled():
        if orphan is not None and isinstance(result, outcome.Value):
            orphan(result.value)
        return
    if not future.done():
        if isinstance(result, outcome.Error):
            future.set_exception(result.error)
        else:
            future.set_result(result.unwrap())


def _seen(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved: it is raised elsewhere, not lost."""
    if not future.cancelled():
        future.exception()


@attrs.define(eq=False)
class _Receiving:
    """One ``receive()`` iteration: its reader and what crossed but was not handed on."""

    reader: OutletReader
    waiting: list[Any] = attrs.field(factory=list)
    done: bool = False


@attrs.define(eq=False)
class _Run:
    """What both sides of one guest run share."""

    loop: asyncio.AbstractEventLoop
    host_task: asyncio.Task[Any] | None
    started: asyncio.Future[AioSystem]
    finished: asyncio.Future[SystemStatus | None]
    ended: asyncio.Future[None]
    release: trio.Event = attrs.field(factory=trio.Event)
    abort: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    token: trio.lowlevel.TrioToken | None = None
    final: SystemStatus | None = None
    interrupted: BaseException | None = None
    """Why the run cancelled the host's task (the system failed, Ctrl-C in trio)."""
    released: bool = False
    receiving: set[_Receiving] = attrs.field(factory=set)

    def run_soon(self, fn: Callable[[], object]) -> bool:
        """Schedule ``fn`` in trio; False if the run is already over."""
        if self.token is None:
            return False
        try:
            self.token.run_sync_soon(fn)
        except trio.RunFinishedError:
            return False
        return True

    def interrupt_host(self, error: BaseException) -> None:
        """Cancel the host's task (in asyncio) so its block ends and raises ``error``."""
        if self.released or self.interrupted is not None or self.host_task is None:
            return
        self.interrupted = error
        self.host_task.cancel(msg=f"actorflow: {error}")

    def let_go(self) -> None:
        """The host's block has ended: count what its iterations still hold, then let
        the guest run finish."""
        if self.released:
            return
        self.released = True
        for receiving in list(self.receiving):
            if not receiving.done:
                receiving.done = True
                self.run_soon(partial(give_up, receiving.reader, len(receiving.waiting)))
        self.run_soon(self.release.set)


@attrs.define(eq=False)
class AioSystem:
    """The asyncio side of a running system: every method is called from asyncio code.

    Errors inside the graph reach the awaiting asyncio task as the same exceptions a
    trio host gets (``RunError``, ``EscalationError``, ``CleanupError``, ...).
    """

    _run: _Run
    _system: System
    _calls: trio.Nursery

    # -- crossing the border -----------------------------------------------------------

    async def _call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        orphan: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``await fn(*args)`` in trio; a cancelled asyncio caller cancels it there.

        ``orphan`` receives the result if it arrives after the caller was cancelled.
        """
        run = self._run
        answer: asyncio.Future[T] = run.loop.create_future()
        scope = trio.CancelScope()

        async def in_trio() -> None:
            result: outcome.Outcome[T] = outcome.Error(
                SystemEndedError("the system ended before the call completed")
            )
            try:
                with scope:
                    result = await outcome.acapture(fn, *args)
                if isinstance(result, outcome.Error) and isinstance(result.error, trio.Cancelled):
                    result = outcome.Error(SystemEndedError("the system has ended"))
            finally:
                run.loop.call_soon_threadsafe(_settle, answer, result, orphan)

        def start() -> None:
            try:
                self._calls.start_soon(in_trio)
            except RuntimeError:  # the nursery has closed: the system is ending
                _settle(answer, outcome.Error(SystemEndedError("the system has ended")))

        if not run.run_soon(start):
            raise SystemEndedError("the system has ended")
        return await _await_answer(answer, lambda: run.run_soon(scope.cancel))

    async def _call_sync(
        self,
        fn: Callable[..., T],
        *args: Any,
        orphan: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``fn(*args)`` in trio (between its tasks) and return the result."""
        run = self._run
        answer: asyncio.Future[T] = run.loop.create_future()

        def in_trio() -> None:
            result = outcome.capture(fn, *args)
            run.loop.call_soon_threadsafe(_settle, answer, result, orphan)

        if not run.run_soon(in_trio):
            raise SystemEndedError("the system has ended")
        return await _await_answer(answer, lambda: None)

    # -- the API -----------------------------------------------------------------------

    async def send(self, name: str, item: Any) -> None:
        """Send ``item`` into the :class:`~actorflow.Inlet` ``name``; waits while its
        buffer is full (see :meth:`System.send`).

        If the caller is cancelled while it waits, the item is not sent. A cancellation
        that arrives just after the item was accepted still takes effect, at the
        caller's next ``await`` (or as its task ends), so a cancelled caller may have
        sent its item: count on the status counters, not on the exception, when that
        matters."""
        await self._call(self._system.send, name, item)

    async def close(self, name: str) -> None:
        """Close the :class:`~actorflow.Inlet` ``name`` (see :meth:`System.close`)."""
        await self._call(self._system.close, name)

    async def set(self, name: str, value: Any) -> None:
        """Set the :class:`~actorflow.Variable` ``name`` (see :meth:`System.set`)."""
        await self._call(self._system.set, name, value)

    async def receive(self, name: str, *, batch: int = 256) -> AsyncIterator[Any]:
        """Iterate over the items of the :class:`~actorflow.Outlet` ``name``, until its
        inputs have ended.

        Items cross to asyncio up to ``batch`` at a time. Each call is one reader of
        the outlet (see :meth:`System.receive`): when the iteration stops early, the
        items that crossed but were not yielded are counted as dropped
        (``"no_reader"``), and once every reader has stopped, the outlet drops what
        comes (so keep one iteration open for as long as you want items).

        Raises:
            SystemEndedError: The stream was cut short because the system was
                cancelled.
            ActorflowError: The stream was cut short because the system failed (its
                error, as :meth:`wait` raises it).
        """
        run = self._run
        reader = await self._call_sync(
            self._system.receive, name, orphan=lambda r: run.run_soon(r.close)
        )
        receiving = _Receiving(reader)
        run.receiving.add(receiving)

        def lost(items: list[Any]) -> None:
            run.run_soon(lambda: give_up(reader, len(items)))

        try:
            while True:
                items = await self._call(reader.receive_batch, batch, orphan=lost)
                if not items:
                    break
                items.reverse()
                receiving.waiting = items
                while items:
                    yield items.pop()
            reason = await self._call_sync(end_reason, self._system, name)
            if reason not in (EndReason.NORMAL, EndReason.STOPPED):
                await self.wait()  # raises the failure if the system failed
                raise SystemEndedError(f"outlet {name!r} ended early: the system was {reason}")
        finally:
            run.receiving.discard(receiving)
            if not receiving.done:
                receiving.done = True
                left = len(receiving.waiting)
                run.run_soon(lambda: give_up(reader, left))

    # -- changing the graph while it runs (see System.add and the live-changes how-to)

    async def add(self, name: str, module: type[Module], /, **options: Any) -> None:
        """Add a module and its links while the system runs (see :meth:`System.add`)."""
        await self._call(partial(self._system.add, name, module, **options))

    async def remove(self, name: str, *, drain: bool = True) -> list[Any]:
        """Remove a module and its links (see :meth:`System.remove`)."""
        return await self._call(partial(self._system.remove, name, drain=drain))

    async def stop_module(self, name: str) -> None:
        """Stop one module, keeping its links (see :meth:`System.stop_module`)."""
        await self._call(self._system.stop_module, name)

    async def start_module(self, name: str) -> None:
        """Start a stopped module again (see :meth:`System.start_module`)."""
        await self._call(self._system.start_module, name)

    async def replace(
        self, name: str, module: type[Module] | None = None, /, **options: Any
    ) -> None:
        """Replace a module's class or config in place (see :meth:`System.replace`)."""
        await self._call(partial(self._system.replace, name, module, **options))

    async def add_link(self, source: str, target: str, **options: Any) -> LinkSpec:
        """Add a link while the system runs (see :meth:`System.add_link`)."""
        return await self._call(partial(self._system.add_link, source, target, **options))

    async def remove_link(self, name: str, *, return_items: bool = False) -> list[Any]:
        """Remove a link while the system runs (see :meth:`System.remove_link`)."""
        return await self._call(partial(self._system.remove_link, name, return_items=return_items))

    async def status(self) -> SystemStatus:
        """A snapshot of every actor and link (see :meth:`System.status`); after the
        block of :func:`open_system` has ended, the final one."""
        if self._run.final is not None and self._run.finished.done():
            return self._run.final
        return await self._call_sync(self._system.status)

    async def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop gracefully: sources stop, everything in flight drains, cancelled if it
        has not ended ``drain_timeout`` seconds later, when given (see
        :meth:`System.stop`).

        The host owns the signals here: call this from its own handler, e.g.
        ``loop.add_signal_handler(signal.SIGTERM, ...)``, for a graceful stop on SIGTERM.

        Raises:
            ValueError: ``drain_timeout`` is not a duration (a microsecond to a year).
        """
        if drain_timeout is not None:
            check_seconds("drain_timeout", drain_timeout)
        await self._call(partial(self._system.stop, drain_timeout=drain_timeout))

    def cancel(self) -> None:
        """Stop at once, with cleanups (see :meth:`System.cancel`)."""
        self._run.run_soon(self._system.cancel)

    async def wait(self) -> None:
        """Wait until every actor has ended, or raise the error the system ended with
        (a failure, or a cleanup error). Outlets can still be read afterwards, inside
        the block."""
        await asyncio.shield(self._run.ended)


async def _await_answer(answer: asyncio.Future[T], cancel: Callable[[], object]) -> T:
    """Await a call's answer; if the waiting task is cancelled, cancel the call in trio
    and, should the answer already be there, deliver it and re-arm the cancellation for
    the task's next ``await`` (so a done call is never reported as not done)."""
    try:
        return await answer
    except asyncio.CancelledError:
        if answer.done() and not answer.cancelled() and answer.exception() is None:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
                task.cancel()
            return answer.result()
        cancel()
        raise


async def _watch_end(system: System, run: _Run) -> None:
    await system.wait()
    error = preview_error(system)  # the block's end annotates it
    result: outcome.Outcome[None] = outcome.Error(error) if error else outcome.Value(None)
    run.loop.call_soon_threadsafe(_settle, run.ended, result)


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
    stopped); what outlets still hold then is counted as dropped (``"unread"``). An
    exception in the block, including the ``CancelledError`` of a cancelled task or of
    Ctrl-C under ``asyncio.run``, cancels the system, waits for every cleanup, and is
    re-raised. A system that fails while the block runs cancels the block's task and
    its error is raised from the ``async with``.

    Raises:
        RuntimeError: This loop already hosts a system (trio allows one guest run per
            loop): run several graphs in one system, or in one ``open_system`` each,
            one after the other.
    """
    check_arguments(graph, store, reporters)
    run = _start_guest(graph, settings, store, reporters, overrides)
    host = await _started(run)
    try:
        yield host
    except BaseException as exc:
        await _end_on_error(run, host, exc)
        raise
    run.let_go()
    await _finish(run, cancel=host)


def _start_guest(
    graph: Graph,
    settings: Settings | None,
    store: Store | None,
    reporters: Sequence[Reporter],
    overrides: dict[str, Any],
) -> _Run:
    """Start the guest run of the system inside the running asyncio loop."""
    loop = asyncio.get_running_loop()
    if loop in _hosting:
        raise RuntimeError(
            "this asyncio loop already hosts an actorflow system (trio allows one guest "
            "run per host loop); leave the first open_system() block before opening "
            "another"
        )
    run = _Run(
        loop,
        asyncio.current_task(),
        loop.create_future(),
        loop.create_future(),
        loop.create_future(),
    )
    for future in (run.started, run.finished, run.ended):
        future.add_done_callback(_seen)

    async def trio_main() -> SystemStatus | None:
        with run.abort, single_errors():
            return await _guest(run, graph, settings, store, reporters, overrides)
        return None  # aborted while starting: the host was cancelled

    _hosting.add(loop)
    try:
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=partial(_run_done, run),
            # asyncio owns signal.set_wakeup_fd (and, under asyncio.run, SIGINT).
            host_uses_signal_set_wakeup_fd=True,
        )
        # Documented as callable once start_guest_run has returned.
        run.token = trio.lowlevel.current_trio_token()
    except BaseException:
        _hosting.discard(loop)
        raise
    return run


def _run_done(run: _Run, result: outcome.Outcome[SystemStatus | None]) -> None:
    """The guest run has ended: settle every future the host may wait on."""
    _hosting.discard(run.loop)
    if isinstance(result, outcome.Error):
        _settle(run.started, outcome.Error(result.error))
        _settle(run.ended, outcome.Error(result.error))
        run.interrupt_host(result.error)  # Ctrl-C in trio, say: the block must end
    else:
        _settle(run.started, outcome.Error(SystemEndedError("the system has ended")))
        _settle(run.ended, outcome.Value(None))
    _settle(run.finished, result)


async def _started(run: _Run) -> AioSystem:
    """Wait until the system runs; if cancelled meanwhile, abort it, wait for the run,
    and re-raise."""
    try:
        return await asyncio.shield(run.started)
    except asyncio.CancelledError:
        run.run_soon(run.abort.cancel)
        run.let_go()
        await _finish(run, cancel=None)
        raise


async def _end_on_error(run: _Run, host: AioSystem, exc: BaseException) -> None:
    """The block raised ``exc``: cancel the system and wait for its cleanups. Raises
    instead of returning when the system's own failure is what ended the block (the
    caller re-raises ``exc`` otherwise)."""
    ours = run.interrupted is not None and isinstance(exc, asyncio.CancelledError)
    if ours and run.host_task is not None:
        run.host_task.uncancel()  # the cancellation was only our way to interrupt
    host.cancel()
    run.let_go()
    try:
        await _finish(run, cancel=None)
    except Exception as error:
        if ours:
            raise  # the system's failure is what ended the block
        exc.add_note(f"the system also failed: {error}")
    if ours:
        raise SystemEndedError("the system ended while the block ran") from exc


async def _guest(
    run: _Run,
    graph: Graph,
    settings: Settings | None,
    store: Store | None,
    reporters: Sequence[Reporter],
    overrides: dict[str, Any],
) -> SystemStatus:
    """The guest run's main task: the system, and a nursery serving the host's calls
    that outlives it until the host's block has ended."""
    failure: Exception | None = None
    async with trio.open_nursery() as calls:
        system: System | None = None
        try:
            async with _open_trio_system(
                graph, settings, store=store, reporters=reporters, **overrides
            ) as system:
                calls.start_soon(_watch_end, system, run)
                host = AioSystem(run, system, calls)
                run.loop.call_soon_threadsafe(_settle, run.started, outcome.Value(host))
                await run.release.wait()  # the host's block has ended
                count_unread(system)  # so that nothing can wait for a reader any more
        except Exception as exc:
            if system is None:
                raise  # refused before it started (GraphError, ValidationError, ...)
            failure = exc
            run.loop.call_soon_threadsafe(_settle, run.ended, outcome.Error(exc))
            run.loop.call_soon_threadsafe(run.interrupt_host, exc)
        # However the system ended (by itself, cancelled, failed), the run lives on until
        # the host's block ends, so what the outlets hold can still be read.
        await run.release.wait()
        count_unread(system)
        run.final = system.status()
        calls.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return run.final


async def _finish(run: _Run, cancel: AioSystem | None) -> SystemStatus | None:
    """Wait for the guest run to end. If the waiting task is cancelled meanwhile, the
    system is cancelled (with cleanups) and still waited for: trio must finish before
    its host loop goes, and cleanups must run. The cancellation is re-raised after,
    unless it was the run's own way of interrupting the block."""
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            status = await asyncio.shield(run.finished)
            break
        except asyncio.CancelledError as exc:
            if run.finished.done():
                raise  # the run itself ended with a CancelledError: nothing to wait for
            if run.interrupted is not None and run.host_task is not None:
                run.host_task.uncancel()
            else:
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
