"""Workers per link: 1 (FIFO), N (in turn), 0 (a task per item, bounded)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af


class Lookup(af.Processor):
    """Waits one virtual second per item (an I/O call, say); tracks concurrency."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, stats: dict[str, int], fail_on: int = -1) -> None:
        self.stats = stats
        self.fail_on = fail_on

    async def process(self, data: int) -> int:
        self.stats["now"] = self.stats.get("now", 0) + 1
        self.stats["peak"] = max(self.stats.get("peak", 0), self.stats["now"])
        try:
            await trio.sleep(1)
            if data == self.fail_on:
                raise ValueError(f"lookup failed for {data}")
            return data
        finally:
            self.stats["now"] -= 1


async def run_lookup(
    count: int, stats: dict[str, int], out: list[int], **link: Any
) -> tuple[af.System, float]:
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    graph.add("lookup", Lookup, stats=stats, fail_on=link.pop("fail_on", -1))
    graph.add("sink", Collect, into=out)
    graph.link("src", "lookup", buffer=count, **link)
    graph.link("lookup", "sink")
    began = trio.current_time()
    async with af.open_system(graph) as system:
        pass
    return system, trio.current_time() - began


async def test_one_worker_handles_items_one_at_a_time_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """workers=1 (the default): strict FIFO, one item at a time."""
    stats: dict[str, int] = {}
    out: list[int] = []
    _, took = await run_lookup(6, stats, out)
    assert out == list(range(6))
    assert stats["peak"] == 1
    assert took == pytest.approx(6)


async def test_n_workers_handle_n_items_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """workers=3: three items in flight at a time; every item handled once."""
    stats: dict[str, int] = {}
    out: list[int] = []
    system, took = await run_lookup(9, stats, out, workers=3)
    assert sorted(out) == list(range(9))
    assert stats["peak"] == 3
    assert took == pytest.approx(3)
    assert system.status().actors["lookup"].received == 9


async def test_spawn_mode_runs_a_task_per_item_up_to_its_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """workers=0: a fresh task per item, never more than spawn_limit at once."""
    stats: dict[str, int] = {}
    out: list[int] = []
    _, took = await run_lookup(10, stats, out, workers=0, spawn_limit=4)
    assert sorted(out) == list(range(10))
    assert stats["peak"] == 4
    assert took == pytest.approx(3)


async def test_a_failing_item_in_a_worker_is_dead_lettered_and_nothing_is_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A crash in one worker restarts the module; the others' items go back and are
    handled; the failing item is dead-lettered."""
    for workers in (3, 0):
        stats: dict[str, int] = {}
        out: list[int] = []
        system, _ = await run_lookup(9, stats, out, workers=workers, fail_on=4)
        assert sorted(out) == [n for n in range(9) if n != 4]
        [letter] = system.dead_letters
        assert letter.item == 4
        assert system.status().dropped == 0


def test_workers_into_a_sequential_module_are_refused() -> None:
    """Sinks, and modules marked sequential, cannot take a link with workers != 1."""

    class Ordered(af.Processor):
        sequential = True

        def process(self, data: Any) -> Any:
            return data

    graph = af.Graph()
    graph.add("src", Numbers)
    graph.add("ordered", Ordered)
    graph.add("sink", Collect, into=[])
    graph.link("src", "ordered", workers=2)
    graph.link("ordered", "sink", workers=0)
    with pytest.raises(af.GraphError) as caught:
        graph.validate()
    messages = [p.message for p in caught.value.problems]
    assert any("module 'ordered' is sequential" in m and "workers=2" in m for m in messages)
    assert any("module 'sink' is sequential" in m and "workers=0" in m for m in messages)


async def test_latest_only_in_spawn_mode_is_warned_about(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """latest_only has no effect with workers=0; validation says so instead of staying quiet."""
    out: list[int] = []
    await run_lookup(3, {}, out, workers=0, latest_only=True)
    [warning] = [e for e in logs if e["event"] == "graph.warning"]
    assert "latest_only has no effect with workers=0" in warning["message"]
    assert "src.out -> lookup.in" in warning["message"]


def test_worker_options_are_checked() -> None:
    """workers must be >= 0 and spawn_limit positive, named in the error."""
    graph = af.Graph()
    with pytest.raises(ValueError, match="workers must be an integer from 0 to 10,000"):
        graph.link("a", "b", workers=-1)
    with pytest.raises(ValueError, match="spawn_limit must be an integer from 1 to "):
        graph.link("a", "b", workers=0, spawn_limit=0)
