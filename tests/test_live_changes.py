"""Modules added, removed, stopped, started and replaced while the system runs."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import actorflow as af


class Counter(af.Processor):
    """Tags each item with how many it has counted so far; its count is its state."""

    version: ClassVar[str] = "v1"

    def __init__(self, step: int = 1) -> None:
        self.step = step
        self.count = 0

    def process(self, data: Any) -> tuple[str, int, Any]:
        self.count += self.step
        return (self.version, self.count, data)

    def snapshot(self) -> int:
        return self.count

    def restore(self, value: Any) -> None:
        self.count = value


class CounterV2(Counter):
    version: ClassVar[str] = "v2"


class Collect(af.Sink):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def consume(self, data: Any) -> None:
        self.into.append(data)


class Ints(af.Sink):
    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        pass


class Refuses(Counter):
    def validate(self) -> None:
        raise ValueError("never valid")


class Source2(af.Source):
    def start(self) -> list[int]:
        return [1]


def counting_graph(out: list[Any]) -> af.Graph:
    graph = af.Graph()
    graph.add("in", af.Inlet)
    graph.add("count", Counter)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    return graph


async def send_all(system: af.System, items: range) -> None:
    for item in items:
        await system.send("in", item)


async def test_a_replaced_module_keeps_its_state_and_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The new class restores the old one's count and handles what was queued: every
    item exactly once, the count continuing."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(50))
        await system.replace("count", CounterV2)
        await send_all(system, range(50, 100))
        await system.close("in")
    assert [item for _, _, item in out] == list(range(100))
    assert [count for _, count, _ in out] == list(range(1, 101))
    assert {version for version, _, _ in out[-10:]} == {"v2"}
    status = system.status()
    assert status.actors["count"].received == 100
    assert status.actors["count"].restarts == 0
    assert status.actors["count"].task == "CounterV2"


async def test_a_replaced_config_takes_effect_and_the_state_stays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Replacing only the config keeps the class and the count."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(3))
        await trio.sleep(1)  # handled by the old config
        await system.replace("count", config={"step": 10})
        await send_all(system, range(3, 5))
        await system.close("in")
    assert [count for _, count, _ in out] == [1, 2, 3, 13, 23]


@pytest.mark.parametrize(
    ("replacement", "error", "message"),
    [
        (Source2, af.GraphError, "a processor cannot be replaced by a source"),
        (Ints, af.GraphError, "a processor cannot be replaced by a sink"),
        (Refuses, af.ValidationError, "never valid"),
    ],
)
async def test_an_invalid_replacement_is_refused_and_the_old_module_runs_on(
    autojump_clock: trio.testing.MockClock,
    replacement: type[af.Module],
    error: type[Exception],
    message: str,
) -> None:
    """A refused replacement raises the start-up error; nothing stopped or changed."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(3))
        with pytest.raises(error, match=message):
            await system.replace("count", replacement)
        await send_all(system, range(3, 6))
        await system.close("in")
    assert out == [("v1", n + 1, n) for n in range(6)]
    assert system.graph.modules[1].factory is Counter
    assert system.status().actors["count"].task == "Counter"


async def test_a_module_added_while_running_gets_items_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An added module with its links joins the flow: what is sent after it was added
    reaches it, and it ends with the graph."""
    out: list[Any] = []
    extra: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(5))
        await trio.sleep(1)  # handled before it exists
        await system.add("extra", Collect, config={"into": extra}, links=[("count", "extra")])
        assert "extra" in system.status().actors
        await send_all(system, range(5, 10))
        await system.close("in")
    assert [item for _, _, item in out] == list(range(10))
    assert [item for _, _, item in extra] == list(range(5, 10))
    assert system.status().actors["extra"].state is af.ActorState.TERMINATED


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ([("count", "nowhere")], "unknown module 'nowhere'"),
        ([("count.nope", "extra")], "module 'count' has no output port 'nope'"),
        ([("count", "extra"), ("extra", "count")], "cycle"),
        ([("extra", "out")], "required input port 'in' has no link"),
    ],
)
async def test_an_invalid_add_is_refused_and_nothing_changes(
    autojump_clock: trio.testing.MockClock, links: list[Any], message: str
) -> None:
    """An add that would make the graph invalid raises GraphError; nothing started."""
    out: list[Any] = []
    graph = counting_graph(out)
    async with af.open_system(graph) as system:
        with pytest.raises(af.GraphError, match=message):
            await system.add("extra", Counter, links=links)
        assert system.actors == ("in", "count", "out")
        assert [spec.name for spec in graph.modules] == ["in", "count", "out"]
        assert len(graph.links) == 2
        await send_all(system, range(3))
        await system.close("in")
    assert len(out) == 3


async def test_a_module_of_an_existing_name_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        with pytest.raises(af.GraphError, match="'count'"):
            await system.add("count", Counter)
        await system.close("in")
    assert system.graph.modules[1].factory is Counter


async def test_a_stopped_module_queues_what_is_sent_and_handles_it_once_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items sent to a stopped module wait in its link; started, it handles them all,
    its count continuing (its state was snapshotted at the stop)."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(3))
        await trio.sleep(1)
        await system.stop_module("count")
        assert system.status().actors["count"].state is af.ActorState.STOPPED
        await send_all(system, range(3, 8))
        await trio.sleep(1)
        assert len(out) == 3
        assert system.status().actors["count"].mailbox_depth == 5
        await system.start_module("count")
        await system.close("in")
    assert out == [("v1", n + 1, n) for n in range(8)]


async def test_a_stopped_module_holds_its_producer_back_at_the_link_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A full link to a stopped module blocks its producer (overflow ``block``), and a
    graceful system stop starts the module again so that everything drains."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("in", af.Inlet, buffer=1)
    graph.add("count", Counter)
    graph.add("out", Collect, into=out)
    graph.link("in", "count", buffer=4)
    graph.link("count", "out")
    sent: list[int] = []
    async with af.open_system(graph) as system:
        await system.stop_module("count")
        with trio.move_on_after(5):
            for item in range(100):
                await system.send("in", item)
                sent.append(item)
        assert system.status().links["in.out -> count.in"].depth == 4
        assert len(sent) < 10  # held back: the inlet's buffer, one in hand, the link's 4
        await system.stop()
    assert [item for _, _, item in out] == sent
    assert system.status().dropped == 0


async def test_a_removed_module_drains_its_mailbox_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove(drain=True) handles what was queued, ends the module and its links; the
    consumer whose last input it was ends too."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.stop_module("count")
        await send_all(system, range(10))
        assert await system.remove("count") == []
        assert "count" not in system.status().actors
        assert system.actors == ("in", "out")
        assert not [name for name in system.status().links if "count" in name] or all(
            link.depth == 0 for link in system.status().links.values()
        )
        await system.close("in")
    assert [item for _, _, item in out] == list(range(10))
    status = system.status()
    assert status.links["in.out -> count.in"].sent == 10
    assert status.links["in.out -> count.in"].delivered == 10


async def test_a_removed_module_hands_its_mailbox_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove(drain=False) returns what its links held, counted as returned; the
    producer then sends into nothing and never waits for ever."""
    out: list[Any] = []
    graph = counting_graph(out)
    async with af.open_system(graph) as system:
        await send_all(system, range(3))
        await trio.sleep(1)
        await system.stop_module("count")
        await send_all(system, range(3, 10))
        await trio.sleep(1)  # the inlet has emitted them all
        returned = await system.remove("count", drain=False)
        await system.close("in")
    assert returned == list(range(3, 10))
    assert [item for _, _, item in out] == [0, 1, 2]
    link = system.status().links["in.out -> count.in"]
    assert link.returned == 7
    assert link.sent == link.delivered + link.returned


async def test_changes_are_logged(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.add("extra", Collect, config={"into": []}, links=[("count", "extra")])
        await system.stop_module("count")
        await system.start_module("count")
        await system.replace("count", CounterV2)
        await system.remove("extra")
        await system.close("in")
    events = [e for e in logs if e["event"].startswith("module.")]
    assert [(e["event"], e["module"]) for e in events] == [
        ("module.added", "extra"),
        ("module.stopped", "count"),
        ("module.started", "count"),
        ("module.replaced", "count"),
        ("module.removed", "extra"),
    ]
    assert events[3]["old"] == "Counter"
    assert events[3]["new"] == "CounterV2"
