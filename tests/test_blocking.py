"""Blocking modules: their sync hooks run in worker threads, so other actors keep going."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import structlog.testing
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af


class GatedSink(af.Sink):
    """Blocks its thread in consume() until the test opens the gate."""

    blocking = True

    def __init__(
        self, gate: threading.Event, entered: trio.Event, threads: list[str], into: list[int]
    ) -> None:
        self.gate = gate
        self.entered = entered
        self.threads = threads
        self.into = into

    def consume(self, data: int) -> None:
        self.threads.append(threading.current_thread().name)
        trio.from_thread.run_sync(self.entered.set)
        self.gate.wait(timeout=30)  # a blocking call, off the event loop
        self.into.append(data)


class CountTo(af.Sink):
    def __init__(self, count: int, done: trio.Event, into: list[int]) -> None:
        self.count = count
        self.done = done
        self.into = into

    def consume(self, data: int) -> None:
        self.into.append(data)
        if len(self.into) == self.count:
            self.done.set()


async def test_a_blocking_call_in_a_blocking_module_never_stalls_other_actors() -> None:
    """While a blocking sink waits inside consume(), another pipeline runs to the end."""
    gate = threading.Event()
    entered = trio.Event()
    other_done = trio.Event()
    threads: list[str] = []
    gated: list[int] = []
    other: list[int] = []
    graph = af.Graph()
    graph.add("slow_src", Numbers, count=2)
    graph.add("gated", GatedSink, gate=gate, entered=entered, threads=threads, into=gated)
    graph.add("src", Numbers, count=500)
    graph.add("count", CountTo, count=500, done=other_done, into=other)
    graph.link("slow_src", "gated")
    graph.link("src", "count")
    try:
        async with af.open_system(graph):
            with trio.fail_after(10):
                await entered.wait()
                # The gated call is blocked in its thread; the event loop is free.
                await other_done.wait()
            assert gated == []
            gate.set()
    finally:
        gate.set()
    assert gated == [0, 1]
    assert other == list(range(500))
    assert all(name != threading.main_thread().name for name in threads)


class InlineSink(af.Sink):
    def __init__(self, threads: list[str]) -> None:
        self.threads = threads

    def consume(self, data: Any) -> None:
        self.threads.append(threading.current_thread().name)


async def test_a_sync_hook_runs_inline_unless_the_module_is_blocking() -> None:
    """By default a sync hook runs on the event loop's thread (no thread hop per item)."""
    threads: list[str] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("sink", InlineSink, threads=threads)
    graph.link("src", "sink")
    async with af.open_system(graph):
        pass
    assert threads == [threading.main_thread().name] * 3


class Tracked(af.Processor):
    """Counts how many of its calls run at the same time, across instances."""

    blocking = True
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}
    lock = threading.Lock()
    running = 0
    peak = 0

    def process(self, data: int) -> int:
        with Tracked.lock:
            Tracked.running += 1
            Tracked.peak = max(Tracked.peak, Tracked.running)
        try:
            threading.Event().wait(0.002)  # some blocking work
            return data
        finally:
            with Tracked.lock:
                Tracked.running -= 1


async def test_thread_limit_caps_concurrent_blocking_calls() -> None:
    """thread_limit bounds the worker threads that blocking modules use at once."""
    Tracked.peak = 0
    out: list[int] = []
    graph = af.Graph()
    for index in range(3):
        graph.add(f"src{index}", Numbers, count=5)
        graph.add(f"p{index}", Tracked)
        graph.chain(f"src{index}", f"p{index}", "sink")
    graph.add("sink", Collect, into=out)
    async with af.open_system(graph, thread_limit=1):
        pass
    assert sorted(out) == sorted(list(range(5)) * 3)
    assert Tracked.peak == 1


class BlockingSource(af.Source):
    """A sync generator whose every step blocks (reading a device, say)."""

    blocking = True

    def __init__(self, threads: list[str]) -> None:
        self.threads = threads

    def start(self) -> Any:
        for n in range(4):
            self.threads.append(threading.current_thread().name)
            yield n


async def test_a_blocking_source_pulls_its_items_in_worker_threads() -> None:
    """A blocking source's generator advances in a worker thread, item by item."""
    threads: list[str] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", BlockingSource, threads=threads)
    graph.add("sink", Collect, into=out)
    graph.link("src", "sink")
    async with af.open_system(graph):
        pass
    assert out == [0, 1, 2, 3]
    assert threads
    assert all(name != threading.main_thread().name for name in threads)


class JournalledGatedSink(af.Sink):
    """A blocking sink promised one consume() at a time: it journals each call's start
    and end, and its cleanup(), on the event loop so that it cannot wait for threads."""

    blocking = True

    def __init__(self, gate: threading.Event, entered: trio.Event, journal: list[str]) -> None:
        self.gate = gate
        self.entered = entered
        self.journal = journal

    def consume(self, data: int) -> None:
        self.journal.append(f"start {data}")
        trio.from_thread.run_sync(self.entered.set)
        self.gate.wait(timeout=30)
        self.journal.append(f"end {data}")

    async def cleanup(self) -> None:
        self.journal.append("cleanup")


async def test_an_abandoned_blocking_call_finishes_before_its_cleanup() -> None:
    """A cancelled blocking consume() is abandoned to its thread; cleanup() waits for it
    to finish rather than run beside it."""
    gate = threading.Event()
    entered = trio.Event()
    cancelled = trio.Event()
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("sink", JournalledGatedSink, gate=gate, entered=entered, journal=journal)
    graph.link("src", "sink")

    async def open_the_gate_once_everything_waits() -> None:
        await cancelled.wait()
        await trio.testing.wait_all_tasks_blocked()
        gate.set()

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(open_the_gate_once_everything_waits)
                async with af.open_system(graph, cleanup_timeout=15) as system:
                    await entered.wait()
                    system.cancel()
                    cancelled.set()
    finally:
        gate.set()
    assert journal == ["start 0", "end 0", "cleanup"]


class BombOnce(af.Source):
    """Fails once, when the sink is inside its blocking call, so that its one_for_all
    group restarts the sink with that call abandoned in its thread."""

    def __init__(self, entered: trio.Event, fired: trio.Event) -> None:
        self.entered = entered
        self.fired = fired

    async def start(self) -> None:
        if not self.fired.is_set():
            await self.entered.wait()
            self.fired.set()
            raise RuntimeError("boom")


def one_call_at_a_time(journal: list[str]) -> bool:
    """Each consume() start is followed by its own end before anything else happens."""
    inside = False
    for entry in journal:
        if inside != entry.startswith("end"):
            return False
        inside = entry.startswith("start")
    return not inside


async def test_an_abandoned_blocking_call_finishes_before_the_next_incarnation() -> None:
    """A restart kills a blocking sink inside consume(): its cleanup() and the next
    incarnation wait for that call to finish in its thread."""
    gate = threading.Event()
    entered = trio.Event()
    fired = trio.Event()
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=2)
    graph.add("sink", JournalledGatedSink, gate=gate, entered=entered, journal=journal)
    graph.add("bomb", BombOnce, entered=entered, fired=fired)
    graph.link("src", "sink")
    graph.supervise("sink", shutdown=0)
    graph.group("pair", ["sink", "bomb"], strategy="one_for_all", max_restarts=2)

    async def open_the_gate_once_everything_waits() -> None:
        await fired.wait()
        await trio.testing.wait_all_tasks_blocked()
        gate.set()

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(open_the_gate_once_everything_waits)
                async with af.open_system(graph, cleanup_timeout=15) as system:
                    pass
    finally:
        gate.set()
    assert system.status().actors["sink"].restarts == 1
    assert one_call_at_a_time(journal), journal
    assert journal.count("cleanup") == 2


async def test_an_abandoned_call_that_overruns_the_cleanup_timeout_is_logged() -> None:
    """The wait for an abandoned call is bounded by the cleanup timeout; an overrun is
    logged and counted, and cleanup() runs anyway."""
    gate = threading.Event()
    entered = trio.Event()
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("sink", JournalledGatedSink, gate=gate, entered=entered, journal=journal)
    graph.link("src", "sink")
    try:
        with structlog.testing.capture_logs() as logs, trio.fail_after(20):
            async with af.open_system(graph, cleanup_timeout=0.01) as system:
                await entered.wait()
                system.cancel()
        assert journal == ["start 0", "cleanup"]
    finally:
        gate.set()
    [overrun] = [log for log in logs if log["event"] == "actor.thread_overrun"]
    assert overrun["actor"] == "sink"
    assert overrun["calls"] == 1


class GatedGenerator(af.Source):
    """A blocking source whose generator blocks in its thread until the test opens the
    gate, and journals when it is closed."""

    blocking = True

    def __init__(self, gate: threading.Event, entered: trio.Event, journal: list[str]) -> None:
        self.gate = gate
        self.entered = entered
        self.journal = journal

    def start(self) -> Any:
        def items() -> Any:
            try:
                trio.from_thread.run_sync(self.entered.set)
                self.gate.wait(timeout=30)
                self.journal.append("pulled")
                yield 1
            finally:
                self.journal.append(f"closed in {threading.current_thread().name}")

        return items()

    async def cleanup(self) -> None:
        self.journal.append("cleanup")


async def test_cancelling_a_blocking_source_mid_pull_closes_its_generator_after_the_pull() -> None:
    """A blocking source cancelled while its generator runs in a thread is not a failure:
    the generator is closed once that pull returns (never while it executes), and before
    cleanup()."""
    gate = threading.Event()
    entered = trio.Event()
    cancelled = trio.Event()
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", GatedGenerator, gate=gate, entered=entered, journal=journal)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")

    async def open_the_gate_once_everything_waits() -> None:
        await cancelled.wait()
        await trio.testing.wait_all_tasks_blocked()
        gate.set()

    try:
        with trio.fail_after(20), structlog.testing.capture_logs() as events:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(open_the_gate_once_everything_waits)
                async with af.open_system(graph, cleanup_timeout=15) as system:
                    await entered.wait()
                    system.cancel()
                    cancelled.set()
    finally:
        gate.set()
    assert journal[0] == "pulled"
    assert journal[1].startswith("closed in")
    assert journal[2] == "cleanup"
    src = system.status().actors["src"]
    assert src.reason != af.EndReason.FAILED
    assert src.errors == 0
    assert not [e for e in events if e["log_level"] == "error"], events
