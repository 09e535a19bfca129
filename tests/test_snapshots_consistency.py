"""What a crash keeps: a processor or sink with ``snapshot()`` goes back to its last
snapshot and handles again every item it handled since, so its state is always that of
a whole prefix of its input, each item's effect in it once.

The definition tested: an item *succeeds* when a handling of it returns (it may fail
first and be retried); its effect is in the final state exactly once; the effect of an
item that is dead-lettered (it failed ``attempts`` times) is not in it at all, whatever
its failed handlings changed before they raised.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._snapshots import namespace
from actorflow.testing import Feed, run_graph


class Tracker(af.Processor):
    """Keeps every item it handled, in order, in its state; changes the state *then*
    raises on the items its ``crashes`` say (``item -> how many attempts fail``). A
    processor sending nothing on, so that a link may give it several workers."""

    crashes: ClassVar[dict[int, int]] = {}

    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, data: int) -> None:
        self.seen.append(data)
        _maybe_crash(data)

    def snapshot(self) -> list[int]:
        return list(self.seen)

    def restore(self, value: list[int]) -> None:
        self.seen = list(value)


class AsyncTracker(Tracker):
    """Awaits between changing its state and raising: saves may come meanwhile."""

    async def process(self, data: int) -> None:  # type: ignore[override]
        self.seen.append(data)
        await trio.sleep(0.001)
        _maybe_crash(data)


def _maybe_crash(data: int) -> None:
    left = Tracker.crashes.get(data, 0)
    if left:
        Tracker.crashes[data] = left - 1
        raise RuntimeError(f"crash on {data}")


@pytest.fixture(autouse=True)
def _no_crashes() -> None:
    Tracker.crashes = {}


def tracking(
    items: list[int],
    module: type[Tracker] = Tracker,
    *,
    attempts: int = 3,
    buffer: int = 100,
    workers: int = 1,
) -> af.Graph:
    graph = af.Graph("tracking")
    graph.add("feed", Feed, items=items)
    graph.add("tracker", module)
    graph.link("feed", "tracker", buffer=buffer, workers=workers)
    graph.supervise("tracker", restart="permanent", attempts=attempts)
    graph.supervisor(max_restarts=1000)
    return graph


def final(store: af.Store, graph: str = "tracking", name: str = "tracker") -> Any:
    return trio.run(store.get, namespace(graph), name)


def test_a_hook_that_changes_the_state_then_raises_counts_the_item_once() -> None:
    """The issue's case: a counter that counts and then raises is restarted from its
    last snapshot; the items handled since are handled again, the failed one retried:
    each counts exactly once."""
    Tracker.crashes = {3: 1, 7: 2}
    store = af.MemoryStore()
    result = run_graph(tracking(list(range(10))), store=store)
    assert result.error is None
    assert result.status.actors["tracker"].restarts == 3
    assert final(store) == list(range(10))


def test_a_dead_lettered_item_leaves_no_effect() -> None:
    """An item given up on is not in the state, though each failed try changed it."""
    Tracker.crashes = {4: 5}
    store = af.MemoryStore()
    result = run_graph(tracking(list(range(8)), attempts=2), store=store)
    assert [letter.item for letter in result.dead_letters] == [4]
    assert final(store) == [0, 1, 2, 3, 5, 6, 7]


def test_the_journal_is_bounded_by_a_snapshot(logs: list[dict[str, Any]]) -> None:
    """A journal that reaches its bound (the input link's capacity here, batches
    of 2) takes a snapshot early: a crash replays at most that many items."""
    Tracker.crashes = {37: 1}
    store = af.MemoryStore()
    settings_ = af.Settings(snapshot_interval=math.inf, max_batch=2)
    result = run_graph(tracking(list(range(40)), buffer=8), store=store, settings=settings_)
    assert result.error is None
    saves = [e["at"] for e in logs if e["event"] == "actor.snapshot_saved"]
    assert saves.count("bound") == 40 // 8
    replays = [e["items"] for e in logs if e["event"] == "actor.snapshot_replay"]
    assert replays
    assert max(replays) <= 8
    assert final(store) == list(range(40))


def test_a_module_without_snapshot_keeps_no_journal() -> None:
    """Modules without snapshot() get no journal: nothing is kept or replayed."""

    class Plain(af.Sink):
        def consume(self, data: int) -> None:
            pass

    graph = af.Graph("plain")
    graph.add("feed", Feed, items=[1, 2, 3])
    graph.add("sink", Plain)
    graph.link("feed", "sink")
    result = run_graph(graph)
    assert result.status.actors["sink"].received == 3
    assert result.status.actors["sink"].snapshots == 0


class Position(af.Processor):
    """Counts and sums each numbered item once across crashes and runs: its snapshot
    holds the position reached, items at or before it are skipped (replayed by a
    source that starts over), and it forwards what it counted."""

    def __init__(self) -> None:
        self.count, self.total, self.position = 0, 0, -1

    def process(self, n: int) -> int | None:
        if n <= self.position:
            return None
        self.count, self.total, self.position = self.count + 1, self.total + n, n
        _maybe_crash(n)
        return n

    def snapshot(self) -> dict[str, int]:
        return {"count": self.count, "total": self.total, "position": self.position}

    def restore(self, value: dict[str, int]) -> None:
        self.count, self.total, self.position = value["count"], value["total"], value["position"]


def test_a_module_that_keeps_its_position_is_exactly_once_in_effect() -> None:
    """Crashes inside a run (journal replay) and a second run that replays its source
    from the start (a restarted process): every item counts once in the state."""
    store = af.MemoryStore()

    def run(items: list[int]) -> af.RunResult:
        graph = af.Graph("position")
        graph.add("feed", Feed, items=items)
        graph.add("position", Position)
        graph.add("out", af.testing.Recorder)
        graph.chain("feed", "position", "out")
        graph.supervise("position", restart="permanent", attempts=3)
        graph.supervisor(max_restarts=100)
        return run_graph(graph, store=store)

    Tracker.crashes = {2: 1, 5: 2}
    first = run(list(range(8)))
    Tracker.crashes = {9: 1, 14: 1}
    second = run(list(range(16)))
    assert first.error is None
    assert second.error is None
    expected = {"count": 16, "total": sum(range(16)), "position": 15}
    assert final(store, "position", "position") == expected
    # Downstream it is at least once: a replayed item is forwarded again.
    assert set(first.outputs["out"]) | set(second.outputs["out"]) == set(range(16))


def test_a_stage_with_snapshot_is_not_fused() -> None:
    """A processor with snapshot() handles its items in its own task only (its journal
    and saves need that), while stages without one are fused."""
    seen: dict[str, set[trio.lowlevel.Task]] = {}

    class Stage(af.Processor):
        def process(self, data: int) -> int:
            seen.setdefault(self.name, set()).add(trio.lowlevel.current_task())
            return data

    class Stateful(Stage):
        def snapshot(self) -> int:
            return 0

    graph = af.Graph("fusing")
    graph.add("feed", Feed, items=list(range(300)))
    graph.add("plain", Stage)
    graph.add("stateful", Stateful)
    graph.add("sink", Stage)
    graph.chain("feed", "plain", "stateful", "sink")
    run_graph(graph)
    names = {name: {task.name for task in tasks} for name, tasks in seen.items()}
    assert names["stateful"] == {"actor:stateful"}
    assert "actor:feed" in names["plain"]  # fused into its source
    assert "actor:stateful" in names["sink"]  # below it, a chain may start again


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, dict[int, int], int]:
    count = draw(st.integers(1, 30))
    attempts = draw(st.integers(1, 3))
    failing = draw(st.lists(st.integers(0, count - 1), unique=True, max_size=5))
    crashes = {item: draw(st.integers(1, 3)) for item in failing}
    return count, crashes, attempts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=schedules(),
    interval=st.sampled_from([math.inf, 0.0005, 0.003, 0.05]),
    buffer=st.integers(1, 6),
    batch=st.integers(1, 4),
    module=st.sampled_from([Tracker, AsyncTracker]),
    workers=st.sampled_from([1, 1, 3]),
)
def test_any_crash_schedule_leaves_each_successful_item_once(
    schedule: tuple[int, dict[int, int], int],
    interval: float,
    buffer: int,
    batch: int,
    module: type[Tracker],
    workers: int,
) -> None:
    """Whatever fails when, whatever the interval, journal bound and crew: the final
    state holds each item that succeeded once (in order with one worker), and none of
    the items dead-lettered."""
    count, crashes, attempts = schedule
    Tracker.crashes = dict(crashes)
    store = af.MemoryStore()
    graph = tracking(list(range(count)), module, attempts=attempts, buffer=buffer, workers=workers)
    result = run_graph(
        graph, store=store, settings=af.Settings(snapshot_interval=interval, max_batch=batch)
    )
    assert result.error is None
    lettered = {letter.item for letter in result.dead_letters}
    doomed = {item for item, fails in crashes.items() if fails >= attempts}
    expected = [n for n in range(count) if n not in lettered]
    state = final(store)
    if workers == 1:
        assert lettered == doomed
        assert state == expected
    else:  # crashes in a crew interleave: retries count one suspect at a time
        assert lettered <= doomed
        assert sorted(state) == expected


class Flaky(Tracker):
    """Fails always on item 3 (poison) and on every second handling of item 1: the
    replay of item 1 fails between two tries of the poison item."""

    handled: ClassVar[dict[int, int]] = {}

    def process(self, data: int) -> None:
        times = Flaky.handled[data] = Flaky.handled.get(data, 0) + 1
        if data == 3 or (data == 1 and times % 2 == 0):
            raise RuntimeError(f"crash on {data}")
        self.seen.append(data)


def test_a_replayed_item_that_fails_does_not_reset_the_attempts_of_a_poison_item() -> None:
    """The poison item's failures are counted across the replayed item's: it is
    dead-lettered after ``attempts`` tries, as without a journal, not retried forever."""
    Flaky.handled = {}
    store = af.MemoryStore()
    graph = tracking(list(range(5)), Flaky, attempts=2)
    graph.supervisor(max_restarts=20)
    result = run_graph(graph, store=store, settings=af.Settings(snapshot_interval=math.inf))
    assert result.error is None
    assert Flaky.handled[3] == 2
    assert [letter.item for letter in result.dead_letters] == [3, 1]
    assert final(store) == [0, 2, 4]


@given(st.lists(st.integers(0, 19), max_size=6), st.integers(2, 4))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_poison_item_is_dead_lettered_whatever_fails_in_the_replay(
    transient: list[int], attempts: int
) -> None:
    """Item 15 always fails; each listed item fails once more (at its listed turn):
    the poison item is still dead-lettered after ``attempts`` of its own tries."""
    Tracker.crashes = {item: transient.count(item) for item in transient}
    Tracker.crashes[15] = 1000
    store = af.MemoryStore()
    graph = tracking(list(range(20)), attempts=attempts)
    graph.supervisor(max_restarts=100)
    result = run_graph(graph, store=store, settings=af.Settings(snapshot_interval=math.inf))
    assert result.error is None
    assert 15 in [letter.item for letter in result.dead_letters]
    assert Tracker.crashes[15] == 1000 - attempts


class Countdown(Tracker):
    """Sends ``n - 1`` on (to itself, through a cycle) until 0; crashes once on 1."""

    def process(self, data: int) -> int | None:  # type: ignore[override]
        self.seen.append(data)
        _maybe_crash(data)
        if data == 0:
            Hold.done.set()
        return data - 1 if data > 0 else None


class Relay(af.Processor):
    def process(self, data: int) -> int:
        return data


class Hold(af.Source):
    """Sends 4, then stays (its link open, so the cycle's end does not come early) until
    the countdown reaches 0."""

    done: ClassVar[trio.Event]

    async def start(self) -> None:
        await self.emit(4)
        await Hold.done.wait()


@pytest.mark.parametrize("through", [0, 1, 2])
def test_a_module_on_a_cycle_handles_each_item_once_after_a_crash(through: int) -> None:
    """Its outputs come back to it: a replay would hand it again both the fed-back items
    and, through the items that made them, their copies. It keeps no journal: its state
    is saved as the crashed incarnation ends, each item in it once."""
    Tracker.crashes = {1: 1}
    Hold.done = trio.Event()
    graph = af.Graph("loop")
    graph.add("feed", Hold)
    graph.add("countdown", Countdown)
    graph.link("feed", "countdown")
    last = "countdown"
    for index in range(through):
        graph.add(f"relay{index}", Relay)
        graph.link(last, f"relay{index}")
        last = f"relay{index}"
    graph.link(last, "countdown", feedback=True)
    graph.supervise("countdown", restart="permanent", attempts=3)
    store = af.MemoryStore()
    result = run_graph(graph, store=store, settings=af.Settings(snapshot_interval=math.inf))
    assert result.error is None
    assert result.status.actors["countdown"].received == 5
    assert result.status.actors["countdown"].fused_into is None  # saves see whole items
    assert final(store, "loop", "countdown") == [4, 3, 2, 1, 1, 0]


class LostReply(af.MemoryStore):
    """Its ``failing``-th write raises: after it is applied (a reply lost) or before."""

    def __init__(self, failing: int, applied: bool) -> None:
        super().__init__()
        self.failing, self.applied, self.writes = failing, applied, 0

    async def put(self, module: str, name: str, value: Any) -> None:
        self.writes += 1
        if self.writes == self.failing and not self.applied:
            raise TimeoutError("the server is down")
        await super().put(module, name, value)
        if self.writes == self.failing:
            raise TimeoutError("no reply from the server")


@given(st.integers(2, 6), st.booleans())  # a save at the bound (the first is the start's)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_write_that_raises_whether_applied_or_not_leaves_each_item_once(
    failing: int, applied: bool
) -> None:
    """The next incarnation restores whichever snapshot the store holds and replays
    only the items that snapshot does not hold: none twice, none lost."""
    store = LostReply(failing, applied)
    settings_ = af.Settings(snapshot_interval=math.inf, max_batch=4)
    result = run_graph(tracking(list(range(40)), buffer=8), store=store, settings=settings_)
    assert result.error is None
    assert result.status.actors["tracker"].restarts == 1
    assert final(store) == list(range(40))


class Midway(af.Processor):
    """On a cycle, awaits in the middle of each item; notes each save taken there."""

    caught: ClassVar[int] = 0

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.inside = False

    async def process(self, data: int) -> int | None:
        self.inside = True
        self.seen.append(data)
        await trio.sleep(0.01)
        self.inside = False
        if data == 0:
            Hold.done.set()
        return data - 1 if data > 0 else None

    def snapshot(self) -> list[int]:
        Midway.caught += self.inside
        return list(self.seen)

    def restore(self, value: list[int]) -> None:
        self.seen = list(value)


def test_a_module_on_a_cycle_is_saved_between_items() -> None:
    """It keeps no items to replay, but its saves still wait for whole batches: an
    async hook is never caught between two awaits."""
    Hold.done, Midway.caught = trio.Event(), 0
    graph = af.Graph("midway")
    graph.add("feed", Hold)
    graph.add("loop", Midway)
    graph.link("feed", "loop")
    graph.link("loop", "loop", feedback=True)
    store = af.MemoryStore()
    result = run_graph(graph, store=store, settings=af.Settings(snapshot_interval=0.004))
    assert result.error is None
    assert result.status.actors["loop"].snapshots > 5
    assert Midway.caught == 0
    assert final(store, "midway", "loop") == [4, 3, 2, 1, 0]


class Logged(Tracker):
    """Logs every handling, across incarnations; crashes once on ``"b3"``."""

    handlings: ClassVar[list[str]] = []

    def process(self, data: str) -> None:  # type: ignore[override]
        Logged.handlings.append(data)
        self.seen.append(data)  # type: ignore[arg-type]
        if data == "b3" and Tracker.crashes.pop(3, 0):
            raise RuntimeError("crash on b3")


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_the_replay_keeps_the_order_first_handled_across_links(batch: int) -> None:
    """Two input links: the items handled again come in the order first handled, not
    in the round robin's order, then the item the crash was on."""
    Tracker.crashes, Logged.handlings = {3: 1}, []
    graph = af.Graph("links")
    graph.add("a", Feed, items=[f"a{i}" for i in range(6)])
    graph.add("b", Feed, items=[f"b{i}" for i in range(6)])
    graph.add("tracker", Logged)
    graph.link("a", "tracker", buffer=10)
    graph.link("b", "tracker", buffer=10)
    graph.supervise("tracker", restart="permanent", attempts=3)
    settings_ = af.Settings(snapshot_interval=math.inf, max_batch=batch)
    result = run_graph(graph, store=af.MemoryStore(), settings=settings_)
    assert result.error is None
    crash = Logged.handlings.index("b3")
    first = Logged.handlings[:crash]
    assert Logged.handlings[crash + 1 : crash + 2 + len(first)] == [*first, "b3"]
