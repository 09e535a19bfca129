"""The floor under tracing's cost: what the OpenTelemetry SDK's part of a traced item
costs, with actorflow's own bookkeeping taken as free.

A traced item on the pipeline of ``bench_observability.py`` (1 source -> 4 processors
-> 1 sink) gets six spans: the source's root and one per hop. Each must reach the
provider's span processor as a ``ReadableSpan``; with the SDK's ``BatchSpanProcessor``
(what production uses) its export thread then takes them off the queue in batches and
hands them to the exporter. This script builds six spans the cheapest way actorflow
knows (a ``ReadableSpan`` filled from a template of its fields, see
``actorflow._tracing``), queues them as tracing does (one ``extendleft`` per batch of
spans), lets the export thread hand them to an exporter that discards them, and
measures the process's CPU time, both threads. It then runs the pipeline with tracing
off (a fresh process, as ``bench_observability.py`` does) for its CPU per item, and
prints what tracing would cost at ``--ratio`` if actorflow's own work were free::

    floor = ratio * (SDK CPU per traced item) / (pipeline CPU per item, tracing off)

Warm caches and a tight loop make the SDK's share here its best case; in a pipeline a
traced batch comes every ~100 batches at 1%, its code and data cold by then.

    python benchmarks/bench_span_floor.py                    # pass-through hops
    python benchmarks/bench_span_floor.py --work json        # ~5 us of work per hop
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' helpers

SPANS_PER_ITEM = 6
"""The root (the source) and one span per hop (four processors, the sink)."""

FLUSH_EVERY = 256
"""Traced items between two waits for the export thread: the processor's queue (2,048
spans by default) never fills, so no span is dropped (dropping costs less)."""


def sdk_cpu_per_item(items: int) -> float:
    """CPU seconds (both threads) the SDK's part of ``items`` traced items takes."""
    from _otel import Discard
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

    from actorflow._tracing import _Queue, _span_template

    processor = BatchSpanProcessor(Discard())
    queue = _Queue(processor)
    template = _span_template(
        Resource.create({"service.name": "floor"}),
        InstrumentationScope("actorflow"),
        SpanKind.CONSUMER,
    )
    assert template is not None, "the SDK's span fields are not as actorflow knows them"
    flags = TraceFlags(1)
    began = time.process_time()
    for index in range(1, items + 1):
        trace_id = random.getrandbits(128)
        parent = SpanContext(trace_id, random.getrandbits(64), False, flags)
        spans = []
        for hop in range(SPANS_PER_ITEM):
            own = SpanContext(trace_id, random.getrandbits(64), False, flags)
            span = ReadableSpan.__new__(ReadableSpan)
            span.__dict__ = fields = template.copy()
            fields["_name"] = f"hop-{hop} process"
            fields["_context"] = own
            fields["_parent"] = parent
            fields["_start_time"] = fields["_end_time"] = time.time_ns()
            fields["_attributes"] = {"actorflow.actor": f"hop-{hop}", "message.id": "x"}
            spans.append(span)
            parent = own
        queue.put(spans)
        if not index % FLUSH_EVERY:  # the queue never fills at 1% in a pipeline: nor here
            processor.force_flush()
    processor.force_flush()
    spent = time.process_time() - began
    processor.shutdown()
    return spent / items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--traced", type=int, default=20_000, help="traced items to time")
    parser.add_argument("--messages", type=int, default=100_000, help="pipeline items")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", choices=("none", "json"), default="none")
    args = parser.parse_args()
    import bench_observability

    sdk, pipeline = [], []
    for _ in range(args.repeat):  # interleaved, as the other benchmarks
        sdk.append(sdk_cpu_per_item(args.traced))
        run = bench_observability.measure("off", "data", args.messages, 0.1, "sync", args.work)
        pipeline.append(run["cpu"] / args.messages)
    per_traced, per_item = statistics.median(sdk), statistics.median(pipeline)
    floor = args.ratio * per_traced / per_item
    print(f"SDK's part of one traced item ({SPANS_PER_ITEM} spans): {per_traced * 1e6:.1f} us CPU")
    print(f"pipeline (work: {args.work}), tracing off: {per_item * 1e6:.2f} us CPU per item")
    print(f"floor at ratio {args.ratio:g}: {1 + floor:.3f}x the CPU off (actorflow's part free)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
