"""Supervision costs: restart latency, and throughput when 1% of items crash their handler.

    python benchmarks/bench_restart.py                  # 200k messages, 3 repeats
    python benchmarks/bench_restart.py --messages 5000 --repeat 1   # smoke run

* **Restart latency**: from the moment ``process()`` raises to the moment the new module
  instance handles its first item (the crash is caught, the failed item dead-lettered,
  the old instance cleaned up, a new one built and validated, the mailbox resumed).
  Measured with the default logging of a run that logs (JSON lines at info, every
  event rendered), with logging filtered out (``critical``), and, as the yardstick, for
  a hand-made trio supervisor that restarts a task and a fresh object; the three run in
  interleaved rounds, medians of the rounds' p50, and the ratios.
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
from collections import deque
from collections.abc import Iterator
from typing import ClassVar

import trio

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


def handmade_latencies(crashes: int) -> list[float]:
    """The yardstick: a supervisor written by hand on trio. Each incarnation is a fresh
    worker object run by a task of its own in a nursery; a crash ends the task, the
    supervisor counts the failed item and starts the next incarnation on the items left."""
    marks: list[float] = []

    class Worker:
        def __init__(self) -> None:
            self.first = True

        def handle(self, data: int) -> int:
            if self.first and marks:
                marks.append(time.perf_counter())
            self.first = False
            if data % 10 == 9:
                marks.append(time.perf_counter())
                raise ValueError(f"bad item {data}")
            return data + 1

    async def incarnation(worker: Worker, items: deque[int], out: list[int]) -> None:
        while items:
            out.append(worker.handle(items.popleft()))
            if len(out) % 100 == 0:
                await trio.lowlevel.checkpoint()

    async def supervise() -> None:
        items, out, dead = deque(range(crashes * 10)), [], 0
        while items:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(incarnation, Worker(), items, out)
            except* ValueError:
                dead += 1
        assert dead == crashes

    trio.run(supervise)
    return [after - crash for crash, after in zip(marks[0::2], marks[1::2], strict=False)]


def p50(latencies: list[float]) -> float:
    return statistics.median(latencies)


def restart_table(crashes: int, rounds: int) -> None:
    """Restart latency p50, interleaved rounds: default logging, none, and by hand."""

    def logged(level: str) -> float:
        af.configure_logging(format="json", level=level, file=os.devnull)
        return p50(restart_latencies(crashes))

    runs: dict[str, list[float]] = {"info": [], "critical": [], "hand": []}
    for _ in range(rounds):
        runs["info"].append(logged("info"))
        runs["critical"].append(logged("critical"))
        runs["hand"].append(p50(handmade_latencies(crashes)))
    info, quiet, hand = (statistics.median(runs[key]) for key in ("info", "critical", "hand"))
    af.configure_logging(format="json", level="info", file=os.devnull)
    print(f"restart latency p50 (crash -> next item handled), {crashes:,} restarts x {rounds}:")
    print(f"  actorflow, JSON logs at info:    {info * 1e6:>7.1f} us  ({info / hand:.2f}x hand)")
    print(f"  actorflow, logging filtered out: {quiet * 1e6:>7.1f} us  ({quiet / hand:.2f}x)")
    print(f"  hand-made trio supervisor:       {hand * 1e6:>7.1f} us")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
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

    restart_table(max(n // 200, 10), args.rounds)
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
