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


async def test_a_host_that_does_not_read_holds_the_graph_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Bounded all the way: with nobody reading, send() waits once every buffer on the
    way is full, instead of memory growing."""
    sent = 0
    async with af.open_system(pipe(inlet_buffer=2, outlet_buffer=3, link_buffer=1)) as system:
        with trio.move_on_after(10):
            for n in range(1000):
                await system.send("numbers", n)
                sent += 1
        # inlet buffer 2 + in its hand 1 + link 1 + double's hand 1 + link 1
        # + outlet's hand 1 + outlet buffer 3
        assert sent == 10
        async with system.receive("results") as items:
            await system.close("numbers")
            assert [n async for n in items] == [2 * n for n in range(10)]


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
