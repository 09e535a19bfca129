"""Replays of a remote-fed module with ``snapshot()`` after its process dies, in real
processes on a real redis-server (the style of ``test_remote_state_processes.py``):

- the marks stored beside a snapshot are found again in a new process whatever the
  state holds (a set of strings, whose encoding order changes with ``PYTHONHASHSEED``)
  and whatever ``restore()`` does to the value it is given (pops a key): otherwise the
  entries the snapshot covers are handled again and counted twice;
- a process killed again and again before it handles anything of a long replay counts a
  delivery only of the entries it fed into its link, not of the whole backlog it took
  over: the backlog is not dead-lettered as undeliverable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
import trio
from redis_server import RedisServer
from test_remote_state_processes import handled, wait_for

import actorflow as af
from actorflow._snapshots import namespace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHECKOUT = Path(af.__file__).resolve().parent.parent

SCRIPT = """
import json
import math
import sys

import trio

import actorflow as af

db, url, name, role, count, stuck_at, log, acks, kind, max_deliveries = sys.argv[1:11]

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
    '''Counts the items and keeps what it saw: a set of strings (kind "set", its
    encoding order differs from process to process) or a list with a version key
    restore() pops (kind "pop").'''

    def __init__(self):
        self.count = 0
        self.seen = set() if kind == "set" else []
        self.log = open(log, "a", buffering=1)

    async def consume(self, n):
        self.log.write(f"{n}\\n")
        if n == int(stuck_at):
            await trio.sleep_forever()  # the test kills the process here
        self.count += 1
        if kind == "set":
            self.seen.add(f"id-{n}")
        else:
            self.seen.append(n)

    def snapshot(self):
        return {"version": 1, "count": self.count, "seen": self.seen}

    def restore(self, value):
        if kind == "pop":
            value.pop("version")
        self.count, self.seen = value["count"], value["seen"]


graph = af.Graph(name)
graph.add("numbers", Numbers)
graph.add("counter", Counter)
remote = af.Remote(batch=10, claim_idle=1.0, max_deliveries=int(max_deliveries))
graph.link("numbers", "counter", buffer=10 * int(count), remote=remote)
settings = af.Settings(remote_url=url, snapshot_interval=math.inf)
status = af.run(graph, settings, store=af.SQLiteStore(db), only={role})
print(json.dumps(status.dropped_at().get("counter", {})))
"""


class Runs:
    """Starts the producer and consumer processes of one graph on one SQLite store."""

    def __init__(
        self,
        tmp_path: Path,
        url: str,
        started: list[subprocess.Popen[str]],
        *,
        items: int,
        kind: str = "list",
        max_deliveries: int = 5,
    ) -> None:
        self.script, self.db = tmp_path / "count.py", tmp_path / "state.db"
        self.script.write_text(SCRIPT)
        self.tmp_path, self.url, self.started = tmp_path, url, started
        self.graph = f"rreplay-{uuid.uuid4().hex[:8]}"
        self.items, self.kind, self.max_deliveries = items, kind, max_deliveries

    def launch(
        self, role: str, log: str, *, stuck_at: int = -1, acks: str = "kept", seed: str = "0"
    ) -> subprocess.Popen[str]:
        args = [str(self.db), self.url, self.graph, role, str(self.items), str(stuck_at)]
        args += [str(self.tmp_path / log), acks, self.kind, str(self.max_deliveries)]
        env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "PYTHONHASHSEED": seed}
        process = subprocess.Popen(
            [sys.executable, str(self.script), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def log(self, name: str) -> list[int]:
        return handled(self.tmp_path / name)

    def kill_once_at(self, process: subprocess.Popen[str], log: str, item: int) -> None:
        """SIGKILL ``process`` once its module has begun to handle ``item``."""
        wait_for(lambda: item in self.log(log))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

    def finish(self, *processes: subprocess.Popen[str]) -> dict[str, int]:
        """Wait for ``processes`` to end well; the counter's drops in the last one."""
        out = ""
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
        drops: dict[str, int] = json.loads(out.splitlines()[-1])
        return drops

    def saved(self) -> dict[str, object] | None:
        """The counter's snapshot in the SQLite file, read as another process would."""

        async def read() -> dict[str, object] | None:
            store = af.SQLiteStore(self.db)
            try:
                value: dict[str, object] | None = await store.get(
                    namespace(self.graph), "counter", None
                )
                return value
            finally:
                await store.aclose()

        return trio.run(read)


def seen_items(value: dict[str, object]) -> list[int]:
    """The items a saved state saw (a set of ``id-<n>`` strings, or a list of ints)."""
    seen = value["seen"]
    assert isinstance(seen, set | list)
    return sorted(int(str(item).removeprefix("id-")) for item in seen)


def digests_in_two_seeds(value: str) -> list[list[str]]:
    """``_stable_digest`` and the plain encoding (hex) of the value the expression
    ``value`` makes, in two processes of different ``PYTHONHASHSEED``."""
    code = (
        "import actorflow as af\n"
        "from actorflow._data import encode\n"
        "from actorflow._snapshots import _stable_digest\n"
        f"value = {value}\n"
        "print(_stable_digest(value).hex(), encode(value).hex())\n"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    return outputs


def test_stable_digest_is_the_same_in_processes_of_different_hash_seeds() -> None:
    """The digest that finds a snapshot's marks, of a value holding sets of strings at
    several depths, is the same in two processes whose string hashing differs (their
    plain encodings of it, checked too, differ: the seeds do change the sets' order)."""
    (digest_1, encoding_1), (digest_2, encoding_2) = digests_in_two_seeds(
        "{'seen': {f'id-{n}' for n in range(40)}, 'n': 3,"
        " 'nested': [frozenset({'a', 'b', 'c', 'd'}), ({'x': {'p', 'q', 'r'}}, 1)]}"
    )
    assert encoding_1 != encoding_2
    assert digest_1 == digest_2


@pytest.mark.parametrize(
    "value",
    [
        "{'window': [af.Data({'tags': {f't{n}' for n in range(20)}}, id='d1', timestamp=1.0)]}",
        "{frozenset(f'k{n}' for n in range(12)): 1}",
    ],
    ids=["set-in-data", "frozenset-key"],
)
def test_stable_digest_of_sets_inside_data_and_dict_keys(value: str) -> None:
    """The codec stores these too (a window of ``Data`` items is a common state)."""
    (digest_1, encoding_1), (digest_2, encoding_2) = digests_in_two_seeds(value)
    assert encoding_1 != encoding_2
    assert digest_1 == digest_2


ITEMS = 600
STUCK_AT = 333


@pytest.mark.parametrize("kind", ["set", "pop"])
def test_marks_are_found_whatever_the_state_holds_or_restore_does(
    tmp_path: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]], kind: str
) -> None:
    """The first consumer process never acknowledges anything (as if killed after every
    save, before its acknowledgements left) and is killed with SIGKILL in mid-stream;
    the second, started with another hash seed, restores the last snapshot and leaves
    out what the marks stored with it cover, though the state holds a set of strings
    (``kind="set"``) or its ``restore()`` pops a key of the value (``kind="pop"``): it
    handles exactly the items after the snapshot, and each item is counted once."""
    runs = Runs(tmp_path, redis_server.url, started, items=ITEMS, kind=kind)
    producer = runs.launch("numbers", "unused.txt")
    first = runs.launch("counter", "first.txt", stuck_at=STUCK_AT, acks="lost", seed="1")
    runs.kill_once_at(first, "first.txt", STUCK_AT)
    at_kill = runs.saved()
    assert at_kill is not None
    count = at_kill["count"]
    assert isinstance(count, int)
    assert 0 < count <= STUCK_AT
    second = runs.launch("counter", "second.txt", seed="2")
    runs.finish(producer, second)
    assert runs.log("second.txt") == list(range(count, ITEMS))
    final = runs.saved()
    assert final is not None
    assert final["count"] == ITEMS
    assert seen_items(final) == list(range(ITEMS))


CRASH_ITEMS = 400
CRASH_STUCK_AT = 200
BATCH = 10


@pytest.mark.parametrize(("max_deliveries", "kills"), [(2, 2), (3, 2)])
def test_a_crash_loop_early_in_a_replay_does_not_use_up_the_backlogs_deliveries(
    tmp_path: Path,
    redis_server: RedisServer,
    started: list[subprocess.Popen[str]],
    max_deliveries: int,
    kills: int,
) -> None:
    """The first consumer process handles 200 items, held for a snapshot that never
    comes (its only one is at its start), and is killed. Then ``kills`` processes each
    take the whole backlog over and are killed while handling its first item, before
    any item is handled whole. Only the entries fed into the consumer's link (its
    buffer holds ``2 * batch`` items) had a delivery counted: the last process
    dead-letters at most those (when ``kills`` reaches ``max_deliveries``), never the
    backlog behind them, and counts every other item exactly once."""
    runs = Runs(
        tmp_path, redis_server.url, started, items=CRASH_ITEMS, max_deliveries=max_deliveries
    )
    producer = runs.launch("numbers", "unused.txt")
    first = runs.launch("counter", "run-0.txt", stuck_at=CRASH_STUCK_AT)
    runs.kill_once_at(first, "run-0.txt", CRASH_STUCK_AT)
    assert runs.saved() == {"version": 1, "count": 0, "seen": []}
    for kill in range(1, kills + 1):
        # Each takes the backlog over and hangs on item 0, the oldest held.
        stalled = runs.launch("counter", f"run-{kill}.txt", stuck_at=0)
        runs.kill_once_at(stalled, f"run-{kill}.txt", 0)
        assert runs.log(f"run-{kill}.txt") == [0]
    last = runs.launch("counter", "last.txt")
    drops = runs.finish(producer, last)
    final = runs.saved()
    assert final is not None
    seen = seen_items(final)
    assert final["count"] == len(seen)
    assert max(Counter(seen).values()) == 1  # nothing counted twice
    missing = sorted(set(range(CRASH_ITEMS)) - set(seen))
    assert drops == ({"undeliverable": len(missing)} if missing else {})
    if kills < max_deliveries:
        assert missing == []
    else:
        # The entries fed in each crash (up to the link's 2 * batch items, the last
        # such entry whole), the oldest ones; nothing behind them.
        assert missing == list(range(len(missing)))
        assert 0 < len(missing) < 3 * BATCH
