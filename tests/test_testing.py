"""actorflow.testing: one module or a whole graph run on given items, as a user tests them."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import actorflow as af
import actorflow.testing
from actorflow.testing import (
    Feed,
    Pause,
    Recorder,
    SystemStarter,
    TimedOutError,
    arun_graph,
    arun_module,
    module_graph,
    run_graph,
    run_module,
    wait_until,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


class Double(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data * 2


class Split(af.Processor):
    """Even numbers on ``out``, odd ones on ``odd``."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int, "odd": int}

    async def process(self, data: int) -> int | None:
        if data % 2:
            await self.emit(data, "odd")
            return None
        return data


class Label(af.Processor):
    """Says which port each item came in on."""

    inputs: ClassVar = {"left": object, "right": object}

    def process(self, data: Any, port: str) -> str:
        return f"{port}:{data}"


class Fragile(af.Processor):
    """Fails on multiples of three."""

    def process(self, data: int) -> int:
        if data % 3 == 0:
            raise ValueError(f"cannot take {data}")
        return data


class Picky(af.Processor):
    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise TypeError("a limit is a count")
        self.limit = limit

    def validate(self) -> None:
        if self.limit > 10:
            raise ValueError("at most 10")

    def process(self, data: Any) -> Any:
        return data


class Clock(af.Processor):
    """Forwards the time each item arrived at."""

    def process(self, data: Any) -> float:
        return trio.current_time()


class Poll(af.Source):
    """Reads every ``interval`` seconds until stopped; a stop ends the wait at once."""

    outputs: ClassVar = {"out": float}

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stopping = trio.Event()

    async def start(self) -> None:
        while self.active:
            await self.emit(21.5)
            with trio.move_on_after(self.interval):
                await self.stopping.wait()

    def stop(self) -> None:
        self.stopping.set()


class Endless(af.Progressive):
    """Never finishes: every step asks for another."""

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        return af.Step(af.StepState.READY, step_size)


class Waiting(af.Processor):
    """Its validate() waits for something that never comes."""

    async def validate(self) -> None:
        await trio.sleep_forever()

    def process(self, data: Any) -> Any:
        return data


# -- run_module --------------------------------------------------------------------------------


def test_a_processor_run_on_items_gives_its_outputs_in_order() -> None:
    """Each item went through the module; nothing was lost; the module ended normally."""
    result = run_module(Double, [1, 2, 3])
    assert result.outputs == {"out": [2, 4, 6]}
    assert result.output() == [2, 4, 6]
    assert result.state is af.SystemState.DONE
    assert result.status.actors["double"].reason == "normal"
    assert (result.error, result.dropped, result.drops, result.errors) == (None, 0, {}, {})
    assert result.dead_letters == ()


def test_every_output_port_is_recorded_on_its_own() -> None:
    """Items emitted on another port are under that port's name."""
    result = run_module(Split, range(6))
    assert result.outputs == {"out": [0, 2, 4], "odd": [1, 3, 5]}
    assert result.output("odd") == [1, 3, 5]
    with pytest.raises(
        KeyError, match=r"no output 'even' was recorded \(recorded: 'out', 'odd'\)"
    ):
        result.output("even")


def test_items_by_port_are_fed_in_turns() -> None:
    """A mapping feeds each input port; the first item of each port, then the second."""
    result = run_module(Label, {"left": ["a", "b", "c"], "right": [1]})
    assert sorted(result.output()) == ["left:a", "left:b", "left:c", "right:1"]
    assert result.status.actors["label"].received == 4


def test_items_that_do_not_fit_the_ports_are_refused_naming_them() -> None:
    """A list for two input ports, an unknown port, or items for a source are errors."""
    with pytest.raises(TypeError, match=r"input ports 'left', 'right': give the items by port"):
        run_module(Label, ["a"])
    with pytest.raises(ValueError, match=r"no input port 'middle' \(its input ports: 'left', "):
        run_module(Label, {"middle": [1]})
    with pytest.raises(TypeError, match="Poll has no input port: it takes no items"):
        run_module(Poll, [1], config={"interval": 1})
    with pytest.raises(TypeError, match="module must be a module class"):
        run_module(Double(), [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name 'feed' is taken"):
        run_module(Double, [1], name="feed")


def test_a_failing_item_is_a_dead_letter_and_the_rest_flow_on() -> None:
    """With room for restarts, each item the module fails on is dead-lettered with its
    error, the module is restarted, and every other item comes out."""
    result = run_module(Fragile, range(1, 10), supervisor={"max_restarts": 5})
    assert result.output() == [1, 2, 4, 5, 7, 8]
    assert [letter.item for letter in result.dead_letters] == [3, 6, 9]
    assert str(result.dead_letters[0].error) == "cannot take 3"
    assert result.errors == {"fragile": 3}
    assert result.status.actors["fragile"].restarts == 3
    assert result.error is None
    assert result.state is af.SystemState.DONE


def test_a_module_that_keeps_failing_ends_the_run_with_its_error_not_a_raise() -> None:
    """Beyond the supervisor's restart intensity the run fails: the error is the
    result's, with what was dead-lettered and what was lost because of it."""
    result = run_module(Fragile, range(1, 10), name="weak")
    assert isinstance(result.error, af.EscalationError)
    assert "module 'weak' failed" in str(result.error)
    assert result.state is af.SystemState.FAILED
    assert [letter.item for letter in result.dead_letters] == [3, 6]
    assert result.dropped == sum(n for by in result.drops.values() for n in by.values()) > 0


def test_attempts_retry_an_item_before_it_is_dead_lettered() -> None:
    """``supervise`` sets the module's supervision: three attempts, three errors."""
    result = run_module(Fragile, [3], supervise={"attempts": 3}, supervisor={"max_restarts": 5})
    assert result.dead_letters[0].attempts == 3
    assert result.errors == {"fragile": 3}


def test_a_refused_configuration_is_raised_as_at_start_up() -> None:
    """A constructor or validate() that refuses ``config`` raises as open_system does."""
    with pytest.raises(af.ValidationError, match="at most 10"):
        run_module(Picky, [1], config={"limit": 11})
    with pytest.raises(af.InitializationError, match="a limit is a count"):
        run_module(Picky, [1], config={"limit": -1})
    assert run_module(Picky, [1], config={"limit": 1}).output() == [1]


# -- time ------------------------------------------------------------------------------------


def test_a_periodic_source_is_tested_on_virtual_time_with_stop_after() -> None:
    """Three and a half minutes of polling take no real time; the readings came once
    per interval and the stop did not wait out the last one."""
    wall = time.monotonic()
    result = run_module(Poll, config={"interval": 60}, stop_after=210)
    assert result.output() == [21.5] * 4
    assert result.output_times() == [0, 60, 120, 180]
    assert result.elapsed == 210
    assert result.status.actors["poll"].reason == "stopped"
    assert time.monotonic() - wall < 10


def test_pauses_among_the_items_wait_on_the_run_clock() -> None:
    """A Pause waits before the next item, in virtual time."""
    result = run_module(Clock, [1, Pause(5), 2, 3, Pause(0.5), 4])
    assert result.output() == [0, 5, 5, 5.5]
    assert result.output_times() == [0, 5, 5, 5.5]
    with pytest.raises(ValueError, match="Pause must be a finite number of seconds, 0 or more"):
        Pause(-1)
    with pytest.raises(TypeError, match="Pause must be a number of seconds"):
        Pause("5")  # type: ignore[arg-type]


def test_a_source_that_never_ends_fails_clearly_with_what_it_had_produced() -> None:
    """Without stop_after, a source that runs until stopped is cancelled at the timeout:
    the error names what was still running and keeps the partial result."""
    with pytest.raises(TimedOutError) as caught:
        run_module(Poll, config={"interval": 60}, timeout=150)
    message = str(caught.value)
    assert "graph 'test-poll' did not end within 150 s and was cancelled" in message
    assert "'poll' (running)" in message
    assert "needs stop_after=" in message
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, af.ActorflowError)
    result = caught.value.result
    assert result is not None
    assert result.output() == [21.5] * 3
    assert result.state is af.SystemState.CANCELLED


def test_a_module_that_keeps_the_loop_busy_is_bounded_by_the_wall_clock() -> None:
    """Virtual time never passes while a progressive module steps forever, so the
    timeout is also kept on the wall clock."""
    wall = time.monotonic()
    with pytest.raises(TimedOutError, match=r"'endless' \((running|ready)"):
        run_module(Endless, timeout=0.3)
    assert time.monotonic() - wall < 20


def test_a_start_up_that_never_ends_fails_clearly() -> None:
    """A validate() that waits forever is cancelled at the timeout, before anything ran."""
    with pytest.raises(TimedOutError, match="did not start within 5 s") as caught:
        run_module(Waiting, [1], timeout=5)
    assert caught.value.result is None


def test_run_options_are_checked() -> None:
    """A timeout must be a positive number of seconds."""
    with pytest.raises(ValueError, match="timeout must be a finite number of seconds, above 0"):
        run_module(Double, [1], timeout=0)
    with pytest.raises(TypeError, match="stop_after must be a number of seconds"):
        run_module(Double, [1], stop_after="1")  # type: ignore[arg-type]


class Threaded(af.Processor):
    blocking = True

    def process(self, data: int) -> int:
        time.sleep(0.002)
        return data + 1


def test_a_blocking_module_runs_on_the_real_clock_by_default() -> None:
    """Worker threads take real time, which a virtual clock would jump past: a graph
    with a blocking module runs on the real clock unless told otherwise."""
    with pytest.warns(UserWarning, match=r"run_module\(\): 'threaded' blocking .* real clock"):
        result = run_module(Threaded, [1, 2])
    assert result.output() == [2, 3]
    assert run_module(Threaded, [1], virtual_time=False).output() == [2]


def test_a_blocking_module_forced_onto_virtual_time_fails_saying_why() -> None:
    """On a virtual clock the run's deadline comes while a thread works: the error says
    that the module is blocking and what to do."""
    with pytest.raises(TimedOutError, match=r"'threaded' blocking: .*virtual_time=False"):
        run_module(Threaded, range(100), virtual_time=True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(),
            st.sampled_from([0, 0.5, 1, 7]).map(Pause),
        ),
        max_size=20,
    )
)
def test_any_items_come_out_in_order_at_the_times_the_pauses_say(items: list[Any]) -> None:
    """Whatever the items and pauses, the items come out in order, each at the sum of
    the pauses before it, and the run ends when the last pause has passed."""
    result = run_module(Passing, items)
    expected, times, now = [], [], 0.0
    for item in items:
        if isinstance(item, Pause):
            now += item.seconds
        else:
            expected.append(item)
            times.append(now)
    assert result.output() == expected
    assert result.output_times() == times
    assert result.elapsed == now
    assert result.dropped == 0


class Passing(af.Processor):
    def process(self, data: Any) -> Any:
        return data


# -- run_graph and Recorder --------------------------------------------------------------------


def readings_graph() -> af.Graph:
    graph = af.Graph(name="readings")
    graph.add("requests", af.Inlet)
    graph.add("double", Double)
    graph.add("split", Split)
    graph.add("doubled", Recorder)
    graph.add("odd", Recorder)
    graph.add("results", af.Outlet)
    graph.chain("requests", "double", "doubled")
    graph.add("numbers", Feed, items=[1, Pause(2), 2, 3])
    graph.link("numbers", "split")
    graph.link("split.odd", "odd")
    graph.link("split", "results")
    return graph


def test_a_graph_runs_with_its_recorders_and_outlets_in_the_result() -> None:
    """Recorders and outlets are in ``outputs`` by name; inlets are fed then closed."""
    result = run_graph(readings_graph(), inputs={"requests": [5, Pause(1), 6]})
    assert result.outputs == {"doubled": [10, 12], "odd": [1, 3], "results": [2]}
    assert result.times == {"doubled": [0, 1], "odd": [0, 2], "results": [2]}
    assert result.state is af.SystemState.DONE
    assert result.elapsed == 2


def test_an_inlet_given_no_items_is_closed_so_the_graph_ends() -> None:
    """The run does not wait for items nobody will send."""
    result = run_graph(readings_graph())
    assert result.outputs["doubled"] == []
    assert result.state is af.SystemState.DONE


def test_inputs_for_a_module_that_is_no_inlet_are_refused() -> None:
    with pytest.raises(ValueError, match=r"inputs name 'double', not inlets of graph "):
        run_graph(readings_graph(), inputs={"double": [1]})
    with pytest.raises(TypeError, match=r"graph must be an actorflow\.Graph"):
        run_graph("graph.toml")  # type: ignore[arg-type]


def test_an_invalid_graph_is_raised() -> None:
    graph = af.Graph(name="broken")
    graph.add("double", Double)
    graph.link("nowhere", "double")
    with pytest.raises(af.GraphError, match="nowhere"):
        run_graph(graph)


def test_a_recorder_elsewhere_needs_a_list() -> None:
    """Outside a test run a Recorder appends to ``into``; without one it is refused."""
    seen: list[Any] = []
    graph = af.Graph(name="plain")
    graph.add("numbers", Feed, items=[1, 2])
    graph.add("seen", Recorder, into=seen)
    graph.link("numbers", "seen")
    af.run(graph, handle_signals=False)
    assert seen == [1, 2]
    lost = af.Graph(name="lost")
    lost.add("numbers", Feed, items=[1])
    lost.add("seen", Recorder)
    lost.link("numbers", "seen")
    with pytest.raises(af.ValidationError, match="a Recorder records nowhere here"):
        af.run(lost, handle_signals=False)


def test_the_graph_run_by_run_module_can_be_extended() -> None:
    """module_graph gives run_module's graph to build on: here a dead-letter recorder."""
    graph = module_graph(Fragile, [1, 3, 4])
    graph.add("letters", Recorder)
    graph.dead_letters("letters")
    graph.supervisor(max_restarts=3)
    result = run_graph(graph)
    assert result.output("record:out") == [1, 4]
    assert [letter.item for letter in result.output("letters")] == [3]


def test_a_graceful_stop_ends_a_feed_in_a_pause_at_once() -> None:
    """A Feed waiting out a Pause stops when asked, without waiting for it."""
    graph = af.Graph(name="slow")
    graph.add("numbers", Feed, items=[1, Pause(3600), 2])
    graph.add("seen", Recorder)
    graph.link("numbers", "seen")
    result = run_graph(graph, stop_after=10)
    assert result.output("seen") == [1]
    assert result.elapsed == 10
    assert result.status.actors["numbers"].reason == "stopped"


def test_a_stop_ends_the_feeding_of_a_module_and_of_an_inlet_at_once() -> None:
    """``stop_after`` in the middle of a Pause among the items ends the feeding there:
    the rest is never sent and the run ends at the stop."""
    result = run_module(Double, [1, Pause(100), 2], stop_after=10)
    assert result.output() == [2]
    assert result.elapsed == 10
    assert result.status.actors["feed"].reason == "stopped"
    graph_result = run_graph(
        readings_graph(), inputs={"requests": [1, Pause(100), 2]}, stop_after=5
    )
    assert graph_result.output("doubled") == [2]
    assert graph_result.elapsed == 5


# -- inside trio -------------------------------------------------------------------------------


async def test_the_async_forms_run_on_the_tests_own_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Inside trio, arun_module and arun_graph run on the loop's clock."""
    start = trio.current_time()
    result = await arun_module(Poll, config={"interval": 60}, stop_after=90)
    assert result.output_times() == [0, 60]
    assert trio.current_time() - start == 90
    graph_result = await arun_graph(readings_graph(), inputs={"requests": [1]})
    assert graph_result.output("doubled") == [2]


async def test_the_sync_forms_say_to_await_the_async_ones_inside_trio() -> None:
    with pytest.raises(RuntimeError, match=r"inside trio, await arun_module\(\)"):
        run_module(Double, [1])
    with pytest.raises(RuntimeError, match=r"inside trio, await arun_graph\(\)"):
        run_graph(readings_graph())


async def test_wait_until_waits_for_a_condition_on_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """It returns once the condition holds, and fails clearly when it never does."""
    start = trio.current_time()
    await wait_until(lambda: trio.current_time() - start >= 3, interval=1)
    assert trio.current_time() - start == 3
    with pytest.raises(TimedOutError, match="the condition was still false after 2 s"):
        await wait_until(lambda: False, timeout=2)


@pytest.fixture
async def starter() -> AsyncIterator[SystemStarter]:
    async with trio.open_nursery() as nursery:
        start = SystemStarter(nursery)
        yield start
        start.close()


async def test_a_started_system_runs_until_the_test_ends(
    autojump_clock: trio.testing.MockClock, starter: SystemStarter
) -> None:
    """A system started for a test runs in its background; its recorders are readable
    while it runs."""
    graph = af.Graph(name="background")
    graph.add("poll", Poll, interval=10)
    graph.add("seen", Recorder)
    graph.link("poll", "seen")
    system = await starter(graph)
    await wait_until(lambda: len(starter.recorded("seen").items) == 3, timeout=60)
    assert starter.recorded("seen").times == [0, 10, 20]
    assert system.status().state is af.SystemState.RUNNING


def test_a_system_started_for_a_test_is_stopped_at_its_end() -> None:
    """Closing the starter stops its systems gracefully and waits for them."""
    ended: list[af.SystemState] = []

    async def main() -> None:
        graph = af.Graph(name="background")
        graph.add("poll", Poll, interval=10)
        graph.add("seen", Recorder)
        graph.link("poll", "seen")
        async with trio.open_nursery() as nursery:
            start = SystemStarter(nursery)
            system = await start(graph)
            await trio.sleep(15)
            start.close()
        ended.append(system.status().state)
        assert system.status().actors["poll"].reason == "stopped"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert ended == [af.SystemState.DONE]


# -- the documentation -------------------------------------------------------------------------


def test_the_reference_documents_every_name_of_actorflow_testing() -> None:
    """docs/reference/testing.md has an entry for each name in ``__all__``, and every
    name has a docstring."""
    page = (DOCS / "reference" / "testing.md").read_text(encoding="utf-8")
    documented = set(
        re.findall(
            r"^\.\. auto(?:class|exception|function)::\s+actorflow\.testing\.(\w+)", page, re.M
        )
    )
    assert documented == set(actorflow.testing.__all__)
    for name in actorflow.testing.__all__:
        assert getattr(actorflow.testing, name).__doc__, name


# -- a failing system while the test drives it -------------------------------------------------


class Parse(af.Processor):
    def process(self, data: str) -> float:
        return float(data)


def test_a_failure_is_the_results_error_while_a_stop_or_an_outlet_is_pending() -> None:
    """The run's error is the escalation even while stop_after, an outlet reader or an
    inlet's feed were still going when the module escalated."""
    result = run_module(Parse, ["x", "y", "z"], stop_after=100)
    assert result.state is af.SystemState.FAILED
    assert isinstance(result.error, af.EscalationError)
    graph = af.Graph(name="parsing")
    graph.add("feed", Feed, items=["x", "y", "z"])
    graph.add("parse", Parse)
    graph.add("out", af.Outlet)
    graph.link("feed", "parse")
    graph.link("parse", "out")
    result = run_graph(graph)
    assert result.state is af.SystemState.FAILED
    assert isinstance(result.error, af.EscalationError)
    graph = af.Graph(name="fed")
    graph.add("in", af.Inlet)
    graph.add("parse", Parse)
    graph.link("in", "parse")
    result = run_graph(graph, inputs={"in": ["x", "y", "z", Pause(50), "w"]})
    assert isinstance(result.error, af.EscalationError)


async def test_a_block_with_its_own_nursery_gets_the_systems_failure(
    actorflow_clock: trio.testing.MockClock,
) -> None:
    """When the system fails, a block that waits in a nursery of its own is cancelled
    as a group of Cancelled: open_system raises the system's failure, not the group."""
    graph = af.Graph(name="failing")
    graph.add("feed", Feed, items=["x", "y", "z"])
    graph.add("parse", Parse)
    graph.link("feed", "parse")
    with pytest.raises(af.EscalationError) as caught:
        async with (
            af.open_system(graph, handle_signals=False) as system,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(trio.sleep_forever)
    assert not getattr(caught.value, "__notes__", [])
    assert system.status().state is af.SystemState.FAILED


# -- feeding ----------------------------------------------------------------------------------


class Once:
    """An iterable that may be read only once."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.reads = 0

    def __iter__(self) -> Any:
        self.reads += 1
        assert self.reads == 1, "read twice"
        return iter(self.items)


def test_a_feed_of_a_generator_emits_its_items_and_reads_them_once() -> None:
    """A generator (or any iterable) is read once, as it is fed, in run_graph,
    run_module and an inlet's inputs alike."""
    graph = af.Graph(name="gen")
    graph.add("feed", Feed, items=(n for n in [1, Pause(5), 2]))
    graph.add("seen", Recorder)
    graph.link("feed", "seen")
    result = run_graph(graph)
    assert result.output("seen") == [1, 2]
    assert result.output_times("seen") == [0, 5]
    once = Once([1, Pause(2), 2])
    assert run_module(Double, once).output() == [2, 4]
    graph = af.Graph(name="inlet")
    graph.add("in", af.Inlet)
    graph.add("seen", Recorder)
    graph.link("in", "seen")
    assert run_graph(graph, inputs={"in": Once([3, 4])}).output("seen") == [3, 4]


def test_an_endless_generator_is_fed_lazily_until_the_stop() -> None:
    """Items are read only as they are fed: an endless generator is fine."""

    def ticks() -> Any:
        n = 0
        while True:
            yield n
            yield Pause(1)
            n += 1

    result = run_module(Double, ticks(), stop_after=4.5)
    assert result.output() == [0, 2, 4, 6, 8]
    assert result.fed == {"feed": 5}
    assert result.unfed == {}


def test_each_port_is_fed_on_its_own() -> None:
    """A pause among one port's items does not hold up another port's."""
    result = run_module(Label, {"left": [1, Pause(10), 2], "right": [3, Pause(1), 4]})
    assert sorted(zip(result.output_times(), result.output(), strict=True)) == [
        (0, "left:1"),
        (0, "right:3"),
        (1, "right:4"),
        (10, "left:2"),
    ]
    assert result.fed == {"feed:left": 2, "feed:right": 2}
    assert [spec.name for spec in module_graph(Label, {"left": [1]}).modules][:3] == [
        "label",
        "feed:left",
        "feed:right",
    ]


def test_every_item_given_is_accounted_for() -> None:
    """What a run ended before feeding is counted as unfed."""
    result = run_module(Double, [1, 2, Pause(10), 3, 4], stop_after=5)
    assert result.output() == [2, 4]
    assert result.fed == {"feed": 2}
    assert result.unfed == {"feed": 2}
    graph = af.Graph(name="inlet")
    graph.add("in", af.Inlet)
    graph.add("seen", Recorder)
    graph.link("in", "seen")
    result = run_graph(graph, inputs={"in": range(3)})
    assert (result.fed, result.unfed) == ({"in": 3}, {"in": 0})


# -- timing out -------------------------------------------------------------------------------


def test_a_busy_loop_is_bounded_by_timeout_whatever_virtual_time_is_planned() -> None:
    """On a virtual clock the wall-clock guard is the timeout, not stop_after or the
    pauses plus the timeout; the message says what stood still."""
    wall = time.monotonic()
    with pytest.raises(TimedOutError) as caught:
        run_module(Endless, stop_after=3600, timeout=0.5)
    assert time.monotonic() - wall < 15
    message = str(caught.value)
    assert "of real time" in message
    assert "Virtual time stood still" in message
    assert "needs stop_after=" not in message


class Stubborn(af.Source):
    """Ignores a stop: runs until cancelled."""

    outputs: ClassVar = {"out": int}

    async def start(self) -> None:
        while True:
            await trio.sleep(1)


def test_a_timeout_after_stop_after_says_the_stop_was_not_heeded() -> None:
    with pytest.raises(TimedOutError) as caught:
        run_module(Stubborn, stop_after=10, timeout=5, settings=af.Settings(stop_timeout=60))
    message = str(caught.value)
    assert "did not end within 15 s" in message
    assert "stopped at stop_after=10 s but did not end within timeout=5 s more" in message
    assert "needs stop_after=" not in message


def test_durations_may_be_timedeltas() -> None:
    result = run_module(Clock, [1, Pause(timedelta(minutes=1)), 2])
    assert result.output() == [0, 60]
    result = run_module(Poll, config={"interval": 60}, stop_after=timedelta(minutes=2.5))
    assert result.output_times() == [0, 60, 120]


# -- checking what is given -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: run_module(Double, "abc"),
            TypeError,
            "items must be an iterable of items, not a str",
        ),
        (lambda: run_module(Double, None), TypeError, "items must be an iterable of items"),
        (lambda: run_module(Double, 5), TypeError, "items must be an iterable of items"),
        (lambda: run_module(Label, {"left": "ab"}), TypeError, r"items\['left'\] must be"),
        (lambda: run_graph(af.Graph(name="g"), inputs=[1]), TypeError, "inputs must be a mapping"),
        (
            lambda: run_module(Double, [1], virtual_time="no"),
            TypeError,
            "virtual_time must be True or False",
        ),
        (
            lambda: run_module(Double, [1], stop_after=-1),
            ValueError,
            "stop_after must be a finite number of seconds, 0 or more",
        ),
        (lambda: run_module(Double, [1], name=""), ValueError, "name must be a non-empty string"),
        (
            lambda: run_module(Double, [1], name="a.b"),
            ValueError,
            "name must be a non-empty string",
        ),
        (lambda: run_module(Double, [1], name=123), ValueError, "name must be a non-empty string"),
        (lambda: run_module(Double, [1], name="feed"), ValueError, "name 'feed' is taken"),
        (lambda: run_module(Recorder, [1]), TypeError, "a Recorder is what run_module puts"),
        (lambda: Feed("abc"), TypeError, "items must be an iterable of items, not a str"),
    ],
)
def test_what_is_given_is_checked(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_zero_seconds_are_accepted_where_the_message_says() -> None:
    assert run_module(Double, [1, Pause(0), 2], stop_after=0).state is af.SystemState.DONE


# -- waiting ----------------------------------------------------------------------------------


async def test_wait_until_awaits_an_async_condition(
    actorflow_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()

    async def late() -> bool:
        await trio.sleep(0)
        return trio.current_time() - start >= 5

    await wait_until(late, timeout=60, interval=1)
    assert trio.current_time() - start == 5
    with pytest.raises(TimedOutError):

        async def never() -> bool:
            return False

        await wait_until(never, timeout=3)


async def test_a_recorder_not_in_any_started_graph_is_a_key_error(
    actorflow_clock: trio.testing.MockClock, starter: SystemStarter
) -> None:
    graph = af.Graph(name="seeing")
    graph.add("feed", Feed, items=[1])
    graph.add("seen", Recorder)
    graph.link("feed", "seen")
    await starter(graph)
    with pytest.raises(KeyError, match=r"no Recorder 'typo' .*\(their Recorders: 'seen'\)"):
        starter.recorded("typo")
    await wait_until(lambda: starter.recorded("seen").items == [1])


class Stuck(af.Processor):
    """A blocking call that does not return until the test lets it."""

    blocking = True
    release: ClassVar = threading.Event()

    def process(self, data: int) -> int:
        self.release.wait(60)
        return data


def test_a_stuck_blocking_call_is_reported_as_such() -> None:
    """On the real clock, a worker-thread call that never returns is what the message
    names, not a missing stop_after."""
    try:
        with pytest.raises(TimedOutError) as caught:
            run_module(Stuck, [1], timeout=0.5, virtual_time=False)
    finally:
        Stuck.release.set()
    message = str(caught.value)
    assert "'stuck' blocking: a call in its worker thread did not return" in message
    assert "needs stop_after=" not in message


class Lookup(af.Processor):
    async def process(self, data: str) -> Any:
        return await self.shared.get(data)


def test_a_module_sees_the_store_it_is_given() -> None:
    async def filled() -> af.MemoryStore:
        store = af.MemoryStore()
        await store.put("Lookup", "limit", 28)
        return store

    store = trio.run(filled)
    assert run_module(Lookup, ["limit"], store=store).output() == [28]


class Slow(af.Processor):
    async def process(self, data: int) -> int:
        await trio.sleep(1)
        return data


def test_the_links_that_feed_a_module_take_link_options() -> None:
    """A module that falls behind a small dropping buffer loses what did not fit."""
    result = run_module(Slow, [1, 2, 3, 4], link={"buffer": 1, "overflow": "drop_newest"})
    assert result.output()[0] == 1
    assert result.dropped >= 2
    assert len(result.output()) + result.dropped == result.fed["feed"] == 4
    assert result.drops == {"slow": {"overflow": result.dropped}}
    with pytest.raises(TypeError, match="unexpected keyword argument 'bufer'"):
        run_module(Slow, [1], link={"bufer": 1})


def test_every_feed_of_a_graph_accounts_for_its_items() -> None:
    """Under run_graph too, fed and unfed add up to what each feed was given."""
    graph = af.Graph(name="two")
    graph.add("first", Feed, items=[1, Pause(10), 2])
    graph.add("second", Feed, items=range(3))
    graph.add("seen", Recorder)
    graph.link("first", "seen")
    graph.link("second", "seen")
    result = run_graph(graph, stop_after=5)
    assert result.fed == {"first": 1, "second": 3}
    assert result.unfed == {"first": 1, "second": 0}


def test_a_port_given_no_items_gets_an_empty_feed_so_the_module_ends() -> None:
    result = run_module(Label, {"left": [1]})
    assert result.output() == ["left:1"]
    assert result.fed == {"feed:left": 1, "feed:right": 0}
    assert result.state is af.SystemState.DONE


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.one_of(st.integers(), st.sampled_from([0.5, 1, 3]).map(Pause)), max_size=15),
    st.sampled_from([0, 0.25, 1, 2.5, 10, None]),
    st.booleans(),
)
def test_every_item_is_fed_or_unfed_whatever_the_stop(
    items: list[Any], stop_after: float | None, lazily: bool
) -> None:
    """Fed items come out in order, and fed + unfed is what was given (a generator's
    rest is left unread, so only a list's is counted)."""
    given = [item for item in items if not isinstance(item, Pause)]
    result = run_module(Passing, iter(items) if lazily else items, stop_after=stop_after)
    fed = result.fed["feed"]
    assert result.output() == given[:fed]
    if lazily:
        assert result.unfed == {}
    else:
        assert fed + result.unfed["feed"] == len(given)
    if stop_after is None:
        assert fed == len(given)
