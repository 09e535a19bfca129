"""OpenTelemetry traces: one trace per sampled item, a span per hop, across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import pytest
import structlog
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis_server import RedisServer

import actorflow as af
import actorflow._tracing
from actorflow._data import _EXT_DATA
from actorflow._tracing import Tracing

CHECKOUT = Path(__file__).resolve().parent.parent


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self) -> Iterator[af.Data]:
        return (af.Data(fields={"n": n}) for n in range(self.count))


class Inc(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data | None:
        if data.fields["n"] == -1:
            return None
        return data.with_fields(n=data.fields["n"] + 1)


class Renew(af.Processor):
    """Makes a new item of each: the trace of the old one ends here."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data:
        return af.Data(fields=data.fields)


class Drop(af.Sink):
    inputs: ClassVar = {"in": object}

    def consume(self, item: object) -> None:
        pass


def pipeline(count: int, *middle: tuple[str, type[af.Module]]) -> af.Graph:
    graph = af.Graph(name="traced")
    graph.add("src", Numbers, count=count)
    for name, kind in middle:
        graph.add(name, kind)
    graph.add("sink", Drop)
    graph.chain("src", *(name for name, _ in middle), "sink")
    return graph


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def by_trace(spans: tuple[ReadableSpan, ...]) -> dict[int, list[ReadableSpan]]:
    traces: dict[int, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda span: span.start_time or 0):
        assert span.context is not None
        traces.setdefault(span.context.trace_id, []).append(span)
    return traces


def chain_of(spans: list[ReadableSpan]) -> list[str]:
    """The span names from the root down, checking each is the child of the one before."""
    root = next(span for span in spans if span.parent is None)
    names, current = [root.name], root
    while True:
        assert current.context is not None
        children = [
            span
            for span in spans
            if span.parent is not None and span.parent.span_id == current.context.span_id
        ]
        if not children:
            return names
        assert len(children) == 1
        current = children[0]
        names.append(current.name)


def test_every_item_is_one_trace_with_a_span_per_hop(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """At ratio 1 each item gets a root span where it enters and a child per actor it
    passes, in the order it passed them, each naming the item."""
    af.run(pipeline(20, ("a", Inc), ("b", Inc)), trace_ratio=1.0, tracer_provider=provider)
    traces = by_trace(exporter.get_finished_spans())
    assert len(traces) == 20
    for spans in traces.values():
        assert chain_of(spans) == ["src send", "a process", "b process", "sink consume"]
        assert len({span.attributes["message.id"] for span in spans if span.attributes}) == 1
        kinds = [span.kind for span in spans]
        assert kinds == [SpanKind.PRODUCER, *[SpanKind.CONSUMER] * 3]
        assert spans[0].attributes is not None
        assert spans[0].attributes["actorflow.graph"] == "traced"
        for span in spans:
            assert span.attributes is not None
            assert span.attributes["actorflow.actor"] == span.name.split()[0]
            assert span.end_time is not None
            assert span.start_time is not None
            assert span.end_time >= span.start_time


def test_a_ratio_traces_about_that_share_of_the_items(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """At 10% about a tenth of 5000 items are traced, each of them whole."""
    af.run(pipeline(5000, ("a", Inc)), trace_ratio=0.1, tracer_provider=provider)
    traces = by_trace(exporter.get_finished_spans())
    assert 300 <= len(traces) <= 700  # 500 expected, sd 21: beyond 9 sd
    for spans in traces.values():
        assert chain_of(spans) == ["src send", "a process", "sink consume"]


def test_without_a_ratio_no_actor_gets_a_hook(provider: TracerProvider) -> None:
    """The default (0) installs nothing: the actors run as if tracing did not exist."""

    async def hooks() -> list[object]:
        async with af.open_system(pipeline(3, ("a", Inc)), tracer_provider=provider) as system:
            return [system._actors[name].hops for name in system.actors]

    assert trio.run(hooks) == [None, None, None]


def test_ports_that_cannot_carry_data_get_no_hook(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An int pipeline has nothing to carry a trace in: no hook, no span, no cost."""

    class Ints(af.Source):
        outputs: ClassVar = {"out": int}

        def start(self) -> range:
            return range(10)

    class Inc(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, item: int) -> int:
            return item + 1

    graph = af.Graph(name="ints")
    graph.add("src", Ints)
    graph.add("inc", Inc)
    graph.add("sink", Drop)
    graph.chain("src", "inc", "sink")

    async def hooks() -> dict[str, object]:
        async with af.open_system(graph, trace_ratio=1.0, tracer_provider=provider) as system:
            return {name: system._actors[name].hops for name in system.actors}

    with structlog.testing.capture_logs() as logs:
        found = trio.run(hooks)
    assert found["src"] is None
    assert found["inc"] is None
    assert found["sink"] is not None  # it takes anything, Data included
    assert exporter.get_finished_spans() == ()
    (warned,) = [entry for entry in logs if entry["event"] == "tracing.nothing_traced"]
    assert warned["trace_ratio"] == 1.0


def test_mixed_items_are_traced_when_they_are_data(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A port of ``object`` carrying ints and Data: the Data items are traced, the rest
    pass untouched."""

    class Mixed(af.Source):
        outputs: ClassVar = {"out": object}

        def start(self) -> list[object]:
            return [1, af.Data(fields={"n": 1}), "two", af.Data(fields={"n": 2}), 3]

    graph = af.Graph(name="mixed")
    graph.add("src", Mixed)
    graph.add("sink", Drop)
    graph.link("src", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    traces = by_trace(exporter.get_finished_spans())
    assert [chain_of(spans) for spans in traces.values()] == [["src send", "sink consume"]] * 2


def test_a_filtered_or_renewed_item_ends_its_trace_where_it_ended(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An item a processor drops, or replaces by a new one, ends its trace at that
    processor; its span still ends."""

    class Minus(af.Source):
        outputs: ClassVar = {"out": af.Data}

        def start(self) -> list[af.Data]:
            return [af.Data(fields={"n": -1}), af.Data(fields={"n": 5})]

    graph = af.Graph(name="ends")
    graph.add("src", Minus)
    graph.add("inc", Inc)
    graph.add("renew", Renew)
    graph.add("sink", Drop)
    graph.chain("src", "inc", "renew", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    chains = sorted(chain_of(spans) for spans in by_trace(exporter.get_finished_spans()).values())
    assert chains == [
        ["src send", "inc process"],
        ["src send", "inc process", "renew process"],
    ]
    assert all(span.end_time for span in exporter.get_finished_spans())


def test_an_item_with_a_damaged_traceparent_starts_a_trace_of_its_own(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A ``Data.trace`` that is no traceparent (written by hand, or damaged) is not
    fatal: the next span starts a new trace, and the item goes on carrying it."""

    class Damaged(af.Source):
        outputs: ClassVar = {"out": af.Data}

        def start(self) -> list[af.Data]:
            return [af.Data(fields={"n": 1}, trace="not a traceparent")]

    graph = af.Graph(name="damaged")
    graph.add("src", Damaged)
    graph.add("inc", Inc)
    graph.add("sink", Drop)
    graph.chain("src", "inc", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    (spans,) = by_trace(exporter.get_finished_spans()).values()
    assert chain_of(spans) == ["inc process", "sink consume"]


def test_debug_logs_still_trace_ids_while_spans_are_made(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """With debug logs on, every hop is still logged for ``actorflow logs --trace``."""
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", level="debug", file=str(path))
    af.run(pipeline(3, ("a", Inc)), trace_ratio=1.0, tracer_provider=provider)
    structlog.reset_defaults()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    traced = {span.attributes["message.id"] for span in exporter.get_finished_spans()}
    assert len(traced) == 3
    for message_id in traced:
        hops = [
            (e["actor"], e["event"])
            for e in events
            if e["event"].startswith("message.") and message_id in e["message_ids"]
        ]
        assert hops == [
            ("src", "message.sent"),
            ("a", "message.received"),
            ("a", "message.sent"),
            ("sink", "message.received"),
        ]


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for traces where OpenTelemetry is not installed is an ImportError that
    says which extra to install; nothing runs."""
    monkeypatch.setitem(sys.modules, "actorflow._tracing", None)
    with pytest.raises(ImportError, match=r"pip install 'actorflow\[otel\]'"):
        af.run(pipeline(3), trace_ratio=0.5)


# -- the trace travels with the item ----------------------------------------------------


def test_a_traced_item_encodes_its_traceparent_and_an_untraced_one_as_before() -> None:
    """``Data.trace`` survives encoding; an untraced item is written exactly as before
    the field existed (5 items), and such entries still decode."""
    traced = af.Data(fields={"n": 1}, trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert af.decode(af.encode(traced)) == traced
    assert af.decode(af.encode(traced)).trace == traced.trace
    untraced = af.Data(fields={"n": 1}, timestamp=1.0, id="x", origin="src")
    ext = msgpack.unpackb(af.encode(untraced), raw=False)
    assert ext.code == _EXT_DATA
    assert len(msgpack.unpackb(ext.data, raw=False)) == 5
    old = msgpack.packb(
        msgpack.ExtType(_EXT_DATA, msgpack.packb([{"n": 1}, {}, 1.0, "x", "src"])),
        use_bin_type=True,
    )
    assert af.decode(old) == untraced
    assert af.decode(old).trace is None
    assert traced.evolve(fields={}).trace == traced.trace


def test_tracing_does_not_change_equality() -> None:
    """Two items alike but for their trace are equal (a traced run compares as an
    untraced one), and so are their hashes where they have one."""
    item = af.Data(fields={"n": 1}, tags={"k": "v"}, timestamp=1.0, id="x", origin="src")
    traced = item.evolve(trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert traced == item
    assert traced != item.evolve(id="y")
    frozen = af.Data(timestamp=1.0, id="x")
    object.__setattr__(frozen, "fields", None)  # hashable only without its dicts
    object.__setattr__(frozen, "tags", None)
    other = frozen.evolve(trace="t")
    object.__setattr__(other, "fields", None)
    object.__setattr__(other, "tags", None)
    assert hash(frozen) == hash(other)


def test_a_trace_that_is_not_text_is_refused_on_decode() -> None:
    """A damaged entry whose trace is not a string is undecodable, not a bad Data."""
    bad = msgpack.packb(
        msgpack.ExtType(_EXT_DATA, msgpack.packb([{}, {}, 1.0, "x", None, 7])),
        use_bin_type=True,
    )
    with pytest.raises(af.SerializationError, match="trace must be a string"):
        af.decode(bad)


SIDE = """
import json
import sys
from typing import ClassVar

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import actorflow as af


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def start(self):
        return (af.Data(fields={"n": n}) for n in range(COUNT))


class Inc(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data):
        return data.with_fields(n=data.fields["n"] + 1)


class Drop(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def consume(self, data):
        pass


graph = af.Graph(name=NAME)
graph.add("src", Numbers)
graph.add("here", Inc)
graph.add("there", Inc)
graph.add("sink", Drop)
graph.link("src", "here")
graph.link("here", "there", remote={"batch": 10})
graph.link("there", "sink")
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
af.run(graph, only=sys.argv[1].split(","), remote_url=URL, trace_ratio=1.0,
       tracer_provider=provider)
print(json.dumps([
    {"name": s.name, "trace": s.context.trace_id, "span": s.context.span_id,
     "parent": s.parent.span_id if s.parent else None, "id": s.attributes["message.id"]}
    for s in exporter.get_finished_spans()
]))
"""


def test_one_item_is_one_trace_across_two_processes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Producer and consumer in two processes joined by a remote link over real Redis:
    each item's spans in both processes make one trace, the far side's first span the
    child of the near side's last."""
    count = 30
    script = tmp_path / "side.py"
    script.write_text(
        f"COUNT = {count}\nNAME = {uuid.uuid4().hex[:8]!r}\nURL = {redis_server.url!r}\n"
        + textwrap.dedent(SIDE)
    )
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    sides = [
        subprocess.Popen(
            [sys.executable, str(script), only],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for only in ("there,sink", "src,here")
    ]
    outputs: list[list[dict[str, Any]]] = []
    for side in sides:
        out, err = side.communicate(timeout=60)
        assert side.returncode == 0, err
        outputs.append(json.loads(out.splitlines()[-1]))
    far, near = outputs
    assert {s["name"] for s in near} == {"src send", "here process"}
    assert {s["name"] for s in far} == {"there process", "sink consume"}
    for item in {s["id"] for s in near}:
        spans = [s for s in near + far if s["id"] == item]
        assert len({s["trace"] for s in spans}) == 1
        named = {s["name"]: s for s in spans}
        assert named["there process"]["parent"] == named["here process"]["span"]
        assert named["sink consume"]["parent"] == named["there process"]["span"]
        assert named["here process"]["parent"] == named["src send"]["span"]
    assert len({s["id"] for s in far}) == count


def test_actorflow_run_exports_spans_as_otel_traces_exporter_says(tmp_path: Path) -> None:
    """``actorflow run --trace-ratio 1`` with ``OTEL_TRACES_EXPORTER=console`` prints
    the spans of every hop, flushed before the command ends."""
    graph = tmp_path / "graph.toml"
    graph.write_text(
        textwrap.dedent(
            """
            [graph]
            name = "cli-traced"

            [modules.src]
            module = "tests_numbers"
            config = { count = 3 }

            [modules.sink]
            module = "tests_drop"

            [[links]]
            from = "src"
            to = "sink"
            """
        )
    )
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.actorflow]
            pythonpath = ["."]

            [tool.actorflow.modules]
            tests_numbers = "modules:Numbers"
            tests_drop = "modules:Drop"
            """
        )
    )
    (tmp_path / "modules.py").write_text(
        textwrap.dedent(
            """
            from typing import ClassVar
            import actorflow as af

            class Numbers(af.Source):
                outputs: ClassVar = {"out": af.Data}

                def __init__(self, count):
                    self.count = count

                def start(self):
                    return (af.Data(fields={"n": n}) for n in range(self.count))

            class Drop(af.Sink):
                inputs: ClassVar = {"in": af.Data}

                def consume(self, data):
                    pass
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "OTEL_TRACES_EXPORTER": "console"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actorflow",
            "run",
            "graph.toml",
            "--no-view",
            "--trace-ratio",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"name": "src send"') == 3
    assert result.stdout.count('"name": "sink consume"') == 3


def test_an_exporter_that_is_not_installed_is_a_one_line_error() -> None:
    """``OTEL_TRACES_EXPORTER`` naming an exporter that is not installed ends
    ``actorflow run --trace-ratio`` at once, in one line that says what to install."""
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "OTEL_TRACES_EXPORTER": "otlp"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actorflow",
            "run",
            "examples/sensor_pipeline.toml",
            "--trace-ratio",
            "0.5",
        ],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: --trace-ratio: OTEL_TRACES_EXPORTER names 'otlp', which is not installed "
        "(pip install opentelemetry-exporter-otlp); 'console' prints spans, 'none' exports "
        "nothing\n"
    )


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.one_of(
        st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
        st.sampled_from([5e-324, 1e-300, 1e-17, 1e-16, 0.5, 1.0 - 1e-16, 1.0]),
    ),
    draw=st.one_of(
        st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
        st.sampled_from([0.0, 1.0 - 2**-53]),
    ),
    run=st.integers(min_value=1, max_value=10**6),
)
def test_any_ratio_draws_a_gap_of_at_least_one(ratio: float, draw: float, run: int) -> None:
    """Every ratio in (0, 1] gives a whole gap of at least one item, however tiny the
    ratio (``log(1 - 1e-17)`` is 0: a division by zero before ``log1p``), with items
    chosen one by one or in runs."""
    tracer = TracerProvider().get_tracer("t")
    tracing = Tracing("g", ratio, tracer, run=run, random=lambda: draw)
    gap = tracing.gap()
    assert isinstance(gap, int)
    assert 1 <= gap <= 10**18 + 1
    if ratio == 1.0:
        assert gap == 1


class Frame:
    """Like a pandas frame with a ``trace`` column: its truth value raises."""

    @property
    def trace(self) -> object:
        return self

    def __bool__(self) -> bool:
        raise ValueError("The truth value of a Series is ambiguous")


class Frames(af.Source):
    outputs: ClassVar = {"out": object}

    def start(self) -> list[object]:
        return [Frame(), af.Data(fields={"n": 1}), Frame()]


class Pass(af.Processor):
    inputs: ClassVar = {"in": object}
    outputs: ClassVar = {"out": object}

    def process(self, item: object) -> object:
        return item


class Count(af.Sink):
    inputs: ClassVar = {"in": object}

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    def consume(self, item: object) -> None:
        self.seen.append(item)


def frames_graph(seen: list[object]) -> af.Graph:
    graph = af.Graph(name="frames")
    graph.add("src", Frames)
    graph.add("pass", Pass)
    graph.add("sink", Count, seen=seen)
    graph.chain("src", "pass", "sink")
    return graph


def test_an_item_whose_trace_is_not_a_traceparent_passes_untouched(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Only a ``Data``'s ``trace`` is read: an item with a ``trace`` of its own (a
    pandas column, whose truth value raises) is never asked, and its batch goes on."""
    seen: list[object] = []
    status = af.run(frames_graph(seen), trace_ratio=1.0, tracer_provider=provider)
    assert len(seen) == 3
    assert status.actors["pass"].errors == 0
    assert [chain_of(spans) for spans in by_trace(exporter.get_finished_spans()).values()] == [
        ["src send", "pass process", "sink consume"]
    ]


def test_a_broken_tracer_never_fails_an_actor(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tracer that raises is logged once per actor; every item still arrives."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter on fire")

    monkeypatch.setattr(actorflow._tracing, "_retraced", broken)  # each new trace's item
    seen: list[object] = []
    with structlog.testing.capture_logs() as logs:
        status = af.run(frames_graph(seen), trace_ratio=1.0, tracer_provider=provider)
    assert len(seen) == 3
    assert all(actor.errors == 0 for actor in status.actors.values())
    failed = [entry for entry in logs if entry["event"] == "tracing.failed"]
    assert failed
    assert len({entry["actor"] for entry in failed}) == len(failed)


# -- every copy sent is a child; every span started ends ---------------------------------


class Counted(SpanProcessor):
    """Counts spans started and ended: an exporter only ever sees the ended ones."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


@pytest.fixture
def counted(provider: TracerProvider) -> Counted:
    counter = Counted()
    provider.add_span_processor(counter)
    return counter


class Twice(af.Source):
    """Each item twice in a row (the same id: a copy and the item)."""

    outputs: ClassVar = {"out": af.Data}

    def start(self) -> Iterator[af.Data]:
        for n in range(10):
            item = af.Data(fields={"n": n})
            yield item
            yield item.with_fields(copy=True)


class Check(af.Processor):
    """As examples/sensor_pipeline.py: an alert for some, and every item on."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data, "alert": af.Data}

    async def process(self, data: af.Data) -> af.Data:
        if data.fields["n"] % 2:
            await self.emit(data, "alert")
        return data


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return sorted(
        span.name
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    )


def test_every_copy_an_actor_sends_is_a_child_of_its_span(
    provider: TracerProvider, exporter: InMemorySpanExporter, counted: Counted
) -> None:
    """An item sent on two ports (an alert, then on) is a child of the actor's span on
    both; an item taken twice in one batch (the same id) gets a span per copy, each
    ended, each with its own child downstream."""
    graph = af.Graph(name="copies")
    graph.add("src", Twice)
    graph.add("check", Check)
    graph.add("sink", Drop)
    graph.add("alerts", Drop)
    graph.link("src", "check")
    graph.link("check.out", "sink")
    graph.link("check.alert", "alerts")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    assert counted.started == counted.ended
    traces = by_trace(exporter.get_finished_spans())
    assert len(traces) == 20  # each copy is chosen at the source on its own
    for spans in traces.values():
        (check,) = [span for span in spans if span.name == "check process"]
        assert check.attributes is not None
        below = children(spans, check)
        assert below in (["sink consume"], ["alerts consume", "sink consume"])
    alerted = sum(
        len([span for span in spans if span.name == "alerts consume"]) for spans in traces.values()
    )
    assert alerted == 10


class Dup(af.Processor):
    """Sends each item on twice: the item and a copy (one id, one trace)."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Many:
        return af.Many([data, data.with_fields(copy=True)])


def test_copies_of_one_traced_item_in_one_batch_each_end(
    provider: TracerProvider, exporter: InMemorySpanExporter, counted: Counted
) -> None:
    """Two copies of one traced item (one id, one trace) taken in one batch: each gets
    a span, both end, and each copy sent on is a child of one of them."""
    af.run(pipeline(30, ("dup", Dup), ("inc", Inc)), trace_ratio=1.0, tracer_provider=provider)
    assert counted.started == counted.ended
    traces = by_trace(exporter.get_finished_spans())
    assert len(traces) == 30
    for spans in traces.values():
        incs = [span for span in spans if span.name == "inc process"]
        sinks = [span for span in spans if span.name == "sink consume"]
        assert len(incs) == 2
        assert len(sinks) == 2
        (dup,) = [span for span in spans if span.name == "dup process"]
        assert children(spans, dup) == ["inc process", "inc process"]
        for sink in sinks:
            assert sink.parent is not None
            assert sink.parent.span_id in {inc.context.span_id for inc in incs if inc.context}


class Slow(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    async def process(self, data: af.Data) -> af.Data | None:
        await trio.sleep(0.001 * (data.fields["n"] % 7))
        if data.fields["n"] % 10 == 9:
            return None
        return data


def test_with_several_workers_every_chain_is_right(
    provider: TracerProvider, exporter: InMemorySpanExporter, counted: Counted
) -> None:
    """Workers take items while others are still being handled: each span ends when
    its own item leaves the actor, never at another worker's next item."""
    graph = af.Graph(name="crew")
    graph.add("src", Numbers, count=60)
    graph.add("slow", Slow)
    graph.add("sink", Drop)
    graph.link("src", "slow", workers=4)
    graph.link("slow", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    assert counted.started == counted.ended
    traces = by_trace(exporter.get_finished_spans())
    assert len(traces) == 60
    chains = sorted(tuple(chain_of(spans)) for spans in traces.values())
    assert chains.count(("src send", "slow process", "sink consume")) == 54
    assert chains.count(("src send", "slow process")) == 6
    for spans in traces.values():
        (slow,) = [span for span in spans if span.name == "slow process"]
        assert slow.start_time is not None
        assert slow.end_time is not None
        for sink in (span for span in spans if span.name == "sink consume"):
            assert sink.start_time is not None
            assert slow.end_time <= sink.start_time + 1  # it ended as the item left


def test_the_span_of_an_item_whose_hook_raised_says_so(
    provider: TracerProvider, exporter: InMemorySpanExporter, counted: Counted
) -> None:
    """An item dead-lettered after its hook raised: its span has the error status, and
    ends; the others do not."""

    class Picky(af.Processor):
        inputs: ClassVar = {"in": af.Data}
        outputs: ClassVar = {"out": af.Data}

        def process(self, data: af.Data) -> af.Data:
            if data.fields["n"] == 3:
                raise ValueError("three")
            return data

    graph = af.Graph(name="picky")
    graph.add("src", Numbers, count=6)
    graph.add("picky", Picky)  # the item is dead-lettered, the module restarted
    graph.add("sink", Drop)
    graph.chain("src", "picky", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    assert counted.started == counted.ended
    picky = [span for span in exporter.get_finished_spans() if span.name == "picky process"]
    failed = [span for span in picky if span.status.status_code is StatusCode.ERROR]
    assert len(failed) >= 1
    assert {span.attributes["message.id"] for span in failed if span.attributes} == {
        next(iter(failed)).attributes["message.id"]  # type: ignore[index]
    }
    assert len(picky) - len(failed) >= 5


def test_a_sink_span_lasts_while_the_sink_consumes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A sink's span ends when it has consumed the item, not when it took it."""

    class Costly(af.Sink):
        inputs: ClassVar = {"in": af.Data}

        def consume(self, data: af.Data) -> None:
            deadline = time.perf_counter() + 0.002
            while time.perf_counter() < deadline:
                pass

    graph = af.Graph(name="costly")
    graph.add("src", Numbers, count=3)
    graph.add("sink", Costly)
    graph.link("src", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    sinks = [span for span in exporter.get_finished_spans() if span.name == "sink consume"]
    assert len(sinks) == 3
    for span in sinks:
        assert span.start_time is not None
        assert span.end_time is not None
        assert span.end_time - span.start_time >= 2_000_000


def test_a_processor_that_makes_data_of_other_items_starts_traces(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """An actor whose input is ``object`` (ints here) but that makes new ``Data`` roots
    their traces: where a trace starts does not hang on an input annotation."""

    class Ints(af.Source):
        outputs: ClassVar = {"out": object}

        def start(self) -> range:
            return range(5)

    class Wrap(af.Processor):
        inputs: ClassVar = {"in": object}
        outputs: ClassVar = {"out": af.Data}

        def process(self, item: object) -> af.Data:
            return af.Data(fields={"n": item})

    graph = af.Graph(name="wrapped")
    graph.add("src", Ints)
    graph.add("wrap", Wrap)
    graph.add("inc", Inc)
    graph.add("sink", Drop)
    graph.chain("src", "wrap", "inc", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    chains = [chain_of(spans) for spans in by_trace(exporter.get_finished_spans()).values()]
    assert chains == [["wrap process", "inc process", "sink consume"]] * 5


class Three(af.Processor):
    """Raises on item 3: the module restarts, the items after it are taken again."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data:
        if data.fields["n"] == 3:
            raise ValueError("three")
        return data.with_fields(m=data.fields["n"] * 2)


@pytest.mark.parametrize("made", ["whole", "start_span"])
def test_items_taken_again_after_a_restart_have_one_span_per_hop(
    made: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Items queued in the batch of an incarnation that crashed go back to their link
    and are handled by the next: each has one span per hop, the one of the take that
    handled it (a span of ``start_span`` opened for the unhandled take is marked)."""
    counter = Counted()
    if made == "start_span":
        provider.add_span_processor(counter)  # a processor of its own: start_span
    graph = af.Graph(name="again")
    graph.add("src", Numbers, count=20)
    graph.add("proc", Three)
    graph.add("sink", Drop)
    graph.chain("src", "proc", "sink")
    graph.supervise("proc", attempts=1)
    status = af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    assert status.actors["proc"].restarts >= 1
    spans = exporter.get_finished_spans()
    marked = [s for s in spans if s.attributes and s.attributes.get("actorflow.returned")]
    kept = [s for s in spans if s not in marked]
    assert (made == "start_span") == bool(marked)  # items 4.. were in the crashed batch
    for name in ("src send", "proc process", "sink consume"):
        ids = [s.attributes["message.id"] for s in kept if s.name == name and s.attributes]
        assert len(ids) == len(set(ids)) == (19 if name == "sink consume" else 20)
    for spans_of_one in by_trace(tuple(kept)).values():
        names = chain_of(spans_of_one)
        assert names in (
            ["src send", "proc process", "sink consume"],
            ["src send", "proc process"],
        )
    if made == "start_span":
        assert counter.started == counter.ended


def test_a_consumer_of_a_remote_link_is_not_warned_that_nothing_is_traced(
    provider: TracerProvider,
) -> None:
    """A process that only takes from a remote link receives the traces of the producer's
    process: no warning there; one that takes Data from nowhere traced is warned."""

    async def sink_of() -> Any:
        async with af.open_system(pipeline(1)) as system:
            return system._actors["sink"]

    sink = trio.run(sink_of)
    for remote in (True, False):
        tracing = Tracing.start("far", 1.0, provider)
        assert tracing.for_actor(sink, remote=remote) is not None
        with structlog.testing.capture_logs() as logs:
            tracing.close()
        warned = [entry for entry in logs if entry["event"] == "tracing.nothing_traced"]
        assert len(warned) == (0 if remote else 1)


@pytest.mark.parametrize("run", [1, 8])
@pytest.mark.parametrize("ratio", [0.01, 0.3])
def test_items_chosen_in_runs_are_still_that_share_of_the_items(run: int, ratio: float) -> None:
    """With ``run`` set, a source chooses its items in runs of that many in a row (a
    traced batch's cost shared by the run), and still a share ``ratio`` of them."""
    import random

    tracing = Tracing.start("g", ratio, TracerProvider(), run)
    tracing.random = random.Random(17).random  # the same draws every time: not flaky
    source = actorflow._tracing.ActorTracing(tracing, "src", "send", origin=True, says_done=False)
    source.skip = tracing.gap() - 1
    source.run_left = run - 1
    chosen: list[bool] = []
    for _ in range(3000):
        items = [af.Data() for _ in range(100)]
        source("message.sent", items, "out")
        chosen += [item.trace is not None for item in items]
    share = sum(chosen) / len(chosen)
    assert abs(share - ratio) < 0.1 * ratio  # within 10% over 300,000 items
    runs = "".join("x" if traced else "." for traced in chosen).split(".")[:-1]  # last: cut
    assert all(len(each) % run == 0 for each in runs)  # runs side by side make one
    assert {len(each) for each in runs} - {0} != set()


async def test_a_module_added_while_it_runs_makes_spans_and_timings_as_the_others(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A processor added to a running, traced system with metrics gets its hop's span
    in each item's trace (its parent the hop before it) and a handling-time histogram,
    as a module there from the start does."""
    from actorflow._system import handling_times

    graph = af.Graph(name="grown")
    graph.add("in", DataInlet)
    graph.add("sink", Drop)
    graph.link("in", "sink")
    async with af.open_system(
        graph, trace_ratio=1.0, tracer_provider=provider, settings=af.Settings(metrics=0)
    ) as system:
        await system.add("late", Inc, links=[("in", "late"), ("late", "sink")])
        for n in range(3):
            await system.send("in", af.Data(fields={"n": n}))
        await system.close("in")
        await system.wait()
        timed = handling_times(system)
    traces = by_trace(exporter.get_finished_spans()).values()
    # Each item goes to the sink straight from the inlet and through the added module.
    assert len(traces) == 3
    for spans in traces:
        late = [span for span in spans if span.name == "late process"]
        assert len(late) == 1
        root = next(span for span in spans if span.parent is None)
        assert root.name == "in send"
        assert late[0].parent is not None
        assert root.context is not None
        assert late[0].parent.span_id == root.context.span_id
        assert len([span for span in spans if span.name == "sink consume"]) == 2
    assert "late" in timed


class DataInlet(af.Inlet):
    outputs: ClassVar = {"out": af.Data}
