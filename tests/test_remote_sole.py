"""One producer per stream (``_redis/_sole.py``), within one process: a second producer
of the stream is refused even there, and a cancelled producer gives its claim up, so a
system opened again at once in the same process takes it. Against a real redis-server
(see redis_server.py); the claims of processes killed on this machine are covered in
test_remote_keeper.py."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import structlog
import trio
from redis_server import RedisServer
from test_remote import unique, wait_until
from test_remote_faults import chain

import actorflow as af
from actorflow._redis import connect
from actorflow._redis._client import Retrying, load_coredis
from actorflow._redis._sole import sole_producer


def stream_of(name: str) -> str:
    return f"actorflow:{name}:numbers.out>keep.in"


def at_the_bound(system: af.System) -> bool:
    """The producer waits for room (nobody reads, or its pump has not started yet)."""
    return system.status().actors["numbers"].state is af.ActorState.BLOCKED


async def full(url: str, stream: str) -> bool:
    """The stream holds its bound (buffer 40 in entries of 10): the producer waits for room."""
    async with connect(url) as client:
        return int(await client.xlen(stream)) >= 4


async def claimed(url: str, stream: str) -> bool:
    async with connect(url) as client:
        return bool(await client.exists([f"{stream}:producer:lease"]))


async def test_a_second_producer_of_a_stream_in_the_same_process_is_refused(
    redis_server: RedisServer,
) -> None:
    """Two systems of one graph in one process, both running the producer: the second
    fails at once naming the stream (its claim used to name only the process, so it
    took the first's claim and their runs broke each other's); the first runs on and
    its consumer gets every item once, in order."""
    name = unique("twice-here")
    remote = af.Remote(url=redis_server.url, batch=10, claim_idle=30)
    got: list[af.Data] = []
    with trio.fail_after(40):
        async with af.open_system(chain(name, 300, remote, []), only={"numbers"}) as first:
            await wait_until(partial(full, redis_server.url, stream_of(name)))
            await wait_until(lambda: at_the_bound(first))
            with trio.fail_after(10), pytest.raises(af.RunError) as refused:
                async with af.open_system(chain(name, 300, remote, []), only={"numbers"}):
                    pass
            assert f"stream {stream_of(name)!r} already has a producer" in str(refused.value)
            assert at_the_bound(first)
            async with af.open_system(chain(name, 300, remote, got), only={"keep"}):
                pass
        assert first.status().state is af.SystemState.DONE
    assert [d.fields["n"] for d in got] == list(range(300))
    assert not await claimed(redis_server.url, stream_of(name))


async def test_a_producer_cancelled_from_outside_lets_a_new_system_take_the_claim_at_once(
    redis_server: RedisServer,
) -> None:
    """A system running the producer is cancelled through a cancel scope around it (as a
    caller's timeout would), mid-wait for room: it gives its claim up, so a system
    opened right after in the same process takes it at once, not ``claim_idle`` (30 s)
    later, and writes on."""
    name = unique("reopened")
    remote = af.Remote(url=redis_server.url, batch=10, claim_idle=30)
    with trio.fail_after(20):
        for _ in range(3):
            with trio.CancelScope() as outside:
                async with af.open_system(chain(name, 10**6, remote, []), only={"numbers"}) as one:
                    await wait_until(partial(claimed, redis_server.url, stream_of(name)))
                    await wait_until(lambda: at_the_bound(one))
                    outside.cancel()
            assert outside.cancelled_caught
            assert not await claimed(redis_server.url, stream_of(name))


async def test_a_claim_left_when_redis_did_not_answer_is_taken_at_once_here(
    own_redis_server: RedisServer,
) -> None:
    """A producer cancelled while Redis hangs (SIGSTOP) cannot release its claim; Redis
    comes back with the claim still there: a system opened right after in the same
    process frees it and takes it at once (it used to be refused until ``claim_idle``,
    30 s, had passed, as the claim is this process's own and no longer renewed)."""
    import os
    import signal

    name = unique("unreleased")
    remote = af.Remote(url=own_redis_server.url, batch=10, claim_idle=30, timeout=1)
    assert own_redis_server.process is not None
    pid = own_redis_server.process.pid
    with trio.fail_after(30):
        with trio.CancelScope() as outside:
            async with af.open_system(chain(name, 10**6, remote, []), only={"numbers"}) as one:
                await wait_until(partial(claimed, own_redis_server.url, stream_of(name)))
                await wait_until(lambda: at_the_bound(one))
                os.kill(pid, signal.SIGSTOP)
                outside.cancel()
        os.kill(pid, signal.SIGCONT)
        left = await holder(own_redis_server.url, stream_of(name))
        assert left is not None  # left behind
        with trio.CancelScope() as again:
            async with af.open_system(chain(name, 10**6, remote, []), only={"numbers"}):
                await wait_until(partial(taken_over, own_redis_server.url, name, left))
                again.cancel()
        assert again.cancelled_caught  # not refused


async def holder(url: str, stream: str) -> bytes | None:
    async with connect(url) as client:
        owner: bytes | None = await client.get(f"{stream}:producer:lease")
        return owner


async def taken_over(url: str, name: str, left: bytes) -> bool:
    """Another producer than ``left`` holds the stream's claim."""
    now = await holder(url, stream_of(name))
    return now is not None and now != left


class _BrokenPipelines:
    """A client whose pipelines fail, as after a cancellation closed its connections."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def pipeline(self, **options: Any) -> Any:
        raise load_coredis().exceptions.ConnectionError("closed by a cancellation")


async def test_the_claim_is_released_on_a_fresh_client_when_the_producers_fails(
    redis_server: RedisServer,
) -> None:
    """The release on the producer's own client fails: it is made again on a client of
    its own, so the claim does not outlive the producer."""
    stream = stream_of(unique("fresh"))
    remote = af.Remote(url=redis_server.url, claim_idle=30)
    log = structlog.get_logger()
    with trio.fail_after(20):
        async with connect(redis_server.url) as client:
            async with sole_producer(
                _BrokenPipelines(client),
                Retrying(log, remote.poll, redis_server.url),
                url=redis_server.url,
                stream=stream,
                remote=remote,
                source="numbers",
                log=log,
            ):
                assert await claimed(redis_server.url, stream)
            assert not await claimed(redis_server.url, stream)
