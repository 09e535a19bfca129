"""Pipeline throughput and memory: actorflow against raw trio channels and asyncio.Queue.

The same pipeline runs on each: 1 source -> 4 processors (x + 1) -> 1 sink (sum), five
links of capacity ``--buffer``. Every run is a fresh Python process, so peak memory is
that run's own; the median of ``--repeat`` runs is reported, with ratios against the
baselines measured in the same invocation.

    python benchmarks/bench_pipeline.py                 # 200k messages, 3 repeats, memory
    python benchmarks/bench_pipeline.py --messages 2000 --repeat 1 --no-memory   # smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
RUNNERS = ("actorflow", "trio-channels", "asyncio-queue")


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _actorflow(n: int, buffer: int) -> float:
    import actorflow as af

    class Numbers(af.Source):
        outputs: ClassVar = {"out": int}

        def start(self) -> Iterator[int]:
            return iter(range(n))

    class Inc(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, data: int) -> int:
            return data + 1

    class Sum(af.Sink):
        inputs: ClassVar = {"in": int}
        total = 0

        def consume(self, data: int) -> None:
            Sum.total += data

    graph = af.Graph(name="bench")
    graph.add("src", Numbers)
    for stage in range(4):
        graph.add(f"p{stage}", Inc)
    graph.add("sink", Sum)
    graph.chain("src", "p0", "p1", "p2", "p3", "sink", buffer=buffer)
    run = af.run  # `import actorflow` is lazy: load the runtime before timing
    began = time.perf_counter()
    run(graph)
    took = time.perf_counter() - began
    assert Sum.total == sum(range(n)) + 4 * n, "actorflow pipeline lost or changed items"
    return took


def worker(runner: str, n: int, buffer: int) -> dict[str, Any]:
    """Run one pipeline in this process; return its time and memory growth."""
    sys.path.insert(0, str(HERE))
    import _baselines

    before = _rss_kib()
    if runner == "actorflow":
        seconds = _actorflow(n, buffer)
    elif runner == "trio-channels":
        seconds = _baselines.run_trio_channels(n, buffer)
    else:
        seconds = _baselines.run_asyncio_queue(n, buffer)
    return {"seconds": seconds, "rss_growth_kib": _rss_kib() - before}


def measure(runner: str, n: int, buffer: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", runner]
    command += ["--messages", str(n), "--buffer", str(buffer)]
    out = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--buffer", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the 10x memory run")
    parser.add_argument("--skip-trio", action="store_true", help="skip the slow naive trio run")
    parser.add_argument("--worker", choices=RUNNERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.messages, args.buffer)))
        return 0

    n = args.messages
    runners = [r for r in RUNNERS if not (args.skip_trio and r == "trio-channels")]
    rates: dict[str, float] = {}
    print(f"pipeline: 1 source -> 4 processors -> 1 sink, {n:,} messages, buffer {args.buffer}")
    print(f"{'runner':<15} {'msgs/s (median)':>16} {'runs':>5}")
    for runner in runners:
        times = [measure(runner, n, args.buffer)["seconds"] for _ in range(args.repeat)]
        rates[runner] = n / statistics.median(times)
        print(f"{runner:<15} {rates[runner]:>16,.0f} {len(times):>5}")
    for baseline in runners[1:]:
        ratio = rates["actorflow"] / rates[baseline]
        print(f"actorflow / {baseline}: {ratio:.2f}x")

    if not args.no_memory:
        print("\npeak memory growth of actorflow (RSS above the interpreter's, median):")
        for count in (n, n * 10):
            growth = statistics.median(
                measure("actorflow", count, args.buffer)["rss_growth_kib"]
                for _ in range(args.repeat)
            )
            print(f"  {count:>10,} messages: {growth / 1024:6.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
