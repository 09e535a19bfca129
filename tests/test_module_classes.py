"""Module classes as users naturally write them: ports not named ``out``, attributes
set in ``__init__``."""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

import attrs
import pytest
import trio
from sample_modules import Collect, Numbers

import actorflow as af


class Readings(af.Source):
    outputs: ClassVar[dict[str, Any]] = {"readings": af.Port(int)}

    def start(self) -> Any:
        yield from range(3)


class AsyncReadings(af.Source):
    outputs: ClassVar[dict[str, Any]] = {"readings": af.Port(int)}

    async def start(self) -> None:
        for n in range(3):
            await self.emit(n)


class Halve(af.Processor):
    outputs: ClassVar[dict[str, Any]] = {"half": af.Port(float)}

    def process(self, data: int) -> float:
        return data / 2


class Both(af.Source):
    outputs: ClassVar[dict[str, Any]] = {"a": af.Port(int), "b": af.Port(int)}

    def start(self) -> Any:
        yield 1


@pytest.mark.parametrize("source", [Readings, AsyncReadings])
async def test_a_sources_only_output_port_gets_what_it_produces(source: type) -> None:
    out: list[float] = []
    graph = af.Graph()
    graph.add("src", source)
    graph.add("halve", Halve)
    graph.add("sink", Collect, into=out)
    graph.link("src.readings", "halve")
    graph.link("halve.half", "sink")
    async with af.open_system(graph):
        pass
    assert out == [0.0, 0.5, 1.0]


class NoMain(af.Source):
    outputs: ClassVar[dict[str, Any]] = {}

    async def start(self) -> Any:
        yield 1


@pytest.mark.parametrize("source", [Both, NoMain])
def test_a_generator_source_without_a_main_port_is_refused_at_validation(source: type) -> None:
    """What a generator yields goes to 'out' or the only port: with neither, the graph
    is refused naming the module and the hook, before anything runs."""
    graph = af.Graph()
    graph.add("src", source)
    if source is Both:
        graph.add("sink", Collect, into=[])
        graph.link("src.a", "sink")
    problems = [problem.message for problem in graph.problems()]
    assert len(problems) == 1
    assert "module 'src'" in problems[0]
    assert f"{source.__qualname__}.start() is a generator" in problems[0]


class ReturnsList(af.Source):
    outputs: ClassVar[dict[str, Any]] = {"a": af.Port(int), "b": af.Port(int)}

    def start(self) -> Any:
        return [1, 2]


async def test_a_source_producing_items_without_a_main_port_fails_with_a_run_error() -> None:
    """Only the run can tell that a plain start() returns items: it fails with a
    RunError saying where items go, never a KeyError."""
    graph = af.Graph()
    graph.add("src", ReturnsList)
    graph.add("sink", Collect, into=[])
    graph.link("src.a", "sink")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match=r"main output port .*'a', 'b'.*emit\(item, port\)"):
        async with af.open_system(graph):
            pass


class OwnNames(af.Processor):
    """Sets the attributes a user naturally sets."""

    def __init__(self, label: str) -> None:
        self.name = label
        self.log = logging.getLogger("mine")  # type: ignore[assignment]

    def process(self, data: Any) -> Any:
        return (self.name, data)


async def test_name_and_log_set_in_init_are_the_modules_own() -> None:
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=2)
    graph.add("p", OwnNames, label="sensor A")
    graph.add("sink", Collect, into=out)
    graph.chain("src", "p", "sink")
    async with af.open_system(graph) as system:
        pass
    assert out == [("sensor A", 0), ("sensor A", 1)]
    assert system.status().actors["p"].name == "p"


def test_setting_a_runtime_owned_attribute_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match=r"Flagged.__init__ sets self.active, which the runtime"):

        class Flagged(af.Source):
            def __init__(self) -> None:
                self.active = True  # type: ignore[misc]

            async def start(self) -> None:
                await trio.lowlevel.checkpoint()

    with pytest.raises(TypeError, match=r"Shadowed defines 'shared'"):

        class Shadowed(af.Sink):
            shared = None  # type: ignore[assignment]

            def consume(self, data: Any) -> None:
                pass


class _SetsByName(af.Source):
    """Sets an attribute by name, which the check made with the class cannot see."""

    def __init__(self, attribute: str) -> None:
        setattr(self, attribute, True)

    def start(self) -> list[int]:
        return [1]


@pytest.mark.parametrize(
    ("attribute", "what"),
    [("active", "until the runtime asks the module to stop"), ("shared", "shared data store")],
)
def test_setting_a_runtime_owned_attribute_by_name_says_whose_it_is(
    attribute: str, what: str
) -> None:
    """setattr(self, "active", ...) fails construction with a message naming the
    attribute as the runtime's, not Python's "property has no setter"."""
    graph = af.Graph()
    graph.add("src", _SetsByName, attribute=attribute)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    with pytest.raises(af.InitializationError) as caught:
        af.run(graph)
    message = str(caught.value)
    assert f"_SetsByName: self.{attribute} is the runtime's and read-only" in message
    assert what in message
    assert "give your attribute another name" in message


@attrs.frozen
class _Scaled(af.Processor):
    """A frozen attrs module: its fields are its configuration."""

    factor: int = 2

    def process(self, data: int) -> int:
        return data * self.factor


async def test_a_frozen_attrs_module_class_runs_like_any_other() -> None:
    """The runtime binds a frozen module past its frozen __setattr__; two equal frozen
    modules (equal and of one hash) are still two actors."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("a", _Scaled)
    graph.add("b", _Scaled)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "a", "b", "sink")
    async with af.open_system(graph) as system:
        pass
    assert out == [0, 4, 8]
    assert system.status().actors["b"].received == 3


class _HookGivenPerInstance(af.Processor):
    def __init__(self, mode: str = "sync") -> None:
        if mode == "async":

            async def add_async(data: int) -> int:
                return data + 100

            self.process = add_async
        else:
            self.process = lambda data: data + 100


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_hook_given_per_instance_in_init_is_not_a_missing_hook(mode: str) -> None:
    """``self.process = fn`` in ``__init__`` defines the hook (per instance): the graph
    is valid and the instance's hook, sync or async, handles the items."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("p", _HookGivenPerInstance, mode=mode)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    assert graph.problems() == []
    async with af.open_system(graph):
        pass
    assert out == [100, 101, 102]


def _processor(**namespace: Any) -> type:
    namespace.setdefault("process", lambda self, data: data)
    return type("P", (af.Processor,), namespace)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("inputs", ["in"]), ("inputs", "in"), ("outputs", ["out"]), ("outputs", ("out",))],
)
def test_ports_not_declared_as_a_dict_are_a_graph_problem(attribute: str, value: Any) -> None:
    """A list or a string of port names is refused (the dict form says each port's
    type), naming module and attribute, never an AttributeError."""
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("p", _processor(**{attribute: value}))
    graph.link("src", "p")
    problems = [problem.message for problem in graph.problems()]
    assert any(f"module 'p': P.{attribute} must be a dict" in message for message in problems)
    with pytest.raises(af.GraphError, match=f"P.{attribute} must be a dict"):
        graph.validate()


def test_a_kind_on_the_class_is_a_graph_problem_naming_it() -> None:
    """``kind`` says how the runtime drives a module: a class that sets its own is
    refused at validation (the rest of its file still imports), never an
    AttributeError at run time."""
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("p", _processor(kind="processor"))
    graph.add("sink", Collect, into=[])
    graph.chain("src", "p", "sink")
    problems = [p.message for p in graph.problems()]
    assert len(problems) == 1
    assert problems[0].startswith("module 'p': P.kind is 'processor', but kind is the runtime's")


class OwnKind(af.Sink):
    def __init__(self, into: list[Any]) -> None:
        self.kind = "printer"
        self.into = into

    def consume(self, data: Any) -> None:
        self.into.append((self.kind, data))


async def test_a_kind_set_in_init_is_the_modules_own() -> None:
    """The runtime reads the class's kind, so ``self.kind`` is the module's, like
    ``self.name``."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=2)
    graph.add("sink", OwnKind, into=out)
    graph.link("src", "sink")
    async with af.open_system(graph) as system:
        pass
    assert out == [("printer", 0), ("printer", 1)]
    assert system.status().actors["sink"].kind == "sink"


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ({"validate": True}, "P.validate is True, not a method: validate() is a hook"),
        ({"cleanup": []}, "P.cleanup is [], not a method: cleanup() is a hook"),
        ({"process": None}, "P.process is None, not a method: process() is a hook"),
        ({"blocking": "no"}, "P.blocking must be True or False, got 'no'"),
        ({"sequential": 1}, "P.sequential must be True or False, got 1"),
    ],
)
def test_a_module_class_with_a_bad_hook_or_setting_is_a_graph_problem(
    namespace: dict[str, Any], expected: str
) -> None:
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("p", _processor(**namespace))
    graph.add("sink", Collect, into=[])
    graph.chain("src", "p", "sink")
    problems = [p.message for p in graph.problems()]
    assert len(problems) == 1
    assert problems[0].startswith(f"module 'p': {expected}")


def _source(**namespace: Any) -> type:
    namespace.setdefault("start", lambda self: iter(()))
    return type("S", (af.Source,), namespace)


def _progressive(**namespace: Any) -> type:
    namespace.setdefault("run_step", lambda self, n, size, q: af.Step(af.StepState.TERMINATED))
    return type("G", (af.Progressive,), namespace)


@pytest.mark.parametrize(
    ("factory", "attribute", "value"),
    [
        (_source, "retry_interval", "5"),
        (_source, "retry_interval", -1),
        (_source, "retry_interval", float("nan")),
        (_source, "retry_interval", float("inf")),
        (_progressive, "quantum", float("nan")),
        (_progressive, "quantum", -0.5),
        (_progressive, "step_size", -3),
        (_progressive, "step_size", 2.5),
        (_progressive, "max_step_size", 0),
        (_progressive, "interactive", "yes"),
    ],
)
def test_a_setting_out_of_bounds_on_the_class_is_a_graph_problem(
    factory: Any, attribute: str, value: Any
) -> None:
    """Module-level settings are checked like Settings are, naming module and
    attribute."""
    cls = factory(**{attribute: value})
    graph = af.Graph()
    graph.add("m", cls)
    problems = [p.message for p in graph.problems()]
    assert len(problems) == 1
    assert problems[0].startswith(f"module 'm': {cls.__qualname__}.{attribute} must be")


class StopEvent(af.Source):
    """A natural mistake: a stop flag named like the stop() hook."""

    def __init__(self, retry: Any = None) -> None:
        self.stop = threading.Event()  # type: ignore[assignment]

    def start(self) -> Any:
        yield 1


class BadRetry(af.Source):
    def __init__(self, retry: Any) -> None:
        self.retry_interval = retry

    def start(self) -> Any:
        yield 1


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (StopEvent, r"StopEvent.stop is <threading.Event.*not a method: stop\(\) is a hook"),
        (BadRetry, r"BadRetry.retry_interval must be seconds .* got -1"),
    ],
)
async def test_what_init_sets_over_a_hook_or_setting_fails_validation_before_running(
    source: type, expected: str
) -> None:
    """A value set in __init__ is only known once the module is built: the system
    refuses it with a ValidationError before anything runs."""
    started: list[str] = []
    graph = af.Graph()
    graph.add("src", source, retry=-1)
    graph.add("sink", Collect, into=started)
    graph.link("src", "sink")
    with pytest.raises(af.ValidationError, match=expected):
        async with af.open_system(graph):
            pass
    assert started == []
