"""Test modules and graphs as a user would run them, on trio's virtual clock.

Run one module on given input items, or a whole graph, and get back what came out, its
dead letters, its drops and its final status::

    from actorflow.testing import Pause, run_module

    result = run_module(Double, [1, 2, 3])
    assert result.output() == [2, 4, 6]

    # a periodic source, three and a half minutes of it, in no real time
    result = run_module(Poll, config={"interval": 60}, stop_after=210)
    assert result.output_times() == [0, 60, 120, 180]

The sync forms (:func:`run_module`, :func:`run_graph`) run their own trio loop on a
virtual clock (``trio.testing.MockClock(autojump_threshold=0)``): whenever every task
waits, time jumps to the next timer, so minutes of timed behaviour take milliseconds and
always go the same way. Inside trio (a ``pytest-trio`` test), ``await`` the async forms
(:func:`arun_module`, :func:`arun_graph`); they run on the clock of the test's loop.

What a module does wrong shows in the result rather than as a hang: an item it fails on
is a dead letter, a module that keeps failing ends the run with ``result.error`` (an
``EscalationError``), and a run that does not end by itself within ``timeout`` seconds
is cancelled and raises :class:`TimedOutError` saying which modules were still running.

The pytest plugin (installed with actorflow, in the ``pytest11`` entry point) adds the
fixtures ``actorflow_clock`` (a virtual clock) and ``actorflow_system`` (starts graphs
that run for the test, see :class:`SystemStarter`).
"""

from __future__ import annotations

import contextvars
import math
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, final

import attrs
import trio
import trio.testing

from . import (
    ActorflowError,
    DeadLetter,
    Graph,
    Inlet,
    Module,
    Outlet,
    Settings,
    Sink,
    Source,
    Store,
    System,
    SystemState,
    SystemStatus,
    open_system,
)
from ._exceptions import single_errors

__all__ = [
    "Feed",
    "Pause",
    "Recorder",
    "Recording",
    "RunResult",
    "SystemStarter",
    "TimedOutError",
    "arun_graph",
    "arun_module",
    "module_graph",
    "run_graph",
    "run_module",
    "wait_until",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a run may take (after ``stop_after``) before it is cancelled as hung."""


# -- what goes in ---------------------------------------------------------------------------


def _check_seconds(name: str, value: float, *, zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not zero) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {value!r}")
    return float(value)


def _pause_seconds(value: float) -> float:
    return _check_seconds("Pause", value)


@attrs.frozen
class Pause:
    """Among the items fed to a module or an inlet: wait ``seconds`` (on the run's
    clock, so virtual time in a test) before the next item.

    ``[1, Pause(5), 2]`` sends 1, then 2 five seconds later: what a module does between
    items (a timeout, a window, a debounce) is tested without real waiting.
    """

    seconds: float = attrs.field(converter=_pause_seconds)


async def _pause(pause: Pause, stopping: trio.Event) -> None:
    """Wait out ``pause``, or until ``stopping`` is set (a graceful stop)."""
    with trio.move_on_after(pause.seconds):
        await stopping.wait()


class Feed(Source):
    """A source that emits the given items, in order, then ends (bytewax's
    ``TestingSource``). A :class:`Pause` among them waits before the next item; a
    graceful stop ends the feed at once.

    Args:
        items: What to emit (kept as a list, so a restart emits them again).
    """

    outputs: ClassVar[Mapping[str, Any]] = {"out": Any}

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = list(items)
        self._stopping = trio.Event()

    def _by_port(self) -> Iterator[tuple[str, Any]]:
        return (("out", item) for item in self.items)

    async def start(self) -> None:
        for port, item in self._by_port():
            if not self.active:
                return
            if isinstance(item, Pause):
                await _pause(item, self._stopping)
            else:
                await self.emit(item, port)

    def stop(self) -> None:
        self._stopping.set()


class _PortFeed(Feed):
    """Feeds several input ports of a module under test: its items are ``(port, item)``
    pairs (its output ports are set per test)."""

    def _by_port(self) -> Iterator[tuple[str, Any]]:
        return iter(self.items)


def _port_feed(ports: Iterable[str]) -> type[_PortFeed]:
    """A feed class whose output ports are ``ports``, each typed ``Any`` so it links to
    any input port."""
    outputs = dict.fromkeys(ports, Any)
    return type("Feed", (_PortFeed,), {"outputs": outputs, "__module__": __name__})


def _interleave(items: Mapping[str, Iterable[Any]]) -> list[tuple[str, Any]]:
    """``{"a": [1, 2], "b": [3]}`` as ``[("a", 1), ("b", 3), ("a", 2)]``."""
    lists = {port: list(values) for port, values in items.items()}
    longest = max((len(values) for values in lists.values()), default=0)
    return [
        (port, values[index])
        for index in range(longest)
        for port, values in lists.items()
        if index < len(values)
    ]


# -- what comes out -------------------------------------------------------------------------


@attrs.define
class Recording:
    """What reached one :class:`Recorder` (or outlet) during a run, in arrival order.

    Attributes:
        items: The items.
        times: When each arrived, in seconds since the run started (on its clock).
    """

    items: list[Any] = attrs.Factory(list)
    times: list[float] = attrs.Factory(list)


@attrs.define
class _Recordings:
    """The recordings of one run, by recorder name; found by the run's recorders
    through a context variable, so that they survive a recorder's restart."""

    started: float
    by_name: dict[str, Recording] = attrs.Factory(dict)

    def add(self, name: str, item: Any) -> None:
        recording = self.by_name.setdefault(name, Recording())
        recording.items.append(item)
        recording.times.append(trio.current_time() - self.started)

    def of(self, name: str) -> Recording:
        """The recording of ``name``, the same object as it grows."""
        return self.by_name.setdefault(name, Recording())


_ACTIVE: contextvars.ContextVar[_Recordings | None] = contextvars.ContextVar(
    "actorflow_testing_recordings", default=None
)


@contextmanager
def _recording_into(recordings: _Recordings) -> Iterator[None]:
    token = _ACTIVE.set(recordings)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class Recorder(Sink):
    """A sink that records every item that reaches it (bytewax's ``TestingSink``,
    Akka's test probe). Put one wherever a test wants to see what flows.

    Under :func:`run_graph` (and the ``actorflow_system`` fixture) what it records is
    in the result, under its module name, with the time each item arrived; elsewhere
    give it a list to append to.

    Args:
        into: Also append each item here (a list the test keeps).

    Raises:
        ValueError: (at validation) It has nowhere to record: no ``into`` and not run
            by :mod:`actorflow.testing`.
    """

    def __init__(self, into: list[Any] | None = None) -> None:
        self.into = into
        self._recordings = _ACTIVE.get()

    def validate(self) -> None:
        if self.into is None and self._recordings is None:
            raise ValueError(
                "a Recorder records nowhere here: give it into=[...] or run the graph "
                "with actorflow.testing.run_graph()"
            )

    def consume(self, data: Any) -> None:
        if self._recordings is not None:
            self._recordings.add(self.name, data)
        if self.into is not None:
            self.into.append(data)


@final
@attrs.frozen
class RunResult:
    """How a test run ended: what came out, what was given up on, what was lost.

    Attributes:
        outputs: The items that came out, in order: by output port for
            :func:`run_module`, by :class:`Recorder` or outlet name for :func:`run_graph`.
        times: When each of those items came out, in seconds since the run started (on
            its clock: virtual time in the sync forms).
        dead_letters: The items given up on after their module failed on them.
        status: The system's final status (every actor's and link's counters).
        error: What the run ended with when a module kept failing (an
            ``EscalationError``) or a cleanup failed; ``None`` when it ended well.
        elapsed: Seconds the run took, on its clock.
    """

    outputs: Mapping[str, list[Any]]
    times: Mapping[str, list[float]]
    dead_letters: tuple[DeadLetter, ...]
    status: SystemStatus
    error: ActorflowError | None
    elapsed: float

    def output(self, name: str = "out") -> list[Any]:
        """The items that came out of port (or recorder) ``name``.

        Raises:
            KeyError: Nothing of that name records outputs; the message lists what does.
        """
        return self.outputs[self._known(name)]

    def output_times(self, name: str = "out") -> list[float]:
        """When each item of :meth:`output` came out, in seconds since the start."""
        return self.times[self._known(name)]

    def _known(self, name: str) -> str:
        if name not in self.outputs:
            known = ", ".join(repr(n) for n in self.outputs) or "none"
            raise KeyError(f"no output {name!r} was recorded (recorded: {known})")
        return name

    @property
    def state(self) -> SystemState:
        """How the system ended (``DONE`` when every module ended by itself or on a stop)."""
        return self.status.state

    @property
    def dropped(self) -> int:
        """Items lost anywhere, whatever the reason."""
        return self.status.dropped

    @property
    def drops(self) -> dict[str, dict[str, int]]:
        """Items lost, by the module they were lost at and the reason; modules that lost
        nothing are left out."""
        found = self.status.dropped_at()
        return {
            name: {r: n for r, n in by.items() if n}
            for name, by in found.items()
            if any(by.values())
        }

    @property
    def errors(self) -> dict[str, int]:
        """How many times each module's hooks raised; modules that never did are left out."""
        return {name: a.errors for name, a in self.status.actors.items() if a.errors}


class TimedOutError(ActorflowError, TimeoutError):
    """A test run did not end within its timeout (it was cancelled, cleanups ran), or a
    :func:`wait_until` condition did not hold in time.

    Attributes:
        result: What the run had produced by then (``None`` for :func:`wait_until`).
    """

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# -- running --------------------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """What one test run does besides running its graph."""

    inputs: Mapping[str, list[Any]]
    """Items to send into each inlet, which is then closed."""
    outlets: tuple[str, ...]
    """Outlets to read to the end, recorded under their own names."""
    recorded: Mapping[str, str]
    """Each output of the result, by the recorder (or outlet) that records it."""
    stop_after: float | None
    timeout: float
    settings: Settings | None
    store: Store | None
    planned: float = 0.0
    """Seconds the run is planned to take: its pauses, or ``stop_after``."""

    @property
    def deadline(self) -> float:
        """Seconds from the start after which the run is cancelled as hung."""
        return max(self.planned, self.stop_after or 0.0) + self.timeout


def _paused(items: Iterable[Any]) -> float:
    """The seconds the pauses among ``items`` add up to."""
    return sum(item.seconds for item in items if isinstance(item, Pause))


def _planned(graph: Graph, inputs: Mapping[str, list[Any]]) -> float:
    """The longest any feed of ``graph`` or any of ``inputs`` pauses for."""
    feeds: list[Iterable[Any]] = []
    for spec in graph.modules:
        items = spec.config.get("items", ())
        if _is_module(spec.factory, _PortFeed):
            feeds.append(item for _, item in items)
        elif _is_module(spec.factory, Feed):
            feeds.append(items)
    return max((_paused(items) for items in [*feeds, *inputs.values()]), default=0.0)


@attrs.define
class _Outcome:
    """How a run went: its system once started, the error it ended with, and the
    status when its deadline passed, if it did."""

    system: System | None = None
    error: ActorflowError | None = None
    expired: SystemStatus | None = None
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    """Around the whole run: cancelled when the deadline passes during start-up."""
    timed_out: bool = False

    def expire(self) -> None:
        """The deadline has passed: note what was still running, then cancel."""
        if self.timed_out:
            return
        self.timed_out = True
        if self.system is None:
            self.scope.cancel()
        else:
            self.expired = self.system.status()
            self.system.cancel()


def _is_module(factory: Any, kind: type[Module]) -> bool:
    return isinstance(factory, type) and issubclass(factory, kind)


def _graph_plan(
    graph: Graph,
    inputs: Mapping[str, Iterable[Any]] | None,
    stop_after: float | None,
    timeout: float,
    settings: Settings | None,
    store: Store | None,
) -> _Plan:
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be an actorflow.Graph, got {type(graph).__name__}")
    inlets = [spec.name for spec in graph.modules if _is_module(spec.factory, Inlet)]
    given = dict(inputs or {})
    unknown = sorted(set(given) - set(inlets))
    if unknown:
        known = ", ".join(map(repr, inlets)) or "none"
        raise ValueError(
            f"inputs name {', '.join(map(repr, unknown))}, not inlets of graph "
            f"{graph.name!r} (its inlets: {known})"
        )
    outlets = tuple(spec.name for spec in graph.modules if _is_module(spec.factory, Outlet))
    recorders = [spec.name for spec in graph.modules if _is_module(spec.factory, Recorder)]
    fed = {name: list(given.get(name, ())) for name in inlets}
    return _Plan(
        inputs=fed,
        outlets=outlets,
        recorded={name: name for name in [*recorders, *outlets]},
        stop_after=None if stop_after is None else _check_seconds("stop_after", stop_after),
        timeout=_check_seconds("timeout", timeout, zero=False),
        settings=settings,
        store=store,
        planned=_planned(graph, fed),
    )


async def _send_all(system: System, name: str, items: list[Any], stopping: trio.Event) -> None:
    """Send ``items`` into the inlet ``name`` (waiting out each :class:`Pause`), then
    close it; a stop (``stop_after``) ends the sending."""
    try:
        for item in items:
            if stopping.is_set():
                return
            if isinstance(item, Pause):
                await _pause(item, stopping)
            else:
                await system.send(name, item)
        await system.close(name)
    except RuntimeError:  # the inlet has stopped: the system is stopping
        return


async def _read_all(system: System, name: str, recordings: _Recordings) -> None:
    async with system.receive(name) as reader:
        async for item in reader:
            recordings.add(name, item)


async def _stop_after(system: System, seconds: float, stopping: trio.Event) -> None:
    """Stop ``system`` gracefully ``seconds`` from now, unless it ended by itself."""
    with trio.move_on_after(seconds):
        await system.wait()
        return
    stopping.set()
    await system.stop()


async def _drive(system: System, plan: _Plan, recordings: _Recordings) -> None:
    stopping = trio.Event()
    async with trio.open_nursery() as nursery:
        for name, items in plan.inputs.items():
            nursery.start_soon(_send_all, system, name, items, stopping)
        for name in plan.outlets:
            nursery.start_soon(_read_all, system, name, recordings)
        if plan.stop_after is not None:
            nursery.start_soon(_stop_after, system, plan.stop_after, stopping)


async def _deadline(seconds: float, outcome: _Outcome) -> None:
    await trio.sleep(seconds)
    outcome.expire()


async def _wall_clock_guard(done: threading.Event, seconds: float, outcome: _Outcome) -> None:
    """Expire the run if it has not ended ``seconds`` of real time from now: a module
    that keeps the loop busy without ever waiting stops virtual time from reaching the
    run's deadline."""
    finished = await trio.to_thread.run_sync(done.wait, seconds, abandon_on_cancel=True)
    if not finished:
        outcome.expire()


async def _run(graph: Graph, plan: _Plan, recordings: _Recordings) -> _Outcome:
    """Run ``graph`` as ``plan`` says, within its deadline (on the run's clock and on the
    wall clock); errors once the system has started are the outcome's, not raised."""
    outcome = _Outcome()
    seconds = plan.deadline
    done = threading.Event()
    with single_errors():
        async with trio.open_nursery() as guard:
            guard.start_soon(_deadline, seconds, outcome)
            guard.start_soon(_wall_clock_guard, done, seconds, outcome)
            try:
                with outcome.scope, _recording_into(recordings):
                    async with open_system(graph, plan.settings, store=plan.store) as system:
                        outcome.system = system
                        await _drive(system, plan, recordings)
            except ActorflowError as exc:
                if outcome.system is None:
                    raise
                outcome.error = exc
            finally:
                done.set()
                guard.cancel_scope.cancel()
    return outcome


def _result(outcome: _Outcome, plan: _Plan, recordings: _Recordings) -> RunResult:
    system = outcome.system
    assert system is not None
    recorded = {key: recordings.of(name) for key, name in plan.recorded.items()}
    return RunResult(
        outputs={key: recording.items for key, recording in recorded.items()},
        times={key: recording.times for key, recording in recorded.items()},
        dead_letters=system.dead_letters,
        status=system.status(),
        error=outcome.error,
        elapsed=trio.current_time() - recordings.started,
    )


def _timed_out(
    graph: Graph, plan: _Plan, outcome: _Outcome, result: RunResult | None
) -> TimedOutError:
    seconds = plan.deadline
    if outcome.expired is None:
        return TimedOutError(
            f"graph {graph.name!r} did not start within {seconds:g} s: a module's "
            "validate() is still waiting",
            result,
        )
    running = [
        f"{name!r} ({actor.state.value}"
        + (f" on {actor.blocked_on})" if actor.blocked_on else ")")
        for name, actor in outcome.expired.actors.items()
        if not actor.state.is_final
    ]
    hint = (
        "A source that runs until it is stopped needs stop_after=; a run that takes "
        "longer, a larger timeout="
    )
    threads = _blocking(graph)
    if threads and isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        hint = (
            f"{', '.join(map(repr, threads))} blocking: the time its threads take is "
            "real, which a virtual clock cannot see; run it on the real clock "
            "(virtual_time=False)"
        )
    return TimedOutError(
        f"graph {graph.name!r} did not end within {seconds:g} s and was cancelled; still "
        f"running then: {', '.join(running) or 'none'}. {hint}",
        result,
    )


def _blocking(graph: object) -> list[str]:
    """The modules of ``graph`` whose class says their sync hooks run in threads (none
    if it is no graph: that is refused, its type named, when the run is planned)."""
    modules = graph.modules if isinstance(graph, Graph) else ()
    return [spec.name for spec in modules if getattr(spec.factory, "blocking", False) is True]


async def _arun(graph: Graph, plan: _Plan) -> RunResult:
    recordings = _Recordings(trio.current_time())
    outcome = await _run(graph, plan, recordings)
    result = None if outcome.system is None else _result(outcome, plan, recordings)
    if outcome.timed_out or result is None:
        raise _timed_out(graph, plan, outcome, result)
    return result


def _run_sync(
    run: Callable[[], Awaitable[RunResult]], graph: Graph, virtual_time: bool | None, form: str
) -> RunResult:
    """Run ``run`` in a trio loop of its own, on a virtual clock unless asked not to (or,
    by default, unless a module of ``graph`` is blocking)."""
    if virtual_time is None:
        virtual_time = not _blocking(graph)
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(f"{form}() runs a trio loop of its own; inside trio, await a{form}()")
    clock = trio.testing.MockClock(autojump_threshold=0) if virtual_time else None
    with single_errors():
        return trio.run(run, clock=clock)


async def arun_graph(
    graph: Graph,
    *,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    stop_after: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the run's deadline: a clear error)
    settings: Settings | None = None,
    store: Store | None = None,
) -> RunResult:
    """Run ``graph`` until it ends (or ``stop_after``), inside trio; see :func:`run_graph`."""
    plan = _graph_plan(graph, inputs, stop_after, timeout, settings, store)
    return await _arun(graph, plan)


def run_graph(
    graph: Graph,
    *,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    stop_after: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    settings: Settings | None = None,
    store: Store | None = None,
    virtual_time: bool | None = None,
) -> RunResult:
    """Run ``graph`` to its end and say what came out (bytewax's ``run_main``).

    What reaches each :class:`Recorder` and each :class:`~actorflow.Outlet` of the
    graph is in ``result.outputs``, under the module's name.

    Args:
        graph: What to run.
        inputs: Items to send into the graph's inlets, by inlet name (a :class:`Pause`
            among them waits); each inlet is closed after its items, and one not named
            here at once, so that the graph can end by itself.
        stop_after: Stop the graph gracefully this many seconds after it started (for
            sources that run until stopped), unless it ended by itself before.
        timeout: Seconds the run may take (after ``stop_after``) before it is cancelled
            and :class:`TimedOutError` raised; on the run's clock and the wall clock.
        settings: The system's settings.
        store: The shared data store (a fresh :class:`~actorflow.MemoryStore` if not
            given).
        virtual_time: Run on a virtual clock that jumps to the next timer whenever every
            task waits (``True``), or on the real clock (``False``): for modules that
            wait on the world outside trio (real I/O), whose time a virtual clock cannot
            see. By default (``None``) virtual, unless a module of the graph is
            ``blocking`` (its sync hooks run in worker threads, which take real time).

    Returns:
        How the run ended; a module that kept failing is ``result.error``, not raised.

    Raises:
        GraphError: The graph is invalid (and the other errors of a system that could
            not start: ``InitializationError``, ``ValidationError``).
        TimedOutError: The run did not end in time.
        RuntimeError: Called inside trio (``await arun_graph(...)`` there).
    """

    async def run() -> RunResult:
        return await arun_graph(
            graph,
            inputs=inputs,
            stop_after=stop_after,
            timeout=timeout,
            settings=settings,
            store=store,
        )

    return _run_sync(run, graph, virtual_time, "run_graph")


_FEED = "feed"


def _recorder_name(port: str) -> str:
    return f"record:{port}"


def _default_name(module: type[Module]) -> str:
    """``MovingAverage`` as ``moving_average``."""
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", module.__name__).lower()


def _port_items(
    module: type[Module], items: Iterable[Any] | Mapping[str, Iterable[Any]]
) -> dict[str, list[Any]]:
    """The items for each input port of ``module``: a mapping names its ports; a plain
    list goes to its only input port."""
    ports = list(module.inputs)
    owner = module.__qualname__
    if isinstance(items, Mapping):
        unknown = sorted(set(items) - set(ports))
        if unknown:
            known = ", ".join(map(repr, ports)) or "none"
            raise ValueError(
                f"{owner} has no input port {', '.join(map(repr, unknown))} (its input "
                f"ports: {known})"
            )
        return {port: list(items.get(port, ())) for port in ports}
    given = list(items)
    if not ports:
        if given:
            raise TypeError(f"{owner} has no input port: it takes no items")
        return {}
    if len(ports) > 1:
        raise TypeError(
            f"{owner} has input ports {', '.join(map(repr, ports))}: give the items by "
            "port, as {port: [items]}"
        )
    return {ports[0]: given}


def module_graph(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]] = (),
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Graph:
    """The graph :func:`run_module` runs: ``module`` fed by a :class:`Feed`-like source
    (module ``"feed"``) on each input port, and a :class:`Recorder` on each output port
    (module ``"record:<port>"``). Extend it (supervision, more modules) and run it with
    :func:`run_graph` when :func:`run_module`'s options are not enough.

    Raises:
        TypeError: ``module`` is not a module class, or the items do not fit its ports.
        ValueError: The items name a port it does not have.
    """
    if not _is_module(module, Module):
        raise TypeError(f"module must be a module class (a Processor, say), got {module!r}")
    name = _default_name(module) if name is None else name
    reserved = {_FEED, *(_recorder_name(port) for port in module.outputs)}
    if name in reserved:
        raise ValueError(f"name {name!r} is taken by the test's own modules; choose another")
    by_port = _port_items(module, items)
    graph = Graph(name=f"test-{name}")
    graph.add(name, module, **dict(config or {}))
    if by_port:
        graph.add(_FEED, _port_feed(by_port), items=_interleave(by_port))
        for port in by_port:
            graph.link(f"{_FEED}.{port}", f"{name}.{port}")
    for port in module.outputs:
        graph.add(_recorder_name(port), Recorder)
        graph.link(f"{name}.{port}", _recorder_name(port))
    return graph


def _module_run(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]],
    options: _ModuleOptions,
) -> tuple[Graph, _Plan]:
    graph = module_graph(module, items, config=options.config, name=options.name)
    name = graph.modules[0].name
    if options.supervise is not None:
        graph.supervise(name, **options.supervise)
    if options.supervisor is not None:
        graph.supervisor(**options.supervisor)
    plan = _graph_plan(graph, None, options.stop_after, options.timeout, options.settings, None)
    recorded = {port: _recorder_name(port) for port in module.outputs}
    return graph, attrs.evolve(plan, recorded=recorded)


@attrs.frozen
class _ModuleOptions:
    config: Mapping[str, Any] | None
    name: str | None
    stop_after: float | None
    timeout: float
    settings: Settings | None
    supervise: Mapping[str, Any] | None
    supervisor: Mapping[str, Any] | None


async def arun_module(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]] = (),
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    stop_after: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the run's deadline: a clear error)
    settings: Settings | None = None,
    supervise: Mapping[str, Any] | None = None,
    supervisor: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run one module on ``items``, inside trio; see :func:`run_module`."""
    options = _ModuleOptions(config, name, stop_after, timeout, settings, supervise, supervisor)
    graph, plan = _module_run(module, items, options)
    return await _arun(graph, plan)


def run_module(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]] = (),
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    stop_after: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    settings: Settings | None = None,
    supervise: Mapping[str, Any] | None = None,
    supervisor: Mapping[str, Any] | None = None,
    virtual_time: bool | None = None,
) -> RunResult:
    """Run one module, as the runtime runs it, on ``items``; say what came out.

    The module is built as ``module(**config)``, fed ``items`` on its input port (then
    the end of stream, so it ends by itself), and every output port is recorded:
    ``result.output("alert")``. A source or progressive module without inputs just runs.

    Args:
        module: The module class under test.
        items: What to feed it: a list for a module with one input port, or
            ``{port: [items]}`` (fed in turns: the first item of each port, then the
            second, ...). A :class:`Pause` among them waits before the next item.
        config: The module's configuration (its constructor's keyword arguments).
        name: Its name in the graph (default: the class name in snake case), as dead
            letters and the status show it.
        stop_after: Stop it gracefully this many seconds after the start (a source that
            runs until stopped), unless it ended by itself before.
        timeout: Seconds the run may take (after ``stop_after``) before it is cancelled
            and :class:`TimedOutError` raised; on the run's clock and the wall clock.
        settings: The system's settings.
        supervise: How the module is supervised: the options of
            :meth:`Graph.supervise <actorflow.Graph.supervise>` (``attempts``, ...).
        supervisor: The root supervisor's options (``max_restarts``, ``period``, ...).
        virtual_time: See :func:`run_graph`.

    Returns:
        How the run ended (outputs by port, dead letters, drops, status), with the error
        it ended with if a module kept failing (not raised).

    Raises:
        TypeError: ``module`` is not a module class, or ``items`` do not fit its ports.
        InitializationError: Its constructor raised on ``config``.
        ValidationError: Its ``validate()`` refused ``config``.
        TimedOutError: The run did not end in time.
        RuntimeError: Called inside trio (``await arun_module(...)`` there).
    """
    options = _ModuleOptions(config, name, stop_after, timeout, settings, supervise, supervisor)
    graph, plan = _module_run(module, items, options)

    async def run() -> RunResult:
        return await _arun(graph, plan)

    return _run_sync(run, graph, virtual_time, "run_module")


# -- waiting, and systems that run for a test ------------------------------------------------


async def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (a clear error, like Akka's awaitCond)
    interval: float = 0.01,
) -> None:
    """Wait until ``condition()`` is true, checking every ``interval`` seconds (Akka's
    ``awaitCond``): ``await wait_until(lambda: len(seen) == 3)``. On a virtual clock the
    waiting takes no real time.

    Raises:
        TimedOutError: It was still false after ``timeout`` seconds.
    """
    _check_seconds("timeout", timeout, zero=False)
    _check_seconds("interval", interval, zero=False)
    with trio.move_on_after(timeout):
        while not condition():  # noqa: ASYNC110 (a condition on anything: polled)
            await trio.sleep(interval)
        return
    raise TimedOutError(f"the condition was still false after {timeout:g} s")


@final
class SystemStarter:
    """Starts graphs that run in the background of a test, as the ``actorflow_system``
    fixture gives it: ``system = await actorflow_system(graph)``. Each is an
    :class:`~actorflow.System`, running until the test ends; then it is stopped
    gracefully and waited for, and whatever it failed with fails the test.

    A :class:`Recorder` in such a graph records into :meth:`recorded`.

    Args:
        nursery: Where the systems run (the fixture's own).
    """

    def __init__(self, nursery: trio.Nursery, *, drain_timeout: float = DEFAULT_TIMEOUT) -> None:
        self._nursery = nursery
        self._drain_timeout = drain_timeout
        self._closing = trio.Event()
        self._recordings = _Recordings(trio.current_time())

    async def __call__(
        self, graph: Graph, settings: Settings | None = None, **options: Any
    ) -> System:
        """Start ``graph`` (``options`` are :func:`~actorflow.open_system`'s) and return
        it once its actors have started.

        Raises:
            GraphError: The graph is invalid (and the other start-up errors).
        """
        system: System = await self._nursery.start(self._run, graph, settings, options)
        return system

    async def _run(
        self,
        graph: Graph,
        settings: Settings | None,
        options: dict[str, Any],
        *,
        task_status: trio.TaskStatus[System],
    ) -> None:
        with _recording_into(self._recordings):
            async with open_system(graph, settings, **options) as system:
                task_status.started(system)
                await self._closing.wait()
                await system.stop(drain_timeout=self._drain_timeout)

    def recorded(self, name: str) -> Recording:
        """What the :class:`Recorder` ``name`` has recorded so far, in any graph this
        starter started (times since the starter was made)."""
        return self._recordings.of(name)

    def close(self) -> None:
        """Stop every system it started (gracefully); the nursery waits for their end."""
        self._closing.set()
