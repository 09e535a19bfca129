"""Live changes when the store fails or hangs: a replacement or a stop never loses
state nor replays it on top of itself, and the caller learns the truth."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._snapshots import namespace
from tests.test_live_changes import Collect, Counter, CounterV2, send_all


class Faulty(af.MemoryStore):
    """A store whose next ``put_fails`` writes raise (after being applied, a reply
    lost, if ``applied``), whose next ``get_fails`` reads raise and whose next
    ``delete_fails`` deletes raise."""

    def __init__(self) -> None:
        super().__init__()
        self.put_fails = self.get_fails = self.delete_fails = 0
        self.applied = True

    async def put(self, module: str, name: str, value: Any) -> None:
        if not self.put_fails:
            await super().put(module, name, value)
            return
        self.put_fails -= 1
        if self.applied:
            await super().put(module, name, value)
        raise TimeoutError("no reply from the store")

    async def get(self, module: str, name: str, default: Any = ...) -> Any:
        if self.get_fails:
            self.get_fails -= 1
            raise TimeoutError("the store is down")
        return await super().get(module, name, default)

    async def delete(self, module: str, name: str) -> None:
        if self.delete_fails:
            self.delete_fails -= 1
            raise TimeoutError("the store is down")
        await super().delete(module, name)


NEVER = af.Settings(snapshot_interval=math.inf)


def counting(out: list[Any], name: str = "faults") -> af.Graph:
    graph = af.Graph(name)
    graph.add("in", af.Inlet)
    graph.add("count", Counter)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    return graph


async def handled(out: list[Any], count: int) -> None:
    while len(out) < count:
        await trio.sleep(0.01)


async def test_a_replace_after_an_end_save_applied_but_failed_does_not_replay_it(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """The old version's end save is applied by the store, which then raises: the new
    version restores it and goes on from there, handling nothing again (the journal
    does not replay on top of a state that holds it), and says nothing is replayed."""
    out: list[Any] = []
    store = Faulty()
    async with af.open_system(counting(out), store=store, settings=NEVER) as system:
        await send_all(system, range(3))
        await handled(out, 3)
        store.put_fails = 1
        await system.replace("count", CounterV2)
        await send_all(system, range(3, 5))
        await system.close("in")
    assert out[3:] == [("v2", 4, 3), ("v2", 5, 4)]
    assert not [e for e in logs if e["event"] == "module.replaced_again"]


class Loop(af.Processor):
    """On a cycle: each ``n`` comes back as ``n - 1`` until 0; its state is every item
    it has seen."""

    version: ClassVar[str] = "v1"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, data: int) -> int | None:
        self.seen.append(data)
        return data - 1 if data > 0 else None

    def snapshot(self) -> list[int]:
        return list(self.seen)

    def restore(self, value: list[int]) -> None:
        self.seen = list(value)


class LoopV2(Loop):
    version = "v2"


def looping() -> af.Graph:
    graph = af.Graph("looping")
    graph.add("in", af.Inlet)
    graph.add("loop", Loop)
    graph.link("in", "loop")
    graph.link("loop", "loop", feedback=True)
    return graph


@pytest.mark.parametrize("applied", [False, True])
@pytest.mark.parametrize("change", ["stop", "replace"])
async def test_a_module_on_a_cycle_whose_end_save_fails_keeps_its_state(
    autojump_clock: trio.testing.MockClock, change: str, applied: bool
) -> None:
    """It keeps no journal to replay: the next incarnation (a start, a replacement)
    restores the state whose write failed, kept in memory, so nothing it handled is
    lost."""
    store = Faulty()
    store.applied = applied
    async with af.open_system(looping(), store=store, settings=NEVER) as system:
        await system.send("in", 2)
        while system.status().actors["loop"].received < 3:
            await trio.sleep(0.01)
        store.put_fails = 1
        if change == "stop":
            await system.stop_module("loop")
            await system.start_module("loop")
        else:
            await system.replace("loop", LoopV2)
        await system.send("in", 1)
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert await store.get(namespace("looping"), "loop") == [2, 1, 0, 1, 0]


async def test_a_replace_whose_store_cannot_read_the_state_is_rolled_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The store fails to give the new version the old one's state: replace() raises
    ChangeError saying so (not the store's own error, as if nothing had happened), and
    the old class runs on with its state and mailbox."""
    out: list[Any] = []
    store = Faulty()
    async with af.open_system(counting(out), store=store, settings=NEVER) as system:
        await send_all(system, range(2))
        await handled(out, 2)
        store.get_fails = 1
        with pytest.raises(af.ChangeError, match=r"the store failed to read .*; the old one runs"):
            await system.replace("count", CounterV2)
        spec = next(m for m in system.graph.modules if m.name == "count")
        assert spec.factory is Counter
        await send_all(system, range(2, 4))
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert out == [("v1", n + 1, n) for n in range(4)]


class Picky(Counter):
    """Its validate() refuses the second time it is asked (a check failing a moment)."""

    asked = 0

    def validate(self) -> None:
        Picky.asked += 1
        if Picky.asked == 2:
            raise ValueError("the database is down now")


class Refusing(CounterV2):
    def validate(self) -> None:
        pass

    def restore(self, value: Any) -> None:
        raise ValueError("new schema")


async def test_a_rollback_whose_old_module_cannot_be_built_again_is_a_change_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The new restore() refuses the state and the old class's validate() now refuses
    too: replace() raises ChangeError saying both (not the old one's ValidationError, as
    if the new one had been refused), and the module is started again as after a
    failure: the old class, its state and mailbox kept."""
    Picky.asked = 0
    out: list[Any] = []
    graph = af.Graph("picky")
    graph.add("in", af.Inlet)
    graph.add("count", Picky)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    graph.supervisor(max_restarts=1000, period=1)
    async with af.open_system(graph, store=af.MemoryStore(), settings=NEVER) as system:
        await send_all(system, range(2))
        await handled(out, 2)
        with pytest.raises(af.ChangeError, match=r"could not be built again .*database is down"):
            await system.replace("count", Refusing)
        spec = next(m for m in system.graph.modules if m.name == "count")
        assert spec.factory is Picky
        await send_all(system, range(2, 4))
        await system.close("in")
    assert system.state is af.SystemState.DONE
    assert out == [("v1", n + 1, n) for n in range(4)]  # its state carried


@pytest.mark.parametrize("failures", [1, 2])
async def test_a_module_added_under_a_removed_ones_name_never_restores_its_state(
    autojump_clock: trio.testing.MockClock, failures: int
) -> None:
    """The store fails to delete the removed module's snapshot: the add under its name
    deletes it first; if that fails too, the add is refused (ChangeError, nothing
    added) and a later one starts afresh."""
    out: list[Any] = []
    store = Faulty()
    async with af.open_system(counting(out), store=store, settings=NEVER) as system:
        await send_all(system, range(3))
        await handled(out, 3)
        store.delete_fails = failures
        await system.remove("count")
        assert await store.get(namespace("faults"), "count") == 3  # kept: not deleted
        if failures == 2:
            with pytest.raises(af.ChangeError, match="'count': the snapshot of the module"):
                await system.add("count", Counter, links=[("in", "count")])
            assert system.actors == ("in", "out")
        await system.add("count", Counter, links=[("in", "count")])
        await system.add("tap", Collect, config={"into": out}, links=[("count", "tap")])
        await send_all(system, range(3, 4))
        await system.close("in")
    assert out[3:] == [("v1", 1, 3)]


class Stateless(af.Processor):
    def process(self, data: Any) -> Any:
        return ("stateless", data)


async def test_a_removed_module_without_state_leaves_no_earlier_versions_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A module replaced by a version without snapshot() keeps the old state stored
    (for a later version); removing it deletes that too, so a stateful module added
    under its name starts afresh."""
    out: list[Any] = []
    async with af.open_system(counting(out), settings=NEVER) as system:
        await send_all(system, range(2))
        await handled(out, 2)
        await system.replace("count", Stateless)
        await system.remove("count")
        await system.add("count", Counter, links=[("in", "count")])
        await system.add("tap", Collect, config={"into": out}, links=[("count", "tap")])
        await send_all(system, range(2, 3))
        await system.close("in")
    assert out[2:] == [("v1", 1, 2)]


@pytest.mark.parametrize("host", ["trio", "asyncio"])
def test_from_either_host_a_failed_replace_is_a_change_error_and_removals_stay_counted(
    host: str,
) -> None:
    """From asyncio (AioSystem) as from trio: a replace the store cannot give the state
    to is a ChangeError with the old class running on, and a removed module's counts
    stay in status().removed."""
    import asyncio

    from actorflow import aio

    out: list[Any] = []

    async def scenario(system: Any, store: Faulty) -> tuple[str, af.SystemStatus]:
        for n in range(2):
            await system.send("in", n)
        while (await system.status()).actors["count"].received < 2:
            await system.status()
        store.get_fails = 1
        try:
            await system.replace("count", CounterV2)
        except af.ChangeError as error:
            refused = str(error)
        await system.remove("count")
        status = await system.status()
        await system.close("in")
        return refused, status

    async def on_trio() -> tuple[str, af.SystemStatus]:
        store = Faulty()
        async with af.open_system(counting(out), store=store, settings=NEVER) as system:

            class Handle:
                send, close, replace, remove = (
                    system.send,
                    system.close,
                    system.replace,
                    system.remove,
                )

                async def status(self) -> af.SystemStatus:
                    await trio.lowlevel.checkpoint()
                    return system.status()

            return await scenario(Handle(), store)

    async def on_asyncio() -> tuple[str, af.SystemStatus]:
        store = Faulty()
        async with aio.open_system(counting(out), store=store, settings=NEVER) as system:
            return await scenario(system, store)

    refused, status = trio.run(on_trio) if host == "trio" else asyncio.run(on_asyncio())
    assert "the store failed to read" in refused
    assert status.removed["count"].received == 2
    assert out == [("v1", 1, 0), ("v1", 2, 1)]


class Marks(af.Processor):
    """Marks each dict it is given (in place unless ``copies``) and keeps the marks it
    saw; raises once on ``{"boom": True}``."""

    crashed: ClassVar[bool] = False

    def __init__(self, copies: bool) -> None:
        self.copies, self.seen = copies, []

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        if item.get("boom") and not Marks.crashed:
            Marks.crashed = True
            raise RuntimeError("boom")
        if self.copies:
            item = dict(item)
        item["marks"] = item.get("marks", 0) + 1
        self.seen.append(item["marks"])
        return item

    def snapshot(self) -> list[int]:
        return list(self.seen)

    def restore(self, value: list[int]) -> None:
        self.seen = list(value)


@pytest.mark.parametrize("copies", [False, True])
async def test_a_replayed_item_is_the_object_first_handled_so_copy_before_changing_it(
    autojump_clock: trio.testing.MockClock, copies: bool
) -> None:
    """The journal keeps the items themselves (copying each would cost every stateful
    module): a hook that changes its item in place gets it back changed when it is
    handled again after a crash; one that copies first counts each item once (the rule
    docs/howto/live-changes.md and state.md give)."""
    Marks.crashed = False
    graph = af.Graph("marks")
    graph.add("in", af.Inlet)
    graph.add("marks", Marks, copies=copies)
    graph.add("out", Collect, into=[])
    graph.chain("in", "marks", "out")
    store = af.MemoryStore()
    async with af.open_system(graph, store=store, settings=NEVER) as system:
        for item in ({"n": 0}, {"n": 1}, {"boom": True}):
            await system.send("in", item)
        await system.close("in")
    assert system.status().actors["marks"].restarts == 1
    seen = await store.get(namespace("marks"), "marks")
    assert seen == ([1, 1] if copies else [2, 2])  # the boom item is dead-lettered
