"""Running graphs: data flow, end of stream, ordering, status, stop and cancel."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from accounting import assert_accounted, one_to_one
from sample_modules import Add, Collect, Forever, Items, Numbers, Pass

import actorflow as af
from actorflow import _system


def pipeline(*stages: tuple[str, type[af.Module], dict[str, Any]], **link: Any) -> af.Graph:
    graph = af.Graph()
    for name, cls, config in stages:
        graph.add(name, cls, **config)
    graph.chain(*(name for name, _, _ in stages), **link)
    return graph


async def test_linear_pipeline_delivers_every_item_in_order() -> None:
    """A source -> processors -> sink pipeline delivers every item once, in order."""
    out: list[int] = []
    graph = pipeline(
        ("src", Numbers, {"count": 1000}),
        ("a", Add, {"amount": 1}),
        ("b", Add, {"amount": 10}),
        ("sink", Collect, {"into": out}),
        buffer=7,
    )
    async with af.open_system(graph) as system:
        pass
    assert out == [n + 11 for n in range(1000)]
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert {a.state for a in status.actors.values()} == {af.ActorState.TERMINATED}
    assert status.actors["b"].received == status.actors["b"].emitted == 1000
    assert status.dropped == 0
    assert all(link.delivered == 1000 and link.depth == 0 for link in status.links.values())


def test_run_blocks_until_done_and_returns_final_status() -> None:
    """``actorflow.run`` runs a graph from sync code and returns its final status."""
    out: list[int] = []
    status = af.run(pipeline(("src", Numbers, {"count": 5}), ("sink", Collect, {"into": out})))
    assert out == [0, 1, 2, 3, 4]
    assert status.state is af.SystemState.DONE
    assert status.actors["sink"].received == 5


class AsyncDouble(af.Processor):
    async def process(self, data: int) -> int:
        await trio.lowlevel.checkpoint()
        return data * 2


class Explode(af.Processor):
    """Yields each item ``times`` times (a generator process)."""

    def __init__(self, times: int) -> None:
        self.times = times

    def process(self, data: Any) -> Any:
        for _ in range(self.times):
            yield data


class AsyncExplode(af.Processor):
    async def process(self, data: Any) -> Any:
        yield data
        yield data


class EvenOnly(af.Processor):
    def process(self, data: int) -> int | None:
        return data if data % 2 == 0 else None


class Pair(af.Processor):
    def process(self, data: int) -> af.Many:
        return af.Many([data, -data])


class AsyncPairOrDrop(af.Processor):
    async def process(self, data: int) -> af.Many | None:
        return af.Many([data, data]) if data else None


class AsyncCollect(af.Sink):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    async def consume(self, data: Any) -> None:
        await trio.lowlevel.checkpoint()
        self.into.append(data)


@pytest.mark.parametrize(
    ("processor", "config", "expected", "filtered"),
    [
        (AsyncDouble, {}, [0, 2, 4, 6], 0),
        (Explode, {"times": 3}, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], 0),
        (Explode, {"times": 0}, [], 4),
        (AsyncExplode, {}, [0, 0, 1, 1, 2, 2, 3, 3], 0),
        (EvenOnly, {}, [0, 2], 2),
        (Pair, {}, [0, 0, 1, -1, 2, -2, 3, -3], 0),
        (AsyncPairOrDrop, {}, [1, 1, 2, 2, 3, 3], 1),
    ],
)
async def test_process_may_be_sync_async_or_a_generator(
    processor: type[af.Processor], config: dict[str, Any], expected: list[int], filtered: int
) -> None:
    """process() returns one item, None (dropped), Many, or yields items; sync or async."""
    out: list[int] = []
    graph = pipeline(
        ("src", Numbers, {"count": 4}),
        ("p", processor, config),
        ("sink", AsyncCollect, {"into": out}),
    )
    async with af.open_system(graph) as system:
        pass
    assert out == expected
    assert system.status().actors["p"].filtered == filtered
    assert system.status().dropped == 0


class AsyncGenSource(af.Source):
    async def start(self) -> Any:
        for n in range(3):
            await trio.lowlevel.checkpoint()
            yield n


class EmitSource(af.Source):
    async def start(self) -> None:
        for n in range(3):
            await self.emit(n)


class ListSource(af.Source):
    def start(self) -> list[int]:
        return [0, 1, 2]


class AsyncListSource(af.Source):
    async def start(self) -> list[int]:
        return [0, 1, 2]


@pytest.mark.parametrize(
    "source", [Numbers, AsyncGenSource, EmitSource, ListSource, AsyncListSource]
)
async def test_source_start_may_be_any_supported_shape(source: type[af.Source]) -> None:
    """start() may be a generator, an async generator, an emitting coroutine or return a list."""
    out: list[int] = []
    config = {"count": 3} if source is Numbers else {}
    async with af.open_system(pipeline(("src", source, config), ("sink", Collect, {"into": out}))):
        pass
    assert out == [0, 1, 2]


class NothingSource(af.Source):
    def start(self) -> None:
        return None


async def test_source_returning_none_ends_the_stream_at_once() -> None:
    """A start() that returns None produces nothing, and the graph still ends."""
    out: list[int] = []
    async with af.open_system(
        pipeline(("src", NothingSource, {}), ("sink", Collect, {"into": out}))
    ) as system:
        pass
    assert out == []
    assert system.status().actors["sink"].state is af.ActorState.TERMINATED


class BadStart(af.Source):
    def start(self) -> int:
        return 42


async def test_source_returning_a_non_iterable_is_a_run_error_naming_it() -> None:
    """A start() returning something that cannot be iterated fails with a clear RunError."""
    graph = pipeline(("src", BadStart, {}), ("sink", Collect, {"into": []}))
    with pytest.raises(af.RunError, match=r"'src'.*start\(\) returned int"):
        async with af.open_system(graph):
            pass


class Router(af.Processor):
    """Sends evens to 'even' and odds to 'odd', using emit()."""

    outputs: ClassVar = {"even": int, "odd": int}

    async def process(self, data: int) -> None:
        await self.emit(data, "even" if data % 2 == 0 else "odd")


async def test_emit_routes_items_to_named_output_ports() -> None:
    """A processor can route items to several output ports with emit()."""
    evens: list[int] = []
    odds: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=6)
    graph.add("route", Router)
    graph.add("evens", Collect, into=evens)
    graph.add("odds", Collect, into=odds)
    graph.link("src", "route")
    graph.link("route.even", "evens")
    graph.link("route.odd", "odds")
    async with af.open_system(graph) as system:
        pass
    assert evens == [0, 2, 4]
    assert odds == [1, 3, 5]
    assert system.status().actors["route"].emitted == 6


class WrongPort(af.Processor):
    async def process(self, data: int) -> None:
        await self.emit(data, "nope")


async def test_emit_on_an_unknown_port_fails_naming_module_and_port() -> None:
    """emit() on a port the module does not declare fails the item, naming both."""
    graph = pipeline(
        ("src", Numbers, {"count": 1}), ("p", WrongPort, {}), ("s", Collect, {"into": []})
    )
    async with af.open_system(graph) as system:
        pass
    [letter] = system.dead_letters
    assert letter.actor == "p"
    assert "module 'p' has no output port 'nope' (output ports: 'out')" in str(letter.error)
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match=r"module 'p'.*no output port 'nope'.*'out'"):
        async with af.open_system(graph):
            pass


class Tagger(af.Processor):
    inputs: ClassVar = {"left": int, "right": int}

    def process(self, data: int, port: str) -> tuple[str, int]:
        return (port, data)


async def test_fan_in_merges_every_input_and_tells_the_port() -> None:
    """Two links into one module deliver everything; process(data, port) learns the port."""
    out: list[tuple[str, int]] = []
    graph = af.Graph()
    graph.add("l", Numbers, count=50)
    graph.add("r", Numbers, count=30)
    graph.add("tag", Tagger)
    graph.add("sink", Collect, into=out)
    graph.link("l", "tag.left", buffer=3)
    graph.link("r", "tag.right", buffer=3)
    graph.link("tag", "sink")
    async with af.open_system(graph):
        pass
    assert sorted(n for port, n in out if port == "left") == list(range(50))
    assert sorted(n for port, n in out if port == "right") == list(range(30))
    # Each side keeps its own order.
    assert [n for port, n in out if port == "left"] == list(range(50))


class Mutate(af.Sink):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def consume(self, data: dict[str, list[int]]) -> None:
        data["seen"].append(1)
        self.into.append(data)


def fan_out_graph(items: list[Any], copy_policy: str) -> tuple[af.Graph, list[Any], list[Any]]:
    left: list[Any] = []
    right: list[Any] = []
    graph = af.Graph()
    graph.add("src", Items, items=items)
    graph.add("left", Mutate, into=left)
    graph.add("right", Mutate, into=right)
    graph.link("src", "left", copy=copy_policy)
    graph.link("src", "right", copy=copy_policy)
    return graph, left, right


async def test_fan_out_gives_each_link_its_own_deep_copy() -> None:
    """With fan-out, no consumer sees another's mutations (deep copy by default)."""
    items = [{"seen": []} for _ in range(3)]
    graph, left, right = fan_out_graph(items, "deep")
    async with af.open_system(graph):
        pass
    assert [d["seen"] for d in left] == [[1]] * 3
    assert [d["seen"] for d in right] == [[1]] * 3
    assert all(d["seen"] == [] for d in items)


async def test_fan_out_with_copy_none_shares_the_object() -> None:
    """copy='none' hands every consumer the same object."""
    items = [{"seen": []}]
    graph, left, right = fan_out_graph(items, "none")
    async with af.open_system(graph):
        pass
    assert left[0] is right[0] is items[0]
    assert items[0]["seen"] == [1, 1]


async def test_msgpack_copy_round_trips_data_through_msgpack() -> None:
    """copy='msgpack' gives an equal but distinct object, even for a single consumer."""
    item = af.Data(fields={"v": (1, 2)})
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Items, items=[item])
    graph.add("sink", Collect, into=out)
    graph.link("src", "sink", copy="msgpack")
    async with af.open_system(graph):
        pass
    assert out == [item]
    assert out[0] is not item


async def test_a_sole_consumer_receives_the_original_object() -> None:
    """A link that is its producer's only consumer passes the object without copying."""
    items = [{"seen": []}]
    out: list[Any] = []
    graph = af.Graph()
    graph.add("src", Items, items=items)
    graph.add("sink", Collect, into=out)
    graph.link("src", "sink")
    async with af.open_system(graph):
        pass
    assert out[0] is items[0]


async def test_data_keeps_its_id_through_copies() -> None:
    """A Data item copied for fan-out keeps its id, so it can be traced."""
    item = af.Data(fields={"x": [1]})
    graph, left, right = fan_out_graph([item], "deep")
    graph = af.Graph()
    graph.add("src", Items, items=[item])
    graph.add("l", Collect, into=left)
    graph.add("r", Collect, into=right)
    graph.link("src", "l")
    graph.link("src", "r")
    async with af.open_system(graph):
        pass
    assert left[0].id == right[0].id == item.id
    assert left[0] is not right[0]
    assert copy.deepcopy(item) == item


class Unlinked(af.Processor):
    outputs: ClassVar = {"out": int, "debug": int}

    async def process(self, data: int) -> int:
        await self.emit(data, "debug")
        return data


async def test_items_emitted_on_an_unlinked_port_are_counted_and_warned_once(
    logs: list[dict[str, Any]],
) -> None:
    """Items sent on a port with no link are counted as dropped, with a single warning."""
    out: list[int] = []
    graph = pipeline(
        ("src", Numbers, {"count": 5}), ("p", Unlinked, {}), ("s", Collect, {"into": out})
    )
    async with af.open_system(graph) as system:
        pass
    assert out == [0, 1, 2, 3, 4]
    assert system.status().actors["p"].dropped == {"unconnected": 5}
    warnings = [e for e in logs if e["event"] == "actor.dropped"]
    assert len(warnings) == 1
    assert warnings[0]["port"] == "debug"
    assert warnings[0]["reason"] == "unconnected"


class Doubler(af.Processor):
    """Feeds items back to itself until they reach ``limit``; passes them on after."""

    outputs: ClassVar = {"out": int, "again": int}
    inputs: ClassVar = {"in": object, "back": af.Port(int, required=False)}

    async def process(self, data: int) -> None:
        if data < 100:
            await self.emit(data * 2, "again")
        else:
            await self.emit(data, "out")


async def test_feedback_link_allows_a_cycle_and_the_graph_still_ends() -> None:
    """A cycle through a feedback link runs, and the system ends after its inputs end."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Items, items=[1, 3, 200])
    graph.add("double", Doubler)
    graph.add("sink", Collect, into=out)
    graph.link("src", "double")
    graph.link("double.again", "double.back", feedback=True, buffer=10)
    graph.link("double", "sink")
    with trio.fail_after(5):
        async with af.open_system(graph):
            pass
    # Whatever circulated when the real input ended was still handled or counted.
    assert 200 in out
    assert set(out) <= {128, 192, 200}


async def test_backpressure_bounds_every_link_by_its_buffer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A slow sink holds its producer back: no link ever holds more than its buffer."""
    seen_depths: list[int] = []
    running: list[af.System] = []  # items may arrive before open_system returns

    class Slow(af.Sink):
        async def consume(self, data: int) -> None:
            if running:
                status = running[0].status()
                seen_depths.extend(link.depth for link in status.links.values())
            await trio.sleep(0.01)

    graph = pipeline(
        ("src", Numbers, {"count": 200}), ("a", Add, {}), ("sink", Slow, {}), buffer=4
    )
    async with af.open_system(graph) as system:
        running.append(system)
    assert max(seen_depths) <= 4
    assert system.status().actors["sink"].received == 200


async def test_status_shows_a_blocked_producer_and_mailbox_depth(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While a consumer is stuck, the producer shows blocked on its output and the depth."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: int) -> None:
            await release.wait()

    graph = pipeline(("src", Numbers, {"count": 100}), ("sink", Stuck, {}), buffer=5)
    async with af.open_system(graph) as system:
        await trio.sleep(1)
        status = system.status()
        src = status.actors["src"]
        assert src.state is af.ActorState.BLOCKED
        assert src.blocked_on == "output:out"
        assert status.actors["sink"].mailbox_depth == 5
        assert status.actors["sink"].state is af.ActorState.RUNNING
        assert status.links["src.out -> sink.in"].depth == 5
        release.set()
    assert system.status().actors["sink"].received == 100


async def test_an_idle_consumer_is_blocked_on_input(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A consumer waiting for items is reported blocked on input."""
    graph = pipeline(("src", Forever, {"interval": 10}), ("sink", Collect, {"into": []}))
    async with af.open_system(graph) as system:
        await trio.sleep(5)
        sink = system.status().actors["sink"]
        assert sink.state is af.ActorState.BLOCKED
        assert sink.blocked_on == "input"
        assert system.status().state is af.SystemState.RUNNING
        await system.stop()


async def test_graceful_stop_calls_stop_and_drains_downstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stop() asks sources to stop; what they sent is still handled and the graph ends."""
    journal: list[str] = []
    out: list[int] = []
    graph = pipeline(
        ("src", Forever, {"interval": 1, "journal": journal}),
        ("a", Add, {"amount": 0, "journal": journal}),
        ("sink", Collect, {"into": out, "journal": journal}),
    )
    async with af.open_system(graph) as system:
        await trio.sleep(9.5)
        await system.stop()
        assert system.status().state is af.SystemState.STOPPING
    assert out == list(range(10))
    assert journal[0] == "stop:src"
    assert system.status().actors["src"].reason == "stopped"
    assert system.status().state is af.SystemState.DONE
    assert system.status().dropped == 0


class Stubborn(af.Source):
    """Ignores stop requests: never checks ``active``."""

    async def start(self) -> None:
        while True:
            await trio.sleep(1)


async def test_a_source_ignoring_stop_is_cancelled_after_stop_timeout(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """A source that does not end within stop_timeout is cancelled and reported killed."""
    graph = pipeline(("src", Stubborn, {}), ("sink", Collect, {"into": []}))
    async with af.open_system(graph, stop_timeout=3) as system:
        await system.stop()
        stopped_at = trio.current_time()
    assert trio.current_time() - stopped_at == pytest.approx(3, abs=1.01)
    assert system.status().actors["src"].reason == "killed"
    assert any(e["event"] == "actor.killed" and e["actor"] == "src" for e in logs)


async def test_cancelling_the_surrounding_scope_cleans_up_producers_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Outer cancellation stops the system with every cleanup run, producers first."""
    journal: list[str] = []
    graph = pipeline(
        ("src", Forever, {"interval": 0.1, "journal": journal}),
        ("a", Add, {"journal": journal}),
        ("sink", Collect, {"into": [], "journal": journal}),
    )
    with trio.move_on_after(5) as scope:
        async with af.open_system(graph) as system:
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert journal == ["cleanup:src", "cleanup:a", "cleanup:sink"]
    status = system.status()
    assert status.state is af.SystemState.CANCELLED
    assert {a.reason for a in status.actors.values()} == {"cancelled"}


async def test_system_cancel_counts_what_was_in_flight_as_dropped(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """cancel() ends the system; items left in links are counted and logged, not lost."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: int) -> None:
            await release.wait()

    graph = pipeline(("src", Numbers, {"count": 100}), ("sink", Stuck, {}), buffer=5)
    async with af.open_system(graph) as system:
        await trio.sleep(1)
        system.cancel()
    status = system.status()
    link = status.links["src.out -> sink.in"]
    src, sink = status.actors["src"], status.actors["sink"]
    # Every item the source emitted is handled by the sink or counted as dropped, with
    # its reason; the item the sink held when cancelled went back to its link first.
    # A generator source pulls no more than its links can take: 5, then 5 more once
    # the sink took the first 5.
    assert src.emitted == 10
    assert sink.received == 0
    assert sum(link.dropped.values()) == src.emitted
    assert status.dropped == 10
    assert link.delivered == 0
    assert any(e["event"] == "link.dropped" for e in logs)


async def test_an_error_in_the_block_cancels_the_system_and_propagates_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An exception inside ``async with`` stops the system with cleanup and is re-raised as is."""
    journal: list[str] = []
    graph = pipeline(
        ("src", Forever, {"journal": journal}), ("sink", Collect, {"into": [], "journal": journal})
    )
    with pytest.raises(LookupError, match="boom"):
        async with af.open_system(graph):
            await trio.sleep(3)
            raise LookupError("boom")
    assert sorted(journal) == ["cleanup:sink", "cleanup:src"]


async def test_wait_returns_when_every_actor_ended() -> None:
    """System.wait() returns once the graph has ended by itself."""
    async with af.open_system(
        pipeline(("src", Numbers, {"count": 3}), ("sink", Collect, {"into": []}))
    ) as system:
        await system.wait()
        assert all(a.state.is_final for a in system.status().actors.values())
    assert system.actors == ("src", "sink")


def test_unknown_setting_overrides_are_refused_by_name() -> None:
    """Passing a setting that does not exist is a TypeError naming it."""
    graph = pipeline(("src", Numbers, {}), ("sink", Collect, {"into": []}))
    with pytest.raises(TypeError, match=r"unknown setting\(s\) 'quantom'.*quantum"):
        af.run(graph, quantom=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantum", 0),
        ("quantum", -1),
        ("default_buffer", 0),
        ("max_batch", 1.5),
        ("cleanup_timeout", True),
    ],
)
def test_settings_refuse_values_that_can_never_work(field: str, value: Any) -> None:
    """Settings validate at construction and name the field."""
    with pytest.raises(ValueError, match=field):
        af.Settings(**{field: value})


class Unreachable(af.Source):
    """Fails to connect ``failures`` times, then yields its readings."""

    retry_interval = 2.0

    def __init__(self, failures: int, tries: list[float]) -> None:
        self.failures = failures
        self.tries = tries

    def start(self) -> Any:
        self.tries.append(trio.current_time())
        if len(self.tries) <= self.failures:
            raise ConnectionError("broker unreachable")
        return [1, 2, 3]


async def test_a_source_with_retry_interval_retries_start_until_it_works(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """start() that raises is tried again every retry_interval; once it returns normally
    it is not called again, and no restart is counted."""
    tries: list[float] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Unreachable, failures=3, tries=tries)
    graph.add("sink", Collect, into=out)
    graph.link("src", "sink")
    began = trio.current_time()
    async with af.open_system(graph) as system:
        pass
    assert [t - began for t in tries] == [0, 2, 4, 6]
    assert out == [1, 2, 3]
    src = system.status().actors["src"]
    assert src.restarts == 0
    assert src.errors == 3
    retries = [e for e in logs if e["event"] == "actor.retrying"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert retries[0]["error"] == "ConnectionError: broker unreachable"
    assert retries[0]["retry_in"] == 2.0


async def test_stopping_a_retrying_source_ends_it_without_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A graceful stop during the retry wait ends the source at once."""
    tries: list[float] = []
    graph = af.Graph()
    graph.add("src", Unreachable, failures=10**6, tries=tries)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    async with af.open_system(graph) as system:
        await trio.sleep(5)
        stopped_at = trio.current_time()
        await system.stop()
    assert trio.current_time() == stopped_at
    assert len(tries) == 3
    assert system.status().actors["src"].reason == "stopped"
    assert system.status().state is af.SystemState.DONE


# ------------------------------------------------------------------------------------------------
# Cancel, stop, copies and process() shapes at their edges (moved from test_regressions.py)
# ------------------------------------------------------------------------------------------------


async def test_system_cancel_counts_the_item_an_async_process_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The item an async process() holds when the system is cancelled is still counted."""

    class Slow(af.Processor):
        async def process(self, data: int) -> int:
            await trio.sleep(10)
            return data

    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=10)
    graph.add("p", Slow)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    async with af.open_system(graph) as system:
        await trio.sleep(15)  # item 0 handled, item 1 inside process()
        system.cancel()
    status = system.status()
    assert out == [0]
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_system_cancel_during_a_blocked_fan_out_counts_every_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled while blocked on a full first link, a fan-out still accounts for every
    item on every link, including the links it had not offered to yet."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: int) -> None:
            await release.wait()

    class Emitting(af.Source):
        """Emits one item at a time, so it can block half-way through a fan-out."""

        async def start(self) -> None:
            for n in range(50):
                await self.emit(n)

    fast: list[int] = []
    graph = af.Graph()
    graph.add("src", Emitting)
    graph.add("slow", Stuck)
    graph.add("fast", Collect, into=fast)
    graph.link("src", "slow", buffer=2)
    graph.link("src", "fast", buffer=100)
    async with af.open_system(graph) as system:
        await trio.sleep(1)
        system.cancel()
    status = system.status()
    emitted = status.actors["src"].emitted
    assert 0 < emitted < 50
    for link in status.links.values():
        assert link.delivered + sum(link.dropped.values()) == emitted
    assert_accounted(status, {"slow": 0, "fast": len(fast)})


class SyncUncopyable(af.Processor):
    def process(self, data: int) -> dict[str, Any]:
        return {"v": data} if data != 3 else {"v": object()}


class AsyncUncopyable(af.Processor):
    async def process(self, data: int) -> dict[str, Any]:
        return {"v": data} if data != 3 else {"v": object()}


def uncopyable_graph(processor: type[af.Processor], out: list[Any]) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Numbers, count=6)
    graph.add("p", processor)
    graph.add("k", Collect, into=out)
    graph.link("src", "p")
    graph.link("p", "k", copy="msgpack")
    return graph


@pytest.mark.parametrize("processor", [SyncUncopyable, AsyncUncopyable])
async def test_an_output_that_cannot_be_copied_is_counted_as_copy_failed(
    processor: type[af.Processor],
) -> None:
    """A copy failure on a link is counted there (``copy_failed``), never lost silently."""
    out: list[Any] = []
    async with af.open_system(uncopyable_graph(processor, out)) as system:
        pass
    status = system.status()
    link = status.links["p.out -> k.in"]
    assert link.dropped.get("copy_failed", 0) >= 1
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


@pytest.mark.parametrize(
    "processor",
    [
        SyncUncopyable,
        AsyncUncopyable,
    ],
)
async def test_a_copy_failure_loses_only_the_output_that_cannot_be_copied(
    processor: type[af.Processor],
) -> None:
    """When one output cannot be copied, the outputs of the other items of its batch are still
    delivered."""
    out: list[Any] = []
    async with af.open_system(uncopyable_graph(processor, out)):
        pass
    assert sorted(d["v"] for d in out) == [0, 1, 2, 4, 5]


async def test_a_copy_failure_is_logged_naming_the_link_and_the_error(
    logs: list[dict[str, Any]],
) -> None:
    """An output that cannot be copied is logged with its link, policy and error, and the module
    is not failed for it."""
    graph = uncopyable_graph(AsyncUncopyable, [])
    graph.supervisor(max_restarts=0)
    async with af.open_system(graph) as system:
        pass
    [event] = [e for e in logs if e["event"] == "link.dropped" and e["reason"] == "copy_failed"]
    assert event["link"] == "p.out -> k.in"
    assert event["copy"] == "msgpack"
    assert "no lossless msgpack form" in event["error"]
    assert system.status().state is af.SystemState.DONE


class EmptyMany(af.Processor):
    def process(self, data: int) -> af.Many:
        return af.Many([])


class AsyncEmptyMany(af.Processor):
    async def process(self, data: int) -> af.Many:
        return af.Many([])


@pytest.mark.parametrize("processor", [EmptyMany, AsyncEmptyMany])
async def test_an_empty_many_counts_as_filtered(processor: type[af.Processor]) -> None:
    """Returning ``Many([])`` filters the item, in sync and async process() alike."""
    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("p", processor)
    graph.add("k", Collect, into=[])
    graph.chain("src", "p", "k")
    async with af.open_system(graph) as system:
        pass
    status = system.status()
    assert status.actors["p"].filtered == 3
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": 0})


async def test_an_optional_second_parameter_of_process_is_not_the_port() -> None:
    """``process(self, data, scale=10)`` is called with the data only."""

    class Scale(af.Processor):
        def process(self, data: int, scale: int = 10) -> int:
            return data * scale

    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("p", Scale)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    async with af.open_system(graph):
        pass
    assert out == [0, 10, 20]


async def test_a_system_opened_in_a_cancelled_scope_ends_at_once_and_terminates_all(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system opened in a cancelled scope waits no ``cleanup_timeout`` for producers that
    never started, and every actor ends in a final state."""
    systems: list[af.System] = []
    original = _system.System._start

    async def spy(self: af.System, nursery: trio.Nursery) -> None:
        systems.append(self)
        await original(self, nursery)

    monkeypatch.setattr(_system.System, "_start", spy)
    graph = af.Graph()
    graph.add("src", Numbers, count=5)
    graph.add("p", Pass)
    graph.add("k", Collect, into=[])
    graph.chain("src", "p", "k")
    began = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()
        async with af.open_system(graph, cleanup_timeout=5):
            pytest.fail("the body of a cancelled system ran")
    assert trio.current_time() - began < 1
    (system,) = systems
    status = system.status()
    assert status.state is af.SystemState.CANCELLED
    assert all(actor.state.is_final for actor in status.actors.values())


async def test_stop_ends_a_source_blocked_on_backpressure_promptly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cooperating generator source blocked on a full link is stopped at once, not killed
    after stop_timeout."""

    class Endless(af.Source):
        def start(self) -> Iterator[int]:
            yield from itertools.count()

    class Slow(af.Sink):
        async def consume(self, data: int) -> None:
            await trio.sleep(1)

    graph = af.Graph()
    graph.add("src", Endless)
    graph.add("k", Slow)
    graph.link("src", "k", buffer=2)
    async with af.open_system(graph, stop_timeout=60) as system:
        await trio.sleep(2)
        await system.stop()
    assert trio.current_time() < 2 + 60
    status = system.status()
    assert status.actors["src"].reason == "stopped"
    assert_accounted(status, {"k": status.actors["k"].received})


async def test_stop_returns_at_once_and_a_hanging_stop_hook_cannot_hang_the_system(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stop() returns at once, and a source whose stop() and start() never return is killed
    after stop_timeout so the system ends."""

    class Hanging(af.Source):
        async def start(self) -> None:
            await trio.sleep_forever()

        async def stop(self) -> None:
            await trio.sleep_forever()  # waiting on an unreachable broker, say

    graph = af.Graph()
    graph.add("src", Hanging)
    graph.add("k", Collect, into=[])
    graph.link("src", "k")
    with trio.move_on_after(100) as watchdog:
        async with af.open_system(graph, stop_timeout=1) as system:
            await system.stop()
            assert trio.current_time() == 0
    assert not watchdog.cancelled_caught
    assert trio.current_time() == pytest.approx(1)
    assert system.status().actors["src"].reason == "killed"


async def test_stop_does_not_call_the_stop_hook_of_a_source_that_already_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source that finished (now cleaning up, or gone) is not asked to stop."""
    journal: list[str] = []

    class Once(af.Source):
        def start(self) -> list[int]:
            return [1]

        def stop(self) -> None:
            journal.append("stop")

        async def cleanup(self) -> None:
            await trio.sleep(1)

    graph = af.Graph()
    graph.add("src", Once)
    graph.add("k", Collect, into=[])
    graph.link("src", "k")
    async with af.open_system(graph) as system:
        await trio.sleep(0.5)
        assert system.status().actors["src"].state is af.ActorState.ZOMBIE
        await system.stop()
        await system.stop()
    await system.stop()
    assert journal == []
    assert system.status().actors["src"].reason == "normal"
    assert system.status().state is af.SystemState.DONE


async def test_each_actor_counts_its_distinct_ancestors_once() -> None:
    """An actor's ancestors are every actor upstream of it, each counted once where
    paths join (a diamond), and counted again when a link is added while running."""

    class Pass(af.Processor):
        def process(self, data: Any) -> Any:
            return data

    class Idle(af.Sink):
        def consume(self, data: Any) -> None:
            pass

    graph = af.Graph()
    for name in ("a", "x"):
        graph.add(name, af.Inlet)
    for name in ("b", "c", "d", "p0", "p1", "p2"):
        graph.add(name, Pass)
    for name in ("e", "y"):
        graph.add(name, Idle)
    for source, target in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]:
        graph.link(source, target)
    graph.chain("x", "p0", "p1", "p2", "y")
    async with af.open_system(graph) as system:
        counts = {name: system._actors[name].ancestors for name in system.actors}
        assert counts == {
            "a": 0, "x": 0, "b": 1, "c": 1, "d": 3, "e": 4,
            "p0": 1, "p1": 2, "p2": 3, "y": 4,
        }  # fmt: skip
        await system.add_link("p1", "d")
        assert system._actors["d"].ancestors == 6
        assert system._actors["e"].ancestors == 7
        await system.stop()


_HANGING_CLEANUP = """
import sys
import actorflow as af


class Numbers(af.Source):
    def start(self):
        yield from range(3)


class Hangs(af.Sink):
    def consume(self, data):
        pass

    def cleanup(self):
        print("cleanup", flush=True)
        while True:
            pass


graph = af.Graph()
graph.add("numbers", Numbers)
graph.add("hangs", Hangs)
graph.link("numbers", "hangs")
af.run(graph)
"""


def test_a_second_ctrl_c_ends_a_run_stuck_in_a_sync_cleanup(tmp_path: Path) -> None:
    """A sync cleanup() that never returns holds the event loop: trio's Ctrl-C waits for
    a checkpoint that never comes. The second Ctrl-C ends the process at once."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "hang.py"
    script.write_text(_HANGING_CLEANUP)
    env = {**os.environ, "PYTHONPATH": str(Path(af.__file__).parent.parent)}
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"cleanup\n"
        signals = 0
        while process.poll() is None and signals < 40:
            process.send_signal(signal.SIGINT)
            signals += 1
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.5)  # a bound, not a synchronisation
        assert process.poll() is not None, "still running after 40 Ctrl-C"
        assert signals >= 2
        assert process.returncode != 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("value", [-1, float("nan"), "x", True, float("inf")])
async def test_stop_refuses_a_drain_timeout_that_is_not_a_duration(
    value: object, autojump_clock: trio.testing.MockClock
) -> None:
    """A bad deadline is refused at the call, naming it, not a raw trio error later."""
    graph = af.Graph()
    graph.add("src", Forever, interval=1)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    async with af.open_system(graph) as system:
        with pytest.raises(ValueError, match="drain_timeout must be seconds"):
            await system.stop(drain_timeout=value)  # type: ignore[arg-type]
        await system.stop(drain_timeout=5)
