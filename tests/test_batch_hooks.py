"""Batch hooks (``process_batch``, ``consume_batch``): checked at validation, and every
guarantee of a per-item module held: counters, status, ports, sync and async, threads,
fusion, metrics and traces."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow._system import handling_times
from actorflow.testing import run_graph, run_module


class Odds(af.Processor):
    """A flat map: each odd number twice, even ones dropped; notes each batch's size."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, sizes: list[int] | None = None) -> None:
        self.sizes = sizes if sizes is not None else []

    def process_batch(self, batch: list[int]) -> list[int]:
        self.sizes.append(len(batch))
        return [x for x in batch if x % 2 for _ in range(2)]


class Gather(af.Sink):
    """Keeps every batch it is given, in order."""

    def __init__(self, into: list[list[Any]]) -> None:
        self.into = into

    def consume_batch(self, batch: list[Any]) -> None:
        self.into.append(batch)


def pipeline(count: int, processor: type[af.Processor], into: Any, **options: Any) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    graph.add("proc", processor, **options)
    graph.add("sink", Gather, into=into)
    graph.chain("src", "proc", "sink")
    return graph


# -- validation ---------------------------------------------------------------------------


class Both(af.Processor):
    def process(self, data: Any) -> Any:
        return data

    def process_batch(self, batch: list[Any]) -> list[Any]:
        return batch


class SinkWithProcessBatch(af.Sink):
    def process_batch(self, batch: list[Any]) -> None:
        pass


class ProcessorWithConsumeBatch(af.Processor):
    def consume_batch(self, batch: list[Any]) -> None:
        pass


class TagWithBatch(af.Tag):
    def tag(self, data: Any) -> dict[str, Any]:
        return {}

    def process_batch(self, batch: list[Any]) -> list[Any]:
        return batch


class SourceWithBatch(af.Source):
    def start(self) -> list[int]:
        return [1]

    def consume_batch(self, batch: list[Any]) -> None:
        pass


class Neither(af.Processor):
    pass


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (Both, "Both defines both process() and process_batch()"),
        (SinkWithProcessBatch, "defines process_batch(), which the runtime never calls"),
        (ProcessorWithConsumeBatch, "defines consume_batch(), which the runtime never calls"),
        (TagWithBatch, "defines process_batch(), which the runtime never calls"),
        (SourceWithBatch, "defines consume_batch(), which the runtime never calls"),
        (Neither, "does not define process()"),
    ],
)
def test_a_misplaced_or_doubled_batch_hook_is_a_graph_error_naming_the_module(
    cls: type[af.Module], message: str
) -> None:
    """Both hooks, a batch hook on a kind that never calls it, or neither hook: the
    graph is refused before anything runs, naming the module and the hook."""
    graph = af.Graph()
    graph.add("it", cls)
    with pytest.raises(af.GraphError, match=r"module 'it'") as caught:
        graph.validate()
    assert message in str(caught.value)


def test_a_batch_hook_alone_stands_in_for_the_per_item_hook() -> None:
    """A processor with process_batch and a sink with consume_batch validate."""
    pipeline(3, Odds, []).validate()


def test_a_batch_hook_set_in_init_is_checked_when_the_module_is_built() -> None:
    """``self.process_batch = ...`` beside a process() fails when attached, naming it."""

    class Late(af.Processor):
        def __init__(self) -> None:
            self.process_batch = list

        def process(self, data: Any) -> Any:
            return data

    with pytest.raises(af.ValidationError, match=r"both process\(\) and process_batch\(\)"):
        run_module(Late, [1])


# -- what flows and what is counted ---------------------------------------------------------


def test_a_flat_map_sends_what_it_returns_and_counts_received_emitted_filtered() -> None:
    """Outputs go on in order; ``filtered`` is how many fewer came out than went in (per
    batch), as a per-item processor returning None counts each; the sink gets batches
    in arrival order."""
    got: list[list[int]] = []
    status = af.run(pipeline(100, Odds, got), max_batch=10)
    flat = [x for batch in got for x in batch]
    assert flat == [x for x in range(100) if x % 2 for _ in range(2)]
    proc = status.actors["proc"]
    assert (proc.received, proc.emitted, proc.errors) == (100, 100, 0)
    # Each batch of 10 sends 10 (5 odds twice): nothing filtered.
    assert proc.filtered == 0
    assert status.actors["sink"].received == 100
    assert max(len(batch) for batch in got) > 1  # batches, not items
    assert status.state is af.SystemState.DONE


class Halve(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process_batch(self, batch: list[int]) -> Iterator[int]:
        yield from batch[::2]  # a generator: its items are the outputs


def test_fewer_outputs_than_inputs_count_as_filtered() -> None:
    """A batch of n giving m < n outputs counts n - m as filtered: received equals
    emitted plus filtered, as for a per-item processor."""
    got: list[list[int]] = []
    status = af.run(pipeline(40, Halve, got), max_batch=4)
    proc = status.actors["proc"]
    assert [x for batch in got for x in batch] == [x for x in range(40) if x % 4 in (0, 2)]
    assert (proc.received, proc.emitted, proc.filtered) == (40, 20, 20)


class NoneOut(af.Processor):
    def process_batch(self, batch: list[Any]) -> None:
        return None


class NotIterable(af.Processor):
    def process_batch(self, batch: list[Any]) -> int:
        return 5


class OneValue(af.Processor):
    """Returns one value that iterates as something else (bytes as ints, say)."""

    def process_batch(self, batch: list[Any]) -> Any:
        return self.value

    value: Any = None


@pytest.mark.parametrize("value", ["ab", b"ab", bytearray(b"ab"), memoryview(b"ab"), {"a": 1}])
def test_a_single_value_that_happens_to_iterate_is_refused(value: Any) -> None:
    """Text, bytes of any kind or a dict returned from ``process_batch`` are one value,
    not a batch: refused with a message naming the hook, never sent char by char."""
    hook = type("OneValueNow", (OneValue,), {"value": value})
    failed = run_module(hook, [1], supervise={"attempts": 1})
    assert [letter.item for letter in failed.dead_letters] == [1]
    assert "not an iterable of the items to send" in str(failed.dead_letters[0].error)


def test_none_sends_nothing_and_a_non_iterable_is_the_module_failing() -> None:
    """``None`` is no output (all filtered); anything not iterable fails the module with
    a message naming the hook and what it returned."""
    result = run_module(NoneOut, [1, 2, 3])
    assert result.output() == []
    assert result.status.actors["none_out"].filtered == 3
    failed = run_module(NotIterable, [1], supervise={"attempts": 1})
    assert [letter.item for letter in failed.dead_letters] == [1]
    assert "process_batch() returned 5, not an iterable" in str(failed.dead_letters[0].error)


class ByPort(af.Processor):
    inputs: ClassVar = {"left": int, "right": int}
    outputs: ClassVar = {"out": tuple}

    def process_batch(self, batch: list[int], port: str) -> list[tuple[str, int]]:
        return [(port, x) for x in batch]


def test_a_batch_hook_may_take_the_port_its_batch_came_in_on() -> None:
    """``process_batch(self, batch, port)``: a batch comes from one link, so one port."""
    result = run_module(ByPort, {"left": [1, 2], "right": [3]})
    assert sorted(result.output()) == [("left", 1), ("left", 2), ("right", 3)]


class AsyncDouble(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    async def process_batch(self, batch: list[int]) -> list[int]:
        await trio.sleep(0.01)
        return [2 * x for x in batch]


class AsyncGenDouble(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    async def process_batch(self, batch: list[int]) -> AsyncIterator[int]:
        for x in batch:
            await trio.lowlevel.checkpoint()
            yield 2 * x


class AsyncGather(af.Sink):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    async def consume_batch(self, batch: list[Any]) -> None:
        await trio.sleep(0.01)
        self.into.extend(batch)


class ThreadDouble(af.Processor):
    blocking = True
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}
    threads: ClassVar[set[bool]] = set()

    def process_batch(self, batch: list[int]) -> Iterator[int]:
        ThreadDouble.threads.add(threading.current_thread() is threading.main_thread())
        for x in batch:
            yield 2 * x


@pytest.mark.parametrize("processor", [AsyncDouble, AsyncGenDouble, ThreadDouble])
def test_async_generator_and_blocking_batch_hooks_handle_every_item(
    processor: type[af.Processor],
) -> None:
    """``async def``, async generators and blocking modules (their sync batch hook in a
    worker thread) send every output, in order, into an async sink."""
    ThreadDouble.threads = set()
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=50)
    graph.add("proc", processor)
    graph.add("sink", AsyncGather, into=out)
    graph.chain("src", "proc", "sink")
    result = run_graph(graph, virtual_time=processor is not ThreadDouble)
    assert out == [2 * x for x in range(50)]
    assert result.status.actors["proc"].emitted == 50
    if processor is ThreadDouble:
        assert ThreadDouble.threads == {False}  # never on the event loop's thread


class Doubled(af.Processor):
    """A decorator without functools.wraps hides an async def: still awaited."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def _inner(self, batch: list[int]) -> Any:
        async def later() -> list[int]:
            await trio.lowlevel.checkpoint()
            return [2 * x for x in batch]

        return later()

    def process_batch(self, batch: list[int]) -> Any:
        return self._inner(batch)


def test_a_sync_looking_batch_hook_that_returns_an_awaitable_is_awaited() -> None:
    """Its first call teaches the runtime the hook is async (never fused from then on)."""
    result = run_module(Doubled, range(30))
    assert result.output() == [2 * x for x in range(30)]


# -- fusion, metrics, traces ------------------------------------------------------------------


class Tasks(af.Processor):
    """Passes batches on, noting the task each ran in."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, tasks: list[Any], box: dict[str, Any]) -> None:
        self.tasks = tasks
        self.box = box

    def process_batch(self, batch: list[int]) -> list[int]:
        self.tasks.append(trio.lowlevel.current_task())
        system = self.box.get("system")
        if system is not None and 199 in batch:
            self.box["status"] = system.status()
        return batch


class SourceTask(Numbers):
    def __init__(self, count: int, box: dict[str, Any]) -> None:
        super().__init__(count)
        self.box = box

    def start(self) -> Any:
        self.box["src"] = trio.lowlevel.current_task()
        return super().start()


class Gate(af.Source):
    """Ready once the test holds the system: the source that depends on it waits."""

    outputs: ClassVar = {}

    def __init__(self, box: dict[str, Any]) -> None:
        self.box = box

    async def start(self) -> None:
        await self.box["go"].wait()


@pytest.mark.parametrize("fuse", [True, False])
async def test_a_chain_of_batch_hooks_is_fused_into_its_heads_task_unless_switched_off(
    autojump_clock: trio.testing.MockClock, fuse: bool
) -> None:
    """With default settings both stages end up running in the source's task, and
    status says so (``fused_into``); ``fuse=False`` keeps them in their own."""
    box: dict[str, Any] = {"go": trio.Event()}
    a: list[Any] = []
    b: list[Any] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", SourceTask, count=200, box=box)
    graph.add("a", Tasks, tasks=a, box={})
    graph.add("b", Tasks, tasks=b, box=box)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "a", "b", "sink", buffer=4)
    graph.add("gate", Gate, box=box)
    graph.depends_on("src", "gate")
    async with af.open_system(graph, fuse=fuse) as system:
        box["system"] = system
        box["go"].set()
    assert out == list(range(200))
    if fuse:
        assert a[-1] is b[-1] is box["src"]
        fused = {name: box["status"].actors[name].fused_into for name in ("a", "b")}
        assert fused == {"a": "src", "b": "src"}
    else:
        assert len({*a, *b, box["src"]}) == 3
        assert all(actor.fused_into is None for actor in box["status"].actors.values())


def test_handling_times_count_every_item_of_a_batch() -> None:
    """With metrics on, each batch is timed once and counted as its items."""

    async def main() -> int:
        got: list[list[int]] = []
        async with af.open_system(pipeline(60, Odds, got), metrics=0) as system:
            with trio.fail_after(30):
                while system.status().actors["sink"].received < 60:
                    await trio.sleep(0.01)
            return handling_times(system)["proc"].count

    assert trio.run(main) == 60


class DataSource(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def start(self) -> Iterator[af.Data]:
        return (af.Data(fields={"n": n}) for n in range(20))


class PassEach(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data:
        return data


class PassBatch(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process_batch(self, batch: list[af.Data]) -> list[af.Data]:
        return batch


class DropEach(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def consume(self, data: af.Data) -> None:
        pass


class DropBatch(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def consume_batch(self, batch: list[af.Data]) -> None:
        pass


def _spans(processor: type[af.Processor], sink: type[af.Sink]) -> Counter[str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "batch"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    graph = af.Graph(name="traced")
    graph.add("src", DataSource)
    graph.add("proc", processor)
    graph.add("sink", sink)
    graph.chain("src", "proc", "sink")
    af.run(graph, trace_ratio=1.0, tracer_provider=provider)
    return Counter(span.name for span in exporter.get_finished_spans())


def test_each_traced_item_gets_one_span_per_hop_as_with_per_item_hooks() -> None:
    """Batch hooks make the same spans as per-item hooks: one per traced item per actor."""
    each = _spans(PassEach, DropEach)
    batched = _spans(PassBatch, DropBatch)
    assert batched == each
    assert sum(batched.values()) == 20 * 3  # src, proc, sink


class Costly(af.Processor):
    """Each call costs (virtual) time, ``per_item`` seconds an item (a millisecond by
    default) plus ``per_call`` (a round trip): the hook moves the clock on."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(
        self,
        clock: trio.testing.MockClock,
        sizes: list[int],
        per_item: float = 0.001,
        per_call: float = 0.0,
    ) -> None:
        self.clock = clock
        self.sizes = sizes
        self.per_item = per_item
        self.per_call = per_call

    def process_batch(self, batch: list[int]) -> list[int]:
        self.sizes.append(len(batch))
        self.clock.jump(self.per_call + self.per_item * len(batch))
        return batch


async def test_costly_batches_are_cut_to_fit_the_quantum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A call seen to take more than a quarter of the quantum makes the next calls
    smaller, sized to fit it: the actor yields between them, as between items."""
    sizes: list[int] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    graph.add("proc", Costly, clock=autojump_clock, sizes=sizes)
    graph.add("sink", Collect, into=out)
    graph.link("src", "proc", buffer=100)
    graph.link("proc", "sink", buffer=100)
    async with af.open_system(graph, quantum=0.01, max_batch=100, fuse=False):
        pass
    assert out == list(range(300))
    assert sizes[0] > 10  # the first call learns the cost
    assert max(sizes[1:]) <= 5  # 2.5 ms of a 10 ms quantum at 1 ms an item
    assert sum(sizes) == 300


class AsyncCost(af.Processor):
    """Each call waits 20 ms (a database round trip): the loop runs meanwhile."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes

    async def process_batch(self, batch: list[int]) -> list[int]:
        self.sizes.append(len(batch))
        await trio.sleep(0.02)
        return batch


@pytest.mark.parametrize("kind", ["fixed", "async"])
async def test_a_cost_per_call_is_not_cut_into_slices(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    """Slicing helps only a hook that holds the loop at a cost per item: a call whose
    cost is per call (a round trip, a vectorised call) is tried once in a slice, then
    given whole batches again; an async hook, which lets the loop run while it waits,
    is never sliced. Either way the 300 items take a handful of calls, not 300."""
    sizes: list[int] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    if kind == "fixed":
        graph.add("proc", Costly, clock=autojump_clock, sizes=sizes, per_item=0, per_call=0.02)
    else:
        graph.add("proc", AsyncCost, sizes=sizes)
    graph.add("sink", Collect, into=out)
    graph.link("src", "proc", buffer=100)
    graph.link("proc", "sink", buffer=100)
    async with af.open_system(graph, quantum=0.01, max_batch=100, fuse=False):
        pass
    assert out == list(range(300))
    assert sum(sizes) == 300
    assert len(sizes) <= (6 if kind == "fixed" else 4)


class Misnamed(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process_batches(self, batch: list[int]) -> list[int]:
        return batch


def test_a_misspelt_batch_hook_is_named_as_the_batch_hook() -> None:
    """``process_batches`` was meant as ``process_batch``, not ``process``: the
    suggestion names the hook closest to what the class defines."""
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("proc", Misnamed)
    graph.chain("src", "proc")
    [problem] = [p.message for p in graph.problems()]
    assert "did you mean to name process_batches() process_batch()?" in problem
    assert "module 'proc'" in problem
