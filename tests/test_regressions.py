"""Regressions for the bugs an earlier review reproduced (scripts h1..h13 and fuzz.py).

Each test is named after the behaviour it guards, and failed on the code it was written
against.

The accounting invariant checked throughout: every item a producer emitted is handled
downstream, dead-lettered, or counted in exactly one ``dropped`` dict with a reason.
"""

from __future__ import annotations

import itertools
import random
import signal
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduling import StepTimer

import actorflow as af
from actorflow import _system

# -- helpers -----------------------------------------------------------------------------


def assert_accounted(status: af.SystemStatus, handled: dict[str, int]) -> None:
    """Every emitted item is delivered or dropped on each link; every received item is
    handled, dead-lettered or dropped by its consumer; nothing is left in a link.

    ``handled`` gives, per consumer, how many received items it handled to completion.
    """
    received_from_links: dict[str, int] = {}
    for name, link in status.links.items():
        producer = status.actors[name.split(".")[0]]
        consumer = name.split(" -> ")[1].split(".")[0]
        assert link.depth == 0, name
        assert producer.emitted == link.delivered + sum(link.dropped.values()), (name, link)
        received_from_links[consumer] = received_from_links.get(consumer, 0) + link.delivered
    for name, count in handled.items():
        actor = status.actors[name]
        assert actor.received == received_from_links[name], (name, actor)
        assert actor.received == count + actor.dead_lettered + sum(actor.dropped.values()), (
            name,
            actor,
            count,
        )


def one_to_one(status: af.SystemStatus, name: str) -> int:
    """Items a processor that maps each input to at most one output handled."""
    actor = status.actors[name]
    return actor.emitted + actor.filtered


class Numbers(af.Source):
    def __init__(self, count: int) -> None:
        self.count = count

    def start(self) -> Iterator[int]:
        yield from range(self.count)


class Pass(af.Processor):
    def process(self, data: Any) -> Any:
        return data


class Collect(af.Sink):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def consume(self, data: Any) -> None:
        self.into.append(data)


# -- h1: cancellation inside an async process() -------------------------------------------


async def test_an_item_cancelled_inside_async_process_is_not_lost(
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


# -- h2: a fan-out send cancelled while the first link is full ----------------------------


async def test_cancelled_fan_out_send_counts_every_link(
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


# -- h3 / h3b: an output that the link's copy policy cannot copy ---------------------------


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
    """Outputs of the other items of the batch are still delivered."""
    out: list[Any] = []
    async with af.open_system(uncopyable_graph(processor, out)):
        pass
    assert sorted(d["v"] for d in out) == [0, 1, 2, 4, 5]


async def test_a_copy_failure_is_logged_naming_the_link_and_the_error(
    logs: list[dict[str, Any]],
) -> None:
    """An output that cannot be copied is logged with its link, policy and error; the
    module is not failed for it (the other outputs flow on)."""
    graph = uncopyable_graph(AsyncUncopyable, [])
    graph.supervisor(max_restarts=0)
    async with af.open_system(graph) as system:
        pass
    [event] = [e for e in logs if e["event"] == "link.dropped" and e["reason"] == "copy_failed"]
    assert event["link"] == "p.out -> k.in"
    assert event["copy"] == "msgpack"
    assert "no lossless msgpack form" in event["error"]
    assert system.status().state is af.SystemState.DONE


# -- h4: generators and Many that fail part-way; empty Many --------------------------------


class GenFailing(af.Processor):
    def process(self, data: int) -> Iterator[int]:
        yield data * 10
        yield data * 10 + 1
        if data == 2:
            raise ValueError("boom")


class ManyFailing(af.Processor):
    def process(self, data: int) -> af.Many:
        if data == 2:
            raise ValueError("boom")
        return af.Many([data * 10, data * 10 + 1])


@pytest.mark.parametrize("processor", [GenFailing, ManyFailing])
async def test_outputs_of_an_item_that_fails_part_way_are_not_sent(
    processor: type[af.Processor],
) -> None:
    """The item is dead-lettered once, the outputs it made before failing are not sent,
    and the counters add up."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=4)
    graph.add("p", processor)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    async with af.open_system(graph) as system:
        pass
    status = system.status()
    assert out == [0, 1, 10, 11, 30, 31]
    assert [letter.item for letter in system.dead_letters] == [2]
    p = status.actors["p"]
    assert (p.received, p.emitted, p.dead_lettered, p.dropped) == (4, 6, 1, {})
    assert_accounted(status, {"p": 3, "k": len(out)})


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


# -- h5 / h5b: a source that fails in start() ----------------------------------------------


async def test_a_source_failing_at_start_does_not_stall_cleanup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every started module is cleaned up at once; none waits ``cleanup_timeout`` for an
    upstream actor that never ran."""
    journal: list[str] = []

    class Bad(af.Source):
        def start(self) -> Any:
            raise ConnectionError("down")

        def cleanup(self) -> None:
            journal.append("cleanup:bad")

    class Good(af.Source):
        def start(self) -> list[int]:
            return [1]

        def cleanup(self) -> None:
            journal.append("cleanup:good")

    class Pass(af.Processor):
        def process(self, data: int) -> int:
            return data

        def cleanup(self) -> None:
            journal.append("cleanup:p2")

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append(f"cleanup:{self.name}")

    graph = af.Graph()
    graph.add("bad", Bad)
    graph.add("k1", Sink)
    graph.link("bad", "k1")
    graph.add("good", Good)
    graph.add("p2", Pass)
    graph.add("k2", Sink)
    graph.chain("good", "p2", "k2")
    graph.supervisor(max_restarts=0)
    began = trio.current_time()
    with pytest.raises(af.RunError, match="ConnectionError: down"):
        async with af.open_system(graph, cleanup_timeout=5):
            pass
    assert trio.current_time() - began < 1
    assert {"cleanup:bad", "cleanup:k1", "cleanup:k2"} <= set(journal)


# -- h6: SystemExit and Ctrl-C -------------------------------------------------------------


async def test_a_module_raising_system_exit_propagates_it_unwrapped() -> None:
    """SystemExit from process() leaves open_system as itself, after every cleanup."""
    journal: list[str] = []

    class Exit(af.Processor):
        def process(self, data: int) -> int:
            if data == 2:
                raise SystemExit(3)
            return data

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append("cleanup:k")

    graph = af.Graph()
    graph.add("src", Numbers, count=4)
    graph.add("p", Exit)
    graph.add("k", Sink)
    graph.chain("src", "p", "k")
    with pytest.raises(SystemExit) as caught:
        async with af.open_system(graph):
            pass
    assert caught.value.code == 3
    assert journal == ["cleanup:k"]


def test_ctrl_c_while_the_system_runs_raises_keyboard_interrupt_unwrapped() -> None:
    """A SIGINT delivered while the system runs ends it with cleanup and raises a bare
    KeyboardInterrupt, not an ExceptionGroup."""
    journal: list[str] = []

    class Interrupted(af.Source):
        async def start(self) -> None:
            # The signal arrives from another thread, as a real Ctrl-C does.
            await trio.to_thread.run_sync(signal.raise_signal, signal.SIGINT)
            while self.active:
                await trio.sleep(1)
                await self.emit(1)

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append("cleanup:k")

    graph = af.Graph()
    graph.add("src", Interrupted)
    graph.add("k", Sink)
    graph.link("src", "k")

    async def main() -> None:
        async with af.open_system(graph):
            pass

    with pytest.raises(KeyboardInterrupt):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert journal == ["cleanup:k"]


# -- h_copyhog: copying a fan-out batch ignores the quantum ---------------------------------


async def test_costly_fan_out_copies_respect_the_quantum(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source whose items are expensive to deep-copy still yields about once a quantum."""

    class Heavy:
        def __deepcopy__(self, memo: dict[int, Any]) -> Heavy:
            autojump_clock.jump(0.001)
            return Heavy()

    class Src(af.Source):
        def start(self) -> Iterator[Heavy]:
            for _ in range(300):
                yield Heavy()

    graph = af.Graph()
    graph.add("src", Src)
    for sink in ("k1", "k2", "k3"):
        graph.add(sink, Collect, into=[])
        graph.link("src", sink, buffer=1000)
    timer = StepTimer()
    trio.lowlevel.add_instrument(timer)
    try:
        async with af.open_system(graph, quantum=0.01):
            pass
    finally:
        trio.lowlevel.remove_instrument(timer)
    # At most one stride of copies past the quantum (the stride widened while items were
    # cheap to make); once copying is seen to be costly, steps stay near the quantum.
    from actorflow._actor import _MAX_STRIDE

    steps = sorted(timer.steps["src"])
    assert steps[-1] <= 0.01 + 2 * _MAX_STRIDE * 0.001
    assert steps[len(steps) // 2] <= 0.02


# -- h_fbonly: a module fed only through feedback links -----------------------------------


def test_a_module_fed_only_by_feedback_links_is_refused() -> None:
    """Such a module would see its end of stream at once and drop what the cycle sends;
    the graph is refused before anything runs."""

    class Router(af.Processor):
        inputs: ClassVar = {"in": object, "back": object}
        outputs: ClassVar = {"out": object, "x": object}

        def process(self, data: Any, port: str) -> Any:
            return data

    class Times(af.Processor):
        def process(self, data: int) -> int:
            return data * 100

    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("b", Router)
    graph.add("a", Times)
    graph.add("k", Collect, into=[])
    graph.link("src", "b.in")
    graph.link("b.x", "a", feedback=True)
    graph.link("a", "b.back")
    graph.link("b.out", "k")
    with pytest.raises(af.GraphError, match="module 'a': every input link is a feedback link"):
        graph.validate()


# -- h_lost: a failure while an outer scope cancels the shutdown ---------------------------


class Fails(af.Processor):
    def process(self, data: int) -> int:
        raise ValueError("real bug")


class SlowCleanup(af.Sink):
    def consume(self, data: int) -> None:
        pass

    async def cleanup(self) -> None:
        await trio.sleep(2)  # flushing a file, say


async def test_a_failure_is_raised_even_if_an_outer_scope_cancels_during_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The system failed before the outer deadline fired; that failure must not vanish."""
    graph = af.Graph()
    graph.add("src", Numbers, count=2)
    graph.add("p", Fails)
    graph.add("k", SlowCleanup)
    graph.chain("src", "p", "k")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match="real bug"), trio.move_on_after(1):
        async with af.open_system(graph):
            await trio.sleep_forever()


# -- h_order: cleanup order, producers first ------------------------------------------------


def ordered_cleanup_graph(journal: list[tuple[str, float]], *, forever: bool) -> af.Graph:
    class Src(af.Source):
        async def start(self) -> Any:
            if forever:
                await trio.sleep_forever()
            return [1]

        async def cleanup(self) -> None:
            journal.append(("src begin", trio.current_time()))
            await trio.sleep(4)
            journal.append(("src end", trio.current_time()))

    class Pass(af.Processor):
        def process(self, data: int) -> int:
            return data

        async def cleanup(self) -> None:
            journal.append(("p begin", trio.current_time()))
            await trio.sleep(4)
            journal.append(("p end", trio.current_time()))

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append(("k begin", trio.current_time()))

    graph = af.Graph()
    graph.add("src", Src)
    graph.add("p", Pass)
    graph.add("k", Sink)
    graph.chain("src", "p", "k")
    return graph


def events_in_time_order(journal: list[tuple[str, float]]) -> list[str]:
    return [event for event, _ in sorted(journal, key=lambda entry: entry[1])]


async def test_a_normal_end_cleans_up_producers_first_however_long_the_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each cleanup fits cleanup_timeout but the chain does not: the order still holds."""
    journal: list[tuple[str, float]] = []
    async with af.open_system(
        ordered_cleanup_graph(journal, forever=False), cleanup_timeout=5
    ) as system:
        pass
    assert events_in_time_order(journal) == ["src begin", "src end", "p begin", "p end", "k begin"]
    assert all(actor.errors == 0 for actor in system.status().actors.values())


async def test_a_cancellation_cleans_up_producers_first_however_long_the_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On cancellation too: a consumer waits for its whole upstream chain's cleanups."""
    journal: list[tuple[str, float]] = []
    async with af.open_system(
        ordered_cleanup_graph(journal, forever=True), cleanup_timeout=5
    ) as system:
        await trio.sleep(1)
        system.cancel()
    assert events_in_time_order(journal) == ["src begin", "src end", "p begin", "p end", "k begin"]


# -- h_port: an optional second parameter is not a port ------------------------------------


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


# -- h_precancel: open_system inside an already cancelled scope -----------------------------


async def test_a_system_opened_in_a_cancelled_scope_ends_at_once_and_terminates_all(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No actor waits ``cleanup_timeout`` for producers that never started, and every
    actor ends in a final state."""
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


# -- h_stop_bp: stop() while the source is blocked on a full link --------------------------


async def test_stop_ends_a_source_blocked_on_backpressure_promptly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cooperating generator source is stopped, not killed after stop_timeout."""

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


# -- h_stophang / h13: stop() with a hanging stop hook, and after a source finished ---------


async def test_stop_returns_at_once_and_a_hanging_stop_hook_cannot_hang_the_system(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stop() returns at once; a source whose stop() and start() never return is killed
    after stop_timeout and the system ends."""

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


# -- fuzz.py: random pipelines, crashes and cancellations keep the accounting exact --------


@settings(max_examples=50, deadline=None)
@given(
    count=st.integers(1, 40),
    fail_at=st.none() | st.integers(0, 40),
    style=st.sampled_from(["sync", "async", "gen", "agen"]),
    buffers=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    max_batch=st.integers(1, 8),
    cancel_at=st.none() | st.floats(0, 0.1),
    fail_fast=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_emitted_item_is_handled_dead_lettered_or_dropped_exactly_once(
    count: int,
    fail_at: int | None,
    style: str,
    buffers: tuple[int, int, int],
    max_batch: int,
    cancel_at: float | None,
    fail_fast: bool,
    seed: int,
) -> None:
    """Source -> processor -> two sinks (one deep copy, one shared), with a crashing item,
    random delays and a random cancellation: every counter adds up and no item is
    handled twice."""
    rng = random.Random(seed)
    consumed: dict[str, list[int]] = {"k1": [], "k2": []}

    def body(data: int) -> int:
        if data == fail_at:
            raise ValueError("x")
        return data

    processor: type[af.Processor]
    if style == "sync":

        class SyncP(af.Processor):
            def process(self, data: int) -> int:
                return body(data)

        processor = SyncP
    elif style == "async":

        class AsyncP(af.Processor):
            async def process(self, data: int) -> int:
                await trio.sleep(rng.random() * 0.01)
                return body(data)

        processor = AsyncP
    elif style == "gen":

        class GenP(af.Processor):
            def process(self, data: int) -> Iterator[int]:
                yield body(data)

        processor = GenP
    else:

        class AsyncGenP(af.Processor):
            async def process(self, data: int) -> Any:
                await trio.sleep(0.001)
                yield body(data)

        processor = AsyncGenP

    class Sink(af.Sink):
        async def consume(self, data: int) -> None:
            await trio.sleep(rng.random() * 0.01)
            consumed[self.name].append(data)

    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    graph.add("p", processor)
    graph.add("k1", Sink)
    graph.add("k2", Sink)
    graph.link("src", "p", buffer=buffers[0])
    graph.link("p", "k1", buffer=buffers[1])
    graph.link("p", "k2", buffer=buffers[2], copy="none")
    if fail_fast:
        graph.supervisor(max_restarts=0)
    systems: list[af.System] = []

    async def main() -> None:
        try:
            async with af.open_system(graph, max_batch=max_batch) as system:
                systems.append(system)
                if cancel_at is not None:
                    await trio.sleep(cancel_at)
                    system.cancel()
        except af.RunError:
            assert fail_at is not None
            assert fail_at < count

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    (system,) = systems
    status = system.status()
    assert_accounted(
        status,
        {
            "p": one_to_one(status, "p"),
            "k1": len(consumed["k1"]),
            "k2": len(consumed["k2"]),
        },
    )
    for items in consumed.values():
        assert len(set(items)) == len(items)
        assert fail_at not in items
    assert [letter.item for letter in system.dead_letters] in ([], [fail_at])


# -- second review: supervision of groups, stops and restarts under way ------------------


class FailsOn(af.Processor):
    """Raises on the items of ``failures`` as many times as their count says."""

    def __init__(self, failures: dict[int, int]) -> None:
        self.failures = failures

    def process(self, data: int) -> int:
        if self.failures.get(data, 0) > 0:
            self.failures[data] -= 1
            raise RuntimeError(f"cannot handle {data}")
        return data


class StoreFailsOn(af.Sink):
    """Collects, but raises on the items of ``failures`` as many times as their count says."""

    def __init__(self, failures: dict[int, int], into: list[int]) -> None:
        self.failures = failures
        self.into = into

    def consume(self, data: int) -> None:
        if self.failures.get(data, 0) > 0:
            self.failures[data] -= 1
            raise RuntimeError(f"cannot store {data}")
        self.into.append(data)


class Ticks(af.Source):
    """Emits ``count`` ints (forever if None) one second apart while active; raises once
    on ``crash["at"]`` while ``crash["left"]`` is positive."""

    def __init__(self, count: int | None = None, crash: dict[str, int] | None = None) -> None:
        self.count = count
        self.crash = crash if crash is not None else {}

    async def start(self) -> None:
        for n in itertools.count() if self.count is None else range(self.count):
            if not self.active:
                return
            if n == self.crash.get("at") and self.crash.get("left", 0) > 0:
                self.crash["left"] -= 1
                raise RuntimeError("source crash")
            await self.emit(n)
            await trio.sleep(1)


async def test_a_group_restarted_after_escalating_loses_no_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group that gave up and was restarted by the root keeps its links open, so every
    item after the failing one still reaches the sink."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=20)
    graph.add("p", FailsOn, failures={3: 1})
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k", buffer=4)
    graph.group("grp", ["p"], max_restarts=0)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert out == [n for n in range(20) if n != 3]
    assert [letter.item for letter in system.dead_letters] == [3]
    assert status.actors["p"].restarts == 1
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_a_group_restarted_as_a_bystander_loses_no_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group stopped and restarted by a root one_for_all restart comes back with its
    links open: the restarted source's items all reach the sink."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=20)
    graph.add("p", Pass)
    graph.add("k", StoreFailsOn, failures={5: 1}, into=out)
    graph.chain("src", "p", "k", buffer=4)
    graph.supervise("k", attempts=2)
    graph.group("grp", ["p"])
    graph.supervisor(strategy="one_for_all")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.actors["p"].restarts == 1
    # The restarted source starts over: its whole second stream is stored.
    assert out[:-20] == list(range(len(out) - 20))
    assert out[-20:] == list(range(20))
    assert not system.dead_letters
    assert all(actor.dropped == {} for actor in status.actors.values())
    assert all(link.dropped == {} for link in status.links.values())
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_a_child_stopped_by_terminate_child_resumes_after_restart_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """terminate_child only stops a child: after restart_child it handles what was queued
    for it and what comes next, and its consumer is still there."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Ticks, count=15)
    graph.add("p", Pass)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            root = system.supervisor()
            await trio.sleep(3.5)
            await root.terminate_child("p")
            await trio.sleep(2)
            assert system.status().actors["k"].state is not af.ActorState.TERMINATED
            await root.restart_child("p")
    status = system.status()
    assert out == list(range(15))
    assert status.state is af.SystemState.DONE
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_the_system_ends_done_after_the_root_recovered_from_a_group_escalation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group escalation the root restarts the group for is not the system's failure:
    open_system raises nothing and the system ends DONE."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=5)
    graph.add("k", StoreFailsOn, failures={4: 1}, into=out)
    graph.link("src", "k")
    graph.group("grp", ["k"], max_restarts=0)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.actors["k"].state is af.ActorState.TERMINATED
    assert out == [0, 1, 2, 3]
    assert [letter.item for letter in system.dead_letters] == [4]
    assert_accounted(status, {"k": len(out)})


@pytest.mark.parametrize("case", ["permanent source", "stop during backoff"])
async def test_stop_ends_a_source_that_is_being_restarted(
    autojump_clock: trio.testing.MockClock, case: str
) -> None:
    """System.stop() is not lost when the supervisor restarts a source (a permanent one
    that stopped, or one waiting out a backoff): the system ends DONE."""
    out: list[int] = []
    graph = af.Graph(name="g")
    if case == "permanent source":
        graph.add("src", Ticks)
        graph.supervise("src", restart="permanent")
    else:
        graph.add("src", Ticks, crash={"at": 3, "left": 1})
        graph.supervisor(backoff=af.Backoff(min=10, max=10, jitter=0))
    graph.add("k", Collect, into=out)
    graph.link("src", "k")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(5.5)  # with a backoff: crashed at 3, restart due at 13
            await system.stop()
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.actors["src"].reason == "stopped"
    assert out == list(range(len(out)))
    assert len(out) >= 3
    assert_accounted(status, {"k": len(out)})


async def test_a_dead_letter_module_feeding_a_consumer_lets_the_graph_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dead-letter module that is a processor forwarding to a sink receives the letters
    and ends with the rest of the graph."""

    class Letters(af.Processor):
        inputs: ClassVar = {"in": af.DeadLetter}
        outputs: ClassVar = {"out": str}

        def process(self, letter: af.DeadLetter) -> str:
            return f"{letter.actor}:{letter.item}"

    out: list[int] = []
    logged: list[str] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=5)
    graph.add("p", FailsOn, failures={2: 1})
    graph.add("k", Collect, into=out)
    graph.add("letters", Letters)
    graph.add("log", Collect, into=logged)
    graph.chain("src", "p", "k")
    graph.link("letters", "log")
    graph.dead_letters("letters")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert out == [0, 1, 3, 4]
    assert logged == ["p:2"]
    # The dead-letter link has no producing actor: account for it here, the rest below.
    letter_link = status.links.pop("<dead letters>.out -> letters.in")
    assert (letter_link.sent, letter_link.delivered, letter_link.dropped) == (1, 1, {})
    assert status.actors["letters"].received == status.actors["letters"].emitted == 1
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out), "log": len(logged)})


async def test_restart_child_during_a_restart_backoff_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """restart_child on a child waiting out its restart backoff raises RuntimeError, and
    only one incarnation ever runs at a time."""
    live = 0
    peak = 0

    class Counted(Ticks):
        async def start(self) -> None:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)
            try:
                await super().start()
            finally:
                live -= 1

    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Counted, count=6, crash={"at": 2, "left": 1})
    graph.add("k", Collect, into=out)
    graph.link("src", "k")
    graph.supervisor(backoff=af.Backoff(min=10, max=10, jitter=0))
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(5)  # crashed at 2, restart due at 12
            with pytest.raises(RuntimeError, match="being restarted already"):
                await system.supervisor().restart_child("src")
    status = system.status()
    assert peak == 1
    assert status.actors["src"].restarts == 1
    assert out == [0, 1, *range(6)]
    assert_accounted(status, {"k": len(out)})


async def test_terminate_child_during_a_restart_backoff_keeps_the_child_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child stopped by terminate_child while waiting out its restart backoff is not
    restarted when the backoff ends; delete_child then ends it for good."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Ticks, crash={"at": 3, "left": 1})
    graph.add("k", Collect, into=out)
    graph.link("src", "k")
    graph.supervisor(backoff=af.Backoff(min=10, max=10, jitter=0))
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            root = system.supervisor()
            await trio.sleep(5)  # crashed at 3, restart due at 13
            await root.terminate_child("src")
            await trio.sleep(20)
            assert not {c.name: c.running for c in root.which_children()}["src"]
            await root.delete_child("src")
    status = system.status()
    assert out == [0, 1, 2]
    assert status.actors["src"].restarts == 0
    assert status.state is af.SystemState.DONE
    assert_accounted(status, {"k": len(out)})


async def test_killing_a_group_does_not_wait_for_upstream_cleanups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """terminate_child on a group with shutdown=1 whose member hangs takes about that
    second, not cleanup timeouts for the still running actors upstream of the member."""

    class Stuck(af.Sink):
        async def consume(self, data: int) -> None:
            await trio.sleep_forever()

    graph = af.Graph(name="g")
    graph.add("src", Ticks)
    graph.add("a", Pass)
    graph.add("b", Pass)
    graph.add("c", Pass)
    graph.add("k", Stuck)
    graph.chain("src", "a", "b", "c", "k")
    graph.group("grp", ["k"], shutdown=1)
    with trio.fail_after(60):
        async with af.open_system(graph, cleanup_timeout=5) as system:
            await trio.sleep(3)
            began = trio.current_time()
            await system.supervisor().terminate_child("grp")
            assert trio.current_time() - began <= 1.5
            assert system.status().actors["k"].reason == "killed"
            system.cancel()
    status = system.status()
    assert_accounted(
        status,
        {name: one_to_one(status, name) for name in "abc"} | {"k": 0},
    )


async def test_a_transient_child_that_ended_during_a_restart_backoff_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source that finished normally while a one_for_all restart waited out its backoff
    is not started again (it would emit its whole stream twice)."""
    out_a: list[int] = []
    out_b: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src_a", Ticks, count=20)
    graph.add("k_a", StoreFailsOn, failures={0: 1}, into=out_a)
    graph.add("src_b", Ticks, count=3)
    graph.add("k_b", Collect, into=out_b)
    graph.link("src_a", "k_a")
    graph.link("src_b", "k_b")
    graph.supervisor(strategy="one_for_all", backoff=af.Backoff(min=10, max=10, jitter=0))
    with trio.fail_after(120):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert out_b == [0, 1, 2]
    assert status.actors["src_b"].restarts == 0
    assert status.actors["src_b"].emitted == 3
    assert [letter.item for letter in system.dead_letters] == [0]
    assert_accounted(status, {"k_a": len(out_a), "k_b": len(out_b)})
