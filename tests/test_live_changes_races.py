"""Live changes that race each other, a graceful stop, or a restart: one change of a
system at a time, and a change that cannot be made leaves nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._snapshots import namespace
from tests.test_live_changes import Collect, Counter, CounterV2, counting_graph, send_all


class SlowValidate(Counter):
    """Its validate() takes a second: a change replacing a module with it is under way
    that long."""

    version = "slow"

    async def validate(self) -> None:
        await trio.sleep(1)


class SlowRefuse(Counter):
    async def validate(self) -> None:
        await trio.sleep(1)
        raise ValueError("no")


async def test_two_stops_of_one_module_one_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The second stop sees the first one's result: refused; the system still ends
    once the module is started and its input closed (no hold left behind)."""
    out: list[Any] = []
    errors: list[BaseException] = []
    async with af.open_system(counting_graph(out)) as system:

        async def stop() -> None:
            try:
                await system.stop_module("count")
            except af.ChangeError as error:
                errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            nursery.start_soon(stop)
        await system.start_module("count")
        await send_all(system, range(2))
        with trio.fail_after(5):
            await system.close("in")
            await system.wait()
    assert [str(error) for error in errors] == [
        "cannot stop module 'count': it is stopped already"
    ]
    assert [item for _, _, item in out] == [0, 1]


async def test_changes_made_at_once_happen_one_after_the_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A replace waits for a replace under way (which is refused), a remove for a
    replace: the graph and the actor agree after each."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        results: list[str] = []

        async def replace(module: type[Counter]) -> None:
            try:
                await system.replace("count", module)
                results.append(module.__name__)
            except af.ValidationError:
                results.append("refused")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(replace, SlowRefuse)
            await trio.sleep(0.1)
            nursery.start_soon(replace, CounterV2)
        spec = next(m for m in system.graph.modules if m.name == "count")
        assert results == ["refused", "CounterV2"]
        assert spec.factory is CounterV2
        assert type(system._actors["count"].module) is CounterV2
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replace, SlowValidate)
            await trio.sleep(0.1)
            await system.remove("count", drain=False)
        assert system.actors == ("in", "out")
        assert [m.name for m in system.graph.modules] == ["in", "out"]
        await system.add("count", Counter, links=[("in", "count")])  # the name is free
        await system.add("out2", Collect, config={"into": out}, links=[("count", "out2")])
        await send_all(system, range(1))
        await system.close("in")
    assert out == [("v1", 1, 0)]


async def test_a_replace_waits_for_a_start_under_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A start whose module validates slowly is not overtaken by a replace: the
    replacement runs, and the graph says so."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("in", af.Inlet)
    graph.add("count", SlowValidate)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    async with af.open_system(graph) as system:
        await system.stop_module("count")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.start_module, "count")
            await trio.sleep(0.1)
            nursery.start_soon(system.replace, "count", CounterV2)
        await send_all(system, range(1))
        await system.close("in")
    assert out == [("v2", 1, 0)]
    spec = next(m for m in system.graph.modules if m.name == "count")
    assert spec.factory is CounterV2


async def test_a_start_racing_a_graceful_stop_is_refused_and_the_system_drains(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once a stop began, a change is refused with ChangeError naming the module; the
    stop starts the stopped module, which drains what queued."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.stop_module("count")
        await send_all(system, range(3))
        await system.stop()
        with pytest.raises(af.ChangeError, match="start module 'count': the system is stopping"):
            await system.start_module("count")
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert [item for _, _, item in out] == [0, 1, 2]


class Ticks(af.Source):
    """Emits 1, 2, 3, ... every 0.01 s until stopped."""

    def __init__(self) -> None:
        self.n = 0

    async def start(self) -> None:
        while self.active:
            self.n += 1
            await self.emit(self.n)
            await trio.sleep(0.01)

    def snapshot(self) -> int:
        return self.n

    def restore(self, value: Any) -> None:
        self.n = value


class SlowTicks(Ticks):
    async def validate(self) -> None:
        await trio.sleep(1)


async def test_a_stop_waits_for_a_replace_under_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A replace under way when the stop is asked finishes first (the source is
    replaced, then stops); the system ends normally, nothing lost or repeated."""
    out: list[Any] = []
    graph = af.Graph("ticks")
    graph.add("src", Ticks)
    graph.add("out", Collect, into=out)
    graph.chain("src", "out")
    async with af.open_system(graph) as system:
        await trio.sleep(0.05)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.replace, "src", SlowTicks)
            await trio.sleep(0.1)
            await system.stop()
    assert system.state is af.SystemState.DONE
    assert type(system._actors["src"].module) is SlowTicks
    assert out == list(range(1, len(out) + 1))


class Crashy(Counter):
    def process(self, data: Any) -> tuple[str, int, Any]:
        if data == "boom":
            raise ValueError("boom")
        return super().process(data)


@pytest.mark.parametrize("change", ["replace", "remove", "stop_module"])
async def test_a_module_waiting_out_its_restart_backoff_is_not_changed(
    autojump_clock: trio.testing.MockClock, change: str
) -> None:
    """A change while the module waits to be restarted after a crash is refused with
    nothing changed: it restarts as planned and handles what waits for it."""
    out: list[Any] = []
    backoff = af.Backoff(min=1.0, max=1.0, jitter=0)
    graph = af.Graph("bo", root=af.SupervisorSpec(max_restarts=5, backoff=backoff))
    graph.add("in", af.Inlet)
    graph.add("count", Crashy)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    async with af.open_system(graph) as system:
        await system.send("in", "boom")
        await system.send("in", 2)
        await trio.sleep(0.2)
        with pytest.raises(af.ChangeError, match="'count': it is waiting to be restarted"):
            if change == "replace":
                await system.replace("count", CounterV2)
            elif change == "remove":
                await system.remove("count", drain=False)
            else:
                await system.stop_module("count")
        assert system.status().links["in.out -> count.in"].returned == 0
        spec = next(m for m in system.graph.modules if m.name == "count")
        assert spec.factory is Crashy
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert out == [("v1", 1, 2)]


async def test_a_module_added_under_a_removed_ones_name_starts_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove() deletes the module's snapshot from the store: its successor of the same
    name does not restore the removed one's state."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(3))
        while len(out) < 3:  # the inlet has emitted them all
            await trio.sleep(0.01)
        await system.remove("count")
        assert await system.store.names(namespace(system.graph.name)) == []
        await system.add("count", Counter, links=[("in", "count")])
        await system.add("tap", Collect, config={"into": out}, links=[("count", "tap")])
        await send_all(system, range(3, 4))
        await system.close("in")
    assert out == [("v1", 1, 0), ("v1", 2, 1), ("v1", 3, 2), ("v1", 1, 3)]


class NewSchema(Counter):
    version = "v2"

    def restore(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"expected the v2 state dict, got {value!r}")
        self.count = value["count"]


@pytest.mark.parametrize("stopped", [False, True])
async def test_a_replacement_whose_restore_refuses_the_state_is_rolled_back(
    autojump_clock: trio.testing.MockClock, stopped: bool
) -> None:
    """replace() raises ChangeError, and the old class goes on with its state and its
    mailbox: the system does not fail."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await send_all(system, range(2))
        if stopped:
            await system.stop_module("count")
        with pytest.raises(af.ChangeError, match=r"restore\(\) refused the state .*TypeError"):
            await system.replace("count", NewSchema)
        spec = next(m for m in system.graph.modules if m.name == "count")
        assert spec.factory is Counter
        await send_all(system, range(2, 4))
        if stopped:
            await system.start_module("count")
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert out == [("v1", n + 1, n) for n in range(4)]


class Plain(af.Processor):
    """A new version without state, that saves often if it had any."""

    snapshot_interval = 1.0

    def process(self, data: Any) -> Any:
        return ("plain", data)


class Often(Counter):
    snapshot_interval = 1.0


async def test_a_replacement_takes_its_own_snapshot_settings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A class without snapshot() neither journals nor saves over the old one's state;
    a class with its own snapshot_interval saves at that interval."""
    out: list[Any] = []
    settings = af.Settings(snapshot_interval=float("inf"))
    async with af.open_system(counting_graph(out), settings=settings) as system:
        key = (namespace(system.graph.name), "count")
        await send_all(system, range(3))
        while len(out) < 3:
            await trio.sleep(0.01)
        await system.replace("count", Plain)
        assert system._actors["count"].incarnation.journal is None  # type: ignore[union-attr]
        await send_all(system, range(3, 5))
        await trio.sleep(5)
        assert await system.store.get(*key) == 3
        await system.replace("count", Often)
        before = system.status().actors["count"].snapshots
        await trio.sleep(10.5)
        saves = system.status().actors["count"].snapshots - before
        await send_all(system, range(5, 6))
        await system.close("in")
    assert 10 <= saves <= 12
    assert out[-1] == ("v1", 4, 5)


async def test_a_stopped_module_stays_stopped_when_its_group_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A restart of the group (its supervisor given up and restarted by the root) does
    not start a stopped member: it handles nothing until start_module, then all."""
    out: list[Any] = []
    graph = af.Graph("gr", root=af.SupervisorSpec(max_restarts=5))
    graph.add("in", af.Inlet)
    graph.add("crashy", Crashy)
    graph.add("count", Counter)
    graph.add("out", Collect, into=out)
    graph.add("o2", Collect, into=[])
    graph.link("in", "crashy")
    graph.link("crashy", "o2")
    graph.link("in", "count")
    graph.link("count", "out")
    graph.group("G", ["crashy", "count"], restart="permanent", max_restarts=0)
    async with af.open_system(graph) as system:
        await system.stop_module("count")
        await system.send("in", "boom")  # G gives up; the root restarts G
        await trio.sleep(1)
        await system.send("in", 1)
        await trio.sleep(1)
        assert system.status().actors["count"].state is af.ActorState.STOPPED
        assert out == []
        await system.start_module("count")
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert out == [("v1", 1, "boom"), ("v1", 2, 1)]


@pytest.mark.parametrize(
    "request_", [("count",), ("count", "x", 3), "count->x", ("a", "b", {}, 1)]
)
async def test_a_malformed_link_request_is_a_graph_error(
    autojump_clock: trio.testing.MockClock, request_: Any
) -> None:
    """A link of an added module of the wrong shape is refused as at start-up (a
    GraphError naming the module), not with a raw unpacking error; nothing changes."""
    async with af.open_system(counting_graph([])) as system:
        with pytest.raises(af.GraphError, match=r"'x': link .* is not \(source, target\)"):
            await system.add("x", Collect, config={"into": []}, links=[request_])
        assert system.actors == ("in", "count", "out")
        with pytest.raises(TypeError, match="drain must be True or False, got 'no'"):
            await system.remove("out", drain="no")  # type: ignore[arg-type]
        assert system.actors == ("in", "count", "out")
        await system.close("in")


async def test_a_stopped_inlet_hands_on_what_it_holds_at_a_graceful_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What the host sent a stopped inlet is emitted and handled at a graceful stop,
    as a running inlet's is, not dropped."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.stop_module("in")
        await send_all(system, range(3))
        await system.stop()
    assert system.state is af.SystemState.DONE
    assert [item for _, _, item in out] == [0, 1, 2]
    assert system.status().actors["in"].dropped == {}


class FlakySnap(Counter):
    def snapshot(self) -> int:
        if self.count >= 3:
            raise RuntimeError("cannot snapshot now")
        return self.count


async def test_a_replaced_module_whose_end_snapshot_fails_is_replayed_and_says_so(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """Without its end snapshot the new version restores the last one and handles again
    what the old one handled since (as after a crash: the state stays right), and the
    log says how many items that was."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("in", af.Inlet)
    graph.add("count", FlakySnap)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    async with af.open_system(graph) as system:
        await send_all(system, range(3))
        while len(out) < 3:
            await trio.sleep(0.01)
        await system.replace("count", CounterV2)
        await system.close("in")
    again = [e for e in logs if e["event"] == "module.replaced_again"]
    assert [(e["module"], e["items"]) for e in again] == [("count", 3)]
    assert out[3:] == [("v2", 1, 0), ("v2", 2, 1), ("v2", 3, 2)]


async def test_a_group_member_removed_and_added_again_can_be_changed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """remove() takes the module out of its group too: the one added later under its
    name (a child of the root) can be stopped, replaced and started."""
    graph = counting_graph([])
    graph.group("G", ["count", "out"])
    async with af.open_system(graph) as system:
        await system.remove("count")
        assert [group.members for group in system.graph.groups] == [("out",)]
        await system.add("count", Counter, links=[("in", "count")])
        await system.stop_module("count")
        await system.replace("count", CounterV2)
        await system.start_module("count")
        assert "count" in [child.name for child in system.supervisor().which_children()]
        assert type(system._actors["count"].module) is CounterV2
        await system.close("in")
    assert system.state is af.SystemState.DONE


class SlowCleanup(Collect):
    async def cleanup(self) -> None:
        await trio.sleep(2)


async def test_a_link_into_a_module_that_is_ending_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A consumer whose last input was removed ends: an add linking into it while it
    ends (here: its cleanup() takes a while) is refused (it used to be accepted, and
    what flowed into it was dropped)."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("in", af.Inlet)
    graph.add("count", Counter)
    graph.add("out", SlowCleanup, into=out)
    graph.chain("in", "count", "out")
    async with af.open_system(graph) as system:
        await system.remove("count")
        while system.status().actors["out"].state is not af.ActorState.ZOMBIE:
            await trio.sleep(0.01)
        with pytest.raises(af.ChangeError, match="module 'out': it has ended"):
            await system.add("count", CounterV2, links=[("in", "count"), ("count", "out")])
        assert system.actors == ("in", "out")
        await system.close("in")
    assert system.state is af.SystemState.DONE


@pytest.mark.parametrize("drain", [True, False])
async def test_removing_a_significant_module_does_not_shut_the_system_down(
    autojump_clock: trio.testing.MockClock, drain: bool
) -> None:
    """A removal is a change, not the end auto_shutdown waits for: drained or not, the
    rest runs on."""
    side: list[Any] = []
    graph = af.Graph("sg", root=af.SupervisorSpec(auto_shutdown="any_significant"))
    graph.add("in", af.Inlet)
    graph.add("count", Counter)
    graph.add("out", Collect, into=[])
    graph.chain("in", "count", "out")
    graph.add("side", Collect, into=side)
    graph.link("in", "side")
    graph.supervise("count", restart="transient", significant=True)
    async with af.open_system(graph) as system:
        await system.remove("count", drain=drain)
        await trio.sleep(1)
        assert system.state is af.SystemState.RUNNING
        await system.send("in", 1)
        await system.close("in")
    assert side == [1]


async def test_changes_leave_the_callers_graph_as_declared(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The system changes its own copy of the graph: the caller's can run again."""
    graph = counting_graph([])
    async with af.open_system(graph) as system:
        await system.remove("count")
        await system.close("in")
    assert [m.name for m in graph.modules] == ["in", "count", "out"]
    assert len(graph.links) == 2
    async with af.open_system(graph) as system:
        await system.close("in")
    assert system.state is af.SystemState.DONE


class SlowSnapshot(Counter):
    """Its snapshot() takes a second: stopping or replacing it is under way that long."""

    async def snapshot(self) -> int:  # type: ignore[override]
        await trio.sleep(1)
        return self.count


@pytest.mark.parametrize("change", ["stop", "replace"])
async def test_a_change_whose_caller_is_cancelled_half_way_is_made_whole(
    autojump_clock: trio.testing.MockClock, change: str
) -> None:
    """A caller's timeout that ends while the old incarnation saves its state does not
    leave the module ended for good: the stop (or the swap) is made whole, and the
    module goes on counting from where it was."""
    out: list[Any] = []
    graph = af.Graph(name="cancelled")
    graph.add("in", af.Inlet)
    graph.add("count", SlowSnapshot)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    async with af.open_system(graph) as system:
        await send_all(system, range(3))
        await trio.sleep(5)
        with trio.move_on_after(0.5) as waited:
            if change == "stop":
                await system.stop_module("count")
            else:
                await system.replace("count", CounterV2)
        assert not waited.cancelled_caught  # shielded: the caller waited it out
        if change == "stop":
            assert system.status().actors["count"].state is af.ActorState.STOPPED
            await system.start_module("count")
        await send_all(system, range(3, 5))
        with trio.fail_after(30):
            await system.close("in")
            await system.wait()
    assert [(count, item) for _, count, item in out] == [(n + 1, n) for n in range(5)]


async def test_a_module_sending_to_a_stopped_one_is_not_removed_with_drain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Draining into a stopped module would wait for ever and hold every other change
    (the start that would free it included): refused, nothing changed."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        await system.stop_module("out")
        with pytest.raises(af.ChangeError, match="sends to stopped module 'out'"):
            await system.remove("count")
        await system.start_module("out")
        await send_all(system, range(2))
        with trio.fail_after(30):
            await system.close("in")
            await system.wait()
    assert [item for _, _, item in out] == [0, 1]
