"""What the review of stage fusion and the lean hot loop found (#16): each test holds
fused and unfused runs to the same outcome."""

from __future__ import annotations

from typing import ClassVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Numbers

import actorflow as af


class StopsOnFive(af.Processor):
    """A user bug: ``next()`` on an empty iterator raises StopIteration for item 5."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        if data == 5:
            next(iter([]))
        return data


class StopsOnFiveSink(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, into: list[int]) -> None:
        self.into = into

    def consume(self, data: int) -> None:
        if data == 5:
            next(iter([]))
        self.into.append(data)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("where", ["processor", "sink"])
async def test_a_hook_raising_stopiteration_fails_that_item_and_loses_none(
    fuse: bool, where: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A StopIteration from a hook is not the end of a stride: the item is dead-lettered
    like any failure and every other item arrives."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    if where == "processor":
        graph.add("p", StopsOnFive)
        graph.add("sink", Collect, into=out)
        graph.chain("src", "p", "sink")
        failing = "p"
    else:
        graph.add("sink", StopsOnFiveSink, into=out)
        graph.chain("src", "sink")
        failing = "sink"
    async with af.open_system(graph, fuse=fuse) as system:
        pass
    assert out == [n for n in range(300) if n != 5]
    status = system.status().actors[failing]
    assert (status.received, status.errors, status.dead_lettered) == (300, 1, 1)


class Same(af.Processor):
    inputs: ClassVar = {"in": int, "back": af.Port(int, required=False)}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data


class Again(af.Processor):
    """Sends items under 50 back round the loop (plus 1000), drops the others."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int | None:
        return data + 1000 if data < 50 else None


@pytest.mark.parametrize("fuse", [True, False])
async def test_a_feedback_cycle_ends_fused_or_not(
    fuse: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """``b`` fused into ``a`` must not wait in ``a``'s task for room on its feedback link
    into ``a``: only ``a`` drains it."""
    graph = af.Graph()
    graph.add("src", Numbers, count=100)
    graph.add("a", Same)
    graph.add("b", Again)
    graph.link("src", "a")
    graph.link("a", "b", buffer=1000)
    graph.link("b", "a.back", feedback=True, buffer=5)
    for _ in range(2):  # the first run learns that the hooks are sync (fusable)
        with trio.fail_after(1):  # deadlocked, it would end only when killed after 5 s
            async with af.open_system(graph, fuse=fuse) as system:
                pass
        assert system.status().actors["b"].received >= 100


class TwoPorts(af.Source):
    """Emits i on 'out', and on 'aux' one step behind."""

    outputs: ClassVar = {"out": int, "aux": int}

    async def start(self) -> None:
        for i in range(50):
            await self.emit(i, "out")
            if i:
                await self.emit(i - 1, "aux")
        await self.emit(49, "aux")


class Join(af.Progressive):
    inputs: ClassVar = {"x": int, "y": int}
    outputs: ClassVar = {"out": object}

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        pairs = self.read_synced(["x", "y"], key=lambda value: value)
        for pair in pairs:
            self.post(pair, "out")
        return af.Step(af.StepState.BLOCKED, len(pairs))


@pytest.mark.parametrize("fuse", [True, False])
async def test_a_producer_with_two_ports_is_not_held_by_its_fused_consumer(
    fuse: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """The buffer on ``h.out`` lets ``h`` run ahead of ``a`` and feed ``aux``, which the
    join needs before it takes more from ``a``: fused, ``a`` must not hold ``h``."""
    out: list[object] = []
    graph = af.Graph()
    graph.add("h", TwoPorts)
    graph.add("a", Same)
    graph.add("j", Join)
    graph.add("sink", Collect, into=out)
    graph.link("h.out", "a", buffer=10)
    graph.link("a", "j.x", buffer=1)
    graph.link("h.aux", "j.y", buffer=10)
    graph.link("j", "sink")
    with trio.fail_after(60):
        async with af.open_system(graph, fuse=fuse):
            pass
    assert len(out) == 50


class Noted(af.Source):
    outputs: ClassVar = {"out": object}

    def __init__(self, pulled: list[int], reuse: bool) -> None:
        self.pulled = pulled
        self.reuse = reuse

    def start(self) -> object:
        frame = {"n": -1}
        for i in range(300):
            self.pulled[0] = i + 1
            if not self.reuse:
                frame = {}
            frame["n"] = i  # one object refilled in place, as a frame grabber does
            yield frame


class Read(af.Processor):
    inputs: ClassVar = {"in": object}
    outputs: ClassVar = {"out": int}

    def process(self, frame: dict[str, int]) -> int:
        return frame["n"]


class SlowNoting(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, pulled: list[int], into: list[int], ahead: list[int]) -> None:
        self.pulled, self.into, self.ahead = pulled, into, ahead

    async def consume(self, data: int) -> None:
        await trio.sleep(0.001)
        self.ahead.append(self.pulled[0] - data)
        self.into.append(data)


@pytest.mark.parametrize("buffer", [1, 4])
async def test_buffers_bound_a_fused_sources_lookahead_as_unfused(
    buffer: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A fused source pulls no more than its link would hold: it runs as far ahead of a
    slow sink as unfused, and with a buffer of one a reused object is read before the
    source refills it."""
    ahead: dict[bool, int] = {}
    for fuse in (True, False):
        pulled, out, seen = [0], [], []
        graph = af.Graph()
        graph.add("src", Noted, pulled=pulled, reuse=buffer == 1)
        graph.add("read", Read)
        graph.add("pass", Same)
        graph.add("sink", SlowNoting, pulled=pulled, into=out, ahead=seen)
        graph.chain("src", "read", "pass", "sink", buffer=buffer)
        async with af.open_system(graph, fuse=fuse):
            pass
        assert out == list(range(300))
        ahead[fuse] = max(seen)
    assert ahead[True] <= ahead[False] <= 6 * buffer


class Counted(af.Source):
    outputs: ClassVar = {"out": int}

    def __init__(self, pulled: list[int]) -> None:
        self.pulled = pulled

    def start(self) -> object:
        for i in range(2000):
            self.pulled[0] = i + 1
            yield i


class Ahead(af.Processor):
    """Notes how many items the source had pulled beyond the one it is handed."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, pulled: list[int], ahead: list[int]) -> None:
        self.pulled, self.ahead = pulled, ahead

    def process(self, data: int) -> int:
        self.ahead.append(self.pulled[0] - data)
        return data


@pytest.mark.parametrize(("fuse", "explicit"), [(True, False), (True, True), (False, False)])
async def test_a_fused_chain_of_default_buffers_moves_what_they_hold_together(
    fuse: bool, explicit: bool
) -> None:
    """Links left to the default buffer pool theirs along a fused chain: the source runs
    ahead by more than one link's buffer, never by more than the chain's links would hold
    together; a buffer set on a link bounds its batches exactly, as unfused."""
    pulled, ahead, out = [0], [], []
    graph = af.Graph()
    graph.add("src", Counted, pulled=pulled)
    graph.add("a", Ahead, pulled=pulled, ahead=ahead)
    graph.add("b", Same)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "a", "b", "sink", **({"buffer": 10} if explicit else {}))
    with trio.fail_after(60):
        async with af.open_system(graph, fuse=fuse, default_buffer=10):
            pass
    assert out == list(range(2000))
    if explicit or not fuse:
        assert max(ahead) <= 10
    else:
        assert 10 < max(ahead) <= 3 * 10  # three links of 10


class Chain(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data


class SlowFromTen(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, into: list[int]) -> None:
        self.into = into

    async def consume(self, data: int) -> None:
        if data >= 10:
            await trio.sleep(1)
        self.into.append(data)


@pytest.mark.parametrize("shutdown", [5.0, "infinity"])
async def test_a_graceful_stop_of_a_mid_chain_stage_is_prompt(
    shutdown: float | str, autojump_clock: trio.testing.MockClock
) -> None:
    """Stopping ``b`` while the chain waits on a slow sink takes no time, fused or not:
    no stage waits in another's task for room below it."""
    for fuse in (True, False):
        out: list[int] = []
        graph = af.Graph(name="g")
        for name in ("a", "b", "c"):
            graph.add(name, Chain)
            graph.supervise(name, shutdown=shutdown)
        graph.add("src", Numbers, count=60)
        graph.add("slow", SlowFromTen, into=out)
        graph.chain("src", "a", "b", "c", buffer=4)
        graph.link("c", "slow", buffer=16)
        async with af.open_system(graph, fuse=fuse) as system:
            await trio.sleep(5.5)
            began = trio.current_time()
            await system.supervisor("g").terminate_child("b")
            assert trio.current_time() - began < 0.1
            await trio.sleep(3)
            await system.supervisor("g").restart_child("b")
        assert out == list(range(60))
        assert system.status().dropped == 0


class Tens(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> af.Many:
        return af.Many(list(range(10)))


async def test_the_consumers_of_a_fan_out_port_are_never_fused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A port with two links delivers to each in turn: neither consumer may run in the
    producer's task (even when the producer waited for room and found it parked)."""
    seen: set[str | None] = set()
    graph = af.Graph()
    graph.add("src", Numbers, count=100)
    graph.add("p", Tens)
    graph.add("x", Collect, into=[])
    graph.add("y", Collect, into=[])
    graph.link("src", "p")
    graph.link("p", "x", buffer=2)
    graph.link("p", "y", buffer=2)
    async with af.open_system(graph) as system:
        while system.status().actors["y"].received < 900:
            actors = system.status().actors
            seen |= {actors["x"].fused_into, actors["y"].fused_into}
            await trio.sleep(0)
    assert seen == {None}


def test_the_heartbeat_and_the_dashboard_say_whose_task_runs_a_fused_actor() -> None:
    """A fused actor's ``fused_into`` reaches the heartbeat snapshot and the dashboard's
    view of each actor, as it does ``System.status()``."""
    from actorflow._dashboard._tracker import _actor_view
    from actorflow._heartbeat import snapshot

    status = af.SystemStatus(
        graph="g",
        state=af.SystemState.RUNNING,
        actors={
            "a": af.ActorStatus(
                name="a",
                kind="processor",
                state=af.ActorState.RUNNING,
                blocked_on=None,
                received=0,
                emitted=0,
                filtered=0,
                dropped={},
                mailbox_depth=0,
                errors=0,
                reason=None,
                fused_into="src",
            )
        },
        links={},
    )
    beat = snapshot(status, started_at=0.0, version="0")
    assert beat["actors"]["a"]["fused_into"] == "src"
    assert _actor_view(status.actors["a"], None, None, 0)["fused_into"] == "src"


@pytest.mark.parametrize("count", [77, 1000])
async def test_a_sources_last_short_run_is_in_its_handling_times(
    count: int, autojump_clock: trio.testing.MockClock
) -> None:
    """A source's pull that finds the end mid-run leaves the strides early: the items it
    got in that run are still counted in its handling-time histogram."""
    from actorflow._system import handling_times

    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    async with af.open_system(graph, metrics="127.0.0.1:0") as system:
        pass
    assert handling_times(system)["src"].count == count


@settings(max_examples=25, deadline=None)
@given(
    out_buffer=st.integers(1, 12),
    x_buffer=st.integers(1, 12),
    aux_buffer=st.integers(1, 12),
    back_buffer=st.integers(1, 8),
)
def test_any_buffers_give_the_same_outcome_fused_or_not(
    out_buffer: int, x_buffer: int, aux_buffer: int, back_buffer: int
) -> None:
    """Whatever the buffers, the join of a two-port producer and a feedback cycle end
    with the same items fused or not (fusion never adds a wait)."""

    async def run(fuse: bool) -> tuple[int, int]:
        out: list[object] = []
        graph = af.Graph()
        graph.add("h", TwoPorts)
        graph.add("a", Same)
        graph.add("j", Join)
        graph.add("sink", Collect, into=out)
        graph.link("h.out", "a", buffer=out_buffer)
        graph.link("a", "j.x", buffer=x_buffer)
        graph.link("h.aux", "j.y", buffer=aux_buffer)
        graph.link("j", "sink")
        loop = af.Graph()
        loop.add("src", Numbers, count=100)
        loop.add("a", Same)
        loop.add("b", Again)
        loop.link("src", "a")
        loop.link("a", "b", buffer=1000)
        loop.link("b", "a.back", feedback=True, buffer=back_buffer)
        with trio.fail_after(1):
            async with af.open_system(graph, fuse=fuse):
                pass
            async with af.open_system(loop, fuse=fuse) as system:
                pass
        return len(out), system.status().actors["b"].received

    joined, looped = {}, {}
    for fuse in (True, False):
        clock = trio.testing.MockClock(autojump_threshold=0)
        joined[fuse], looped[fuse] = trio.run(run, fuse, clock=clock)
    assert joined == {True: 50, False: 50}
    assert min(looped.values()) >= 100  # how many go round depends on timing
