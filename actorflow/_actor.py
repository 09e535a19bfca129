"""Driving one module: its mailbox, its loop, its states, its restarts and its end.

An :class:`Actor` outlives the module instances it drives. Each *incarnation* is a fresh
module built from the same class and config; the mailbox, the links, the counters and any
output not yet delivered belong to the actor and survive a restart, so a crash loses no
queued item.

An actor handles what is already in its mailbox without yielding to the scheduler until
its *quantum* (a time budget) is spent, then checkpoints. That is what makes actorflow
fast on trio: scheduling costs are paid once per quantum or once per empty mailbox, not
once per message; and it is what keeps it fair: no actor holds the loop much longer than
a quantum while others wait.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from ._data import Data
from ._exceptions import (
    CleanupError,
    InitializationError,
    RunError,
    ValidationError,
    _describe,
)
from ._graph import ModuleSpec
from ._hooks import HookStyle, accepts_port, call_hook, hook_style
from ._link import Link, Mailbox
from ._logging import get_logger
from ._module import Many, Module, ModuleKind
from ._progressive import Step, StepState
from ._settings import Settings
from ._status import ActorState, ActorStatus

__all__ = ["Actor", "DeadLetter"]

# The most items handled between two reads of the clock.
_MAX_STRIDE = 16

# Transitions that happen once per batch are logged at debug level; the rest at info.
_FREQUENT = frozenset({ActorState.RUNNING, ActorState.BLOCKED, ActorState.READY})


@attrs.frozen
class DeadLetter:
    """An item given up on: its handler failed on it ``attempts`` times.

    Attributes:
        item: The item, as it was handed to the module.
        actor: The actor that failed on it.
        error: The last exception raised while handling it.
        message_id: The item's ``Data.id``, or ``<actor>#<n>``.
        attempts: How many times it was tried.
        timestamp: When it was dead-lettered (seconds since the epoch).
    """

    item: Any
    actor: str
    error: BaseException
    message_id: str
    attempts: int
    timestamp: float = attrs.field(factory=time.time)


class _Stop(Exception):
    """Internal: the incarnation was asked to stop; unwinds the handling loops."""


class Actor:
    """The runtime object that drives one module: a :class:`~actorflow.Worker` for
    the supervisor."""

    def __init__(
        self,
        spec: ModuleSpec,
        module: Module,
        settings: Settings,
        *,
        attempts: int = 1,
        dead_letter: Callable[[DeadLetter], None] | None = None,
        on_terminated: Callable[[Actor], None] | None = None,
        system_stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.module = module
        self.kind: ModuleKind = module.kind
        self.settings = settings
        self.attempts = attempts
        self.log = get_logger(actor=spec.name)
        # Batches come and go thousands of times a second: build their debug events
        # only when someone will read them.
        self._debug = self.log.is_enabled_for(logging.DEBUG)
        self._dead_letter = dead_letter
        self._on_terminated = on_terminated
        self._system_stopping = system_stopping

        self.state = ActorState.CREATED
        self.blocked_on: str | None = None
        self.mailbox = Mailbox()
        self.outputs: dict[str, list[Link]] = {port: [] for port in spec.output_ports()}
        self.upstream: list[Actor] = []
        """Actors feeding this one through non-feedback links; cleaned up before it
        when the whole system is cancelled."""
        self.ancestors = 0
        """How many actors feed this one, directly or not (set when the graph is wired)."""

        self.received = 0
        self.emitted = 0
        self.filtered = 0
        self.errors = 0
        self.restarts = 0
        self.dead_lettered = 0
        self.incarnations = 0
        self.dropped: dict[str, int] = {}
        self.reason: str | None = None
        self.failure: RunError | None = None
        self.cleanup_errors: list[CleanupError] = []
        self.cleaned = trio.Event()
        self.terminated = False

        self.active = True
        self._stopped = trio.Event()
        self._fresh = True
        self._stopping = False
        self._killed = False
        self._stop_requested = False
        self._warned_unconnected: set[str] = set()
        self._pending: deque[tuple[Link, list[Any]]] = deque()
        self._suspect: Any = None
        self._suspect_attempts = 0
        self._produce_scope: trio.CancelScope | None = None
        self._quantum = settings.quantum
        self._deadline = 0.0
        self._stride = 1
        self._last_check = 0.0
        self._now: Callable[[], float] = trio.current_time
        self.is_ready = trio.Event()
        """Set once a source is ready (see :meth:`Source.ready`)."""
        self.waits_for: list[tuple[Actor, float]] = []
        """Sources this actor waits to be ready before it handles anything."""
        self._suspended = False
        self.progress: tuple[float, float | None] | None = None
        self.task: str = spec.factory.__qualname__
        """What it is doing: its module's class name, unless the module said otherwise."""
        self.info: dict[str, Any] = {}
        self.step_size: int | None = None
        self._posted: list[tuple[str, Any]] = []
        self.system: Any = None
        """The running System, for modules that change links (set when it is built)."""
        self.keep: dict[str, Any] = {}
        """State that outlives an incarnation (an inlet's queue, an outlet's readers)."""
        self.at_end: list[Callable[[], None]] = []
        """Called once when the actor ends for good, to account for what ``keep`` holds."""
        self.thread_limiter: trio.CapacityLimiter | None = None
        """Shared by the system's blocking modules; set when the system is built."""

        module._actor = self
        self.log.info("actor.state", state=ActorState.CREATED.value, kind=self.kind.value)

    # -- state -------------------------------------------------------------------------

    def set_state(self, state: ActorState, blocked_on: str | None = None) -> None:
        """Move to ``state`` and log the transition (no-op if already there)."""
        previous = self.state
        if previous is state and self.blocked_on == blocked_on:
            return
        self.state = state
        self.blocked_on = blocked_on
        if state in _FREQUENT and previous in _FREQUENT:
            if self._debug:
                self.log.debug(
                    "actor.state",
                    state=state.value,
                    previous=previous.value,
                    blocked_on=blocked_on,
                )
        else:
            self.log.info(
                "actor.state", state=state.value, previous=previous.value, restarts=self.restarts
            )

    def _trace(self, event: str, items: list[Any], **fields: Any) -> None:
        """Log the ids of the ``Data`` items in ``items`` (debug only: for tracing one
        message through the graph with ``actorflow logs --trace``)."""
        ids = [item.id for item in items if isinstance(item, Data)]
        if ids:
            self.log.debug(event, message_ids=ids, **fields)

    def status(self) -> ActorStatus:
        return ActorStatus(
            name=self.name,
            kind=self.kind.value,
            state=self.state,
            blocked_on=self.blocked_on,
            received=self.received,
            emitted=self.emitted,
            filtered=self.filtered,
            dropped=dict(self.dropped),
            mailbox_depth=self.mailbox.depth(),
            errors=self.errors,
            reason=self.reason,
            restarts=self.restarts,
            dead_lettered=self.dead_lettered,
            progress=self.progress,
            step_size=self.step_size,
            task=self.task,
            info=dict(self.info),
        )

    def _drop(self, count: int, reason: str) -> None:
        if count > 0:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    # -- the Worker protocol -----------------------------------------------------------

    async def prepare(self) -> None:
        """Make a fresh incarnation: the first was built with the graph; a restart
        builds and validates a new module from the same class and config."""
        if self._fresh:
            self._fresh = False
            return
        spec = self.spec
        try:
            module = spec.factory(**spec.config)
        except Exception as exc:
            self.log.error("actor.failed", phase="init", error=_describe(exc))
            raise InitializationError(self.name, _describe(exc)) from exc
        module._actor = self
        try:
            await self._lifecycle(module.validate, blocking=module.blocking)
        except Exception as exc:
            self.log.error("actor.failed", phase="validate", error=_describe(exc))
            raise ValidationError(self.name, _describe(exc)) from exc
        self.module = module
        self.restarts += 1
        self.set_state(ActorState.VALIDATED)

    async def run(self) -> None:
        """One incarnation: listen, handle items until the end of stream or a stop.

        Raises:
            RunError: The module raised; what it held was requeued or dead-lettered.
        """
        self._now = trio.lowlevel.current_clock().current_time
        self._stopping = False
        self._killed = False
        self.active = True
        self._stop_requested = False
        self._stopped = trio.Event()
        self.incarnations += 1
        self.reason = None
        self.set_state(ActorState.READY)
        going_down = False
        try:
            await self._wait_for_sources()
            self._deadline = self._now() + self._quantum
            await self._flush_pending()
            if self.kind is ModuleKind.SOURCE:
                await self._run_source()
            elif self.kind is ModuleKind.PROGRESSIVE:
                await self._run_progressive()
            else:
                await self._run_consumer()
            if self.reason is None:
                self.reason = "stopped" if self._stopping else "normal"
        except _Stop:
            self.reason = self.reason or "stopped"
        except RunError as error:
            self._crashed(error)
            raise
        except Exception as exc:
            wrapped = RunError(self.name, _describe(exc))
            wrapped.__cause__ = exc
            self._crashed(wrapped)
            raise wrapped from exc
        except BaseException:
            self.reason = "killed" if self._killed else "cancelled"
            # Not killed by its supervisor: the whole system is going down at once.
            going_down = not self._killed
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._end_incarnation(wait_for_upstream=going_down)

    async def request_stop(self) -> None:
        """Finish the current item, then end this incarnation (what it still holds is
        requeued). A source stops producing and its ``stop()`` hook runs."""
        self._stopping = True
        self._wake()
        if self.kind is ModuleKind.SOURCE:
            await self._stop_source()

    def on_kill(self) -> None:
        """The supervisor is about to cancel this incarnation."""
        self._killed = True

    @property
    def retired(self) -> bool:
        """A source after a graceful system stop: done, whatever its restart type says."""
        return self.kind is ModuleKind.SOURCE and self._system_stopping()

    def terminate(self, reason: str) -> None:
        """End for good: pass the end of stream downstream and account for what is left."""
        if self.terminated:
            return
        self.terminated = True
        if self.reason != "failed" and reason != "normal":
            # Why it ended for good; a crash that was never followed by a restart
            # stays the reason.
            self.reason = reason
        # Outputs still owed downstream: deliver what fits now, count the rest.
        while self._pending:
            link, items = self._pending.popleft()
            accepted = link.offer(items)
            link.drop(len(items) - accepted, "shutdown")
        for links in self.outputs.values():
            for link in links:
                link.close()
        for finish in self.at_end:
            finish()
        for link in self.mailbox.links:
            link.close_receiver()
            count = link.discard("consumer_terminated")
            if count:
                self.log.warning(
                    "link.dropped", link=link.name, reason="consumer_terminated", count=count
                )
        self.set_state(ActorState.INVALID if self.reason == "failed" else ActorState.TERMINATED)
        self.cleaned.set()
        if self._on_terminated is not None:
            self._on_terminated(self)
        self.log.info(
            "actor.ended",
            reason=self.reason,
            received=self.received,
            restarts=self.restarts,
            dead_lettered=self.dead_lettered,
        )

    # -- the end of an incarnation -----------------------------------------------------

    def _crashed(self, error: RunError) -> None:
        self.failure = error
        self.errors += 1
        self.reason = "failed"
        self.set_state(ActorState.INVALID)
        self.log.error(
            "actor.failed",
            phase="run",
            error=_describe(error.__cause__ or error),
            message_id=error.message_id,
            restarts=self.restarts,
        )

    async def _end_incarnation(self, *, wait_for_upstream: bool) -> None:
        self.set_state(ActorState.ZOMBIE)
        timeout = self.settings.cleanup_timeout
        if wait_for_upstream:
            # The whole system is going down at once: clean up producers first. Each
            # upstream cleanup is bounded by its own timeout, so this wait is bounded by
            # the timeouts of everything upstream; the bound is only a safety net.
            with trio.move_on_after(timeout * self.ancestors):
                for actor in self.upstream:
                    if actor.incarnations:
                        await actor.cleaned.wait()
        try:
            with trio.fail_after(timeout):
                await self._lifecycle(self.module.cleanup)
        except trio.TooSlowError:
            self._cleanup_failed(f"cleanup() did not finish within {timeout:g} s", None)
        except Exception as exc:
            self._cleanup_failed(_describe(exc), exc)

    def _cleanup_failed(self, message: str, cause: Exception | None) -> None:
        error = CleanupError(self.name, message)
        error.__cause__ = cause
        self.cleanup_errors.append(error)
        self.errors += 1
        self.log.error("actor.cleanup_failed", phase="cleanup", error=message)

    def _wake(self) -> None:
        """Wake this actor wherever it waits, so that it notices a stop request."""
        self.mailbox.notify()
        for links in self.outputs.values():
            for link in links:
                link.wake_producers()

    # -- sources -----------------------------------------------------------------------

    async def _stop_source(self) -> None:
        if self._stop_requested or self.state.is_final or self.state is ActorState.ZOMBIE:
            return
        self._stop_requested = True
        self.active = False
        self._stopped.set()
        self._wake()
        self.log.info("actor.stopping")
        try:
            await self._lifecycle(self.module.stop)  # type: ignore[attr-defined]
        except Exception as exc:
            self.errors += 1
            self.log.error("actor.stop_failed", error=_describe(exc))

    async def stop_gracefully(self) -> None:
        """A graceful system stop: a source stops producing; after ``stop_timeout`` a
        ``start()`` that has not returned is cancelled."""
        scope = self._produce_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, trio.current_time() + self.settings.stop_timeout)
        with trio.move_on_after(self.settings.stop_timeout):
            await self._stop_source()

    async def _run_source(self) -> None:
        if self._system_stopping():
            # Started (restarted) after a graceful stop: nothing more to produce.
            self.active = False
            self.reason = "stopped"
            return
        with trio.CancelScope() as scope:
            self._produce_scope = scope
            self.set_state(ActorState.RUNNING)
            retry_interval = getattr(self.module, "retry_interval", None)
            attempt = 0
            while True:
                try:
                    await self._produce()
                    self.mark_ready()
                    break
                except RunError as error:
                    if retry_interval is None or not self.active:
                        raise
                    # A source with a retry interval tries again while it is active;
                    # the supervisor only hears of it if it gives up.
                    attempt += 1
                    self.errors += 1
                    self.log.warning(
                        "actor.retrying",
                        attempt=attempt,
                        retry_in=retry_interval,
                        error=_describe(error.__cause__ or error),
                    )
                    self.set_state(ActorState.BLOCKED, blocked_on="retry")
                    with trio.move_on_after(retry_interval):
                        await self._stopped.wait()
                    if self._stopped.is_set():
                        break
                    self.set_state(ActorState.RUNNING)
        self._produce_scope = None
        if scope.cancelled_caught:
            self.reason = "killed"
            self.log.warning("actor.killed", timeout=self.settings.stop_timeout)
        elif self._stop_requested:
            self.reason = "stopped"

    def mark_ready(self) -> None:
        if not self.is_ready.is_set():
            self.is_ready.set()
            self.log.info("actor.ready")

    async def _wait_for_sources(self) -> None:
        for source, timeout in self.waits_for:
            if source.is_ready.is_set():
                continue
            self.set_state(ActorState.BLOCKED, blocked_on=f"ready:{source.name}")
            with trio.move_on_after(timeout):
                await source.is_ready.wait()
            if not source.is_ready.is_set():
                raise RunError(
                    self.name,
                    f"waited {timeout:g} s for source {source.name!r} to be ready; it "
                    "neither called ready(), sent an item, nor returned from start()",
                )

    async def _produce(self) -> None:
        """Call ``start()`` once and send what it produces."""
        module: Any = self.module
        try:
            produced = await self._lifecycle(module.start)
        except _Stop:
            raise  # a stop while start() emitted: not the module's failure
        except Exception as exc:
            raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
        if produced is None:
            self.mark_ready()
            return
        if hasattr(produced, "__aiter__"):
            await self._pull_async(produced)
        elif hasattr(produced, "__iter__"):
            if module.blocking:
                await self._pull_threaded(iter(produced))
            else:
                await self._pull_sync(iter(produced))
        else:
            raise RunError(
                self.name,
                f"start() returned {type(produced).__name__}; expected an iterable, an "
                "async iterable, or None (after emitting with `await self.emit(...)`)",
            )

    async def _room_out(self) -> int:
        """Room in the fullest ``out`` link, waiting while there is none (0: stopping)."""
        # A link that drops instead of blocking always has room.
        links = [link for link in self.outputs["out"] if not link.never_blocks]
        if not links:
            return self.settings.max_batch
        while self.active and not self._stopping:
            fullest = min(links, key=lambda link: link.capacity - len(link.items))
            room = fullest.capacity - len(fullest.items)
            if room > 0 or fullest.receiver_closed:
                return max(room, 1)
            self.set_state(ActorState.BLOCKED, blocked_on="output:out")
            await fullest.wait_for_space()
            self.set_state(ActorState.RUNNING)
        return 0

    async def _pull_sync(self, iterator: Any) -> None:
        """Pull from a generator no more than the output links can take right now, so a
        stopped source holds nothing back, and send it."""
        now = self._now
        try:
            while self.active:
                limit = min(self.settings.max_batch, await self._room_out())
                if not limit:
                    return
                batch: list[Any] = []
                append = batch.append
                deadline = self._deadline
                self._last_check = now()
                countdown = min(self._stride, limit)
                try:
                    for item in iterator:
                        append(item)
                        countdown -= 1
                        if not countdown:
                            if len(batch) >= limit or self._quantum_spent(deadline):
                                break
                            countdown = min(self._stride, limit - len(batch))
                except Exception as exc:
                    # What it produced before failing is valid: it goes out first.
                    self._owe(batch, "out")
                    raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
                if not batch:
                    return
                await self._send(batch, "out")
                if now() >= self._deadline:
                    await self._yield()
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _pull_threaded(self, iterator: Any) -> None:
        """A blocking module's generator: each item is pulled in a worker thread."""
        end = object()
        try:
            while self.active:
                try:
                    item = await self._in_thread(next, iterator, end)
                except Exception as exc:
                    raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
                if item is end:
                    return
                await self.emit(item)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _pull_async(self, iterator: Any) -> None:
        try:
            while self.active:
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
                await self.emit(item)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    # -- scheduling --------------------------------------------------------------------

    async def _yield(self) -> None:
        """Spend a checkpoint so other actors run; then start a fresh quantum."""
        self.set_state(ActorState.READY)
        await trio.lowlevel.checkpoint()
        self._deadline = self._now() + self._quantum
        self.set_state(ActorState.RUNNING)

    def _quantum_spent(self, deadline: float) -> bool:
        """Read the clock, every ``_stride`` items: True once ``deadline`` has passed.

        Otherwise adapt the stride: read the clock less often while a stride of items
        costs under 1/16 of the quantum, more often when it costs more.
        """
        checked = self._now()
        if checked >= deadline:
            return True
        if checked - self._last_check < self._quantum / 16:
            self._stride = min(self._stride * 2, _MAX_STRIDE)
        elif self._stride > 1:
            self._stride //= 2
        self._last_check = checked
        return False

    # -- output ------------------------------------------------------------------------

    async def emit(self, item: Any, port: str = "out") -> None:
        """Send one item on ``port``, then yield if the quantum is spent."""
        if port not in self.outputs:
            known = ", ".join(repr(p) for p in self.outputs) or "none"
            raise KeyError(
                f"module {self.name!r} has no output port {port!r} (output ports: {known})"
            )
        await self._send([item], port)
        if self._now() >= self._deadline:
            await self._yield()

    def _copies_for(self, link: Link, items: list[Any]) -> list[Any]:
        """The items as ``link`` must receive them (copied per its policy).

        An item that cannot be copied (``copy="msgpack"`` and a value msgpack cannot
        carry, say) is counted on the link as ``copy_failed`` and logged; the others go.
        """
        copier = link.copier
        if copier is None:
            return items
        copies = []
        for item in items:
            try:
                copies.append(copier(item))
            except Exception as exc:
                link.drop(1, "copy_failed")
                self.log.error(
                    "link.dropped",
                    link=link.name,
                    reason="copy_failed",
                    count=1,
                    copy=link.spec.copy.value,
                    error=_describe(exc),
                )
        return copies

    def _copy_some(self, link: Link, items: list[Any], start: int) -> tuple[list[Any], int]:
        """Copy ``items`` from ``start`` until the end or the quantum is spent."""
        end = len(items)
        position = start
        deadline = self._deadline
        self._last_check = self._now()
        copies: list[Any] = []
        while position < end:
            stop = min(end, position + self._stride)
            copies.extend(self._copies_for(link, items[position:stop]))
            position = stop
            if self._quantum_spent(deadline):
                break
        return copies, position

    async def _send(self, items: list[Any], port: str) -> None:
        """Deliver ``items`` to every link of ``port``, waiting while one is full.

        Copies are made in chunks that fit the quantum. Whatever is not delivered when
        the wait is interrupted (a stop, a cancellation) is kept as owed and delivered
        first by the next incarnation, or counted when the actor ends for good.
        """
        links = self.outputs[port]
        self.emitted += len(items)
        if self._debug:
            self._trace("message.sent", items, port=port)
        if not self.is_ready.is_set():
            self.mark_ready()
        if not links:
            self._drop(len(items), "unconnected")
            if port not in self._warned_unconnected:
                self._warned_unconnected.add(port)
                self.log.warning(
                    "actor.dropped", port=port, reason="unconnected", count=len(items)
                )
            return
        for index, link in enumerate(links):
            position = 0
            try:
                if link.copier is None:
                    position = len(items)
                    await self._deliver(link, items, port)
                    continue
                while position < len(items):
                    copies, position = self._copy_some(link, items, position)
                    await self._deliver(link, copies, port)
                    if position < len(items) and self._now() >= self._deadline:
                        await self._yield()
            except BaseException:
                # What this link has not had yet, and every later link, is owed.
                if position < len(items):
                    self._pending.append((link, self._copies_for(link, items[position:])))
                for later in links[index + 1 :]:
                    self._pending.append((later, self._copies_for(later, items)))
                raise

    async def _deliver(self, link: Link, batch: list[Any], port: str) -> None:
        accepted = link.offer(batch)
        if accepted < len(batch):
            await self._send_rest(link, batch, accepted, port)

    async def _send_rest(self, link: Link, batch: list[Any], accepted: int, port: str) -> None:
        previous = self.state
        self.set_state(ActorState.BLOCKED, blocked_on=f"output:{port}")
        try:
            while accepted < len(batch):
                if self._stopping:
                    raise _Stop
                await link.wait_for_space()
                accepted = link.offer(batch, accepted)
        except BaseException:
            if accepted < len(batch):
                self._pending.append((link, batch[accepted:]))
            raise
        self.set_state(previous)

    def _owe(self, items: list[Any], port: str) -> None:
        """Keep outputs that could not be sent now; they go out before anything else."""
        if not items:
            return
        self.emitted += len(items)
        if self._debug:
            self._trace("message.sent", items, port=port)
        links = self.outputs[port]
        if not links:
            self._drop(len(items), "unconnected")
        for link in links:
            self._pending.append((link, self._copies_for(link, items)))

    async def _flush_pending(self) -> None:
        while self._pending:
            link, items = self._pending[0]
            accepted = link.offer(items)
            if accepted < len(items):
                self._pending[0] = (link, items[accepted:])
                self.set_state(ActorState.BLOCKED, blocked_on="output:pending")
                await link.wait_for_space()
                if self._stopping:
                    raise _Stop
                continue
            self._pending.popleft()

    # -- processors and sinks ----------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking sync call in a worker thread. If cancelled, the call is
        abandoned (it finishes in its thread; its result is dropped)."""
        return await trio.to_thread.run_sync(
            fn, *args, limiter=self.thread_limiter, abandon_on_cancel=True
        )

    async def _lifecycle(self, fn: Callable[[], Any], *, blocking: bool | None = None) -> Any:
        """Call a lifecycle hook, in a thread when the module blocks and it is sync.

        ``blocking`` defaults to the current module's; a module being built passes its own.
        """
        if blocking is None:
            blocking = self.module.blocking
        if blocking and hook_style(fn) is HookStyle.SYNC:
            result = await self._in_thread(fn)
            return await result if inspect.isawaitable(result) else result
        return await call_hook(fn)

    def read_port(self, port: str, limit: int | None) -> list[Any]:
        """Take what arrived on input ``port`` (for progressive modules)."""
        taken: list[Any] = []
        for link in self.mailbox.links:
            if link.spec.target_port != port or not link.items:
                continue
            room = len(link.items) if limit is None else limit - len(taken)
            if room <= 0:
                break
            got = link.take(room)
            if self._debug:
                self._trace("message.received", got, link=link.name)
            taken.extend(got)
        self.received += len(taken)
        return taken

    def read_synced(
        self, ports: Sequence[str], key: Callable[[Any], Any] | None, limit: int | None
    ) -> list[tuple[Any, ...]]:
        """Take the items every port has produced, joined (for progressive modules)."""
        links = {
            port: [k for k in self.mailbox.links if k.spec.target_port == port] for port in ports
        }
        unknown = [port for port, found in links.items() if not found]
        if unknown:
            raise KeyError(f"module {self.name!r} has no linked input port {unknown[0]!r}")
        if key is None:
            count = min(sum(len(k.items) for k in found) for found in links.values())
            if limit is not None:
                count = min(count, limit)
            columns = [self.read_port(port, count) for port in ports]
            return list(zip(*columns, strict=True))
        # Join by key: index each port's waiting items, keep the keys all ports have.
        waiting = {
            port: {key(item): (link, item) for link in found for item in link.items}
            for port, found in links.items()
        }
        first, *others = ports
        joined: list[tuple[Any, ...]] = []
        for item_key in list(waiting[first]):
            if limit is not None and len(joined) >= limit:
                break
            if all(item_key in waiting[port] for port in others):
                row = []
                for port in ports:
                    link, item = waiting[port][item_key]
                    link.remove_item(item)
                    row.append(item)
                joined.append(tuple(row))
        self.received += len(joined) * len(ports)
        return joined

    def post(self, item: Any, port: str) -> None:
        """Keep a result posted during a step; sent when the step returns."""
        if port not in self.outputs:
            known = ", ".join(repr(p) for p in self.outputs) or "none"
            raise KeyError(
                f"module {self.name!r} has no output port {port!r} (output ports: {known})"
            )
        self._posted.append((port, item))

    async def _run_progressive(self) -> None:
        """Call run_step until the module is done, sizing each step to the quantum."""
        module: Any = self.module
        quantum = module.quantum or self._quantum
        style = hook_style(module.run_step)
        step_size = max(1, int(module.step_size))
        seconds_per_unit: float | None = None
        run_number = 0
        last_report = -math.inf
        while not self._stopping:
            if self._suspended:
                self.set_state(ActorState.SUSPENDED)
                await self.mailbox.wait()  # resume(), new input and stops all notify
                continue
            self.step_size = step_size
            self.set_state(ActorState.RUNNING)
            seen = self.mailbox.version
            began = self._now()
            try:
                result = module.run_step(run_number, step_size, quantum)
                if style is not HookStyle.SYNC:
                    result = await result
            except Exception as exc:
                self._posted.clear()
                raise RunError(self.name, f"run_step() raised {_describe(exc)}") from exc
            took = self._now() - began
            run_number += 1
            if not isinstance(result, Step):
                raise RunError(
                    self.name,
                    f"run_step() returned {type(result).__name__}; expected "
                    "actorflow.Step(state, done)",
                )
            await self._send_posted()
            if self.progress is not None and self._now() - last_report >= 1.0:
                last_report = self._now()
                done, total = self.progress
                self.log.info("actor.progress", done=done, total=total, step_size=step_size)
            # Learn the speed (seconds per unit) and size the next step to the quantum.
            if result.done > 0 and took > 0:
                measured = took / result.done
                seconds_per_unit = (
                    measured if seconds_per_unit is None else (seconds_per_unit + measured) / 2
                )
                step_size = round(0.9 * quantum / seconds_per_unit)
            elif result.done >= step_size:
                step_size *= 2  # free so far: grow until the time shows
            step_size = max(1, min(step_size, int(module.max_step_size)))
            if result.state is StepState.TERMINATED:
                if not module.interactive or not await self._await_resurrection(seen):
                    return
                continue
            if result.state is StepState.BLOCKED:
                # Blocked means "until something new arrives". What is still waiting was
                # seen by the step (held back by a join, say) and does not count.
                if self.mailbox.version == seen:
                    if self.mailbox.all_closed():
                        return  # nothing new can come
                    self.set_state(ActorState.BLOCKED, blocked_on="input")
                    await self.mailbox.wait()
                self._deadline = self._now() + self._quantum
            else:
                await self._yield()

    async def _await_resurrection(self, seen: int) -> bool:
        """An interactive module terminated: wait for new input. True when it comes
        (the module is resurrected); False when every input ended instead."""
        self.set_state(ActorState.TERMINATED)
        while self.mailbox.version == seen:
            if self.mailbox.all_closed() or self._stopping:
                return False
            await self.mailbox.wait()
        if self._stopping or (self.mailbox.all_closed() and not self.mailbox.depth()):
            return False
        self.log.info("actor.resurrected")
        self.set_state(ActorState.READY)
        return True

    def suspend(self) -> None:
        """Pause a progressive module between steps."""
        if not self._suspended:
            self._suspended = True
            self.log.info("actor.suspending")

    def resume(self) -> None:
        """Let a suspended progressive module take steps again."""
        if self._suspended:
            self._suspended = False
            self.mailbox.notify()
            self.log.info("actor.resumed")

    async def _send_posted(self) -> None:
        posted, self._posted = self._posted, []
        by_port: dict[str, list[Any]] = {}
        for port, item in posted:
            by_port.setdefault(port, []).append(item)
        for port, items in by_port.items():
            await self._send(items, port)

    async def _run_consumer(self) -> None:
        module: Any = self.module
        hook = module.process if self.kind is ModuleKind.PROCESSOR else module.consume
        style = hook_style(hook)
        with_port = accepts_port(hook)
        if module.blocking and style in (HookStyle.SYNC, HookStyle.SYNC_GEN):
            blocking_hook = hook
            gathered = style is HookStyle.SYNC_GEN

            async def threaded(*args: Any) -> Any:
                if gathered:
                    return Many(await self._in_thread(lambda: list(blocking_hook(*args))))
                return await self._in_thread(blocking_hook, *args)

            hook, style = threaded, HookStyle.ASYNC
        collect = self.kind is ModuleKind.PROCESSOR
        dedicated = [link for link in self.mailbox.links if link.dedicated]
        if dedicated:
            await self._run_crew(hook, style, with_port, collect, dedicated)
        else:
            await self._main_loop(hook, style, with_port, collect)

    async def _run_crew(
        self,
        hook: Callable[..., Any],
        style: HookStyle,
        with_port: bool,
        collect: bool,
        dedicated: list[Link],
    ) -> None:
        """The main loop plus the worker tasks of links with ``workers != 1``; the first
        module failure in any of them cancels the others (their items go back)."""
        failures: list[RunError] = []
        async with trio.open_nursery() as crew:

            async def guarded(work: Callable[..., Any], *args: Any) -> None:
                try:
                    await work(*args)
                except _Stop:
                    pass
                except RunError as error:
                    if not failures:
                        failures.append(error)
                    crew.cancel_scope.cancel()

            crew.start_soon(guarded, self._main_loop, hook, style, with_port, collect)
            for link in dedicated:
                fn = self._for_port(hook, with_port, link)
                if link.spec.workers == 0:
                    crew.start_soon(guarded, self._spawner, link, fn, style, collect, guarded)
                else:
                    for _ in range(link.spec.workers):
                        crew.start_soon(guarded, self._link_worker, link, fn, style, collect)
        if failures:
            raise failures[0]

    @staticmethod
    def _for_port(hook: Callable[..., Any], with_port: bool, link: Link) -> Callable[..., Any]:
        if not with_port:
            return hook
        port = link.spec.target_port
        return lambda item: hook(item, port)

    async def _link_worker(
        self, link: Link, fn: Callable[..., Any], style: HookStyle, collect: bool
    ) -> None:
        """One of a link's N workers: take one item at a time, in turn with the others."""
        while not self._stopping:
            if link.items:
                batch = link.take(1)
                self.received += 1
                if self._debug:
                    self._trace("message.received", batch, link=link.name)
                self.set_state(ActorState.RUNNING)
                await self._handle_general(fn, style, link, batch, collect)
            elif link.closed:
                return
            else:
                await self.mailbox.wait()

    async def _spawner(
        self,
        link: Link,
        fn: Callable[..., Any],
        style: HookStyle,
        collect: bool,
        guarded: Callable[..., Any],
    ) -> None:
        """Spawn mode: a fresh task per item, at most ``spawn_limit`` at once."""
        slots = trio.Semaphore(link.spec.spawn_limit)

        async def one(batch: list[Any]) -> None:
            try:
                await self._handle_general(fn, style, link, batch, collect)
            finally:
                slots.release()

        async with trio.open_nursery() as tasks:
            while not self._stopping:
                if link.items:
                    await slots.acquire()
                    if not link.items or self._stopping:
                        slots.release()
                        continue
                    batch = link.take(1)
                    self.received += 1
                    if self._debug:
                        self._trace("message.received", batch, link=link.name)
                    self.set_state(ActorState.RUNNING)
                    tasks.start_soon(guarded, one, batch)
                elif link.closed:
                    return
                else:
                    await self.mailbox.wait()

    async def _main_loop(
        self, hook: Callable[..., Any], style: HookStyle, with_port: bool, collect: bool
    ) -> None:
        mailbox = self.mailbox
        limit = self.settings.max_batch
        feedback_closed = not any(link.spec.feedback for link in mailbox.links)
        while True:
            if self._stopping:
                return
            got = mailbox.take(limit)
            if got is None:
                if mailbox.exhausted():
                    if feedback_closed:
                        return
                    # The real inputs are done: feedback links close too; what they
                    # already hold is still handled.
                    for link in mailbox.links:
                        if link.spec.feedback:
                            link.close_receiver()
                    feedback_closed = True
                    continue
                self.set_state(ActorState.BLOCKED, blocked_on="input")
                await mailbox.wait()
                self._deadline = self._now() + self._quantum
                continue
            link, batch = got
            self.received += len(batch)
            if self._debug:
                self._trace("message.received", batch, link=link.name)
            self.set_state(ActorState.RUNNING)
            fn = hook
            if with_port:
                port = link.spec.target_port
                fn = lambda item, port=port: hook(item, port)  # noqa: E731
            if style is HookStyle.SYNC:
                await self._handle_sync(fn, link, batch, collect)
            else:
                await self._handle_general(fn, style, link, batch, collect)
            if mailbox.remote:
                link.settle()  # acknowledged now, not when this link is next read

    def _message_id(self, item: Any, sequence: int) -> str:
        return item.id if isinstance(item, Data) else f"{self.name}#{sequence}"

    def _give_back(self, link: Link, items: list[Any]) -> None:
        """Put items taken but not handled back at the front of their link."""
        if items:
            link.requeue(items)
            self.received -= len(items)

    def _item_failed(
        self, exc: Exception, link: Link, item: Any, rest: list[Any], sequence: int
    ) -> RunError:
        """The module raised on ``item``: retry it later or dead-letter it; requeue the rest.

        Returns the RunError that ends this incarnation.
        """
        message_id = self._message_id(item, sequence)
        hook = "process()" if self.kind is ModuleKind.PROCESSOR else "consume()"
        error = RunError(self.name, f"{hook} raised {_describe(exc)}", message_id=message_id)
        error.__cause__ = exc
        attempts = self._suspect_attempts + 1 if item is self._suspect else 1
        if attempts < self.attempts:
            self._suspect, self._suspect_attempts = item, attempts
            self._give_back(link, [item, *rest])
        else:
            self._suspect, self._suspect_attempts = None, 0
            self._give_back(link, rest)
            self.dead_lettered += 1
            letter = DeadLetter(item, self.name, exc, message_id, attempts)
            self.log.error(
                "actor.dead_letter", message_id=message_id, attempts=attempts, error=_describe(exc)
            )
            if self._dead_letter is not None:
                self._dead_letter(letter)
        return error

    async def _handle_sync(
        self, fn: Callable[[Any], Any], link: Link, batch: list[Any], collect: bool
    ) -> None:
        now = self._now
        base = self.received - len(batch)
        items = iter(batch)
        out: list[Any] = []
        item: Any = None
        try:
            while True:
                deadline = self._deadline
                self._last_check = now()
                countdown = self._stride
                finished = True
                out = []
                if collect:
                    append = out.append
                    for item in items:
                        result = fn(item)
                        if result is None:
                            self.filtered += 1
                        elif type(result) is Many:
                            if result.items:
                                out.extend(result.items)
                            else:
                                self.filtered += 1
                        else:
                            append(result)
                        countdown -= 1
                        if not countdown:
                            if self._quantum_spent(deadline):
                                finished = False
                                break
                            countdown = self._stride
                    if out:
                        sending, out = out, []
                        await self._send(sending, "out")
                else:
                    for item in items:
                        fn(item)
                        countdown -= 1
                        if not countdown:
                            if self._quantum_spent(deadline):
                                finished = False
                                break
                            countdown = self._stride
                if now() >= self._deadline:
                    await self._yield()
                if finished:
                    return
                if self._stopping:
                    raise _Stop
        except Exception as exc:
            if isinstance(exc, RunError | _Stop):
                self._give_back(link, list(items))
                raise
            # `item` raised: the outputs of the items before it go out first.
            self._owe(out, "out")
            rest = list(items)
            sequence = base + len(batch) - len(rest)
            raise self._item_failed(exc, link, item, rest, sequence) from exc
        except BaseException:
            self._give_back(link, list(items))
            raise

    async def _handle_general(
        self,
        fn: Callable[[Any], Any],
        style: HookStyle,
        link: Link,
        batch: list[Any],
        collect: bool,
    ) -> None:
        base = self.received - len(batch)
        for index, item in enumerate(batch):
            try:
                results = await self._call_item_hook(fn, style, item)
            except Exception as exc:
                raise self._item_failed(
                    exc, link, item, batch[index + 1 :], base + index + 1
                ) from exc
            except BaseException:
                # Cancelled inside the hook: the item was not handled; keep it.
                self._give_back(link, batch[index:])
                raise
            try:
                if collect:
                    if results:
                        await self._send(results, "out")
                    else:
                        self.filtered += 1
                if self._now() >= self._deadline:
                    await self._yield()
                if self._stopping:
                    raise _Stop
            except BaseException:
                self._give_back(link, batch[index + 1 :])
                raise

    async def _call_item_hook(
        self, fn: Callable[[Any], Any], style: HookStyle, item: Any
    ) -> list[Any]:
        if style is HookStyle.SYNC_GEN:
            return list(fn(item))
        if style is HookStyle.ASYNC_GEN:
            return [value async for value in fn(item)]
        result = fn(item)
        if style is not HookStyle.SYNC:
            result = await result
        if result is None:
            return []
        if type(result) is Many:
            return list(result.items)
        return [result]
