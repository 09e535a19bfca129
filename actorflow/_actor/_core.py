"""Driving one module: its identity, its states, the supervisor's Worker protocol.

An :class:`Actor` outlives the module instances it drives. Each *incarnation* is a fresh
module built from the same class and config, run by a fresh :class:`Incarnation` and
the driver of its kind; the mailbox, the links, the counters and any output not yet
delivered belong to the actor and survive a restart, so a crash loses no queued item.

An actor handles what is already in its mailbox without yielding to the scheduler until
its *quantum* (a time budget, see :mod:`._pacing`) is spent, then checkpoints. That is
what makes actorflow fast on trio: scheduling costs are paid once per quantum or once
per empty mailbox, not once per message; and it is what keeps it fair: no actor holds
the loop much longer than a quantum while others wait.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

import trio

from .._data import Data
from .._exceptions import CleanupError, RunError, describe
from .._graph import ModuleSpec
from .._hooks import HookStyle, call_hook, hook_style
from .._lifecycle import cleanup, construct, is_default, validate
from .._link import Link, Mailbox
from .._logging import enabled_for, get_logger
from .._module import Module, ModuleKind, RunningSystem, attach
from .._reportable import fields, finite, task_text
from .._settings import Settings
from .._snapshots import journal_of, run_snapshotted, saved
from .._status import ActorState, ActorStatus, DropReason, EndReason
from ._consumer import ConsumerDriver
from ._incarnation import Incarnation, Stop
from ._outbox import Outbox
from ._pacing import Pacing
from ._peers import Peers, peers_of
from ._retries import DeadLetter, Retries
from ._room import Hops
from ._source import SourceDriver, stop_source
from ._stepper import StepDriver, read_port, read_synced
from ._threads import Threads

__all__ = ["Actor"]

# Transitions that happen once per batch are logged at debug level; the rest at info.
_RUNNING, _BLOCKED, _READY = ActorState.RUNNING, ActorState.BLOCKED, ActorState.READY


def _frequent(state: ActorState) -> bool:
    """Whether ``state`` is one an actor enters once per batch (by identity: hashing an
    enum member runs Python code, and this is asked on every batch)."""
    return state is _RUNNING or state is _BLOCKED or state is _READY


class _Driver(Protocol):
    """What the actor asks of the driver of its current incarnation."""

    def run(self) -> Awaitable[None]: ...

    def link_added(self, link: Link) -> None: ...


_CONSUMERS = (ModuleKind.PROCESSOR, ModuleKind.SINK)

# The driver of each kind, chosen once when an incarnation starts.
_DRIVERS: dict[ModuleKind, Callable[[Actor, Incarnation], _Driver]] = {
    ModuleKind.SOURCE: SourceDriver,
    ModuleKind.PROCESSOR: ConsumerDriver,
    ModuleKind.SINK: ConsumerDriver,
    ModuleKind.PROGRESSIVE: StepDriver,
}


def _named(fields: dict[str, Any]) -> dict[str, Any]:
    """A traced batch's log fields: its ``link`` (the ``Link``) by name, built only
    when logged (a link's name is built when asked)."""
    link = fields.get("link")
    return fields if link is None else {**fields, "link": link.name}


class Actor:
    """The runtime object that drives one module (a Worker for the supervisor)."""

    __slots__ = (
        "_at_end",
        "_cleaned",
        "_cleanup_errors",
        "_driver",
        "_dropped",
        "_fresh",
        "_info",
        "_keep",
        "_on_terminated",
        "_peers",
        "_posted",
        "_ready_event",
        "_system",
        "_system_stopping",
        "ancestors",
        "attempts",
        "blocked_on",
        "debug",
        "emitted",
        "errors",
        "failure",
        "filtered",
        "fused_into",
        "fused_scope",
        "hops",
        "incarnation",
        "incarnations",
        "kind",
        "linked",
        "log",
        "mailbox",
        "module",
        "name",
        "outbox",
        "owes_cleanup",
        "pacing",
        "progress",
        "ready",
        "reason",
        "received",
        "restarts",
        "retries",
        "settings",
        "spec",
        "state",
        "step_size",
        "suspended",
        "task",
        "terminated",
        "thread_limiter",
        "threads",
        "upstream",
        "waits_for",
        "watched",
    )

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
        self.kind: ModuleKind = type(module).kind  # ``self.kind`` is the module's own
        self.settings = settings
        self.attempts = attempts
        self.log = get_logger(actor=spec.name)
        # Batches come and go thousands of times a second: debug events only if read.
        self.debug = self.watched = enabled_for(self.log, logging.DEBUG)
        self._on_terminated = on_terminated
        self._system_stopping = system_stopping
        self.state = ActorState.CREATED
        self.blocked_on: str | None = None
        self.mailbox = Mailbox()
        self.pacing = Pacing(settings.quantum, self.set_state)
        self.outbox = Outbox(self, self.pacing, {port: [] for port in spec.output_ports()})
        self.retries = Retries(spec.name, attempts, self.log, dead_letter)
        self.incarnation: Incarnation | None = None
        self._driver: _Driver | None = None  # the running incarnation's
        self.upstream: list[Actor] = []  # its non-feedback feeders: cleaned up first
        self.ancestors = 0  # how many actors feed it, directly or not (set by wiring)
        self._init_counters()
        self._fresh = True
        self.ready = False
        self._ready_event: trio.Event | None = None
        self.waits_for: list[tuple[Actor, float]] = []
        """Sources this actor waits to be ready before it handles anything."""
        self.suspended = False
        self.progress: tuple[float, float | None] | None = None
        self.task: str = spec.factory.__qualname__
        """What it is doing: its module's class name, unless the module said otherwise."""
        self._info: dict[str, Any] | None = None
        self.step_size: int | None = None
        self._posted: list[tuple[str, Any]] | None = None
        self._system: RunningSystem | None = None
        self._peers: Peers | None = None
        self.linked = False  # whether it ever had an input link
        self._keep: dict[str, Any] | None = None
        self._at_end: list[Callable[[], None]] | None = None
        self.thread_limiter: trio.CapacityLimiter | None = None  # the system's, shared
        self.threads = Threads()  # its blocking calls abandoned by a cancellation
        attach(module, self)
        self.log.info("actor.state", state=ActorState.CREATED.value, kind=self.kind.value)

    def _init_counters(self) -> None:
        self.hops: Hops | None = None  # see _tracing; ``watched``: hops or debug logs
        self.received = 0
        self.emitted = 0
        self.filtered = 0
        self.errors = 0
        self.restarts = 0
        self.incarnations = 0
        self._dropped: dict[str, int] | None = None
        self.reason: str | None = None
        self.failure: RunError | None = None
        self._cleanup_errors: list[CleanupError] | None = None
        self._cleaned: trio.Event | None = None
        self.owes_cleanup = False
        """An incarnation runs and its module's cleanup() has not run yet: those
        downstream of a cancelled system wait for that, and for nothing else."""
        self.terminated = False
        # Fusion: whose task runs its items by call; the scope of that chain's first call.
        self.fused_into: str | None = None
        self.fused_scope: trio.CancelScope | None = None

    # -- what outlives an incarnation, made on first use -------------------------------

    @property
    def outputs(self) -> dict[str, list[Link]]:
        """Its output ports and the links leaving each."""
        return self.outbox.outputs

    @property
    def dead_lettered(self) -> int:
        return self.retries.dead_lettered

    # Read-only views of what is made on first write (count_drop, set_info, _clean_up).
    @property
    def dropped(self) -> dict[str, int]:
        return self._dropped or {}

    @property
    def info(self) -> dict[str, Any]:
        return self._info or {}

    @property
    def cleanup_errors(self) -> list[CleanupError]:
        return self._cleanup_errors or []

    @property
    def keep(self) -> dict[str, Any]:
        """State that outlives an incarnation (an inlet's queue, an outlet's readers)."""
        if self._keep is None:
            self._keep = {}
        return self._keep

    @property
    def at_end(self) -> list[Callable[[], None]]:
        """Called once when the actor ends for good, to account for what ``keep`` holds."""
        if self._at_end is None:
            self._at_end = []
        return self._at_end

    @property
    def is_ready(self) -> trio.Event:
        """Set once a source is ready (see :meth:`Source.ready`)."""
        if self._ready_event is None:
            self._ready_event = trio.Event()
            if self.ready:
                self._ready_event.set()
        return self._ready_event

    @property
    def active(self) -> bool:
        """True until the runtime asks the module to stop."""
        incarnation = self.incarnation
        return incarnation is None or incarnation.active

    @property
    def retired(self) -> bool:
        """A source after a graceful system stop: done, whatever its restart type says."""
        return self.kind is ModuleKind.SOURCE and self._system_stopping()

    @property
    def finished(self) -> bool:
        """Not to be restarted, whatever its restart type (see :func:`_finished`)."""
        return _finished(self)

    def system_stopping(self) -> bool:
        return self._system_stopping()

    # -- state -------------------------------------------------------------------------

    def set_state(
        self, state: ActorState, blocked_on: str | None = None, *, churn: bool = False
    ) -> None:
        """Move to ``state`` and log it; at debug for per-batch and restart (``churn``) steps."""
        previous = self.state
        if previous is state and self.blocked_on == blocked_on:
            return
        self.state = state
        self.blocked_on = blocked_on
        if churn or (_frequent(state) and _frequent(previous)):
            if self.debug:
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

    def trace(self, event: str, items: list[Any], **fields: Any) -> None:
        """Spans if it traces; ids logged if debug (for ``actorflow logs --trace``)."""
        if self.hops is not None and not self.hops(event, items, fields.get("port")):
            return
        ids = [item.id for item in items if isinstance(item, Data)]
        if ids:
            self.log.debug(event, message_ids=ids, **_named(fields))

    def status(self) -> ActorStatus:
        return _status_of(self)

    def count_drop(self, count: int, reason: str) -> None:
        """Count ``count`` items this actor lost, for ``reason``."""
        if count > 0:
            dropped = self._dropped
            if dropped is None:
                dropped = self._dropped = {}
            dropped[reason] = dropped.get(reason, 0) + count

    def mark_ready(self) -> None:
        if not self.ready:
            self.ready = True
            if self._ready_event is not None:
                self._ready_event.set()
            self.log.info("actor.ready")

    # -- the Worker protocol -----------------------------------------------------------

    async def prepare(self) -> None:
        """Make a fresh incarnation: the first was built with the graph; a restart
        builds and validates a new module from the same class and config."""
        if self._fresh:
            self._fresh = False
            return
        spec = self.spec
        # An abandoned blocking call of the last incarnation must not run beside this
        # one; a cancellation meanwhile means no new one will start: no need to wait.
        if self.threads.abandoned:
            await self.threads.settle(self.settings.cleanup_timeout, self.log, shield=False)
        module = construct(self.name, spec.factory, spec.config, self.log)
        attach(module, self)
        if not is_default(module.validate):  # most modules validate nothing
            call = partial(self.lifecycle, blocking=module.blocking)
            await validate(self.name, module.validate, call, self.log)
        self.module = module
        self.restarts += 1
        self.set_state(ActorState.VALIDATED, churn=True)

    def keep_prepared(self) -> None:
        """Stopped once prepared, not run: the next start runs this module, unbuilt."""
        self._fresh = True

    async def run(self) -> None:
        """One incarnation: listen, handle items until the end of stream or a stop.

        Raises:
            RunError: The module raised; what it held was requeued or dead-lettered.
        """
        self.incarnations += 1
        self.owes_cleanup = True  # until _clean_up, at the end of this run
        self.linked = self.linked or bool(self.mailbox.links)
        incarnation = self.incarnation = Incarnation(self.incarnations, journal_of(self))
        self.reason = None
        self.set_state(ActorState.READY, churn=self.incarnations > 1)
        going_down = False
        try:
            if self.waits_for:
                await _wait_for_sources(self)
            self.pacing.start()
            if self.outbox.owed:
                await self.outbox.flush()
            driver = self._driver = _DRIVERS[self.kind](self, incarnation)
            await run_snapshotted(self, driver.run, Stop)
            if incarnation.reason is None:
                stopped = incarnation.stopping
                incarnation.reason = EndReason.STOPPED if stopped else EndReason.NORMAL
        except Stop:
            incarnation.reason = incarnation.reason or EndReason.STOPPED
        except RunError as error:
            _crashed(self, error)
            raise
        except Exception as exc:
            wrapped = RunError(self.name, describe(exc))
            wrapped.__cause__ = exc
            _crashed(self, wrapped)
            raise wrapped from exc
        except BaseException:
            killed = incarnation.killed
            incarnation.reason = EndReason.KILLED if killed else EndReason.CANCELLED
            # Not killed by its supervisor: the whole system is going down at once.
            going_down = not killed
            raise
        finally:
            self._driver = None
            self.reason = incarnation.reason
            await _clean_up(self, wait_for_upstream=going_down)

    def _current(self) -> Incarnation:
        """The running incarnation, or one standing in before the first run."""
        if self.incarnation is None:
            self.incarnation = Incarnation(self.incarnations)
        return self.incarnation

    async def request_stop(self) -> None:
        """Finish the current item, then end this incarnation (what it still holds is
        requeued). A source stops producing and its ``stop()`` hook runs."""
        self._current().stopping = True
        self.mailbox.notify()  # wherever it waits, it notices
        self.outbox.wake()
        if self.kind is ModuleKind.SOURCE:
            await stop_source(self, self._current())

    @property
    def system(self) -> RunningSystem | None:
        """The running System, for modules that change links (set when it is built)."""
        return self._system

    @system.setter
    def system(self, system: RunningSystem | None) -> None:
        self._system, self._peers = system, None if system is None else peers_of(system).join()

    def awaits_links(self) -> bool:
        """A processor or sink that never had an input link waits for one (a Peer)."""
        return not self.linked and not self.mailbox.links and self.kind in _CONSUMERS

    def wake_unlinked(self) -> None:
        self.mailbox.notify()

    def wait_for_links(self) -> bool:
        """Whether to wait for a first input link: while anything else still runs."""
        peers = self._peers
        return self.awaits_links() and peers is not None and peers.wait(self)

    def link_added(self, link: Link) -> None:
        """A link into this actor was added while the system runs (its mailbox lists it):
        the running incarnation serves it at once; the next finds it like any other."""
        self.linked = True
        if self._peers is not None:
            self._peers.linked(self)
        if self._driver is not None:
            self._driver.link_added(link)

    def on_kill(self) -> None:
        """The supervisor is about to cancel this incarnation."""
        self._current().killed = True

    async def stop_gracefully(self) -> None:
        """A graceful system stop: a source stops producing; after ``stop_timeout`` a
        ``start()`` that has not returned is cancelled."""
        incarnation = self._current()
        scope = incarnation.produce_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, trio.current_time() + self.settings.stop_timeout)
        with trio.move_on_after(self.settings.stop_timeout):
            await stop_source(self, incarnation)

    def terminate(self, reason: str) -> None:
        """End for good: pass the end of stream downstream and account for what is left."""
        if self.terminated:
            return
        self.terminated = True
        if self.reason != EndReason.FAILED and reason != EndReason.NORMAL:
            # Why it ended for good; a crash that was never followed by a restart
            # stays the reason.
            self.reason = reason
        # Outputs still owed downstream: deliver what fits now, count the rest.
        self.outbox.close()
        for finish in self._at_end or ():
            finish()
        _discard_inputs(self)
        failed = self.reason == EndReason.FAILED
        self.set_state(ActorState.INVALID if failed else ActorState.TERMINATED)
        if self._on_terminated is not None:
            self._on_terminated(self)
        if self._peers is not None:
            self._peers.ended(self)
        self.log.info(
            "actor.ended",
            reason=self.reason,
            received=self.received,
            restarts=self.restarts,
            dead_lettered=self.dead_lettered,
        )

    # -- calling the module --------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking sync call in a worker thread. If cancelled, the call is
        abandoned (it finishes in its thread; its result is dropped)."""
        return await self.threads.run(fn, args, self.thread_limiter)

    async def lifecycle(self, fn: Callable[[], Any], *, blocking: bool | None = None) -> Any:
        """Call a lifecycle hook, in a thread when the module blocks and it is sync.

        ``blocking`` defaults to the current module's; a module being built passes its own.
        """
        if blocking is None:
            blocking = self.module.blocking
        if blocking and hook_style(fn) is HookStyle.SYNC:
            return await self.in_thread(fn)  # an awaitable it returns is awaited there
        return await call_hook(fn)

    # -- the module's runtime (ModuleContext) ------------------------------------------

    async def emit(self, item: Any, port: str = "out") -> None:
        """Send one item on ``port``, then yield if the quantum is spent."""
        outbox = self.outbox
        if port not in outbox.outputs:
            port = outbox.port(port)
        await outbox.send([item], port)
        pacing = self.pacing
        if pacing.now() >= pacing.deadline:
            await pacing.yield_()

    def set_progress(self, done: float, total: float | None) -> None:
        self.progress = (finite(done) or 0.0, finite(total))  # coerced: see _reportable

    def set_info(self, task: str | None, info: dict[str, Any]) -> None:
        if task is not None:
            self.task = task_text(task)
        self._info = fields(info)

    def read_port(self, port: str, limit: int | None) -> list[Any]:
        """Take what arrived on input ``port`` (for progressive modules)."""
        taken = read_port(self, port, limit)
        self.received += len(taken)
        return taken

    def read_synced(
        self, ports: Sequence[str], key: Callable[[Any], Any] | None, limit: int | None
    ) -> list[tuple[Any, ...]]:
        """Take the items every port has produced, joined (for progressive modules)."""
        return read_synced(self, ports, key, limit)

    def waiting(self, port: str) -> int:
        """How many items wait on input ``port``."""
        return sum(len(link.items) for link in self.mailbox.links if link.spec.target_port == port)

    def input_ports(self) -> tuple[str, ...]:
        """The input ports that have a link, in link order."""
        return tuple({link.spec.target_port: None for link in self.mailbox.links})

    def inputs_done(self) -> bool:
        """Whether every input has ended and been read to the end."""
        return self.mailbox.exhausted()

    def post(self, item: Any, port: str) -> None:
        """Keep a result posted during a step; sent when the step returns."""
        port = self.outbox.port(port)
        if self._posted is None:
            self._posted = []
        self._posted.append((port, item))

    def take_posted(self) -> list[tuple[str, Any]]:
        posted, self._posted = self._posted or [], None
        return posted

    def clear_posted(self) -> None:
        self._posted = None

    def suspend(self) -> None:
        """Pause a progressive module between steps."""
        if not self.suspended:
            self.suspended = True
            self.log.info("actor.suspending")

    def resume(self) -> None:
        """Let a suspended progressive module take steps again."""
        if self.suspended:
            self.suspended = False
            self.mailbox.notify()
            self.log.info("actor.resumed")


def _finished(actor: Actor) -> bool:
    """Whether the last incarnation's end is one no restart can undo: a source after a
    graceful system stop (whatever its end); any other module that ended normally once
    every input had ended (its end of stream), or during a graceful stop. A new
    incarnation would only find the same end at once."""
    if actor.kind is ModuleKind.SOURCE:
        return actor.system_stopping()
    if actor.reason != EndReason.NORMAL:
        return False
    if actor.system_stopping():
        return True
    # A progressive module without inputs ends when it says so, like a source.
    had_inputs = actor.linked or actor.kind in _CONSUMERS
    return had_inputs and actor.mailbox.exhausted()


async def _wait_cleaned_up(actor: Actor) -> None:
    """Wait until the actor's current module instance has been cleaned up (at once if
    none owes a cleanup: one that never ran, or one cleaned up already)."""
    if not actor.owes_cleanup:
        return
    if actor._cleaned is None:
        actor._cleaned = trio.Event()
    await actor._cleaned.wait()


def _cleaned_up(actor: Actor) -> None:
    """The current module instance's cleanup() is over: wake whoever waits for that."""
    actor.owes_cleanup = False
    cleaned, actor._cleaned = actor._cleaned, None
    if cleaned is not None:
        cleaned.set()


def _discard_inputs(actor: Actor) -> None:
    """The actor ended for good: its inputs take nothing more; what they hold is lost."""
    for link in actor.mailbox.links:
        link.close_receiver()
        count = link.discard(DropReason.CONSUMER_TERMINATED)
        if count:
            actor.log.warning(
                "link.dropped", link=link.name, reason=DropReason.CONSUMER_TERMINATED, count=count
            )


def _crashed(actor: Actor, error: RunError) -> None:
    """The module failed in run: keep the failure, count it, say so."""
    # Keep the failure, not the locals (a driver's batch) of the frames it left (the
    # first is run's, which cannot be cleared: trying raises, and costs as much).
    tb = error.__traceback__
    traceback.clear_frames(tb.tb_next if tb is not None else None)
    actor.failure = error
    actor.errors += 1
    actor.reason = EndReason.FAILED
    if actor.incarnation is not None:
        actor.incarnation.reason = EndReason.FAILED
    actor.set_state(ActorState.INVALID, churn=True)
    verdict, actor.retries.last = actor.retries.last, None
    if verdict is not None and verdict.error is not error:
        verdict = None  # another failure's (its event was never written)
    actor.log.error(
        "actor.failed",
        phase="run",
        error=verdict.described if verdict else describe(error.__cause__ or error),
        message_id=error.message_id,
        restarts=actor.restarts,
        incarnation=actor.incarnations,
        **(verdict.fields(error) if verdict is not None else {}),
        **actor.retries.tracebacks.fields(error, actor.incarnations),
    )


_RECEIVED_SHOWN = "actorflow.received_shown"
"""The most ``received`` an actor ever reported (in its ``keep``): items given back after
a crash take the count down until taken again, and a reported counter never goes down."""


def _status_of(actor: Actor) -> ActorStatus:
    """What ``actor`` reports in ``System.status()``."""
    keep = actor.keep
    received = keep[_RECEIVED_SHOWN] = max(actor.received, keep.get(_RECEIVED_SHOWN, 0))
    return ActorStatus(
        name=actor.name,
        kind=actor.kind.value,
        state=actor.state,
        blocked_on=actor.blocked_on,
        received=received,
        emitted=actor.emitted,
        filtered=actor.filtered,
        dropped=dict(actor.dropped),
        mailbox_depth=actor.mailbox.depth(),
        errors=actor.errors,
        reason=actor.reason,
        restarts=actor.restarts,
        dead_lettered=actor.dead_lettered,
        progress=actor.progress,
        step_size=actor.step_size,
        task=actor.task,
        info=dict(actor.info),
        fused_into=actor.fused_into,
        snapshots=saved(actor._keep),
    )


async def _clean_up(actor: Actor, *, wait_for_upstream: bool) -> None:
    """The end of an incarnation: its module's cleanup(), producers first when the
    whole system is going down; shielded, unless there is nothing to wait for (the
    scope cost a tenth of a restart)."""
    if not wait_for_upstream and not actor.threads.abandoned and is_default(actor.module.cleanup):
        actor.set_state(ActorState.ZOMBIE, churn=True)
        _cleaned_up(actor)
        return
    with trio.CancelScope(shield=True):
        try:
            await _clean_up_module(actor, wait_for_upstream=wait_for_upstream)
        finally:
            _cleaned_up(actor)


async def _clean_up_module(actor: Actor, *, wait_for_upstream: bool) -> None:
    actor.set_state(ActorState.ZOMBIE, churn=True)
    timeout = actor.settings.cleanup_timeout
    if wait_for_upstream:
        # The whole system is going down at once: clean up producers first. Only a
        # producer whose module still owes its cleanup is waited for: one between
        # incarnations (stopped for a restart that the cancel ends) has none left to
        # run, and no one would ever say it ran. Each upstream cleanup is bounded by its
        # own timeout, so this wait is bounded by the timeouts of everything upstream;
        # the bound is only a safety net.
        with trio.move_on_after(timeout * actor.ancestors):
            for upstream in actor.upstream:
                await _wait_cleaned_up(upstream)
    # A blocking hook abandoned by the cancellation is still inside the module.
    await actor.threads.settle(timeout, actor.log)
    error = await cleanup(actor.name, actor.module.cleanup, actor.lifecycle, timeout, actor.log)
    if error is not None:
        if actor._cleanup_errors is None:
            actor._cleanup_errors = []
        actor._cleanup_errors.append(error)
        actor.errors += 1


async def _wait_for_sources(actor: Actor) -> None:
    """Wait until every source this actor depends on is ready (or fail after its timeout)."""
    for source, timeout in actor.waits_for:
        if source.ready:
            continue
        actor.set_state(ActorState.BLOCKED, blocked_on=f"ready:{source.name}")
        with trio.move_on_after(timeout):
            await source.is_ready.wait()
        if not source.ready:
            raise RunError(
                actor.name,
                f"waited {timeout:g} s for source {source.name!r} to be ready; it "
                "neither called ready(), sent an item, nor returned from start()",
            )


def build_next(actor: Actor, spec: ModuleSpec) -> None:
    """``actor``'s next ``prepare()`` builds its module from ``spec`` afresh (a replace
    whose old module could not be built again: the start says why, supervised)."""
    actor.spec, actor.task = spec, spec.factory.__qualname__
    actor._fresh = False


def adopt(actor: Actor, spec: ModuleSpec, module: Module) -> None:
    """Have ``actor`` take over ``module`` (built and validated from ``spec``: a hot
    upgrade, see ``actorflow._changes``) as its next incarnation's, keeping its mailbox,
    links, counters and what it owes; its next ``prepare()`` builds nothing."""
    actor.spec, actor.module, actor.task = spec, module, spec.factory.__qualname__
    outputs = actor.outbox.outputs
    ports = spec.output_ports()
    for gone in [port for port in outputs if port not in ports]:
        del outputs[gone]  # no link leaves it: the graph was validated
    for port in ports:
        outputs.setdefault(port, [])
    actor.outbox.main = "out" if "out" in outputs or len(outputs) != 1 else next(iter(outputs))
    actor._fresh = True
