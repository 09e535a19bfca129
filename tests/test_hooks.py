"""How user hooks are classified: once per function, whatever the instance."""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
import trio
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow._hooks import HookStyle, accepts_port, call_hook, hook_style
from actorflow._lifecycle import cleanup, is_default, validate
from actorflow._logging import get_logger


class Shapes:
    def plain(self, data: Any) -> Any:
        return data

    def with_port(self, data: Any, port: str) -> Any:
        return data

    def with_default(self, data: Any, scale: int = 10) -> Any:
        return data

    async def coroutine(self, data: Any) -> Any:
        return data

    def generator(self, data: Any) -> Iterator[Any]:
        yield data

    async def async_generator(self, data: Any) -> AsyncIterator[Any]:
        yield data


def test_hook_style_tells_each_shape_apart() -> None:
    """Sync, async, generator and async generator hooks are told apart."""
    shapes = Shapes()
    assert hook_style(shapes.plain) is HookStyle.SYNC
    assert hook_style(shapes.coroutine) is HookStyle.ASYNC
    assert hook_style(shapes.generator) is HookStyle.SYNC_GEN
    assert hook_style(shapes.async_generator) is HookStyle.ASYNC_GEN


def test_accepts_port_does_not_count_self() -> None:
    """A bound method's ``self`` is not its first argument; a default keeps its value."""
    shapes = Shapes()
    assert not accepts_port(shapes.plain)
    assert accepts_port(shapes.with_port)
    assert not accepts_port(shapes.with_default)
    # The plain function does count its first parameter.
    assert accepts_port(Shapes.plain)
    assert accepts_port(lambda data, port: data)


def test_hooks_are_inspected_once_per_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart's fresh instance reuses what was found for the first one."""

    class Fresh:
        def process(self, data: Any, port: str) -> Any:
            return data

    calls: list[Any] = []
    signature = inspect.signature

    def counting(fn: Any) -> inspect.Signature:
        calls.append(fn)
        return signature(fn)

    monkeypatch.setattr(inspect, "signature", counting)
    answers = {accepts_port(Fresh().process) for _ in range(3)}
    assert answers == {True}
    assert len(calls) == 1
    assert {hook_style(Fresh().process) for _ in range(3)} == {HookStyle.SYNC}


def test_unhashable_callables_are_classified_every_time() -> None:
    """A callable that cannot be cached is still classified."""

    class Callable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, data: Any, port: str) -> Any:
            return data

    hook = Callable()
    assert hook_style(hook) is HookStyle.SYNC
    assert accepts_port(hook)


async def test_base_class_hooks_that_do_nothing_are_not_called() -> None:
    """Module's own validate() and cleanup() are skipped; an override runs."""

    class Quiet(af.Sink):
        def consume(self, data: Any) -> None:
            pass

    class Loud(Quiet):
        def cleanup(self) -> None:
            raise OSError("cannot close")

    async def refuse(hook: Any) -> Any:
        raise AssertionError("a do-nothing hook was called")

    log = get_logger(actor="m")
    assert is_default(Quiet().validate)
    assert is_default(Quiet().cleanup)
    assert not is_default(Loud().cleanup)
    await validate("m", Quiet().validate, refuse, log)
    assert await cleanup("m", Quiet().cleanup, refuse, math.inf, log) is None
    error = await cleanup("m", Loud().cleanup, call_hook, math.inf, log)
    assert isinstance(error, af.CleanupError)


# -- hooks whose shape a decorator hides --------------------------------------------


def hides_async(fn: Any) -> Any:
    """A decorator without functools.wraps: a sync wrapper returning a coroutine."""

    def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


def async_wraps_sync(fn: Any) -> Any:
    """An async wrapper that claims (functools.wraps) to be the sync function it wraps."""
    import functools

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


class HiddenAsyncDouble(af.Processor):
    @hides_async
    async def process(self, data: int) -> int:
        return data * 2


class WrappedSyncDouble(af.Processor):
    @async_wraps_sync
    def process(self, data: int) -> int:
        return data * 2


class HiddenAsyncSink(af.Sink):
    def __init__(self, into: list[int]) -> None:
        self.into = into

    @hides_async
    async def consume(self, data: int) -> None:
        self.into.append(data)


class HiddenAsyncTag(af.Tag):
    @hides_async
    async def tag(self, data: Any) -> dict[str, Any]:
        return {"seen": True}


class InstanceAsyncTag(af.Tag):
    """A sync tag() on the class, an async one set per instance."""

    def __init__(self, asynchronous: bool) -> None:
        if asynchronous:

            async def tag(data: Any) -> dict[str, Any]:
                return {"how": "async"}

            self.tag = tag  # type: ignore[method-assign]

    def tag(self, data: Any) -> dict[str, Any]:
        return {"how": "sync"}


class DictItems(af.Source):
    def __init__(self, count: int) -> None:
        self.count = count

    def start(self) -> Any:
        for n in range(self.count):
            yield {"n": n}


def test_the_outermost_async_wrapper_wins() -> None:
    assert hook_style(WrappedSyncDouble().process) is HookStyle.ASYNC


@pytest.mark.parametrize("processor", [HiddenAsyncDouble, WrappedSyncDouble])
async def test_a_decorated_async_process_is_awaited(processor: type[af.Processor]) -> None:
    """Every item goes through the hook's coroutine, awaited, however it is decorated,
    in every incarnation."""
    from sample_modules import Collect, Numbers

    for _ in range(2):
        out: list[int] = []
        graph = af.Graph()
        graph.add("src", Numbers, count=5)
        graph.add("double", processor)
        graph.add("sink", Collect, into=out)
        graph.chain("src", "double", "sink")
        async with af.open_system(graph):
            pass
        assert out == [0, 2, 4, 6, 8]


async def test_a_decorated_async_consume_is_awaited() -> None:
    from sample_modules import Numbers

    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=5)
    graph.add("sink", HiddenAsyncSink, into=out)
    graph.link("src", "sink", buffer=10)
    async with af.open_system(graph):
        pass
    assert out == [0, 1, 2, 3, 4]


async def test_a_decorated_async_tag_is_awaited() -> None:
    from sample_modules import Collect

    out: list[dict[str, Any]] = []
    graph = af.Graph()
    graph.add("src", DictItems, count=3)
    graph.add("tag", HiddenAsyncTag)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "tag", "sink")
    async with af.open_system(graph):
        pass
    assert out == [{"n": n, "seen": True} for n in range(3)]


async def test_tag_is_classified_per_instance() -> None:
    from sample_modules import Collect

    sync_out: list[dict[str, Any]] = []
    async_out: list[dict[str, Any]] = []
    graph = af.Graph()
    graph.add("src", DictItems, count=2)
    graph.add("sync_tag", InstanceAsyncTag, asynchronous=False)
    graph.add("async_tag", InstanceAsyncTag, asynchronous=True)
    graph.add("sync_sink", Collect, into=sync_out)
    graph.add("async_sink", Collect, into=async_out)
    graph.chain("src", "sync_tag", "sync_sink")
    graph.link("src", "async_tag")
    graph.link("async_tag", "async_sink")
    async with af.open_system(graph):
        pass
    assert sync_out == [{"n": n, "how": "sync"} for n in range(2)]
    assert async_out == [{"n": n, "how": "async"} for n in range(2)]


class FailingTag(af.Tag):
    def tag(self, data: Any) -> dict[str, Any]:
        raise ValueError("no label")


async def test_a_failing_tag_names_tag() -> None:
    from sample_modules import Collect

    graph = af.Graph()
    graph.add("src", DictItems, count=1)
    graph.add("tag", FailingTag)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "tag", "sink")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match=r"tag\(\) raised ValueError"):
        async with af.open_system(graph):
            pass


class HiddenAsyncStepper(af.Progressive):
    inputs: ClassVar[dict[str, Any]] = {}
    outputs: ClassVar[dict[str, Any]] = {"out": af.Port(int)}

    @hides_async
    async def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        self.post(run_number)
        state = af.StepState.TERMINATED if run_number >= 2 else af.StepState.READY
        return af.Step(state)


async def test_a_decorated_async_run_step_is_awaited() -> None:
    from sample_modules import Collect

    out: list[int] = []
    graph = af.Graph()
    graph.add("steps", HiddenAsyncStepper)
    graph.add("sink", Collect, into=out)
    graph.link("steps", "sink")
    async with af.open_system(graph):
        pass
    assert out == [0, 1, 2]


class _AsyncCallable:
    """A hook that is an object with an async ``__call__`` (looks sync to inspection)."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def __call__(self, data: int) -> int:
        await trio.lowlevel.checkpoint()
        self.seen.append(data)
        return data


async def test_a_blocking_modules_hook_that_returns_an_awaitable_is_awaited() -> None:
    """A blocking module's hook runs in a thread; when it returns an awaitable (an
    object with an async ``__call__``), that is awaited on the event loop instead of
    failing in trio's thread call."""
    seen: list[int] = []
    out: list[int] = []

    class Threaded(af.Processor):
        blocking = True

        def __init__(self) -> None:
            self.process = _AsyncCallable(seen)

    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("p", Threaded)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    async with af.open_system(graph):
        pass
    assert seen == [0, 1, 2]
    assert out == [0, 1, 2]


class HiddenGenerator(af.Processor):
    @hides_async
    def process(self, data: int) -> Iterator[int]:
        yield data * 10
        yield data * 10 + 1


class HiddenAsyncGenerator(af.Processor):
    @hides_async
    async def process(self, data: int) -> AsyncIterator[int]:
        yield data * 10
        await trio.lowlevel.checkpoint()
        yield data * 10 + 1


class BlockingHiddenGenerator(HiddenGenerator):
    blocking = True


class BlockingHiddenAsyncGenerator(HiddenAsyncGenerator):
    blocking = True


@pytest.mark.parametrize(
    "processor",
    [HiddenGenerator, HiddenAsyncGenerator, BlockingHiddenGenerator, BlockingHiddenAsyncGenerator],
)
async def test_a_decorated_generator_process_forwards_what_it_yields(
    processor: type[af.Processor],
) -> None:
    """A decorator without functools.wraps hides a generator function: the generator
    object it returns is run like the undecorated hook's, never forwarded as an item,
    in every incarnation and blocking or not."""
    for _ in range(2):
        out: list[int] = []
        graph = af.Graph()
        graph.add("src", Numbers, count=3)
        graph.add("p", processor)
        graph.add("sink", Collect, into=out)
        graph.chain("src", "p", "sink")
        async with af.open_system(graph):
            pass
        assert out == [0, 1, 10, 11, 20, 21]
