"""What tracing costs and how its spans are made: untraced batches are not looked at, and
spans of the SDK's default setup are built whole at their end (pinned here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased
from opentelemetry.trace import NoOpTracer, SpanContext, SpanKind, StatusCode

import actorflow as af
from actorflow import _tracing
from actorflow._tracing import ActorTracing, _Direct, _retraced, _spans_for, _ViaTracer

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self) -> Iterator[af.Data]:
        return (af.Data(fields={"n": n}) for n in range(self.count))


class Pass(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data:
        return data


class Drop(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def consume(self, data: af.Data) -> None:
        pass


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "pinned"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


# -- which way spans are made -------------------------------------------------------------


def test_the_sdk_default_setup_gets_spans_made_whole(provider: TracerProvider) -> None:
    """An SDK tracer with the SDK's own batch or simple processors and its default
    sampler: spans are made at their end (reads the provider's processor tuple, a
    private name of the SDK: this pins it)."""
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    assert isinstance(_spans_for(provider.get_tracer("t")), _Direct)
    assert isinstance(_spans_for(TracerProvider().get_tracer("t")), _Direct)


class Custom(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass


@pytest.mark.parametrize(
    "tracer",
    [
        pytest.param(lambda p: p.get_tracer("t"), id="a processor of the user's own"),
        pytest.param(
            lambda p: TracerProvider(sampler=TraceIdRatioBased(0.5)).get_tracer("t"),
            id="a sampler of the user's own",
        ),
        pytest.param(lambda p: NoOpTracer(), id="not the SDK's tracer"),
    ],
)
def test_anything_else_goes_through_start_span(tracer: Any, provider: TracerProvider) -> None:
    """A processor that may want ``on_start``, a sampler that may decide otherwise, a
    tracer that is not the SDK's: every span goes through ``start_span``."""
    provider.add_span_processor(Custom())
    assert isinstance(_spans_for(tracer(provider)), _ViaTracer)


def test_a_span_made_whole_is_what_start_span_would_have_made(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The ReadableSpan built directly carries what the exporter reads of one made by
    ``start_span``: name, ids, parent, kind, times, attributes, status, resource,
    instrumentation scope (pins the ``ReadableSpan`` constructor)."""
    tracer = provider.get_tracer("actorflow", af.__version__)
    direct, via = _spans_for(tracer), _ViaTracer(tracer)
    assert isinstance(direct, _Direct)
    made = []
    for spans in (direct, via):
        (hop,) = spans.open("a process", "a", [af.Data(id="m", trace=PARENT)], [0], 10)
        hop.failed = True
        spans.end([hop], 20, "a process", "a")
        spans.roots("src send", 30, [{"actorflow.actor": "src"}])
        made.append(exporter.get_finished_spans()[-2:])
        exporter.clear()
    for fast, slow in zip(*made, strict=True):
        assert fast.name == slow.name
        assert fast.kind == slow.kind
        assert (fast.start_time, fast.end_time) == (slow.start_time, slow.end_time)
        assert dict(fast.attributes or {}) == dict(slow.attributes or {})
        assert fast.status.status_code == slow.status.status_code
        assert fast.status.description == slow.status.description
        assert fast.resource == slow.resource
        assert fast.instrumentation_scope == slow.instrumentation_scope
        assert fast.context is not None
        assert slow.context is not None
        assert fast.context.trace_flags == slow.context.trace_flags
        assert fast.context.is_remote == slow.context.is_remote
        assert (fast.parent is None) == (slow.parent is None)
        if fast.parent is not None and slow.parent is not None:
            assert fast.parent == slow.parent
            assert fast.context.trace_id == slow.context.trace_id == fast.parent.trace_id
    hop_span, root_span = made[0]
    assert hop_span.kind is SpanKind.CONSUMER
    assert root_span.kind is SpanKind.PRODUCER
    assert hop_span.status.status_code is StatusCode.ERROR


def test_an_unsampled_parent_makes_no_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A traceparent whose sampled flag is off is followed as the default sampler
    would: no span, and the item keeps its traceparent."""
    direct = _spans_for(provider.get_tracer("t"))
    (hop,) = direct.open("a process", "a", [af.Data(id="m", trace=PARENT[:-2] + "00")], [0], 1)
    direct.end([hop], 2, "a process", "a")
    assert hop.traceparent is None
    assert exporter.get_finished_spans() == ()


def test_a_sampler_that_says_no_makes_no_span_through_start_span(
    exporter: InMemorySpanExporter,
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    af.run(pipeline(5), trace_ratio=1.0, tracer_provider=provider)
    assert exporter.get_finished_spans() == ()


# -- the copy a traced item is sent on as -------------------------------------------------


@given(
    fields=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    origin=st.none() | st.text(max_size=5),
    trace=st.none() | st.just(PARENT),
)
def test_a_retraced_item_is_the_item_with_another_trace(
    fields: dict[str, int], origin: str | None, trace: str | None
) -> None:
    """Every field of ``Data`` is carried (a field added to ``Data`` is too), the
    fields and tags shared as the item itself would be; only ``trace`` differs."""
    item = af.Data(fields=fields, tags={"t": 1}, origin=origin, trace=trace)
    copy = _retraced(item, "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert type(copy) is af.Data
    assert copy == item
    assert copy.trace == "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    for field in attrs.fields(af.Data):
        if field.name != "trace":
            assert getattr(copy, field.name) is getattr(item, field.name)
    assert item.trace == trace  # the original is untouched


def test_a_subclass_of_data_is_retraced_by_evolve() -> None:
    @attrs.frozen(slots=True)
    class Reading(af.Data):
        unit: str = "C"

    copy = _retraced(Reading(fields={"v": 1}, unit="K"), PARENT)
    assert isinstance(copy, Reading)
    assert copy.unit == "K"
    assert copy.trace == PARENT


# -- what untraced items cost --------------------------------------------------------------


def pipeline(count: int) -> af.Graph:
    graph = af.Graph(name="cost")
    graph.add("src", Numbers, count=count)
    graph.add("a", Pass)
    graph.add("b", Pass)
    graph.add("sink", Drop)
    graph.chain("src", "a", "b", "sink", buffer=10)
    return graph


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls: dict[str, int] = {}
    original = ActorTracing.__call__

    def call(self: ActorTracing, event: str, items: list[Any], where: Any = None) -> bool:
        calls[self.name] = calls.get(self.name, 0) + 1
        return original(self, event, items, where)

    monkeypatch.setattr(ActorTracing, "__call__", call)
    return calls


def test_where_no_item_is_traced_only_the_origin_is_asked(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a ratio that picks nothing, the actors downstream of the source call their
    hook for their first batch only (which says Data comes from upstream: they start
    no trace): an untraced batch costs them what it costs with tracing off."""
    calls = counting(monkeypatch)

    async def main() -> dict[str, bool]:
        async with af.open_system(pipeline(200), trace_ratio=1e-12, tracer_provider=provider) as s:
            await s.wait()
            return {name: s._actors[name].watched for name in s.actors}

    watched = trio.run(main)
    assert calls["src"] >= 20  # each of its batches: it chooses
    assert calls.get("a", 0) <= 1
    assert calls.get("b", 0) <= 1
    assert "sink" not in calls
    assert watched == {"src": True, "a": False, "b": False, "sink": False}
    assert exporter.get_finished_spans() == ()


def test_one_traced_item_wakes_each_actor_only_while_it_passes(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One item chosen among 200: each actor downstream calls its hook for the batch
    that holds it (taken, sent, done) and goes back to sleep; the trace is whole."""
    calls = counting(monkeypatch)
    gaps = iter([1])  # the source's first gap (it is set up first): its first item
    monkeypatch.setattr(_tracing.Tracing, "gap", lambda self: next(gaps, 10**18))

    async def main() -> dict[str, bool]:
        async with af.open_system(pipeline(200), trace_ratio=1e-6, tracer_provider=provider) as s:
            await s.wait()
            return {name: s._actors[name].watched for name in s.actors}

    watched = trio.run(main)
    spans = exporter.get_finished_spans()
    assert sorted(span.name for span in spans) == [
        "a process",
        "b process",
        "sink consume",
        "src send",
    ]
    assert len({span.context.trace_id for span in spans if span.context}) == 1
    assert watched == {"src": True, "a": False, "b": False, "sink": False}
    for name in ("a", "b", "sink"):
        assert 1 <= calls[name] <= 4  # the batch that held it (taken, sent, done), not all 20


# -- items a processor holds back ------------------------------------------------------------


class Window(af.Processor):
    """Holds items and sends them three at a time (a window)."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self) -> None:
        self.kept: list[af.Data] = []

    def process(self, data: af.Data) -> af.Many | None:
        self.kept.append(data)
        if len(self.kept) < 3:
            return None
        sent, self.kept = self.kept, []
        return af.Many(sent)


def test_items_a_window_holds_back_are_still_followed_downstream(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A processor that sends items batches after it took them: the actors after it
    still find them, each item's spans one trace."""
    graph = af.Graph(name="window")
    graph.add("src", Numbers, count=9)
    graph.add("window", Window)
    graph.add("after", Pass)
    graph.add("sink", Drop)
    graph.chain("src", "window", "after", "sink", buffer=1)
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    spans = exporter.get_finished_spans()
    by_item: dict[str, set[str]] = {}
    traces: dict[str, set[int]] = {}
    for span in spans:
        item = str((span.attributes or {})["message.id"])
        by_item.setdefault(item, set()).add(span.name)
        assert span.context is not None
        traces.setdefault(item, set()).add(span.context.trace_id)
    assert len(by_item) == 9
    for names in by_item.values():
        assert names == {"src send", "window process", "after process", "sink consume"}
    assert all(len(ids) == 1 for ids in traces.values())
    # Each item's hop after the window is the child of the window's span of that item,
    # though the window sent it after that span had ended.
    span_of = {(span.context.span_id if span.context else 0): span for span in spans}
    for span in spans:
        if span.name == "after process":
            assert span.parent is not None
            assert span_of[span.parent.span_id].name == "window process"


def test_an_error_status_reaches_the_exporter_of_spans_made_whole(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The span of the item whose hook raised says so, on the direct path too."""

    class Picky(af.Processor):
        inputs: ClassVar = {"in": af.Data}
        outputs: ClassVar = {"out": af.Data}

        def process(self, data: af.Data) -> af.Data:
            if data.fields["n"] == 3:
                raise ValueError("three")
            return data

    graph = af.Graph(name="picky")
    graph.add("src", Numbers, count=6)
    graph.add("picky", Picky)
    graph.add("sink", Drop)
    graph.chain("src", "picky", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    picky = [span for span in exporter.get_finished_spans() if span.name == "picky process"]
    failed = [span for span in picky if span.status.status_code is StatusCode.ERROR]
    assert {str((span.attributes or {})["message.id"]) for span in failed} == {
        str((failed[0].attributes or {})["message.id"])
    }
    sinks = [span for span in exporter.get_finished_spans() if span.name == "sink consume"]
    assert len(sinks) == 5  # the others went on, each traced to the end


def test_readable_spans_are_what_the_exporter_gets(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The spans handed over are ``ReadableSpan`` with a parent chain root -> sink."""
    af.run(pipeline(3), trace_ratio=1.0, tracer_provider=provider)
    spans = exporter.get_finished_spans()
    assert all(isinstance(span, ReadableSpan) for span in spans)
    assert len(spans) == 12
    ids = {span.context.span_id for span in spans if span.context}
    assert all(span.parent is None or span.parent.span_id in ids for span in spans)


# -- the batch processor's hand-off and the span's fields ---------------------------------


def test_spans_made_whole_are_every_field_start_span_sets(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A span made whole holds the very fields a ``ReadableSpan`` made by its
    constructor holds (what any exporter may read: events, links, dropped counts), and
    its context is the ``SpanContext`` the SDK would make of the same ids."""
    af.run(pipeline(2), trace_ratio=1.0, tracer_provider=provider)
    spans = exporter.get_finished_spans()
    constructed = vars(ReadableSpan(name="x"))
    for span in spans:
        assert vars(span).keys() == constructed.keys()
        assert (span.events, span.links, span.dropped_attributes) == ((), (), 0)
        context = span.context
        assert context is not None
        same = SpanContext(context.trace_id, context.span_id, False, context.trace_flags)
        assert context == same
        assert context.is_valid
        assert context.trace_state == same.trace_state


def test_spans_are_made_by_the_constructor_if_the_sdk_names_fields_otherwise(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a later SDK to name a ``ReadableSpan``'s fields otherwise, no template is
    used: the constructor makes each span, with the same result."""
    af.run(pipeline(2), trace_ratio=1.0, tracer_provider=provider)
    fast = exporter.get_finished_spans()
    exporter.clear()
    monkeypatch.setattr(_tracing, "_SPAN_FIELDS", _tracing._SPAN_FIELDS | {"_renamed"})
    direct = _spans_for(provider.get_tracer("t"))
    assert isinstance(direct, _Direct)
    assert direct.hop_fields is None
    monkeypatch.setattr(_tracing, "_spans_for", lambda tracer: direct)
    af.run(pipeline(2), trace_ratio=1.0, tracer_provider=provider)
    slow = exporter.get_finished_spans()
    assert sorted(span.name for span in slow) == sorted(span.name for span in fast)
    assert all(type(span) is ReadableSpan and span.end_time for span in slow)


def test_the_batch_processor_gets_a_batch_of_spans_at_once_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spans reach the SDK's batch processor's queue without its ``on_end`` (one
    ``extendleft`` a batch), in the order its ``on_end`` would have queued them, and
    its exporter gets every one (pins the names of its queue)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    ended: list[ReadableSpan] = []
    monkeypatch.setattr(BatchSpanProcessor, "on_end", lambda self, span: ended.append(span))
    direct = _spans_for(provider.get_tracer("t"))
    assert isinstance(direct, _Direct)
    items = [af.Data(id=f"m{n}", trace=PARENT) for n in range(3)]
    hops = direct.open("a process", "a", items, [0, 1, 2], 10)
    direct.end(hops, 20, "a process", "a")
    assert ended == []  # not one by one
    provider.force_flush()
    got = exporter.get_finished_spans()
    assert [str((span.attributes or {})["message.id"]) for span in got] == ["m0", "m1", "m2"]
    provider.shutdown()


@pytest.mark.parametrize("why", ["full", "shut down", "forked"])
def test_the_batch_processor_says_itself_what_it_does_with_spans_it_cannot_take(
    why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full queue, a processor shut down, a process forked since: each span goes
    through the processor's own ``on_end`` (which drops it and says so, or resets
    itself for the child), as without the hand-off."""
    processor = BatchSpanProcessor(
        InMemorySpanExporter(), max_queue_size=4, max_export_batch_size=4
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    ended: list[ReadableSpan] = []
    monkeypatch.setattr(BatchSpanProcessor, "on_end", lambda self, span: ended.append(span))
    direct = _spans_for(provider.get_tracer("t"))
    assert isinstance(direct, _Direct)
    count = 5 if why == "full" else 2
    items = [af.Data(trace=PARENT) for _ in range(count)]
    hops = direct.open("a process", "a", items, range(count), 10)
    if why == "shut down":
        monkeypatch.setattr(processor._batch_processor, "_shutdown", True)
    if why == "forked":
        direct._hand([])  # its hand-off is made in this process
        _tracing._forked()  # as os.fork() calls it in the child
    direct.end(hops, 20, "a process", "a")
    assert len(ended) == count
    monkeypatch.undo()
    provider.shutdown()


def test_spans_made_whole_are_what_the_otlp_exporter_encodes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The OTLP exporter's encoder (if installed) reads every span made whole: names,
    ids, parents, kinds, attributes."""
    encoder = pytest.importorskip("opentelemetry.exporter.otlp.proto.common.trace_encoder")
    af.run(pipeline(3), trace_ratio=1.0, tracer_provider=provider)
    spans = exporter.get_finished_spans()
    encoded = encoder.encode_spans(spans).resource_spans[0].scope_spans[0].spans
    assert len(encoded) == len(spans) == 12
    for span, message in zip(spans, encoded, strict=True):
        assert span.context is not None
        assert message.name == span.name
        assert int.from_bytes(message.span_id, "big") == span.context.span_id
        parent = int.from_bytes(message.parent_span_id, "big") if message.parent_span_id else None
        assert parent == (span.parent.span_id if span.parent else None)
        assert {attribute.key for attribute in message.attributes} == set(span.attributes or {})


@pytest.mark.parametrize(
    "parent",
    [
        pytest.param(PARENT, id="read from its text"),
        pytest.param("00-" + "0" * 32 + "-" + "1" * 16 + "-01", id="damaged: a trace of its own"),
        pytest.param("01-" + PARENT[3:] + "-extra", id="a later version"),
    ],
)
def test_an_items_traceparent_names_its_hops_span(parent: str, provider: TracerProvider) -> None:
    """The traceparent a hop gives the item names the hop's very span (its trace id,
    span id and flags), whatever the parent it came with, and the next hop in this
    process, which reads it from the cache of made spans, makes its child."""
    direct = _spans_for(provider.get_tracer("t"))
    assert isinstance(direct, _Direct)
    (hop,) = direct.open("a process", "a", [af.Data(id="m", trace=parent)], [0], 1)
    (child,) = direct.open("b process", "b", [af.Data(id="m", trace=hop.traceparent)], [0], 2)
    for made in (hop, child):
        context = made.span
        assert made.traceparent == (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        )
    assert child.came == hop.span


def test_a_hop_made_whole_has_every_field_its_class_has(provider: TracerProvider) -> None:
    """The span maker writes a hop's slots itself (not through ``__init__``): every
    field of ``_Hop`` is set, to what ``__init__`` would have set."""
    direct = _spans_for(provider.get_tracer("t"))
    assert isinstance(direct, _Direct)
    item = af.Data(id="m", trace=PARENT)
    (hop,) = direct.open("a process", "a", [item], [0], 7)
    expected = _tracing._Hop("m", PARENT, hop.traceparent, hop.span, hop.came, 7, item)
    for field in attrs.fields(_tracing._Hop):  # every slot read: none left unset
        assert getattr(hop, field.name) == getattr(expected, field.name), field.name
    assert hop.came is not None
    assert hop.came.span_id == int(PARENT[36:52], 16)


# -- an actor's spans whatever it does with what it took ----------------------------------

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["take", "same", "reversed", "copies", "fail", "done", "back"]),
        st.integers(0, 3),
    ),
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(steps=STEPS)
def test_every_span_opened_ends_once_whatever_the_actor_sends(
    steps: list[tuple[str, int]],
) -> None:
    """Batches taken, sent on at their places, in another order or as copies, failed,
    given back, done, in any order: every span opened is handed over once (those given
    back unhandled: never), each copy sent names the span of an item of its id, a
    failed item's span says so, and nothing is left open or indexed at the end."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = _tracing.Tracing.start("fuzz", 1.0, provider)
    hops = ActorTracing(
        tracing, "p", "process", origin=False, says_done=True, outputs={"out": []}, remote=True
    )
    open_batches: list[list[af.Data]] = []
    sent: list[af.Data] = []
    opened = dropped = 0
    failed_ids: set[str] = set()
    made = 0
    for step, n in steps:
        if step == "take" or not open_batches:
            batch = [af.Data(id=f"m{made + i}", trace=PARENT) for i in range(n + 1)]
            made += n + 1
            hops("message.received", batch)
            open_batches.append(batch)
            opened += len(batch)
            continue
        batch = open_batches[n % len(open_batches)]
        if step in ("same", "reversed", "copies"):
            out = {
                "same": list(batch),
                "reversed": batch[::-1],
                "copies": [item.evolve(fields={"n": 1}) for item in batch],
            }[step]
            hops("message.sent", out, "out")
            sent += out
        elif step == "fail":
            hops("message.failed", batch[:1])
            failed_ids.add(batch[0].id)
        else:
            if step == "back":
                before = len(hops._hops_by_id().get(batch[-1].id, ()))
                hops("message.returned", batch[-1:])
                dropped += before - len(hops._hops_by_id().get(batch[-1].id, ()))
            hops("message.done", batch)
            open_batches.remove(batch)
    if not open_batches:  # all done: no span left open, the index forgotten
        assert (hops.batches, hops.index) == ({}, None)
    hops.close()
    spans = exporter.get_finished_spans()
    assert len(spans) == opened - dropped
    assert len({span.context.span_id for span in spans if span.context}) == len(spans)
    ids = {}
    for span in spans:
        assert span.context is not None
        traceparent = f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
        ids[traceparent] = str((span.attributes or {})["message.id"])
    for copy in sent:
        assert copy.trace is not None
        assert ids[copy.trace] == copy.id  # a copy names the span of its item
    for span in spans:
        if span.status.status_code is StatusCode.ERROR:
            assert (span.attributes or {})["message.id"] in failed_ids
    assert hops.batches == {}
    assert hops.index is None


def test_the_contexts_kept_are_bounded_and_the_newest_kept(provider: TracerProvider) -> None:
    """The cache of contexts made (plain dicts trimmed in bulk) never holds more than
    its bound, and the last ones made, which the next hop here looks for, are in it."""
    direct = _spans_for(provider.get_tracer("t"))
    assert isinstance(direct, _Direct)
    items = [af.Data(trace=PARENT) for _ in range(100)]
    for _ in range(3 * _tracing._MADE // 100):
        hops = direct.open("a process", "a", items, range(100), 1)
        assert len(direct.made) <= _tracing._MADE
        assert all(direct.made[hop.traceparent] is hop.span for hop in hops if hop.traceparent)
    kept: dict[int, int] = {}
    for key in range(1000):
        kept[key] = key
        if len(kept) > 64:
            _tracing._trim(kept, 32)
        assert key in kept
        assert len(kept) <= 64
    assert list(kept) == sorted(kept)  # the oldest went first


@pytest.mark.parametrize("copy", [False, True])
def test_an_item_given_back_and_sent_goes_on_with_the_trace_it_came_with(
    copy: bool, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A hop given back has its span dropped: the item (or its copy) sent after that
    still names the span it came from, never the dropped one (no orphan parent)."""
    tracing = _tracing.Tracing.start("g", 1.0, provider)
    hops = ActorTracing(
        tracing, "p", "process", origin=False, says_done=True, outputs={"out": []}, remote=True
    )
    batch = [af.Data(id="m", trace=PARENT)]
    hops("message.received", batch)
    hops("message.returned", batch)
    sent = [batch[0].evolve() if copy else batch[0]]
    hops("message.sent", sent, "out")
    hops("message.done", batch)
    hops.close()
    assert sent[0].trace == PARENT
    assert exporter.get_finished_spans() == ()


def test_traced_items_lost_on_the_way_are_no_longer_expected_after_a_minute(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lossy link may drop traced items sent to an actor: it reads batches whole
    while it expects them, and stops a minute after it last found one, so untraced
    batches cost it nothing again (it read every batch for the rest of the run)."""
    clock = [10**12]
    monkeypatch.setattr(_tracing, "time_ns", lambda: clock[0])

    @attrs.define
    class Owner:
        watched: bool = False

    owner = Owner()
    tracing = _tracing.Tracing.start("g", 1.0, provider)
    hops = ActorTracing(
        tracing, "p", "process", origin=False, says_done=True, outputs={}, owner=owner
    )
    hops.expect(2)  # two traced items sent its way, then dropped by the link
    for _ in range(3):
        batch = [af.Data(fields={"n": 1})]
        hops("message.received", batch)
        hops("message.done", batch)
        clock[0] += 25 * 10**9
    assert owner.watched
    assert hops.expected == 2
    batch = [af.Data(fields={"n": 2})]
    hops("message.received", batch)
    hops("message.done", batch)
    assert hops.expected == 0
    assert not owner.watched


def test_always_on_records_a_span_under_an_unsampled_parent_as_start_span_does(
    exporter: InMemorySpanExporter,
) -> None:
    """``ALWAYS_ON`` (not the default ``ParentBased(ALWAYS_ON)``) records a span even
    when the item's parent is not sampled: spans then go through ``start_span``."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = _spans_for(provider.get_tracer("t"))
    assert isinstance(spans, _ViaTracer)
    (hop,) = spans.open("a process", "a", [af.Data(id="m", trace=PARENT[:-2] + "00")], [0], 1)
    spans.end([hop], 2, "a process", "a")
    (made,) = exporter.get_finished_spans()
    assert made.name == "a process"


def test_one_failure_marks_one_copy_of_an_item_open_twice(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Two copies of one item open at once (sent twice upstream, workers): one raise
    gives one span the error status, not both."""
    tracing = _tracing.Tracing.start("g", 1.0, provider)
    hops = ActorTracing(tracing, "p", "process", origin=False, says_done=True, remote=True)
    item = af.Data(id="m", trace=PARENT)
    batch = [item, item]
    hops("message.received", batch)
    hops("message.failed", [item])
    hops("message.done", batch)
    statuses = sorted(span.status.status_code.name for span in exporter.get_finished_spans())
    assert statuses == ["ERROR", "UNSET"]
