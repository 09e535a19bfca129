"""A live change never holds a graceful stop past ``stop_timeout``, and one awaited from
inside a hook it would wait for is refused at once instead of waiting to be killed."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._snapshots import namespace
from tests.test_live_changes import Collect, Counter, CounterV2, send_all
from tests.test_live_changes_faults import counting, handled

STOP = 5.0  # the default stop_timeout


class Hangs(Counter):
    """Its restore() never returns."""

    async def restore(self, value: Any) -> None:
        await trio.sleep_forever()


class Stalls(af.MemoryStore):
    """Once ``stall`` is set, its reads (``"get"``) or deletes (``"delete"``) never
    return."""

    stall: str = ""

    async def get(self, module: str, name: str, default: Any = ...) -> Any:
        if self.stall == "get":
            await trio.sleep_forever()
        return await super().get(module, name, default)

    async def delete(self, module: str, name: str) -> None:
        if self.stall == "delete":
            await trio.sleep_forever()
        await super().delete(module, name)


@pytest.mark.parametrize("hang", ["restore", "store read"])
async def test_a_replace_that_never_finishes_is_given_up_at_a_graceful_stop(
    autojump_clock: trio.testing.MockClock, hang: str
) -> None:
    """The new version's restore() (or the store's read of the state) never returns: a
    graceful stop gives the replace stop_timeout seconds, then it is rolled back with
    ChangeError, and the system ends without a drain timeout."""
    out: list[Any] = []
    store = Stalls()
    errors: list[str] = []
    async with af.open_system(counting(out), store=store) as system:
        await send_all(system, range(2))
        await handled(out, 2)

        async def replace() -> None:
            try:
                await system.replace("count", Hangs if hang == "restore" else CounterV2)
            except af.ChangeError as error:
                errors.append(str(error))

        store.stall = "get" if hang == "store read" else ""
        with trio.fail_after(30):  # without the bound: until a drain timeout, if any
            async with trio.open_nursery() as nursery:
                nursery.start_soon(replace)
                await trio.sleep(1)
                assert system.changes.lock.locked()  # it hangs
                asked = trio.current_time()
                await system.stop()
        given_up = trio.current_time() - asked
    assert system.state is af.SystemState.DONE
    assert given_up <= STOP + 0.1
    assert len(errors) == 1
    assert "'count' by" in errors[0]
    assert "had not answered 5 s (stop_timeout) after the system's stop" in errors[0]
    assert [count for _, count, _ in out] == [1, 2]
    spec = next(m for m in system.graph.modules if m.name == "count")
    assert spec.factory is Counter


async def test_a_remove_whose_snapshot_delete_never_returns_does_not_hold_a_stop(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """The module is removed; the delete is given up stop_timeout seconds after the stop
    was asked (said, and the name's snapshot never restored by a later add)."""
    store = Stalls()
    async with af.open_system(counting([]), store=store) as system:
        store.stall = "delete"
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(system.remove, "count")
                await trio.sleep(1)
                asked = trio.current_time()
                await system.stop()
        given_up = trio.current_time() - asked
        store.stall = ""
    assert system.state is af.SystemState.DONE
    assert given_up <= STOP + 0.1
    assert "count" not in system.status().actors
    assert system.changes.tombstones == {"count"}
    assert any(e["event"] == "module.snapshot_kept" for e in logs)
    assert await store.get(namespace("faults"), "count") == 0


class SelfChanging(af.Processor):
    """On ``"swap"`` it replaces (or stops, or removes) itself from its own process().
    It keeps no state, so it may be fused into its producer."""

    system: ClassVar[af.System]
    change: ClassVar[str]
    refused: ClassVar[list[str]] = []

    async def process(self, data: Any) -> tuple[str, int, Any]:
        if data == "swap":
            try:
                if self.change == "replace":
                    await self.system.replace(self.name, CounterV2)
                elif self.change == "stop_module":
                    await self.system.stop_module(self.name)
                else:
                    await self.system.remove(self.name)
            except af.ChangeError as error:
                SelfChanging.refused.append(str(error))
        return ("v1", data)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("change", ["replace", "stop_module", "remove"])
async def test_a_change_of_a_module_from_its_own_hook_is_refused_at_once(
    autojump_clock: trio.testing.MockClock, change: str, workers: int
) -> None:
    """It would wait for the hook that awaits it (until the module's shutdown timeout
    killed it): refused with ChangeError at once, and the module runs on; so it is from
    a worker task of its link."""
    out: list[Any] = []
    SelfChanging.change, SelfChanging.refused = change, []
    graph = af.Graph("selfish")
    graph.add("in", af.Inlet)
    graph.add("count", SelfChanging)
    graph.add("out", Collect, into=out)
    graph.link("in", "count", workers=workers)
    graph.link("count", "out")
    async with af.open_system(graph) as system:
        SelfChanging.system = system
        started = trio.current_time()
        await send_all(system, range(1))
        await system.send("in", "swap")
        await send_all(system, range(2, 3))
        await handled(out, 3)
        took = trio.current_time() - started
        await system.close("in")
    assert took < 1
    assert len(SelfChanging.refused) == 1
    assert f"cannot {change} module 'count' from inside its own hook" in SelfChanging.refused[0]
    assert sorted(map(str, out)) == sorted(map(str, [("v1", 0), ("v1", "swap"), ("v1", 2)]))


class Stuck(Collect):
    """Its consume() never returns once it has an item."""

    async def consume(self, data: Any) -> None:
        await trio.sleep_forever()


async def test_a_remove_whose_drain_never_ends_is_given_up_at_a_graceful_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The removed module never finishes its item: stop_timeout seconds after a
    graceful stop was asked the remove raises ChangeError saying it was given up, and
    the stop goes on (the module is cancelled with the system by its drain timeout)."""
    errors: list[str] = []
    graph = af.Graph("stuck")
    graph.add("in", af.Inlet)
    graph.add("sink", Stuck, into=[])
    graph.link("in", "sink")
    async with af.open_system(graph) as system:
        await system.send("in", 1)
        while system.status().actors["sink"].received < 1:
            await trio.sleep(0.01)

        async def remove() -> None:
            try:
                await system.remove("sink")
            except af.ChangeError as error:
                errors.append(str(error))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(remove)
                await trio.sleep(1)
                asked = trio.current_time()
                await system.stop(drain_timeout=20)
            given_up = trio.current_time() - asked
    assert given_up <= STOP + 0.1
    assert errors == [
        "remove('sink') was given up: the system is stopping, and the change had not "
        "finished 5 s (stop_timeout) after the stop was asked"
    ]


async def test_a_drained_remove_of_an_upstream_module_from_a_hook_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sink's hook awaits ``remove(upstream, drain=True)`` while the upstream module
    waits for room on its link into that sink: the drain would wait for the hook, the
    hook for the drain. Refused at once with ChangeError; with ``drain=False`` it is
    made, and every item is delivered or handed back."""
    system_of: list[Any] = []
    outcome: list[str] = []
    got: list[int] = []

    class Pass(af.Processor):
        def process(self, data: int) -> int:
            return data

    class Sink(af.Sink):
        async def consume(self, data: int) -> None:
            got.append(data)
            if len(got) == 3:
                try:
                    await system_of[0].remove("mid", drain=True)
                except af.ChangeError as error:
                    outcome.append(str(error))
                returned = await system_of[0].remove("mid", drain=False)
                outcome.append(f"returned {len(returned)}")

    graph = af.Graph("upstream")
    graph.add("in", af.Inlet)
    graph.add("mid", Pass)
    graph.add("out", Sink)
    graph.link("in", "mid", buffer=4)
    graph.link("mid", "out", buffer=1)
    with trio.fail_after(30):
        async with af.open_system(graph) as system:
            system_of.append(system)
            for n in range(8):
                await system.send("in", n)
            while len(outcome) < 2:
                await trio.sleep(0.01)
            await system.close("in")
    assert "with drain=True from inside the hook of 'out'" in outcome[0]
    assert outcome[1].startswith("returned")
    status = system.status()
    assert "mid" in status.removed
