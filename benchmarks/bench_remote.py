"""A remote link (Redis Streams on loopback) against a local link: throughput and latency.

    python benchmarks/bench_remote.py --url redis://127.0.0.1:6379/0
    python benchmarks/bench_remote.py                # starts a redis-server of its own
    python benchmarks/bench_remote.py --messages 2000 --repeat 1   # smoke run

* **Throughput**: source -> sink, `--messages` small Data items, through a local link
  and through a remote link (both halves in this process, so the figure is the full
  round trip: pipelined XADD, batched XREADGROUP, XACK + XDEL), for a few batch sizes.
* **Latency**: one item at a time (the next is sent when the previous arrived), time
  from `emit` to `consume`, p50 and p99.

The client, not Redis, is the expected bottleneck: batching is what makes it fast.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import trio

import actorflow as af

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, find_redis_server


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self) -> Iterator[af.Data]:
        return (af.Data(fields={"n": n}) for n in range(self.count))


class Count(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def consume(self, data: af.Data) -> None:
        self.seen[0] += 1


def throughput(n: int, remote: af.Remote | None, buffer: int) -> float:
    seen = [0]
    graph = af.Graph(name=f"bench-{uuid.uuid4().hex[:8]}")
    graph.add("numbers", Numbers, count=n)
    graph.add("count", Count, seen=seen)
    graph.link("numbers", "count", remote=remote, buffer=buffer)
    began = time.perf_counter()
    af.run(graph)
    took = time.perf_counter() - began
    assert seen[0] == n, seen
    return n / took


class Ping(af.Source):
    outputs: ClassVar = {"out": float}

    def __init__(self, count: int, arrived: list[trio.Event]) -> None:
        self.count = count
        self.arrived = arrived

    async def start(self) -> None:
        for index in range(self.count):
            await self.emit(time.perf_counter())
            await self.arrived[index].wait()


class Pong(af.Sink):
    inputs: ClassVar = {"in": float}

    def __init__(self, latencies: list[float], arrived: list[trio.Event]) -> None:
        self.latencies = latencies
        self.arrived = arrived

    def consume(self, sent: float) -> None:
        self.latencies.append(time.perf_counter() - sent)
        self.arrived[len(self.latencies) - 1].set()


def latency(n: int, remote: af.Remote | None) -> list[float]:
    latencies: list[float] = []

    async def main() -> None:
        arrived = [trio.Event() for _ in range(n)]
        graph = af.Graph(name=f"bench-{uuid.uuid4().hex[:8]}")
        graph.add("ping", Ping, count=n, arrived=arrived)
        graph.add("pong", Pong, latencies=latencies, arrived=arrived)
        graph.link("ping", "pong", remote=remote, buffer=1000)
        async with af.open_system(graph):
            pass

    trio.run(main)
    return latencies


def report(label: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(f"{label:<34} {median:>12,.0f} msgs/s  (runs: {', '.join(f'{v:,.0f}' for v in values)})")
    return median


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = find_redis_server()
    if binary is None:
        sys.exit("no redis-server found: give --url, or install redis-server")
    directory = Path(tempfile.mkdtemp())
    redis = RedisServer(binary, directory)
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a Redis server to use (default: start one)")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with server(args.url) as url:
        print(f"source -> sink, {args.messages:,} Data items; Redis at {url}")
        local = report(
            "local link (buffer 1000)",
            [throughput(args.messages, None, 1000) for _ in range(args.repeat)],
        )
        results: dict[int, float] = {}
        for batch in (10, 100, 500):
            remote = af.Remote(url=url, batch=batch)
            results[batch] = report(
                f"remote link, batch {batch} (buffer 5000)",
                [throughput(args.messages, remote, 5000) for _ in range(args.repeat)],
            )
        for batch, value in results.items():
            print(f"remote batch {batch} / local: {value / local:.3f}x")
        pings = max(10, args.pings)
        for label, remote in (("local", None), ("remote", af.Remote(url=url, poll=0.01))):
            values = sorted(latency(pings, remote))
            p50 = values[len(values) // 2] * 1000
            p99 = values[int(len(values) * 0.99) - 1] * 1000
            print(f"latency {label:<7} one item at a time: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
