"""The lease and the held entries are kept from a thread of their own: a synchronous hook
that blocks the loop longer than ``claim_idle`` loses neither; a killed holder's lease
still lapses; a released lease wakes its standby at once. Real processes, real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import trio
from processes import wait_for
from redis_server import RedisServer

CHECKOUT = Path(__file__).resolve().parent.parent

PLANT = """
import os
import time
from typing import ClassVar

import actorflow as af


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self):
        return (af.Data(fields={"n": n}) for n in range(self.count))


class Slow(af.Sink):
    \"\"\"A plain synchronous hook that blocks the loop for `delay` seconds per item.\"\"\"

    inputs: ClassVar = {"in": af.Data}

    def __init__(self, path: str, delay: float) -> None:
        self.delay = delay
        self.path = path
        self.file = open(path, "a", buffering=1)

    def validate(self) -> None:
        with open(self.path + ".ready", "a") as ready:
            ready.write(f"{os.getpid()}\\n")

    def consume(self, data: af.Data) -> None:
        time.sleep(self.delay)
        self.file.write(f"{os.getpid()} {data.fields['n']}\\n")
"""


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    (tmp_path / "plant.py").write_text(PLANT)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.actorflow.modules]\nnumbers = "plant:Numbers"\nslow = "plant:Slow"\n'
    )
    return tmp_path


def write_graph(
    plant: Path, url: str, *, count: int, delay: float, remote: str, shared: bool = False
) -> str:
    """numbers -> slow over a remote link; the graph's name."""
    name = uuid.uuid4().hex[:8]
    text = f"""
        [graph]
        name = "{name}"
        [settings]
        remote_url = "{url}"
        [modules.numbers]
        module = "numbers"
        config = {{ count = {count} }}
        [modules.slow]
        module = "slow"
        config = {{ path = "{plant / "journal.txt"}", delay = {delay} }}
        shared = {str(shared).lower()}
        [[links]]
        from = "numbers"
        to = "slow"
        remote = {{ {remote} }}
        """
    (plant / "graph.toml").write_text(textwrap.dedent(text))
    return name


def start(plant: Path, only: str, log: str, *options: str) -> subprocess.Popen[str]:
    """`actorflow run graph.toml --only ONLY`, its output in ``log`` (a file, read while
    it runs)."""
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    run = ["run", "graph.toml", "--no-view", "--only", only, *options]
    with (plant / log).open("w") as out:  # the child has its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "actorflow", *run],
            cwd=plant,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def key_owner(url: str, key: str) -> str | None:
    async def read() -> str | None:
        import coredis

        async with coredis.Redis.from_url(url) as client:
            owner = await client.get(key)
        return owner.decode() if owner is not None else None

    return trio.run(read)


def lease_owner(url: str, name: str) -> str | None:
    return key_owner(url, f"actorflow:{name}:numbers.out>slow.in:lease")


def holds(owner: str | None, process: subprocess.Popen[str]) -> bool:
    """Whether a claim by ``owner`` (``host:pid:...``) is ``process``'s."""
    return (owner or "").split(":")[1:2] == [str(process.pid)]


def owned_by(url: str, name: str, process: subprocess.Popen[str]) -> bool:
    """Whether ``process`` holds the lease."""
    return holds(lease_owner(url, name), process)


def handled(plant: Path) -> list[tuple[int, int]]:
    path = plant / "journal.txt"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [(int(pid), int(n)) for pid, n in (line.split() for line in lines if line)]


def holder_and_standby(
    plant: Path, url: str, name: str, started: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    holder = start(plant, "slow", "holder.log")
    started.append(holder)
    wait_for(lambda: owned_by(url, name, holder))
    standby = start(plant, "slow", "standby.log")
    started.append(standby)
    wait_for(lambda: "remote.standby" in (plant / "standby.log").read_text())
    return holder, standby


def test_a_sync_hook_slower_than_claim_idle_keeps_the_lease_and_nothing_is_handled_twice(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """Each item blocks the loop for 1.5 s, longer than the 1 s lease: the lease used to
    lapse on every item, the standby took over and items were handled twice."""
    count = 6
    name = write_graph(
        plant, redis_server.url, count=count, delay=1.5, remote="batch = 2, claim_idle = 1"
    )
    holder, standby = holder_and_standby(plant, redis_server.url, name, started)
    producer = start(plant, "numbers", "producer.log")
    started.append(producer)
    assert producer.wait(timeout=50) == 0
    assert holder.wait(timeout=50) == 0, (plant / "holder.log").read_text()
    seen = Counter(n for _, n in handled(plant))
    assert seen == Counter(range(count))  # each once
    assert {pid for pid, _ in handled(plant)} == {holder.pid}
    log = (plant / "holder.log").read_text()
    assert "lost its lease" not in log
    assert "lease_renewed" not in log  # it never lapsed
    assert "remote.loop_blocked" in log  # and the stall was said
    assert standby.poll() is None  # still waiting: it never took over


def test_a_released_lease_wakes_the_standby_at_once(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """SIGTERM releases the lease; the standby, which would look again only every
    claim_idle / 3 (20 s here), is woken by the release and takes it within seconds."""
    name = write_graph(
        plant, redis_server.url, count=0, delay=0, remote="batch = 2, claim_idle = 60"
    )
    holder, standby = holder_and_standby(plant, redis_server.url, name, started)
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=30)
    released = time.monotonic()
    wait_for(lambda: owned_by(redis_server.url, name, standby), seconds=15)
    assert time.monotonic() - released < 5


def test_a_killed_holders_lease_still_lapses_after_claim_idle(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """The keeper thread dies with its process: SIGKILL lets the lease lapse and the
    standby takes over (and handles what the holder had in hand)."""
    count = 4
    name = write_graph(
        plant, redis_server.url, count=count, delay=0.5, remote="batch = 1, claim_idle = 1"
    )
    holder, standby = holder_and_standby(plant, redis_server.url, name, started)
    producer = start(plant, "numbers", "producer.log")
    started.append(producer)
    wait_for(lambda: handled(plant))
    holder.kill()
    killed = time.monotonic()
    wait_for(lambda: owned_by(redis_server.url, name, standby))
    assert time.monotonic() - killed < 10
    assert producer.wait(timeout=40) == 0
    assert standby.wait(timeout=40) == 0, (plant / "standby.log").read_text()
    assert {n for _, n in handled(plant)} == set(range(count))


def test_a_second_producer_of_a_stream_is_refused_naming_the_stream(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """Two producers used to break the run silently (the first's end ended the consumer,
    the second waited for room for ever); now the second fails at once, in one line."""
    name = write_graph(
        plant, redis_server.url, count=1000, delay=0, remote="batch = 5, claim_idle = 1"
    )
    first = start(plant, "numbers", "first.log")  # no consumer: it waits at the bound
    started.append(first)
    stream = f"actorflow:{name}:numbers.out>slow.in"
    wait_for(lambda: key_exists(redis_server.url, f"{stream}:producer:lease"))
    second = start(plant, "numbers", "second.log")
    started.append(second)
    assert second.wait(timeout=30) != 0
    log = (plant / "second.log").read_text()
    assert f"stream {stream!r} already has a producer" in log
    assert "Traceback" not in log
    assert first.poll() is None  # the first goes on


def test_a_producer_restarted_after_a_kill_takes_over_at_once(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """A service manager restarts a producer SIGKILLed a moment ago: its claim names a
    process of this machine that has ended, so the new one takes over at once (with
    claim_idle = 60 it used to be refused for a minute)."""
    name = write_graph(
        plant, redis_server.url, count=1000, delay=0, remote="batch = 5, claim_idle = 60"
    )
    first = start(plant, "numbers", "first.log")  # no consumer: it waits at the bound
    started.append(first)
    stream = f"actorflow:{name}:numbers.out>slow.in"
    wait_for(lambda: key_exists(redis_server.url, f"{stream}:producer:lease"))
    first.kill()
    first.wait()
    assert key_exists(redis_server.url, f"{stream}:producer:lease")  # left behind
    second = start(plant, "numbers", "second.log")
    started.append(second)
    wait_for(lambda: holds(key_owner(redis_server.url, f"{stream}:producer:lease"), second))
    assert second.poll() is None, (plant / "second.log").read_text()


def key_exists(url: str, key: str) -> bool:
    async def read() -> bool:
        import coredis

        async with coredis.Redis.from_url(url) as client:
            return bool(await client.exists([key]))

    return trio.run(read)


def test_a_shared_instance_whose_sync_hook_outlasts_claim_idle_loses_no_entry_to_a_peer(
    plant: Path, redis_server: RedisServer, started: list[subprocess.Popen[str]]
) -> None:
    """Two instances of a shared stage, one blocking its loop 1.5 s per item with
    claim_idle = 1, the other quick (so it looks for idle entries to claim): the slow
    one's entries stay marked busy, so the quick one never claims them (each claim
    would be an item handled twice)."""
    count = 8
    write_graph(
        plant,
        redis_server.url,
        count=count,
        delay=1.5,
        remote="batch = 1, claim_idle = 1",
        shared=True,
    )
    first = start(plant, "slow", "first.log")
    second = start(plant, "slow", "second.log", "--set", "modules.slow.config.delay=0")
    started += [first, second]
    # Both must be up before the run starts: one that joins after the run has ended
    # waits for the next (a loaded machine starts processes late).
    ready = plant / "journal.txt.ready"
    wait_for(lambda: ready.exists() and len(ready.read_text().split()) == 2)
    producer = start(plant, "numbers", "producer.log")
    started.append(producer)
    assert producer.wait(timeout=50) == 0
    for instance, log in ((first, "first.log"), (second, "second.log")):
        assert instance.wait(timeout=50) == 0, (plant / log).read_text()
        assert "remote.claimed" not in (plant / log).read_text()
    assert Counter(n for _, n in handled(plant)) == Counter(range(count))
