"""Restarts in place: a plain one_for_one restart runs the next incarnation in the failed
child's own task, and everything the supervisor promises still holds around it.

Children are scripted workers; time is virtual (MockClock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._supervisor import (
    ChildSpec,
    Strategy,
    Supervisor,
    SupervisorSpec,
    hold,
    release,
    restarting,
)


class Scripted:
    """A worker that crashes when told, and whose prepare() can be held at a gate."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: list[trio.lowlevel.Task] = []
        self.prepared = 0
        self.kept = 0
        self.gate: trio.Event | None = None
        self.preparing = trio.Event()
        self.fail_prepare = 0
        self._end = trio.Event()
        self._error: BaseException | None = None

    async def prepare(self) -> None:
        self.preparing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_prepare:
            self.fail_prepare -= 1
            raise OSError(f"{self.name} cannot start")
        self.prepared += 1
        self._end, self._error = trio.Event(), None

    async def run(self) -> None:
        self.tasks.append(trio.lowlevel.current_task())
        await self._end.wait()
        if self._error is not None:
            raise self._error

    async def request_stop(self) -> None:
        self._end.set()

    def terminate(self, reason: str) -> None:
        pass

    def on_kill(self) -> None:
        pass

    def keep_prepared(self) -> None:
        self.kept += 1

    def crash(self) -> None:
        self._error = ValueError("boom")
        self._end.set()


@asynccontextmanager
async def supervising(sup: Supervisor) -> AsyncIterator[list[BaseException]]:
    raised: list[BaseException] = []

    async def supervise() -> None:
        try:
            await sup.run()
        except Exception as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervise)
        await sup.started.wait()
        yield raised
        nursery.cancel_scope.cancel()


async def test_a_plain_restart_runs_in_the_failed_childs_own_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A one_for_one restart without backoff runs the new incarnation in the same task,
    and counts as a restart like any other."""
    worker = Scripted("w")
    sup = Supervisor("sup", SupervisorSpec(max_restarts=5), [(worker, ChildSpec())])
    async with supervising(sup):
        worker.crash()
        await trio.sleep(0.001)
        worker.crash()
        await trio.sleep(0.001)
        assert len(worker.tasks) == 3
        assert worker.tasks[0] is worker.tasks[1] is worker.tasks[2]
        assert sup.which_children()[0].restarts == 2
        assert sup.which_children()[0].running


async def test_intensity_escalates_when_restarts_run_in_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The restart that exceeds the intensity is not made in place: the supervisor
    escalates."""
    worker = Scripted("w")
    sup = Supervisor("sup", SupervisorSpec(max_restarts=2, period=10), [(worker, ChildSpec())])
    async with supervising(sup) as raised:
        for _ in range(3):
            worker.crash()
            await trio.sleep(0.001)
    assert len(worker.tasks) == 3
    assert len(raised) == 1
    assert isinstance(raised[0], af.EscalationError)


async def test_a_stop_while_the_restart_prepares_keeps_the_prepared_module(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child stopped while its in-place restart prepares ends without running; what
    was prepared is kept for its next start, and it is restarting meanwhile."""
    worker = Scripted("w")
    sup = Supervisor("sup", SupervisorSpec(), [(worker, ChildSpec())])
    async with supervising(sup):
        worker.gate = trio.Event()
        worker.preparing = trio.Event()
        worker.crash()
        await worker.preparing.wait()
        assert restarting(sup, "w")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.terminate_child, "w")
            await trio.sleep(0.001)
            worker.gate.set()
        assert not restarting(sup, "w")
        assert worker.kept == 1
        assert len(worker.tasks) == 1
        assert not sup.which_children()[0].running


async def test_a_kill_while_the_restart_prepares_ends_the_child_unrun(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A brutal kill during an in-place restart cancels it: no new incarnation runs."""
    worker = Scripted("w")
    sup = Supervisor("sup", SupervisorSpec(), [(worker, ChildSpec(shutdown=0))])
    async with supervising(sup):
        worker.gate = trio.Event()
        worker.preparing = trio.Event()
        worker.crash()
        await worker.preparing.wait()
        await sup.terminate_child("w")
        assert len(worker.tasks) == 1
        assert worker.prepared == 1
        assert not sup.which_children()[0].running


async def test_a_failed_start_in_place_is_retried_by_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A prepare() that fails during an in-place restart is handed to the supervisor,
    which tries again (each try counted), as after any failed start."""
    worker = Scripted("w")
    sup = Supervisor("sup", SupervisorSpec(max_restarts=5), [(worker, ChildSpec())])
    async with supervising(sup):
        worker.fail_prepare = 2
        worker.crash()
        await trio.sleep(0.001)
        assert len(worker.tasks) == 2
        assert sup.which_children()[0].restarts == 3


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_group_strategies_restart_the_running_group_not_in_place(
    autojump_clock: trio.testing.MockClock, strategy: Strategy
) -> None:
    """A failure whose group has other running members restarts them all, each in a
    new task, as the strategy says."""
    first, second = Scripted("a"), Scripted("b")
    children = [(first, ChildSpec()), (second, ChildSpec())]
    sup = Supervisor("sup", SupervisorSpec(strategy=strategy), children)
    async with supervising(sup):
        first.crash()
        await trio.sleep(0.001)
        assert len(first.tasks) == 2
        assert len(second.tasks) == 2
        assert first.tasks[0] is not first.tasks[1]
        assert second.tasks[0] is not second.tasks[1]


async def test_a_backoff_restart_is_made_by_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With a backoff the child waits it out not running, in no task of its own."""
    worker = Scripted("w")
    backoff = af.Backoff(min=1.0, max=1.0, jitter=0.0)
    sup = Supervisor("sup", SupervisorSpec(backoff=backoff), [(worker, ChildSpec())])
    async with supervising(sup):
        worker.crash()
        await trio.sleep(0.5)
        assert not sup.which_children()[0].running
        assert restarting(sup, "w")
        await trio.sleep(1)
        assert len(worker.tasks) == 2
        assert worker.tasks[0] is not worker.tasks[1]


async def test_an_actor_stopped_while_its_restart_validates_runs_that_module_next() -> None:
    """An actor stopped while its in-place restart awaits validate() does not run the
    module built; the next start runs it (no third instance) and it handles the rest."""
    built: list[Any] = []
    handled: list[int] = []
    gate = trio.Event()
    validating = trio.Event()

    class Gated(af.Sink):
        inputs: ClassVar = {"in": int}

        def __init__(self) -> None:
            built.append(self)

        async def validate(self) -> None:
            if len(built) == 2:  # the in-place restart's
                validating.set()
                await gate.wait()

        def consume(self, data: int) -> None:
            if data == 1 and len(built) == 1:
                raise ValueError("poison")
            handled.append(data)

    go = trio.Event()

    class Numbers(af.Source):
        outputs: ClassVar = {"out": int}

        async def start(self) -> AsyncIterator[int]:
            await go.wait()  # the crash comes once the system has started
            for n in (0, 1, 2):
                yield n

    graph = af.Graph(name="gated")
    graph.add("src", Numbers)
    graph.add("sink", Gated)
    graph.chain("src", "sink")
    graph.supervisor(max_restarts=5)
    async with af.open_system(graph) as system:
        go.set()
        with trio.fail_after(10):
            await validating.wait()
        root = system.supervisor()
        hold(root)  # as a live stop does: the stopped child keeps it running
        async with trio.open_nursery() as nursery:
            nursery.start_soon(root.terminate_child, "sink")
            await trio.sleep(0)
            gate.set()
        assert len(built) == 2
        assert handled == [0]
        await root.restart_child("sink")
        release(root)
        with trio.fail_after(10):
            while system.status().actors["sink"].state is not af.ActorState.TERMINATED:
                await trio.sleep(0.001)
    assert len(built) == 2
    assert handled == [0, 2]  # 1 was dead-lettered


@settings(max_examples=40, deadline=None)
@given(
    max_restarts=st.integers(0, 4),
    crashes=st.integers(0, 6),
    strategy=st.sampled_from(list(Strategy)),
    bystander=st.booleans(),
)
def test_restarts_in_place_or_not_keep_the_intensity(
    max_restarts: int, crashes: int, strategy: Strategy, bystander: bool
) -> None:
    """However the restarts are made (in place, or by the supervisor for a group with
    another running member), the supervisor escalates exactly at the restart past
    ``max_restarts`` within the period, and every restart before it runs."""
    worker = Scripted("w")
    children = [(worker, ChildSpec())]
    if bystander:
        children.insert(0, (Scripted("b"), ChildSpec()))
    spec = SupervisorSpec(strategy=strategy, max_restarts=max_restarts, period=100)
    sup = Supervisor("sup", spec, children)

    async def scenario() -> list[BaseException]:
        async with supervising(sup) as raised:
            for _ in range(crashes):
                if raised:
                    break
                worker.crash()
                await trio.sleep(0.001)
        return raised

    raised = trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
    escalates = crashes > max_restarts
    assert len(raised) == int(escalates)
    assert len(worker.tasks) == min(crashes, max_restarts) + 1


async def test_a_crash_during_a_rest_for_one_restart_takes_its_later_members_along(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rest_for_one [a, b, c]: while the supervisor restarts b and c (b's prepare held),
    a crashes. a's restart must take b and c along, as the strategy says; a restart in
    place of a alone would leave b and c running the modules prepared before a's crash."""
    a, b, c = Scripted("a"), Scripted("b"), Scripted("c")
    spec = SupervisorSpec(strategy=Strategy.REST_FOR_ONE, max_restarts=10, period=10)
    sup = Supervisor("sup", spec, [(a, ChildSpec()), (b, ChildSpec()), (c, ChildSpec())])
    async with supervising(sup):
        b.gate, b.preparing = trio.Event(), trio.Event()
        b.crash()
        await b.preparing.wait()  # the supervisor's group restart is under way
        a.crash()
        await trio.sleep(0.001)
        b.gate.set()
        await trio.sleep(0.001)
        assert a.prepared == 2
        assert (b.prepared, c.prepared) == (3, 3)  # once for b's crash, once for a's
        assert all(child.running for child in sup.which_children())


async def test_no_restart_in_place_while_the_supervisor_shuts_down_by_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """auto_shutdown: a significant child ended and the supervisor stops the rest (c
    slow to stop); b crashes meanwhile. It is not restarted: the supervisor is ending."""
    a, b, c = Scripted("a"), Scripted("b"), Scripted("c")
    spec = SupervisorSpec(auto_shutdown=af.AutoShutdown.ANY_SIGNIFICANT, max_restarts=5)
    children = [
        (a, ChildSpec(restart=af.RestartType.TEMPORARY, significant=True)),
        (b, ChildSpec()),
        (c, ChildSpec()),
    ]
    sup = Supervisor("sup", spec, children)
    stopping = trio.Event()
    slow = c.request_stop

    async def slow_stop() -> None:
        stopping.set()
        await trio.sleep(1)
        await slow()

    c.request_stop = slow_stop  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run)
        await sup.started.wait()
        await a.request_stop()  # a ends normally: the shutdown begins
        await stopping.wait()
        b.crash()
        await trio.sleep(0.001)
        assert b.prepared == 1
    assert sup.which_children() == [] or all(child.restarts == 0 for child in sup.which_children())


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() broke")


@pytest.mark.parametrize("fuse", [True, False])
def test_an_error_whose_str_raises_still_dead_letters_its_item(fuse: bool) -> None:
    """The failure path describes the error with str(); a user's __str__ that raises
    must not lose the item nor blame another module: the item is dead-lettered, the
    module restarted, the rest delivered."""
    got: list[int] = []

    class Numbers(af.Source):
        outputs: ClassVar = {"out": int}

        def start(self) -> list[int]:
            return list(range(5))

    class Picky(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, data: int) -> int:
            if data == 2:
                raise Unprintable
            return data

    class Keep(af.Sink):
        inputs: ClassVar = {"in": int}

        def consume(self, data: int) -> None:
            got.append(data)

    graph = af.Graph(name="unprintable")
    graph.add("src", Numbers)
    graph.add("p", Picky)
    graph.add("sink", Keep)
    graph.chain("src", "p", "sink")
    status = af.run(graph, fuse=fuse)
    assert got == [0, 1, 3, 4]
    assert status.actors["p"].dead_lettered == 1
    assert status.actors["p"].restarts == 1
    assert status.actors["src"].restarts == 0


@pytest.mark.parametrize("fuse", [True, False])
def test_two_bad_items_on_two_inputs_are_each_dead_lettered(fuse: bool) -> None:
    """A module fails on an item that reaches it on both inputs: the two copies fail in
    turns, and each failure must not reset the other's count (they would take turns
    for ever, the module restarted until its supervisor gave up): each is tried
    ``attempts`` times, then dead-lettered; the rest is delivered."""
    got: list[tuple[int, str]] = []

    class Numbers(af.Source):
        outputs: ClassVar = {"out": Any}

        def start(self) -> list[tuple[int]]:
            return [(n,) for n in range(100)]

    class Pass(af.Processor):  # a new object per hop: the two copies differ
        inputs: ClassVar = {"in": Any}
        outputs: ClassVar = {"out": Any}

        def process(self, data: tuple[int]) -> tuple[int]:
            return (data[0],)

    class Join(af.Processor):
        inputs: ClassVar = {"x": Any, "y": Any}
        outputs: ClassVar = {"out": Any}

        def process(self, data: tuple[int], port: str) -> tuple[int, str]:
            if data[0] == 4:
                raise RuntimeError("poison")
            return data[0], port

    class Keep(af.Sink):
        inputs: ClassVar = {"in": Any}

        def consume(self, data: tuple[int, str]) -> None:
            got.append(data)

    graph = af.Graph(name="two-bad")
    graph.add("src", Numbers)
    graph.add("a", Pass)
    graph.add("b", Pass)
    graph.add("c", Pass)
    graph.add("d", Join)
    graph.add("k", Keep)
    graph.link("src", "a")
    graph.link("a", "b")
    graph.link("a", "c")
    graph.link("b", "d.x")
    graph.link("c", "d.y")
    graph.link("d", "k")
    graph.supervise("d", attempts=2)
    graph.supervisor(max_restarts=50, period=60)
    status = af.run(graph, fuse=fuse)
    assert status.actors["d"].dead_lettered == 2
    assert status.actors["d"].restarts == 4  # two attempts each
    assert sorted(got) == sorted((n, port) for n in range(100) if n != 4 for port in "xy")
