"""What metrics and traces cost: the pipeline benchmark with each switched on, side by side.

The pipeline of ``bench_pipeline.py`` (1 source -> 4 processors -> 1 sink, links of 100)
runs with ints (as there) and with ``Data`` items (which can carry a trace), each with:

- ``off``: neither metrics nor traces;
- ``metrics``: ``Settings.metrics`` served (port 0), not scraped: what the run pays;
- ``metrics+scrape``: the same, scraped every ``--scrape`` seconds (0.1: Prometheus
  scrapes every 15 s or so, this shows what a scrape costs);
- ``trace-1%`` / ``trace-100%``: ``trace_ratio`` 0.01 / 1.0, spans going through the
  SDK's ``BatchSpanProcessor`` to an exporter that discards them (100% only when asked
  with ``--variants``: at 6 spans per item it takes minutes);
- ``trace-1%-own``: ``trace_ratio`` 0.01 with an SDK provider that has no span
  processor: the spans are made and go nowhere (no batch processor's queue, no
  export thread): actorflow's own share of the cost of tracing;
- ``trace-1%-runs8``: ``trace_ratio`` 0.01 with the chosen items in runs of 8 in a row
  (``Tracing.run``): a traced batch's own cost shared by 8 items instead of 1-2;
- ``trace-1e-9``: ``trace_ratio`` 1e-9, which picks next to nothing: what tracing costs
  every item whether it is picked or not.

``--hooks async`` makes the processors' hooks ``async def`` (timed item by item for
the handling-time histogram, where sync hooks are timed by runs of items).

``--work json`` gives each processor a realistic amount of work per item (parse a
650-byte JSON document, update a dict with it: about 5 us of CPU), where the default
(``none``) passes the item on untouched, the cheapest hop there is: what tracing
costs relative to a pipeline that does something.

Modules are imported before the clock starts (``import`` is paid once per program, not
per item); the clock then covers ``open_system`` to its end, as ``bench_pipeline.py``.

Every run is a fresh Python process; the variants are interleaved round by round so a
busy machine slows all alike; the median of ``--repeat`` rounds is reported with its
ratio to ``off`` of the same items.

    python benchmarks/bench_observability.py                  # 200k items, 7 rounds
    python benchmarks/bench_observability.py --items data --variants off trace-100% \
        --messages 20000
    python benchmarks/bench_observability.py --messages 5000 --repeat 1   # smoke run
    python benchmarks/bench_observability.py --items data --work json \
        --variants off trace-1% trace-1e-9 trace-100% --messages 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, ClassVar

VARIANTS: dict[str, dict[str, Any]] = {
    "off": {},
    "metrics": {"metrics": 0},
    "metrics+scrape": {"metrics": 0},
    "trace-1%": {"trace_ratio": 0.01},
    "trace-1%-own": {"trace_ratio": 0.01},
    "trace-1%-runs8": {"trace_ratio": 0.01},
    "trace-100%": {"trace_ratio": 1.0},
    "trace-1e-9": {"trace_ratio": 1e-9},
}
ITEMS = ("int", "data")
PAYLOAD = json.dumps({f"key{i}": [i, i * 1.5, f"v{i}"] for i in range(24)} | {"name": "s-17"})


def _graph(n: int, items: str, hooks: str = "sync", work: str = "none") -> tuple[Any, Any]:
    """The pipeline, and the sink's class (whose ``total`` checks the run)."""
    import actorflow as af

    kind: Any = int if items == "int" else af.Data
    seen: dict[str, Any] = {}

    def busy(n: int) -> None:
        if work == "json":  # what a module that does something does per item
            doc = json.loads(PAYLOAD)
            doc["n"] = n
            seen.update(doc)

    class Numbers(af.Source):
        outputs: ClassVar = {"out": kind}

        def start(self) -> Iterator[Any]:
            if items == "int":
                return iter(range(n))
            return (af.Data(fields={"n": i}) for i in range(n))

    class Inc(af.Processor):
        inputs: ClassVar = {"in": kind}
        outputs: ClassVar = {"out": kind}

        def process(self, data: Any) -> Any:
            busy(1)
            return data + 1 if items == "int" else data  # Data: passed on, the cheapest hop

    class AsyncInc(Inc):
        async def process(self, data: Any) -> Any:  # type: ignore[override]
            busy(1)
            return data + 1 if items == "int" else data

    class Sum(af.Sink):
        inputs: ClassVar = {"in": kind}
        total = 0

        def consume(self, data: Any) -> None:
            Sum.total += 1

    graph = af.Graph(name="bench")
    graph.add("src", Numbers)
    for stage in range(4):
        graph.add(f"p{stage}", AsyncInc if hooks == "async" else Inc)
    graph.add("sink", Sum)
    graph.chain("src", "p0", "p1", "p2", "p3", "sink", buffer=100)
    return graph, Sum


def _provider() -> Any:
    from _otel import Discard
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider


def _free_provider() -> Any:
    """An SDK provider with no span processor: spans made, handed to no one."""
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


def worker(
    variant: str, items: str, n: int, scrape: float, hooks: str, work: str = "none"
) -> dict[str, Any]:
    """Run one pipeline in this process; its wall and CPU time."""
    import trio

    import actorflow as af
    import actorflow._metrics
    import actorflow._system
    import actorflow._tracing

    graph, sink = _graph(n, items, hooks, work)
    options: dict[str, Any] = dict(VARIANTS[variant])
    if "trace_ratio" in options:
        own = variant.endswith("-own")
        options["tracer_provider"] = _free_provider() if own else _provider()
    if variant.endswith("-runs8"):
        start = actorflow._tracing.Tracing.start

        def in_runs(graph: str, ratio: float, provider: Any, run: int = 1) -> Any:
            return start(graph, ratio, provider, 8)

        actorflow._tracing.Tracing.start = in_runs  # type: ignore[method-assign]
    scrapes = 0

    async def scraper(address: str) -> None:
        # What Prometheus asks, on a raw socket: the client's own cost is Prometheus's.
        nonlocal scrapes
        host, _, port = address.rpartition(":")
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        while True:
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(request)
                while await stream.receive_some(65536):
                    pass
            scrapes += 1
            await trio.sleep(scrape)

    async def main() -> None:
        async with af.open_system(graph, **options) as system, trio.open_nursery() as nursery:
            if variant == "metrics+scrape":
                nursery.start_soon(scraper, system.metrics_address)
            await system.wait()
            nursery.cancel_scope.cancel()

    began, cpu = time.perf_counter(), time.process_time()
    trio.run(main)
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert sink.total == n, "the pipeline lost items"
    shutdown = getattr(options.get("tracer_provider"), "shutdown", None)
    if shutdown is not None:
        shutdown()
    return {"seconds": took, "cpu": cpu, "scrapes": scrapes}


def measure(
    variant: str, items: str, n: int, scrape: float, hooks: str, work: str
) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", variant, "--items", items]
    command += ["--messages", str(n), "--scrape", str(scrape), "--hooks", hooks]
    command += ["--work", work]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


Runs = dict[tuple[str, str], list[dict[str, float]]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--scrape", type=float, default=0.1, help="seconds between scrapes")
    parser.add_argument("--items", choices=ITEMS, action="append")
    parser.add_argument("--hooks", choices=("sync", "async"), default="sync")
    parser.add_argument("--work", choices=("none", "json"), default="none")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=["off", "metrics", "metrics+scrape", "trace-1%", "trace-1%-own", "trace-1e-9"],
    )
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        (items,) = args.items
        result = worker(args.worker, items, args.messages, args.scrape, args.hooks, args.work)
        print(json.dumps(result))
        return 0
    n = args.messages
    kinds = args.items or list(ITEMS)
    runs: Runs = {}
    for _ in range(args.repeat):
        for items in kinds:
            for variant in args.variants:
                result = measure(variant, items, n, args.scrape, args.hooks, args.work)
                runs.setdefault((items, variant), []).append(result)
    print(
        f"pipeline: 1 source -> 4 {args.hooks} processors (work: {args.work}) -> 1 sink, "
        f"{n:,} items, "
        f"{args.repeat} rounds"
    )
    print("wall: elapsed time; cpu: the process's CPU time (steadier on a busy machine)")
    print(f"{'items':<6} {'variant':<15} {'items/s':>10} {'wall':>8} {'cpu':>8}   (medians)")
    for items in kinds:
        _report(items, args.variants, runs, n)
    return 0


def _report(items: str, variants: list[str], runs: Runs, n: int) -> None:
    def median(variant: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[(items, variant)])

    base_wall, base_cpu = median(variants[0], "seconds"), median(variants[0], "cpu")
    for variant in variants:
        wall, cpu = median(variant, "seconds"), median(variant, "cpu")
        print(
            f"{items:<6} {variant:<15} {n / wall:>10,.0f} {wall / base_wall:>7.3f}x"
            f" {cpu / base_cpu:>7.3f}x"
        )
        ratio = VARIANTS[variant].get("trace_ratio")
        if ratio and ratio >= 1e-3 and items == "data" and variant != variants[0]:
            price = (cpu - base_cpu) / (n * ratio) * 1e6
            print(f"{'':<22} {price:,.0f} us of CPU per traced item (6 spans)")


if __name__ == "__main__":
    sys.exit(main())
