"""Fusion is never slower than its absence, whatever a producer does: a producer that
sends small batches one after another without yielding (an async source's item-by-item
``emit``, an async hook's per-item results) leaves them in the link and hands them over
by one call when it fills, not by a call each; one item sent at a time, each after a
wait, still goes by call (latency). Counted in calls, not timed: a call per item cost
6.5 times what unfused delivery does."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from accounting import assert_accounted, one_to_one
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow._actor._fusion import Fusion
from actorflow.testing import Feed


class Calls:
    """The sizes of the fused calls made, those from outside any call apart."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.head: list[int] = []


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    made = Calls()
    original = Fusion.call

    async def counted(
        self: Fusion, items: list[Any], caller: Any, pacing: Any, *, taken: bool = False
    ) -> None:
        made.sizes.append(len(items))
        if caller.fused_scope is None:
            made.head.append(len(items))
        await original(self, items, caller, pacing, taken=taken)

    monkeypatch.setattr(Fusion, "call", counted)
    return made


class Same(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data


class Waited(af.Processor):
    """An async hook: the consumer calls it item by item and sends each result."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    async def process(self, data: int) -> int:
        return data


def _chain(graph: af.Graph, head: str, out: list[int], **link: Any) -> None:
    graph.add("a", Same)
    graph.add("b", Same)
    graph.add("sink", Collect, into=out)
    graph.chain(head, "a", "b", "sink", **link)


async def test_item_by_item_emits_are_handed_over_in_batches(
    calls: Calls, autojump_clock: trio.testing.MockClock
) -> None:
    """An async source emitting item by item into a fused chain: about one call per
    buffer of items, not one per item (3 per item before), and still fused."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Feed, items=list(range(2000)))
    _chain(graph, "src", out)
    async with af.open_system(graph) as system:
        pass
    assert out == list(range(2000))
    assert len(calls.sizes) <= 2000 * 3 / 50
    assert sum(calls.sizes) >= 3 * 2000 / 2  # most items still went by call
    status = system.status()
    assert_accounted(status, {name: one_to_one(status, name) for name in ("a", "b")})


async def test_an_async_hooks_per_item_results_are_handed_over_in_batches(
    calls: Calls, autojump_clock: trio.testing.MockClock
) -> None:
    """An async hook sends each result as it comes: into a fused consumer they go
    in batches too."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=2000)
    graph.add("wait", Waited)
    graph.link("src", "wait")
    _chain(graph, "wait", out)
    async with af.open_system(graph) as system:
        pass
    assert out == list(range(2000))
    assert len(calls.head) <= 2000 / 50
    status = system.status()
    assert_accounted(status, {name: one_to_one(status, name) for name in ("wait", "a", "b")})


class Pings(af.Source):
    """One item at a time: the next only once the sink has the last one."""

    outputs: ClassVar = {"out": int}

    def __init__(self, count: int, arrived: list[trio.Event]) -> None:
        self.count = count
        self.arrived = arrived

    async def start(self) -> AsyncIterator[int]:
        for i in range(self.count):
            self.arrived.append(trio.Event())
            yield i
            await self.arrived[-1].wait()


class Arrived(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, arrived: list[trio.Event], tasks: list[Any]) -> None:
        self.arrived = arrived
        self.tasks = tasks

    def consume(self, data: int) -> None:
        self.tasks.append(trio.lowlevel.current_task())
        self.arrived[-1].set()


async def test_one_item_at_a_time_still_goes_by_call(
    calls: Calls, autojump_clock: trio.testing.MockClock
) -> None:
    """A producer that waits between items is not emitting a burst: each item passes
    the whole chain by call, in the source's task (latency as fused)."""
    arrived: list[trio.Event] = []
    tasks: list[Any] = []
    graph = af.Graph()
    graph.add("src", Pings, count=50, arrived=arrived)
    graph.add("a", Same)
    graph.add("b", Same)
    graph.add("sink", Arrived, arrived=arrived, tasks=tasks)
    graph.chain("src", "a", "b", "sink")
    async with af.open_system(graph):
        pass
    assert len(tasks) == 50
    # The first item may come before the chain has parked: every other goes by call.
    assert set(calls.sizes) == {1}
    assert len(calls.sizes) >= 3 * 49
    assert tasks[1:] == [tasks[-1]] * 49


class Bursts(af.Source):
    """Emits item by item in bursts, yielding to trio between bursts."""

    outputs: ClassVar = {"out": int}

    def __init__(self, bursts: list[int]) -> None:
        self.bursts = bursts

    async def start(self) -> None:
        sent = 0
        for burst in self.bursts:
            for _ in range(burst):
                await self.emit(sent)
                sent += 1
            await trio.lowlevel.checkpoint()


@settings(max_examples=30, deadline=None)
@given(
    bursts=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    buffer=st.sampled_from([None, 1, 3, 16]),
    fuse=st.booleans(),
)
def test_bursts_of_any_size_lose_nothing_and_cost_few_calls(
    bursts: list[int], buffer: int | None, fuse: bool
) -> None:
    """Whatever the bursts and buffers: every item arrives once, in order, accounted;
    calls from the source are at most one per burst plus two per buffer of items."""
    sizes: list[int] = []
    original = Fusion.call

    async def counted(
        self: Fusion, items: list[Any], caller: Any, pacing: Any, *, taken: bool = False
    ) -> None:
        if caller.fused_scope is None:
            sizes.append(len(items))
        await original(self, items, caller, pacing, taken=taken)

    total = sum(bursts)
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Bursts, bursts=bursts)
    _chain(graph, "src", out, **({} if buffer is None else {"buffer": buffer}))

    async def run() -> af.SystemStatus:
        async with af.open_system(graph, fuse=fuse) as system:
            pass
        return system.status()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Fusion, "call", counted)
        status = trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert out == list(range(total))
    capacity = 100 if buffer is None else buffer
    assert len(sizes) <= len(bursts) + 2 * math.ceil(total / capacity) + 2
    if not fuse:
        assert sizes == []
    assert_accounted(status, {name: one_to_one(status, name) for name in ("a", "b")})
