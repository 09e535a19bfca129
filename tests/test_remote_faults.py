"""Remote links left running under ordinary conditions: a consumer slower than
``claim_idle``, Redis paused or restarted for longer than ``claim_idle``, a producer
restarted while its consumer is down. Against real redis-servers (see redis_server.py)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import Any, ClassVar

import trio
from redis_server import RedisServer
from test_remote import Keep, Numbers, stream_length, unique, wait_until

import actorflow as af
from actorflow._redis import connect


class Plodding(af.Sink):
    """Takes ``delay`` seconds per item: with two entries prefetched, it holds each entry
    for longer than ``claim_idle``."""

    inputs: ClassVar = {"in": af.Data}

    def __init__(self, into: list[af.Data], delay: float) -> None:
        self.into = into
        self.delay = delay

    async def consume(self, data: af.Data) -> None:
        await trio.sleep(self.delay)
        self.into.append(data)


def chain(name: str, count: int, remote: af.Remote, into: list[af.Data], **sink: Any) -> af.Graph:
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=count)
    if sink:
        graph.add("keep", Plodding, into=into, **sink)
    else:
        graph.add("keep", Keep, into=into)
    graph.link("numbers", "keep", remote=remote, buffer=40)
    return graph


def twice(got: list[af.Data]) -> list[int]:
    return sorted(n for n, seen in Counter(d.fields["n"] for d in got).items() if seen > 1)


async def test_a_consumer_slower_than_claim_idle_handles_nothing_twice(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Two entries of 10 items at 0.03 s each are held for 0.6 s, three times claim_idle:
    the consumer keeps them busy and never takes back what it holds, so with no fault at
    all every item is handled exactly once, in order."""
    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, batch=10, claim_idle=0.2)
    graph = chain(unique("slow"), 60, remote, got, delay=0.03)
    with trio.fail_after(20):
        async with af.open_system(graph):
            pass
    assert twice(got) == []
    assert [d.fields["n"] for d in got] == list(range(60))
    assert not [e for e in logs if e["event"] in ("remote.claimed", "remote.taken_over")]


async def test_redis_paused_for_three_claim_idles_is_waited_out(
    own_redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """SIGSTOP for 3 s (three times claim_idle, and the lease's expiry): the calls time out,
    so both halves say `remote.unreachable`; after SIGCONT the consumer takes its lapsed
    lease again (nobody else did) instead of dying, the producer finishes, nothing is lost."""
    got: list[af.Data] = []
    remote = af.Remote(url=own_redis_server.url, batch=10, claim_idle=1.0, timeout=0.3)
    graph = chain(unique("paused"), 400, remote, got, delay=0.002)
    assert own_redis_server.process is not None
    pid = own_redis_server.process.pid
    with trio.fail_after(30):
        async with af.open_system(graph) as system:
            await wait_until(lambda: len(got) >= 50)
            os.kill(pid, signal.SIGSTOP)
            try:
                await wait_until(lambda: any(e["event"] == "remote.unreachable" for e in logs))
                await trio.sleep(3 * remote.claim_idle)  # the outage itself, not a wait
            finally:
                os.kill(pid, signal.SIGCONT)
    assert system.status().state is af.SystemState.DONE
    assert {d.fields["n"] for d in got} == set(range(400))
    assert any(e["event"] == "remote.recovered" for e in logs)


async def test_redis_down_for_three_claim_idles_is_waited_out(
    own_redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Killed, then started again 3 s later (its lease lapsed meanwhile): the consumer
    carries on, the producer finishes, nothing is lost (AOF, fsync always)."""
    got: list[af.Data] = []
    remote = af.Remote(url=own_redis_server.url, batch=10, claim_idle=1.0, timeout=0.5)
    graph = chain(unique("down"), 400, remote, got, delay=0.002)
    with trio.fail_after(30):
        async with af.open_system(graph) as system:
            await wait_until(lambda: len(got) >= 50)
            await trio.to_thread.run_sync(own_redis_server.stop)
            await wait_until(lambda: any(e["event"] == "remote.unreachable" for e in logs))
            await trio.sleep(3 * remote.claim_idle)  # the outage itself, not a wait
            await trio.to_thread.run_sync(own_redis_server.start)
    assert system.status().state is af.SystemState.DONE
    assert {d.fields["n"] for d in got} == set(range(400))
    assert not [e for e in logs if "lost its lease" in str(e.get("error", ""))]


async def test_the_bound_holds_across_producer_restarts_with_the_consumer_down(
    redis_server: RedisServer,
) -> None:
    """The producer is started six times while no consumer runs: each run asks Redis how
    full the stream is before writing, so it never holds more than its bound."""
    name = unique("restarts")
    remote = af.Remote(url=redis_server.url, batch=10)
    stream = f"actorflow:{name}:numbers.out>keep.in"
    bound_entries = 2  # buffer 20 in entries of 10

    for _ in range(6):
        graph = af.Graph(name=name)
        graph.add("numbers", Numbers, count=1000)
        graph.add("keep", Keep, into=[])
        graph.link("numbers", "keep", remote=remote, buffer=20)
        with trio.fail_after(20):
            async with (
                connect(redis_server.url) as client,
                af.open_system(graph, only={"numbers"}) as producer,
            ):

                async def over_bound() -> bool:
                    return int(await client.xlen(stream)) > bound_entries

                await wait_until(
                    lambda: producer.status().actors["numbers"].state is af.ActorState.BLOCKED
                )
                with trio.move_on_after(0.3):
                    await wait_until(over_bound)
                    raise AssertionError("the stream went past its bound")
                producer.cancel()
    assert await stream_length(redis_server.url, stream) == bound_entries
