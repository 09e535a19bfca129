"""Workers per link compared on I/O-bound work: workers=1, N and 0 (spawn mode).

A processor awaits ``--latency`` seconds per item (standing in for a network call),
between a source and a sink; the link into it uses each workers setting in turn.
Median of ``--repeat`` runs, msgs/s through the graph, and the speed-up over workers=1.

    python benchmarks/bench_workers.py                      # 2,000 items, 1 ms latency
    python benchmarks/bench_workers.py --messages 200 --repeat 1   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import trio

import actorflow as af

af.run  # noqa: B018  (`import actorflow` is lazy: load the runtime before timing)


def rate(n: int, latency: float, **link: Any) -> float:
    class Numbers(af.Source):
        def start(self) -> Iterator[int]:
            return iter(range(n))

    class Call(af.Processor):
        async def process(self, data: int) -> int:
            await trio.sleep(latency)
            return data

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

    graph = af.Graph(name="bench-workers")
    graph.add("src", Numbers)
    graph.add("call", Call)
    graph.add("sink", Sink)
    graph.link("src", "call", buffer=256, **link)
    graph.link("call", "sink", buffer=256)
    began = time.perf_counter()
    status = af.run(graph)
    took = time.perf_counter() - began
    assert status.actors["sink"].received == n
    return n / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--latency", type=float, default=0.001)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings: list[tuple[str, dict[str, Any]]] = [
        ("workers=1", {}),
        ("workers=8", {"workers": 8}),
        ("workers=64", {"workers": 64}),
        ("workers=0 (limit 256)", {"workers": 0, "spawn_limit": 256}),
    ]
    print(f"{args.messages:,} items, {args.latency * 1000:g} ms awaited per item")
    baseline = None
    for label, link in settings:
        value = statistics.median(
            rate(args.messages, args.latency, **link) for _ in range(args.repeat)
        )
        baseline = baseline or value
        print(f"  {label:<22} {value:>10,.0f} msgs/s  ({value / baseline:5.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
