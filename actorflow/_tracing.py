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
the next process. Items the actor took and gave back unhandled (its incarnation ended:
a crash, a stop) lose that take's span: the take that handles them makes theirs.

The actor calls its ``hops`` for a batch sent, taken or done with only while its
``watched`` is on (see ``Actor.trace`` and :meth:`ActorTracing._settle`): while a
traced item may be on its way to it (its sender says so, :meth:`Tracing.mark`) or in
it, while it chooses items (the gaps between chosen items are drawn, not each item), or
while it takes from a remote link. An untraced batch elsewhere costs one attribute
read. Actors whose ports cannot carry ``Data`` get no hook at all. Spans of the SDK's
usual setup are built whole at their end (:class:`_Direct`), others go through
``start_span`` (:class:`_ViaTracer`).
"""

from __future__ import annotations

import math
import os
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from itertools import compress, count, islice
from operator import attrgetter, is_
from time import time_ns
from typing import Any, Final, Protocol

import attrs
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
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
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from ._data import Data
from ._exceptions import ActorflowError, describe
from ._logging import get_logger
from ._module import ModuleKind
from ._ports import Port, is_compatible
from ._specs import ModuleSpec
from ._version import __version__

__all__ = ["ActorTracing", "Tracing", "provider_from_environment"]

RECEIVED: Final = "message.received"
SENT: Final = "message.sent"
DONE: Final = "message.done"
"""The actor is done with a batch it took: handled, failed, or given back."""
FAILED: Final = "message.failed"
"""The actor's hook raised on these items."""
RETURNED: Final = "message.returned"
"""Items the actor took but did not handle went back to their link (its incarnation
ended, a crash or a stop): they are taken again, and only that take's span is theirs."""
RETURNED_ATTRIBUTE: Final = "actorflow.returned"
"""On a span ``start_span`` made for an item that went back unhandled (see ``drop``)."""

_NEVER: Final = 1e18
_DATA_ONLY: Final = frozenset({Data})
_MAX_BATCHES: Final = 100_000
"""Batches whose spans may be open at once in one actor (more than any crew takes at
once): beyond, the oldest end, so an actor that never reports one done holds no more."""
_MARKS: Final = 64
"""Batches sent whose traced items' places are kept for a fused receiver (one taken
from a link is a new list: its mark ages out)."""
_WATCH: Final = 100
"""Batches read whole after a hook raised (what failed may come back in one)."""
_MADE: Final = 4096
_HELD: Final = 1024
_HELD_FOR: Final = 60 * 10**9
"""Traced items an actor was done with but did not send on are looked for in what it
sends for a minute (at most ``_HELD`` of them): a window may send them later."""
_EXPECTED_FOR: Final = 60 * 10**9
"""Traced items expected and none found for a minute: they were lost on the way (a
lossy link dropped them, the link was removed), and the actor stops reading every
batch it takes for them (an untraced batch costs it nothing again)."""
_ERROR: Final = Status(StatusCode.ERROR, "the actor's hook raised on this item")
_UNSET: Final = Status(StatusCode.UNSET)
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_NO_STATE: Final = DEFAULT_TRACE_STATE
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACE_OF: Final = attrgetter("trace")
_ITEM_OF: Final = attrgetter("item")
_NO_MARK: Final = (None, None)
_DATA_FIELDS: Final = tuple(field.name for field in attrs.fields(Data))
_FIELDS_OF: Final = attrgetter(*_DATA_FIELDS)
_NEW: Final = object.__new__
_TUPLE_NEW: Final = tuple.__new__
_SET: Final = object.__setattr__
_VERBS: Final = {"source": "send", "processor": "process", "sink": "consume"}
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _traceparent(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (what the propagator's ``inject`` writes,
    written directly: a third of its cost, paid at every hop of a traced item)."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _no_bits(_: int) -> int:
    """No id drawn: the id generator's call makes it (see :meth:`_Direct.open`)."""
    return 0


def _parent(traceparent: str) -> Context:
    """The context a ``traceparent`` names (see :func:`_parent_context`)."""
    remote = _parent_context(traceparent)
    if remote is None:
        return _PROPAGATOR.extract({"traceparent": traceparent}, Context())
    return trace.set_span_in_context(NonRecordingSpan(remote), Context())


def _parent_context(traceparent: str) -> SpanContext | None:
    """The span a version-00 ``traceparent`` names, read directly (a third of the
    propagator's ``extract``); ``None`` for anything else (the propagator reads it)."""
    found = _TRACEPARENT.fullmatch(traceparent)
    if found is None:
        return None
    trace_id, span_id, flags = found.groups()
    remote = SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)))
    return remote if remote.is_valid else None


def _traced_at(items: list[Any]) -> list[int]:
    """Where in ``items`` the items that carry a trace are (only a ``Data``'s
    ``trace`` is read: an item whose ``trace`` is something else, a pandas column,
    is never asked)."""
    if _only_data(items):
        return list(compress(count(), map(_TRACE_OF, items)))
    return [i for i, item in enumerate(items) if isinstance(item, Data) and item.trace]


def _only_data(items: list[Any]) -> bool:
    """Whether every item is exactly a ``Data`` (a set of their types, at C speed)."""
    return set(map(type, items)) <= _DATA_ONLY


def _holds_data(items: list[Any]) -> bool:
    return any(issubclass(kind, Data) for kind in set(map(type, items)))


def _carries_data(ports: Iterable[Port]) -> bool:
    return any(is_compatible(Data, port.type) for port in ports)


@attrs.define(slots=True, eq=False)
class _Hop:
    """One item's span in one actor: open until the actor is done with the item."""

    id: str
    parent: str
    """The traceparent the item came with: a copy sent on that carries it is a copy
    of this item (copies of one id from two traces may be in the actor at once)."""
    traceparent: str | None
    """Given to every copy of the item the actor sends on: each is the span's child."""
    span: Any
    """What the span maker keeps of it until it ends: the span (``start_span``'s), or
    its own context (:class:`_Direct`'s, ``None`` if not sampled)."""
    came: SpanContext | None = None
    """:class:`_Direct`'s: the parent span's context (``None``: a trace starts here)."""
    start: int = 0
    item: Any = None
    """The very item taken: what is sent at its place is a copy of it if it is it
    (identity, read at C speed; else its id and trace are compared)."""
    sent_at: int = 0
    """When a copy was last sent on (0: none was); the span ends there."""
    failed: bool = False
    returned: bool = False
    """The item went back to its link unhandled: its span is dropped, never exported."""


class _Spans(Protocol):
    """Makes the spans: ``open`` a batch's hops, ``end`` them, ``root`` one that starts
    and ends at once. One call per batch: its items' spans are made in one loop."""

    def open(
        self, name: str, actor: str, items: list[Any], at: Iterable[int], now: int
    ) -> list[_Hop]:
        """The hops of the traced ``items`` ``at`` these places, taken ``now``."""

    def end(self, hops: Iterable[_Hop], now: int, name: str, actor: str) -> None:
        """End each hop's span (``name``, of ``actor``) at its last send, else ``now``."""

    def drop(self, hop: _Hop, end_time: int) -> None:
        """The hop's item went back unhandled: its span is not the item's."""

    def roots(self, name: str, now: int, made: list[dict[str, str]]) -> list[str | None]:
        """A root span for each item, of these attributes, that starts and ends
        ``now``: the traceparent each item carries (``None``: not sampled)."""


@attrs.define(eq=False)
class _ViaTracer:
    """Spans through the tracer's ``start_span`` (any OpenTelemetry tracer)."""

    tracer: Tracer

    def open(
        self, name: str, actor: str, items: list[Any], at: Iterable[int], now: int
    ) -> list[_Hop]:
        start, hops = self.tracer.start_span, []
        for index in at:
            item = items[index]
            attributes = {"actorflow.actor": actor, "message.id": item.id}
            context = _parent(item.trace)
            kind = SpanKind.CONSUMER
            span = start(name, context, kind=kind, attributes=attributes, start_time=now)
            hops.append(_Hop(item.id, item.trace, _traceparent(span), span, None, 0, item))
        return hops

    def end(self, hops: Iterable[_Hop], now: int, name: str, actor: str) -> None:
        for hop in hops:
            if hop.returned:  # dropped already
                continue
            span: Span = hop.span
            if hop.failed:
                span.set_status(_ERROR)
            span.end(end_time=hop.sent_at or now)

    def drop(self, hop: _Hop, end_time: int) -> None:
        """A started span is ended (its processors saw it start), marked as not the
        item's: it went back to its link unhandled and is taken again."""
        span: Span = hop.span
        span.set_attribute(RETURNED_ATTRIBUTE, True)
        span.end(end_time=end_time)

    def roots(self, name: str, now: int, made: list[dict[str, str]]) -> list[str | None]:
        traceparents = []
        for attributes in made:
            span = self.tracer.start_span(
                name, Context(), kind=SpanKind.PRODUCER, start_time=now, attributes=attributes
            )
            span.end(end_time=now)
            traceparents.append(_traceparent(span))
        return traceparents


_SPAN_FIELDS: Final = frozenset(
    {"_name", "_context", "_parent", "_kind", "_status", "_start_time", "_end_time"}
    | {"_attributes", "_resource", "_instrumentation_scope", "_events", "_links"}
)
"""What :class:`_Direct` writes of a ``ReadableSpan`` (its constructor's own names)."""


def _span_template(
    resource: Resource, scope: InstrumentationScope, kind: SpanKind
) -> dict[str, Any] | None:
    """A ``ReadableSpan``'s fields as its constructor sets them for one of ours, to be
    copied and filled per span (a third of the constructor's cost); ``None`` if the
    SDK names them otherwise than :data:`_SPAN_FIELDS` (then the constructor is used)."""
    made = ReadableSpan(
        name="", resource=resource, kind=kind, status=_UNSET, instrumentation_scope=scope
    )
    fields = getattr(made, "__dict__", None)
    if type(fields) is not dict or not _SPAN_FIELDS.issubset(fields):
        return None
    return dict(fields)


_FORKS: Final = [0]
"""How many forks made this process (see :class:`_Queue`)."""


def _forked() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_forked)


@attrs.define(eq=False)
class _Queue:
    """Hands a batch's spans to a ``BatchSpanProcessor``'s queue at once, as its
    ``on_end`` does one by one (one check of its state, one ``extendleft``): for the
    SDK's own processor only, whose queue it reads by private names (pinned in
    tests/test_tracing_spans.py); any other processor gets ``on_end`` per span."""

    processor: SpanProcessor
    batch: Any = None
    """The SDK's ``BatchProcessor`` behind ``processor``, if its names are as known."""
    forks: int = attrs.field(factory=lambda: _FORKS[0])
    """The process's forks when it was made: in a child, ``on_end`` (which resets the
    processor for it, as it checks by pid) takes over (a pid read per batch costs a
    system call)."""
    queue: Any = None
    """The batch processor's queue and what it reads of it, read once (a fork, which
    replaces some, is noticed by ``forks``)."""
    limit: int = 0
    export_at: int = 0
    awaken: Any = None

    def __attrs_post_init__(self) -> None:
        inner: Any = getattr(self.processor, "_batch_processor", None)
        known = ("_queue", "_shutdown", "_pid", "_max_queue_size", "_max_export_batch_size")
        if type(self.processor) is BatchSpanProcessor and all(
            hasattr(inner, name) for name in (*known, "_worker_awaken")
        ):
            self.batch = inner
            self.queue = inner._queue
            self.limit = inner._max_queue_size
            self.export_at = inner._max_export_batch_size
            self.awaken = inner._worker_awaken

    def put(self, spans: list[ReadableSpan]) -> None:
        queue = self.queue
        if (
            queue is None
            or self.batch._shutdown
            or self.forks != _FORKS[0]
            or len(queue) + len(spans) > self.limit
        ):  # its own on_end says why it drops them (shut down, full) or resets a fork
            for span in spans:
                self.processor.on_end(span)
            return
        queue.extendleft(spans)
        if len(queue) >= self.export_at and not self.awaken.is_set():
            self.awaken.set()


@attrs.define(eq=False)
class _Direct:
    """Spans made whole at their end and handed to the provider's processors.

    ``start_span`` costs ~25 us a span (a sampler, a lock, a mutable span copied at
    its end); a span known whole at its end is one :class:`ReadableSpan`, ~1 us. Used
    only where that is all ``start_span`` would do (see :func:`_spans_for`): a hop's
    span is open while its fields (a dict, the span's own to be) are all it holds.
    """

    processor: SpanProcessor
    resource: Resource
    ids: IdGenerator
    scope: InstrumentationScope = attrs.field(
        factory=lambda: InstrumentationScope("actorflow", __version__)
    )
    root_flags: TraceFlags = attrs.field(init=False)
    """A new trace's flags, as the SDK sets them: sampled, and whether the id
    generator's trace ids are random (W3C level 2)."""
    made: dict[str, SpanContext] = attrs.field(factory=dict)
    """The contexts of the last spans made here, by traceparent: the next hop in this
    process finds its parent without reading the text (see :func:`_trim`)."""
    random_ids: bool = attrs.field(init=False)
    """The SDK's own random ids: a span id is drawn directly (see :meth:`open`)."""
    hop_fields: dict[str, Any] | None = attrs.field(init=False)
    root_fields: dict[str, Any] | None = attrs.field(init=False)
    handoff: tuple[tuple[SpanProcessor, ...], Callable[[list[ReadableSpan]], None]] = (
        (),
        lambda spans: None,
    )
    """The provider's processors as last read, and what hands spans to each."""

    def __attrs_post_init__(self) -> None:
        random_ids = getattr(self.ids, "is_trace_id_random", lambda: False)()
        self.root_flags = TraceFlags(_SAMPLED | (TraceFlags.RANDOM_TRACE_ID * bool(random_ids)))
        self.random_ids = type(self.ids) is RandomIdGenerator
        self.hop_fields = _span_template(self.resource, self.scope, SpanKind.CONSUMER)
        self.root_fields = _span_template(self.resource, self.scope, SpanKind.PRODUCER)

    def open(
        self, name: str, actor: str, items: list[Any], at: Iterable[int], now: int
    ) -> list[_Hop]:
        made, span_id, hops = self.made, self.ids.generate_span_id, []
        # The SDK's default ids are random.getrandbits(64), redrawn if 0: drawn here
        # directly (the generator's call is a sixth of a hop), its call if 0.
        bits = random.getrandbits if self.random_ids else _no_bits
        for index in at:
            item = items[index]
            parent = item.trace
            came = made.get(parent)
            ours = came is not None  # its text is ours: "00-", trace id, span id, flags
            if came is None:
                came = self._came(parent)
            # A SpanContext is a tuple whose fields' properties are Python calls: indexed.
            flags = came[3]
            if not flags & _SAMPLED:  # as the default sampler would
                hops.append(_Hop(item.id, parent, None, None, None, 0, item))
                continue
            own_id = bits(64) or span_id()
            trace_id = came[0]
            own = _TUPLE_NEW(SpanContext, (trace_id, own_id, False, flags, _NO_STATE, True))
            if ours:  # the same trace id and flags: only the span id is new
                traceparent = f"{parent[:36]}{own_id:016x}{parent[52:]}"
            else:
                traceparent = f"00-{trace_id:032x}-{own_id:016x}-{flags:02x}"
            made[traceparent] = own
            # _Hop(item.id, parent, traceparent, own, came or None, now, item), its slots
            # written here: half the cost of its __init__'s call (paid per item per hop).
            hop = _NEW(_Hop)
            hop.id, hop.parent, hop.traceparent, hop.span = item.id, parent, traceparent, own
            hop.came, hop.start, hop.item = came if came[1] else None, now, item
            hop.sent_at, hop.failed, hop.returned = 0, False, False
            hops.append(hop)
        if len(made) > _MADE:
            _trim(made, _MADE // 2)
        return hops

    def _came(self, parent: str) -> SpanContext:
        """The context a ``traceparent`` not made here names: a trace of its own (no
        parent span) if it is damaged."""
        came = _parent_context(parent)
        if came is None:  # not version 00: the propagator reads it
            came = trace.get_current_span(_parent(parent)).get_span_context()
            if not came.is_valid:  # damaged: a trace of its own starts here
                came = SpanContext(self.ids.generate_trace_id(), 0, False, self.root_flags)
        return came

    def drop(self, hop: _Hop, end_time: int) -> None:
        """Nothing was handed to a processor yet: nothing to do."""

    def end(self, hops: Iterable[_Hop], now: int, name: str, actor: str) -> None:
        template = self.hop_fields
        if template is None:
            built = self._built(hops, now, name, actor)
            if built:
                self._hand(built)
            return
        spans = []
        base = template.copy()  # what the batch's spans share
        base["_name"] = name
        for hop in hops:
            own = hop.span
            if own is None or hop.returned:
                continue
            # The span's fields, as _span writes them (inline: paid per item per hop).
            fields = base.copy()
            fields["_context"] = own
            fields["_parent"] = hop.came
            fields["_start_time"] = hop.start
            fields["_end_time"] = hop.sent_at or now
            fields["_attributes"] = {"actorflow.actor": actor, "message.id": hop.id}
            if hop.failed:
                fields["_status"] = _ERROR
            span = _NEW(ReadableSpan)
            span.__dict__ = fields
            spans.append(span)
        if spans:  # as _hand, inline
            known, put = self.handoff
            if known is not self.processor._span_processors:  # type: ignore[attr-defined]
                self._hand(spans)
            else:
                put(spans)

    def _built(self, hops: Iterable[_Hop], now: int, name: str, actor: str) -> list[ReadableSpan]:
        """The hops' spans, each by the constructor (the SDK names its fields otherwise)."""
        spans = []
        for hop in hops:
            if hop.span is None or hop.returned:
                continue
            fields = {
                "_name": name,
                "_context": hop.span,
                "_parent": hop.came,
                "_start_time": hop.start,
                "_end_time": hop.sent_at or now,
                "_attributes": {"actorflow.actor": actor, "message.id": hop.id},
            }
            if hop.failed:
                fields["_status"] = _ERROR
            spans.append(self._span(fields, SpanKind.CONSUMER))
        return spans

    def roots(self, name: str, now: int, made: list[dict[str, str]]) -> list[str | None]:
        ids, flags, contexts = self.ids, self.root_flags, self.made
        trace_bits = random.getrandbits if self.random_ids else _no_bits  # see open
        spans: list[ReadableSpan] = []
        traceparents: list[str | None] = []
        for attributes in made:
            trace_id = trace_bits(128) or ids.generate_trace_id()
            span_id = trace_bits(64) or ids.generate_span_id()
            own = _TUPLE_NEW(SpanContext, (trace_id, span_id, False, flags, _NO_STATE, True))
            fields = {
                "_name": name,
                "_context": own,
                "_parent": None,
                "_start_time": now,
                "_end_time": now,
                "_attributes": attributes,
            }
            spans.append(self._span(fields, SpanKind.PRODUCER))
            traceparent = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
            traceparents.append(traceparent)
            contexts[traceparent] = own
        if len(contexts) > _MADE:
            _trim(contexts, _MADE // 2)
        self._hand(spans)
        return traceparents

    def _span(self, fields: dict[str, Any], kind: SpanKind) -> ReadableSpan:
        """One span of these ``fields`` (a ``ReadableSpan``'s own names, see
        :data:`_SPAN_FIELDS`; unset: its status), by the constructor if the SDK's
        fields are not as known."""
        template = self.hop_fields if kind is SpanKind.CONSUMER else self.root_fields
        if template is None:
            return ReadableSpan(
                name=fields["_name"],
                context=fields["_context"],
                parent=fields["_parent"],
                resource=self.resource,
                attributes=fields["_attributes"],
                kind=kind,
                status=fields.get("_status", _UNSET),
                start_time=fields["_start_time"],
                end_time=fields["_end_time"],
                instrumentation_scope=self.scope,
            )
        span = _NEW(ReadableSpan)
        span.__dict__ = whole = template.copy()
        whole.update(fields)
        return span

    def _hand(self, spans: list[ReadableSpan]) -> None:
        """Give ``spans`` to the provider's processors now (one added later included),
        each at once where it is the SDK's batch processor, one call fewer a span than
        the SDK's multi-processor would make."""
        processors: tuple[SpanProcessor, ...] = self.processor._span_processors  # type: ignore[attr-defined]
        known, put = self.handoff
        if known is not processors:
            put = _put_to(tuple(_Queue(processor) for processor in processors))
            self.handoff = (processors, put)
        put(spans)


def _put_to(queues: tuple[_Queue, ...]) -> Callable[[list[ReadableSpan]], None]:
    """What hands spans to each of ``queues`` (the one queue's own ``put`` if one)."""
    if len(queues) == 1:
        return queues[0].put

    def put(spans: list[ReadableSpan]) -> None:
        for queue in queues:
            queue.put(spans)

    return put


def _description(sampler: Sampler) -> str:
    described: str = sampler.get_description()
    return described


_PLAIN_PROCESSORS: Final = (BatchSpanProcessor, SimpleSpanProcessor)
_DEFAULT_SAMPLERS: Final = frozenset({_description(ParentBased(ALWAYS_ON))})
"""The SDK's default: a span for every sampled parent, none for an unsampled one (what
:class:`_Direct` does). ``ALWAYS_ON`` records spans under an unsampled parent too: it
goes through ``start_span``."""


def _spans_for(tracer: Tracer) -> _Spans:
    """:class:`_Direct` for an SDK tracer whose spans only reach the SDK's own batch or
    simple processors (which do nothing at a span's start) and whose sampler records
    every span a sampled parent asks for (the default); the tracer's ``start_span``
    for any other (a custom sampler or processor sees every span as it would)."""
    if not isinstance(tracer, SdkTracer):
        return _ViaTracer(tracer)
    multi = tracer.span_processor
    # The SDK keeps a provider's processors in a tuple it names privately: read, never
    # written, and any other shape takes start_span (pinned in tests/test_tracing_spans.py).
    processors = getattr(multi, "_span_processors", None)
    plain = (
        type(multi) is SynchronousMultiSpanProcessor
        and isinstance(processors, tuple)
        and all(type(each) in _PLAIN_PROCESSORS for each in processors)
        and _description(tracer.sampler) in _DEFAULT_SAMPLERS
    )
    if not plain:
        return _ViaTracer(tracer)
    return _Direct(multi, tracer.resource, tracer.id_generator)


class Watched(Protocol):
    """The actor whose per-batch hooks tracing turns on and off (see ``Actor.trace``)."""

    watched: bool


class _Unwatched:
    watched = False


class TracedActor(Watched, Protocol):
    """What tracing reads of an actor, once, when the system starts."""

    name: str
    debug: bool
    spec: ModuleSpec
    kind: ModuleKind

    @property
    def outputs(self) -> Mapping[str, Sequence[Any]]: ...


@attrs.define(slots=True, eq=False)
class ActorTracing:
    """One actor's spans: called with each batch it takes, sends, is done with.

    Invariants: ``batches`` holds every span still open by the batch it was opened for
    (``id()`` of the list taken, kept alive with them); ``index``, while not ``None``,
    holds the same spans by item id (a list: copies of one item may be in the actor at
    once), those given back excepted. It is made only when a batch sent or failed is
    not the last one taken item for item (see :meth:`_hops_by_id`), and forgotten when
    no span is open. A span ends when the actor says it is done with its batch
    (handled, failed or given back), at the item's last send if it was sent on; an
    actor that never says so (a progressive module) ends them when it takes its next
    batch; the rest at the end.

    The actor calls it only while ``owner.watched`` (see :meth:`_settle`): while a
    traced item may be on its way to it or in it, it chooses items (an origin), it
    takes from a remote link, or its debug log is on. An untraced batch elsewhere
    costs the actor one attribute read, as with tracing off.
    """

    tracing: Tracing
    name: str
    verb: str
    origin: bool
    """Untraced ``Data`` it sends may be chosen: it sends ``Data`` and has taken none
    so far (a source, or a processor that makes ``Data`` of other items)."""
    says_done: bool
    """It reports each batch it is done with (processors and sinks)."""
    outputs: Mapping[str, Sequence[Any]] = attrs.field(factory=dict)
    """Its output ports' links (the actor's own, live): where a traced item goes."""
    owner: Watched = attrs.field(factory=_Unwatched)
    logs: bool = False
    """Its debug log is on: the actor logs the ids of what it sends and takes too."""
    remote: bool = False
    """It takes from a remote link: every batch is read (a trace from another process)."""
    expected: int = 0
    """Traced items sent its way and not yet found in what it took."""
    looking_since: int = 0
    """When it last began to look for expected items in vain (0: found some since)."""
    index: dict[str, list[_Hop]] | None = None
    batches: dict[int, tuple[list[Any], list[_Hop], list[int]]] = attrs.field(factory=dict)
    held: OrderedDict[str, tuple[int, str | None, str | None]] = attrs.field(factory=OrderedDict)
    """Traced items it was done with but did not send on, by id: when, the trace they
    came with and the one its span gives them (it may yet send them, a window's items);
    forgotten after ``_HELD_FOR`` ns, beyond ``_HELD`` items."""
    last: int = 0
    skip: int = 0
    """How many more items it sends before the next one chosen."""
    run_left: int = 0
    """How many items after the next one chosen are chosen with it (a run)."""
    watch_takes: int = 0
    """Batches still read whole: a hook raised, its batch may come back."""
    warned: bool = False
    span_name: str = attrs.field(init=False)
    spans: _Spans = attrs.field(init=False)
    """The tracing's span maker (read once: used at every hop)."""

    marks: dict[int, tuple[list[Any], list[int]]] = attrs.field(init=False)
    receivers: dict[str, ActorTracing] = attrs.field(init=False)
    """The tracing's, as ``spans``."""

    def __attrs_post_init__(self) -> None:
        self.span_name = f"{self.name} {self.verb}"
        self.spans = self.tracing.spans
        self.marks = self.tracing.marks
        self.receivers = self.tracing.receivers

    def __call__(self, event: str, items: list[Any], where: Any = None) -> bool:
        """Spans for a batch the actor sends (on port ``where``) or takes, is done
        with, or items that failed; whether it should log it too.

        Tracing never fails the actor: what goes wrong here (a broken tracer) is
        logged once per actor, and the items go on untraced.
        """
        try:
            if event == SENT:  # sending turns nothing on here: settled at the next take
                self._sent(items, where)
                return self.logs
            batches = self.batches
            if event == RECEIVED:
                if self._received(items):  # spans open: it stays watched (it is, to be called)
                    return self.logs
            elif event == DONE:
                if batches:
                    entry = batches.pop(id(items), None)
                    if entry is not None:  # as _done, inline: its spans end
                        self._end(entry[1], time_ns())
                    if batches:  # spans still open: it stays watched
                        return self.logs
                    self.index = None
            elif event == FAILED:
                self._fail(items)
            elif event == RETURNED:
                self._returned(items)
        except Exception as exc:
            self._failed(exc)
        # As _settle, inline: paid per traced batch per hop.
        self.owner.watched = bool(
            self.logs
            or self.origin
            or self.remote
            or self.expected
            or self.batches
            or self.held
            or self.watch_takes
        )
        return self.logs

    def _settle(self) -> None:
        """Whether the actor calls it for its next batches (see the class)."""
        self.owner.watched = bool(
            self.logs
            or self.origin
            or self.remote
            or self.expected
            or self.batches
            or self.held
            or self.watch_takes
        )

    def expect(self, count: int) -> None:
        """``count`` traced items were sent its way."""
        self.expected += count
        self.owner.watched = True

    def _failed(self, exc: Exception) -> None:
        if not self.warned:
            self.warned = True
            get_logger().warning("tracing.failed", actor=self.name, error=describe(exc))

    def _sent(self, items: list[Any], port: Any) -> None:
        if self.held:
            _forget(self.held, time_ns())
        at: list[int] | None = None
        if self.batches:  # items it took are sent on (see _pass_on)
            taken, hops, at = next(reversed(self.batches.values()))  # the batch last taken
            if len(taken) == len(items) and (
                all(map(is_, map(items.__getitem__, at), map(_ITEM_OF, hops)))
                or _same_places(items, hops, at)
            ):  # its hops, in the same order: a processor's one result per item
                now = self.last = time_ns()
                # One hop per place, made together (zip's strict=True, a keyword, would
                # double its cost here).
                for index, hop in zip(at, hops):  # noqa: B905
                    if hop.returned:  # its span was dropped: it goes on as it came
                        continue
                    hop.sent_at = now
                    if hop.traceparent is not None:
                        items[index] = _retraced(items[index], hop.traceparent)
            else:
                at = self._pass_on(items)
        if (self.origin or self.held) and _any_traced(items):
            found = self._entered(items)  # traced where it was made, or held back
            at = found if not at else sorted({*at, *found})
        if self.origin:
            if self.skip < len(items):
                chosen = self._choose(items)
                at = chosen if not at else sorted({*at, *chosen})
            else:
                self.skip -= len(items)
        if at:  # its receivers here look for them (a fused one takes this very list)
            marks = self.marks
            marks[id(items)] = (items, at)
            if len(marks) > _MARKS:
                _trim(marks, _MARKS // 2)
            receivers = self.receivers
            for link in self.outputs.get(port, ()):
                receiver = receivers.get(link.spec.target)
                if receiver is not None:  # else not traced here (a remote link's far side)
                    receiver.expected += len(at)  # as expect, inline
                    receiver.owner.watched = True

    def _entered(self, items: list[Any]) -> list[int]:
        """Where the traced items it sends without a span of its own are; those it
        held are no longer held, and go on as children of the span it had for them
        (a window sends them after that span ended)."""
        at = _traced_at(items)
        held = self.held
        found = []
        for index in at:
            item = items[index]
            kept = held.get(item.id)
            if kept is not None:
                found.append(item.id)
                if kept[2] is not None and item.trace == kept[1]:
                    items[index] = _retraced(item, kept[2])
        for key in found:  # after: one item sent twice in one batch, both copies
            held.pop(key, None)
        return at

    def _received(self, items: list[Any]) -> bool:
        """Spans for the traced items it took: whether it opened any."""
        if self.batches and not self.says_done:
            self._end_all(self.last)
        if self.origin and _holds_data(items):
            self.origin = False  # it passes Data on: where they start is upstream
        at = self.marks.pop(id(items), _NO_MARK)[1]
        if at is None and (self.expected or self.remote or self.watch_takes):
            self.watch_takes = max(0, self.watch_takes - 1)
            at = _traced_at(items) if _any_traced(items) else None
            if not at and self.expected:
                self._looked_in_vain()
        if not at:
            return False
        self.looking_since = 0
        left = self.expected - len(at)
        self.expected = left if left > 0 else 0
        now = self.last = time_ns()
        hops = self.spans.open(self.span_name, self.name, items, at, now)
        index = self.index
        if index is not None:
            for hop in hops:
                index.setdefault(hop.id, []).append(hop)
        batches, key = self.batches, id(items)
        if key in batches:  # a batch never reported done, its id reused
            self._end(batches.pop(key)[1], now)
        batches[key] = (items, hops, at)
        if len(batches) > _MAX_BATCHES:  # never reported done: end the oldest
            self._end(batches.pop(next(iter(batches)))[1], now)
        return True

    def _looked_in_vain(self) -> None:
        """None of the traced items expected was in a batch read whole: after
        :data:`_EXPECTED_FOR` of that, they were lost on the way; stop expecting them."""
        now = time_ns()
        if not self.looking_since:
            self.looking_since = now
        elif now - self.looking_since > _EXPECTED_FOR:
            self.expected = self.looking_since = 0

    def _hops_by_id(self) -> dict[str, list[_Hop]]:
        """The open spans by item id (made from ``batches`` if not kept yet: then kept
        while spans are open)."""
        index = self.index
        if index is None:
            index = self.index = {}
            for _, hops, _ in self.batches.values():
                for hop in hops:
                    if not hop.returned:
                        index.setdefault(hop.id, []).append(hop)
        return index

    def _pass_on(self, items: list[Any]) -> list[int]:
        """Items it took are sent on: each copy carries the context of the span of the
        item it is a copy of (the same id and trace), whose end moves to this send.
        Where they are: where they were in the batch taken, if ``items`` holds them
        there (one result per item: :meth:`_sent` sees to it); else, here, ``items``
        is read whole and each found by its id and trace."""
        now = self.last = time_ns()
        open_hops = self._hops_by_id()
        at = _traced_at(items)
        for index in at:
            item = items[index]
            copies = open_hops.get(item.id)
            if copies:
                hop = next((hop for hop in copies if hop.parent == item.trace), copies[0])
                hop.sent_at = now
                if hop.traceparent is not None:
                    items[index] = _retraced(item, hop.traceparent)
        return at

    def _fail(self, items: list[Any]) -> None:
        """The actor's hook raised on these items: their spans say so; the batches it
        takes next are read whole (what failed may come back in one)."""
        self.watch_takes = _WATCH
        if not self.batches:
            return
        open_hops = self._hops_by_id()
        for item in items:
            if isinstance(item, Data):
                hop = _failing_hop(open_hops.get(item.id, ()), item)
                if hop is not None:
                    hop.failed = True

    def _returned(self, items: list[Any]) -> None:
        """Items taken but not handled went back to their link: their spans (not one
        that failed: that attempt was made) are dropped, and the items are looked for
        in what it takes next, where each gets the span of the take that handles it."""
        if not self.batches:
            return
        open_hops = self._hops_by_id()
        back = 0
        for item in items:
            hops = open_hops.get(item.id) if isinstance(item, Data) else None
            hop = next((hop for hop in hops or () if hop.parent == item.trace), None)
            if hops is None or hop is None or hop.failed or hop.sent_at:
                continue
            hop.returned = True
            self.spans.drop(hop, time_ns())
            hops.remove(hop)
            if not hops:
                del open_hops[item.id]
            back += 1
        if back:
            self.expect(back)

    def _end(self, hops: list[_Hop], now: int) -> None:
        """End these spans (a batch's); those it did not send on are held if it sends
        at all (it may send them later: a window's items)."""
        index = self.index
        if index is not None:
            _unindex(index, hops)
        if self.outputs:
            held = self.held
            for hop in hops:
                if not hop.sent_at and not hop.returned:
                    held[hop.id] = (now, hop.parent, hop.traceparent)
                    if len(held) > _HELD:
                        held.popitem(last=False)
        self.spans.end(hops, now, self.span_name, self.name)

    def _end_all(self, now: int) -> None:
        for _, hops, _ in self.batches.values():
            self._end(hops, now)
        self.batches.clear()
        self.index = None

    def _choose(self, items: list[Any]) -> list[int]:
        """Start a trace for the chosen items among ``items``; where they are."""
        skip, count = self.skip, len(items)
        chosen: list[int] = []
        index, gap, left = skip, self.tracing.gap, self.run_left
        while index < count:
            item = items[index]
            if isinstance(item, Data) and item.trace is None:
                chosen.append(index)
            if left:  # the run goes on
                left -= 1
                index += 1
            else:
                left = self.tracing.run - 1
                index += gap()
        self.skip, self.run_left = index - count, left
        if not chosen:
            return chosen
        graph, name = self.tracing.graph, self.name
        made = [_root_attributes(graph, name, items[index]) for index in chosen]
        traced = []
        roots = self.spans.roots(self.span_name, time_ns(), made)
        for index, traceparent in zip(chosen, roots):  # noqa: B905 (one each; see _sent)
            if traceparent is not None:
                items[index] = _retraced(items[index], traceparent)
                traced.append(index)
        return traced

    def close(self) -> None:
        """The system ended: end what is still open (the actor was stopped while it
        held these items)."""
        self._end_all(time_ns())
        self.held.clear()


def _trim(kept: dict[Any, Any], keep: int) -> None:
    """Keep the newest ``keep`` entries of ``kept`` (a plain dict, in the order they
    came): trimmed in bulk when it holds more than its bound, not an entry per entry
    added (an ``OrderedDict``'s ``popitem``, whose own bookkeeping costs each add)."""
    for key in list(islice(kept, len(kept) - keep)):
        del kept[key]


def _forget(held: OrderedDict[str, tuple[int, str | None, str | None]], now: int) -> None:
    """Forget the held items kept longer than ``_HELD_FOR``."""
    while held:
        oldest = next(iter(held))
        if now - held[oldest][0] < _HELD_FOR:
            return
        del held[oldest]


def _retraced(item: Data, traceparent: str) -> Data:
    """``item`` with another ``trace``: a copy that shares its fields and tags (as the
    item itself, sent on untraced, would), a tenth of ``evolve``'s cost, which copies
    them (pinned in tests/test_tracing_spans.py)."""
    if type(item) is not Data:
        return item.evolve(trace=traceparent)
    copy = _NEW(Data)
    if _SLOTS is None:
        for name, value in zip(_DATA_FIELDS, _FIELDS_OF(item), strict=True):
            _SET(copy, name, value)
        _SET(copy, "trace", traceparent)
        return copy
    fields, tags, timestamp, id_, origin, trace_ = _SLOTS
    fields(copy, item.fields)
    tags(copy, item.tags)
    timestamp(copy, item.timestamp)
    id_(copy, item.id)
    origin(copy, item.origin)
    trace_(copy, traceparent)
    return copy


def _slot_setters() -> tuple[Callable[[Data, Any], None], ...] | None:
    """Each field's slot written directly (a third of ``object.__setattr__``'s cost),
    if ``Data``'s fields are the six :func:`_retraced` knows; ``None`` if not."""
    if _DATA_FIELDS != ("fields", "tags", "timestamp", "id", "origin", "trace"):
        return None
    return tuple(vars(Data)[name].__set__ for name in _DATA_FIELDS)


_SLOTS: Final = _slot_setters()


def _failing_hop(hops: Iterable[_Hop], item: Data) -> _Hop | None:
    """The hop of the copy of ``item`` that failed: one per failure (copies of one item
    may be open at once, with workers), the very item's first, else one of its trace,
    else any copy of its id, not failed already."""
    candidates = [hop for hop in hops if not hop.failed]
    for hop in candidates:
        if hop.item is item:
            return hop
    for hop in candidates:
        if hop.parent == item.trace:
            return hop
    return candidates[0] if candidates else None


def _same_places(items: list[Any], hops: list[_Hop], at: list[int]) -> bool:
    """Whether ``items`` holds copies of the hops' items at their places (the same id
    and trace: a processor's one result per item, not the very items)."""
    for index, hop in zip(at, hops, strict=True):
        item = items[index]
        if type(item) is not Data or item.id != hop.id or item.trace != hop.parent:
            return False
    return True


def _unindex(index: dict[str, list[_Hop]], hops: list[_Hop]) -> None:
    """Take these hops out of the open spans by item id."""
    for hop in hops:
        same = index.get(hop.id)
        if same is not None and hop in same:
            same.remove(hop)
            if not same:
                del index[hop.id]


def _any_traced(items: list[Any]) -> bool:
    """Whether some item in ``items`` may carry a trace: read at C speed without a look
    at the types first (13 ns an item), by type if that fails (an item without a
    ``trace``, or one whose truth raises, a pandas column): only a ``Data``'s is read
    then. True for a ``trace`` that is not a ``Data``'s: :func:`_traced_at` then finds
    none."""
    try:
        return any(map(_TRACE_OF, items))
    except Exception:
        return any(isinstance(item, Data) and item.trace is not None for item in items)


def _root_attributes(graph: str, actor: str, item: Data) -> dict[str, str]:
    """The root span's attributes: where the item entered which graph (every span of
    a trace costs per attribute: the others name their actor and the item only)."""
    attributes = {"actorflow.graph": graph, "actorflow.actor": actor, "message.id": item.id}
    if item.origin is not None:
        attributes["message.origin"] = item.origin
    return attributes


@attrs.define(eq=False)
class Tracing:
    """One system's tracing: its tracer, its ratio and each actor's spans.

    Invariant: ``marks`` holds, for the last batches sent with a traced item, where
    those items are (the batch kept alive, so its ``id()`` is its own): their
    receivers here look for them (a fused receiver takes this very list).
    """

    graph: str
    ratio: float
    tracer: Tracer
    run: int = 1
    """Chosen items come in runs of this many in a row (each item still chosen with
    probability ``ratio``): a batch that holds traced items costs about as much for
    one as for several (see docs/performance.md), and a run shares it."""
    actors: list[ActorTracing] = attrs.field(factory=list)
    random: Callable[[], float] = random.random
    can_start: bool = False
    """Some actor's outputs can carry ``Data``: a trace can start somewhere."""
    spans: _Spans = attrs.field(default=attrs.Factory(lambda self: _spans_for(self.tracer), True))
    marks: dict[int, tuple[list[Any], list[int]]] = attrs.field(factory=dict)
    receivers: dict[str, ActorTracing] = attrs.field(factory=dict)
    """Each traced actor here, by name."""

    @classmethod
    def start(
        cls, graph: str, ratio: float, provider: TracerProvider | None, run: int = 1
    ) -> Tracing:
        """Tracing through ``provider`` (the global one if ``None``)."""
        provider = provider if provider is not None else trace.get_tracer_provider()
        return cls(graph, ratio, provider.get_tracer("actorflow", __version__), max(1, run))

    def gap(self) -> int:
        """How many items from the last chosen item of a run to the next run (at least
        1): geometric, at one draw per run, with the chance that a run starts at an
        item set so that each item is chosen with probability ``ratio`` (a run of
        ``run`` items, then on average ``run * (1 - ratio) / ratio`` items not)."""
        ratio = self.ratio
        if ratio >= 1.0:
            return 1
        starts = ratio / (ratio + self.run * (1 - ratio)) if self.run > 1 else ratio
        if not starts:  # a tiny ratio over a long run: too small a float
            return 1 + int(_NEVER)
        # log1p: ``log(1 - ratio)`` is 0 for a ratio below 1e-16 (a division by zero);
        # a drawn gap beyond 10**18 items (or infinite) is as good as never.
        drawn = math.log1p(-self.random()) / math.log1p(-starts)
        return 1 + int(min(drawn, _NEVER))

    def for_actor(self, actor: TracedActor, *, remote: bool = False) -> ActorTracing | None:
        """The hook of ``actor`` (``remote``: it takes from a remote link), or ``None``
        if its ports carry no ``Data``."""
        spec = actor.spec
        takes = _carries_data(spec.input_ports().values())
        sends = _carries_data(spec.output_ports().values())
        # A trace can reach it: sent by an actor here, or taken from a remote link.
        self.can_start = self.can_start or sends or (remote and takes)
        if not (takes or sends):
            return None
        kind = actor.kind.value
        hops = ActorTracing(
            self,
            actor.name,
            _VERBS.get(kind, "step"),
            origin=sends,
            says_done=kind in ("processor", "sink"),
            outputs=actor.outputs,
            owner=actor,
            logs=actor.debug,
            remote=remote,
        )
        hops.skip = self.gap() - 1
        hops.run_left = self.run - 1
        self.actors.append(hops)
        self.receivers[actor.name] = hops
        hops._settle()
        return hops

    def close(self) -> None:
        """The system ended: end every span still open; say so if nothing could be
        traced (no actor sends ``Data``, the only items that carry a trace, nor takes
        them from a remote link)."""
        for hops in self.actors:
            hops.close()
        self.marks.clear()
        if not self.can_start:
            get_logger().warning(
                "tracing.nothing_traced",
                trace_ratio=self.ratio,
                reason="no actor's output port can carry Data, the only items traced, "
                "and none takes from a remote link",
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
