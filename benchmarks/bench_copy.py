"""Copy policies compared: what fan-out costs with ``deep``, ``msgpack`` and ``none``.

One source fans out to two sinks (two links from one port, so ``deep`` really copies),
for several payload shapes. Each cell is the median of ``--repeat`` runs, in messages per
second through the whole graph; ratios are against ``none`` (no copy) in the same run.

    python benchmarks/bench_copy.py                      # 50k messages, 3 repeats
    python benchmarks/bench_copy.py --messages 2000 --repeat 1   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import actorflow as af

af.run  # noqa: B018  (`import actorflow` is lazy: load the runtime before timing)

PAYLOADS: dict[str, Callable[[int], Any]] = {
    "int": lambda n: n,
    "small dict": lambda n: {"id": n, "ok": True, "tags": ["a", "b"], "value": 1.5},
    "Data": lambda n: af.Data(fields={"id": n, "value": 1.5, "samples": [1, 2, 3]}),
    "100-key dict": lambda n: {f"k{i}": i * n for i in range(100)},
}
POLICIES = ("none", "deep", "msgpack")


def rate(n: int, payload: Callable[[int], Any], policy: str) -> float:
    items = [payload(i) for i in range(n)]

    class Src(af.Source):
        def start(self) -> Iterator[Any]:
            return iter(items)

    class Sink(af.Sink):
        def consume(self, data: Any) -> None:
            pass

    graph = af.Graph(name="bench-copy")
    graph.add("src", Src)
    graph.add("a", Sink)
    graph.add("b", Sink)
    graph.link("src", "a", copy=policy, buffer=100)
    graph.link("src", "b", copy=policy, buffer=100)
    began = time.perf_counter()
    status = af.run(graph)
    took = time.perf_counter() - began
    assert status.actors["a"].received == status.actors["b"].received == n
    return n / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"fan-out to 2 links, {args.messages:,} messages, msgs/s (median of {args.repeat})")
    header = "".join(f"{policy:>22}" for policy in POLICIES)
    print(f"{'payload':<14}{header}")
    for name, payload in PAYLOADS.items():
        rates = {
            policy: statistics.median(
                rate(args.messages, payload, policy) for _ in range(args.repeat)
            )
            for policy in POLICIES
        }
        cells = "".join(f"{rates[p]:>13,.0f} ({rates[p] / rates['none']:4.2f}x)" for p in POLICIES)
        print(f"{name:<14}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
