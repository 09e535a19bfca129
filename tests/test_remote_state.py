"""A module with ``snapshot()`` fed by a remote link: its consumer holds the
acknowledgements of the entries it handled until a snapshot that covers them is stored,
so that after a crash the state is that of the last snapshot and the entries handled
since are handled again (from what the consumer holds, or, after the process died, from
Redis's pending entries), each item's effect in the state once. In one process here,
with a real Redis; processes killed with SIGKILL are in ``test_remote_state_processes``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, ClassVar

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer

import actorflow as af
from actorflow._redis import connect
from actorflow._redis._consumer import hold_limit
from actorflow._snapshots import namespace
from actorflow.testing import Feed, run_graph


class Tracker(af.Sink):
    """Keeps every item it handled, in order, in its state; changes the state *then*
    raises on the items ``crashes`` says (``item -> how many handlings fail``)."""

    crashes: ClassVar[dict[int, int]] = {}

    def __init__(self) -> None:
        self.seen: list[int] = []

    def consume(self, data: int) -> None:
        self.seen.append(data)
        left = Tracker.crashes.get(data, 0)
        if left:
            Tracker.crashes[data] = left - 1
            raise RuntimeError(f"crash on {data}")

    def snapshot(self) -> list[int]:
        return list(self.seen)

    def restore(self, value: list[int]) -> None:
        self.seen = list(value)


class Stateless(af.Sink):
    def consume(self, data: int) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_crashes() -> None:
    Tracker.crashes = {}


def remote_graph(
    items: list[int], module: type[af.Sink] = Tracker, *, batch: int = 4, buffer: int = 16
) -> af.Graph:
    """feed -> tracker over a remote link of its own stream (a fresh graph name)."""
    graph = af.Graph(f"rstate-{uuid.uuid4().hex[:8]}")
    graph.add("feed", Feed, items=items)
    graph.add("tracker", module)
    graph.link("feed", "tracker", buffer=buffer, remote=af.Remote(batch=batch, claim_idle=2))
    graph.supervise("tracker", restart="permanent", attempts=3)
    graph.supervisor(max_restarts=1000)
    return graph


def final(store: af.Store, graph: af.Graph) -> Any:
    return trio.run(store.get, namespace(graph.name), "tracker", None)


def test_an_in_process_crash_of_a_remote_fed_module_counts_each_item_once(
    redis_server: RedisServer,
) -> None:
    """The module changes its state then raises: restored from its last snapshot, it
    handles again what it handled since (the entries it holds, unacknowledged), then
    the item it failed on: each item is in the state once, in order."""
    Tracker.crashes = {5: 1, 13: 2, 30: 1}
    store = af.MemoryStore()
    graph = remote_graph(list(range(40)))
    settings_ = af.Settings(remote_url=redis_server.url)
    result = run_graph(graph, store=store, settings=settings_, virtual_time=False)
    assert result.error is None
    assert result.status.actors["tracker"].restarts == 4
    assert final(store, graph) == list(range(40))


async def _until(condition: Any, seconds: float = 20) -> None:
    """Wait (polling, with a deadline) until ``await condition()`` is true."""
    with trio.fail_after(seconds):
        while not await condition():
            await trio.sleep(0.01)


async def _entries(url: str, stream: str) -> list[tuple[bytes, int]]:
    """The entries left in ``stream`` (acknowledged ones are deleted) with their
    delivery counts."""
    async with connect(url) as client:
        pending = await client.xpending(stream, "tracker", start="-", end="+", count=1000)
        return [(entry.identifier, entry.delivered) for entry in pending]


@pytest.mark.parametrize("stateful", [False, True])
async def test_only_a_module_with_snapshot_holds_its_acknowledgements(
    redis_server: RedisServer, stateful: bool
) -> None:
    """A module without ``snapshot()`` has each entry acknowledged (and deleted) once
    handled, as before; one with it holds them, pending with their delivery count
    set back to none, until a snapshot covers them (here: when the stream ends)."""
    graph = af.Graph(f"racks-{uuid.uuid4().hex[:8]}")
    graph.add("feed", af.Inlet)
    graph.add("tracker", Tracker if stateful else Stateless)
    graph.link("feed", "tracker", buffer=400, remote=af.Remote(batch=4, claim_idle=1.5))
    stream = f"actorflow:{graph.name}:feed.out>tracker.in"
    url = redis_server.url
    settings_ = af.Settings(remote_url=url, snapshot_interval=math.inf)
    store = af.MemoryStore()
    async with af.open_system(graph, settings_, store=store) as system:
        for n in range(20):
            await system.send("feed", n)

        async def handled() -> bool:
            return system.status().actors["tracker"].received == 20

        await _until(handled)
        if stateful:

            async def held() -> bool:
                counts = [count for _, count in await _entries(url, stream)]
                return len(counts) >= 20 // 4 and not any(counts)

            await _until(held)
            assert system.status().actors["tracker"].snapshots == 1  # at its start
            # Held longer than claim_idle, they are kept claimed by the keeper thread
            # (their idle time renewed): no other consumer would take them over.
            since = trio.current_time()

            async def kept() -> bool:
                async with connect(url) as client:
                    pending = await client.xpending(stream, "tracker", "-", "+", 1000)
                renewed = all(entry.idle < 1500 for entry in pending)
                return trio.current_time() - since > 2.5 and renewed and len(pending) >= 5

            await _until(kept)
        else:

            async def acknowledged() -> bool:
                return not await _entries(url, stream)

            await _until(acknowledged)
        await system.close("feed")
    assert not await _entries(url, stream)
    if stateful:
        # At its start; asked for once the producer closed (the stream cannot end
        # while entries are held); at its end.
        assert system.status().actors["tracker"].snapshots == 3
        assert await store.get(namespace(graph.name), "tracker") == list(range(20))


def test_held_entries_ask_for_a_snapshot_at_half_the_stream_bound(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Held entries stay in the stream, so the producer counts them against its bound:
    at half of it (in entries) the consumer asks for a snapshot, which acknowledges
    them, and the stream flows without waiting for the interval (never, here)."""
    assert [hold_limit(0, 4), hold_limit(16, 4), hold_limit(400, 4)] == [1, 2, 50]
    store = af.MemoryStore()
    graph = remote_graph(list(range(200)), batch=4, buffer=16)
    settings_ = af.Settings(remote_url=redis_server.url, snapshot_interval=math.inf)
    result = run_graph(graph, store=store, settings=settings_, virtual_time=False, timeout=30)
    assert result.error is None
    assert final(store, graph) == list(range(200))
    saves = [e["at"] for e in logs if e["event"] == "actor.snapshot_saved"]
    assert (saves[0], saves[-1]) == ("start", "end")
    assert saves.count("held") >= 200 // (4 * 2) // 2  # about one per two entries


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, 30),
    crashes=st.dictionaries(st.integers(0, 29), st.integers(1, 3), max_size=4),
    batch=st.integers(1, 5),
    interval=st.sampled_from([0.01, 5.0, math.inf]),
)
def test_fuzz_in_process_crashes_of_a_remote_fed_module(
    redis_server: RedisServer,
    size: int,
    crashes: dict[int, int],
    batch: int,
    interval: float,
) -> None:
    """Whatever items crash how often (three failures dead-letter one) and however the
    stream is cut into entries and saved: the state holds every item that was not
    dead-lettered, once, in order, and every entry is acknowledged in the end."""
    Tracker.crashes = dict(crashes)
    store = af.MemoryStore()
    graph = remote_graph(list(range(size)), batch=batch, buffer=4 * batch)
    settings_ = af.Settings(remote_url=redis_server.url, snapshot_interval=interval)
    result = run_graph(graph, store=store, settings=settings_, virtual_time=False, timeout=30)
    assert result.error is None
    dead = sorted(n for n, fails in crashes.items() if fails >= 3 and n < size)
    assert sorted(letter.item for letter in result.dead_letters) == dead
    assert final(store, graph) == [n for n in range(size) if n not in dead]
    stream = f"actorflow:{graph.name}:feed.out>tracker.in"
    assert trio.run(_entries, redis_server.url, stream) == []


class Tracker2(Tracker):
    """A new version of the tracker: takes its state over."""


@pytest.mark.parametrize("replacement", [Tracker2, Stateless])
async def test_a_replaced_remote_fed_module_goes_on_from_what_was_held(
    redis_server: RedisServer, replacement: type[af.Sink]
) -> None:
    """Replaced while it holds entries: a new version with state takes the holding
    over (the state goes on, each item once); one without state has what was held
    acknowledged. Either way the stream drains and ends."""
    graph = af.Graph(f"rrepl-{uuid.uuid4().hex[:8]}")
    graph.add("feed", af.Inlet)
    graph.add("tracker", Tracker)
    graph.link("feed", "tracker", buffer=400, remote=af.Remote(batch=4, claim_idle=2))
    stream = f"actorflow:{graph.name}:feed.out>tracker.in"
    url, store = redis_server.url, af.MemoryStore()
    settings_ = af.Settings(remote_url=url, snapshot_interval=math.inf)
    async with af.open_system(graph, settings_, store=store) as system:
        for n in range(10):
            await system.send("feed", n)

        async def handled() -> bool:
            return system.status().actors["tracker"].received >= 10

        await _until(handled)
        await system.replace("tracker", replacement)
        for n in range(10, 20):
            await system.send("feed", n)
        await system.close("feed")
    assert not await _entries(url, stream)
    state = await store.get(namespace(graph.name), "tracker")
    assert state == (list(range(20)) if replacement is Tracker2 else list(range(10)))


class SlowTracker(Tracker):
    """Takes a while per item (its state changed after the item's last await)."""

    async def consume(self, data: int) -> None:  # type: ignore[override]
        await trio.sleep(0.01)
        super().consume(data)


async def test_shared_stateful_instances_hold_without_taking_each_others_entries(
    redis_server: RedisServer,
) -> None:
    """Two shared instances of a stage with ``snapshot()``, each holding entries longer
    than ``claim_idle``: each keeps what it holds claimed, so the two states together
    hold every item exactly once, and the stream ends for both."""
    name = f"rshare-{uuid.uuid4().hex[:8]}"
    stores = [af.MemoryStore(), af.MemoryStore()]

    def graph() -> af.Graph:
        built = af.Graph(name)
        built.add("feed", Feed, items=list(range(60)))
        built.add("tracker", SlowTracker)
        built.share("tracker")
        remote = af.Remote(url=redis_server.url, batch=5, claim_idle=0.1)
        built.link("feed", "tracker", remote=remote, buffer=40)
        return built

    settings_ = af.Settings(snapshot_interval=math.inf)

    async def instance(store: af.Store) -> None:
        async with af.open_system(graph(), settings_, store=store, only={"tracker"}):
            pass

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(instance, store)
            async with af.open_system(graph(), settings_, only={"feed"}):
                pass
    states = [await store.get(namespace(name), "tracker", []) for store in stores]
    assert sorted(states[0] + states[1]) == list(range(60))


async def test_a_graceful_stop_saves_and_acknowledges_what_was_held(
    redis_server: RedisServer,
) -> None:
    """A stop while entries are held: the end snapshot covers them, and they are
    acknowledged before the consumer leaves (nothing pending is left for a rerun)."""
    graph = af.Graph(f"rstop-{uuid.uuid4().hex[:8]}")
    graph.add("feed", af.Inlet)
    graph.add("tracker", Tracker)
    graph.link("feed", "tracker", buffer=400, remote=af.Remote(batch=4, claim_idle=2))
    stream = f"actorflow:{graph.name}:feed.out>tracker.in"
    url, store = redis_server.url, af.MemoryStore()
    settings_ = af.Settings(remote_url=url, snapshot_interval=math.inf)
    async with af.open_system(graph, settings_, store=store) as system:
        for n in range(20):
            await system.send("feed", n)

        async def held() -> bool:
            return system.status().actors["tracker"].received == 20 and bool(
                await _entries(url, stream)
            )

        await _until(held)
        await system.stop()
    assert await store.get(namespace(graph.name), "tracker") == list(range(20))
    assert not await _entries(url, stream)


async def test_a_stateful_standby_restores_only_once_it_takes_the_lease_over(
    redis_server: RedisServer,
) -> None:
    """Two processes run the same stateful stage (not shared): the second is a standby.
    It neither restores nor saves while it waits (its state would be older than the
    holder's, and would overwrite it); once the holder has stopped and it takes the
    lease over, it restores the holder's last snapshot and goes on from there: each
    item once in the final state."""
    graph = af.Graph(f"rstandby-{uuid.uuid4().hex[:8]}")
    graph.add("feed", af.Inlet)
    graph.add("tracker", Tracker)
    graph.link("feed", "tracker", buffer=400, remote=af.Remote(batch=4, claim_idle=1.5))
    settings_ = af.Settings(remote_url=redis_server.url, snapshot_interval=0.05)
    store = af.MemoryStore()
    key = namespace(graph.name)
    with trio.fail_after(40):
        async with (
            af.open_system(graph, settings_, only={"feed"}) as feeding,
            af.open_system(graph, settings_, store=store, only={"tracker"}) as one,
        ):
            for n in range(20):
                await feeding.send("feed", n)

            async def first_half() -> bool:
                return await store.get(key, "tracker", []) == list(range(20))

            await _until(first_half)
            async with af.open_system(graph, settings_, store=store, only={"tracker"}) as standby:
                with trio.move_on_after(1.0):  # the standby waits; time it could save
                    await standby.wait()
                assert standby.status().actors["tracker"].snapshots == 0
                assert await store.get(key, "tracker") == list(range(20))
                await one.stop()
                for n in range(20, 40):
                    await feeding.send("feed", n)
                await feeding.close("feed")
                await standby.wait()
    assert await store.get(key, "tracker") == list(range(40))
