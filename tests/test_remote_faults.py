"""Remote links left running under ordinary conditions: a consumer slower than
``claim_idle``, Redis paused or restarted for longer than ``claim_idle``, a producer
restarted while its consumer is down. Against real redis-servers (see redis_server.py)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from functools import partial
from typing import Any, ClassVar
from unittest import mock

import pytest
import trio
from redis_server import RedisServer
from test_remote import Keep, Numbers, stream_length, unique, wait_until

import actorflow as af
from actorflow._data import encode
from actorflow._redis import connect
from actorflow._redis._client import load_coredis


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
    # Writes retried while Redis was paused were refused as repeats when it woke.
    assert twice(got) == []
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
    assert twice(got) == []
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


async def test_a_write_whose_reply_was_lost_is_not_written_twice(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Every third XADD reaches Redis but its reply is lost (the connection drops): the
    producer writes it again under the same id, which Redis refuses as a repeat."""
    coredis = load_coredis()
    real = coredis.Redis.xadd
    calls = 0

    async def lossy(self: Any, key: Any, field_values: Any, **options: Any) -> Any:
        nonlocal calls
        calls += 1
        written = await real(self, key, field_values, **options)
        if calls % 3 == 0:
            raise coredis.exceptions.ConnectionError("the reply was lost")
        return written

    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, batch=10)
    with mock.patch.object(coredis.Redis, "xadd", lossy), trio.fail_after(20):
        async with af.open_system(chain(unique("lossy"), 200, remote, got)):
            pass
    assert [d.fields["n"] for d in got] == list(range(200))
    assert calls > 20  # the retries
    assert any(e["event"] == "remote.unreachable" for e in logs)


async def test_a_write_by_call_whose_reply_was_lost_is_written_once(
    redis_server: RedisServer,
) -> None:
    """Whole batches are written in the producer's own task (a call into the pump); when
    such a write's reply is lost, the pump's task writes the entry again under the same
    id (refused as a repeat), before anything sent after it: each item arrives once, in
    order."""
    coredis = load_coredis()
    real = coredis.Redis.xadd
    by_call = lost = 0

    async def lossy(self: Any, key: Any, field_values: Any, **options: Any) -> Any:
        nonlocal by_call, lost
        called = trio.lowlevel.current_task().name == "actor:numbers"
        by_call += called
        written = await real(self, key, field_values, **options)
        if called and lost < 3:
            lost += 1
            raise coredis.exceptions.ConnectionError("the reply was lost")
        return written

    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, batch=10)
    with mock.patch.object(coredis.Redis, "xadd", lossy), trio.fail_after(20):
        async with af.open_system(chain(unique("lost-call"), 300, remote, got)):
            pass
    assert [d.fields["n"] for d in got] == list(range(300))
    assert lost == 3
    assert by_call > 10  # most batches went by call


async def test_a_stream_whose_ids_are_ahead_of_the_clock_is_written_above_them(
    redis_server: RedisServer,
) -> None:
    """An earlier writer (a machine whose clock was ahead) left the stream's last id in
    the future: the producer's first write is refused as not above it, and it goes on
    above that id; nothing is taken for a repeat."""
    name = unique("ahead")
    stream = f"actorflow:{name}:numbers.out>keep.in"
    async with connect(redis_server.url) as client:
        ahead = b"%d-5" % (2**50)
        await client.xadd(stream, {b"p": encode([af.Data(fields={"n": -1})])}, identifier=ahead)
    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, batch=10)
    with trio.fail_after(20):
        async with af.open_system(chain(name, 30, remote, got)):
            pass
    assert [d.fields["n"] for d in got] == list(range(-1, 30))


async def test_a_lease_taken_by_another_instance_stops_the_first(
    redis_server: RedisServer,
) -> None:
    """Another instance holds the lease when the first comes to renew it (the first was
    cut off for longer than claim_idle, say): the first has been replaced, and fails."""
    name = unique("stolen")
    remote = af.Remote(url=redis_server.url, claim_idle=0.5)
    lease = f"actorflow:{name}:numbers.out>keep.in:lease"
    with trio.fail_after(20):
        async with connect(redis_server.url) as client:
            with pytest.raises(af.RunError, match=r"lost its lease .* to another instance"):
                async with af.open_system(chain(name, 10**6, remote, []), only={"keep"}):
                    await wait_until(lambda: client.exists([lease]))
                    await client.set(lease, b"another", px=10_000)
            await client.delete([lease])


async def test_a_second_instance_waits_as_a_standby(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Two instances of a module that is not shared: the second says it is a standby and
    takes the lease when the first stops; every item is handled, in order of first
    arrival."""
    name = unique("standby")
    remote = af.Remote(url=redis_server.url, claim_idle=0.3, batch=10)
    first: list[af.Data] = []
    second: list[af.Data] = []
    with trio.fail_after(20):
        async with (
            af.open_system(chain(name, 300, remote, []), only={"numbers"}),
            af.open_system(chain(name, 300, remote, first, delay=0.002), only={"keep"}) as one,
            af.open_system(chain(name, 300, remote, second), only={"keep"}) as two,
        ):
            await wait_until(lambda: any(e["event"] == "remote.standby" for e in logs))
            await wait_until(lambda: len(first) >= 50)
            await one.stop()
            await wait_until(lambda: two.status().state is af.SystemState.DONE)
    assert second
    firsts = list(dict.fromkeys(d.fields["n"] for d in [*first, *second]))
    assert firsts == list(range(300))
    assert any(e["event"] == "remote.lease_taken" for e in logs)


async def test_a_standby_stopped_gracefully_ends_at_once_and_the_holder_goes_on(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """``stop()`` on a process whose consumer waits for the lease (a standby) ends it at
    once, while the holder still reads: it holds nothing (it waited for the lease until
    the holder ended, or for ever); the holder goes on, in order."""
    name = unique("standby_stop")
    remote = af.Remote(url=redis_server.url, claim_idle=0.5, batch=10)
    first: list[af.Data] = []
    second: list[af.Data] = []
    with trio.fail_after(30):
        async with (
            af.open_system(chain(name, 20_000, remote, []), only={"numbers"}) as producer,
            af.open_system(chain(name, 20_000, remote, first, delay=0.002), only={"keep"}) as one,
        ):
            async with af.open_system(chain(name, 20_000, remote, second), only={"keep"}) as two:
                await wait_until(lambda: any(e["event"] == "remote.standby" for e in logs))
                await two.stop()
                with trio.fail_after(5):
                    await two.wait()
            assert one.status().state is af.SystemState.RUNNING  # still the holder
            producer.cancel()
            one.cancel()
    assert two.status().state is af.SystemState.DONE
    assert second == []
    assert [d.fields["n"] for d in first] == list(range(len(first)))


async def holds_lease(url: str, graph: str) -> bool:
    """Whether a consumer of ``graph``'s link holds its lease (the holder is up)."""
    async with connect(url) as client:
        return bool(await client.exists([f"{graph}:numbers.out>keep.in:lease"]))


async def test_stopping_the_producers_process_ends_its_standby_and_the_holder_reads_on(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """The producer's process also runs a standby of the consumer (the holder runs
    elsewhere): its graceful stop drains the producer and ends the standby at once,
    while the holder reads on to the end (the standby waited for ever for an end the
    holder had taken)."""
    name = unique("standby_here")
    remote = af.Remote(url=redis_server.url, claim_idle=0.5, batch=10)
    first: list[af.Data] = []
    second: list[af.Data] = []
    with trio.fail_after(30):
        async with af.open_system(
            chain(name, 20_000, remote, first, delay=0.001), only={"keep"}
        ) as holder:
            await wait_until(partial(holds_lease, redis_server.url, f"actorflow:{name}"))
            async with af.open_system(chain(name, 20_000, remote, second)) as both:
                await wait_until(lambda: any(e["event"] == "remote.standby" for e in logs))
                await wait_until(lambda: len(first) >= 20)
                await both.stop()
                with trio.fail_after(5):
                    await both.wait()
            assert both.status().state is af.SystemState.DONE
            await wait_until(lambda: holder.status().state is af.SystemState.DONE)
    assert second == []
    sent = both.status().actors["numbers"].emitted
    assert [d.fields["n"] for d in first] == list(range(sent))


async def test_a_standby_leaves_a_lease_that_lapsed_in_an_outage_to_its_holder(
    own_redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Redis paused for longer than the lease, with a standby waiting: when Redis comes
    back, the holder, which lives, takes its lease again; the standby does not snatch it
    (which would stop the holder). The holder then stops; the standby takes over; nothing
    is handled twice or lost."""
    name = unique("outage-standby")
    remote = af.Remote(url=own_redis_server.url, claim_idle=1.0, batch=10, timeout=0.3)
    first: list[af.Data] = []
    second: list[af.Data] = []
    assert own_redis_server.process is not None
    pid = own_redis_server.process.pid
    with trio.fail_after(40):
        async with (
            af.open_system(chain(name, 600, remote, []), only={"numbers"}),
            af.open_system(chain(name, 600, remote, first, delay=0.003), only={"keep"}) as one,
            af.open_system(chain(name, 600, remote, second), only={"keep"}),
        ):
            await wait_until(lambda: any(e["event"] == "remote.standby" for e in logs))
            await wait_until(lambda: len(first) >= 50)
            os.kill(pid, signal.SIGSTOP)
            try:
                await wait_until(lambda: any(e["event"] == "remote.unreachable" for e in logs))
                await trio.sleep(3 * remote.claim_idle)  # the outage itself, not a wait
            finally:
                os.kill(pid, signal.SIGCONT)
            await wait_until(lambda: any(e["event"] == "remote.lease_renewed" for e in logs))
            count = len(first)
            await wait_until(lambda: len(first) >= count + 50)
            await one.stop()
    got = [*first, *second]
    assert {d.fields["n"] for d in got} == set(range(600))
    assert twice(got) == []
    assert second


async def test_a_failing_sending_pump_is_not_held_by_a_write_hung_on_redis(
    own_redis_server: RedisServer, logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer writes an entry by call when Redis hangs (SIGSTOP) and its pump
    fails meanwhile (its claim lost, injected): the run ends after the pump's short
    grace for that write and the clean-up's own bound, not after the client's
    ``timeout`` (30 s here, past the test's limit); the entry that write could not
    confirm is counted as dropped."""
    from actorflow._redis import _keeper
    from actorflow._redis._producer import CALL_GRACE, ProducerPump

    lost = trio.Event()
    pumps: list[ProducerPump] = []

    kept = _keeper.Keeper.watch

    async def watch(keeper: Any) -> None:
        if keeper.group:  # a consumer's lease: as it is
            await kept(keeper)
            return
        await lost.wait()  # the producer's claim
        raise af.RunError("numbers", "claim lost (injected)")

    made = ProducerPump.__init__

    def recorded(pump: ProducerPump, *args: Any, **kwargs: Any) -> None:
        made(pump, *args, **kwargs)
        pumps.append(pump)

    monkeypatch.setattr(_keeper.Keeper, "watch", watch)
    monkeypatch.setattr(ProducerPump, "__init__", recorded)
    got: list[af.Data] = []
    remote = af.Remote(url=own_redis_server.url, batch=10, timeout=30)
    graph = chain(unique("hung-call"), 10**8, remote, got)
    assert own_redis_server.process is not None
    pid = own_redis_server.process.pid
    system: af.System | None = None
    with pytest.raises(af.RunError, match="claim lost"), trio.fail_after(20):
        async with af.open_system(graph) as system:
            await wait_until(lambda: len(got) >= 100 and pumps[0]._inside)
            os.kill(pid, signal.SIGSTOP)
            began = trio.current_time()
            try:
                lost.set()
                await trio.sleep_forever()  # the failure ends the block
            finally:
                took = trio.current_time() - began
                os.kill(pid, signal.SIGCONT)
    # The grace, then the clean-up's own bound of 5 s on a Redis that does not answer.
    assert took < CALL_GRACE + 5 + 3
    assert system is not None
    dropped = {name: link.dropped for name, link in system.status().links.items()}
    assert sum(counts.get("shutdown", 0) for counts in dropped.values()) >= 10, dropped
