"""`max_deliveries` bounds the deliveries of an entry, handled or not: an item that
kills every process that handles it (SIGKILL, before any acknowledgement) is handled at
most `max_deliveries` times, then given up as `undeliverable` and never handled again;
the items after it go on. Real processes, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import pytest
from redis_server import RedisServer

CHECKOUT = Path(__file__).resolve().parent.parent

PLANT = """
import os
import signal
from typing import ClassVar

import actorflow as af


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self):
        return (af.Data(fields={"n": n}) for n in range(self.count))


class Killer(af.Sink):
    \"\"\"Notes each item, and kills its own process on item `die_on`.\"\"\"

    inputs: ClassVar = {"in": af.Data}

    def __init__(self, path: str, die_on: int) -> None:
        self.die_on = die_on
        self.file = open(path, "a", buffering=1)

    def consume(self, data: af.Data) -> None:
        self.file.write(f"{data.fields['n']}\\n")
        if data.fields["n"] == self.die_on:
            os.kill(os.getpid(), signal.SIGKILL)
"""

MAX_DELIVERIES = 3


@pytest.fixture
def plant(tmp_path: Path, redis_server: RedisServer) -> Path:
    (tmp_path / "plant.py").write_text(PLANT)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.actorflow.modules]\nnumbers = "plant:Numbers"\nkiller = "plant:Killer"\n'
    )
    graph = f"""
        [graph]
        name = "{uuid.uuid4().hex[:8]}"
        [settings]
        remote_url = "{redis_server.url}"
        [modules.numbers]
        module = "numbers"
        config = {{ count = 10 }}
        [modules.killer]
        module = "killer"
        config = {{ path = "{tmp_path / "handled.txt"}", die_on = 3 }}
        [[links]]
        from = "numbers"
        to = "killer"
        buffer = 4
        remote = {{ batch = 2, claim_idle = 1, max_deliveries = {MAX_DELIVERIES} }}
        """
    (tmp_path / "graph.toml").write_text(textwrap.dedent(graph))
    return tmp_path


def run(plant: Path, only: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "graph.toml", "--no-view", "--only", only],
        cwd=plant,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        capture_output=True,
        text=True,
        timeout=40,
    )


def test_an_item_that_kills_its_consumer_is_handled_at_most_max_deliveries_times(
    plant: Path,
) -> None:
    producer = subprocess.Popen(  # waits at its bound (two entries) until consumed
        [sys.executable, "-m", "actorflow", "run", "graph.toml", "--no-view", "--only", "numbers"],
        cwd=plant,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        finished = consume_until_done(plant)
        assert producer.wait(timeout=40) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    seen = Counter(int(n) for n in (plant / "handled.txt").read_text().split())
    assert seen[3] == MAX_DELIVERIES  # handled on each delivery, not on the next
    assert max(seen.values()) <= MAX_DELIVERIES
    assert set(seen) == set(range(10))  # the rest went on
    assert all(seen[n] == 1 for n in range(4, 10))
    assert "undeliverable" in finished.stdout + finished.stderr


def consume_until_done(plant: Path) -> subprocess.CompletedProcess[str]:
    """Run the consumer again each time its module kills it; the run that ends."""
    for _ in range(MAX_DELIVERIES + 3):
        done = run(plant, "killer")
        if done.returncode == 0:
            return done
        assert done.returncode == -9, done.stderr  # killed by its module
    raise AssertionError("the killing entry was never given up")
