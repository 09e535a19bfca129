"""What the tracing benchmarks share: an exporter that discards the spans it is given,
so a run measures making and queueing spans, not sending them anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Discard(SpanExporter):
    """Takes every batch of spans and drops it (the batch processor's thread still runs)."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass
