"""Modules that wait for a source to be ready before they handle anything."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af


class Connecting(af.Source):
    """Takes `connect` seconds to connect, says so, then sends after `first` seconds."""

    def __init__(self, connect: float, first: float = 0, explicit: bool = True) -> None:
        self.connect = connect
        self.first = first
        self.explicit = explicit

    async def start(self) -> None:
        await trio.sleep(self.connect)
        if self.explicit:
            self.ready()
        await trio.sleep(self.first)
        await self.emit("reading")


class Enrich(af.Processor):
    def __init__(self, seen: list[float]) -> None:
        self.seen = seen

    def process(self, data: Any) -> Any:
        self.seen.append(trio.current_time())
        return data


def waiting_graph(seen: list[float], timeout: float, **source: Any) -> af.Graph:
    graph = af.Graph()
    graph.add("feed", Connecting, **source)
    graph.add("other", Numbers, count=1)
    graph.add("enrich", Enrich, seen=seen)
    graph.add("sink", Collect, into=[])
    graph.link("other", "enrich")
    graph.link("enrich", "sink")
    graph.link("feed", "sink")
    graph.depends_on("enrich", "feed", timeout=timeout)
    return graph


async def test_a_dependant_waits_for_the_source_to_say_it_is_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The dependant handles nothing until the source calls ready(), and is shown
    blocked on it meanwhile."""
    seen: list[float] = []
    began = trio.current_time()
    async with af.open_system(waiting_graph(seen, 10, connect=4, first=3)) as system:
        await trio.sleep(2)
        enrich = system.status().actors["enrich"]
        assert enrich.state is af.ActorState.BLOCKED
        assert enrich.blocked_on == "ready:feed"
    assert [t - began for t in seen] == [4]


async def test_the_first_item_also_makes_a_source_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source that never calls ready() is ready once it sends its first item."""
    seen: list[float] = []
    began = trio.current_time()
    async with af.open_system(waiting_graph(seen, 10, connect=5, explicit=False)):
        pass
    assert [t - began for t in seen] == [5]


async def test_waiting_past_the_timeout_is_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source not ready within the timeout fails the dependant, naming both."""
    graph = waiting_graph([], 3, connect=100)
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError) as caught:
        async with af.open_system(graph):
            pass
    assert caught.value.module == "enrich"
    assert "waited 3 s for source 'feed' to be ready" in str(caught.value)


def test_depends_on_is_validated_with_the_graph() -> None:
    """Unknown modules, or waiting for a module that is not a source, are graph errors."""
    graph = waiting_graph([], 3, connect=1)
    graph.depends_on("ghost", "feed")
    graph.depends_on("sink", "enrich")
    with pytest.raises(af.GraphError) as caught:
        graph.validate()
    messages = [p.message for p in caught.value.problems]
    assert "depends_on: unknown module 'ghost'" in messages
    assert any("can only wait for a source, and 'enrich' is not one" in m for m in messages)
    with pytest.raises(ValueError, match="timeout must be seconds from 1e-06"):
        graph.depends_on("enrich", "feed", timeout=0)


def test_a_module_cannot_depend_on_itself() -> None:
    """depends_on a module itself is a graph error naming it (it would wait for ever)."""
    graph = waiting_graph([], 3, connect=1)
    graph.depends_on("feed", "feed")
    with pytest.raises(af.GraphError, match="module 'feed' cannot depend on itself"):
        graph.validate()


def test_a_cycle_of_depends_on_is_a_graph_error_naming_its_modules() -> None:
    """Sources that wait for each other in a ring are refused, the ring named in order."""
    graph = af.Graph()
    for name in ("a", "b", "c"):
        graph.add(name, Numbers, count=1)
        graph.add(f"{name}_sink", Collect, into=[])
        graph.link(name, f"{name}_sink")
    graph.depends_on("a", "b")
    graph.depends_on("b", "c")
    graph.depends_on("c", "a")
    graph.depends_on("a", "b")  # said twice: still one cycle
    with pytest.raises(af.GraphError) as caught:
        graph.validate()
    messages = [p.message for p in caught.value.problems]
    assert messages == [
        "depends_on cycle 'a' -> 'b' -> 'c' -> 'a': each waits for the next to be ready, "
        "so none ever is; remove one of them"
    ]
    assert caught.value.problems[0].module == "a"
