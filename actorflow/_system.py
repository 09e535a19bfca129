"""Running a validated graph: construct, validate, start, supervise and stop its actors."""

from __future__ import annotations

import socket
import time
from collections.abc import (
    AsyncIterator,
    Collection,
    Iterable,
    Sequence,
)
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any, final

import attrs
import trio

from . import _changes
from ._actor import Actor, DeadLetter
from ._changes import Changes
from ._checks import check_seconds, short
from ._collector import CollectorRest
from ._endpoints import Inlet, Outlet, OutletReader, Variable
from ._endpoints import count_unread as count_outlet_unread
from ._exceptions import (
    ActorflowError,
    CleanupError,
    GraphError,
    RunError,
    ValidationError,
    describe,
    single_errors,
)
from ._graph import Graph, copied
from ._heartbeat import HttpReporter, Reporter, beat
from ._interrupt import (
    STUCK_AFTER,
    SignalRequests,
    ending_as_signals,
    exception_for,
    handling_signals,
    run_interruptible,
    signal_name,
)
from ._lifecycle import construct, validate
from ._logging import get_logger
from ._module import ModuleKind
from ._observing import observe, watch_system
from ._settings import Settings
from ._status import ActorState, SystemState, SystemStatus
from ._store import MemoryStore, Store
from ._supervisor import Supervisor
from ._transport import Pump, RemoteInLink
from ._validation import placement_problems
from ._wiring import Wiring

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from ._timings import HandlingTimes
    from ._tracing import Tracing

__all__ = [
    "System",
    "count_unread",
    "end_reason",
    "open_system",
    "preview_error",
    "run",
]


@final
class System:
    """A graph while it runs: its actors under a supervisor tree, its links, and the
    handles to watch and stop it.

    Get one from :func:`open_system`; do not construct it directly.
    """

    def __init__(
        self,
        graph: Graph,
        settings: Settings,
        store: Store | None = None,
        reporters: Sequence[Reporter] = (),
        only: Collection[str] | None = None,
    ) -> None:
        graph = copied(graph)  # live changes change the system's graph, not the caller's
        self.graph = graph
        self.here: set[str] = {
            spec.name for spec in graph.modules if only is None or spec.name in only
        }
        """The modules that run in this process (all, unless ``only`` was given; those
        added while it runs too)."""
        self._only = None if only is None else tuple(only)
        self.settings = settings
        self.reporters = list(reporters)
        self.started_at = time.time()
        self._heartbeats = trio.CancelScope()
        self.store: Store = store if store is not None else MemoryStore()
        """The shared data store modules read and write through ``self.shared``."""
        self.state = SystemState.STARTING
        self.log = get_logger(graph=graph.name)
        self._wiring = Wiring(graph, settings, self.here, self.log)
        """The actors and every join between them."""
        stopping, observe = self._stopping_now, partial(_observe_actor, self)
        self.changes = Changes(
            graph, self._wiring, self.log, self, stopping, lambda: self.root, self.here, observe
        )
        """Modules added, removed, stopped, started and replaced while it runs."""
        self._failure: ActorflowError | None = None
        self._nursery: trio.Nursery | None = None
        self._all_done = trio.Event()
        self._quiet = trio.Event()  # every actor has ended, and every pump too
        self._pumps_left = 0
        self.root: Supervisor | None = None
        self._stopping = False
        self._running = False
        """The actors have started (a stop asked before waits for this)."""
        self._drain_after: float | None = None
        """The drain deadline of a stop asked before the actors had started."""
        self._starting: trio.CancelScope | None = None
        """Around start-up while signals are handled: a signal then cancels it."""
        self._signals: SignalRequests | None = None
        """The signals this system handles (``handle_signals``), if it does."""
        self._collector = CollectorRest()
        """Rests while the graph is built, then leaves what was built alone."""
        self.metrics_address: str | None = None
        """``HOST:PORT`` where ``/metrics`` is served (``Settings.metrics``), once bound."""
        self._listeners: list[trio.SocketListener] | None = None
        self._tracing: Tracing | None = None
        self._services = trio.CancelScope()  # around the metrics endpoint
        self.dashboard_url: str | None = None
        """The dashboard's page (``http://127.0.0.1:8080/``), if it has one."""

    @property
    def _actors(self) -> dict[str, Actor]:
        """The actors by name: the wiring owns them (kept for tests that look inside)."""
        return self._wiring.actors

    # -- public handles ----------------------------------------------------------------

    @property
    def actors(self) -> tuple[str, ...]:
        """Names of the system's actors, in declaration order."""
        return tuple(self._wiring.actors)

    @property
    def dead_letters(self) -> tuple[DeadLetter, ...]:
        """The most recent dead letters (up to 1000), oldest first."""
        return tuple(self._wiring.dead_letters)

    def supervisor(self, name: str | None = None) -> Supervisor:
        """The root supervisor, or the group supervisor called ``name``.

        Raises:
            KeyError: There is no group of that name.
        """
        if name is None:
            assert self.root is not None
            return self.root
        supervisors = self._wiring.supervisors
        try:
            return supervisors[name]
        except KeyError:
            known = ", ".join(repr(n) for n in supervisors) or "none"
            raise KeyError(f"no supervisor {name!r} (groups: {known})") from None

    def status(self) -> SystemStatus:
        """A snapshot of every actor and link, taken without yielding."""
        return SystemStatus(
            graph=self.graph.name,
            state=self.state,
            actors={name: actor.status() for name, actor in self._wiring.actors.items()},
            links={name: link.status() for name, link in self._wiring.by_name().items()},
            removed=dict(self.changes.removed),
        )

    async def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop gracefully: every source stops producing (and every remote link whose
        producer runs elsewhere stops reading from its stream; one whose producer runs
        here reads on to the end that producer writes), the end of stream flows down,
        and the system ends once everything queued has been handled.

        A source whose ``start()`` has not returned ``stop_timeout`` seconds later is
        cancelled. Returns at once; leave the ``async with`` block to wait for the end.

        Args:
            drain_timeout: If given, the system is cancelled (see :meth:`cancel`) if it
                has not ended this many seconds later: the drain has a deadline.

        Raises:
            ValueError: ``drain_timeout`` is not a duration (a microsecond to a year).
        """
        if drain_timeout is not None:
            check_seconds("drain_timeout", drain_timeout)
        self._request_stop(drain_timeout)

    def _request_stop(self, drain_timeout: float | None) -> None:
        """:meth:`stop` without awaiting (a signal asks for it from between tasks); asked
        before the actors have started, it takes effect once they have. A live change
        under way (``System.add``, ``replace``, ...) finishes first; any later one is
        refused."""
        self.changes.closed = True
        if self.state in (SystemState.STARTING, SystemState.RUNNING):
            self.state = SystemState.STOPPING
            self.log.info("system.stopping", drain_timeout=drain_timeout)
        if self._nursery is None or not self._running:
            self._stopping = True
            self._drain_after = drain_timeout
        elif self.changes.lock.locked() or self.changes.stopped:  # see _stop_after_change
            self._nursery.start_soon(self._stop_after_change)
            if drain_timeout is not None:  # a change that hangs does not hold it off
                self._nursery.start_soon(self._drain_deadline, drain_timeout)
        else:
            self._stop_actors(drain_timeout)

    async def _stop_after_change(self) -> None:
        """The graceful stop, once the live change under way has finished and the
        stopped inlets run again (so that they hand on what the host sent them)."""
        async with self.changes.lock:
            try:
                await self.changes.restart_stopped(inlets=True)
            finally:
                self._stop_actors(None)

    def _stop_actors(self, drain_timeout: float | None) -> None:
        """Ask every source and pump to stop, and every stopped module to drain."""
        assert self._nursery is not None
        self._stopping = True
        for actor in self._wiring.actors.values():
            actor.resume()  # a suspended module must be able to drain and end
            if actor.kind is ModuleKind.SOURCE and not actor.terminated:
                self._nursery.start_soon(actor.stop_gracefully)
        if self.changes.stopped:
            self._nursery.start_soon(self.changes.start_stopped)  # so that they drain
        for pump in self._wiring.pumps:
            # A remote link's receiving half is a source here: it stops reading, and
            # what it holds is handled; the rest stays in the stream for the group.
            # Unless its producer runs here too: then it reads on to the end that
            # producer writes once drained (else that producer, its stream at its
            # bound, would wait for room no one here makes).
            pump.stop(read_on=_drains_through(pump, self.here))
        if drain_timeout is not None and not self._quiet.is_set():
            self._nursery.start_soon(self._drain_deadline, drain_timeout)

    async def _drain_deadline(self, seconds: float) -> None:
        """Cancel the system if it has not drained ``seconds`` from now."""
        with trio.move_on_after(seconds):
            await self._quiet.wait()  # a pump may still write what its producer sent
            return
        self.log.warning("system.drain_timeout", seconds=seconds)
        self.cancel()

    def _signalled(self, signum: int, count: int) -> None:
        """A SIGINT or SIGTERM (``count``-th) reached the run: the first stops the system
        gracefully within ``drain_timeout``, a later one cancels it; before the actors
        have started, one aborts the start-up (nothing started, nothing to clean up)."""
        name = signal_name(signum)
        if self._starting is not None:
            self.log.warning("system.signal", signal=name, action="abort start-up")
            self._starting.cancel()
        elif count == 1:
            drain = self.settings.drain_timeout
            self.log.warning("system.signal", signal=name, action="stop", drain_timeout=drain)
            self._request_stop(drain)
        else:
            self.log.warning("system.signal", signal=name, action="cancel")
            self.cancel()

    add = _changes.add
    remove = _changes.remove
    stop_module = _changes.stop_module
    start_module = _changes.start_module
    replace = _changes.replace

    add_link = _changes.add_link
    remove_link = _changes.remove_link

    def _progressive(self, name: str) -> Actor:
        actor = self._wiring.actor(name)
        if actor.kind is not ModuleKind.PROGRESSIVE:
            raise TypeError(
                f"module {name!r} is a {type(actor.module).__qualname__}; only progressive "
                "modules can be suspended and resumed"
            )
        return actor

    def suspend(self, name: str) -> None:
        """Pause the progressive module ``name`` after its current step (state
        ``suspended``) until :meth:`resume`.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: It is not a progressive module.
        """
        self._progressive(name).suspend()

    def resume(self, name: str) -> None:
        """Let a suspended progressive module take steps again."""
        self._progressive(name).resume()

    async def set(self, name: str, value: Any) -> None:
        """Set the :class:`Variable` module ``name`` to ``value``; it is emitted downstream.

        Waits while the variable has ``pending`` sets queued.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not a Variable.
            RuntimeError: The variable has stopped.
        """
        actor = self._wiring.actor(name)
        module = actor.module
        if not isinstance(module, Variable):
            raise TypeError(f"module {name!r} is a {type(module).__qualname__}, not a Variable")
        if actor.terminated:
            raise RuntimeError(f"variable {name!r} has stopped")
        await module.set(value)

    def _endpoint(self, name: str, kind: type[Any]) -> Any:
        module = self._wiring.actor(name).module
        if not isinstance(module, kind):
            raise TypeError(
                f"module {name!r} is a {type(module).__qualname__}, not an {kind.__name__}"
            )
        return module

    async def send(self, name: str, item: Any) -> None:
        """Send ``item`` into the :class:`Inlet` module ``name``; it is emitted downstream.

        Waits while the inlet's buffer is full (backpressure reaches the host).

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not an Inlet.
            RuntimeError: The inlet was closed or has stopped.
        """
        inlet: Inlet = self._endpoint(name, Inlet)
        await inlet.send(item)

    async def close(self, name: str) -> None:
        """Close the :class:`Inlet` ``name``: what was sent is still emitted, then its
        stream ends, and the graph can end by itself once every source has.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not an Inlet.
        """
        inlet: Inlet = self._endpoint(name, Inlet)
        await inlet.close()

    def receive(self, name: str) -> OutletReader:
        """A reader of the :class:`Outlet` ``name``: ``async with system.receive(name) as
        items: async for item in items: ...``. Iteration ends after the last item. Items
        left in the outlet when the system ends can still be read.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not an Outlet.
        """
        outlet: Outlet = self._endpoint(name, Outlet)
        return outlet.reader()

    def cancel(self) -> None:
        """Stop at once: every actor is cancelled, cleanups still run (producers first),
        and what was in flight is counted as dropped (``"shutdown"``)."""
        if self._nursery is not None and not self._quiet.is_set():
            self.log.info("system.cancelling")
            self._nursery.cancel_scope.cancel()

    async def wait(self) -> None:
        """Wait until every actor has ended."""
        await self._all_done.wait()

    # -- start-up ----------------------------------------------------------------------

    async def _prepare(self) -> None:
        """Validate the graph, construct every module, then validate every module.

        Nothing is started here, so a failure leaves nothing to clean up. The garbage
        collector rests during the synchronous steps, and what they built is frozen
        (see :mod:`actorflow._collector`).
        """
        try:
            await self._build()
        except BaseException:
            self._collector.end()
            raise

    async def _build(self) -> None:
        self.graph.validate()
        placement = placement_problems(self.graph, self._only, self.settings.remote_url)
        if placement:
            raise GraphError(placement)
        for warning in self.graph.warnings():
            self.log.warning("graph.warning", message=warning)
        with self._collector.paused():
            self._construct()
        self._collector.freeze()
        await _validate_modules(self._wiring.actors.values())
        with self._collector.paused():
            self.root = self._wiring.wire(self)
        self._collector.freeze()
        _observe(self)

    def _construct(self) -> None:
        """Construct the module of every actor that runs here, sharing one thread limiter."""
        stopping = self._stopping_now  # bound once: each actor keeps it
        # Constructors hold the event loop: a signal meanwhile is raised in them.
        with nullcontext() if self._signals is None else self._signals.raising():
            for spec in self.graph.modules:
                if spec.name not in self.here:
                    continue
                module = construct(
                    spec.name, spec.factory, spec.config, self.log.bind(actor=spec.name)
                )
                self._wiring.add_actor(spec, module, stopping)
        limiter = trio.CapacityLimiter(self.settings.thread_limit)
        for actor in self._wiring.actors.values():
            actor.thread_limiter = limiter

    def _stopping_now(self) -> bool:
        """Whether a graceful stop was asked for (what every actor asks its system)."""
        return self._stopping

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        root = self.root
        assert root is not None
        actors = len(self._wiring.actors)
        self.log.info("system.starting", actors=actors, order=self._wiring.order)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_root, root)
            await root.started.wait()
            if self.state is SystemState.STARTING:
                self.state = SystemState.RUNNING
            self.log.info("system.started", actors=actors)
            task_status.started()

    async def _heartbeat(self) -> None:
        """Every heartbeat_interval: log a snapshot and hand it to each reporter."""
        with self._heartbeats:
            await beat(
                self.status,
                interval=self.settings.heartbeat_interval,
                started_at=self.started_at,
                reporters=self.reporters,
                log=self.log,
            )

    async def _run_pump(self, pump: Pump) -> None:
        """Carry a remote link; a failure there (not an unreachable server, which is
        waited out) fails the system, like a module beyond its restart intensity."""
        try:
            await pump.run()
        except Exception as exc:
            error = (
                exc if isinstance(exc, ActorflowError) else RunError(pump.link.name, describe(exc))
            )
            error.__cause__ = exc
            self._fail(error)
        finally:
            self._pumps_left -= 1
            self._check_quiet()

    def _check_quiet(self) -> None:
        if self._all_done.is_set() and self._pumps_left <= 0:
            self._quiet.set()

    def _fail(self, error: ActorflowError) -> None:
        if self._failure is None:
            self._failure = error
            self.state = SystemState.FAILED
            self.log.error("system.failing", error=str(error))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _run_root(self, root: Supervisor) -> None:
        try:
            await root.run()
        except Exception as exc:
            error = exc if isinstance(exc, ActorflowError) else RunError(root.name, describe(exc))
            self._fail(error)
        finally:
            self._heartbeats.cancel()
            self._services.cancel()
            if self._failure is None:
                # A cancellation may have replaced an escalation that was under way.
                recorded = root.failure or next(
                    (s.failure for s in self._wiring.supervisors.values() if s.failure), None
                )
                if recorded is not None:
                    self._failure = recorded
                    self.state = SystemState.FAILED
            root.started.set()
            if self._wiring.dead_letter_link is not None:
                self._wiring.dead_letter_link.close()
            if (
                self._failure is None
                and self._nursery is not None
                and not self._nursery.cancel_scope.cancel_called
            ):
                # Every actor has ended by itself: done, as wait() returns (the end of
                # the block confirms it, or says cancelled if it was cancelled after all).
                self.state = SystemState.DONE
            self._all_done.set()
            self._check_quiet()

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._heartbeat)
        if self._listeners is not None:
            await nursery.start(_serve_metrics, self)
        self._pumps_left = len(self._wiring.pumps)
        for pump in self._wiring.pumps:
            nursery.start_soon(self._run_pump, pump)
        with self._collector.resting():
            await nursery.start(self._supervise)
        self._collector.freeze()  # what was built lives on: no collection walks it
        self._running = True
        if self._stopping:  # asked while the actors were starting
            self._request_stop(self._drain_after)

    # -- the end -----------------------------------------------------------------------

    def _finalize(self, cancelled: bool) -> None:
        try:
            self._end(cancelled)
        finally:
            # Released only now: a collection while the system is still being
            # finalized would walk all of it and free nothing.
            self._collector.end()

    def _end(self, cancelled: bool) -> None:
        self._wiring.finish(cancelled)
        if self._tracing is not None:
            self._tracing.close()
        if self.state is not SystemState.FAILED:
            self.state = SystemState.CANCELLED if cancelled else SystemState.DONE
        event = "system.done" if self.state is SystemState.DONE else "system.ended"
        self.log.info(event, state=self.state.value, dropped=self._wiring.dropped())
        self._all_done.set()
        self._quiet.set()

    def _error(self, *, annotate: bool = True) -> ActorflowError | None:
        """The error the system ends with: its failure, else the first cleanup error.

        Every other cleanup error is attached as a note, never hidden (``annotate=False``
        only looks: for a preview before the end, which must not note them twice).
        """
        cleanup_errors: list[CleanupError] = [
            error for actor in self._wiring.actors.values() for error in actor.cleanup_errors
        ]
        primary: ActorflowError
        if self._failure is not None:
            primary, others = self._failure, cleanup_errors
        elif cleanup_errors:
            primary, others = cleanup_errors[0], cleanup_errors[1:]
        else:
            return None
        if annotate:
            for other in others:
                primary.add_note(f"also: {other}")
        return primary


def _drains_through(pump: Pump, here: set[str]) -> bool:
    """Whether ``pump`` receives a remote link whose producer runs in this process."""
    link = pump.link
    return isinstance(link, RemoteInLink) and link.spec.source in here


# -- metrics and traces ---------------------------------------------------------------------


def handling_times(system: System) -> dict[str, HandlingTimes]:
    """Each actor's handling times, while ``system`` serves metrics."""
    return {
        name: actor.pacing.timings
        for name, actor in system._wiring.actors.items()
        if actor.pacing.timings is not None
    }


def _observe(system: System) -> None:
    """Give each actor what the metrics and the traces of ``system`` read."""
    for actor in system._wiring.actors.values():
        _observe_actor(system, actor)


def _observe_actor(system: System, actor: Actor) -> None:
    """Give ``actor`` (at start-up, or added later) what the metrics and the traces of
    ``system`` read: its handling-time histogram, its spans."""
    if system._listeners is not None:
        from ._timings import HandlingTimes

        actor.pacing.timings = HandlingTimes()
    if system._tracing is not None:
        remote = any(link.remote and link.target == actor.name for link in system.graph.links)
        actor.hops = system._tracing.for_actor(actor, remote=remote)


async def _serve_metrics(system: System, *, task_status: trio.TaskStatus[None]) -> None:
    from ._metrics import StatusCollector, registry_for, serve

    assert system._listeners is not None
    collector = StatusCollector(system.status, system.started_at, partial(handling_times, system))
    with system._services:
        await serve(system._listeners, registry_for(collector), task_status=task_status)


# -- for the faces of the package (aio): what they may ask of a running system -------------


def preview_error(system: System) -> ActorflowError | None:
    """The error ``system`` would end with now, without noting the others on it (the
    end of its block does)."""
    return system._error(annotate=False)


def end_reason(system: System, name: str) -> str | None:
    """Why the last incarnation of module ``name`` ended, once it has.

    Raises:
        KeyError: There is no module ``name``.
    """
    return system._wiring.actor(name).reason


def count_unread(system: System) -> None:
    """The host can read no more: outlets count what waits, and what comes, as unread."""
    for actor in system._wiring.actors.values():
        if isinstance(actor.module, Outlet) and "outlet" in actor.keep:
            count_outlet_unread(actor.module)


def check_arguments(graph: Any, store: Any, reporters: Any) -> None:
    """What ``open_system`` is given is what it takes, or a TypeError naming it (not an
    AttributeError from deep inside, once the system has started)."""
    if not isinstance(graph, Graph):
        hint = "; read a file with af.load_graph(path)" if isinstance(graph, str) else ""
        raise TypeError(f"graph must be an actorflow.Graph, got {short(graph)}{hint}")
    if store is not None and not all(
        callable(getattr(store, name, None)) for name in ("get", "put", "delete")
    ):
        hint = "; a file is SQLiteStore(path)" if isinstance(store, str) else ""
        raise TypeError(f"store must be an actorflow store, got {short(store)}{hint}")
    if not isinstance(reporters, list | tuple) or not all(
        callable(getattr(reporter, "report", None)) for reporter in reporters
    ):
        raise TypeError(
            f"reporters must be a list of reporters (objects with report()), got "
            f"{short(reporters)}"
        )


def _make_settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    if settings is not None and not isinstance(settings, Settings):
        raise TypeError(
            f"settings must be an actorflow.Settings, got {type(settings).__name__} "
            f"{short(settings)}; pass Settings(...) or the options as keywords"
        )
    base = settings if settings is not None else Settings()
    if not overrides:
        return base
    known = {field.name for field in attrs.fields(Settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(sorted(known))}"
        )
    return attrs.evolve(base, **overrides)


async def _validate_modules(actors: Iterable[Actor]) -> None:
    """Run every module's ``validate()``, in order; the first refusal is raised."""
    for actor in actors:
        try:
            await validate(actor.name, actor.module.validate, actor.lifecycle, actor.log)
        except ValidationError:
            actor.set_state(ActorState.INVALID)
            raise
        actor.set_state(ActorState.VALIDATED)


@asynccontextmanager
async def open_system(
    graph: Graph,
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    reporters: Sequence[Reporter] = (),
    only: Collection[str] | None = None,
    handle_signals: bool = False,
    tracer_provider: TracerProvider | None = None,
    dashboard: str | int | tuple[str, int] | None = None,
    **overrides: Any,
) -> AsyncIterator[System]:
    """Run ``graph`` in a nursery of its own for the duration of an ``async with`` block.

    The graph is validated, every module constructed and validated, then every actor
    started under the supervisor tree, consumers before producers. Leaving the block
    waits until every actor has ended (the system ends by itself when its sources are
    exhausted and everything downstream has drained); call :meth:`System.stop` or
    :meth:`System.cancel` to end it sooner. An exception in the block cancels the
    system, with cleanup, and is re-raised as it is.

    Args:
        graph: What to run.
        settings: System settings; keyword ``overrides`` replace single fields of it
            (``open_system(graph, quantum=0.002)``).
        store: The shared data store (:class:`MemoryStore` if not given; pass a
            :class:`SQLiteStore` for data that survives the program).
        reporters: Receive every heartbeat snapshot (see :class:`HttpReporter`), besides
            an :class:`HttpReporter` (the system's to close) per ``Settings.reporters``.
        only: Run only these modules here (the others run in other processes); every
            link between a module here and one elsewhere must be remote.
        handle_signals: Take over SIGINT and SIGTERM while the system runs (main
            thread only; the previous handlers come back after, an ignored signal stays
            ignored): the first stops it gracefully within ``drain_timeout``, a second
            cancels it, one during start-up aborts the start; once it has ended the
            block raises ``KeyboardInterrupt`` (SIGINT) or ``SystemExit(143)`` (SIGTERM).
            Off by default: a library leaves the program's signals alone unless asked.
        tracer_provider: Takes the spans (``Settings.trace_ratio``); else the global one.
        dashboard: Serve a web dashboard (:doc:`/howto/dashboard`) at ``"[HOST:]PORT"``
            (127.0.0.1 unless given; port 0: any) while it runs: :attr:`System.dashboard_url`.

    Raises:
        GraphError: The graph is invalid or cannot be split as ``only`` asks.
        InitializationError: A module's constructor raised; nothing was started.
        ValidationError: A module's ``validate()`` refused; nothing was started.
        EscalationError: Modules kept failing beyond the root supervisor's restart
            intensity; everything was stopped and cleaned up. It is a ``RunError``.
        CleanupError: Everything ran, but a ``cleanup()`` failed.
        ServeError: The metrics endpoint or the dashboard cannot listen where asked.
        ImportError: Tracing or the dashboard without the ``otel``/``dashboard`` extra.
    """
    check_arguments(graph, store, reporters)
    settings = _make_settings(settings, overrides)
    async with AsyncExitStack() as owned:
        named = [await owned.enter_async_context(HttpReporter(url)) for url in settings.reporters]
        system = System(graph, settings, store, [*reporters, *named], only)
        listening = await observe(system, owned, tracer_provider, dashboard)
        with handling_signals(system._signalled) if handle_signals else nullcontext() as requests:
            async with _running(system, requests, listening) as running:
                yield running


@asynccontextmanager
async def _running(
    system: System, requests: SignalRequests | None, listening: socket.socket | None = None
) -> AsyncIterator[System]:
    """Start ``system``, hand it to the block, and end it (see :func:`open_system`)."""
    await _start_up(system, requests)
    body_error: BaseException | None = None
    cancelled = True
    left = trio.Event()  # the block has ended (the dashboard lives until then too)
    try:
        # trio wraps Ctrl-C (or a module's SystemExit) met while the nursery waits.
        with single_errors():
            async with trio.open_nursery() as nursery:
                await system._start(nursery)
                if listening is not None or system._wiring.pumps:
                    system.dashboard_url = await nursery.start(
                        watch_system, system, listening, left
                    )
                if requests is not None:
                    nursery.start_soon(_tick_until_done, system, requests)
                try:
                    yield system
                except BaseException as exc:  # re-raised after shutdown
                    if _only_cancelled(exc):  # the block's nurseries: the system failed
                        raise
                    body_error = exc
                    nursery.cancel_scope.cancel()
                finally:
                    left.set()
        cancelled = nursery.cancel_scope.cancelled_caught and system._failure is None
    finally:
        system._finalize(cancelled)
        if system._failure is not None and body_error is None:
            # Raised from here so that an outer cancellation cannot swallow it.
            raise _noting_signal(system._error() or system._failure, requests)
    _raise_what_ended(system, body_error, requests)


def _only_cancelled(error: BaseException) -> bool:
    """Whether ``error`` is a cancellation: ``Cancelled``, or a group (from a nursery of
    the block's own) of nothing else."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(trio.Cancelled)[1] is None
    return isinstance(error, trio.Cancelled)


async def _tick_until_done(system: System, requests: SignalRequests) -> None:
    """Say the loop is alive every tenth of a second while actors run or clean up, so
    that a signal sent while sync code holds the loop (a hung sync ``cleanup()``) is
    raised at once instead of waiting for a loop that will not look."""
    try:
        while not system._quiet.is_set():
            requests.tick()
            with trio.move_on_after(STUCK_AFTER / 5):
                await system._quiet.wait()
    finally:
        requests.untick()


async def _start_up(system: System, requests: SignalRequests | None) -> None:
    """Prepare the system; a signal before its actors start aborts that, raising what
    the signal ends a program with (nothing was started, so no cleanup is due)."""
    if requests is None:
        await system._prepare()
        return
    system._signals = requests
    with trio.CancelScope() as system._starting:
        await system._prepare()
    system._starting = None
    if requests.first is None:
        return
    system._collector.end()  # _prepare ended it already if it was cut short
    system.log.warning("system.aborted", signal=signal_name(requests.first))
    raise exception_for(requests.first)


def _noting_signal(error: BaseException, requests: SignalRequests | None) -> BaseException:
    if requests is not None and requests.first is not None:
        error.add_note(f"the system was stopped by {signal_name(requests.first)}")
    return error


def _raise_what_ended(
    system: System, body_error: BaseException | None, requests: SignalRequests | None
) -> None:
    """Raise the block's own error (noting the system's), else the system's, else what
    the signal that stopped it ends a program with, if any."""
    error = system._error()
    if body_error is not None:
        if error is not None:
            body_error.add_note(f"the system also failed: {error}")
        raise body_error
    if error is not None:
        raise _noting_signal(error, requests)
    if requests is not None and requests.first is not None:
        raise exception_for(requests.first)


def run(
    graph: Graph,
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    only: Collection[str] | None = None,
    handle_signals: bool = True,
    tracer_provider: TracerProvider | None = None,
    dashboard: str | int | tuple[str, int] | None = None,
    **overrides: Any,
) -> SystemStatus:
    """Run ``graph`` to completion from synchronous code; return its final status.

    A blocking convenience around :func:`open_system` and ``trio.run``. In the main
    thread, SIGINT (Ctrl-C) and SIGTERM stop the system gracefully: sources stop, what
    is in flight is handled within ``drain_timeout`` (then it is cancelled), every
    ``cleanup()`` runs; a second signal cancels at once (cleanups still run, each
    within ``cleanup_timeout``); a third, or a second while a sync hook holds the event
    loop, is raised where the program is. Then SIGINT raises ``KeyboardInterrupt`` and
    SIGTERM ``SystemExit(143)`` (uncaught, it ends the program with status 143, as the
    signal would have; ``finally`` blocks run). ``handle_signals=False`` leaves the
    program's handlers alone (Ctrl-C then cancels the system, as trio delivers it).
    ``dashboard`` serves a live web dashboard while it runs (see :func:`open_system`).

    Raises:
        The same errors as :func:`open_system`.
    """

    async def main() -> SystemStatus:
        async with open_system(
            graph,
            settings,
            store=store,
            only=only,
            handle_signals=handle_signals,
            tracer_provider=tracer_provider,
            dashboard=dashboard,
            **overrides,
        ) as system:
            pass
        return system.status()

    with ending_as_signals(), single_errors():
        # Ctrl-C goes to the main task at a checkpoint, never into a module's code, so
        # the system is stopped in order rather than one actor failing mid-item.
        return run_interruptible(main)
