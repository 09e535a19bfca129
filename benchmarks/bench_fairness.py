"""Fairness: a ping actor's latency while a CPU-heavy module runs.

The hog does pure-Python work (``--work`` seconds of it). Beside it, a ping source emits
a timestamp every 5 ms, an echo processor forwards it and a pong sink records how long
the round trip took. The hog is written two ways:

* progressive: a :class:`actorflow.Progressive` module whose steps are sized to a 10 ms
  quantum, with a checkpoint between steps;
* one long loop: the same work in a single call, as a naive module would do it.

    python benchmarks/bench_fairness.py            # 2 s of work
    python benchmarks/bench_fairness.py --work 0.2 # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import ClassVar

import trio

import actorflow as af

af.run  # noqa: B018  (`import actorflow` is lazy: load the runtime before timing)

UNIT = 2_000  # loop iterations per unit of work


def unit_of_work(seed: int) -> int:
    total = 0
    for i in range(UNIT):
        total += (i * seed) % 7
    return total


def units_for(seconds: float) -> int:
    began = time.perf_counter()
    done = 0
    while time.perf_counter() - began < 0.05:
        unit_of_work(done)
        done += 1
    return max(1, int(done * seconds / 0.05))


class HogProgressive(af.Progressive):
    outputs: ClassVar = {"out": int}
    quantum = 0.01

    def __init__(self, units: int, span: list[float]) -> None:
        self.units = units
        self.span = span
        self.next = 0
        self.total = 0

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        if not self.span:
            self.span.append(time.perf_counter())
        stop = min(self.units, self.next + step_size)
        for n in range(self.next, stop):
            self.total += unit_of_work(n)
        done, self.next = stop - self.next, stop
        self.set_progress(self.next, self.units)
        if self.next == self.units:
            self.span.append(time.perf_counter())
            self.post(self.total)
            return af.Step(af.StepState.TERMINATED, done)
        return af.Step(af.StepState.READY, done)


class HogLoop(af.Source):
    """The same work as one call: start() does everything before it returns."""

    outputs: ClassVar = {"out": int}

    def __init__(self, units: int, span: list[float]) -> None:
        self.units = units
        self.span = span

    def start(self) -> list[int]:
        self.span.append(time.perf_counter())
        result = sum(unit_of_work(n) for n in range(self.units))
        self.span.append(time.perf_counter())
        return [result]


class Ping(af.Source):
    """Emits the time every 5 ms for ``seconds``."""

    outputs: ClassVar = {"out": float}

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def start(self) -> None:
        began = time.perf_counter()
        while time.perf_counter() - began < self.seconds:
            await self.emit(time.perf_counter())
            await trio.sleep(0.005)


class Echo(af.Processor):
    inputs: ClassVar = {"in": float}
    outputs: ClassVar = {"out": float}

    def process(self, data: float) -> float:
        return data


class Pong(af.Sink):
    inputs: ClassVar = {"in": float}

    def __init__(self, latencies: list[tuple[float, float]]) -> None:
        self.latencies = latencies

    def consume(self, data: float) -> None:
        self.latencies.append((data, time.perf_counter() - data))


class Done(af.Sink):
    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        pass


def measure(hog: type[af.Module], units: int, seconds: float) -> tuple[list[float], float]:
    """Round-trip latencies of the pings emitted while the hog ran, and its run time."""
    pings: list[tuple[float, float]] = []
    span: list[float] = []
    graph = af.Graph(name="fairness")
    graph.add("hog", hog, units=units, span=span)
    graph.add("done", Done)
    graph.add("ping", Ping, seconds=seconds)
    graph.add("echo", Echo)
    graph.add("pong", Pong, latencies=pings)
    graph.link("hog", "done")
    graph.chain("ping", "echo", "pong")
    graph.depends_on("hog", "ping")  # the pings are flowing when the hog begins
    af.run(graph, quantum=0.01)
    began, ended = span
    # A ping emitted just before the hog starts counts too: it is the one a long loop
    # keeps waiting.
    during = [latency for sent, latency in pings if began - 0.005 <= sent <= ended]
    return during, ended - began


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=float, default=2.0, help="seconds of CPU work")
    args = parser.parse_args()
    units = units_for(args.work)
    print(f"hog: {units:,} units (~{args.work:g} s of pure-Python work), quantum 10 ms")
    print("round trips of the pings sent while the hog ran (one every 5 ms):")
    header = f"{'pings':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'hog s':>7}"
    print(f"{'hog written as':<22} {header}")
    for label, hog in (("progressive steps", HogProgressive), ("one long loop", HogLoop)):
        latencies, wall = measure(hog, units, args.work + 0.2)
        if not latencies:
            print(f"{label:<22} {0:>6}")
            continue
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        worst = max(latencies) * 1000
        print(
            f"{label:<22} {len(latencies):>6} {p50:>8.2f} {p99:>8.2f} {worst:>8.2f} {wall:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
