"""Modules added, removed, stopped, started and replaced while the system runs."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
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


async def test_the_dashboard_draws_and_shows_added_and_removed_modules() -> None:
    """The dashboard lays the graph out again after each change: an added module is
    drawn, runs here and has a status; a removed one is neither drawn nor listed."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out), dashboard=0) as system:
        assert system.dashboard_url is not None
        async with httpx.AsyncClient(base_url=system.dashboard_url, timeout=10) as client:

            async def page_after(drawing: int) -> tuple[dict[str, Any], dict[str, Any]]:
                with trio.fail_after(10):
                    while (status := (await client.get("/api/status")).json())[
                        "drawing"
                    ] <= drawing:
                        await trio.sleep(0.05)
                return status, (await client.get("/api/layout")).json()

            first = (await client.get("/api/layout")).json()["drawing"]
            await system.add("extra", Collect, config={"into": []}, links=[("count", "extra")])
            added, drawn = await page_after(first)
            await system.remove("extra")
            removed, redrawn = await page_after(drawn["drawing"])
        await system.close("in")
    assert "extra" in added["actors"]
    assert "extra" in added["processes"][next(iter(added["processes"]))]["here"]
    assert "extra" in {module["name"] for module in drawn["modules"]}
    assert "count.out -> extra.in" in {link["name"] for link in drawn["links"]}
    assert "extra" not in removed["actors"]
    assert "extra" not in {module["name"] for module in redrawn["modules"]}
    assert "count.out -> extra.in" not in {link["name"] for link in redrawn["links"]}


async def test_metrics_follow_added_and_removed_modules() -> None:
    """/metrics is read from the status at each scrape: the added module's series
    appear; once removed its gauges are gone and its counters stay (a counter never
    goes down)."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out), metrics=0) as system:
        address = system.metrics_address
        await system.add("extra", Collect, config={"into": []}, links=[("count", "extra")])
        await send_all(system, range(3))
        with trio.fail_after(10):
            while system.status().actors["extra"].received < 3:
                await trio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            during = (await client.get(f"http://{address}/metrics")).text
            await system.remove("extra")
            after = (await client.get(f"http://{address}/metrics")).text
        await system.close("in")
    assert 'actorflow_actor_received_total{actor="extra",graph="graph"} 3.0' in during
    assert 'actor="extra"' in during
    assert 'actorflow_actor_received_total{actor="extra",graph="graph"} 3.0' in after
    assert 'actorflow_actor_mailbox_depth{actor="extra"' not in after


async def test_removing_a_module_frees_a_producer_waiting_for_room_in_its_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A producer blocked on the full link of a module being removed goes on: what the
    link held is handed back, later items have nowhere to go and are counted; every
    item sent is handled, handed back or counted."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("in", af.Inlet, buffer=1)
    graph.add("count", Counter)
    graph.add("out", Collect, into=out)
    graph.link("in", "count", buffer=4)
    graph.link("count", "out")
    sent: list[int] = []

    async def sender() -> None:
        for item in range(20):
            await system.send("in", item)
            sent.append(item)

    async with af.open_system(graph) as system:
        await system.stop_module("count")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.sleep(1)
            assert len(sent) < 20  # blocked behind the stopped module
            returned = await system.remove("count", drain=False)
        await system.close("in")
    status = system.status()
    unconnected = status.actors["in"].dropped.get("unconnected", 0)
    link = status.links["in.out -> count.in"]
    assert len(sent) == 20
    assert out == []
    assert link.returned == len(returned)
    assert len(returned) + sum(link.dropped.values()) + unconnected == 20
    assert status.dropped == sum(link.dropped.values()) + unconnected
    assert returned == list(range(len(returned)))


class FailsOnce(Counter):
    """Fails on its 5th item the first time (class-wide: once per test run)."""

    failed: ClassVar[list[bool]] = []

    def process(self, data: Any) -> tuple[str, int, Any]:
        if data == 5 and not self.failed:
            self.failed.append(True)
            raise RuntimeError("once")
        return super().process(data)


async def test_an_added_module_is_restarted_with_the_others_under_one_for_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An added module is a child of the supervisor like the others: a one_for_all
    restart takes it along, and nothing is lost."""
    FailsOnce.failed.clear()
    out: list[Any] = []
    extra: list[Any] = []
    graph = af.Graph()
    graph.add("in", af.Inlet)
    graph.add("count", FailsOnce)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    graph.supervise("count", attempts=2)
    graph.supervisor(strategy="one_for_all")
    async with af.open_system(graph) as system:
        await system.add("extra", Collect, config={"into": extra}, links=[("count", "extra")])
        await send_all(system, range(10))
        await system.close("in")
    status = system.status()
    assert status.actors["count"].restarts == 1
    assert status.actors["extra"].restarts == 1
    # The restarted counter went back to its last snapshot and handled again what it had
    # handled since: those items come out again (at least once), each with the same count.
    for seen in (out, extra):
        counts = {(item, count) for _, count, item in seen}
        assert sorted(counts) == [(item, item + 1) for item in range(10)]
        assert seen[-1][1:] == (10, 9)


async def test_a_replaced_stage_of_a_fused_chain_is_fused_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stage that ran fused into its producer is unfused by the stop and fused again
    by its new incarnation: items keep flowing by call, once each."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out), fuse=True) as system:
        await send_all(system, range(5))
        await trio.sleep(1)
        fused_before = system.status().actors["out"].fused_into
        await system.replace("out", Collect, config={"into": out})
        await send_all(system, range(5, 10))
        await trio.sleep(1)
        fused_after = system.status().actors["out"].fused_into
        await system.close("in")
    assert fused_before is not None
    assert fused_after is not None
    assert [item for _, _, item in out] == list(range(10))


class TwoPorts(Counter):
    outputs: ClassVar = {"out": Any, "copies": Any}

    async def process(self, data: Any) -> tuple[str, int, Any]:
        tagged = super().process(data)
        await self.emit(data, "copies")
        return tagged


async def test_a_replacement_may_bring_new_ports_to_link_afterwards(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ports the new class adds can be linked at once; until then what goes there is
    counted as unconnected."""
    out: list[Any] = []
    copies: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.replace("count", TwoPorts)
        await send_all(system, range(2))
        await trio.sleep(1)
        await system.add(
            "copies", Collect, config={"into": copies}, links=[("count.copies", "copies")]
        )
        await send_all(system, range(2, 4))
        await system.close("in")
    assert [item for _, _, item in out] == [0, 1, 2, 3]
    assert copies == [2, 3]
    assert system.status().actors["count"].dropped == {"unconnected": 2}


async def test_a_replacement_that_drops_a_linked_port_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.replace("count", TwoPorts)
        await system.add_link("count.copies", "out")
        with pytest.raises(af.GraphError, match="no output port 'copies'"):
            await system.replace("count", Counter)
        await send_all(system, range(2))
        await system.close("in")
    assert len(out) == 4  # tagged and copied


class Position(af.Source):
    """Counts up from where its snapshot says, one item a second."""

    step: ClassVar[int] = 1

    def __init__(self) -> None:
        self.next = 0

    async def start(self) -> None:
        while self.active:
            await self.emit(self.next)
            self.next += self.step
            await trio.sleep(1)

    def snapshot(self) -> int:
        return self.next

    def restore(self, value: Any) -> None:
        self.next = value


class PositionByTen(Position):
    step: ClassVar[int] = 10


async def test_a_replaced_source_resumes_from_its_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source's new version starts again from the position its old one reached."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Position)
    graph.add("out", Collect, into=out)
    graph.link("src", "out")
    async with af.open_system(graph) as system:
        await trio.sleep(2.5)
        await system.replace("src", PositionByTen)
        await trio.sleep(2.5)
        await system.stop()
    assert out == [0, 1, 2, 3, 13, 23]


async def test_changes_that_cannot_be_made_say_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Unknown modules, a stop of a stopped module, a start of a running one, a
    temporary module, the dead-letter receiver: each a clear error, nothing changed."""
    out: list[Any] = []
    graph = counting_graph(out)
    graph.add("letters", Collect, into=[])
    graph.dead_letters("letters")
    graph.add("temp", Collect, into=[])
    graph.link("count", "temp")
    graph.supervise("temp", restart="temporary")
    async with af.open_system(graph) as system:
        with pytest.raises(KeyError, match="no module 'nope'"):
            await system.stop_module("nope")
        with pytest.raises(KeyError, match="no module 'nope'"):
            await system.replace("nope", Counter)
        with pytest.raises(KeyError, match="no module 'nope'"):
            await system.remove("nope")
        with pytest.raises(af.ChangeError, match="start module 'count': it is not stopped"):
            await system.start_module("count")
        await system.stop_module("count")
        with pytest.raises(af.ChangeError, match="'count': it is stopped already"):
            await system.stop_module("count")
        await system.start_module("count")
        with pytest.raises(RuntimeError, match="temporary"):
            await system.stop_module("temp")
        with pytest.raises(RuntimeError, match="receives the dead letters"):
            await system.remove("letters")
        await send_all(system, range(3))
        await system.close("in")
    assert len(out) == 3
    with pytest.raises(RuntimeError, match="not running"):
        await system.add("late", Collect, config={"into": []})


async def test_a_module_that_ended_by_itself_can_be_removed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A finished source's place and links can be taken away; the rest runs on."""
    out: list[Any] = []
    graph = counting_graph(out)
    graph.add("once", Source2)
    graph.link("once", "count")
    async with af.open_system(graph) as system:
        await trio.sleep(1)
        assert system.status().actors["once"].state is af.ActorState.TERMINATED
        assert await system.remove("once") == []
        await send_all(system, range(2))
        await system.close("in")
    assert [item for _, _, item in out] == [1, 0, 1]
    assert "once" not in system.status().actors
    assert [spec.name for spec in system.graph.links] == [
        "in.out -> count.in",
        "count.out -> out.in",
    ]


class Breaks(Collect):
    def __init__(self, into: list[Any]) -> None:
        raise ValueError("cannot build")


class RefusesToSink(Collect):
    def validate(self) -> None:
        raise ValueError("not this config")


@pytest.mark.parametrize(
    ("module", "error", "message"),
    [
        (Breaks, af.InitializationError, "cannot build"),
        (RefusesToSink, af.ValidationError, "not this config"),
    ],
)
async def test_an_added_module_that_refuses_is_not_linked_or_started(
    autojump_clock: trio.testing.MockClock,
    module: type[af.Module],
    error: type[Exception],
    message: str,
) -> None:
    """A constructor that raises or a validate() that refuses leaves no trace: no actor,
    no link, every item still reaches the sink."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        with pytest.raises(error, match=message):
            await system.add("extra", module, config={"into": []}, links=[("count", "extra")])
        assert system.actors == ("in", "count", "out")
        assert len(system.graph.links) == 2
        await send_all(system, range(3))
        await system.close("in")
    assert len(out) == 3
    assert "count.out -> extra.in" not in system.status().links
    assert system.status().dropped == 0


async def test_a_module_in_a_group_is_stopped_started_and_replaced_by_its_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A grouped module is its group supervisor's child: the group stays up while it is
    stopped, and takes the replacement."""
    out: list[Any] = []
    graph = counting_graph(out)
    graph.group("middle", ["count"], strategy="one_for_all")
    async with af.open_system(graph) as system:
        await system.stop_module("count")
        await send_all(system, range(3))
        names = [child.name for child in system.supervisor("middle").which_children()]
        await system.replace("count", CounterV2)
        await system.start_module("count")
        await send_all(system, range(3, 5))
        await system.stop()
        with pytest.raises(RuntimeError, match="the system is stopping"):
            await system.stop_module("count")
    assert names == ["count"]
    assert out == [("v2", n + 1, n) for n in range(5)]
