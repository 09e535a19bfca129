"""Module classes as users naturally write them: ports not named ``out``, attributes
set in ``__init__``."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

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


async def test_a_source_with_several_ports_and_no_out_says_where_items_go() -> None:
    graph = af.Graph()
    graph.add("src", Both)
    graph.add("sink", Collect, into=[])
    graph.link("src.a", "sink")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match=r"no output port 'out' .*emit\(item, port\)"):
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
