"""The quantum: actors batch work without yielding, but never hold the loop past a quantum.

Time is virtual (MockClock): a module "costs" time by jumping the clock, so the tests
are exact and instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af

COST = 0.001  # seconds of virtual time per item


class CostlyProcessor(af.Processor):
    def __init__(self, clock: trio.testing.MockClock, trace: list[tuple[str, float]]) -> None:
        self.clock = clock
        self.trace = trace

    def process(self, data: int) -> int:
        self.clock.jump(COST)
        self.trace.append(("item", trio.current_time()))
        return data


class CostlySource(af.Source):
    def __init__(
        self, clock: trio.testing.MockClock, trace: list[tuple[str, float]], count: int
    ) -> None:
        self.clock = clock
        self.trace = trace
        self.count = count

    def start(self) -> Iterator[int]:
        for n in range(self.count):
            self.clock.jump(COST)
            self.trace.append(("item", trio.current_time()))
            yield n


class StepTimer(trio.abc.Instrument):
    """Measures, in virtual time, how long each step of each actor task ran."""

    def __init__(self) -> None:
        self.steps: dict[str, list[float]] = {}
        self._began = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._began = trio.current_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith("actor:"):
            took = trio.current_time() - self._began
            self.steps.setdefault(task.name.removeprefix("actor:"), []).append(took)


async def run_timed(graph: af.Graph, **settings: Any) -> StepTimer:
    timer = StepTimer()
    trio.lowlevel.add_instrument(timer)
    try:
        async with af.open_system(graph, **settings):
            pass
    finally:
        trio.lowlevel.remove_instrument(timer)
    return timer


async def test_a_busy_processor_yields_once_its_quantum_is_spent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A CPU-heavy processor lets other tasks run at least once per quantum."""
    trace: list[tuple[str, float]] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=500)
    graph.add("hog", CostlyProcessor, clock=autojump_clock, trace=trace)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "hog", "sink", buffer=200)
    timer = await run_timed(graph, quantum=0.01)
    assert max(timer.steps["hog"]) <= 0.01 + COST + 1e-9
    # ...and it does batch: a quantum's worth of items per step, not one item.
    assert max(timer.steps["hog"]) >= 0.01 - 1e-9
    assert len(trace) == 500


async def test_a_busy_source_yields_once_its_quantum_is_spent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source whose generator is CPU-heavy also yields at least once per quantum."""
    trace: list[tuple[str, float]] = []
    graph = af.Graph()
    graph.add("src", CostlySource, clock=autojump_clock, trace=trace, count=500)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink", buffer=1000)
    timer = await run_timed(graph, quantum=0.005)
    assert max(timer.steps["src"]) <= 0.005 + COST + 1e-9
    assert max(timer.steps["src"]) >= 0.005 - 1e-9


@pytest.mark.parametrize("quantum", [0.002, 0.02])
async def test_the_quantum_setting_controls_the_slice_length(
    autojump_clock: trio.testing.MockClock, quantum: float
) -> None:
    """A larger quantum gives longer uninterrupted slices."""
    trace: list[tuple[str, float]] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    graph.add("hog", CostlyProcessor, clock=autojump_clock, trace=trace)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "hog", "sink", buffer=300)
    timer = await run_timed(graph, quantum=quantum)
    # The hog may run in the source's task (stage fusion): the longest slice of any.
    longest = max(step for steps in timer.steps.values() for step in steps)
    assert quantum - 1e-9 <= longest <= quantum + COST + 1e-9


async def test_cheap_items_are_handled_in_batches_without_yielding(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With free items, an actor drains what its mailbox holds in one go (no yield per item)."""
    trace: list[int] = []

    class Free(af.Processor):
        def process(self, data: int) -> int:
            trace.append(data)
            return data

    graph = af.Graph()
    graph.add("src", Numbers, count=100)
    graph.add("p", Free)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "p", "sink", buffer=100)
    timer = await run_timed(graph)
    # One step handled all 100 items: the scheduler was not entered per item.
    assert len(timer.steps["p"]) <= 4
    assert len(trace) == 100


async def test_max_batch_bounds_how_much_is_taken_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An actor takes at most max_batch items from a link at a time."""
    sizes: list[int] = []

    class Watch(af.Sink):
        def consume(self, data: int) -> None:
            sizes.append(self._actor.mailbox.depth() if self._actor else -1)

    graph = af.Graph()
    graph.add("src", Numbers, count=64)
    graph.add("sink", Watch)
    graph.link("src", "sink", buffer=64)
    async with af.open_system(graph, max_batch=8):
        pass
    # While handling its first batch of 8, 56 items remain queued in the link.
    assert sizes[0] == 56


async def test_a_sudden_rise_in_item_cost_overruns_the_quantum_by_at_most_one_stride(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After cheap items widen the clock-check stride, costly ones still yield promptly."""
    from actorflow._actor import _MAX_STRIDE

    class Switch(af.Processor):
        def process(self, data: int) -> int:
            if data >= 300:
                autojump_clock.jump(COST)
            return data

    graph = af.Graph()
    graph.add("src", Numbers, count=600)
    graph.add("p", Switch)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "p", "sink", buffer=600)
    timer = await run_timed(graph, quantum=0.01)
    assert max(timer.steps["p"]) <= 0.01 + _MAX_STRIDE * COST + 1e-9
    # The stride shrinks at once: only the first costly steps overrun by more than one
    # item, and the costly items after the first stride go about one quantum a step.
    overruns = [step for step in timer.steps["p"] if step > 0.01 + COST + 1e-9]
    assert len(overruns) <= 3
    after_first_stride = (300 - _MAX_STRIDE) * COST / 0.01
    assert sum(step >= 0.01 - 1e-9 for step in timer.steps["p"]) >= after_first_stride - 2


async def test_a_fused_chain_whose_items_turn_costly_overruns_by_one_stride_not_one_per_stage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three fused stages whose items turn costly at once: a stage called once the
    quantum is spent handles one item and yields, so the longest slice of the chain's
    task overruns by one stride (and a few items), not by a stride per stage."""

    class Switch(af.Processor):
        def process(self, data: int) -> int:
            if data >= 2000:
                autojump_clock.jump(COST)
            return data

    graph = af.Graph()
    graph.add("src", Numbers, count=3000)
    for name in ("p1", "p2", "p3"):
        graph.add(name, Switch)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "p1", "p2", "p3", "sink", buffer=100)
    timer = await run_timed(graph, quantum=0.01)
    longest = max(step for steps in timer.steps.values() for step in steps)
    # One stride is at most a batch: the buffer, 100 (it was 3 x 100 before).
    assert longest <= 0.01 + (100 + 3) * COST + 1e-9


# ------------------------------------------------------------------------------------------------
# Costly copies (moved from test_regressions.py)
# ------------------------------------------------------------------------------------------------


async def test_costly_fan_out_copies_respect_the_quantum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source whose items are expensive to deep-copy still yields about once a quantum."""

    class Heavy:
        def __deepcopy__(self, memo: dict[int, Any]) -> Heavy:
            autojump_clock.jump(0.001)
            return Heavy()

    class Src(af.Source):
        def start(self) -> Iterator[Heavy]:
            for _ in range(300):
                yield Heavy()

    graph = af.Graph()
    graph.add("src", Src)
    for sink in ("k1", "k2", "k3"):
        graph.add(sink, Collect, into=[])
        graph.link("src", sink, buffer=1000)
    timer = StepTimer()
    trio.lowlevel.add_instrument(timer)
    try:
        async with af.open_system(graph, quantum=0.01):
            pass
    finally:
        trio.lowlevel.remove_instrument(timer)
    # At most one stride of copies past the quantum (the stride widened while items were
    # cheap to make); once copying is seen to be costly, steps stay near the quantum.
    from actorflow._actor import _MAX_STRIDE

    steps = sorted(timer.steps["src"])
    assert steps[-1] <= 0.01 + 2 * _MAX_STRIDE * 0.001
    assert steps[len(steps) // 2] <= 0.02
