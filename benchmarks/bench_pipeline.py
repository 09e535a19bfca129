"""Pipeline throughput, latency and memory: actorflow against hand-written pipelines.

Every shape of :mod:`_shapes` (the 1 -> 4 -> 1 chain, the same with a source emitting
item by item from an async ``start()`` (emits-4), fan-out 1 -> 8, fan-in 8 -> 1, a
100-actor DAG, chains of 1 to 64 processors) runs on each *variant*: actorflow with
default options (per-item hooks), actorflow-batch (the same modules written with batch
hooks, ``process_batch``/``consume_batch``, doing the peers' work per batch), plain
function calls (the limit), hand-batched asyncio and trio
pipelines (lists of items through queues and memory channels), ``asyncio.Queue`` and raw
trio memory channels (item at a time). Every run is a fresh Python process; the variants
are interleaved round by round, so a noisy machine disturbs them alike, and the median
of ``--repeat`` rounds is reported with every ratio. Rates are items sent by the
sources per CPU second of the run (the machine is shared: CPU time is what other
processes disturb least); wall-clock rates are printed beside them.

``--other PATH`` runs the actorflow variants from another source tree too (say
``/work/main``), in the same interleaved rounds, so a change is measured before and
after in one run. Latency sends one item at a time through four stages and waits for
it at the sink (p50 and p99 against ``asyncio.Queue``); memory is the peak RSS growth of
the 1 -> 4 -> 1 chain at ``--messages`` and ten times as many.

    python benchmarks/bench_pipeline.py                      # everything, 5 rounds
    python benchmarks/bench_pipeline.py --other /work/main --shapes chain-4 latency
    python benchmarks/bench_pipeline.py --messages 2000 --repeat 1 --no-memory   # smoke
    python benchmarks/bench_pipeline.py --shapes emits-4 --unfused   # fused vs fuse=False
    python benchmarks/bench_pipeline.py --shapes chain-4 --no-batch   # per-item only
    python benchmarks/bench_pipeline.py --instructions --messages 50000 --shapes chain-4 \
        --skip-trio --other /work/main                       # instructions per item
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
SHAPES = (
    "chain-4",
    "emits-4",
    "fan-out",
    "fan-in",
    "dag",
    "chain-1",
    "chain-16",
    "chain-64",
    "latency",
)
PEERS = ("plain", "asyncio-batched", "trio-batched", "asyncio-queue", "trio-channels")
BASELINES = ("asyncio-queue", "asyncio-batched")
LATENCY_ITEMS = 2000
DEFAULT_BUFFER = 100
UNFUSED = "-unfused"
"""The suffix of an actorflow variant run with ``fuse=False`` (``--unfused``)."""
BATCH = "-batch"
"""The suffix of the actorflow variant whose modules have batch hooks (``process_batch``,
``consume_batch``): the like-for-like peer of the hand-batched pipelines."""
"""actorflow's ``default_buffer``: at this ``--buffer`` its links keep default options."""


def _shape(name: str) -> Any:
    import _shapes

    if name.startswith("chain-"):
        return _shapes.chain(int(name.split("-")[1]))
    if name.startswith("emits-"):
        return _shapes.emits(int(name.split("-")[1]))
    return {"fan-out": _shapes.fan_out(8), "fan-in": _shapes.fan_in(8), "dag": _shapes.dag()}[name]


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# -- actorflow -------------------------------------------------------------------------


def _actorflow(
    shape: Any, n: int, buffer: int, fuse: bool, quantum: float | None, batch: bool = False
) -> tuple[float, float, int]:
    import actorflow as af

    totals: dict[str, int] = {}

    class Numbers(af.Source):
        outputs: ClassVar = {"out": int}

        def start(self) -> Iterator[int]:
            return iter(range(n))

    class Emitting(af.Source):
        outputs: ClassVar = {"out": int}

        async def start(self) -> None:
            for i in range(n):
                await self.emit(i)

    class Inc(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, data: int) -> int:
            return data + 1

    class Sum(af.Sink):
        inputs: ClassVar = {"in": int}
        total = 0

        def consume(self, data: int) -> None:
            self.total += data

        def cleanup(self) -> None:
            totals[self.name] = self.total

    class IncBatch(af.Processor):
        """Inc with a batch hook: the work of the hand-batched peers' stage."""

        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process_batch(self, batch: list[int]) -> list[int]:
            return [x + 1 for x in batch]

    class SumBatch(af.Sink):
        """Sum with a batch hook, adding up as the hand-batched peers' sink does."""

        inputs: ClassVar = {"in": int}
        total = 0

        def consume_batch(self, batch: list[int]) -> None:
            total = self.total
            for x in batch:
                total += x
            self.total = total

        def cleanup(self) -> None:
            totals[self.name] = self.total

    kinds: dict[str, Any] = {"src": Emitting if shape.emits else Numbers, "inc": Inc, "sink": Sum}
    if batch:
        kinds |= {"inc": IncBatch, "sink": SumBatch}
    graph = af.Graph(name="bench")
    for node, kind in shape.kinds.items():
        graph.add(node, kinds[kind])
    for a, b in shape.edges:
        # Default options unless a buffer other than the default was asked for.
        graph.link(a, b, **({} if buffer == DEFAULT_BUFFER else {"buffer": buffer}))
    run = af.run  # `import actorflow` is lazy: load the runtime before timing
    wall, cpu = time.perf_counter(), time.process_time()
    run(graph, fuse=fuse, **({} if quantum is None else {"quantum": quantum}))
    return time.perf_counter() - wall, time.process_time() - cpu, sum(totals.values())


def _actorflow_latency(n: int, fuse: bool, batch: bool = False) -> list[float]:
    import trio

    import actorflow as af

    samples: list[float] = []
    box: dict[str, Any] = {}

    class Pings(af.Source):
        outputs: ClassVar = {"out": int}

        async def start(self) -> AsyncIterator[int]:
            for i in range(n):
                box["done"] = trio.Event()
                box["sent"] = time.perf_counter()
                yield i
                await box["done"].wait()

    class Inc(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, data: int) -> int:
            return data + 1

    class Arrived(af.Sink):
        inputs: ClassVar = {"in": int}

        def consume(self, data: int) -> None:
            samples.append(time.perf_counter() - box["sent"])
            box["done"].set()

    class IncBatch(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process_batch(self, batch: list[int]) -> list[int]:
            return [x + 1 for x in batch]

    class ArrivedBatch(af.Sink):
        inputs: ClassVar = {"in": int}

        def consume_batch(self, batch: list[int]) -> None:
            now = time.perf_counter()
            samples.extend(now - box["sent"] for _ in batch)
            box["done"].set()

    graph = af.Graph(name="latency")
    graph.add("src", Pings)
    for stage in range(4):
        graph.add(f"p{stage}", IncBatch if batch else Inc)
    graph.add("sink", ArrivedBatch if batch else Arrived)
    graph.chain("src", "p0", "p1", "p2", "p3", "sink", buffer=100)
    af.run(graph, fuse=fuse)
    return samples


def worker(
    variant: str, shape_name: str, n: int, buffer: int, quantum: float | None = None
) -> dict[str, Any]:
    """Run one variant of one shape in this process."""
    sys.path.insert(0, str(HERE))
    import _shapes

    before = _rss_kib()
    if shape_name == "latency":
        if variant.startswith("actorflow"):
            fuse = not variant.endswith(UNFUSED)
            samples = _actorflow_latency(LATENCY_ITEMS, fuse, BATCH in variant)
        else:
            samples = _shapes.latency_asyncio_queue(LATENCY_ITEMS)
        samples = samples[LATENCY_ITEMS // 10 :]  # warm-up
        cuts = statistics.quantiles(samples, n=100)
        return {"p50": cuts[49], "p99": cuts[98]}
    shape = _shape(shape_name)
    count = _shapes.count(shape, n)
    if variant.startswith("actorflow"):
        fuse = not variant.endswith(UNFUSED)
        wall, cpu, total = _actorflow(shape, count, buffer, fuse, quantum, BATCH in variant)
    else:
        wall, cpu, total = _shapes.PEERS[variant](shape, count, buffer)
    expected = _shapes.expected_total(shape, count)
    assert total == expected, f"{variant} on {shape_name}: total {total}, expected {expected}"
    sources = sum(1 for kind in shape.kinds.values() if kind == "src")
    items = count * sources
    return {
        "rate": items / cpu,
        "wall_rate": items / wall,
        "rss_growth_kib": _rss_kib() - before,
    }


def measure(
    variant: str,
    shape: str,
    n: int,
    buffer: int,
    trees: dict[str, str],
    *,
    callgrind: bool = False,
    quantum: float | None = None,
) -> dict[str, Any]:
    """One run of ``variant`` in a fresh process (actorflow from its tree); under
    valgrind's callgrind, the instructions the whole process ran too."""
    command = [sys.executable, __file__, "--worker", variant, "--shapes", shape]
    command += ["--messages", str(n), "--buffer", str(buffer)]
    if quantum is not None:
        command += ["--quantum", str(quantum)]
    if callgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    env = dict(os.environ)
    env["PYTHONPATH"] = trees.get(variant, str(TREE))
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if callgrind:  # "==123== Collected : 5083914658"
        collected = [line for line in out.stderr.splitlines() if "Collected :" in line]
        result["instructions"] = int(collected[-1].split()[-1])
    return result


def report_instructions(args: argparse.Namespace, trees: dict[str, str]) -> None:
    """Instructions per item of every variant (callgrind; the difference between a run
    of ``--messages`` and one of a fifth as many, so start-up and imports cancel out).
    Load does not change them: compare them where CPU time is too noisy."""
    import _shapes

    small = args.messages // 5
    for shape in args.shapes:
        if shape == "latency":
            continue
        print(f"\n{shape}: instructions per item (callgrind)")
        dag = _shape(shape)
        sources = sum(1 for kind in dag.kinds.values() if kind == "src")
        items = sources * (_shapes.count(dag, args.messages) - _shapes.count(dag, small))
        for variant in _variants(shape, args, trees):
            runs = [
                measure(
                    variant, shape, n, args.buffer, trees, callgrind=True, quantum=args.quantum
                )["instructions"]
                for n in (small, args.messages)
            ]
            print(f"  {variant:<22} {(runs[1] - runs[0]) / items:>10,.0f}")


def _variants(shape: str, args: argparse.Namespace, trees: dict[str, str]) -> list[str]:
    actorflows = list(trees)
    if shape == "latency":
        return [*actorflows, "asyncio-queue"]
    peers = [
        p for p in PEERS if not (p == "trio-channels" and (args.skip_trio or shape != "chain-4"))
    ]
    return [*actorflows, *peers]


def _report(shape: str, results: dict[str, list[dict[str, Any]]]) -> None:
    if shape == "latency":
        print("\nlatency: one item at a time through 4 stages (wall µs, median of runs)")
        p50 = {v: statistics.median(r["p50"] for r in rs) * 1e6 for v, rs in results.items()}
        p99 = {v: statistics.median(r["p99"] for r in rs) * 1e6 for v, rs in results.items()}
        base50, base99 = p50["asyncio-queue"], p99["asyncio-queue"]
        print(f"{'variant':<22} {'p50 µs':>8} {'p99 µs':>8} {'p50 x aq':>9} {'p99 x aq':>9}")
        for v in results:
            print(
                f"{v:<22} {p50[v]:>8.1f} {p99[v]:>8.1f} "
                f"{p50[v] / base50:>9.2f} {p99[v] / base99:>9.2f}"
            )
        return
    rates = {v: statistics.median(r["rate"] for r in rs) for v, rs in results.items()}
    walls = {v: statistics.median(r["wall_rate"] for r in rs) for v, rs in results.items()}
    print(f"\n{shape}: items/CPU-s (median of {len(next(iter(results.values())))})")
    print(
        f"{'variant':<22} {'items/s':>12} {'wall items/s':>13} "
        f"{'x asyncio.Queue':>16} {'x hand-batched':>15}"
    )
    for v in results:
        ratios = [rates[v] / rates[b] for b in BASELINES]
        print(
            f"{v:<22} {rates[v]:>12,.0f} {walls[v]:>13,.0f} {ratios[0]:>16.2f} {ratios[1]:>15.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument(
        "--buffer",
        type=int,
        default=DEFAULT_BUFFER,
        help="items per link (the peers' batches); at the default actorflow's links keep "
        "default options",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="PATH",
        help="also run the actorflow variants from this source tree",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument(
        "--no-batch",
        action="store_true",
        help="skip the actorflow variant whose modules have batch hooks (actorflow-batch)",
    )
    parser.add_argument("--skip-trio", action="store_true", help="skip the slow naive trio run")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per item under valgrind instead of timing",
    )
    parser.add_argument(
        "--unfused",
        action="store_true",
        help="also run every actorflow tree with fuse=False",
    )
    parser.add_argument(
        "--quantum",
        type=float,
        help="actorflow's quantum in seconds (say 5 with --instructions: valgrind slows the "
        "clock, so with the default the runs yield more often than in a real run)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.shapes[0], args.messages, args.buffer, args.quantum)
        print(json.dumps(result))
        return 0

    trees = {"actorflow": str(TREE)}
    if not args.no_batch:
        trees["actorflow" + BATCH] = str(TREE)
    for path in args.other:
        trees[f"actorflow@{Path(path).name}"] = str(Path(path).resolve())
    if args.unfused:
        trees |= {name + UNFUSED: path for name, path in trees.items()}
    print(
        f"{args.messages:,} messages (chains of k: 5/(k+1) as many), buffer {args.buffer}, "
        f"{args.repeat} interleaved rounds; trees: {trees}"
    )
    if args.instructions:
        report_instructions(args, trees)
        return 0
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in args.shapes}
    for _ in range(args.repeat):
        for shape in args.shapes:
            for variant in _variants(shape, args, trees):
                got = measure(
                    variant, shape, args.messages, args.buffer, trees, quantum=args.quantum
                )
                results[shape].setdefault(variant, []).append(got)
    for shape in args.shapes:
        _report(shape, results[shape])

    if not args.no_memory:
        print("\npeak RSS growth above the interpreter's, chain-4 (median):")
        memory: dict[tuple[str, int], list[int]] = {}
        for _ in range(args.repeat):
            for count in (args.messages, args.messages * 10):
                for variant in trees:
                    got = measure(variant, "chain-4", count, args.buffer, trees)
                    memory.setdefault((variant, count), []).append(got["rss_growth_kib"])
        for (variant, count), kib in memory.items():
            print(
                f"  {variant:<22} {count:>10,} messages: {statistics.median(kib) / 1024:6.1f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
