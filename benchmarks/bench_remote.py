"""A remote link (Redis Streams on loopback) against a hand-written loop and a local link.

    python benchmarks/bench_remote.py --url redis://127.0.0.1:6379/0
    python benchmarks/bench_remote.py                # starts a redis-server of its own
    python benchmarks/bench_remote.py --messages 2000 --repeat 1 --pings 50   # smoke run
    python benchmarks/bench_remote.py --other ../main   # also another tree's remote link
    python benchmarks/bench_remote.py --instructions --messages 20000 --repeat 1  # valgrind

Every run is a fresh Python process; the variants run interleaved, round by round
(``--repeat`` rounds), so a noisy neighbour hits them all alike; medians are shown.

* **Throughput**: source -> sink, ``--messages`` ``Data(fields={"n": n})`` items, through
  a local link, through a remote link (``af.Remote(url, batch=B)``, both halves in this
  process) and through the yardstick, ``_remote_loop.py``: ~40 lines on the same client
  doing the same batching and the same work per item (XADD one entry of B encoded items;
  XREADGROUP, decode, hand to a sink; XACK + XDEL). *whole run* is items over the time
  ``af.run`` (or the loop) took, start and stop included; *net* leaves the fixed cost
  out: items over the run's time less the same variant's 1-item run. The source and
  sink classes are defined before the clock starts (a program defines its modules
  once, when it is imported), the graph is built and run inside it.
* **Fixed cost**: the same with one item: the time to start and stop a graph (or the
  loop) that carries it, and how long the first item took to arrive. coredis is
  imported before the clock starts in both (actorflow imports it lazily, inside the
  first run: its import time is shown on its own).
* **Latency**: one item at a time (the next is sent when the previous arrived), time
  from ``emit`` (or XADD) to the sink, p50 and p99 (medians over the rounds).

Each run imports this tree's actorflow (``--other``'s for that variant), compiled as an
installed package is (``PYTHONDONTWRITEBYTECODE`` is dropped for the runs; the bytecode
goes to ``PYTHONPYCACHEPREFIX``, a temporary directory unless set), after one uncounted
warm-up run of each variant.

On a busy machine wall times swing; the CPU seconds of a run (``per cpu s``) move
least, so compare those first. ``--instructions`` counts what each run executes instead
(valgrind's callgrind; throughput and fixed cost only), which load does not change: the
count moves by ~0.5% from run to run (the Redis round trips still vary a little).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
KINDS = ("local", "remote", "loop")
LABELS = {
    "local": "local link",
    "remote": "remote link",
    "loop": "hand-written loop",
    "other": "remote link (--other)",
}
OTHER: list[str] = []
"""The actorflow tree given with ``--other``, if any: its remote link runs too."""
CALLGRIND: list[str] = []
"""With ``--instructions``: the command that runs each worker under valgrind."""


class Tally:
    """The trivial sink all variants hand each item to: counts, and notes when the first
    and the last arrived."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = self.last = 0.0

    def __call__(self, item: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count == self.n:
            self.last = time.perf_counter()


def _modules(n: int, tally: Tally) -> tuple[type, type]:
    """The source and the sink: made before the clock starts, as a program defines its
    modules when it is imported (the loop's code is compiled before its clock too)."""
    import actorflow as af

    class Numbers(af.Source):
        outputs: ClassVar = {"out": af.Data}

        def start(self) -> Iterator[af.Data]:
            return (af.Data(fields={"n": i}) for i in range(n))

    class Count(af.Sink):
        inputs: ClassVar = {"in": af.Data}

        def consume(self, data: af.Data) -> None:
            tally(data)

    return Numbers, Count


def _actorflow_run(url: str | None, batch: int, buffer: int, modules: tuple[type, type]) -> str:
    """Run source -> sink through a local (no url) or remote link; return the graph's name."""
    import actorflow as af

    Numbers, Count = modules
    graph = af.Graph(name=f"bench-{uuid.uuid4().hex[:8]}")
    graph.add("numbers", Numbers)
    graph.add("count", Count)
    remote = af.Remote(url=url, batch=batch) if url else None
    graph.link("numbers", "count", remote=remote, buffer=buffer)
    af.run(graph)
    return graph.name


def _actorflow_latency(url: str | None, n: int) -> list[float]:
    import trio

    import actorflow as af

    sent: list[float] = []
    latencies: list[float] = []
    arrived = [trio.Event() for _ in range(n)]

    class Ping(af.Source):
        outputs: ClassVar = {"out": af.Data}

        async def start(self) -> None:
            for i in range(n):
                sent.append(time.perf_counter())
                await self.emit(af.Data(fields={"n": i}))
                await arrived[i].wait()

    class Pong(af.Sink):
        inputs: ClassVar = {"in": af.Data}

        def consume(self, data: af.Data) -> None:
            latencies.append(time.perf_counter() - sent[data.fields["n"]])
            arrived[data.fields["n"]].set()

    async def main() -> None:
        graph = af.Graph(name=f"bench-{uuid.uuid4().hex[:8]}")
        graph.add("ping", Ping)
        graph.add("pong", Pong)
        graph.link("ping", "pong", remote=af.Remote(url=url) if url else None, buffer=1000)
        async with af.open_system(graph):
            pass
        if url:
            await _forget(url, graph.name)

    trio.run(main)
    return latencies


async def _forget(url: str, graph: str) -> None:
    """Delete what a run left in Redis (its stream and per-link keys)."""
    import coredis

    async with coredis.Redis.from_url(url) as client:
        keys = [key async for key in client.scan_iter(match=f"actorflow:{graph}:*")]
        if keys:
            await client.delete(keys)


def _throughput(kind: str, url: str, n: int, batch: int, buffer: int) -> dict[str, float]:
    import trio

    tally = Tally(n)
    modules = _modules(n, tally) if kind != "loop" else None
    began, cpu = time.perf_counter(), time.process_time()
    if kind == "loop":
        import _remote_loop

        trio.run(_remote_loop.throughput, url, n, batch, buffer, 0.05, tally)
    else:
        assert modules is not None
        graph = _actorflow_run(url if kind == "remote" else None, batch, buffer, modules)
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert tally.count == n, (kind, tally.count, n)
    if kind == "remote":
        trio.run(_forget, url, graph)
    return {
        "run": took,
        "cpu": cpu,
        "first": tally.first - began,
        "last": tally.last - began,
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def worker(kind: str, mode: str, url: str, n: int, batch: int, buffer: int) -> dict[str, float]:
    """One run in this process: its figures, and what its imports took."""
    sys.path.insert(0, str(HERE))
    began = time.perf_counter()
    import actorflow

    # `import actorflow` is lazy: load the runtime now, outside the timed run, as the
    # hand-written loop has trio loaded before its clock starts.
    actorflow.run  # noqa: B018
    imports = {"import_actorflow": time.perf_counter() - began}
    if kind != "local":
        began = time.perf_counter()
        import coredis  # noqa: F401

        import actorflow._redis  # the backend a remote link loads

        imports["import_coredis"] = time.perf_counter() - began
    if mode == "throughput":
        return imports | _throughput(kind, url, n, batch, buffer)
    if kind == "loop":
        import _remote_loop
        import trio

        latencies = trio.run(_remote_loop.latency, url, n, 0.05)
    else:
        latencies = _actorflow_latency(url if kind == "remote" else None, n)
    assert len(latencies) == n, (kind, len(latencies), n)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    return imports | {"p50": p50, "p99": p99}


def measure(kind: str, mode: str, url: str, n: int, batch: int, buffer: int) -> dict[str, float]:
    """One run in a fresh process, on this tree's actorflow (not whichever one is
    installed); ``other`` is a remote link run on ``--other``'s tree."""
    env = dict(os.environ)
    tree = str(HERE.parent)
    if kind == "other":
        kind, tree = "remote", OTHER[0]
    env["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [os.environ.get("PYTHONPATH")])])
    # Compiled modules, as an installed package has them: without, each fresh process
    # compiles what it imports, and actorflow imports its Redis backend inside the run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "bench_remote_pyc"))
    command = [*CALLGRIND, sys.executable, __file__, "--worker", kind, "--mode", mode]
    command += ["--url", url, "--messages", str(n), "--batch", str(batch), "--buffer", str(buffer)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if CALLGRIND:  # "==123== Collected : 5083914658", the whole process's instructions
        collected = [line for line in out.stderr.splitlines() if "Collected :" in line]
        result["instructions"] = float(collected[-1].split()[-1])
    return result


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(HERE.parent / "tests"))
    from redis_server import RedisServer, find_redis_server

    binary = find_redis_server()
    if binary is None:
        sys.exit("no redis-server found: give --url, or install redis-server")
    directory = Path(tempfile.mkdtemp())
    redis = RedisServer(binary, directory)
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


Runs = dict[tuple[str, str, int], list[dict[str, float]]]


def _kinds() -> list[str]:
    return [*KINDS, "other"] if OTHER else list(KINDS)


def collect(url: str, args: argparse.Namespace) -> Runs:
    """Every variant once per round, interleaved."""
    remotes = [kind for kind in _kinds() if kind != "local"]
    plan = [("throughput", "local", 0, args.messages)]
    for batch in args.batch:
        plan += [("throughput", kind, batch, args.messages) for kind in remotes]
    plan += [("fixed", kind, args.batch[0], 1) for kind in _kinds()]
    if not CALLGRIND:
        plan += [("latency", kind, 1, max(10, args.pings)) for kind in _kinds()]
    runs: Runs = {(mode, kind, batch): [] for mode, kind, batch, _ in plan}
    for kind in _kinds():  # a warm-up, not counted: modules compiled, caches warm
        measure(kind, "throughput", url, 1, args.batch[0], args.buffer)
    for round_ in range(args.repeat):
        print(f"round {round_ + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        for mode, kind, batch, n in plan:
            worker_mode = "latency" if mode == "latency" else "throughput"
            runs[mode, kind, batch].append(measure(kind, worker_mode, url, n, batch, args.buffer))
    return runs


def _median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(result[key] for result in results)


def report_throughput(runs: Runs, n: int, batches: list[int]) -> None:
    """Whole-run rates, and rates net of the fixed cost (the same kind's 1-item run)."""
    print(f"{'throughput':<35} {'whole run/s':>12} {'net/s':>12} {'run s':>7} {'cpu s':>7}")
    rates: dict[tuple[str, int], tuple[float, float, float]] = {}
    for (mode, kind, batch), results in runs.items():
        if mode != "throughput":
            continue
        run = _median(results, "run")
        fixed = _median(runs["fixed", kind, batches[0]], "run")
        rates[kind, batch] = n / run, (n - 1) / max(run - fixed, 1e-9), n / _median(results, "cpu")
        label = LABELS[kind] + (f", batch {batch}" if batch else "")
        print(
            f"  {label:<33} {rates[kind, batch][0]:>12,.0f} {rates[kind, batch][1]:>12,.0f}"
            f" {run:>7.3f} {_median(results, 'cpu'):>7.3f}"
        )
    local = rates["local", 0]
    for batch in batches:
        loop = rates["loop", batch]
        for kind in ("remote", "other") if OTHER else ("remote",):
            remote = rates[kind, batch]
            print(
                f"  batch {batch}: {LABELS[kind]} / hand-written {remote[0] / loop[0]:.2f}x"
                f" whole run, {remote[1] / loop[1]:.2f}x net, {remote[2] / loop[2]:.2f}x per cpu s"
                f" (target >= 0.9); / local {remote[0] / local[0]:.3f}x whole run"
            )


def report_instructions(runs: Runs, n: int, batches: list[int]) -> None:
    """Instructions per item (valgrind's count: the same on a busy machine as on an idle
    one), net of the same variant's 1-item run, and the loop's count over the link's."""
    print(f"instructions per item (callgrind, net of the 1-item run): {'':>10}")
    net: dict[tuple[str, int], float] = {}
    for (mode, kind, batch), results in runs.items():
        if mode != "throughput" or kind == "local":
            continue
        fixed = _median(runs["fixed", kind, batches[0]], "instructions")
        net[kind, batch] = (_median(results, "instructions") - fixed) / (n - 1)
        print(f"  {LABELS[kind] + f', batch {batch}':<40} {net[kind, batch]:>10,.0f}")
    for batch in batches:
        for kind in ("remote", "other") if OTHER else ("remote",):
            ratio = net["loop", batch] / net[kind, batch]
            print(f"  batch {batch}: hand-written / {LABELS[kind]} {ratio:.3f}x (target >= 0.9)")


def report_fixed(runs: Runs, batch: int) -> None:
    print(
        f"fixed cost, 1 item (batch {batch}):"
        f"      {'run s':>7} {'cpu s':>7} {'1st item s':>11} {'end s':>7}"
    )
    for kind in _kinds():
        results = runs["fixed", kind, batch]
        run, first = _median(results, "run"), _median(results, "first")
        cpu = _median(results, "cpu")
        print(f"  {LABELS[kind]:<33} {run:>7.3f} {cpu:>7.3f} {first:>11.3f} {run - first:>7.3f}")
    remote, loop = runs["fixed", "remote", batch], runs["fixed", "loop", batch]
    print(
        f"  remote - hand-written: {_median(remote, 'run') - _median(loop, 'run'):.3f} s;"
        f" imports (not in the above): actorflow {_median(remote, 'import_actorflow'):.3f} s,"
        f" coredis {_median(remote, 'import_coredis'):.3f} s"
    )


def report_latency(runs: Runs, pings: int) -> None:
    print(f"latency, {pings} items one at a time:   {'p50 ms':>8} {'p99 ms':>8}")
    for kind in _kinds():
        results = runs["latency", kind, 1]
        p50, p99 = _median(results, "p50") * 1000, _median(results, "p99") * 1000
        print(f"  {LABELS[kind]:<33} {p50:>8.3f} {p99:>8.3f}")
    remote, loop = runs["latency", "remote", 1], runs["latency", "loop", 1]
    print(f"  remote / hand-written p50: {_median(remote, 'p50') / _median(loop, 'p50'):.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a Redis server to use (default: start one)")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[100, 500], help="items/entry")
    parser.add_argument("--buffer", type=int, default=5000, help="link (stream) bound, items")
    parser.add_argument("--pings", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument("--other", help="another actorflow tree: run its remote link too")
    parser.add_argument("--save", type=Path, help="write every run's figures here (JSON)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions with valgrind (callgrind) instead: repeatable on a busy"
        " machine; about 50x slower, so use fewer --messages (20,000) and --repeat 1",
    )
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("throughput", "latency"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        figures = worker(
            args.worker, args.mode, args.url, args.messages, args.batch[0], args.buffer
        )
        print(json.dumps(figures))
        return 0
    if args.other:
        OTHER.append(str(Path(args.other).resolve()))
    if args.instructions:
        CALLGRIND.extend(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"])
    with server(args.url) as url:
        print(
            f"source -> sink, {args.messages:,} Data items, buffer {args.buffer};"
            f" median of {args.repeat} interleaved rounds, each run a fresh process;"
            f" Redis at {url}" + (f"; --other {OTHER[0]}" if OTHER else "")
        )
        runs = collect(url, args)
    if args.save:
        args.save.write_text(json.dumps({" ".join(map(str, k)): v for k, v in runs.items()}))
    if CALLGRIND:
        report_instructions(runs, args.messages, args.batch)
        return 0
    report_throughput(runs, args.messages, args.batch)
    report_fixed(runs, args.batch[0])
    report_latency(runs, max(10, args.pings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
