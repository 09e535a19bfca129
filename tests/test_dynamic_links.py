"""Links added and removed while the system runs."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from sample_modules import Collect, Forever, Numbers, Pass

import actorflow as af


class Dicts(af.Source):
    """Emits a fresh dict every second while active."""

    async def start(self) -> None:
        n = 0
        while self.active:
            await self.emit({"n": n})
            n += 1
            await trio.sleep(1)


class Words(af.Variable):
    outputs: ClassVar = {"out": str}


class Strings(af.Sink):
    inputs: ClassVar = {"in": str}

    def consume(self, data: str) -> None:
        pass


def base_graph(first: list[Any]) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Dicts)
    graph.add("first", Collect, into=first)
    graph.link("src", "first")
    return graph


async def test_a_link_added_while_running_receives_what_is_emitted_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A new link gets the items emitted after it was added, as copies (now a fan-out)."""
    first: list[Any] = []
    second: list[Any] = []
    graph = base_graph(first)
    graph.add("second", Collect, into=second)
    graph.add("spare", Forever, interval=1)
    graph.link("spare", "second")
    async with af.open_system(graph) as system:
        await trio.sleep(2.5)
        spec = await system.add_link("src", "second")
        assert spec.name == "src.out -> second.in"
        await trio.sleep(2)
        await system.stop()
    from_src = [item for item in second if isinstance(item, dict)]
    assert [item["n"] for item in from_src] == [3, 4]
    assert [item["n"] for item in first] == [0, 1, 2, 3, 4]
    # With two links on the port, each gets its own copy.
    assert all(a is not b for a in first for b in from_src)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("src", "nowhere", "unknown module 'nowhere'"),
        ("src.nope", "first", "module 'src' has no output port 'nope'"),
        ("src", "strings", "produces object, but input port strings.in accepts str"),
    ],
)
async def test_an_invalid_link_is_refused_with_the_start_up_error_and_changes_nothing(
    autojump_clock: trio.testing.MockClock, source: str, target: str, message: str
) -> None:
    """Adding a link that breaks validation raises GraphError; the graph is unchanged."""
    graph = base_graph([])
    graph.add("strings", Strings)
    graph.add("words", Words)
    graph.link("words", "strings")
    async with af.open_system(graph) as system:
        before = system.graph.links
        with pytest.raises(af.GraphError, match=message):
            await system.add_link(source, target)
        assert system.graph.links == before
        await system.stop()


async def test_a_link_closing_a_cycle_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cycle is refused at run time exactly as at start-up."""

    class Pass(af.Processor):
        inputs: ClassVar = {"in": object, "back": af.Port(object, required=False)}

        def process(self, data: Any) -> Any:
            return data

    graph = af.Graph()
    graph.add("src", Dicts)
    graph.add("a", Pass)
    graph.add("b", Pass)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "a", "b", "sink")
    async with af.open_system(graph) as system:
        with pytest.raises(af.GraphError, match="cycle a -> b -> a"):
            await system.add_link("b", "a.back")
        await system.add_link("b", "a.back", feedback=True)
        await system.stop()


async def test_removing_a_link_delivers_what_it_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items already in a removed link still reach its consumer; then it ends."""
    release = trio.Event()
    got: list[Any] = []

    class Gated(af.Sink):
        async def consume(self, data: Any) -> None:
            await release.wait()
            got.append(data["n"])

    graph = af.Graph()
    graph.add("src", Dicts)
    graph.add("gated", Gated)
    graph.add("other", Collect, into=[])
    graph.link("src", "gated", buffer=10)
    graph.link("src", "other")
    async with af.open_system(graph) as system:
        await trio.sleep(4.5)
        returned = await system.remove_link("src.out -> gated.in")
        assert returned == []
        release.set()
        await trio.sleep(1)
        assert got == [0, 1, 2, 3, 4]
        # Its only input is gone: the gated sink reached its end of stream.
        assert system.status().actors["gated"].state is af.ActorState.TERMINATED
        with pytest.raises(KeyError, match=r"no link 'src.out -> gated.in'"):
            await system.remove_link("src.out -> gated.in")
        await system.stop()
    link = system.status().links["src.out -> gated.in"]
    assert link.delivered == 5
    assert link.dropped == {}


async def test_removing_a_link_can_hand_its_items_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With return_items=True the buffered items go to the caller, counted as returned."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: Any) -> None:
            await release.wait()

    graph = af.Graph()
    graph.add("src", Dicts)
    graph.add("stuck", Stuck)
    graph.add("other", Collect, into=[])
    graph.link("src", "stuck", buffer=10)
    graph.link("src", "other")
    async with af.open_system(graph) as system:
        await trio.sleep(4.5)
        returned = await system.remove_link("src.out -> stuck.in", return_items=True)
        assert [item["n"] for item in returned] == [1, 2, 3, 4]
        release.set()
        await system.stop()
    link = system.status().links["src.out -> stuck.in"]
    assert link.returned == 4
    assert link.sent == link.delivered + link.returned
    assert system.status().dropped == 0


async def test_removing_a_link_its_producer_waits_on_loses_nothing_on_a_sibling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A producer blocked on a full link that is removed stops sending to it at once, and
    the item it was sending still reaches the port's other links."""
    release = trio.Event()
    gated: list[Any] = []
    other: list[Any] = []

    class Gated(af.Sink):
        async def consume(self, data: Any) -> None:
            await release.wait()
            gated.append(data["n"])

    graph = af.Graph()
    graph.add("src", Dicts)
    graph.add("gated", Gated)
    graph.add("other", Collect, into=other)
    graph.link("src", "gated", buffer=1)  # the port's first link: blocks at item 2
    graph.link("src", "other")
    async with af.open_system(graph) as system:
        await trio.sleep(2.5)
        assert system.status().actors["src"].blocked_on == "output:out"
        await system.remove_link("src.out -> gated.in")
        release.set()
        await trio.sleep(2)
        await system.stop()
    assert [item["n"] for item in other] == list(range(len(other)))
    assert len(other) >= 4
    assert gated == [0, 1]  # item 2 was never delivered into the removed link
    link = system.status().links["src.out -> gated.in"]
    assert (link.sent, link.delivered) == (2, 2)


class Rewire(af.Processor):
    """On its first item, links itself to the 'late' sink."""

    def __init__(self) -> None:
        self.done = False

    async def process(self, data: Any) -> Any:
        if not self.done:
            self.done = True
            await self.add_link("rewire.extra", "late")
        await self.emit(data, "extra")
        return data

    outputs: ClassVar = {"out": object, "extra": object}


async def test_a_module_can_add_a_link_itself(autojump_clock: trio.testing.MockClock) -> None:
    """Modules change links through the same call as the host."""
    late: list[Any] = []
    graph = af.Graph()
    graph.add("src", Dicts)
    graph.add("rewire", Rewire)
    graph.add("sink", Collect, into=[])
    graph.add("late", Collect, into=late)
    graph.add("spare", Forever, interval=1)
    graph.chain("src", "rewire", "sink")
    graph.link("spare", "late")
    async with af.open_system(graph) as system:
        await trio.sleep(2.5)
        await system.stop()
    assert [item["n"] for item in late if isinstance(item, dict)] == [0, 1, 2]


@pytest.mark.parametrize(("workers", "first_workers"), [(2, 1), (0, 1), (2, 3)])
async def test_a_link_with_workers_added_while_running_gets_its_workers(
    autojump_clock: trio.testing.MockClock, workers: int, first_workers: int
) -> None:
    """A link with ``workers=N`` (or ``0``: a task per item) added while its consumer
    runs is served at once by workers of its own, several items at a time (whether or
    not the consumer already had a link with workers)."""
    gate = trio.Event()
    out: list[Any] = []
    running = {"now": 0, "most": 0}

    class Later(af.Source):
        async def start(self) -> None:
            await gate.wait()
            for n in range(4):
                await self.emit({"n": n})

    class Slow(af.Processor):
        async def process(self, data: Any) -> Any:
            if isinstance(data, dict):
                running["now"] += 1
                running["most"] = max(running["most"], running["now"])
                await trio.sleep(1)
                running["now"] -= 1
            return data

    graph = af.Graph()
    graph.add("spare", Forever, interval=1)
    graph.add("later", Later)
    graph.add("slow", Slow)
    graph.add("sink", Collect, into=out)
    graph.link("spare", "slow", workers=first_workers)
    graph.link("slow", "sink")
    async with af.open_system(graph) as system:
        await trio.sleep(1.5)
        await system.add_link("later", "slow", workers=workers)
        gate.set()
        await trio.sleep(3)
        assert system.status().actors["slow"].mailbox_depth == 0
        await system.stop()
    assert sorted(item["n"] for item in out if isinstance(item, dict)) == [0, 1, 2, 3]
    assert running["most"] >= 2
    assert sorted(item for item in out if not isinstance(item, dict))[:3] == [0, 1, 2]


class LateSink(af.Sink):
    """A sink whose only input is optional: nothing feeds it at start."""

    inputs: ClassVar = {"in": af.Port(int, required=False)}

    def __init__(self, into: list[int]) -> None:
        self.into = into

    def consume(self, data: int) -> None:
        self.into.append(data)


async def test_a_module_with_only_unlinked_optional_inputs_waits_for_a_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """It does not end at once: a link added later is served; it ends once every other
    actor has ended (here, after stop())."""
    late: list[int] = []
    graph = af.Graph()
    graph.add("ticker", Forever, interval=1)
    graph.add("ticks", Collect, into=[])
    graph.add("late", LateSink, into=late)
    graph.link("ticker", "ticks")
    async with af.open_system(graph) as system:
        await trio.sleep(2.5)
        assert system.status().actors["late"].state is af.ActorState.BLOCKED
        await system.add_link("ticker", "late")
        await trio.sleep(2)
        await system.stop()
    assert late == [3, 4]
    assert system.status().actors["late"].reason == "normal"


async def test_an_unlinked_module_ends_when_everything_else_has_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from sample_modules import Numbers

    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("sink", Collect, into=[])
    graph.add("late", LateSink, into=[])
    graph.link("src", "sink")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    assert system.status().actors["late"].received == 0


async def test_a_graph_of_only_an_unlinked_module_ends_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    graph = af.Graph()
    graph.add("late", LateSink, into=[])
    with trio.fail_after(60):
        async with af.open_system(graph):
            pass


@pytest.mark.parametrize("flag", ["false", "no", 0, None])
async def test_return_items_must_be_a_bool(
    autojump_clock: trio.testing.MockClock, flag: object
) -> None:
    """remove_link(return_items="false") is refused naming the option (a truthy string
    would hand the items back), and the link stays as it was."""
    graph = af.Graph()
    graph.add("src", Forever, interval=1)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    async with af.open_system(graph) as system:
        with pytest.raises(TypeError, match=r"return_items must be True or False, got"):
            await system.remove_link("src.out -> sink.in", return_items=flag)  # type: ignore[arg-type]
        assert "src.out -> sink.in" in [link.name for link in system._wiring.links]
        assert await system.remove_link("src.out -> sink.in", return_items=False) == []
        await system.stop()


async def test_a_link_whose_producer_ended_can_be_removed_while_it_holds_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Removing a link closed by its producer's end, still holding items, works (it was
    a KeyError naming no links); the pair is unlinked, so linking it again is judged
    afresh (the producer has ended) rather than refused as a duplicate."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: Any) -> None:
            await release.wait()

    class Five(af.Source):
        async def start(self) -> None:
            for n in range(5):
                await self.emit(n)
                await trio.sleep(1)

    graph = af.Graph()
    graph.add("src", Five)
    graph.add("stuck", Stuck)
    graph.link("src", "stuck", buffer=10)
    async with af.open_system(graph) as system:
        await trio.sleep(6)
        assert system.status().actors["src"].state is af.ActorState.TERMINATED
        assert system.status().links["src.out -> stuck.in"].depth == 4
        returned = await system.remove_link("src.out -> stuck.in", return_items=True)
        assert returned == [1, 2, 3, 4]
        with pytest.raises(RuntimeError, match="has ended"):
            await system.add_link("src", "stuck")
        release.set()
    assert system.status().links["src.out -> stuck.in"].returned == 4
    assert system.status().dropped == 0


async def test_removed_links_are_released_by_the_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Add/remove cycles leave nothing behind in the consumer's mailbox."""
    graph = af.Graph()
    graph.add("src", Forever, interval=1)
    graph.add("spare", Forever, interval=1)
    graph.add("sink", Collect, into=[])
    graph.link("spare", "sink")
    async with af.open_system(graph) as system:
        await trio.sleep(0.5)
        for _ in range(50):
            await system.add_link("src", "sink")
            await trio.sleep(1)
            await system.remove_link("src.out -> sink.in")
        await trio.sleep(1)
        mailbox = system._wiring.actors["sink"].mailbox
        assert [link.name for link in mailbox.links] == ["spare.out -> sink.in"]
        await system.stop()


class Optional(af.Processor):
    """A processor whose only input is optional: it waits for links to be added."""

    inputs: ClassVar = {"in": af.Port(object, required=False)}
    outputs: ClassVar = {}

    def process(self, data: Any) -> None:
        pass


@pytest.mark.parametrize("workers", [1, 0, 3])
async def test_links_cycled_without_a_pause_are_released_at_once(workers: int) -> None:
    """remove_link then add_link, thousands of times with no pause for the consumer to
    run: its mailbox holds no more than the live link, and a cycle costs no more at the
    end than at the start (the release is not a scan of everything removed so far)."""
    graph = af.Graph()
    graph.add("inlet", af.Inlet)
    graph.add("sink", Optional)
    async with af.open_system(graph) as system:
        mailbox = system._wiring.actors["sink"].mailbox
        await system.add_link("inlet", "sink", workers=workers, buffer=4)
        blocks: list[float] = []
        for _ in range(30):
            began = time.perf_counter()
            for _ in range(100):
                await system.remove_link("inlet.out -> sink.in")
                await system.add_link("inlet", "sink", workers=workers, buffer=4)
            blocks.append(time.perf_counter() - began)
            assert len(mailbox.links) <= 2
        # The fastest of the first and of the last blocks, so that noise from other
        # processes on the machine cannot fake a trend; the leak made the last ~30x slower.
        assert min(blocks[-5:]) < 4 * min(blocks[:5])
        assert len(system._wiring.retired["inlet.out -> sink.in"].draining) <= 1
        await system.close("inlet")


async def test_a_re_added_links_counts_add_to_its_predecessors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """status() lists one entry per link name: a re-added link's counts add to the
    removed one's, whose returned items and drops stay counted."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: Any) -> None:
            await release.wait()

    graph = af.Graph()
    graph.add("src", Forever, interval=1)
    graph.add("stuck", Stuck)
    graph.add("spare", Forever, interval=1)
    graph.link("spare", "stuck")
    async with af.open_system(graph) as system:
        await system.add_link("src", "stuck", buffer=1)
        await trio.sleep(0.5)
        returned = await system.remove_link("src.out -> stuck.in", return_items=True)
        before = system.status().links["src.out -> stuck.in"]
        await system.add_link("src", "stuck", buffer=1, overflow="drop_newest")
        await trio.sleep(5)
        link = system.status().links["src.out -> stuck.in"]
        assert link.dropped.get("overflow", 0) >= 3
        assert link.returned == len(returned) == before.returned
        assert link.sent >= before.sent + 1
        assert not link.closed
        release.set()
        await system.stop()


async def test_a_regular_link_added_beside_links_with_workers_is_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A workers=1 link added at run time to a consumer whose inputs all have workers of
    their own is served (the crew's main loop had ended: it never was)."""
    gate = trio.Event()
    out: list[Any] = []

    class Later(af.Source):
        async def start(self) -> None:
            await gate.wait()
            for n in range(3):
                await self.emit({"n": n})

    graph = af.Graph()
    graph.add("spare", Forever, interval=1)
    graph.add("later", Later)
    graph.add("pass", Pass)
    graph.add("sink", Collect, into=out)
    graph.link("spare", "pass", workers=2)
    graph.link("pass", "sink")
    async with af.open_system(graph) as system:
        await trio.sleep(1.5)
        await system.add_link("later", "pass")
        gate.set()
        await trio.sleep(2)
        assert system.status().actors["pass"].mailbox_depth == 0
        await system.stop()
    assert [item["n"] for item in out if isinstance(item, dict)] == [0, 1, 2]


async def test_items_owed_to_a_removed_link_are_counted_not_stranded_in_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A producer stopped while blocked on a link owes it items; once that link is
    removed, the restarted producer sends it nothing: what was owed is counted on the
    removed link as ``link_removed`` (it was delivered into it, and stranded there)."""

    class Fives(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, data: int) -> af.Many:
            return af.Many([data] * 5)

    class Idle(af.Source):
        outputs: ClassVar = {"out": int}

        async def start(self) -> None:
            await trio.sleep(3)

    class Slow(af.Sink):
        inputs: ClassVar = {"in": int}

        async def consume(self, data: int) -> None:
            await trio.sleep(0.05)

    graph = af.Graph("g")
    graph.add("src", Numbers, count=1000)
    graph.add("p", Fives)
    graph.add("idle", Idle)
    graph.add("s", Slow)
    graph.link("src", "p", buffer=4)
    graph.link("p", "s", buffer=2)
    graph.link("idle", "s")
    async with af.open_system(graph) as system:
        await trio.sleep(0.3)
        supervisor = system.supervisor()
        await supervisor.terminate_child("p")
        back = await system.remove_link("p.out -> s.in", return_items=True)
        await supervisor.restart_child("p")
        await trio.sleep(1.0)
        removed = system.status().links["p.out -> s.in"]
        system.cancel()
    assert removed.depth == 0, removed
    assert removed.sent == removed.delivered + removed.returned, removed
    assert removed.returned == len(back)
    assert set(removed.dropped) <= {"link_removed"}, removed
