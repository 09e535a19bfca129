"""What a consumer does with entries at the boundary: a huge entry enters the link no
faster than it has room; wrong-typed, undecodable and poison entries are dead-lettered
(counted, logged with the reason, acknowledged), never retried for ever and never a
crash. Against a real redis-server (see redis_server.py)."""

from __future__ import annotations

import tracemalloc
from typing import Any, ClassVar, Protocol
from unittest import mock

import pytest
import trio
from redis_server import RedisServer
from test_remote import Keep, Numbers, pair, stream_length, unique

import actorflow as af
from actorflow._data import MAX_DEPTH, decode, decode_items, encode
from actorflow._redis import connect
from actorflow._redis._entries import type_check
from actorflow._redis._producer import ProducerPump

INBOUND = "numbers.out -> keep.in (from the stream)"


def stream_of(name: str) -> str:
    return f"actorflow:{name}:numbers.out>keep.in"


def linked(name: str, count: int, remote: af.Remote, into: list[af.Data]) -> af.Graph:
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=count)
    graph.add("keep", Keep, into=into)
    graph.link("numbers", "keep", remote=remote)
    return graph


class Depth(af.Sink):
    """Counts items and, every 500th, how many wait in its link (the status's depth)."""

    inputs: ClassVar = {"in": af.Data}
    deepest: ClassVar[int] = 0
    system: ClassVar[af.System | None] = None

    def __init__(self, into: list[int]) -> None:
        self.into = into

    def consume(self, data: af.Data) -> None:
        self.into.append(data.fields["n"])
        if len(self.into) % 500 == 0 and Depth.system is not None:
            depth = Depth.system.status().links[INBOUND].depth
            Depth.deepest = max(Depth.deepest, depth)


async def test_a_huge_entry_enters_the_link_piece_by_piece(redis_server: RedisServer) -> None:
    """One entry of 60,000 Data items (as an old producer with a huge batch wrote it) into a
    link of capacity 20: the link never holds more than its capacity, the items are never
    all decoded at once (memory stays far below their decoded size), each arrives once, in
    order, and the entry is acknowledged once all are handled."""
    name = unique("huge")
    count = 60_000
    items = [af.Data(fields={"n": n, "pad": "x" * 40}) for n in range(count)]
    async with connect(redis_server.url) as client:
        await client.xadd(stream_of(name), {b"p": encode(items)})
    del items
    got: list[int] = []
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=0)
    graph.add("keep", Depth, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=10))
    Depth.deepest = 0
    tracemalloc.start()
    try:
        with trio.fail_after(40):
            async with af.open_system(graph) as system:
                Depth.system = system
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        Depth.system = None
    assert got == list(range(count))
    assert Depth.deepest <= 20
    # Decoded whole, the entry peaked at 41 MiB; piece by piece at 15 MiB, most of it the
    # raw entry as the client reads it (6.6 MB, copied once).
    assert peak < 25 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    assert await stream_length(redis_server.url, stream_of(name)) == 0


async def test_a_producer_splits_an_entry_too_large_to_be_one(redis_server: RedisServer) -> None:
    """Items that would make an entry larger than MAX_ENTRY_BYTES travel in several."""
    name = unique("split")
    got: list[af.Data] = []
    sizes: list[int] = []
    add = ProducerPump._add

    async def counted(pump: ProducerPump, client: Any, payload: bytes, attempt: Any) -> None:
        sizes.append(len(payload))
        await add(pump, client, payload, attempt)

    class Big(af.Source):
        outputs: ClassVar = {"out": af.Data}

        def start(self) -> Any:
            return (af.Data(fields={"n": n, "blob": b"x" * 1000}) for n in range(40))

    graph = af.Graph(name=name)
    graph.add("numbers", Big)
    graph.add("keep", Keep, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=40))
    with (
        mock.patch("actorflow._redis._producer.MAX_ENTRY_BYTES", 8_000),
        mock.patch.object(ProducerPump, "_add", counted),
        trio.fail_after(20),
    ):
        async with af.open_system(graph):
            pass
    assert [d.fields["n"] for d in got] == list(range(40))
    assert len(sizes) >= 6
    assert max(sizes) <= 8_000


class Typed(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def consume(self, data: af.Data) -> None:
        if not isinstance(data, af.Data):
            raise TypeError(f"got a {type(data).__name__}")
        self.into.append(data)


async def test_wrong_typed_items_are_dead_lettered_at_the_boundary(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Valid msgpack of the wrong type for the port (an int, a dict, into a port of Data)
    never reaches the module: counted as `wrong_type`, logged with what came and what the
    port takes, acknowledged; the right items of the same entry go on."""
    name = unique("typed")
    async with connect(redis_server.url) as client:
        mixed = [7, af.Data(fields={"n": -1}), {"n": 1}]
        await client.xadd(stream_of(name), {b"p": encode(mixed)})
    got: list[Any] = []
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=5)
    graph.add("keep", Typed, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url))
    with trio.fail_after(20):
        async with af.open_system(graph) as system:
            pass
    assert [d.fields["n"] for d in got] == [-1, 0, 1, 2, 3, 4]
    status = system.status()
    assert status.links[INBOUND].dropped == {"wrong_type": 2}
    assert status.actors["keep"].restarts == 0
    wrong = [e for e in logs if e["event"] == "remote.wrong_type"]
    # One event per piece of an entry, naming the first misfit.
    assert [(e["count"], e["got"], e["accepts"]) for e in wrong] == [(2, "int", "Data")]
    assert await stream_length(redis_server.url, stream_of(name)) == 0


class Named(Protocol):
    """A protocol that cannot be checked at run time: the port takes anything."""

    name: str


@pytest.mark.parametrize(
    ("accepted", "good", "bad"),
    [
        (af.Data, af.Data(), 1),
        (int | str, "a", 1.5),
        (list[int], [1], (1,)),
        (object, 1, None),
        (Named, 1, None),
    ],
)
def test_a_port_type_is_checked_as_links_are(accepted: Any, good: Any, bad: Any) -> None:
    """The boundary's check follows the rule of linking: subclasses, union members,
    generics by their origin; a port of `object` (or of a type that cannot be checked at
    run time) takes anything: no check at all."""
    check = type_check(accepted)
    if accepted in (object, Named):
        assert check is None
        return
    assert check is not None
    assert check(good)
    assert not check(bad)


async def test_an_entry_delivered_too_often_is_dead_lettered_not_retried(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """An entry that was delivered max_deliveries times without an acknowledgement (its
    consumers died with it) is dead-lettered when it is next taken over: counted as
    `undeliverable`, logged, acknowledged; the stream goes on."""
    name = unique("poison")
    stream = stream_of(name)
    async with connect(redis_server.url) as client:
        await client.xgroup_create(stream, "keep", identifier="0", mkstream=True)
        poison = await client.xadd(stream, {b"p": encode([af.Data(fields={"n": -1})])})
        await client.xreadgroup("keep", "dead", streams={stream: ">"}, count=1)
        await client.xclaim(stream, "keep", "dead", 0, [poison], retrycount=3)
    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, max_deliveries=3)
    with trio.fail_after(20):
        async with af.open_system(linked(name, 5, remote, got)) as system:
            pass
    assert [d.fields["n"] for d in got] == list(range(5))
    assert system.status().links[INBOUND].dropped == {"undeliverable": 1}
    dead = [e for e in logs if e["event"] == "remote.undeliverable"]
    assert [e["deliveries"] for e in dead] == [4]
    assert await stream_length(redis_server.url, stream) == 0


async def test_an_entry_taken_over_fewer_times_is_handled(
    redis_server: RedisServer,
) -> None:
    """Below max_deliveries, an entry left by a dead consumer is handled as usual."""
    name = unique("retry")
    stream = stream_of(name)
    async with connect(redis_server.url) as client:
        await client.xgroup_create(stream, "keep", identifier="0", mkstream=True)
        entry = await client.xadd(stream, {b"p": encode([af.Data(fields={"n": -1})])})
        await client.xreadgroup("keep", "dead", streams={stream: ">"}, count=1)
        await client.xclaim(stream, "keep", "dead", 0, [entry], retrycount=1)
    got: list[af.Data] = []
    remote = af.Remote(url=redis_server.url, max_deliveries=3)
    with trio.fail_after(20):
        async with af.open_system(linked(name, 3, remote, got)):
            pass
    assert [d.fields["n"] for d in got] == [-1, 0, 1, 2]


async def test_a_decoder_that_crashes_is_an_undecodable_entry_not_a_crash(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """Whatever the decoder raises, on the entry or on an item in the middle of it, the
    entry is dead-lettered as undecodable and the process goes on."""
    name = unique("crash")
    async with connect(redis_server.url) as client:
        await client.xadd(stream_of(name), {b"p": encode([af.Data(fields={"n": -2})])})
        # An array of two items cut short after the first.
        cut = b"\x92" + encode(af.Data(fields={"n": -1}))
        await client.xadd(stream_of(name), {b"p": cut})
    got: list[af.Data] = []
    real = decode_items
    calls = 0

    def exploding(payload: bytes) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemoryError("the decoder blew up")
        return real(payload)

    graph = pair(name, 3, redis_server.url, got)
    with mock.patch("actorflow._redis._entries.decode_items", exploding):
        with trio.fail_after(20):
            async with af.open_system(graph) as system:
                pass
    assert [d.fields["n"] for d in got] == [-1, 0, 1, 2]
    assert system.status().links[INBOUND].dropped == {"undecodable": 2}
    assert len([e for e in logs if e["event"] == "remote.undecodable"]) == 2
    assert await stream_length(redis_server.url, stream_of(name)) == 0


async def test_an_entry_claiming_billions_of_items_counts_as_one(
    redis_server: RedisServer, logs: list[dict[str, Any]]
) -> None:
    """A 6-byte entry whose array header claims 4,294,967,295 items is one undecodable
    entry (it counted 4,294,967,294 dropped), logged as a failure to decode, not to
    serialise; the link goes on with the items after it."""
    name = unique("bigcount")
    async with connect(redis_server.url) as client:
        await client.xadd(stream_of(name), {b"p": b"\xdd\xff\xff\xff\xff\x01"})
    got: list[af.Data] = []
    with trio.fail_after(20):
        async with af.open_system(pair(name, 3, redis_server.url, got)) as system:
            pass
    assert [d.fields["n"] for d in got] == [0, 1, 2]
    assert system.status().links[INBOUND].dropped == {"undecodable": 1}
    assert system.status().dropped == 1
    [failure] = [e for e in logs if e["event"] == "remote.undecodable"]
    assert failure["error"].startswith("SerializationError: cannot decode payload:"), failure
    assert await stream_length(redis_server.url, stream_of(name)) == 0


class Deep(af.Source):
    """Items nested exactly as deep as the codec allows: one level more (the entry's
    list) and they could not be checked as one list."""

    outputs: ClassVar = {"out": af.Data}

    def start(self) -> Any:
        for n in range(3):
            nested: Any = n
            for _ in range(MAX_DEPTH - 2):  # Data and its fields are two levels
                nested = [nested]
            yield af.Data(fields={"deep": nested, "n": n})


async def test_items_nested_as_deep_as_allowed_cross_whole(redis_server: RedisServer) -> None:
    """An entry's items are checked as one list when they allow it (cheaper), and one by
    one when the entry's own level would put them over the limit: items nested exactly
    as deep as the codec allows cross, in order, none dead-lettered."""
    name = unique("deep")
    got: list[af.Data] = []
    graph = af.Graph(name=name)
    graph.add("numbers", Deep)
    graph.add("keep", Keep, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=3))
    with trio.fail_after(20):
        async with af.open_system(graph) as system:
            pass
    assert [d.fields["n"] for d in got] == [0, 1, 2]
    assert all(d.fields == decode(encode(d)).fields for d in got)
    assert system.status().links[INBOUND].dropped == {}


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536])
def test_an_entry_is_counted_by_its_header_in_every_array_size(count: int) -> None:
    """The count of an entry is its array's header in each of msgpack's three array
    forms (up to 15 items, up to 65535, more), read without decoding the items."""
    items = [af.Data(fields={"n": n}) for n in range(count)]
    found, decoded = decode_items(encode(items))
    assert found == count
    assert list(decoded) == items


def test_an_item_that_cannot_cross_leaves_the_encoder_as_it_was() -> None:
    """An item refused half way through an entry spoils no later entry (the encoder
    reuses its packers, and drops one that failed mid-way)."""
    items = [af.Data(fields={"n": n, "t": (n, {n})}) for n in range(50)]
    bad = [*items[:20], af.Data(fields={"x": object()}), *items[20:]]
    for _ in range(3):
        with pytest.raises(af.SerializationError):
            encode(bad)
        assert decode(encode(items)) == items
