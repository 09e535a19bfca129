"""Interaction priority: a latency-sensitive actor's input goes before progressive steps."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._actor._priority import sensitive_names

Q = 0.01
"""The hog's quantum: each of its steps takes this long (on the mock clock)."""


class Hog(af.Progressive):
    """Every step is ``Q`` seconds of work: it moves the mock clock by ``Q``."""

    outputs: ClassVar = {"out": int}
    quantum = Q

    def __init__(self, steps: int, clock: trio.testing.MockClock) -> None:
        self.steps = steps
        self.clock = clock

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        self.clock.jump(Q)
        if run_number + 1 >= self.steps:
            return af.Step(af.StepState.TERMINATED, 1)
        return af.Step(af.StepState.READY, 1)


class Echo(af.Processor):
    def process(self, data: float) -> float:
        return data


class Pong(af.Sink):
    """Records how long after it was due each ping was answered."""

    def __init__(self, latencies: list[float]) -> None:
        self.latencies = latencies

    def consume(self, data: float) -> None:
        self.latencies.append(trio.current_time() - data)


class Ignore(af.Sink):
    def consume(self, data: Any) -> None:
        pass


def interaction_graph(
    clock: trio.testing.MockClock, latencies: list[float], *, echo: type[af.Module] = Echo
) -> af.Graph:
    graph = af.Graph()
    graph.add("hog", Hog, steps=60, clock=clock)
    graph.add("done", Ignore)
    graph.link("hog", "done")
    graph.add("knob", af.Variable)
    graph.add("echo", echo)
    graph.add("pong", Pong, latencies=latencies)
    graph.chain("knob", "echo", "pong")
    return graph


async def ping_every_5_ms(system: af.System, count: int) -> None:
    """Set the variable every 5 ms, each time to the moment it was due."""
    for _ in range(count):
        due = trio.current_time() + 0.005
        await trio.sleep_until(due)
        await system.set("knob", due)


async def test_a_variable_and_what_it_reaches_answer_within_one_step_of_a_hog(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Inferred from the variable: a ping set while a hog's step runs is answered as
    soon as that step ends (at most one quantum late), never after a second step."""
    latencies: list[float] = []
    async with af.open_system(interaction_graph(autojump_clock, latencies)) as system:
        await ping_every_5_ms(system, 80)
        await system.stop()
    assert len(latencies) == 80
    assert max(latencies) <= Q + 1e-9
    assert system.status().actors["hog"].reason == "normal"  # it ran all its steps


class NotSensitive(Echo):
    latency_sensitive = False


async def test_a_module_that_opts_out_waits_for_steps_like_any_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``latency_sensitive = False`` cuts the path: the pings then wait behind steps,
    and over 80 pings at least one waits longer than one step (it is not fused into
    the sensitive inlet's task, where it would answer by call, behind no step)."""
    latencies: list[float] = []
    graph = interaction_graph(autojump_clock, latencies, echo=NotSensitive)
    async with af.open_system(graph) as system:
        await ping_every_5_ms(system, 80)
        await system.stop()
    assert len(latencies) == 80
    assert max(latencies) > Q + 1e-9


async def test_a_steady_stream_of_interactions_delays_steps_but_never_stops_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sensitive consumer that never drains its input holds a step back at most one
    quantum: the hog still finishes."""
    release = trio.Event()

    class Stuck(af.Sink):
        latency_sensitive = True

        async def consume(self, data: Any) -> None:
            await release.wait()

    graph = af.Graph()
    graph.add("hog", Hog, steps=20, clock=autojump_clock)
    graph.add("done", Ignore)
    graph.link("hog", "done")
    graph.add("knob", af.Variable)
    graph.add("stuck", Stuck)
    graph.link("knob", "stuck")
    async with af.open_system(graph) as system:
        await system.set("knob", 1)
        await system.set("knob", 2)  # waits in the link while the first is held
        began = trio.current_time()
        while system.status().actors["hog"].state is not af.ActorState.TERMINATED:
            await trio.sleep(Q)
        # 20 steps of Q, each held back at most Q.
        assert trio.current_time() - began <= 2 * 20 * Q + Q
        release.set()
        await system.stop()


class Plain(af.Processor):
    def process(self, data: Any) -> Any:
        return data


class Declared(Plain):
    latency_sensitive = True


class Feed(af.Source):
    def start(self) -> list[int]:
        return []


def names(graph: af.Graph) -> frozenset[str]:
    """The latency-sensitive modules of ``graph``, as a running system infers them."""
    found: list[frozenset[str]] = []

    async def main() -> None:
        async with af.open_system(graph) as system:
            from actorflow._actor._priority import interactions_of

            found.append(interactions_of(system).names)
            await system.stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return found[0]


def test_inlets_variables_and_what_they_reach_are_inferred_sensitive() -> None:
    """Every module downstream of an inlet or a variable is on an interaction's path;
    a module fed only by an ordinary source is not, unless it says so."""
    graph = af.Graph()
    graph.add("inlet", af.Inlet)
    graph.add("a", Plain)
    graph.add("b", Plain)
    graph.add("feed", Feed)
    graph.add("c", Plain)
    graph.add("d", Declared)
    graph.add("e", Plain)
    graph.chain("inlet", "a", "b")
    graph.chain("feed", "c")
    graph.chain("feed", "d", "e")
    assert names(graph) == {"inlet", "a", "b", "d", "e"}


def test_a_module_that_opts_out_is_not_sensitive_and_cuts_the_path() -> None:
    """``latency_sensitive = False`` on a module downstream of an inlet: neither it nor
    what only it feeds is inferred sensitive."""
    graph = af.Graph()
    graph.add("inlet", af.Inlet)
    graph.add("a", NotSensitivePlain)
    graph.add("b", Plain)
    graph.chain("inlet", "a", "b")
    assert names(graph) == {"inlet"}


class NotSensitivePlain(Plain):
    latency_sensitive = False


@pytest.mark.parametrize("value", ["yes", 1, 0.5])
def test_latency_sensitive_must_be_a_flag_or_none(value: Any) -> None:
    """A module's ``latency_sensitive`` that is not True, False or None is a graph
    problem naming it."""

    class Odd(Plain):
        latency_sensitive = value

    graph = af.Graph()
    graph.add("inlet", af.Inlet)
    graph.add("odd", Odd)
    graph.link("inlet", "odd")
    with pytest.raises(af.GraphError, match="latency_sensitive must be True or False"):
        af.run(graph)


def test_sensitive_names_of_nothing_is_empty() -> None:
    """No actors, no interactions."""
    assert sensitive_names([]) == frozenset()
