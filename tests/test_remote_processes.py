"""Remote links between OS processes, as users run them: `actorflow run FILE --only ...`
on each side, a real redis-server between them, processes killed and started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import uuid
from collections import Counter
from pathlib import Path

import pytest
import trio
from processes import wait_for
from redis_server import RedisServer

CHECKOUT = Path(__file__).resolve().parent.parent

PLANT = '''
import os
from typing import ClassVar

import trio

import actorflow as af


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self):
        return (af.Data(fields={"n": n}) for n in range(self.count))


class Work(af.Processor):
    """A stage that takes a while per item and says which process did it."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def process(self, data: af.Data) -> af.Data:
        await trio.sleep(self.delay)
        return data.with_fields(worker=os.getpid())


class Journal(af.Sink):
    """Appends one line per item handled: `<pid> <n>`."""

    inputs: ClassVar = {"in": af.Data}

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.delay = delay
        self.file = open(path, "a", buffering=1)

    async def consume(self, data: af.Data) -> None:
        if self.delay:
            await trio.sleep(self.delay)
        worker = data.fields.get("worker", os.getpid())
        self.file.write(f"{worker} {data.fields['n']}\\n")

    def cleanup(self) -> None:
        self.file.close()
'''


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    (tmp_path / "plant.py").write_text(PLANT)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.actorflow.modules]
            numbers = "plant:Numbers"
            work = "plant:Work"
            journal = "plant:Journal"
            """
        )
    )
    return tmp_path


def write_graph(plant: Path, url: str, count: int, rest: str) -> None:
    """graph.toml: a graph of its own name on the server at ``url``, with a source of
    ``count`` items, and ``rest``."""
    head = f"""
        [graph]
        name = "{uuid.uuid4().hex[:8]}"

        [settings]
        remote_url = "{url}"

        [modules.numbers]
        module = "numbers"
        config = {{ count = {count} }}
        """
    (plant / "graph.toml").write_text(textwrap.dedent(head) + textwrap.dedent(rest))


def start(plant: Path, graph: str, *only: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    return subprocess.Popen(
        [sys.executable, "-m", "actorflow", "run", graph, "--no-view", "--only", ",".join(only)],
        cwd=plant,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journal(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [
        (int(pid), int(n))
        for pid, n in (line.split() for line in path.read_text().splitlines() if line)
    ]


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, f"exit {process.returncode}:\n{out}\n{err}"
    return out


REMOTE = "claim_idle = 0.5, batch = 20"
PATIENT_REMOTE = "claim_idle = 60, batch = 10"
"""A lease that only a release (not its expiry) can free within a test."""


def write_journal_graph(
    plant: Path, url: str, count: int, *, delay: float, buffer: int, remote: str
) -> Path:
    """numbers -> journal over a remote link; the journal file's path."""
    log = plant / "journal.txt"
    write_graph(
        plant,
        url,
        count,
        f"""
        [modules.journal]
        module = "journal"
        config = {{ path = "{log}", delay = {delay} }}

        [[links]]
        from = "numbers"
        to = "journal"
        buffer = {buffer}
        remote = {{ {remote} }}
        """,
    )
    return log


def test_a_consumer_process_killed_mid_stream_is_replaced_without_loss(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """Producer and consumer in two processes; the consumer is killed (SIGKILL) while
    it holds unacknowledged items; a new consumer process takes over: every item is
    handled at least once, and only the ones in flight at the kill may come twice."""
    count = 600
    log = write_journal_graph(
        plant, redis_server.url, count, delay=0.002, buffer=100, remote=REMOTE
    )
    producer = start(plant, "graph.toml", "numbers")
    first = start(plant, "graph.toml", "journal")
    started += [producer, first]
    wait_for(lambda: len(journal(log)) >= 150)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    handled_by_first = len(journal(log))
    second = start(plant, "graph.toml", "journal")
    started.append(second)
    finish(producer)
    finish(second)
    seen = Counter(n for _, n in journal(log))
    assert set(seen) == set(range(count))
    duplicates = sum(seen.values()) - count
    # Only what the first had handled but not yet acknowledged can come twice: at most
    # the batches it had in hand.
    assert duplicates <= 2 * 20
    assert handled_by_first < count


def test_a_shared_stage_splits_its_items_and_rebalances(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """The same graph file on three processes: one runs the source, the others the
    shared stage. The stage's items are split between its instances; one instance is
    stopped and another started mid-stream; every item is handled, none lost."""
    log = plant / "journal.txt"
    count = 400
    write_graph(
        plant,
        redis_server.url,
        count,
        f"""
        [modules.work]
        module = "work"
        config = {{ delay = 0.005 }}
        shared = true

        [modules.journal]
        module = "journal"
        config = {{ path = "{log}" }}

        [[links]]
        from = "numbers"
        to = "work"
        buffer = 200
        remote = {{ claim_idle = 0.5, batch = 5 }}

        [[links]]
        from = "work"
        to = "journal"
        """,
    )
    producer = start(plant, "graph.toml", "numbers")
    stage_a = start(plant, "graph.toml", "work", "journal")
    stage_b = start(plant, "graph.toml", "work", "journal")
    started += [producer, stage_a, stage_b]
    wait_for(lambda: len({pid for pid, _ in journal(log)}) == 2 and len(journal(log)) >= 60)
    stage_a.send_signal(signal.SIGKILL)  # a machine goes away
    stage_a.communicate()
    stage_c = start(plant, "graph.toml", "work", "journal")  # another one comes
    started.append(stage_c)
    finish(producer)
    finish(stage_b)
    finish(stage_c)
    entries = journal(log)
    by_worker = Counter(pid for pid, _ in entries)
    assert {n for _, n in entries} == set(range(count))
    assert by_worker[stage_a.pid] > 0
    assert by_worker[stage_b.pid] > 0
    assert by_worker[stage_c.pid] > 0


def test_sigterm_on_a_consumer_gives_up_its_lease_so_a_replacement_takes_over_at_once(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """SIGTERM (docker stop, systemd) drains the consumer, runs its cleanups, releases
    its lease and leaves nothing handled twice: a replacement started at once takes the
    stream over long before ``claim_idle`` (60 s here) would have let it, and gets every
    item the first did not handle."""
    count = 400
    log = write_journal_graph(
        plant, redis_server.url, count, delay=0.005, buffer=50, remote=PATIENT_REMOTE
    )
    producer = start(plant, "graph.toml", "numbers")
    first = start(plant, "graph.toml", "journal")
    started += [producer, first]
    wait_for(lambda: len(journal(log)) >= 60)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 143, err
    assert "terminated (SIGTERM): stopped in order" in err
    assert "Traceback" not in err
    assert "journal" in out  # the summary printed
    handled_by_first = len(journal(log))
    began = time.monotonic()
    second = start(plant, "graph.toml", "journal")
    started.append(second)
    finish(producer)
    finish(second)
    assert time.monotonic() - began < 30  # not the 60 s a held lease would cost
    seen = Counter(n for _, n in journal(log))
    assert set(seen) == set(range(count))
    assert sum(seen.values()) == count  # drained and acknowledged: nothing twice
    assert handled_by_first < count


ACTORFLOW = (sys.executable, "-m", "actorflow")


def stream_length(url: str, key: str) -> int:
    """XLEN of ``key``, read by a client of the test's own."""

    async def read() -> int:
        import coredis

        async with coredis.Redis.from_url(url) as client:
            return await client.xlen(key)

    return trio.run(read)


@pytest.mark.parametrize("second_signal", [False, True])
def test_a_producer_whose_consumer_is_down_ends_on_sigterm_within_its_drain_timeout(
    plant: Path,
    redis_server: RedisServer,
    started: list[subprocess.Popen[str]],
    second_signal: bool,
) -> None:
    """The stream is full and nobody consumes it: SIGTERM stops the source, the pump
    tries to hand over what it holds until the drain timeout, then the run ends and
    counts it as dropped (it used to wait for room for ever, deaf to a second signal
    too, because the system counted itself ended once its actors were); a second
    signal cancels at once."""
    write_journal_graph(
        plant, redis_server.url, 100_000, delay=0, buffer=20, remote=PATIENT_REMOTE
    )
    graph = tomllib.loads((plant / "graph.toml").read_text())["graph"]["name"]
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    producer = subprocess.Popen(
        [*ACTORFLOW, "run", "graph.toml", "--no-view", "--only", "numbers", "--drain", "2"],
        cwd=plant,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(producer)
    key = f"actorflow:{graph}:numbers.out>journal.in"
    wait_for(lambda: stream_length(redis_server.url, key) >= 2)  # full: 20 items, 2 entries
    began = time.monotonic()
    producer.send_signal(signal.SIGTERM)
    if second_signal:
        wait_for(lambda: time.monotonic() - began > 0.3)  # the stop under way
        producer.send_signal(signal.SIGINT)
    _, err = producer.communicate(timeout=30)
    took = time.monotonic() - began
    assert producer.returncode == 143, err  # the first signal names the end
    assert "Traceback" not in err
    assert "cancelled, dropped=" in err
    assert took < (5 if second_signal else 2 + 5 + 5)  # drain 2 s (the kill after 5 s)
