"""What one batch holding traced items costs, split into its per-batch and per-item parts.

Replays, without trio, the calls the actors of the observability benchmark's pipeline
(1 source -> 4 processors -> 1 sink) make to tracing for one batch of 100 ``Data``
items: the source sends it (choosing ``k`` items, evenly spaced), each processor takes,
sends and is done with it, the sink takes it and is done. Spans go through the SDK's
``BatchSpanProcessor`` to an exporter that discards them, as in the benchmark (its
queue made large enough to never drop one). The CPU
time of this thread (not the export thread's) per batch, less the same batch made and
not traced, for several ``k``; a straight line through them gives what a batch that
holds traced items pays once and what each traced item in it pays.

``--count`` counts instead the Python bytecodes tracing runs (``sys.settrace``, exact and
load-independent; the making of the items is not counted), per batch and per item, and
with ``--by-function`` where they run.

``--between N`` parses a 650-byte JSON document N times before each batch (what the
``--work json`` pipeline does between two traced batches at 1%, and more): the same
calls, made with tracing's code and data no longer in the CPU's caches.

    python benchmarks/bench_trace_batch.py
    python benchmarks/bench_trace_batch.py --between 200
    python benchmarks/bench_trace_batch.py --count --by-function
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

PAYLOAD = json.dumps({f"key{i}": [i, i * 1.5, f"v{i}"] for i in range(24)})
NAMES = ("src", "p0", "p1", "p2", "p3", "sink")


def _actors(gap: int) -> tuple[Any, list[Any]]:
    """The pipeline's tracing, whose source chooses one item in ``gap`` from the 6th."""
    from _otel import Discard
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from actorflow._tracing import _VERBS, ActorTracing, Tracing

    provider = TracerProvider()
    # A queue that never fills: replayed without pause, batches come faster than its
    # thread exports them, and a full queue drops each span with a logged warning.
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=2**22))
    tracing = Tracing.start("bench", 0.01, provider)
    tracing.random = lambda: 1 - 0.99 ** (gap - 0.5)  # every gap-th item
    actors = []
    for index, name in enumerate(NAMES):
        last = index == len(NAMES) - 1
        target = SimpleNamespace(spec=SimpleNamespace(target=None if last else NAMES[index + 1]))
        kind = "source" if index == 0 else "sink" if last else "processor"
        hops = ActorTracing(
            tracing,
            name,
            _VERBS[kind],
            origin=index == 0,
            says_done=index > 0,
            outputs={} if last else {"out": [target]},
            owner=SimpleNamespace(watched=False),
        )
        tracing.actors.append(hops)
        tracing.receivers[name] = hops
        actors.append(hops)
    return tracing, actors


def _batch(k: int, between: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """One traced batch with ``k`` chosen items, and the same batch untraced."""
    import actorflow as af

    gap = max(1, 90 // max(1, k - 1)) if k > 1 else 200
    _, (source, *rest) = _actors(gap)

    def made() -> list[Any]:
        for _ in range(between):
            json.loads(PAYLOAD)
        return [af.Data(fields={"n": n}) for n in range(100)]

    def traced() -> None:
        items = made()
        source.skip = 5
        source("message.sent", items, "out")
        for hops in rest:
            hops("message.received", items, "in")
            if hops.outputs:
                hops("message.sent", items, "out")
            hops("message.done", items)

    def untraced() -> None:
        made()

    return traced, untraced


def cost(k: int, between: int, number: int = 300, repeat: int = 7) -> float:
    """Microseconds of this thread's CPU a batch with ``k`` traced items adds."""
    traced, untraced = _batch(k, between)
    traced()
    timer = time.thread_time
    with_ = min(timeit.repeat(traced, number=number, repeat=repeat, timer=timer))
    without = min(timeit.repeat(untraced, number=number, repeat=repeat, timer=timer))
    return (with_ - without) / number * 1e6


def bytecodes(k: int) -> collections.Counter[str]:
    """The bytecodes a batch with ``k`` traced items runs in tracing, by function."""
    traced, _ = _batch(k, 0)
    traced()
    counted: collections.Counter[str] = collections.Counter()
    here = __file__

    def calls(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_filename == here or "actorflow/_data.py" in code.co_filename:
            return None  # the replay and the making of the items
        if code.co_name == "__init__" and "Data" in code.co_filename:
            return None
        frame.f_trace_opcodes, frame.f_trace_lines = True, False
        where = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"

        def opcodes(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                counted[where] += 1
            return opcodes

        return opcodes

    sys.settrace(calls)
    try:
        traced()
    finally:
        sys.settrace(None)
    return counted


def count(ks: list[int], by_function: bool) -> None:
    """Print the bytecodes per batch and per item (a line through ``ks``)."""
    counts = {k: bytecodes(k) for k in ks}
    totals = {k: sum(counted.values()) for k, counted in counts.items()}
    for k, total in totals.items():
        print(f"{k:>3} traced items in the batch: {total:7,} bytecodes")
    if len(totals) >= 2:
        slope, intercept = statistics.linear_regression(list(totals), list(totals.values()))
        print(f"per batch holding traced items: {intercept:,.0f}; per traced item: {slope:,.0f}")
    if by_function:
        low, high = min(ks), max(ks)
        print(f"{'k=' + str(low):>8} {'k=' + str(high):>8} {'an item':>8}  function")
        names = sorted(counts[high], key=lambda name: -counts[high][name])
        for name in names:
            one, many = counts[low][name], counts[high][name]
            print(f"{one:8,} {many:8,} {(many - one) / (high - low):8.1f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traced", type=int, nargs="+", default=[1, 2, 5, 11])
    parser.add_argument("--between", type=int, default=0, help="JSON parses between batches")
    parser.add_argument("--count", action="store_true", help="count bytecodes, not time")
    parser.add_argument("--by-function", action="store_true", help="with --count: where")
    args = parser.parse_args()
    if args.count:
        count(args.traced, args.by_function)
        return 0
    costs = {k: cost(k, args.between) for k in args.traced}
    for k, us in costs.items():
        print(f"{k:>3} traced items in the batch: {us:7.1f} us ({us / k:5.1f} us an item)")
    if len(costs) >= 2:
        slope, intercept = statistics.linear_regression(list(costs), list(costs.values()))
        print(
            f"per batch holding traced items: {intercept:.1f} us; per traced item: {slope:.1f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
