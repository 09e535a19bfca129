"""A link's key holding what actorflow never writes (a tampered run counter, producer
state, lease...) is one error naming the key: never Redis's words with a script hash,
never a wait for ever."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer
from test_remote import Keep, Numbers, unique, wait_until

import actorflow as af
from actorflow._redis import connect
from actorflow._redis._keys import check_keys


def graph_of(name: str, count: int, remote: af.Remote) -> af.Graph:
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=count)
    graph.add("keep", Keep, into=[])
    graph.link("numbers", "keep", remote=remote, buffer=100)
    return graph


BAD = [
    ("generation", "set", "-5", "the value -5"),
    ("generation", "set", "hello", "the value hello"),
    ("producer", "set", "garbage:x", "the value garbage:x"),
    ("done:keep", "set", "x1", "the value x1"),
    ("lease", "rpush", "x", "a list, not a string"),
    ("lease:clock", "set", "1", "a string, not a hash"),
    ("producer:lease", "sadd", "x", "a set, not a string"),
]


@pytest.mark.parametrize(("suffix", "command", "value", "said"), BAD)
@pytest.mark.parametrize("only", ["numbers", "keep"])
async def test_a_tampered_key_fails_its_pump_naming_the_key(
    redis_server: RedisServer, suffix: str, command: str, value: str, said: str, only: str
) -> None:
    """Set before the producer (or the consumer) starts; the generation set to -5 used to
    leave the consumer waiting for ever, "hello" to fail with a raw script error."""
    name = unique("tampered")
    key = f"actorflow:{name}:numbers.out>keep.in:{suffix}"
    remote = af.Remote(url=redis_server.url, claim_idle=1)
    with trio.fail_after(20):
        async with connect(redis_server.url) as client:
            await client.eval("redis.call(ARGV[1], KEYS[1], ARGV[2])", [key], [command, value])
            with pytest.raises(af.RunError) as failed:
                async with af.open_system(graph_of(name, 10, remote), only={only}):
                    pass
            await client.delete([key])
    message = str(failed.value)
    assert f"Redis key {key!r} holds {said}" in message
    assert "script" not in message


async def test_a_producer_state_tampered_mid_run_ends_the_consumer_with_the_key_named(
    redis_server: RedisServer,
) -> None:
    """The consumer finds the state at its next look for the end, not never."""
    name = unique("midrun")
    key = f"actorflow:{name}:numbers.out>keep.in:producer"
    remote = af.Remote(url=redis_server.url, claim_idle=1, poll=0.05)
    with trio.fail_after(20):
        async with connect(redis_server.url) as client:
            await client.set(key, b"open:1")  # as if a producer ran, then:
            with pytest.raises(af.RunError, match=r"holds the value garbage"):
                async with af.open_system(graph_of(name, 0, remote), only={"keep"}):
                    await client.set(key, b"garbage")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(min_size=1, max_size=12))
def test_only_a_counter_of_digits_passes_as_a_run_counter(
    redis_server: RedisServer, value: str
) -> None:
    async def check() -> str:
        stream = f"actorflow:{unique('fuzz')}:a.out>b.in"
        async with connect(redis_server.url) as client:
            await client.set(f"{stream}:generation", value.encode())
            try:
                await check_keys(client, stream, "b", "b")
            except af.RunError as exc:
                return f"refused: {exc}"
            finally:
                await client.delete([f"{stream}:generation"])
        return "passed"

    said = trio.run(check)
    if value.isascii() and value.isdigit():
        assert said == "passed"
    else:
        assert said.startswith("refused")
        assert ":generation' holds the value" in said


async def test_a_producer_whose_stream_is_deleted_mid_run_fails_naming_it(
    redis_server: RedisServer,
) -> None:
    """Nobody reads: the producer waits at its bound; the stream is deleted (its group
    with it). The producer refilled the new stream and then waited for ever, silently;
    now it finds the group gone and fails naming the stream."""
    name = unique("deleted")
    stream = f"actorflow:{name}:numbers.out>keep.in"
    remote = af.Remote(url=redis_server.url, batch=5, poll=0.05)
    with trio.fail_after(30):
        async with connect(redis_server.url) as client:
            with pytest.raises(af.RunError, match=r"lost its consumer group 'keep'") as failed:
                async with af.open_system(graph_of(name, 10**6, remote), only={"numbers"}):
                    await wait_until(lambda: full(client, stream))
                    await client.delete([stream])
    assert repr(stream) in str(failed.value)


async def full(client: Any, stream: str) -> bool:
    """The producer waits at its bound (buffer 100 in entries of 5: 20)."""
    return bool(await client.xlen(stream) >= 20)
