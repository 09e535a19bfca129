"""A stop is never held up by a new incarnation stuck in its restore or its first save
(a restore that blocks, a store that does not answer): once the stop began, they get
``stop_timeout`` seconds, then the incarnation ends without handling anything."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._snapshots import namespace
from actorflow.testing import Feed

CHECKOUT = Path(af.__file__).resolve().parent.parent


class Stuck(af.Sink):
    """Counts; its restore never returns (a state that cannot be read back)."""

    def __init__(self) -> None:
        self.count = 0

    def consume(self, data: int) -> None:
        self.count += 1

    def snapshot(self) -> int:
        return self.count

    async def restore(self, value: int) -> None:
        await trio.sleep_forever()


class Mute(af.MemoryStore):
    """A store that answers nothing once ``mute`` is set (a Redis that went away)."""

    mute = False

    async def get(self, module: str, name: str, default: Any = ...) -> Any:
        if self.mute:
            await trio.sleep_forever()
        return await super().get(module, name, default)


def stuck_graph(module: type[af.Sink] = Stuck) -> af.Graph:
    graph = af.Graph("stuck")
    graph.add("feed", Feed, items=[1, 2, 3])
    graph.add("counter", module)
    graph.link("feed", "counter")
    return graph


class Counting(Stuck):
    def restore(self, value: int) -> None:  # type: ignore[override]
        self.count = value


async def test_a_stop_bounds_a_restore_that_never_returns(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """System.stop() while the restore blocks: the system ends stop_timeout later,
    the items left counted as dropped, the snapshot as it was."""
    store = af.MemoryStore()
    await store.put(namespace("stuck"), "counter", 7)
    settings = af.Settings(stop_timeout=2)
    async with af.open_system(stuck_graph(), store=store, settings=settings) as system:
        await trio.sleep(10)  # nothing ends a restore that never returns by itself
        assert system.status().actors["counter"].received == 0
        began = trio.current_time()
        await system.stop()
    assert trio.current_time() - began == pytest.approx(2, abs=0.2)
    assert await store.get(namespace("stuck"), "counter") == 7
    failed = [e for e in logs if e["event"] == "actor.snapshot_failed"]
    assert [(e["at"], e["actor"]) for e in failed] == [("start", "counter")]
    assert system.status().actors["counter"].dropped == {}
    (link,) = system.status().links.values()
    assert link.dropped == {"consumer_terminated": 3}  # left, and counted


async def test_a_stop_bounds_a_store_that_does_not_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A supervisor restarting a module after the stop began, on a store that stopped
    answering: the new incarnation's load is given up stop_timeout later."""

    class Crashing(Counting):
        def consume(self, data: int) -> None:
            store.mute = True
            raise RuntimeError("crash")

    store = Mute()
    graph = stuck_graph(Crashing)
    graph.supervise("counter", restart="permanent")
    settings = af.Settings(stop_timeout=3)
    async with af.open_system(graph, store=store, settings=settings) as system:
        await trio.sleep(5)
        assert system.status().actors["counter"].restarts == 1
        began = trio.current_time()
        await system.stop()
    assert trio.current_time() - began == pytest.approx(3, abs=0.2)


SCRIPT = """
import sys
from pathlib import Path

import trio

import actorflow as af


class Feed(af.Source):
    async def start(self):
        for n in range(3):
            await self.emit(n)
        await trio.sleep_forever()


class Stuck(af.Sink):
    def consume(self, data):
        pass

    def snapshot(self):
        return 0

    async def restore(self, value):
        Path(sys.argv[2]).write_text("restoring")
        await trio.sleep_forever()


store = af.SQLiteStore(sys.argv[1])
trio.run(store.put, "actorflow.snapshot/stuck", "stuck", 1)
graph = af.Graph("stuck")
graph.add("feed", Feed)
graph.add("stuck", Stuck)
graph.link("feed", "stuck")
af.run(graph, af.Settings(stop_timeout=0.5, drain_timeout=120), store=store)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_one_sigterm_ends_a_process_whose_restore_blocks(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """A real process stuck in a restore ends on one SIGTERM, long before its drain
    timeout (120 s) would cancel it."""
    script, marker = tmp_path / "stuck.py", tmp_path / "restoring"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "state.db"), str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the process never reached its restore"
        time.sleep(0.02)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 30
    assert process.returncode == 143, err  # SystemExit(143), as af.run says
    assert "actor.snapshot_failed" in err


class MutePut(af.MemoryStore):
    """A store whose writes never answer after the first (a Redis that hung)."""

    answered = 0

    async def put(self, module: str, name: str, value: Any) -> None:
        if self.answered:
            await trio.sleep_forever()
        self.answered += 1
        await super().put(module, name, value)


class Ticking(af.Source):
    """Sends an item every half second until stopped."""

    async def start(self) -> None:
        item = 0
        while True:
            await self.emit(item)
            item += 1
            await trio.sleep(0.5)


@pytest.mark.parametrize("early", [False, True])
async def test_a_stop_bounds_a_save_the_store_never_answers(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]], early: bool
) -> None:
    """An interval save (or an early one, the journal full) on a store that stopped
    answering: a stop ends the system stop_timeout later (then the end save's
    cleanup_timeout), the given-up save logged and counted, the last snapshot kept."""
    store = MutePut()
    graph = af.Graph("hung")
    graph.add("source", Ticking)
    graph.add("counter", Counting)
    graph.link("source", "counter", buffer=1)
    interval, batch = (math.inf, 1) if early else (1.0, 256)
    settings = af.Settings(
        stop_timeout=2, cleanup_timeout=1, snapshot_interval=interval, max_batch=batch
    )
    async with af.open_system(graph, store=store, settings=settings) as system:
        await trio.sleep(10)
        assert system.status().actors["counter"].received <= 3  # held up by the save
        began = trio.current_time()
        await system.stop()
    assert trio.current_time() - began == pytest.approx(3, abs=0.3)
    failed = [(e["at"], e["error"]) for e in logs if e["event"] == "actor.snapshot_failed"]
    at = "bound" if early else "interval"
    assert failed == [
        (at, "not stored 2 s after the stop began"),
        ("end", "not stored within 1 s"),
    ]
    assert system.status().actors["counter"].errors == 2
    assert await store.get(namespace("hung"), "counter") == 0  # the start's
