"""A blocking module's snapshot is taken alone: never while another of its hooks runs
in a thread, abandoned ones included."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import ClassVar

import structlog
import trio
import trio.testing

import actorflow as af
from actorflow._actor._threads import Threads
from actorflow.testing import Feed, Recorder, run_graph


class Slow(af.Sink):
    """A blocking sink whose consume() waits, inside the module, for a snapshot to be
    taken (for at most ``wait`` seconds): a snapshot taken meanwhile is an overlap."""

    blocking = True
    snapshot_interval = 0.01
    snapshots: ClassVar[list[bool]] = []
    """For each snapshot taken: whether consume() was running meanwhile."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self.count = 0
        self.inside = threading.Event()
        self.taken = threading.Event()

    def consume(self, data: int) -> None:
        self.inside.set()
        self.taken.clear()
        self.taken.wait(self.wait)
        self.count += 1
        self.inside.clear()

    def snapshot(self) -> int:
        Slow.snapshots.append(self.inside.is_set())
        self.taken.set()
        return self.count

    def restore(self, value: int) -> None:
        self.count = value


def test_a_blocking_modules_snapshot_never_runs_beside_its_hook() -> None:
    """Interval saves come while consume() runs in its thread: each waits until it
    returned (the hook waits for a snapshot in vain), none overlaps it."""
    graph = af.Graph("slow")
    graph.add("feed", Feed, items=[1, 2, 3])
    graph.add("slow", Slow, wait=0.2)
    graph.link("feed", "slow", buffer=1)
    store = af.MemoryStore()
    Slow.snapshots = []
    with structlog.testing.capture_logs() as logs:
        result = run_graph(graph, store=store, virtual_time=False)
    assert result.error is None
    assert Slow.snapshots
    assert not any(Slow.snapshots)
    saves = [e["at"] for e in logs if e["event"] == "actor.snapshot_saved"]
    assert "interval" in saves
    assert trio.run(store.get, "actorflow.snapshot/slow", "slow") == 3


class Pulled(af.Source):
    """A blocking source whose generator is pulled in a worker thread; each pull waits
    for a snapshot to be taken (for at most 0.2 s): one taken meanwhile overlaps."""

    blocking = True
    snapshot_interval = 0.01
    snapshots: ClassVar[list[bool]] = []

    def __init__(self) -> None:
        self.count = 0
        self.inside = threading.Event()
        self.taken = threading.Event()

    def start(self) -> Iterator[int]:
        for n in range(3):
            self.inside.set()
            self.taken.clear()
            self.taken.wait(0.2)
            self.count += 1
            self.inside.clear()
            yield n

    def snapshot(self) -> int:
        Pulled.snapshots.append(self.inside.is_set())
        self.taken.set()
        return self.count

    def restore(self, value: int) -> None:
        self.count = value


def test_a_blocking_sources_snapshot_never_runs_beside_its_pull() -> None:
    """A source keeps no journal: the exclusion of its thread calls alone keeps its
    interval saves out of its pulls."""
    graph = af.Graph("pulled")
    graph.add("pulled", Pulled)
    graph.add("out", Recorder)
    graph.link("pulled", "out")
    Pulled.snapshots = []
    with structlog.testing.capture_logs() as logs:
        result = run_graph(graph, virtual_time=False)
    assert result.error is None
    assert result.outputs["out"] == [0, 1, 2]
    assert Pulled.snapshots
    assert not any(Pulled.snapshots)
    assert "interval" in [e["at"] for e in logs if e["event"] == "actor.snapshot_saved"]


async def test_a_call_alone_waits_for_an_abandoned_call() -> None:
    """A call abandoned by a cancellation still runs in its thread: alone() waits for it
    to finish, and holds back the calls of other tasks meanwhile."""
    threads = Threads()
    release = threading.Event()
    order: list[str] = []

    async def abandoned() -> None:
        await threads.run(release.wait, (), None)

    async def alone() -> None:
        async with threads.alone():
            order.append(f"alone, released={release.is_set()}")
            await trio.sleep(0)
            order.append("alone ends")

    async def other() -> None:
        await threads.run(order.append, ("other",), None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(abandoned)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert threads.running == 1
    assert len(threads.abandoned) == 1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(alone)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(other)
        await trio.testing.wait_all_tasks_blocked()
        assert order == []
        release.set()
    assert order == ["alone, released=True", "alone ends", "other"]
    assert threads.running == 0


async def test_calls_cancelled_before_their_thread_started_are_not_counted() -> None:
    """A call cancelled while it waits for a thread never runs: nothing waits for it."""
    threads = Threads()
    limiter = trio.CapacityLimiter(1)
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(threads.run, release.wait, (), limiter)
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as waiting:
            nursery.start_soon(_cancel_soon, waiting)
            await threads.run(print, ("never",), limiter)
        assert threads.running == 1
        release.set()
    assert threads.running == 0
    assert not threads.abandoned


async def _cancel_soon(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_a_call_alone_waits_for_a_call_waiting_for_a_thread() -> None:
    """The limiter is exhausted: a call that passed the check waits for a thread; a call
    alone that starts meanwhile runs only once that call has run, never beside it."""
    threads = Threads()
    limiter = trio.CapacityLimiter(1)
    hog = threading.Event()
    inside = threading.Event()
    order: list[str] = []

    def pull() -> None:
        inside.set()
        order.append("pull")
        inside.clear()

    async def alone() -> None:
        async with threads.alone():
            order.append(f"alone, pull running={inside.is_set()}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, hog.wait, limiter=limiter))
        try:
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(threads.run, pull, (), limiter)
            await trio.testing.wait_all_tasks_blocked()
            assert threads.running == 1  # waiting for a thread, counted
            nursery.start_soon(alone)
            await trio.testing.wait_all_tasks_blocked()
            assert order == []
        finally:
            hog.set()
    assert order == ["pull", "alone, pull running=False"]
    assert threads.running == 0
