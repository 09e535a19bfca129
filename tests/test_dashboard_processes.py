"""One view of a graph spread over processes: ``actorflow run --only`` in two processes
joined by a remote link over a real redis-server, the dashboard served by one of them
showing the actors of both, each with the process it runs in."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
from redis_server import RedisServer

from actorflow._dashboard._peers import (
    FINAL_TTL,
    TTL,
    beacon_key,
    put_view,
    registry_key,
    status_key,
    views_of,
)
from actorflow._redis import connect

TESTS = Path(__file__).resolve().parent
CHECKOUT = TESTS.parent

T = TypeVar("T")


def start(url: str, graph: str, only: str, *more: str) -> subprocess.Popen[str]:
    """``actorflow run dashboard_graph:build_split --only ONLY`` against Redis at ``url``."""
    env = {**os.environ, "PYTHONPATH": f"{CHECKOUT}:{TESTS}", "DASH_GRAPH": graph}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "actorflow",
            "run",
            "dashboard_graph:build_split",
            "--set",
            f"remote_url={url}",
            "--only",
            only,
            "--no-view",
            *more,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def poll(condition: Callable[[], T | None], seconds: float = 30) -> T:
    """Ask until ``condition()`` gives something (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the processes")
        time.sleep(0.05)


@pytest.fixture
def split(redis_server: RedisServer) -> Iterator[dict[str, Any]]:
    """The producer (``sensor``) in one process; the consumers (``calibrate``, ``store``) in
    another, which serves the dashboard; both stopped (SIGTERM) at the end."""
    graph = f"dash-{uuid.uuid4().hex[:8]}"
    producer = start(redis_server.url, graph, "sensor")
    consumer = start(redis_server.url, graph, "calibrate,store", "--dashboard", "0")
    try:
        assert consumer.stderr is not None
        line = consumer.stderr.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        yield {
            "url": line.split(" ", 1)[1].strip(),
            "graph": graph,
            "redis": redis_server.url,
            "producer": producer,
            "consumer": consumer,
        }
    finally:
        for process in (producer, consumer):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (producer, consumer):
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung process
                process.kill()
                process.communicate()


def both_reported(url: str) -> Callable[[], dict[str, Any] | None]:
    def ask() -> dict[str, Any] | None:
        status: dict[str, Any] = httpx.get(url + "api/status", timeout=5).json()
        return status if {"sensor", "calibrate", "store"} <= set(status["actors"]) else None

    return ask


def test_the_dashboard_of_one_process_shows_the_actors_of_both(split: dict[str, Any]) -> None:
    """sensor runs in the producer's process, calibrate and store in the dashboard's; each is
    shown with its process, numbers that move, and the remote link with its fill."""
    status = poll(both_reported(split["url"]))
    producer, consumer = split["producer"].pid, split["consumer"].pid
    where = {name: actor["process"] for name, actor in status["actors"].items()}
    assert where["sensor"].endswith(f":{producer}")
    assert where["calibrate"].endswith(f":{consumer}")
    assert where["store"] == where["calibrate"]
    processes = status["processes"]
    assert len(processes) == 2
    assert processes[where["sensor"]]["here"] == ["sensor"]
    assert processes[where["calibrate"]]["local"]
    assert {"sensor.out -> calibrate.in", "calibrate.out -> store.in"} <= set(status["links"])
    first = status["actors"]["sensor"]["emitted"]

    def moved() -> int | None:
        now = poll(both_reported(split["url"]))["actors"]["sensor"]["emitted"]
        return now if now > first else None

    poll(moved)


def test_a_process_publishes_its_view_only_while_a_dashboard_watches(
    redis_server: RedisServer,
) -> None:
    """No beacon, no view written, while items flow; once a beacon is set (as a
    dashboard does), each process writes its view, with an expiry."""
    graph = f"dash-{uuid.uuid4().hex[:8]}"
    producer = start(redis_server.url, graph, "sensor")
    consumer = start(redis_server.url, graph, "calibrate,store")

    async def look(beacon: bool) -> dict[str, int]:
        async with connect(redis_server.url) as client:
            if beacon:
                await client.set(beacon_key(graph), b"1", ex=10)
            keys = [key async for key in client.scan_iter(match=f"actorflow:{graph}:*")]
            return {key.decode(): await client.ttl(key) for key in keys}

    try:
        stream = f"actorflow:{graph}:sensor.out>calibrate.in"
        before = poll(lambda: found if stream in (found := trio.run(look, False)) else None)
        assert not [key for key in before if key.startswith(status_key(graph, ""))]
        views = {status_key(graph, f"{platform.node()}:{p.pid}") for p in (producer, consumer)}
        after = poll(lambda: found if views <= set(found := trio.run(look, True)) else None)
        assert all(0 < after[key] <= TTL for key in views)
    finally:
        for process in (producer, consumer):
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)


def test_a_process_that_ends_leaves_its_last_view_for_a_minute(
    redis_server: RedisServer,
) -> None:
    """Stopped while a dashboard watches, each process writes how it ended, kept for
    FINAL_TTL seconds rather than the TTL of a running one."""
    graph = f"dash-{uuid.uuid4().hex[:8]}"
    processes = [
        start(redis_server.url, graph, "sensor"),
        start(redis_server.url, graph, "calibrate,store"),
    ]
    names = {f"{platform.node()}:{p.pid}" for p in processes}

    async def views() -> dict[str, tuple[str, int]]:
        async with connect(redis_server.url) as client:
            await client.set(beacon_key(graph), b"1", ex=60)
            found = {}
            for name in names:
                value = await client.get(status_key(graph, name))
                if value is not None:
                    found[name] = (
                        json.loads(value)["state"],
                        await client.ttl(status_key(graph, name)),
                    )
            return found

    try:
        poll(lambda: found if set(found := trio.run(views)) == names else None)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.communicate(timeout=30)
    last = trio.run(views)
    assert set(last) == names
    assert all(state in {"cancelled", "done"} for state, _ in last.values()), last
    assert all(TTL < ttl <= FINAL_TTL for _, ttl in last.values()), last


@pytest.mark.parametrize("name", ["etl[1]", "etl*", "etl?", "etl\\1"])
def test_a_graph_named_with_glob_characters_reads_its_own_views_only(
    redis_server: RedisServer, name: str
) -> None:
    """``etl[1]`` is not a pattern matching ``etl1``: each graph reads its own views."""
    tag = uuid.uuid4().hex[:6]
    graphs = [f"{name}-{tag}", f"etl1-{tag}", f"etlx-{tag}", f"etl*-{tag}"]

    async def publish_and_read() -> dict[str, set[str]]:
        async with connect(redis_server.url) as client:
            for graph in graphs:
                await put_view(client, graph, {"process": f"h:{graph}"}, TTL)
            return {graph: set(await views_of(client, graph)) for graph in graphs}

    found = trio.run(publish_and_read)
    assert all(found[graph] == {f"h:{graph}"} for graph in graphs), found


def test_reading_the_views_never_scans_and_forgets_expired_ones(
    redis_server: RedisServer,
) -> None:
    """One registry per graph: reading costs no SCAN of the keyspace; a process whose
    view has expired leaves the registry."""
    graph = f"dash-{uuid.uuid4().hex[:8]}"

    async def scans(client: Any) -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_scan", {}).get("calls", 0))

    async def check() -> None:
        async with connect(redis_server.url) as client:
            await put_view(client, graph, {"process": "h:1"}, TTL)
            await put_view(client, graph, {"process": "h:2"}, TTL)
            before = await scans(client)
            assert set(await views_of(client, graph)) == {"h:1", "h:2"}
            assert await scans(client) == before
            await client.delete([status_key(graph, "h:1")])  # as if it had expired
            assert set(await views_of(client, graph)) == {"h:2"}
            members = await client.smembers(registry_key(graph))
            assert members == {b"h:2"}
            assert 0 < await client.ttl(registry_key(graph)) <= FINAL_TTL + TTL

    trio.run(check)
