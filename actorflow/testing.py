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
import inspect
import math
import re
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from datetime import timedelta
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
from ._checks import check_flag, short
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


def _check_seconds(name: str, value: float | timedelta, *, zero: bool = True) -> float:
    """``value`` (a number of seconds, or a ``timedelta``) as seconds."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or a timedelta, got {short(value)}")
    if math.isnan(value) or value < 0 or (value == 0 and not zero) or math.isinf(value):
        low = "0 or more" if zero else "above 0"
        raise ValueError(f"{name} must be a finite number of seconds, {low}, got {short(value)}")
    return float(value)


def _pause_seconds(value: float | timedelta) -> float:
    return _check_seconds("Pause", value)


def _check_items(name: str, items: object) -> Iterable[Any]:
    """``items`` if it is an iterable of items; a string (each character would be an
    item), ``None`` and anything not iterable are refused, naming ``name``."""
    if isinstance(items, str | bytes | bytearray):
        raise TypeError(
            f"{name} must be an iterable of items, not a {type(items).__name__} (each "
            f"character would be an item): give [{short(items)}] for one item"
        )
    if not isinstance(items, Iterable):
        raise TypeError(
            f"{name} must be an iterable of items (a list, a generator), got {short(items)}"
        )
    return items


@attrs.frozen
class Pause:
    """Among the items fed to a module or an inlet: wait ``seconds`` (a number, or a
    ``timedelta``; on the run's clock, so virtual time in a test) before the next item.

    ``[1, Pause(5), 2]`` sends 1, then 2 five seconds later: what a module does between
    items (a timeout, a window, a debounce) is tested without real waiting.
    """

    seconds: float = attrs.field(converter=_pause_seconds)


async def _pause(pause: Pause, stopping: trio.Event) -> None:
    """Wait out ``pause``, or until ``stopping`` is set (a graceful stop)."""
    with trio.move_on_after(pause.seconds):
        await stopping.wait()


@attrs.define
class _Tally:
    """How far one feed (or the sending into one inlet) got: items sent, seconds of
    pauses met, and the items it was given if they could be counted without reading
    them (a list, a tuple, a range)."""

    given: int | None
    fed: int = 0
    paused: float = 0.0

    @property
    def unfed(self) -> int | None:
        return None if self.given is None else max(self.given - self.fed, 0)


def _counted(items: Iterable[Any]) -> int | None:
    """How many items (pauses left out) ``items`` holds, if it says without being read."""
    if isinstance(items, range):
        return len(items)
    if isinstance(items, list | tuple):
        return sum(not isinstance(item, Pause) for item in items)
    return None


async def _feed_items(
    items: Iterable[Any],
    send: Callable[[Any], Awaitable[None]],
    stopping: trio.Event,
    tally: _Tally,
) -> None:
    """Send ``items`` one by one as they are read (never all at once: an endless
    generator is fine), waiting out each :class:`Pause`, until ``stopping`` is set."""
    for item in items:
        if stopping.is_set():
            return
        if isinstance(item, Pause):
            tally.paused += item.seconds
            await _pause(item, stopping)
        else:
            await send(item)
            tally.fed += 1


class Feed(Source):
    """A source that emits the given items, in order, then ends (bytewax's
    ``TestingSource``). A :class:`Pause` among them waits before the next item; a
    graceful stop ends the feed at once.

    Args:
        items: What to emit, read one by one as it is emitted (a generator may be
            endless). A list is emitted again from its start if the feed restarts; an
            iterator goes on where it was.

    Raises:
        TypeError: ``items`` is a string (each character would be an item), ``None`` or
            not iterable.
    """

    outputs: ClassVar[Mapping[str, Any]] = {"out": Any}

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = _check_items("items", items)
        self._stopping = trio.Event()
        self._recordings = _ACTIVE.get()

    async def start(self) -> None:
        recordings = self._recordings
        tally = _Tally(None) if recordings is None else recordings.tally(self.name, self.items)
        await _feed_items(self.items, self.emit, self._stopping, tally)

    def stop(self) -> None:
        self._stopping.set()


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
    tallies: dict[str, _Tally] = attrs.Factory(dict)

    def add(self, name: str, item: Any) -> None:
        recording = self.by_name.setdefault(name, Recording())
        recording.items.append(item)
        recording.times.append(trio.current_time() - self.started)

    def of(self, name: str) -> Recording:
        """The recording of ``name``, the same object as it grows."""
        return self.by_name.setdefault(name, Recording())

    def tally(self, name: str, items: Iterable[Any]) -> _Tally:
        """The tally of the feed (or inlet) ``name``, new if it had none (a restarted
        feed of a list counts its items again)."""
        tally = self.tallies.get(name)
        if tally is None:
            tally = self.tallies[name] = _Tally(_counted(items))
        return tally

    def paused(self) -> float:
        """The most seconds any feed has paused for so far."""
        tallies = tuple(self.tallies.values())  # read by the wall-clock guard's thread too
        return max((tally.paused for tally in tallies), default=0.0)


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
        fed: The items each feed (a :class:`Feed`, the feed of a port of
            :func:`run_module`, or the sending into an inlet) sent, by its name.
        unfed: The items each feed was given but never sent (the run ended first), by
            its name; only for items given as a list, a tuple or a range (the rest of an
            iterator is left unread, so uncounted). Every item given is accounted for:
            ``fed + unfed`` is what was given, and what was fed came out, was
            dead-lettered, dropped, or is still in a module (a window, a buffer).
    """

    outputs: Mapping[str, list[Any]]
    times: Mapping[str, list[float]]
    dead_letters: tuple[DeadLetter, ...]
    status: SystemStatus
    error: ActorflowError | None
    elapsed: float
    fed: Mapping[str, int] = attrs.Factory(dict)
    unfed: Mapping[str, int] = attrs.Factory(dict)

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

    inputs: Mapping[str, Iterable[Any]]
    """Items to send into each inlet, which is then closed."""
    outlets: tuple[str, ...]
    """Outlets to read to the end, recorded under their own names."""
    recorded: Mapping[str, str]
    """Each output of the result, by the recorder (or outlet) that records it."""
    stop_after: float | None
    timeout: float
    settings: Settings | None
    store: Store | None

    def deadline(self, recordings: _Recordings) -> float:
        """Seconds from the start after which the run is cancelled as hung: ``timeout``
        after ``stop_after`` or after the pauses the feeds have met so far."""
        return max(recordings.paused(), self.stop_after or 0.0) + self.timeout


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
    seconds: float = 0.0
    """When the deadline passed, in seconds since the start (on the clock that said so)."""
    by_wall: bool = False
    """Whether the wall clock said so, the run's clock being virtual (the loop was kept busy)."""

    def expire(self, seconds: float, *, by_wall: bool = False) -> None:
        """The deadline has passed: note what was still running, then cancel."""
        if self.timed_out:
            return
        self.timed_out = True
        self.seconds = seconds
        self.by_wall = by_wall
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
    stop_after: float | timedelta | None,
    timeout: float | timedelta,
    settings: Settings | None,
    store: Store | None,
) -> _Plan:
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be an actorflow.Graph, got {type(graph).__name__}")
    inlets = [spec.name for spec in graph.modules if _is_module(spec.factory, Inlet)]
    if inputs is not None and not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping {{inlet: [items]}}, got {short(inputs)}")
    given = {
        name: _check_items(f"inputs[{name!r}]", items) for name, items in (inputs or {}).items()
    }
    unknown = sorted(set(given) - set(inlets))
    if unknown:
        known = ", ".join(map(repr, inlets)) or "none"
        raise ValueError(
            f"inputs name {', '.join(map(repr, unknown))}, not inlets of graph "
            f"{graph.name!r} (its inlets: {known})"
        )
    outlets = tuple(spec.name for spec in graph.modules if _is_module(spec.factory, Outlet))
    recorders = [spec.name for spec in graph.modules if _is_module(spec.factory, Recorder)]
    return _Plan(
        inputs={name: given.get(name, ()) for name in inlets},
        outlets=outlets,
        recorded={name: name for name in [*recorders, *outlets]},
        stop_after=None if stop_after is None else _check_seconds("stop_after", stop_after),
        timeout=_check_seconds("timeout", timeout, zero=False),
        settings=settings,
        store=store,
    )


async def _send_all(
    system: System, name: str, items: Iterable[Any], stopping: trio.Event, tally: _Tally
) -> None:
    """Send ``items`` into the inlet ``name`` (waiting out each :class:`Pause`), then
    close it; a stop (``stop_after``) ends the sending."""

    async def send(item: Any) -> None:
        await system.send(name, item)

    try:
        await _feed_items(items, send, stopping, tally)
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
            tally = recordings.tally(name, items)
            nursery.start_soon(_send_all, system, name, items, stopping, tally)
        for name in plan.outlets:
            nursery.start_soon(_read_all, system, name, recordings)
        if plan.stop_after is not None:
            nursery.start_soon(_stop_after, system, plan.stop_after, stopping)


WALL_SLACK = 1.0
"""Real seconds a run on a virtual clock may take beyond its ``timeout``."""


async def _deadline(plan: _Plan, recordings: _Recordings, outcome: _Outcome) -> None:
    """Expire the run at its deadline on its clock (later as the feeds meet pauses)."""
    while True:
        seconds = plan.deadline(recordings)
        if trio.current_time() >= recordings.started + seconds:
            outcome.expire(seconds)
            return
        await trio.sleep_until(recordings.started + seconds)


def _wait_wall(done: threading.Event, limit: Callable[[], float]) -> float | None:
    """Wait until ``done`` or until ``limit()`` real seconds have passed (asked again
    as it waits: it grows as feeds pause); ``None`` if done, else the seconds waited."""
    start = time.monotonic()
    while True:
        seconds = limit()
        left = start + seconds - time.monotonic()
        if left <= 0:
            return seconds
        if done.wait(min(left, 1.0)):
            return None


async def _wall_clock_guard(
    done: threading.Event, plan: _Plan, recordings: _Recordings, outcome: _Outcome
) -> None:
    """Expire the run if it goes on too long in real time. On a virtual clock that is
    ``timeout`` (and a little slack) whatever virtual time the run covers: a module
    that keeps the loop busy without ever waiting stops virtual time from reaching the
    run's deadline. On the real clock it is the run's own deadline."""
    virtual = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)

    def limit() -> float:
        return plan.timeout + WALL_SLACK if virtual else plan.deadline(recordings)

    waited = await trio.to_thread.run_sync(_wait_wall, done, limit, abandon_on_cancel=True)
    if waited is not None:
        outcome.expire(waited, by_wall=virtual)


async def _run(graph: Graph, plan: _Plan, recordings: _Recordings) -> _Outcome:
    """Run ``graph`` as ``plan`` says, within its deadline (on the run's clock and on the
    wall clock); errors once the system has started are the outcome's, not raised."""
    outcome = _Outcome()
    done = threading.Event()
    with single_errors():
        async with trio.open_nursery() as guard:
            guard.start_soon(_deadline, plan, recordings, outcome)
            guard.start_soon(_wall_clock_guard, done, plan, recordings, outcome)
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
        fed={name: tally.fed for name, tally in recordings.tallies.items()},
        unfed={
            name: tally.unfed
            for name, tally in recordings.tallies.items()
            if tally.unfed is not None
        },
    )


def _timed_out(
    graph: Graph, plan: _Plan, outcome: _Outcome, result: RunResult | None
) -> TimedOutError:
    seconds = outcome.seconds
    if outcome.expired is None:
        return TimedOutError(
            f"graph {graph.name!r} did not start within {seconds:g} s: a module's "
            "validate() is still waiting",
            result,
        )
    actors = outcome.expired.actors
    running = [name for name, actor in actors.items() if not actor.state.is_final]
    described = [
        f"{name!r} ({actors[name].state.value}"
        + (f" on {actors[name].blocked_on})" if actors[name].blocked_on else ")")
        for name in running
    ]
    within = f"{seconds:g} s" + (" of real time" if outcome.by_wall else "")
    hint = _hint(graph, plan, outcome, running)
    return TimedOutError(
        f"graph {graph.name!r} did not end within {within} and was cancelled; still "
        f"running then: {', '.join(described) or 'none'}. {hint}",
        result,
    )


def _hint(graph: Graph, plan: _Plan, outcome: _Outcome, running: list[str]) -> str:
    """What to do about a run that timed out, as the case says."""
    threads = _blocking(graph)
    if threads and isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        return (
            f"{', '.join(map(repr, threads))} blocking: the time its threads take is "
            "real, which a virtual clock cannot see; run it on the real clock "
            "(virtual_time=False)"
        )
    if outcome.by_wall:
        return (
            "Virtual time stood still: a module keeps the loop busy without ever "
            "waiting (a loop that never awaits, a sync hook that does not return)"
        )
    stuck = [name for name in threads if name in running]
    if stuck:
        return (
            f"{', '.join(map(repr, stuck))} blocking: a call in its worker thread did not "
            "return (it is abandoned a few seconds after the cancel, so the run took that "
            "much longer); a call that needs longer needs a larger timeout="
        )
    if plan.stop_after is None:
        return (
            "A source that runs until it is stopped needs stop_after=; a run that takes "
            "longer, a larger timeout="
        )
    return (
        f"It was stopped at stop_after={plan.stop_after:g} s but did not end within "
        f"timeout={plan.timeout:g} s more: a module that does not end on a stop keeps "
        "it going; a run that takes longer needs a larger timeout="
    )


def _blocking(graph: object) -> list[str]:
    """The modules of ``graph`` whose class says their sync hooks run in threads (none
    if it is no graph: that is refused, its type named, when the run is planned)."""
    modules = graph.modules if isinstance(graph, Graph) else ()
    return [spec.name for spec in modules if getattr(spec.factory, "blocking", False) is True]


async def _arun(graph: Graph, plan: _Plan) -> RunResult:
    recordings = _Recordings(trio.current_time())
    for spec in graph.modules:  # a feed the run ended before it started is all unfed
        if _is_module(spec.factory, Feed) and isinstance(spec.config.get("items"), Iterable):
            recordings.tally(spec.name, spec.config["items"])
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
        threads = _blocking(graph)
        virtual_time = not threads
        if threads:
            warnings.warn(
                f"{form}(): {', '.join(map(repr, threads))} blocking (its sync hooks run "
                "in worker threads, whose time a virtual clock cannot see), so the run is "
                "on the real clock: its pauses and timers take real time. Pass "
                "virtual_time=False to say so, or make the module async to test it on "
                "virtual time",
                stacklevel=3,
            )
    else:
        check_flag("virtual_time", virtual_time)
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
    stop_after: float | timedelta | None = None,
    timeout: float | timedelta = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the run's deadline: a clear error)
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
    stop_after: float | timedelta | None = None,
    timeout: float | timedelta = DEFAULT_TIMEOUT,
    settings: Settings | None = None,
    store: Store | None = None,
    virtual_time: bool | None = None,
) -> RunResult:
    """Run ``graph`` to its end and say what came out (bytewax's ``run_main``).

    What reaches each :class:`Recorder` and each :class:`~actorflow.Outlet` of the
    graph is in ``result.outputs``, under the module's name.

    Args:
        graph: What to run.
        inputs: Items to send into the graph's inlets, by inlet name (each any
            iterable, read as it is sent; a :class:`Pause` among them waits); each inlet
            is closed after its items, and one not named here at once, so that the graph
            can end by itself.
        stop_after: Stop the graph gracefully this many seconds (or a ``timedelta``)
            after it started (for sources that run until stopped), unless it ended by
            itself before.
        timeout: Seconds the run may take (after ``stop_after`` or its pauses) before
            it is cancelled and :class:`TimedOutError` raised; on a virtual clock also
            in real time (plus a second), however much virtual time the run covers.
        settings: The system's settings.
        store: The shared data store (a fresh :class:`~actorflow.MemoryStore` if not
            given).
        virtual_time: Run on a virtual clock that jumps to the next timer whenever every
            task waits (``True``), or on the real clock (``False``): for modules that
            wait on the world outside trio (real I/O), whose time a virtual clock cannot
            see. By default (``None``) virtual, unless a module of the graph is
            ``blocking`` (its sync hooks run in worker threads, which take real time):
            then a warning names it.

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
) -> dict[str, Iterable[Any]]:
    """The items for each input port of ``module`` (read only as they are fed): a
    mapping names its ports; a plain iterable goes to its only input port."""
    ports = list(module.inputs)
    owner = module.__qualname__
    if isinstance(items, Mapping):
        unknown = sorted(set(items) - set(ports), key=str)
        if unknown:
            known = ", ".join(map(repr, ports)) or "none"
            raise ValueError(
                f"{owner} has no input port {', '.join(map(repr, unknown))} (its input "
                f"ports: {known})"
            )
        return {
            port: _check_items(f"items[{port!r}]", items[port]) if port in items else ()
            for port in ports
        }
    given = _check_items("items", items)
    if not ports:
        if not (isinstance(given, Sized) and len(given) == 0):
            raise TypeError(f"{owner} has no input port: it takes no items")
        return {}
    if len(ports) > 1:
        raise TypeError(
            f"{owner} has input ports {', '.join(map(repr, ports))}: give the items by "
            "port, as {port: [items]}"
        )
    return {ports[0]: given}


def _feed_name(module: type[Module], port: str) -> str:
    """``"feed"`` for a module with one input port, else ``"feed:<port>"``."""
    return _FEED if len(module.inputs) == 1 else f"{_FEED}:{port}"


def _check_name(name: object) -> str:
    if not (isinstance(name, str) and name and "." not in name and ":" not in name):
        raise ValueError(
            f"name must be a non-empty string without '.' or ':' (the module's name in "
            f"the graph), got {short(name)}"
        )
    return name


def module_graph(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]] = (),
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    link: Mapping[str, Any] | None = None,
) -> Graph:
    """The graph :func:`run_module` runs: ``module`` with a :class:`Feed` on each input
    port it is given items for (module ``"feed"`` for a module with one input port,
    ``"feed:<port>"`` for each port of one with several: each port is fed on its own),
    and a :class:`Recorder` on each output port (module ``"record:<port>"``); ``link``
    holds the options of the links from the feeds (:meth:`Graph.link
    <actorflow.Graph.link>`'s: ``buffer``, ``overflow``, ...). Extend it
    (supervision, more modules) and run it with :func:`run_graph` when
    :func:`run_module`'s options are not enough.

    Raises:
        TypeError: ``module`` is not a module class, or the items do not fit its ports.
        ValueError: The items name a port it does not have, or ``name`` is no name.
    """
    if not _is_module(module, Module):
        raise TypeError(f"module must be a module class (a Processor, say), got {module!r}")
    if _is_module(module, Recorder):
        raise TypeError("a Recorder is what run_module puts on each output: test it with a list")
    name = _default_name(module) if name is None else _check_name(name)
    if name == _FEED:
        raise ValueError(f"name {name!r} is taken by the test's own modules; choose another")
    by_port = _port_items(module, items)
    graph = Graph(name=f"test-{name}")
    graph.add(name, module, **dict(config or {}))
    for port, port_items in by_port.items():
        graph.add(_feed_name(module, port), Feed, items=port_items)
        graph.link(_feed_name(module, port), f"{name}.{port}", **dict(link or {}))
    for port in module.outputs:
        graph.add(_recorder_name(port), Recorder)
        graph.link(f"{name}.{port}", _recorder_name(port))
    return graph


def _module_run(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]],
    options: _ModuleOptions,
) -> tuple[Graph, _Plan]:
    graph = module_graph(
        module, items, config=options.config, name=options.name, link=options.link
    )
    name = graph.modules[0].name
    if options.supervise is not None:
        graph.supervise(name, **options.supervise)
    if options.supervisor is not None:
        graph.supervisor(**options.supervisor)
    plan = _graph_plan(
        graph, None, options.stop_after, options.timeout, options.settings, options.store
    )
    recorded = {port: _recorder_name(port) for port in module.outputs}
    return graph, attrs.evolve(plan, recorded=recorded)


@attrs.frozen
class _ModuleOptions:
    config: Mapping[str, Any] | None
    name: str | None
    stop_after: float | timedelta | None
    timeout: float | timedelta
    settings: Settings | None
    supervise: Mapping[str, Any] | None
    supervisor: Mapping[str, Any] | None
    store: Store | None
    link: Mapping[str, Any] | None


async def arun_module(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]] = (),
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    stop_after: float | timedelta | None = None,
    timeout: float | timedelta = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the run's deadline: a clear error)
    settings: Settings | None = None,
    supervise: Mapping[str, Any] | None = None,
    supervisor: Mapping[str, Any] | None = None,
    store: Store | None = None,
    link: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run one module on ``items``, inside trio; see :func:`run_module`."""
    options = _ModuleOptions(
        config, name, stop_after, timeout, settings, supervise, supervisor, store, link
    )
    graph, plan = _module_run(module, items, options)
    return await _arun(graph, plan)


def run_module(
    module: type[Module],
    items: Iterable[Any] | Mapping[str, Iterable[Any]] = (),
    *,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    stop_after: float | timedelta | None = None,
    timeout: float | timedelta = DEFAULT_TIMEOUT,
    settings: Settings | None = None,
    supervise: Mapping[str, Any] | None = None,
    supervisor: Mapping[str, Any] | None = None,
    store: Store | None = None,
    link: Mapping[str, Any] | None = None,
    virtual_time: bool | None = None,
) -> RunResult:
    """Run one module, as the runtime runs it, on ``items``; say what came out.

    The module is built as ``module(**config)``, fed ``items`` on its input port (then
    the end of stream, so it ends by itself), and every output port is recorded:
    ``result.output("alert")``. A source or progressive module without inputs just runs.

    Args:
        module: The module class under test.
        items: What to feed it: any iterable (read as it is fed, never twice; not a
            string) for a module with one input port, or ``{port: [items]}``, each port
            fed on its own. A :class:`Pause` among them waits before the next item;
            ``result.fed`` and ``result.unfed`` count what was sent and what was not.
        config: The module's configuration (its constructor's keyword arguments).
        name: Its name in the graph (default: the class name in snake case), as dead
            letters and the status show it.
        stop_after, timeout, settings, virtual_time: See :func:`run_graph`.
        supervise: How the module is supervised: the options of
            :meth:`Graph.supervise <actorflow.Graph.supervise>` (``attempts``, ...).
        supervisor: The root supervisor's options (``max_restarts``, ``period``, ...).
        store: The data store it sees (a test's, filled first; else a fresh one).
        link: The options of the links that feed it (:meth:`Graph.link
            <actorflow.Graph.link>`'s: ``buffer=1, overflow="drop_newest"``, say).

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
    options = _ModuleOptions(
        config, name, stop_after, timeout, settings, supervise, supervisor, store, link
    )
    graph, plan = _module_run(module, items, options)

    async def run() -> RunResult:
        return await _arun(graph, plan)

    return _run_sync(run, graph, virtual_time, "run_module")


# -- waiting, and systems that run for a test ------------------------------------------------


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (a clear error, like Akka's awaitCond)
    interval: float = 0.01,
) -> None:
    """Wait until ``condition()`` is true, checking every ``interval`` seconds (Akka's
    ``awaitCond``): ``await wait_until(lambda: len(seen) == 3)``. An async condition
    (``async def``, or returning an awaitable) is awaited each time. On a virtual clock
    the waiting takes no real time.

    Raises:
        TimedOutError: It was still false after ``timeout`` seconds.
    """
    timeout = _check_seconds("timeout", timeout, zero=False)
    interval = _check_seconds("interval", interval, zero=False)
    with trio.move_on_after(timeout):
        while not await _holds(condition):  # noqa: ASYNC110 (a condition on anything)
            await trio.sleep(interval)
        return
    raise TimedOutError(f"the condition was still false after {timeout:g} s")


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    value = condition()
    if inspect.isawaitable(value):
        value = await value
    return bool(value)


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
        self._recorders: set[str] = set()

    async def __call__(
        self, graph: Graph, settings: Settings | None = None, **options: Any
    ) -> System:
        """Start ``graph`` (``options`` are :func:`~actorflow.open_system`'s) and return
        it once its actors have started.

        Raises:
            GraphError: The graph is invalid (and the other start-up errors).
        """
        system: System = await self._nursery.start(self._run, graph, settings, options)
        self._recorders.update(
            spec.name for spec in graph.modules if _is_module(spec.factory, Recorder)
        )
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
        starter started (times since the starter was made).

        Raises:
            KeyError: No graph this starter started has a Recorder ``name``; the
                message lists those it has.
        """
        if name not in self._recorders:
            known = ", ".join(map(repr, sorted(self._recorders))) or "none"
            raise KeyError(
                f"no Recorder {name!r} in the graphs started (their Recorders: {known})"
            )
        return self._recordings.of(name)

    def close(self) -> None:
        """Stop every system it started (gracefully); the nursery waits for their end."""
        self._closing.set()
