"""Fairness: a ping actor's latency while a CPU-heavy module runs.

The hog does pure-Python work (``--work`` seconds of it). Beside it, a ping source emits
a timestamp every 5 ms, an echo processor forwards it and a pong sink records how long
the round trip took. The hog is written three ways:

* progressive: a :class:`actorflow.Progressive` module whose steps are sized to a 10 ms
  quantum ``q``, with a checkpoint between steps;
* progressive, with interaction priority: the same, the ping chain declared
  ``latency_sensitive`` (while it has input waiting, the hog's steps do not resume);
* one long loop: the same work in a single call, as a naive module would do it.

Latencies are printed in units of ``q``, with the hog's steps and units per second
(what the priority costs it). The variants run in interleaved rounds; medians.

    python benchmarks/bench_fairness.py            # 2 s of work, 3 rounds
    python benchmarks/bench_fairness.py --work 0.2 --rounds 1 # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import ClassVar

import attrs
import trio

import actorflow as af

af.run  # noqa: B018  (`import actorflow` is lazy: load the runtime before timing)

UNIT = 2_000  # loop iterations per unit of work
QUANTUM = 0.01


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
        self.steps = 0

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        if not self.span:
            self.span.append(time.perf_counter())
        stop = min(self.units, self.next + step_size)
        for n in range(self.next, stop):
            self.total += unit_of_work(n)
        done, self.next = stop - self.next, stop
        self.steps += 1
        self.set_progress(self.next, self.units)
        if self.next == self.units:
            self.span.append(time.perf_counter())
            self.span.append(self.steps)
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
    """Every 5 ms for ``seconds``, emits when it was due (its timer's deadline) and when
    it was sent: a timer that expires during a hog's step fires after the step."""

    outputs: ClassVar = {"out": tuple}

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def start(self) -> None:
        began = due = time.perf_counter()
        while due - began < self.seconds:
            await self.emit((due, time.perf_counter()))
            due = time.perf_counter() + 0.005
            await trio.sleep(0.005)


class Echo(af.Processor):
    inputs: ClassVar = {"in": tuple}
    outputs: ClassVar = {"out": tuple}

    def process(self, data: tuple[float, float]) -> tuple[float, float]:
        return data


class Pong(af.Sink):
    inputs: ClassVar = {"in": tuple}

    def __init__(self, latencies: list[tuple[float, float, float]]) -> None:
        self.latencies = latencies

    def consume(self, data: tuple[float, float]) -> None:
        due, sent = data
        now = time.perf_counter()
        self.latencies.append((sent, now - sent, now - due))


class SensitivePing(Ping):
    latency_sensitive = True


class SensitiveEcho(Echo):
    latency_sensitive = True


class SensitivePong(Pong):
    latency_sensitive = True


class Done(af.Sink):
    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        pass


@attrs.frozen
class Outcome:
    latencies: list[float]  # from the ping's sending, in units of q
    from_due: list[float]  # from when it was due, in units of q
    seconds: float  # the hog's run time
    steps: int  # the hog's steps (0 for one long loop)

    def percentile(self, fraction: float, *, due: bool = False) -> float:
        ordered = sorted(self.from_due if due else self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def measure(hog: type[af.Module], units: int, seconds: float, *, priority: bool) -> Outcome:
    """Round-trip latencies of the pings emitted while the hog ran, and its run time."""
    pings: list[tuple[float, float, float]] = []
    span: list[float] = []
    graph = af.Graph(name="fairness")
    graph.add("hog", hog, units=units, span=span)
    graph.add("done", Done)
    graph.add("ping", SensitivePing if priority else Ping, seconds=seconds)
    graph.add("echo", SensitiveEcho if priority else Echo)
    graph.add("pong", SensitivePong if priority else Pong, latencies=pings)
    graph.link("hog", "done")
    graph.chain("ping", "echo", "pong")
    graph.depends_on("hog", "ping")  # the pings are flowing when the hog begins
    af.run(graph, quantum=QUANTUM)
    began, ended = span[:2]
    # A ping emitted just before the hog starts counts too: it is the one a long loop
    # keeps waiting.
    during = [(latency, due) for sent, latency, due in pings if began - 0.005 <= sent <= ended]
    return Outcome(
        [latency / QUANTUM for latency, _ in during],
        [latency / QUANTUM for _, latency in during],
        ended - began,
        int(span[2]) if len(span) > 2 else 0,
    )


VARIANTS = (
    ("progressive steps", HogProgressive, False),
    ("  + interaction priority", HogProgressive, True),
    ("one long loop", HogLoop, False),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=float, default=2.0, help="seconds of CPU work")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args()
    units = units_for(args.work)
    print(f"hog: {units:,} units (~{args.work:g} s of pure-Python work), q = 10 ms")
    print(
        f"round trips of the pings sent while the hog ran (one every 5 ms), {args.rounds} rounds"
    )
    results: dict[str, list[Outcome]] = {label: [] for label, _, _ in VARIANTS}
    for _ in range(args.rounds):
        for label, hog, priority in VARIANTS:
            results[label].append(measure(hog, units, args.work + 0.2, priority=priority))
    print("latency in units of q, from the ping's sending (and from when it was due)")
    header = (
        f"{'pings':>6} {'p50':>6} {'p99':>6} {'max':>6} {'p50 due':>8} {'p99 due':>8} "
        f"{'hog s':>6} {'steps/s':>8}"
    )
    print(f"{'hog written as':<25} {header}   (medians over the rounds)")
    rates: dict[str, float] = {}
    for label, outcomes in results.items():
        kept = [o for o in outcomes if o.latencies]
        if not kept:
            print(f"{label:<25} {0:>6}")
            continue
        pings = statistics.median(len(o.latencies) for o in kept)
        p50 = statistics.median(o.percentile(0.5) for o in kept)
        p99 = statistics.median(o.percentile(0.99) for o in kept)
        worst = statistics.median(max(o.latencies) for o in kept)
        p50_due = statistics.median(o.percentile(0.5, due=True) for o in kept)
        p99_due = statistics.median(o.percentile(0.99, due=True) for o in kept)
        wall = statistics.median(o.seconds for o in kept)
        steps = statistics.median(o.steps / o.seconds for o in kept)
        rates[label] = statistics.median(units / o.seconds for o in kept)
        print(
            f"{label:<25} {pings:>6.0f} {p50:>6.2f} {p99:>6.2f} {worst:>6.2f} {p50_due:>8.2f} "
            f"{p99_due:>8.2f} {wall:>6.2f} {steps:>8.1f}"
        )
    plain, first = rates.get(VARIANTS[0][0]), rates.get(VARIANTS[1][0])
    if plain and first:
        print(f"hog throughput (units/s) with priority / without: {first / plain:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
