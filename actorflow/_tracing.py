"""OpenTelemetry traces: a span per sampled item per hop, one trace per item.

Where an untraced :class:`~actorflow.Data` item enters the graph (sent by an actor that
has taken no ``Data`` itself: a source, or a processor that makes ``Data`` of other
items), a share of ``Settings.trace_ratio`` of the items is chosen: each gets a root
span and carries its W3C ``traceparent`` in :attr:`Data.trace`. Every actor that then
takes it from its mailbox starts a child span; every copy of it the actor sends on (the
same ``id``: ``Data.evolve`` and ``with_fields`` keep it) carries that span's context,
so it is the span's child. The span ends when the actor is done with the item: at its
last send if it was sent on, else when the actor has handled (or failed, filtered,
consumed) the batch it came in; it is marked with an error if the actor's hook raised
on it. ``Data.trace`` is encoded with the item, so a remote link carries the trace into
the next process.

The actor calls its ``hops`` once per batch sent, taken or done with (see
``Actor.trace``); what costs per item runs only for batches that hold a traced item,
and the choice of items costs one subtraction per batch (the gaps between chosen items
are drawn, not each item). Actors whose ports cannot carry ``Data`` get no hook at all.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from itertools import compress, count
from operator import attrgetter
from time import time_ns
from typing import Any, Final

import attrs
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._data import Data
from ._exceptions import ActorflowError, describe
from ._logging import get_logger
from ._ports import Port, is_compatible
from ._version import __version__

__all__ = ["ActorTracing", "Tracing", "provider_from_environment"]

RECEIVED: Final = "message.received"
SENT: Final = "message.sent"
DONE: Final = "message.done"
"""The actor is done with a batch it took: handled, failed, or given back."""
FAILED: Final = "message.failed"
"""The actor's hook raised on these items."""

_NEVER: Final = 1e18
_DATA_ONLY: Final = frozenset({Data})
_MAX_BATCHES: Final = 100_000
"""Batches whose spans may be open at once in one actor (more than any crew takes at
once): beyond, the oldest end, so an actor that never reports one done holds no more."""
_ERROR: Final = Status(StatusCode.ERROR, "the actor's hook raised on this item")
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACE_OF: Final = attrgetter("trace")
_VERBS: Final = {"source": "send", "processor": "process", "sink": "consume"}
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (what the propagator's ``inject`` writes,
    written directly: a third of its cost, paid at every hop of a traced item)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _parent(traceparent: str) -> Context:
    """The context a ``traceparent`` names; a version-00 value is read directly (a
    third of ``extract``'s cost), anything else by the propagator."""
    found = _TRACEPARENT.fullmatch(traceparent)
    if found is None:
        return _PROPAGATOR.extract({"traceparent": traceparent}, Context())
    trace_id, span_id, flags = found.groups()
    remote = SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)))
    return trace.set_span_in_context(NonRecordingSpan(remote), Context())


def _traced(items: list[Any]) -> list[Any]:
    """The items that carry a trace, picked at C speed in a batch of nothing but
    ``Data`` (item by item otherwise: only a ``Data``'s ``trace`` is ever read, so an
    item whose ``trace`` is something else, a pandas column, is never asked)."""
    if _only_data(items):
        return list(compress(items, map(_TRACE_OF, items)))
    return [item for item in items if isinstance(item, Data) and item.trace is not None]


def _traced_data(items: list[Any]) -> list[Any]:
    """:func:`_traced` for an actor whose inputs take ``Data`` only: the batch is read
    at C speed without a look at the types first, and by :func:`_traced` if that
    fails (an item that is no ``Data`` after all)."""
    try:
        return list(compress(items, map(_TRACE_OF, items)))
    except Exception:
        return _traced(items)


def _traced_at(items: list[Any]) -> list[int]:
    """Where in ``items`` the items that carry a trace are, as :func:`_traced`."""
    if _only_data(items):
        return list(compress(count(), map(_TRACE_OF, items)))
    return [i for i, item in enumerate(items) if isinstance(item, Data) and item.trace]


def _only_data(items: list[Any]) -> bool:
    """Whether every item is exactly a ``Data`` (a set of their types, at C speed)."""
    return set(map(type, items)) <= _DATA_ONLY


def _holds_data(items: list[Any]) -> bool:
    return any(issubclass(kind, Data) for kind in set(map(type, items)))


def _takes_only_data(ports: Iterable[Port]) -> bool:
    """Whether every input port is typed ``Data`` (or a subclass): its items are."""
    listed = list(ports)
    return bool(listed) and all(
        isinstance(port.type, type) and issubclass(port.type, Data) for port in listed
    )


def _carries_data(ports: Iterable[Port]) -> bool:
    return any(is_compatible(Data, port.type) for port in ports)


@attrs.define(slots=True, eq=False)
class _Hop:
    """One item's span in one actor: open until the actor is done with the item."""

    span: Span
    id: str
    parent: str
    """The traceparent the item came with: a copy sent on that carries it is a copy
    of this item (copies of one id from two traces may be in the actor at once)."""
    traceparent: str | None
    """Given to every copy of the item the actor sends on: each is the span's child."""
    sent_at: int = 0
    """When a copy was last sent on (0: none was); the span ends there."""


@attrs.define(slots=True, eq=False)
class ActorTracing:
    """One actor's spans: called with each batch it takes, sends, is done with.

    Invariants: ``open`` holds every span still open, by item id (a list: copies of one
    item may be in the actor at once); ``batches`` holds the same spans by the batch
    they were opened for (``id()`` of the list taken, kept alive with them). A span
    ends when the actor says it is done with its batch (handled, failed or given
    back), at the item's last send if it was sent on; an actor that never says so (a
    progressive module) ends them when it takes its next batch; the rest at the end.
    """

    tracing: Tracing
    name: str
    verb: str
    origin: bool
    """Untraced ``Data`` it sends may be chosen: it sends ``Data`` and has taken none
    so far (a source, or a processor that makes ``Data`` of other items)."""
    says_done: bool
    """It reports each batch it is done with (processors and sinks)."""
    data_only: bool = False
    """Its input ports are all typed ``Data``: batches are read without a type check."""
    logs: bool = False
    """Its debug log is on: the actor logs the ids of what it sends and takes too."""
    open: dict[str, list[_Hop]] = attrs.field(factory=dict)
    batches: dict[int, tuple[list[Any], list[_Hop]]] = attrs.field(factory=dict)
    last: int = 0
    skip: int = 0
    """How many more items it sends before the next one chosen."""
    warned: bool = False

    def __call__(self, event: str, items: list[Any]) -> bool:
        """Spans for a batch the actor sends or takes (or is done with, or an item
        that failed); whether it should log it too.

        Tracing never fails the actor: what goes wrong here (a broken tracer) is
        logged once per actor, and the items go on untraced.
        """
        try:
            if event == SENT:
                if self.open:
                    self._pass_on(items)
                if self.origin:
                    self._choose(items)
            elif event == RECEIVED:
                if self.batches and not self.says_done:
                    self._end_all(self.last)
                if self.origin and _holds_data(items):
                    self.origin = False  # it passes Data on: where they start is upstream
                traced = _traced_data(items) if self.data_only else _traced(items)
                if traced:
                    self._open(traced, items)
            elif event == DONE:
                if self.batches:
                    self._done(items)
            elif event == FAILED and self.open:
                self._fail(items)
        except Exception as exc:
            self._failed(exc)
        return self.logs

    def _failed(self, exc: Exception) -> None:
        if not self.warned:
            self.warned = True
            get_logger().warning("tracing.failed", actor=self.name, error=describe(exc))

    def _open(self, traced: Iterable[Any], items: list[Any]) -> None:
        now = self.last = time_ns()
        tracer, open_hops = self.tracing.tracer, self.open
        hops: list[_Hop] = []
        for item in traced:
            span = tracer.start_span(
                f"{self.name} {self.verb}",
                context=_parent(item.trace),
                kind=SpanKind.CONSUMER,
                start_time=now,
                attributes={"actorflow.actor": self.name, "message.id": item.id},
            )
            hop = _Hop(span, item.id, item.trace, _traceparent(span))
            hops.append(hop)
            open_hops.setdefault(item.id, []).append(hop)
        key = id(items)
        stale = self.batches.pop(key, None)  # a batch never reported done, its id reused
        if stale is not None:
            self._end(stale[1], now)
        self.batches[key] = (items, hops)
        if len(self.batches) > _MAX_BATCHES:  # never reported done: end the oldest
            self._end(self.batches.pop(next(iter(self.batches)))[1], now)

    def _pass_on(self, items: list[Any]) -> None:
        """Items it took are sent on: each copy carries the context of the span of the
        item it is a copy of (the same id and trace), whose end moves to this send."""
        now = self.last = time_ns()
        open_hops = self.open
        # What it sends on still carries the trace it came with: only those can match.
        for index in _traced_at(items):
            item = items[index]
            if isinstance(item, Data):
                hops = open_hops.get(item.id)
                if hops:
                    hop = next((hop for hop in hops if hop.parent == item.trace), hops[0])
                    hop.sent_at = now
                    if hop.traceparent is not None:
                        items[index] = item.evolve(trace=hop.traceparent)

    def _done(self, items: list[Any]) -> None:
        """The actor is done with a batch it took: its spans end (sent on: at the last
        send; filtered or failed: now)."""
        entry = self.batches.pop(id(items), None)
        if entry is not None:
            self._end(entry[1], time_ns())

    def _fail(self, items: list[Any]) -> None:
        """The actor's hook raised on these items: their spans say so."""
        for item in items:
            if isinstance(item, Data):
                for hop in self.open.get(item.id, ()):
                    hop.span.set_status(_ERROR)

    def _end(self, hops: list[_Hop], now: int) -> None:
        open_hops = self.open
        for hop in hops:
            same = open_hops.get(hop.id)
            if same is not None:
                same.remove(hop)
                if not same:
                    del open_hops[hop.id]
            hop.span.end(end_time=hop.sent_at or now)

    def _end_all(self, now: int) -> None:
        for _, hops in self.batches.values():
            self._end(hops, now)
        self.batches.clear()

    def _choose(self, items: list[Any]) -> None:
        """Start a trace for the chosen items among ``items``."""
        skip, count = self.skip, len(items)
        if skip >= count:
            self.skip = skip - count
            return
        index = skip
        while index < count:
            item = items[index]
            if isinstance(item, Data) and item.trace is None:
                items[index] = self._root(item)
            index += self.tracing.gap()
        self.skip = index - count

    def _root(self, item: Data) -> Data:
        now = time_ns()
        span = self.tracing.tracer.start_span(
            f"{self.name} {self.verb}",
            context=Context(),
            kind=SpanKind.PRODUCER,
            start_time=now,
            attributes=_root_attributes(self.tracing.graph, self.name, item),
        )
        span.end(end_time=now)
        traceparent = _traceparent(span)
        return item if traceparent is None else item.evolve(trace=traceparent)

    def close(self) -> None:
        """The system ended: end what is still open (the actor was stopped while it
        held these items)."""
        self._end_all(time_ns())


def _root_attributes(graph: str, actor: str, item: Data) -> dict[str, str]:
    """The root span's attributes: where the item entered which graph (every span of
    a trace costs per attribute: the others name their actor and the item only)."""
    attributes = {"actorflow.graph": graph, "actorflow.actor": actor, "message.id": item.id}
    if item.origin is not None:
        attributes["message.origin"] = item.origin
    return attributes


@attrs.define(eq=False)
class Tracing:
    """One system's tracing: its tracer, its ratio and each actor's spans."""

    graph: str
    ratio: float
    tracer: Tracer
    actors: list[ActorTracing] = attrs.field(factory=list)
    random: Callable[[], float] = random.random
    can_start: bool = False
    """Some actor's outputs can carry ``Data``: a trace can start somewhere."""

    @classmethod
    def start(cls, graph: str, ratio: float, provider: TracerProvider | None) -> Tracing:
        """Tracing through ``provider`` (the global one if ``None``)."""
        provider = provider if provider is not None else trace.get_tracer_provider()
        return cls(graph, ratio, provider.get_tracer("actorflow", __version__))

    def gap(self) -> int:
        """How many items from one chosen item to the next (at least 1): geometric, so
        each item is chosen with probability ``ratio``, at one draw per chosen item."""
        if self.ratio >= 1.0:
            return 1
        # log1p: ``log(1 - ratio)`` is 0 for a ratio below 1e-16 (a division by zero);
        # a drawn gap beyond 10**18 items (or infinite) is as good as never.
        drawn = math.log1p(-self.random()) / math.log1p(-self.ratio)
        return 1 + int(min(drawn, _NEVER))

    def for_actor(
        self, name: str, kind: str, ports: tuple[Iterable[Port], Iterable[Port]], *, logs: bool
    ) -> ActorTracing | None:
        """The hook of one actor (its input and output ``ports``; whether its debug log
        is on), or ``None`` if its ports carry no ``Data``."""
        takes, sends = _carries_data(ports[0]), _carries_data(ports[1])
        self.can_start = self.can_start or sends
        if not (takes or sends):
            return None
        hops = ActorTracing(
            self,
            name,
            _VERBS.get(kind, "step"),
            origin=sends,
            says_done=kind in ("processor", "sink"),
            data_only=_takes_only_data(ports[0]),
            logs=logs,
        )
        hops.skip = self.gap() - 1
        self.actors.append(hops)
        return hops

    def close(self) -> None:
        """The system ended: end every span still open; say so if nothing could be
        traced (no actor sends ``Data``, the only items that carry a trace)."""
        for hops in self.actors:
            hops.close()
        if not self.can_start:
            get_logger().warning(
                "tracing.nothing_traced",
                trace_ratio=self.ratio,
                reason="no actor's output port can carry Data, the only items traced",
            )


class TracingUnavailable(ActorflowError, ImportError):
    """Tracing was asked for without OpenTelemetry installed."""


def provider_from_environment() -> tuple[TracerProvider, Callable[[], None]]:
    """A tracer provider for ``actorflow run --trace-ratio``, and how to flush it.

    The global provider if the program was started with one (``opentelemetry-instrument``);
    else an SDK provider exporting through ``OTEL_TRACES_EXPORTER`` (default ``otlp``,
    ``console``, ``none``, comma-separated), as OpenTelemetry's own tools read it.

    Raises:
        TracingUnavailable: An exporter it names is not installed.
    """
    current = trace.get_tracer_provider()
    if isinstance(current, SdkTracerProvider):
        return current, lambda: None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "actorflow"}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip()
        if name and name != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider, provider.shutdown


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        hint = " (pip install opentelemetry-exporter-otlp)" if name == "otlp" else ""
        raise TracingUnavailable(
            f"OTEL_TRACES_EXPORTER names {name!r}, which is not installed{hint}; "
            "'console' prints spans, 'none' exports nothing"
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter
