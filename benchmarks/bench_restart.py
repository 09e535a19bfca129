"""Supervision costs: restart latency, and throughput when 1% of items crash their handler.

    python benchmarks/bench_restart.py                  # 200k messages, 3 repeats
    python benchmarks/bench_restart.py --latency --rounds 7 --against ../main
    python benchmarks/bench_restart.py --messages 5000 --repeat 1 --rounds 1   # smoke run

* **Restart latency**: from the moment ``process()`` raises to the moment the new module
  instance handles its next item (the crash is caught, the failed item dead-lettered,
  the old instance cleaned up, a new one built and validated, the mailbox resumed),
  over ``--crashes`` restarts in one run. Each way of logging runs in a fresh
  interpreter (stderr to a file), in interleaved rounds; the medians of the runs' p50
  and p99 are printed, with ``--against`` another checkout's actorflow in the same
  rounds. The ways (see ``MODES``): the defaults (``open_system()``/``run()`` from
  Python and ``actorflow run`` with nothing configured: warnings and errors to stderr),
  ``actorflow run --log`` (JSON lines at info, errors echoed), JSON lines at info from
  Python, logging filtered out, and the yardstick: a hand-made trio supervisor that
  restarts a task and a fresh object.
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


MODES = {
    "python": "open_system()/run() from Python, logging not configured (the default)",
    "cli": "actorflow run, no --log (the default of the command)",
    "cli-json": "actorflow run --log FILE (JSON lines at info, errors echoed)",
    "json": "configure_logging(format='json', file=...), info",
    "filtered": "configure_logging(level='critical'): logging filtered out",
    "hand": "hand-made trio supervisor (the yardstick)",
}
"""The ways a restart's latency is measured, each in a fresh interpreter."""


def cli_graph() -> af.Graph:
    """``actorflow run bench_restart:cli_graph``: the crashing pipeline, its marks
    written to ``$BENCH_RESTART_MARKS`` at exit."""
    import atexit
    import json

    crashes = int(os.environ["BENCH_RESTART_CRASHES"])
    marks: list[float] = []

    def dump() -> None:
        with open(os.environ["BENCH_RESTART_MARKS"], "w") as out:
            json.dump(marks, out)

    atexit.register(dump)
    return pipeline(crashes * 10, 10, marks)


def child(mode: str, crashes: int, scratch: str) -> list[float]:
    """The latencies of one fresh interpreter's run in ``mode`` (``python -m`` side)."""
    if mode == "hand":
        return handmade_latencies(crashes)
    if mode == "json":
        af.configure_logging(format="json", level="info", file=os.path.join(scratch, "log"))
    elif mode == "filtered":
        af.configure_logging(format="json", level="critical", file=os.devnull)
    return restart_latencies(crashes)


def fresh(mode: str, crashes: int, checkout: str | None) -> list[float]:
    """Run ``mode`` in a fresh interpreter (stderr to a file, as a terminal or a
    service's journal takes it) with ``checkout``'s actorflow; its latencies."""
    import json
    import subprocess
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as scratch:
        marks = os.path.join(scratch, "marks")
        env = {**os.environ, "BENCH_RESTART_MARKS": marks, "BENCH_RESTART_CRASHES": str(crashes)}
        env["PYTHONPATH"] = os.pathsep.join([checkout or os.path.dirname(here), here])
        if mode.startswith("cli"):
            command = [sys.executable, "-m", "actorflow", "run", "bench_restart:cli_graph"]
            if mode == "cli-json":
                command += ["--log", os.path.join(scratch, "log")]
        else:
            command = [sys.executable, __file__, "--child", mode, "--crashes", str(crashes)]
            command += ["--scratch", scratch]
        with open(os.path.join(scratch, "stderr"), "w") as err:
            subprocess.run(
                command, env=env, cwd=here, stdout=subprocess.DEVNULL, stderr=err, check=True
            )
        with open(marks) as found:
            times = json.load(found)
    return [after - crash for crash, after in zip(times[0::2], times[1::2], strict=False)]


def percentile(latencies: list[float], fraction: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def restart_table(crashes: int, rounds: int, modes: list[str], against: str | None) -> None:
    """Restart latency p50 and p99, each mode in fresh interpreters, interleaved rounds,
    medians over the rounds (and the same with ``against``'s actorflow)."""
    runs = [(mode, None) for mode in modes]
    if against:
        runs += [(mode, against) for mode in modes if mode != "hand"]
    found: dict[tuple[str, str | None], list[tuple[float, float]]] = {run: [] for run in runs}
    for _ in range(rounds):
        for mode, checkout in runs:
            latencies = fresh(mode, crashes, checkout)
            found[mode, checkout].append((p50(latencies), percentile(latencies, 0.99)))
    hand = statistics.median(p for p, _ in found["hand", None]) if "hand" in modes else None
    print(f"restart latency (crash -> next item handled), {crashes:,} restarts per run,")
    print(f"fresh interpreters, {rounds} interleaved rounds, medians of each run's p50/p99:")
    for mode, checkout in runs:
        mid = statistics.median(p for p, _ in found[mode, checkout])
        tail = statistics.median(p for _, p in found[mode, checkout])
        ratio = f"{mid / hand:5.2f}x hand" if hand else ""
        where = f"  [{checkout}]" if checkout else ""
        print(f"  {mode:<9} p50 {mid * 1e6:7.1f} us  p99 {tail * 1e6:8.1f} us  {ratio}{where}")
    for mode in modes:
        print(f"  {mode:<9} = {MODES[mode]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--crashes", type=int, default=500, help="restarts per latency run")
    parser.add_argument("--modes", default=",".join(MODES), help="latency modes, comma-separated")
    parser.add_argument("--against", help="another checkout whose actorflow is timed too")
    parser.add_argument("--latency", action="store_true", help="only the latency table")
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import json

        latencies = child(args.child, args.crashes, args.scratch)
        marks = [x for pair in ((0.0, late) for late in latencies) for x in pair]
        with open(os.environ["BENCH_RESTART_MARKS"], "w") as out:
            json.dump(marks, out)
        return 0
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    restart_table(args.crashes, args.rounds, modes, args.against)
    if args.latency:
        return 0
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
