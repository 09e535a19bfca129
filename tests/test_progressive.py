"""Progressive modules: run_step under a quantum, adaptive step size, progress, states.

Work has a controllable cost: each unit jumps the virtual clock, so step sizes and
timings are exact.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af

COST = 0.001  # virtual seconds per unit of work


class RunningMean(af.Progressive):
    """The mean of 0..total-1, posting a partial result (mean, progress) every step."""

    outputs: ClassVar = {"out": tuple}

    def __init__(self, clock: trio.testing.MockClock, total: int, sizes: list[int]) -> None:
        self.clock = clock
        self.total = total
        self.sizes = sizes
        self.next = 0
        self.sum = 0
        self.step_size = 10

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        self.sizes.append(step_size)
        stop = min(self.total, self.next + step_size)
        self.sum += sum(range(self.next, stop))
        done = stop - self.next
        self.next = stop
        self.clock.jump(done * COST)
        self.set_progress(self.next, self.total)
        self.post((self.sum / self.next, self.next / self.total))
        state = af.StepState.TERMINATED if self.next == self.total else af.StepState.READY
        return af.Step(state, done)


async def run_mean(
    clock: trio.testing.MockClock, total: int, quantum: float
) -> tuple[list[int], list[Any], af.System]:
    sizes: list[int] = []
    out: list[Any] = []
    graph = af.Graph()
    graph.add("mean", RunningMean, clock=clock, total=total, sizes=sizes)
    graph.add("sink", Collect, into=out)
    graph.link("mean", "sink", buffer=1000)
    async with af.open_system(graph, quantum=quantum) as system:
        pass
    return sizes, out, system


async def test_the_step_size_adapts_so_a_step_fits_the_quantum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After the first measured step, steps are sized to 90% of the quantum."""
    sizes, _, _ = await run_mean(autojump_clock, 2000, quantum=0.05)
    assert sizes[0] == 10  # the module's default, before any measurement
    assert set(sizes[1:-1]) == {45}  # 0.9 * 0.05 s / 1 ms per unit


async def test_partial_results_and_progress_are_posted_each_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each step posts a partial mean; progress reaches 100%; the last mean is exact."""
    _, out, system = await run_mean(autojump_clock, 1000, quantum=0.05)
    assert len(out) > 5
    progress = [p for _, p in out]
    assert progress == sorted(progress)
    assert out[-1] == (499.5, 1.0)
    status = system.status().actors["mean"]
    assert status.progress == (1000.0, 1000.0)
    assert status.step_size == 45
    assert status.state is af.ActorState.TERMINATED


async def test_a_progressive_module_yields_between_steps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No task step of a progressive module lasts much more than its quantum."""
    from test_scheduling import StepTimer

    timer = StepTimer()
    trio.lowlevel.add_instrument(timer)
    try:
        await run_mean(autojump_clock, 3000, quantum=0.02)
    finally:
        trio.lowlevel.remove_instrument(timer)
    assert max(timer.steps["mean"]) <= 0.02 + 1e-9


class Summer(af.Progressive):
    """Sums what arrives; blocked while nothing is new; done when its input ends."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, states: list[str]) -> None:
        self.total = 0
        self.states = states

    async def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        items = self.read("in", limit=step_size)
        self.total += sum(items)
        if items:
            self.post(self.total)
            self.states.append("ready")
            return af.Step(af.StepState.READY, len(items))
        self.states.append("blocked")
        return af.Step(af.StepState.BLOCKED, 0)


async def test_blocked_waits_for_input_and_the_end_of_input_ends_the_module(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """BLOCKED waits for new input; once every input ended, the module ends."""
    states: list[str] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=100)
    graph.add("sum", Summer, states=states)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "sum", "sink", buffer=10)
    async with af.open_system(graph) as system:
        pass
    assert out[-1] == sum(range(100))
    assert "blocked" in states
    assert system.status().actors["sum"].received == 100


class Broken(af.Progressive):
    def run_step(self, run_number: int, step_size: int, quantum: float) -> Any:
        return "done"


async def test_run_step_must_return_a_step() -> None:
    """A wrong return value is a RunError saying what was expected."""
    graph = af.Graph()
    graph.add("broken", Broken)
    graph.add("sink", Collect, into=[])
    graph.link("broken", "sink")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match=r"run_step\(\) returned str; expected actorflow.Step"):
        async with af.open_system(graph):
            pass
