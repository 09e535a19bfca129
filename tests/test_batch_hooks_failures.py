"""Batch hooks that fail, stop, restart and change while running: a failing batch goes
back whole and its items are retried one at a time, so the item at fault is retried and
dead-lettered by name; nothing is lost, nothing handled twice beyond what a per-item
module would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Numbers
from test_batch_hooks import Costly

import actorflow as af
from actorflow.testing import run_graph, run_module


class Poisoned(af.Processor):
    """Passes batches on; raises on a batch holding a value of ``failures`` (each value
    that many times, counted down across restarts); notes each call's batch."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, failures: dict[int, int], calls: list[list[int]] | None = None) -> None:
        self.failures = failures
        self.calls = calls if calls is not None else []

    def process_batch(self, batch: list[int]) -> list[int]:
        self.calls.append(list(batch))
        for x in batch:
            if self.failures.get(x, 0) > 0:
                self.failures[x] -= 1
                batch.clear()  # what the hook does to its list cannot lose an item
                raise RuntimeError(f"cannot handle {x}")
        return batch


class PoisonedSink(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, failures: dict[int, int], into: list[int]) -> None:
        self.failures = failures
        self.into = into

    def consume_batch(self, batch: list[int]) -> None:
        for x in batch:
            if self.failures.get(x, 0) > 0:
                self.failures[x] -= 1
                raise RuntimeError(f"cannot store {x}")
        self.into.extend(batch)


def run_system(graph: af.Graph, **options: Any) -> tuple[af.SystemStatus, list[Any]]:
    """Run ``graph`` to its end: its status and the items dead-lettered."""

    async def main() -> tuple[af.SystemStatus, list[Any]]:
        async with af.open_system(graph, **options) as system:
            pass
        return system.status(), [letter.item for letter in system.dead_letters]

    return trio.run(main)


def poisoned(count: int, failures: dict[int, int], out: list[int], **supervise: Any) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    graph.add("proc", Poisoned, failures=failures, calls=supervise.pop("calls", None))
    graph.add("sink", Collect, into=out)
    graph.chain("src", "proc", "sink")
    graph.supervise("proc", **supervise)
    graph.supervisor(max_restarts=10)  # the failing batch costs one restart more
    return graph


def test_a_poison_item_is_found_alone_retried_then_dead_lettered_by_name() -> None:
    """The failing batch goes back whole; its items come back one at a time until the one
    at fault has failed ``attempts`` times alone: it is dead-lettered (named, its count
    per item), every other item goes on once, in order, and batches grow again after."""
    out: list[int] = []
    calls: list[list[int]] = []
    graph = poisoned(40, {13: 99}, out, attempts=2, calls=calls)
    graph.add("letters", af.Outlet)
    graph.dead_letters("letters")
    result = run_graph(graph, settings=af.Settings(max_batch=8))
    status = result.status
    assert out == [x for x in range(40) if x != 13]
    [letter] = result.output("letters")
    assert (letter.item, letter.attempts, letter.actor) == (13, 2, "proc")
    assert "cannot handle 13" in str(letter.error)
    failed = next(i for i, call in enumerate(calls) if 13 in call)
    assert len(calls[failed]) > 1
    alone = [call for call in calls[failed + 1 :] if 13 in call]
    assert alone == [[13], [13]]  # tried alone, twice, then given up on
    assert all(len(call) == 1 for call in calls[failed + 1 : calls.index([13]) + 1])
    assert max(len(call) for call in calls[calls.index([13]) + 2 :]) > 1
    proc = status.actors["proc"]
    assert (proc.received, proc.emitted, proc.dead_lettered) == (39 + 1, 39, 1)
    assert status.dropped == 0


def test_a_batch_that_fails_once_loses_and_repeats_nothing() -> None:
    """A passing failure: the module restarts, every item is handled once, in order."""
    out: list[int] = []
    status = af.run(poisoned(50, {20: 1}, out, attempts=1), max_batch=16)
    assert out == list(range(50))
    assert status.actors["proc"].dead_lettered == 0
    assert status.actors["proc"].restarts >= 1


def test_a_sink_batch_hook_isolates_its_poison_item_too() -> None:
    """consume_batch: the same, the dead letter naming the item it failed on."""
    into: list[int] = []
    result = run_module(
        PoisonedSink,
        range(30),
        config={"failures": {7: 99, 22: 1}, "into": into},
        supervise={"attempts": 3},
        supervisor={"max_restarts": 10},
    )
    assert into == [x for x in range(30) if x != 7]
    assert [(letter.item, letter.attempts) for letter in result.dead_letters] == [(7, 3)]


class CountingSink(af.Sink):
    """Counts what it consumes (its state, snapshotted); fails once on ``crash_on``."""

    inputs: ClassVar = {"in": int}
    crash_on: ClassVar[set[int]] = set()
    final: ClassVar[list[int]] = []

    def __init__(self) -> None:
        self.count = 0

    def consume_batch(self, batch: list[int]) -> None:
        for x in batch:
            if x in CountingSink.crash_on:
                CountingSink.crash_on.discard(x)
                raise RuntimeError(f"crash on {x}")
        self.count += len(batch)

    def snapshot(self) -> int:
        return self.count

    def restore(self, value: int) -> None:
        self.count = value

    def cleanup(self) -> None:
        CountingSink.final.append(self.count)


def test_the_snapshot_journal_replays_what_batches_handled_since_the_last_save() -> None:
    """After a crash the state is the last snapshot plus the batches handled since,
    handled again: the count is exact, whatever batch failed."""
    CountingSink.crash_on, CountingSink.final = {33, 71}, []
    graph = af.Graph()
    graph.add("src", Numbers, count=100)
    graph.add("count", CountingSink)
    graph.link("src", "count", buffer=10)
    graph.supervise("count", attempts=2)
    graph.supervisor(max_restarts=10)
    status = af.run(graph, snapshot_interval=3600.0, max_batch=7)
    assert CountingSink.final[-1] == 100
    assert status.actors["count"].restarts == 2
    assert status.actors["count"].dead_lettered == 0


class Workers(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}
    sizes: ClassVar[list[int]] = []

    async def process_batch(self, batch: list[int]) -> list[int]:
        Workers.sizes.append(len(batch))
        await trio.sleep(0.01)
        return batch


def test_a_link_with_workers_hands_each_worker_a_batch_of_one() -> None:
    """``workers=3``: each worker takes one item at a time, as for a per-item hook."""
    Workers.sizes = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=30)
    graph.add("proc", Workers)
    graph.add("sink", Collect, into=out)
    graph.link("src", "proc", workers=3)
    graph.link("proc", "sink")
    af.run(graph)
    assert sorted(out) == list(range(30))
    assert set(Workers.sizes) == {1}


class BatchCounter(af.Processor):
    """Tags each item with the count so far, a batch at a time (the state snapshotted)."""

    version: ClassVar[str] = "batch"

    def __init__(self) -> None:
        self.count = 0

    def process_batch(self, batch: list[Any]) -> list[tuple[str, int, Any]]:
        start, self.count = self.count, self.count + len(batch)
        return [(self.version, start + i + 1, x) for i, x in enumerate(batch)]

    def snapshot(self) -> int:
        return self.count

    def restore(self, value: int) -> None:
        self.count = value


class ItemCounter(BatchCounter):
    version: ClassVar[str] = "item"
    process_batch = None  # type: ignore[assignment]

    def process(self, data: Any) -> tuple[str, int, Any]:
        self.count += 1
        return (self.version, self.count, data)


def _inlet_graph(out: list[Any], counter: type[af.Processor]) -> af.Graph:
    graph = af.Graph(name="batch-live")
    graph.add("in", af.Inlet)
    graph.add("count", counter)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    return graph


async def test_a_per_item_module_replaced_by_a_batch_one_and_back_keeps_state_and_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Live changes: replace swaps the hook kind both ways; the count (state) carries on
    and every item is handled once, in order."""
    out: list[Any] = []
    async with af.open_system(_inlet_graph(out, ItemCounter)) as system:
        for step, cls in enumerate([BatchCounter, ItemCounter, BatchCounter]):
            for item in range(step * 20, step * 20 + 20):
                await system.send("in", item)
            await trio.sleep(1)
            await system.replace("count", cls)
        for item in range(60, 100):
            await system.send("in", item)
        await system.close("in")
    assert [item for _, _, item in out] == list(range(100))
    assert [count for _, count, _ in out] == list(range(1, 101))
    assert {version for version, _, _ in out} == {"item", "batch"}


async def test_a_stopped_batch_module_queues_and_drains_once_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stop_module: what is sent waits in its link; start_module: handled once each."""
    out: list[Any] = []
    async with af.open_system(_inlet_graph(out, BatchCounter)) as system:
        for item in range(3):
            await system.send("in", item)
        await trio.sleep(1)
        await system.stop_module("count")
        for item in range(3, 9):
            await system.send("in", item)
        await trio.sleep(1)
        assert len(out) == 3
        assert system.status().actors["count"].mailbox_depth == 6
        await system.start_module("count")
        await system.close("in")
    assert out == [("batch", n + 1, n) for n in range(9)]


# -- conservation under random crash schedules ------------------------------------------------


class FlakyItem(af.Processor):
    """Per-item twin of :class:`Poisoned` (the fuzzer mixes both)."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, failures: dict[int, int]) -> None:
        self.failures = failures

    def process(self, data: int) -> int:
        if self.failures.get(data, 0) > 0:
            self.failures[data] -= 1
            raise RuntimeError(f"cannot handle {data}")
        return data


@settings(max_examples=80, deadline=None)
@given(
    count=st.integers(1, 40),
    stages=st.integers(1, 3),
    buffer=st.integers(1, 6),
    max_batch=st.integers(1, 12),
    fuse=st.booleans(),
    data=st.data(),
)
def test_every_item_is_delivered_or_dead_lettered_exactly_once_whatever_fails(
    count: int, stages: int, buffer: int, max_batch: int, fuse: bool, data: st.DataObject
) -> None:
    """Random chains of batch (and per-item) stages with random crash schedules: each
    item reaches the sink once or is dead-lettered once; the counters add up."""
    values = st.integers(0, count - 1)
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    names = ["src"]
    for index in range(stages):
        schedule = data.draw(st.dictionaries(values, st.integers(1, 4), max_size=4))
        cls = data.draw(st.sampled_from([Poisoned, Poisoned, FlakyItem]))
        graph.add(f"p{index}", cls, failures=schedule)
        graph.supervise(f"p{index}", attempts=data.draw(st.integers(1, 3)))
        names.append(f"p{index}")
    out: list[int] = []
    sink_schedule = data.draw(st.dictionaries(values, st.integers(1, 4), max_size=3))
    graph.add("sink", PoisonedSink, failures=sink_schedule, into=out)
    graph.supervise("sink", attempts=data.draw(st.integers(1, 3)))
    names.append("sink")
    graph.chain(*names, buffer=buffer)
    graph.supervisor(max_restarts=10_000)
    status, dead = run_system(graph, max_batch=max_batch, fuse=fuse)

    assert sorted(out + dead) == list(range(count))  # each item once, one way or the other
    assert len(set(out)) == len(out)
    assert out == sorted(out)  # a chain keeps the order
    assert sum(actor.dead_lettered for actor in status.actors.values()) == len(dead)
    for name in names[1:-1]:
        actor = status.actors[name]
        assert actor.received == actor.emitted + actor.dead_lettered + actor.filtered
    assert status.dropped == 0
    assert status.state is af.SystemState.DONE


class Slow(af.Processor):
    """Awaits in its batch hook, noting each batch (to tell what was handled twice)."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, handled: list[int]) -> None:
        self.handled = handled

    async def process_batch(self, batch: list[int]) -> list[int]:
        await trio.sleep(1)
        self.handled.extend(batch)
        return batch


class Bomb(af.Source):
    """Fails once, a moment in, while its sibling is inside a call (then ends)."""

    outputs: ClassVar = {}
    fired: ClassVar[list[bool]] = []

    async def start(self) -> None:
        if not Bomb.fired:
            await trio.sleep(0.5)
            Bomb.fired.append(True)
            raise RuntimeError("boom")


def test_a_batch_cancelled_inside_its_hook_goes_back_whole() -> None:
    """A sibling's crash restarts the group (one_for_all): the batch hook, cancelled in
    its await, handled nothing of its batch, which the new incarnation handles once."""
    Bomb.fired = []
    handled: list[int] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=20)
    graph.add("slow", Slow, handled=handled)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "slow", "sink")
    graph.add("bomb", Bomb)
    graph.supervise("slow", shutdown="brutal_kill")  # cancelled at once, mid-call
    graph.group("pair", ["slow", "bomb"], strategy="one_for_all", max_restarts=5)
    result = run_graph(graph)
    assert Bomb.fired == [True]
    assert result.status.actors["slow"].restarts >= 1
    assert handled == out == list(range(20))


async def test_a_stop_between_the_slices_of_a_costly_batch_gives_the_rest_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop asked while a batch goes in slices ends the incarnation between two; the
    slices not handled wait in the link and are handled once when it starts again."""
    out: list[int] = []
    sizes: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    graph.add("proc", Costly, clock=autojump_clock, sizes=sizes)
    graph.add("sink", Collect, into=out)
    graph.link("src", "proc", buffer=100)
    graph.link("proc", "sink", buffer=100)
    async with af.open_system(graph, quantum=0.01, max_batch=100, fuse=False) as system:
        await trio.sleep(0.15)
        await system.stop_module("proc")
        handled = sum(sizes)
        assert 0 < handled < 300
        await system.start_module("proc")
    assert out == list(range(300))
    assert sum(sizes) == 300  # nothing handled twice


class Lines(af.Sink):
    """A generator batch hook in a sink: it runs to its end; its items are not used."""

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def consume_batch(self, batch: list[Any]) -> Iterator[None]:
        for item in batch:
            self.into.append(item)
            yield None


class GivenInInit(af.Processor):
    """The batch hook set per instance, as a plain function."""

    def __init__(self) -> None:
        self.process_batch = self._double

    def _double(self, batch: list[int]) -> list[int]:
        return [2 * x for x in batch]


def test_a_generator_sink_runs_and_an_instance_batch_hook_counts() -> None:
    """A sink's generator batch hook runs to its end; a hook given in ``__init__``
    stands in for process()."""
    into: list[int] = []
    run_module(Lines, range(5), config={"into": into})
    assert into == list(range(5))
    assert run_module(GivenInInit, [1, 2, 3]).output() == [2, 4, 6]
