"""Scale: start, stop and memory of many idle actors, against bare trio tasks.

An *actor* here is one module of a running graph; the bare-trio counterpart of an actor
is one trio task. Two shapes, each at N actors (so N tasks):

* **pairs**: N/2 independent ``Inlet -> Sink`` pairs, every actor idle (the inlet waits
  for the host, the sink for its link). Bare trio: N/2 pairs of tasks, a forwarder
  waiting on its own memory channel (the inlet's queue) and feeding a receiver through a
  second memory channel (the link).
* **chain**: ``Inlet -> Processor x (N-2) -> Sink``, one long line. Bare trio: N tasks,
  each forwarding from one memory channel to the next.

*start* runs from before the graph is built until every actor is idle (``open_system``
has returned and every task is blocked); *stop* from asking for a stop
(``System.stop()``; for trio, closing the inlet channels) until the ``open_system`` block
(the nursery) has exited. *KB/actor* is the peak RSS (``ru_maxrss``) of the run above the
same process's peak just before the graph was built, divided by N. Every run is a fresh
Python process; runners are interleaved and the median of ``--repeat`` runs is shown,
with actorflow's ratio to bare trio.

    python benchmarks/bench_scale.py                          # 1k/10k/100k pairs, 10k chain
    python benchmarks/bench_scale.py --sizes 1000 --repeat 1 --chain 1000   # smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import trio
import trio.testing

SHAPES = ("pairs", "chain")
RUNNERS = ("actorflow", "trio")


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _Lap:
    """Wall and CPU seconds since it was made: CPU time is what a busy shared machine
    disturbs least, so both are kept."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def since(self, name: str) -> dict[str, float]:
        return {
            name: time.perf_counter() - self.wall,
            f"{name}_cpu": time.process_time() - self.cpu,
        }


async def _actorflow(shape: str, n: int) -> dict[str, float]:
    import actorflow as af

    class Idle(af.Sink):
        def consume(self, data: Any) -> None:
            pass

    class Forward(af.Processor):
        def process(self, data: Any) -> Any:
            return data

    began = _Lap()
    graph = af.Graph(name=f"bench-scale-{shape}")
    if shape == "pairs":
        for i in range(n // 2):
            graph.add(f"in{i}", af.Inlet)
            graph.add(f"out{i}", Idle)
            graph.link(f"in{i}", f"out{i}")
    else:
        names = ["in", *(f"p{i}" for i in range(n - 2)), "out"]
        graph.add("in", af.Inlet)
        for name in names[1:-1]:
            graph.add(name, Forward)
        graph.add("out", Idle)
        graph.chain(*names)
    figures = began.since("build")
    async with af.open_system(graph) as system:
        figures |= began.since("open")
        await trio.testing.wait_all_tasks_blocked()
        figures |= began.since("start")
        stopping = _Lap()
        await system.stop()
    return figures | stopping.since("stop")


async def _forward(
    receive: trio.MemoryReceiveChannel[Any], send: trio.MemorySendChannel[Any] | None
) -> None:
    async with receive:
        async for item in receive:
            if send is not None:
                await send.send(item)
    if send is not None:
        await send.aclose()


async def _trio(shape: str, n: int) -> dict[str, float]:
    began = _Lap()
    inlets: list[trio.MemorySendChannel[Any]] = []
    async with trio.open_nursery() as nursery:
        if shape == "pairs":
            for _ in range(n // 2):
                inlet, queue = trio.open_memory_channel[Any](16)
                send, receive = trio.open_memory_channel[Any](100)
                inlets.append(inlet)
                nursery.start_soon(_forward, queue, send)
                nursery.start_soon(_forward, receive, None)
        else:
            inlet, receive = trio.open_memory_channel[Any](16)
            inlets.append(inlet)
            for _ in range(n - 1):
                send, next_receive = trio.open_memory_channel[Any](100)
                nursery.start_soon(_forward, receive, send)
                receive = next_receive
            nursery.start_soon(_forward, receive, None)
        await trio.testing.wait_all_tasks_blocked()
        figures = began.since("start")
        stopping = _Lap()
        for inlet in inlets:
            inlet.close()
    return figures | stopping.since("stop")


def worker(runner: str, shape: str, n: int) -> dict[str, float]:
    """Run one shape in this process; return its times and peak memory growth."""
    if runner == "actorflow":
        import actorflow  # imported before the baseline, like trio

        actorflow.run  # noqa: B018  (`import actorflow` is lazy: load the runtime too)
    before = _peak_kib()
    result = trio.run(_actorflow if runner == "actorflow" else _trio, shape, n)
    result["kib_per_actor"] = (_peak_kib() - before) / n
    return result


def measure(runner: str, shape: str, n: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", runner, "--shape", shape, "--size", str(n)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare(shape: str, n: int, repeat: int) -> None:
    runs: dict[str, list[dict[str, float]]] = {runner: [] for runner in RUNNERS}
    for _ in range(repeat):
        for runner in RUNNERS:  # interleaved, so a noisy neighbour hits both
            runs[runner].append(measure(runner, shape, n))
    medians = {
        runner: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for runner, results in runs.items()
    }
    ours, bare = medians["actorflow"], medians["trio"]
    what = f"{n // 2:,} Inlet -> Sink pairs" if shape == "pairs" else "Inlet -> Processors -> Sink"
    print(f"{shape} of {n:,} actors ({what}), median of {repeat}:")
    print(
        f"  {'runner':<10} {'start s':>9} {'(cpu)':>7} {'stop s':>9} {'(cpu)':>7} {'KB/actor':>9}"
    )
    for runner, figures in medians.items():
        print(
            f"  {runner:<10} {figures['start']:>9.3f} {figures['start_cpu']:>7.3f}"
            f" {figures['stop']:>9.3f} {figures['stop_cpu']:>7.3f}"
            f" {figures['kib_per_actor'] * 1024 / 1000:>9.2f}"
        )

    def ratio(key: str) -> str:
        return f"{ours[key] / bare[key]:.2f}x" if bare[key] > 0 else "n/a"

    print(
        f"  actorflow / trio: start {ratio('start')} (cpu {ratio('start_cpu')}),"
        f" stop {ratio('stop')} (cpu {ratio('stop_cpu')}), memory {ratio('kib_per_actor')}"
    )
    print(
        f"  (actorflow start: graph built in {ours['build']:.3f} s,"
        f" open_system returned at {ours['open']:.3f} s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000, 10_000, 100_000],
        help="actor counts for the pairs shape (N actors = N/2 pairs)",
    )
    parser.add_argument("--chain", type=int, default=10_000, help="actors in the chain (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", choices=RUNNERS, help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=SHAPES, default="pairs", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.shape, args.size)))
        return 0
    for n in args.sizes:
        compare("pairs", n, args.repeat)
    if args.chain:
        compare("chain", args.chain, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
