"""Supervision costs: restart latency, and throughput when 1% of items crash their handler.

    python benchmarks/bench_restart.py                  # 200k messages, 3 repeats
    python benchmarks/bench_restart.py --messages 5000 --repeat 1   # smoke run

* **Restart latency**: from the moment ``process()`` raises to the moment the new module
  instance handles its first item (the crash is caught, the failed item dead-lettered,
  the old instance cleaned up, a new one built and validated, the mailbox resumed).
* **Throughput**: source -> processor -> sink, where the processor raises on 1% of the
  items (each one dead-lettered, the processor restarted), against the same pipeline
  with no failure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from typing import ClassVar

import actorflow as af

af.run  # noqa: B018  (`import actorflow` is lazy: load the runtime before timing)


def pipeline(n: int, crash_every: int | None, marks: list[float] | None = None) -> af.Graph:
    class Numbers(af.Source):
        outputs: ClassVar = {"out": int}

        def start(self) -> Iterator[int]:
            return iter(range(n))

    class Work(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def __init__(self) -> None:
            self.first = True

        def process(self, data: int) -> int:
            if marks is not None and self.first and marks:
                marks.append(time.perf_counter())  # first item after a restart
            self.first = False
            if crash_every and data % crash_every == crash_every - 1:
                if marks is not None:
                    marks.append(time.perf_counter())
                raise ValueError(f"bad item {data}")
            return data + 1

    class Sink(af.Sink):
        inputs: ClassVar = {"in": int}

        def consume(self, data: int) -> None:
            pass

    graph = af.Graph(name="bench-restart")
    graph.add("src", Numbers)
    graph.add("work", Work)
    graph.add("sink", Sink)
    graph.chain("src", "work", "sink", buffer=100)
    graph.supervisor(max_restarts=10**9, period=1)
    return graph


def throughput(n: int, crash_every: int | None) -> float:
    began = time.perf_counter()
    status = af.run(pipeline(n, crash_every))
    took = time.perf_counter() - began
    expected = n // crash_every if crash_every else 0
    assert status.actors["work"].dead_lettered == expected, status.actors["work"]
    assert status.dropped == 0
    return n / took


def restart_latencies(crashes: int) -> list[float]:
    marks: list[float] = []
    af.run(pipeline(crashes * 10, 10, marks))
    # marks: crash, first-after-restart, crash, first-after-restart, ...
    return [after - crash for crash, after in zip(marks[0::2], marks[1::2], strict=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    # Every crash is logged (an error and a dead letter): keep that cost, as JSON lines,
    # but not a terminal's.
    af.configure_logging(format="json", level="info", file=os.devnull)

    clean = statistics.median(throughput(n, None) for _ in range(args.repeat))
    crashy = statistics.median(throughput(n, 100) for _ in range(args.repeat))
    print(f"throughput, source -> processor -> sink, {n:,} messages, buffer 100")
    print(f"  no failures:          {clean:>12,.0f} msgs/s")
    print(f"  1% of items crash:    {crashy:>12,.0f} msgs/s  ({n // 100:,} restarts)")
    print(f"  ratio crashy / clean: {crashy / clean:.2f}x")

    latencies = sorted(restart_latencies(max(n // 200, 10)))
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"restart latency over {len(latencies):,} restarts (crash -> next item handled):")
    print(
        f"  p50 {p50 * 1e6:,.0f} us   p99 {p99 * 1e6:,.0f} us   max {latencies[-1] * 1e6:,.0f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
