"""Progressive modules: run_step under a quantum, adaptive step size, progress, states.

Work has a controllable cost: each unit jumps the virtual clock, so step sizes and
timings are exact.
"""

from __future__ import annotations

from typing import Any, ClassVar

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from sample_modules import Collect, Forever, Items, Numbers

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


class Fast(af.Processor):
    def process(self, data: Any) -> Any:
        return data


class Slow(af.Processor):
    """Takes `delay` virtual seconds per item; with several workers, finishes out of order."""

    def __init__(self, delay: float = 1.0) -> None:
        self.delay = delay

    async def process(self, data: Any) -> Any:
        value = data.fields["n"] if isinstance(data, af.Data) else data
        await trio.sleep(self.delay * (2 if value % 2 == 0 else 1))
        return data


class Join(af.Progressive):
    """Pairs what both inputs produced, by sequence or by Data id."""

    inputs: ClassVar = {"a": object, "b": object}
    outputs: ClassVar = {"out": tuple}

    def __init__(self, by_id: bool, depths: list[int]) -> None:
        self.by_id = by_id
        self.depths = depths

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        key = (lambda item: item.id) if self.by_id else None
        pairs = self.read_synced(["a", "b"], key=key, limit=step_size)
        for pair in pairs:
            self.post(pair)
        self.depths.append(self._actor.mailbox.depth() if self._actor else 0)
        return af.Step(af.StepState.BLOCKED, len(pairs))


def join_graph(
    items: list[Any], out: list[Any], depths: list[int], by_id: bool, slow: dict[str, Any]
) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Items, items=items)
    graph.add("fast", Fast)
    graph.add("slow", Slow)
    graph.add("join", Join, by_id=by_id, depths=depths)
    graph.add("sink", Collect, into=out)
    graph.link("src", "fast", copy="none")
    graph.link("src", "slow", copy="none", **slow)
    graph.link("fast", "join.a", buffer=50)
    graph.link("slow", "join.b", buffer=50)
    graph.link("join", "sink")
    return graph


async def test_synchronised_inputs_join_by_sequence_holding_the_fast_one_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """read_synced pairs the n-th items of both inputs; the faster input waits in its link."""
    out: list[tuple[Any, ...]] = []
    depths: list[int] = []
    async with af.open_system(join_graph(list(range(10)), out, depths, False, {})):
        pass
    assert out == [(n, n) for n in range(10)]
    assert max(depths) >= 5  # the fast branch's items were held back, not dropped


async def test_synchronised_inputs_join_by_key_when_one_input_reorders(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With a key, items are matched by Data id even when one branch finishes out of order."""
    items = [af.Data(fields={"n": n}) for n in range(12)]
    out: list[tuple[Any, ...]] = []
    async with af.open_system(join_graph(items, out, [], True, {"workers": 4})) as system:
        pass
    assert len(out) == 12
    assert all(a.id == b.id for a, b in out)
    assert sorted(a.fields["n"] for a, _ in out) == list(range(12))
    assert system.status().dropped == 0


class Lopsided(af.Progressive):
    inputs: ClassVar = {"a": object, "b": object}
    outputs: ClassVar = {"out": tuple}

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        for pair in self.read_synced(["a", "b"]):
            self.post(pair)
        return af.Step(af.StepState.BLOCKED, 0)


async def test_items_that_can_never_be_matched_are_counted_when_inputs_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """When every input ended, the join ends; partnerless items are counted, not lost."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("many", Numbers, count=8)
    graph.add("few", Numbers, count=5)
    graph.add("join", Lopsided)
    graph.add("sink", Collect, into=out)
    graph.link("many", "join.a")
    graph.link("few", "join.b")
    graph.link("join", "sink")
    with trio.fail_after(10):
        async with af.open_system(graph) as system:
            pass
    assert out == [(n, n) for n in range(5)]
    assert system.status().links["many.out -> join.a"].dropped == {"consumer_terminated": 3}


class Threshold(af.Variable):
    outputs: ClassVar = {"out": float}


class Explorer(af.Progressive):
    """Counts how many of `rows` values exceed the latest threshold; starts over on a new one."""

    inputs: ClassVar = {"params": float}
    outputs: ClassVar = {"out": tuple}
    interactive = True

    def __init__(self, clock: trio.testing.MockClock, rows: int) -> None:
        self.clock = clock
        self.rows = rows
        self.threshold: float | None = None
        self.done = 0
        self.above = 0
        self.step_size = 10

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        new = self.read("params")
        if new:
            self.threshold, self.done, self.above = new[-1], 0, 0
        if self.threshold is None:
            return af.Step(af.StepState.BLOCKED, 0)
        todo = min(step_size, self.rows - self.done)
        self.above += sum(1 for n in range(self.done, self.done + todo) if n >= self.threshold)
        self.done += todo
        self.clock.jump(todo * COST)
        self.set_progress(self.done, self.rows)
        self.post((self.threshold, self.done, self.above))
        if self.done == self.rows:
            return af.Step(af.StepState.TERMINATED, todo)
        return af.Step(af.StepState.READY, todo)


async def test_an_interactive_module_is_resurrected_by_new_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After it terminated, a new parameter brings it back; changing the parameter while
    it runs changes its partial results; it ends for good when its inputs end."""
    out: list[tuple[float, int, int]] = []
    graph = af.Graph()
    graph.add("threshold", Threshold, initial=50.0)
    graph.add("explorer", Explorer, clock=autojump_clock, rows=100)
    graph.add("sink", Collect, into=out)
    graph.link("threshold", "explorer.params")
    graph.link("explorer", "sink")
    async with af.open_system(graph, quantum=0.01) as system:
        await trio.sleep(1)
        status = system.status().actors["explorer"]
        assert status.state is af.ActorState.TERMINATED  # done, yet alive
        assert out[-1] == (50.0, 100, 50)
        await system.set("threshold", 90.0)
        await trio.sleep(1)
        assert out[-1] == (90.0, 100, 10)
        assert system.status().actors["explorer"].state is af.ActorState.TERMINATED
        await system.stop()
    assert system.status().actors["explorer"].reason == "normal"


async def test_a_suspended_progressive_module_takes_no_step_until_resumed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """suspend() pauses a progressive module between steps; resume() continues it."""
    sizes: list[int] = []
    graph = af.Graph()
    graph.add("mean", RunningMean, clock=autojump_clock, total=10_000, sizes=sizes)
    graph.add("sink", Collect, into=[])
    graph.link("mean", "sink", buffer=10_000)
    async with af.open_system(graph, quantum=0.01) as system:
        await trio.sleep(0.05)
        system.suspend("mean")
        await trio.sleep(0.05)
        steps = len(sizes)
        await trio.sleep(5)
        assert len(sizes) == steps
        assert system.status().actors["mean"].state is af.ActorState.SUSPENDED
        system.resume("mean")
    assert system.status().actors["mean"].progress == (10_000.0, 10_000.0)
    with pytest.raises(TypeError, match="only progressive modules can be suspended"):
        system.suspend("sink")


class Combine(af.Progressive):
    """Steps only when both inputs have something new."""

    inputs: ClassVar = {"a": int, "b": int}
    outputs: ClassVar = {"out": tuple}

    def __init__(self, checks: list[tuple[bool, bool]]) -> None:
        self.checks = checks

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        self.checks.append((self.has_new(), self.all_have_new("a", "b")))
        if not self.all_have_new():
            return af.Step(af.StepState.BLOCKED, 0)
        pairs = self.read_synced(["a", "b"])
        for pair in pairs:
            self.post(pair)
        return af.Step(af.StepState.READY, len(pairs))


async def test_helpers_say_when_any_or_all_inputs_have_new_data(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """has_new() / all_have_new() let a step run only when its inputs are there."""
    checks: list[tuple[bool, bool]] = []
    out: list[Any] = []
    graph = af.Graph()
    graph.add("a", Numbers, count=3)
    graph.add("b", Numbers, count=3)
    graph.add("combine", Combine, checks=checks)
    graph.add("sink", Collect, into=out)
    graph.link("a", "combine.a")
    graph.link("b", "combine.b")
    graph.link("combine", "sink")
    async with af.open_system(graph):
        pass
    assert out == [(0, 0), (1, 1), (2, 2)]
    assert (True, True) in checks
    assert all(any_new or not both for any_new, both in checks)


async def test_progress_is_logged_at_most_once_a_second(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """Progress shows in the logs as actor.progress events, rate-limited to 1 per second."""
    await run_mean(autojump_clock, 5000, quantum=0.05)  # 5 s of virtual work
    events = [e for e in logs if e["event"] == "actor.progress"]
    assert 4 <= len(events) <= 6
    assert events[0]["total"] == 5000.0
    assert [e["done"] for e in events] == sorted(e["done"] for e in events)


class KeyJoin(af.Progressive):
    """Joins its two inputs by the items themselves; unmatched items just wait."""

    inputs: ClassVar = {"a": int, "b": int}
    outputs: ClassVar = {"out": tuple}

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        for pair in self.read_synced(["a", "b"], key=lambda item: item):
            self.post(pair)
        return af.Step(af.StepState.BLOCKED)


class SeqJoin(KeyJoin):
    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        for pair in self.read_synced(["a", "b"]):
            self.post(pair)
        return af.Step(af.StepState.BLOCKED)


class Ints(af.Source):
    outputs: ClassVar = {"out": int}

    def __init__(self, values: list[int]) -> None:
        self.values = values

    def start(self) -> Any:
        return list(self.values)


async def test_items_no_ended_input_can_ever_match_are_dropped_as_unmatched_and_warned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While input a still runs, b has ended: a's items whose key b never sent can never
    be joined. They are counted (unmatched) and warned about, not held for ever."""
    import structlog.testing

    out: list[tuple[Any, ...]] = []
    graph = af.Graph()
    graph.add("a", Forever, interval=1)
    graph.add("b", Ints, values=[0, 2])
    graph.add("join", KeyJoin)
    graph.add("sink", Collect, into=out)
    graph.link("a", "join.a", buffer=100)
    graph.link("b", "join.b")
    graph.link("join", "sink")
    with structlog.testing.capture_logs() as logs:
        async with af.open_system(graph) as system:
            await trio.sleep(10.5)
            join = system.status().actors["join"]
            assert join.mailbox_depth == 0
            assert join.dropped.get("unmatched", 0) >= 8
            system.cancel()
    assert out == [(0, 0), (2, 2)]
    assert any(log["event"] == "actor.unmatched" for log in logs)


async def test_a_sequence_join_drops_what_an_ended_input_can_never_pair(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out: list[tuple[Any, ...]] = []
    graph = af.Graph()
    graph.add("a", Forever, interval=1)
    graph.add("b", Ints, values=[7, 8])
    graph.add("join", SeqJoin)
    graph.add("sink", Collect, into=out)
    graph.link("a", "join.a", buffer=100)
    graph.link("b", "join.b")
    graph.link("join", "sink")
    async with af.open_system(graph) as system:
        await trio.sleep(10.5)
        join = system.status().actors["join"]
        assert join.mailbox_depth == 0
        assert join.dropped.get("unmatched", 0) >= 8
        system.cancel()
    assert out == [(0, 7), (1, 8)]


class Tagged(af.Source):
    """Sends ``(key, side, index)`` for each key, in order."""

    outputs: ClassVar = {"out": tuple}

    def __init__(self, keys: list[int], side: str) -> None:
        self.keys = keys
        self.side = side

    def start(self) -> Any:
        for index, key in enumerate(self.keys):
            yield (key, self.side, index)


class TaggedJoin(af.Progressive):
    inputs: ClassVar = {"a": tuple, "b": tuple}
    outputs: ClassVar = {"out": tuple}

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        for pair in self.read_synced(["a", "b"], key=lambda item: item[0]):
            self.post(pair)
        return af.Step(af.StepState.BLOCKED)


async def _join(a: list[int], b: list[int], buffer: int) -> tuple[list[Any], af.SystemStatus]:
    out: list[Any] = []
    graph = af.Graph()
    graph.add("a", Tagged, keys=a, side="a")
    graph.add("b", Tagged, keys=b, side="b")
    graph.add("join", TaggedJoin)
    graph.add("sink", Collect, into=out)
    graph.link("a", "join.a", buffer=buffer)
    graph.link("b", "join.b", buffer=buffer)
    graph.link("join", "sink")
    with trio.fail_after(3600):  # virtual time: a hang jumps here at once
        async with af.open_system(graph) as system:
            pass
    return out, system.status()


@pytest.mark.parametrize(
    ("a", "b", "buffer", "pairs"),
    [
        ([999, *range(50)], [998, *range(50)], 1, 50),  # one stray per side, buffer 1
        ([1, 1], [1, 1], 10, 2),  # duplicate keys pair first with first
        ([1, 1, 2], [1, 2, 1], 10, 3),
        (list(range(200)), list(range(10_000, 10_200)), 5, 0),  # disjoint keys
    ],
)
async def test_a_key_join_that_can_never_match_drops_the_oldest_and_goes_on(
    autojump_clock: trio.testing.MockClock, a: list[int], b: list[int], buffer: int, pairs: int
) -> None:
    """Full buffers of items no input can match would wait for ever: the oldest of each
    is dropped (unmatched) and the join goes on; duplicates pair in arrival order."""
    out, status = await _join(a, b, buffer)
    assert len(out) == pairs
    assert 2 * len(out) + status.dropped == len(a) + len(b)
    for left, right in out:
        assert left[0] == right[0]
    if a == [1, 1]:
        assert [(left[2], right[2]) for left, right in out] == [(0, 0), (1, 1)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.lists(st.integers(0, 6), max_size=25),
    b=st.lists(st.integers(0, 6), max_size=25),
    buffer=st.integers(1, 4),
)
def test_a_key_join_never_hangs_and_accounts_for_every_item(
    a: list[int], b: list[int], buffer: int
) -> None:
    """For any keys and buffers: the run ends, each pair shares a key, pairs of one key
    come in arrival order on both sides, and every item is in a pair or dropped."""
    out, status = trio.run(_join, a, b, buffer, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 2 * len(out) + status.dropped == len(a) + len(b)
    by_key: dict[int, list[tuple[int, int]]] = {}
    for left, right in out:
        assert left[0] == right[0]
        by_key.setdefault(left[0], []).append((left[2], right[2]))
    for indices in by_key.values():
        assert indices == sorted(indices)
        assert [right for _, right in indices] == sorted(right for _, right in indices)
