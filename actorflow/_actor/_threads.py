"""A blocking module's calls in worker threads, and the ones a cancellation abandoned.

Trio cannot interrupt a thread: a cancelled call is abandoned and finishes in its
thread. Until it has, the module is still inside that hook, so its ``cleanup()`` and
the next incarnation wait for it (bounded by the cleanup timeout; an overrun is logged
and counted) rather than run beside it.

A snapshot of the module is taken alone (:meth:`Threads.alone`): no other hook of the
module runs in a thread meanwhile, abandoned ones included, so it never sees a state
half-changed by a hook running beside it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import attrs
import trio

if TYPE_CHECKING:
    import structlog

__all__ = ["Threads"]


@attrs.frozen
class _Awaitable:
    """An awaitable a hook returned in its thread, carried back to the event loop."""

    value: Any


@attrs.define(slots=True, eq=False)
class _Counted:
    """A thread limiter that tells when a call's thread has finished: trio takes it just
    before it starts a call's thread and gives it back once the call has finished
    (abandoned or not). ``held`` says whether it was taken (a call cancelled before
    that never runs)."""

    limiter: trio.CapacityLimiter
    threads: Threads
    held: bool = False
    """Taken: the call's thread started (or is about to), and will finish."""

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await self.limiter.acquire_on_behalf_of(borrower)
        self.held = True

    def release_on_behalf_of(self, borrower: object) -> None:
        self.limiter.release_on_behalf_of(borrower)
        self.threads._ended()


@attrs.define(slots=True, eq=False)
class Threads:
    """The thread calls of one actor that were abandoned and may still be running.

    Invariants: ``abandoned`` holds the done-events of abandoned calls not yet seen
    done; ``running`` counts the calls whose thread has not finished (abandoned ones
    included), and those waiting for a thread (a call that passed the check for a call
    alone is counted before it waits for the limiter); while ``_alone`` is set, only
    its task starts calls.
    """

    abandoned: set[trio.Event] = attrs.field(factory=set)
    overruns: int = 0
    """How often a wait for abandoned calls ran out of time."""
    running: int = 0
    _alone: trio.lowlevel.Task | None = None
    """The task that runs a call alone (a snapshot), once the others have finished."""
    _changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)
    """Woken when a call finishes or a call alone ends."""

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        """Within it, no call of another task runs in a thread: it waits until every
        running call (abandoned ones too) has finished and holds new ones back until
        it ends. Calls its own task makes meanwhile run as usual."""
        while self._alone is not None:
            await self._changed.park()
        self._alone = trio.lowlevel.current_task()
        try:
            while self.running:
                await self._changed.park()
            yield
        finally:
            self._alone = None
            self._changed.unpark_all()

    def _ended(self) -> None:
        """A call's thread has finished (trio releases its limiter, on the event loop)."""
        self.running -= 1
        if self._alone is not None and not self.running:
            self._changed.unpark_all()

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], limiter: trio.CapacityLimiter | None
    ) -> Any:
        """Call ``fn(*args)`` in a worker thread; if cancelled, abandon it but remember it."""
        while self._alone is not None and self._alone is not trio.lowlevel.current_task():
            await self._changed.park()
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def call() -> Any:
            try:
                result = fn(*args)
                # A sync-looking hook that returns an awaitable (an undecorated wrapper
                # of an async function): trio refuses a coroutine from a thread, so it
                # comes back boxed, to be awaited on the event loop.
                return _Awaitable(result) if inspect.isawaitable(result) else result
            finally:
                with contextlib.suppress(trio.RunFinishedError):  # the run is over
                    token.run_sync_soon(done.set)

        counting = _Counted(limiter or trio.to_thread.current_default_thread_limiter(), self)
        self.running += 1  # from before it waits for a thread: a call alone waits for it
        try:
            # trio takes any object with the two methods ("CapacityLimiter-like").
            result = await trio.to_thread.run_sync(
                call, limiter=cast("trio.CapacityLimiter", counting), abandon_on_cancel=True
            )
        except BaseException:
            if not counting.held:  # cancelled before its thread started: never runs
                self._ended()
            elif not done.is_set():  # its thread started: abandoned
                self.abandoned.add(done)
            raise
        if type(result) is _Awaitable:
            return await result.value
        return result

    async def settle(
        self, limit: float, log: structlog.typing.FilteringBoundLogger, *, shield: bool = True
    ) -> None:
        """Wait up to ``limit`` seconds for the abandoned calls to finish in their threads
        (``shield=False``: or until cancelled, when nothing is to start after them)."""
        if not self.abandoned:
            return
        with trio.CancelScope(shield=shield), trio.move_on_after(limit):
            for done in list(self.abandoned):
                await done.wait()
                self.abandoned.discard(done)
        self.abandoned = {done for done in self.abandoned if not done.is_set()}
        if self.abandoned:
            self.overruns += 1
            log.error(
                "actor.thread_overrun",
                calls=len(self.abandoned),
                limit=limit,
                error="an abandoned blocking call is still running in its thread",
            )
