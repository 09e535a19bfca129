"""Inlets and outlets: the host program feeds a graph and reads from it, with backpressure."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import actorflow as af


class Double(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, n: int) -> int:
        return 2 * n


def pipe(inlet_buffer: int = 16, outlet_buffer: int = 16, link_buffer: int = 100) -> af.Graph:
    graph = af.Graph(name="pipe")
    graph.add("numbers", af.Inlet, buffer=inlet_buffer)
    graph.add("double", Double)
    graph.add("results", af.Outlet, buffer=outlet_buffer)
    graph.chain("numbers", "double", "results", buffer=link_buffer)
    return graph


async def test_the_host_feeds_an_inlet_and_reads_an_outlet_in_order() -> None:
    """Items sent in come out transformed and in order; closing the inlet ends the
    stream, the host's iteration and then the system."""
    got: list[int] = []
    async with af.open_system(pipe()) as system, trio.open_nursery() as nursery:

        async def read() -> None:
            async with system.receive("results") as items:
                got.extend([n async for n in items])

        nursery.start_soon(read)
        for n in range(100):
            await system.send("numbers", n)
        await system.close("numbers")
    assert got == [2 * n for n in range(100)]
    assert system.status().state is af.SystemState.DONE
    assert system.status().dropped == 0


@pytest.mark.parametrize(("fuse", "in_flight"), [(False, 10), (True, 10)])
async def test_a_host_that_does_not_read_holds_the_graph_back(
    autojump_clock: trio.testing.MockClock, fuse: bool, in_flight: int
) -> None:
    """Bounded all the way: with nobody reading, send() waits once every buffer on the
    way is full, instead of memory growing."""
    sent = 0
    graph = pipe(inlet_buffer=2, outlet_buffer=3, link_buffer=1)
    async with af.open_system(graph, fuse=fuse) as system:
        with trio.move_on_after(10):
            for n in range(1000):
                await system.send("numbers", n)
                sent += 1
        # inlet buffer 2 + in its hand 1 + link 1 + double's hand 1 + link 1
        # + outlet's hand 1 + outlet buffer 3; fused the same: a fused stage blocked on
        # its output does not wait in its producer's task, so the buffers fill as unfused.
        assert sent == in_flight
        async with system.receive("results") as items:
            await system.close("numbers")
            assert [n async for n in items] == [2 * n for n in range(in_flight)]


async def test_items_left_in_an_outlet_can_be_read_after_the_end() -> None:
    async with af.open_system(pipe()) as system:
        for n in range(5):
            await system.send("numbers", n)
        await system.close("numbers")
    async with system.receive("results") as items:
        assert [n async for n in items] == [0, 2, 4, 6, 8]


async def test_when_every_reader_has_closed_items_are_counted_as_dropped(
    logs: list[dict[str, Any]],
) -> None:
    """A host that stops listening never stalls the graph; what it missed is counted,
    with one warning."""
    async with af.open_system(pipe(outlet_buffer=1)) as system:
        async with system.receive("results") as items:
            await system.send("numbers", 1)
            assert await items.receive() == 2
        for n in range(20):
            await system.send("numbers", n)
        await system.close("numbers")
    status = system.status()
    assert status.actors["results"].dropped == {"no_reader": 20}
    assert status.dropped == 20
    warnings = [e for e in logs if e["event"] == "actor.dropped" and e["actor"] == "results"]
    assert len(warnings) == 1
    assert warnings[0]["reason"] == "no_reader"


async def test_wrong_endpoints_are_clear_errors() -> None:
    async with af.open_system(pipe()) as system:
        with pytest.raises(TypeError, match="module 'double' is a Double, not an Inlet"):
            await system.send("double", 1)
        with pytest.raises(TypeError, match="module 'numbers' is a Inlet, not an Outlet"):
            system.receive("numbers")
        with pytest.raises(KeyError, match="nowhere"):
            await system.send("nowhere", 1)
        await system.close("numbers")
        with pytest.raises(RuntimeError, match="inlet 'numbers' has stopped"):
            await system.send("numbers", 1)
        async with system.receive("results") as items:
            assert [n async for n in items] == []


@pytest.mark.parametrize("bad", ["numbers", "results"])
def test_a_buffer_below_one_is_refused(bad: str) -> None:
    graph = af.Graph(name="bad")
    graph.add("numbers", af.Inlet, buffer=0 if bad == "numbers" else 1)
    graph.add("results", af.Outlet, buffer=0 if bad == "results" else 1)
    graph.link("numbers", "results")
    with pytest.raises(af.InitializationError, match="buffer must be at least 1, got 0") as caught:
        af.run(graph)
    assert caught.value.module == bad


async def test_a_stop_ends_an_open_inlet(autojump_clock: trio.testing.MockClock) -> None:
    """A graceful stop ends an inlet nobody closed; what was sent still arrives."""
    async with af.open_system(pipe()) as system:
        await system.send("numbers", 21)
        await system.stop()
    async with system.receive("results") as items:
        assert [n async for n in items] == [42]


async def test_a_stop_ends_an_inlet_that_was_never_sent_anything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An inlet waiting for its first item ends at a graceful stop (promptly, not killed
    at its stop timeout), its stream empty; a send after that is refused."""
    async with af.open_system(pipe(), stop_timeout=30) as system:
        await trio.testing.wait_all_tasks_blocked()
        await system.stop()
    assert trio.current_time() < 1
    status = system.status()
    assert status.actors["numbers"].reason == "stopped"
    assert status.dropped == 0
    with pytest.raises(RuntimeError, match="inlet 'numbers' has stopped"):
        await system.send("numbers", 1)


class FailsOnce(af.Source):
    """Fails when first started; then it has nothing to produce."""

    outputs: ClassVar = {"out": int}
    failed = False

    async def start(self) -> None:
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise ValueError("once")


async def test_a_restart_while_an_inlet_waits_for_its_first_item_keeps_it_listening(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bystander of a group restart that was never sent anything stops at once (not
    killed at its shutdown timeout) and its next incarnation gets what the host sends."""
    FailsOnce.failed = False
    graph = pipe()
    graph.add("once", FailsOnce)
    graph.add("ignore", af.Outlet)
    graph.link("once", "ignore")
    graph.group("all", ["numbers", "double", "results", "once", "ignore"], strategy="one_for_all")
    async with af.open_system(graph) as system:
        await trio.testing.wait_all_tasks_blocked()
        assert system.status().actors["numbers"].restarts == 1
        assert trio.current_time() < 1
        await system.send("numbers", 21)
        await system.close("numbers")
        async with system.receive("results") as items:
            assert [n async for n in items] == [42]
    assert system.status().dropped == 0


async def test_what_the_last_reader_leaves_behind_is_counted() -> None:
    """Closing the last reader with items still waiting counts them as dropped; more
    readers share the items, each item going to one of them."""
    async with af.open_system(pipe(outlet_buffer=8)) as system:
        first, second = system.receive("results"), system.receive("results")
        for n in range(5):
            await system.send("numbers", n)
        await trio.testing.wait_all_tasks_blocked()
        assert await first.receive() == 0
        assert await second.receive_batch(2) == [2, 4]
        first.close()
        first.close()  # twice is harmless
        assert await second.receive() == 6
        await second.aclose()  # 8 is left behind
        with pytest.raises(RuntimeError, match="every reader has closed"):
            system.receive("results")
        await system.close("numbers")
    assert system.status().actors["results"].dropped == {"no_reader": 1}


async def test_receive_batch_is_empty_at_the_end() -> None:
    async with af.open_system(pipe()) as system:
        reader = system.receive("results")
        await system.send("numbers", 1)
        await system.close("numbers")
        assert await reader.receive_batch() == [2]
        assert await reader.receive_batch() == []
        with pytest.raises(trio.EndOfChannel):
            await reader.receive()


# -- regressions: what an inlet or outlet holds survives restarts, or is counted ------


class Stuck(af.Sink):
    inputs: ClassVar = {"in": int}

    async def consume(self, n: int) -> None:
        await trio.sleep_forever()


async def test_what_an_inlet_holds_when_the_system_is_cancelled_is_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    graph = af.Graph(name="stuck")
    graph.add("numbers", af.Inlet, buffer=8)
    graph.add("sink", Stuck)
    graph.link("numbers", "sink", buffer=1)
    sent = 8 + 1 + 1 + 1  # inlet buffer, inlet's hand, link, sink's hand
    async with af.open_system(graph) as system:
        for n in range(sent):
            await system.send("numbers", n)
        await trio.testing.wait_all_tasks_blocked()
        system.cancel()
    status = system.status()
    assert status.actors["numbers"].dropped == {"shutdown": 8}
    assert status.dropped == sent


class Picky(af.Processor):
    """Fails on 3, slowly enough that the inlet queues up meanwhile."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    async def process(self, n: int) -> int:
        await trio.sleep(0.01)
        if n == 3:
            raise ValueError("three")
        return n


async def test_a_restart_keeps_what_the_inlet_and_the_outlet_hold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Restarting the whole group (one_for_all) keeps the inlet's queue and the host's
    reader: every item arrives but the one dead-lettered, and none is counted lost."""
    graph = af.Graph(name="restart")
    graph.add("numbers", af.Inlet, buffer=32)
    graph.add("picky", Picky)
    graph.add("results", af.Outlet, buffer=64)
    graph.chain("numbers", "picky", "results", buffer=1)
    graph.group("all", ["numbers", "picky", "results"], strategy="one_for_all", max_restarts=5)
    async with af.open_system(graph) as system:
        reader = system.receive("results")
        for n in range(20):
            await system.send("numbers", n)
        await trio.sleep(1)
        assert system.status().actors["numbers"].restarts == 1
        await system.close("numbers")
        got = [n async for n in reader]
    assert got == [n for n in range(20) if n != 3]
    assert len(system.dead_letters) == 1
    assert system.status().dropped == 0
    # The inlet was only a bystander of the restart: not counted as failing.
    assert system.status().actors["numbers"].errors == 0


class Slow(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, into: list[int]) -> None:
        self.into = into

    async def consume(self, n: int) -> None:
        await trio.sleep(0.1)
        self.into.append(n)


async def test_an_inlet_killed_at_its_stop_timeout_counts_what_it_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[int] = []
    graph = af.Graph(name="slow")
    graph.add("numbers", af.Inlet, buffer=20)
    graph.add("sink", Slow, into=got)
    graph.link("numbers", "sink", buffer=1)
    async with af.open_system(graph, stop_timeout=0.2) as system:
        for n in range(20):
            await system.send("numbers", n)
        await system.stop()
    status = system.status()
    assert status.actors["numbers"].reason == "killed"
    assert len(got) + status.dropped == 20
    assert status.actors["numbers"].dropped["shutdown"] > 0


async def test_cancel_after_the_system_ended_changes_nothing() -> None:
    """A cancel that comes after everything ended does not relabel a finished system."""
    async with af.open_system(pipe()) as system:
        await system.close("numbers")
        await system.wait()
        system.cancel()
    assert system.status().state is af.SystemState.DONE


# -- a stop that reaches an inlet just after its first send woke it ----------------------


class _FailsOnceAfterOneSecond(af.Source):
    outputs: ClassVar = {"out": int}
    failed = False

    async def start(self) -> None:
        if not _FailsOnceAfterOneSecond.failed:
            await trio.sleep(1)
            _FailsOnceAfterOneSecond.failed = True
            raise ValueError("once")


async def _restart_around_the_first_send(checkpoints: int) -> float:
    _FailsOnceAfterOneSecond.failed = False
    graph = af.Graph(name="g")
    graph.add("numbers", af.Inlet)
    graph.add("results", af.Outlet)
    graph.link("numbers", "results")
    graph.add("once", _FailsOnceAfterOneSecond)
    graph.add("ignore", af.Outlet)
    graph.link("once", "ignore")
    graph.group("all", ["numbers", "results", "once", "ignore"], strategy="one_for_all")
    async with af.open_system(graph) as system:
        await trio.sleep(1)
        for _ in range(checkpoints):
            await trio.lowlevel.checkpoint()
        await system.send("numbers", 21)
        while system.status().actors["numbers"].restarts == 0:
            await trio.sleep(0.01)
        restarted_at = trio.current_time()
        await system.close("numbers")
        async with system.receive("results") as items:
            assert [n async for n in items] == [21]
    return restarted_at


def test_a_stop_right_after_the_first_send_still_stops_the_inlet_at_once() -> None:
    """A restart whose stop reaches an inlet after the host's first send woke it, but
    before it ran, stops it at once (it was lost, and the inlet killed after 5 s)."""
    for checkpoints in range(4, 10):
        for _ in range(5):
            clock = trio.testing.MockClock(autojump_threshold=0)
            restarted_at = trio.run(_restart_around_the_first_send, checkpoints, clock=clock)
            assert restarted_at < 2, f"the inlet was killed after {checkpoints} checkpoints"


async def test_an_outlet_that_never_got_an_item_ends_at_once_when_read_after_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Its channel is made only when first read, after the actor's end callbacks ran:
    it is ended at once instead of never (reading it hung)."""
    async with af.open_system(pipe()) as system:
        await system.close("numbers")
    with trio.fail_after(60):
        async with system.receive("results") as items:
            assert [n async for n in items] == []
