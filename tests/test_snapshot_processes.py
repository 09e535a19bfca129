"""A process killed with SIGKILL and started again on the same SQLite store resumes from
its module's last snapshot; with its position in the snapshot and a source that replays,
the count comes out exactly once per item."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from processes import wait_for

import actorflow as af
from actorflow._snapshots import namespace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHECKOUT = Path(af.__file__).resolve().parent.parent

ITEMS = 3000

SCRIPT = """
import json
import sys
from pathlib import Path

import trio

import actorflow as af


class Numbers(af.Source):
    '''Replays 0, 1, 2... from the start every run (a file, a topic from offset 0).'''

    def __init__(self, count):
        self.count = count

    async def start(self):
        for n in range(self.count):
            await self.emit(n)
            await trio.sleep(0.001)


class Tally(af.Sink):
    '''Counts each item once: its snapshot holds the count and the position reached.'''

    def __init__(self, marks):
        self.marks = Path(marks)
        self.count, self.position = 0, -1

    def consume(self, n):
        if n <= self.position:
            return  # counted before the crash: its effect is in the snapshot
        self.count, self.position = self.count + 1, n

    def snapshot(self):
        return {"count": self.count, "position": self.position}

    def restore(self, value):
        self.count, self.position = value["count"], value["position"]
        with (self.marks / "restored").open("a") as f:
            f.write(json.dumps(value) + "\\n")

    def cleanup(self):
        (self.marks / "final").write_text(json.dumps(self.snapshot()))


graph = af.Graph("tally")
graph.add("numbers", Numbers, count=int(sys.argv[2]))
graph.add("tally", Tally, marks=sys.argv[3])
graph.link("numbers", "tally")
af.run(graph, store=af.SQLiteStore(sys.argv[1]), settings=af.Settings(snapshot_interval=0.02))
"""


def saved(path: Path) -> dict[str, int] | None:
    """The tally's snapshot in the SQLite file, read as another process would."""

    async def read() -> dict[str, int] | None:
        store = af.SQLiteStore(path)
        try:
            value: dict[str, int] | None = await store.get(namespace("tally"), "tally", None)
            return value
        finally:
            await store.aclose()

    return trio.run(read)


def test_a_process_killed_with_sigkill_resumes_from_its_snapshot(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """SIGKILL mid-stream, then the same program on the same store: the tally restores
    its last snapshot and ends with every item counted exactly once."""
    script, db = tmp_path / "tally.py", tmp_path / "state.db"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), str(db), str(ITEMS), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}

    def launch() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(process)
        return process

    first = launch()
    wait_for(lambda: db.exists() and (saved(db) or {}).get("count", 0) >= 200)
    assert first.poll() is None, "the first run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    at_kill = saved(db)
    assert at_kill is not None
    assert 200 <= at_kill["count"] < ITEMS
    assert not (tmp_path / "final").exists()  # killed: no cleanup ran

    second = launch()
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    restored = [json.loads(line) for line in (tmp_path / "restored").read_text().splitlines()]
    assert restored == [at_kill]
    final = json.loads((tmp_path / "final").read_text())
    assert final == {"count": ITEMS, "position": ITEMS - 1}
    assert saved(db) == final
