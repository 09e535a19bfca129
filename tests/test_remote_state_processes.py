"""A counter fed over a remote link, its process killed with SIGKILL mid-stream and
started again on the same SQLite store, ends with every item counted exactly once: the
consumer had held back the acknowledgements of what it handled since its last snapshot,
so Redis delivers those entries again (less what the stored snapshot covers), in order
and before anything new. Real processes, a real redis-server, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio
from processes import wait_for
from redis_server import RedisServer

import actorflow as af
from actorflow._redis import connect
from actorflow._snapshots import namespace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHECKOUT = Path(af.__file__).resolve().parent.parent

ITEMS = 600
STUCK_AT = 333

SCRIPT = """
import math
import sys
from pathlib import Path

import trio

import actorflow as af

db, url, name, role, count, stuck_at, log, acks = sys.argv[1:9]

if acks == "lost":
    # As if the process died right after each save, before its acknowledgements
    # reached Redis: every entry stays pending, those a snapshot covers included.
    from actorflow._redis._consumer import ConsumerPump

    async def _lost(self, client, retry):
        pass

    ConsumerPump._flush_acks = _lost


class Numbers(af.Source):
    async def start(self):
        for n in range(int(count)):
            await self.emit(n)
            await trio.sleep(0.0005)


class Counter(af.Sink):
    '''A plain count and sum: nothing in it tells an item seen before.'''

    def __init__(self):
        self.count, self.total = 0, 0
        self.log = open(log, "a", buffering=1)

    async def consume(self, n):
        self.log.write(f"{n}\\n")
        if n == int(stuck_at):
            await trio.sleep_forever()  # the test kills the process here
        self.count, self.total = self.count + 1, self.total + n

    def snapshot(self):
        return {"count": self.count, "total": self.total}

    def restore(self, value):
        self.count, self.total = value["count"], value["total"]


graph = af.Graph(name)
graph.add("numbers", Numbers)
graph.add("counter", Counter)
remote = af.Remote(batch=10, claim_idle=1.0)
graph.link("numbers", "counter", buffer=10 * int(count), remote=remote)
settings = af.Settings(remote_url=url, snapshot_interval=math.inf)
af.run(graph, settings, store=af.SQLiteStore(db), only={role})
"""


def saved(db: Path, graph: str) -> dict[str, int] | None:
    """The counter's snapshot in the SQLite file, read as another process would."""

    async def read() -> dict[str, int] | None:
        store = af.SQLiteStore(db)
        try:
            value: dict[str, int] | None = await store.get(namespace(graph), "counter", None)
            return value
        finally:
            await store.aclose()

    return trio.run(read)


def deliveries(url: str, graph: str) -> list[int]:
    """The delivery count of each entry pending in the link's stream, in order."""

    async def read() -> list[int]:
        async with connect(url) as client:
            stream = f"actorflow:{graph}:numbers.out>counter.in"
            pending = await client.xpending(stream, "counter", start="-", end="+", count=10_000)
            return [entry.delivered for entry in pending]

    return trio.run(read)


def handled(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("acks", ["kept", "lost"])
def test_a_remote_fed_counter_killed_with_sigkill_counts_each_item_once(
    tmp_path: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]], acks: str
) -> None:
    """The first consumer process hangs in mid-stream and is killed (SIGKILL); the
    second, on the same store, restores the last snapshot, handles again exactly the
    items after it (in order, before the rest) and ends with the exact count and sum.
    With ``acks="lost"`` the first never acknowledged anything (as if killed after
    every save, before its acknowledgements left): Redis delivers everything again, and
    what the restored snapshot covers is left out by the marks stored with it."""
    script, db = tmp_path / "count.py", tmp_path / "state.db"
    script.write_text(SCRIPT)
    graph = f"rcount-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}

    def launch(role: str, stuck_at: int, log: Path, acks: str = "kept") -> subprocess.Popen[str]:
        args = [str(db), redis_server.url, graph, role, str(ITEMS), str(stuck_at), str(log), acks]
        process = subprocess.Popen(
            [sys.executable, str(script), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    first_log, second_log = tmp_path / "first.txt", tmp_path / "second.txt"
    producer = launch("numbers", -1, tmp_path / "unused.txt")
    first = launch("counter", STUCK_AT, first_log, acks)
    wait_for(lambda: STUCK_AT in handled(first_log))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    at_kill = saved(db, graph)
    assert at_kill is not None
    assert at_kill["count"] <= STUCK_AT
    if acks == "kept":
        # Entries handled whole since the snapshot had their delivery count set back
        # to none: handling them again after the rollback is no attempt towards
        # max_deliveries. The one under way (and any read after it) counts one.
        counts = deliveries(redis_server.url, graph)
        assert counts == sorted(counts)
        assert set(counts) <= {0, 1}
        assert counts[-1] == 1

    second = launch("counter", -1, second_log)
    for process in (producer, second):
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    # Exactly the items after the snapshot, in order, before anything new.
    assert handled(second_log) == list(range(at_kill["count"], ITEMS))
    assert handled(first_log) == list(range(STUCK_AT + 1))
    assert saved(db, graph) == {"count": ITEMS, "total": ITEMS * (ITEMS - 1) // 2}
