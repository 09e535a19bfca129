"""State snapshots: a module's state saved to the system's store (at start, at an
interval, at every end) and restored into every new incarnation and a new process."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._snapshots import namespace
from actorflow.testing import Feed, run_graph


class Counter(af.Sink):
    """Counts what it consumes; fails (before counting) on the items in ``crash_on``,
    each the first time only."""

    crash_on: ClassVar[set[int]] = set()
    restored: ClassVar[list[Any]] = []
    saved: ClassVar[list[Any]] = []

    def __init__(self) -> None:
        self.count = 0

    def consume(self, data: int) -> None:
        if data in Counter.crash_on:
            Counter.crash_on.discard(data)
            raise RuntimeError(f"crash on {data}")
        self.count += 1

    def snapshot(self) -> int:
        Counter.saved.append(self.count)
        return self.count

    def restore(self, value: int) -> None:
        Counter.restored.append(value)
        self.count = value


@pytest.fixture(autouse=True)
def _fresh_counter() -> None:
    Counter.crash_on, Counter.restored, Counter.saved = set(), [], []


def counting(items: list[Any], name: str = "graph") -> af.Graph:
    graph = af.Graph(name)
    graph.add("feed", Feed, items=items)
    graph.add("counter", Counter)
    graph.link("feed", "counter")
    graph.supervise("counter", attempts=2)
    return graph


def stored(store: af.Store, name: str = "counter", graph: str = "graph") -> Any:
    return trio.run(store.get, namespace(graph), name)


def test_a_counter_survives_a_crash_restart_with_the_right_count() -> None:
    """A counter restarted after a crash goes back to its last snapshot (taken at its
    start) and handles again the items it handled since: every item counts once."""
    Counter.crash_on = {6}
    store = af.MemoryStore()
    result = run_graph(counting(list(range(10))), store=store)
    assert result.error is None
    counter = result.status.actors["counter"]
    assert (counter.restarts, counter.errors) == (1, 1)
    assert Counter.restored == [0]  # the snapshot taken at the start, not the crash's 6
    assert stored(store) == 10
    assert counter.snapshots == 3  # the start of each incarnation, the clean end


def test_a_clean_stop_saves_the_state() -> None:
    """With no interval, the state is saved when the incarnation ends."""
    store = af.MemoryStore()
    result = run_graph(
        counting([1, 2, 3]), store=store, settings=af.Settings(snapshot_interval=math.inf)
    )
    assert result.error is None
    assert stored(store) == 3
    assert Counter.saved == [0, 3]


class Ticker(af.Source):
    """Counts a tick a second; its snapshots say when they were taken."""

    taken: ClassVar[list[tuple[float, int]]] = []

    def __init__(self) -> None:
        self.ticks = 0

    async def start(self) -> None:
        while self.active:
            self.ticks += 1
            await self.emit(self.ticks)
            await trio.sleep(1)

    def snapshot(self) -> int:
        Ticker.taken.append((trio.current_time(), self.ticks))
        return self.ticks

    def restore(self, value: int) -> None:
        self.ticks = value


def test_the_interval_saves_while_the_module_runs() -> None:
    """Every ``snapshot_interval`` seconds (virtual time) the state is saved, besides at
    the start and at the end."""
    Ticker.taken = []
    graph = af.Graph()
    graph.add("ticker", Ticker)
    result = run_graph(graph, stop_after=35.5, settings=af.Settings(snapshot_interval=10.25))
    start = Ticker.taken[0][0]
    when = [round(at - start, 6) for at, _ in Ticker.taken]
    # the end: when start() returns, at its first look at self.active after the stop
    assert when == [0, 10.25, 20.5, 30.75, 36]
    assert [ticks for _, ticks in Ticker.taken] == [0, 11, 21, 31, 36]
    assert result.status.actors["ticker"].snapshots == 5


def test_a_module_may_set_its_own_interval() -> None:
    """``Module.snapshot_interval`` overrides the system's setting."""
    Ticker.taken = []

    class Slow(Ticker):
        snapshot_interval = 20

    graph = af.Graph()
    graph.add("ticker", Slow)
    run_graph(graph, stop_after=45.5, settings=af.Settings(snapshot_interval=1))
    assert len(Ticker.taken) == 4  # start, 20, 40, end


def test_a_new_run_on_the_same_store_resumes(tmp_path: Path) -> None:
    """A second run on the same SQLite file starts from the first one's state."""
    path = tmp_path / "state.db"
    for _ in range(2):
        store = af.SQLiteStore(path)
        # the file is read in worker threads: on real time, not a virtual clock
        run_graph(counting(list(range(4))), store=store, virtual_time=False)
        trio.run(store.aclose)
    assert Counter.restored == [4]
    assert Counter.saved[-1] == 8


def test_two_graphs_on_one_store_keep_their_own_snapshots() -> None:
    """Snapshots are keyed by graph and module."""
    store = af.MemoryStore()
    run_graph(counting([1, 2], name="small"), store=store)
    run_graph(counting([1, 2, 3, 4, 5], name="large"), store=store)
    assert stored(store, graph="small") == 2
    assert stored(store, graph="large") == 5
    assert Counter.restored == []


class Unstorable(af.Sink):
    def consume(self, data: Any) -> None:
        pass

    def snapshot(self) -> Any:
        return {"open": [1, object()]}

    def restore(self, value: Any) -> None:
        pass


def test_a_snapshot_that_cannot_be_stored_names_the_module_and_the_path() -> None:
    """The first save fails the module with a SerializationError naming it and where
    in the value the problem is."""
    graph = af.Graph()
    graph.add("feed", Feed, items=[1])
    graph.add("keeper", Unstorable)
    graph.link("feed", "keeper")
    store = af.MemoryStore()
    result = run_graph(graph, store=store)
    assert isinstance(result.error, af.EscalationError)
    error = result.error.__cause__
    assert isinstance(error, af.RunError)
    assert error.module == "keeper"
    assert isinstance(error.__cause__, af.SerializationError)
    assert "the snapshot of module 'keeper' at value['open'][1]" in str(error)
    assert trio.run(store.names, namespace("graph")) == []
    assert result.status.actors["keeper"].snapshots == 0


class Picky(Counter):
    refusals: ClassVar[int] = 1

    def restore(self, value: int) -> None:
        if Picky.refusals:
            Picky.refusals -= 1
            raise ValueError("not today")
        super().restore(value)


def test_a_restore_that_raises_is_the_module_failure_and_keeps_the_snapshot() -> None:
    """restore() raising fails the incarnation (supervised: restarted); the snapshot it
    refused is not overwritten, and the next incarnation takes it back."""
    store = af.MemoryStore()
    trio.run(store.put, namespace("graph"), "counter", 5)
    graph = af.Graph()
    graph.add("feed", Feed, items=[1, 2, 3])
    graph.add("counter", Picky)
    graph.link("feed", "counter")
    result = run_graph(graph, store=store)
    counter = result.status.actors["counter"]
    assert (counter.restarts, counter.errors) == (1, 1)
    assert Counter.restored == [5]
    assert stored(store) == 8


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.integers(min_value=1, max_value=40),
    crashes=st.sets(st.integers(min_value=0, max_value=39), max_size=5),
    interval=st.sampled_from([0.5, 3.0, math.inf]),
)
def test_every_restore_gets_the_last_snapshot_saved(
    items: int, crashes: set[int], interval: float
) -> None:
    """Whatever the crash schedule, each new incarnation restores the count last saved
    and the final count is the number of items."""
    Counter.crash_on = {c for c in crashes if c < items}
    Counter.restored, Counter.saved = [], []
    restored_after: list[int] = []

    class Checked(Counter):
        def restore(self, value: int) -> None:
            restored_after.append(Counter.saved[-1])
            super().restore(value)

    feed = [x for i in range(items) for x in (i, af.testing.Pause(1))]
    graph = af.Graph(root=af.SupervisorSpec(max_restarts=10))
    graph.add("feed", Feed, items=feed)
    graph.add("counter", Checked)
    graph.link("feed", "counter")
    graph.supervise("counter", attempts=2)
    store = af.MemoryStore()
    result = run_graph(graph, store=store, settings=af.Settings(snapshot_interval=interval))
    assert result.error is None
    assert Counter.restored == restored_after
    assert len(Counter.restored) == result.status.actors["counter"].restarts
    assert stored(store) == items


async def test_a_planned_restart_saves_before_and_restores_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """terminate_child then restart_child: the state is saved as the incarnation stops
    and the next one takes it back, with no interval save between."""
    Ticker.taken = []
    store = af.MemoryStore()
    graph = af.Graph()
    graph.add("ticker", Ticker)
    graph.add("counter", Counter)  # keeps the system running while the ticker is stopped
    graph.link("ticker", "counter")
    settings = af.Settings(snapshot_interval=math.inf)
    async with af.open_system(graph, store=store, settings=settings) as system:
        root = system.supervisor()
        await trio.sleep(4.5)
        await root.terminate_child("ticker")
        assert await store.get(namespace("graph"), "ticker") == 5
        await root.restart_child("ticker")
        await trio.sleep(2.5)
        await system.stop()
    assert [ticks for _, ticks in Ticker.taken] == [0, 5, 5, 8]


class AsyncCounter(Counter):
    async def snapshot(self) -> int:  # type: ignore[override]
        await trio.sleep(0)
        return self.count

    async def restore(self, value: int) -> None:  # type: ignore[override]
        await trio.sleep(0)
        Counter.restored.append(value)
        self.count = value


def test_async_hooks_are_awaited() -> None:
    """snapshot() and restore() may be async."""
    store = af.MemoryStore()
    for items in ([1, 2], [3, 4, 5]):
        graph = af.Graph()
        graph.add("feed", Feed, items=items)
        graph.add("counter", AsyncCounter)
        graph.link("feed", "counter")
        run_graph(graph, store=store)
    assert Counter.restored == [2]
    assert stored(store) == 5


async def test_a_redis_store_keeps_snapshots_for_the_next_run(redis_server: Any) -> None:
    """On a Redis store, a second system on the same server resumes the count."""
    prefix = f"test:snapshots:{id(redis_server)}:{trio.current_time()}"
    for items in ([1, 2, 3], [4]):
        async with af.RedisStore(redis_server.url, prefix=prefix) as store:
            async with af.open_system(counting(items, name="redis_tally"), store=store):
                pass
            final = await store.get(namespace("redis_tally"), "counter")
    assert Counter.restored == [3]
    assert final == 4


def test_snapshot_interval_is_checked() -> None:
    """A bad interval fails where it is written, naming it."""
    with pytest.raises(ValueError, match="snapshot_interval"):
        af.Settings(snapshot_interval=0)

    class Bad(Counter):
        snapshot_interval = -1  # type: ignore[assignment]

    graph = af.Graph()
    graph.add("feed", Feed, items=[])
    graph.add("counter", Bad)
    graph.link("feed", "counter")
    with pytest.raises(af.GraphError, match=r"Bad\.snapshot_interval"):
        graph.validate()


class Forgetful(Counter):
    """Fails on every item after the second, and cannot give its state once it has."""

    def consume(self, data: int) -> None:
        if self.count == 2:
            self.count = -1
            raise RuntimeError("lost my mind")
        super().consume(data)

    def snapshot(self) -> int:
        if self.count < 0:
            raise ValueError("no idea")
        return super().snapshot()


def test_a_crashed_module_is_not_saved_as_it_ends() -> None:
    """A crash may leave the state half-changed: the module is not asked for a snapshot
    then (this one would raise), and the last good snapshot stands."""
    store = af.MemoryStore()
    graph = af.Graph()
    graph.add("feed", Feed, items=[1, 2, 3])
    graph.add("counter", Forgetful)
    graph.link("feed", "counter")
    graph.supervise("counter", restart="temporary")
    result = run_graph(graph, store=store, settings=af.Settings(snapshot_interval=math.inf))
    counter = result.status.actors["counter"]
    assert counter.errors == 1  # the crash alone: no save was tried
    assert counter.reason == "failed"
    assert stored(store) == 0  # the snapshot of the start stands


class BrokenStore(af.MemoryStore):
    async def put(self, module: str, name: str, value: Any) -> None:
        raise OSError("disk full")


def test_a_store_that_fails_to_write_fails_the_module(logs: list[dict[str, Any]]) -> None:
    """A snapshot the store cannot write is the module's failure, named and logged."""
    graph = af.Graph()
    graph.add("feed", Feed, items=[1])
    graph.add("counter", Counter)
    graph.link("feed", "counter")
    error = run_graph(graph, store=BrokenStore()).error
    assert "the store failed: OSError: disk full" in str(error)
    failed = [e for e in logs if e["event"] == "actor.snapshot_failed"]
    assert failed[0]["actor"] == "counter"
    assert failed[0]["log_level"] == "warning"


def test_each_save_is_logged_at_debug(logs: list[dict[str, Any]]) -> None:
    """actor.snapshot_saved says where each save was taken and how many so far."""
    run_graph(counting([1, 2]))
    saves = [(e["at"], e["snapshots"]) for e in logs if e["event"] == "actor.snapshot_saved"]
    assert saves == [("start", 1), ("end", 2)]
    assert not any(e["event"] == "actor.snapshot_restored" for e in logs)


class StallingStore(af.MemoryStore):
    """Writes the first snapshot, then hangs on every write (a store that went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def put(self, module: str, name: str, value: Any) -> None:
        self.writes += 1
        if self.writes > 1:
            await trio.sleep_forever()
        await super().put(module, name, value)


class AtStartAndEnd(Counter):
    snapshot_interval = math.inf


def test_an_end_save_that_runs_out_of_time_is_said_and_counted(
    logs: list[dict[str, Any]],
) -> None:
    """The save as the incarnation ends waits at most ``cleanup_timeout``; running out
    of it is a warning and an error counted, never silent (it was neither)."""
    graph = af.Graph()
    graph.add("feed", Feed, items=[1, 2, 3])
    graph.add("counter", AtStartAndEnd)
    graph.link("feed", "counter")
    result = run_graph(graph, store=StallingStore(), settings=af.Settings(cleanup_timeout=2))
    assert result.error is None
    assert result.status.actors["counter"].errors == 1
    failed = [e for e in logs if e["event"] == "actor.snapshot_failed"]
    assert [(e["actor"], e["at"], e["log_level"]) for e in failed] == [
        ("counter", "end", "warning")
    ]
    assert "not stored within 2 s" in failed[0]["error"]


def test_a_snapshot_is_encoded_once_per_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in stores take the payload encoded as the snapshot was checked: one
    encoding per save, not two."""
    import actorflow._snapshots as snapshots_module
    import actorflow._store as store_module

    encodings: list[Any] = []
    encode = store_module.encode

    def noted(value: Any) -> bytes:
        encodings.append(value)
        return encode(value)

    monkeypatch.setattr(snapshots_module, "encode", noted)
    monkeypatch.setattr(store_module, "encode", noted)
    store = af.MemoryStore()
    result = run_graph(counting([1, 2]), store=store)
    assert result.status.actors["counter"].snapshots == 2
    assert encodings == [0, 2]
    assert stored(store) == 2


def test_a_graph_with_the_default_name_is_warned_about(logs: list[dict[str, Any]]) -> None:
    """Graphs left with the default name share their snapshots on a store: said once
    per module with snapshot(), at its first incarnation; a named graph is not."""
    Counter.crash_on = {2}
    run_graph(counting([1, 2, 3]))
    run_graph(counting([1, 2, 3], name="own"))
    shared = [e for e in logs if e["event"] == "actor.snapshot_shared"]
    assert [(e["actor"], e["graph"], e["log_level"]) for e in shared] == [
        ("counter", "graph", "warning")
    ]
