"""The yardstick for remote links: a hand-written loop on the same Redis client.

What a careful user would write without actorflow, doing the same work per item as a
remote link of batch ``B`` (issue 14 asks actorflow for >= 0.9x its throughput):

* one producer task makes the items (``Data(fields={"n": n})``), and XADDs one entry per
  ``B`` items whose payload is ``actorflow._data.encode(batch)``, as the pump does; it
  waits while ``bound`` items are in the stream unacknowledged (an in-process
  semaphore, where the pump asks Redis for XLEN);
* one consumer task XREADGROUPs (at most 2 entries a call, the pump's room, blocking
  ``poll`` seconds), decodes, hands each item to the sink, then XACK + XDEL in one
  pipeline;

both on one coredis client (as :mod:`actorflow._redis._client` makes it) in one trio
process. The consumer stops when it has seen ``n`` items (it knows the count; the pump
has to learn of the end from Redis).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import coredis
import trio

from actorflow import Data
from actorflow._data import decode, encode

GROUP = "bench"
READ_ENTRIES = 2
"""Entries per XREADGROUP: the pump reads up to its room, two batches."""


def _client(url: str) -> coredis.Redis[bytes]:
    return coredis.Redis.from_url(
        url, decode_responses=False, retry_policy=coredis.retry.NoRetryPolicy()
    )


async def _read(
    client: coredis.Redis[bytes], stream: str, block_ms: int
) -> list[tuple[bytes, list[Any]]]:
    """Up to READ_ENTRIES new entries, each as (id, decoded items)."""
    reply = await client.xreadgroup(
        GROUP, "c", streams={stream: ">"}, count=READ_ENTRIES, block=block_ms
    )
    if not reply:
        return []
    entries = reply[stream.encode()]
    return [
        (cast("bytes", e.identifier), decode(cast("bytes", e.field_values[b"p"]))) for e in entries
    ]


async def _ack(client: coredis.Redis[bytes], stream: str, ids: list[bytes]) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.xack(stream, GROUP, ids)
        pipe.xdel(stream, ids)


async def throughput(
    url: str, n: int, batch: int, bound: int, poll: float, sink: Callable[[Data], None]
) -> None:
    """Carry ``n`` items from the producer task to ``sink`` through a Redis stream."""
    stream = f"bench-loop-{uuid.uuid4().hex[:8]}"
    room = trio.Semaphore(max(2, -(-bound // batch)))  # the stream's bound, in entries
    async with _client(url) as client:
        await client.xgroup_create(stream, GROUP, identifier="0", mkstream=True)

        async def produce() -> None:
            for start in range(0, n, batch):
                items = [Data(fields={"n": i}) for i in range(start, min(n, start + batch))]
                await room.acquire()
                await client.xadd(stream, {b"p": encode(items)})

        async def consume() -> None:
            seen = 0
            while seen < n:
                entries = await _read(client, stream, int(poll * 1000))
                for _, items in entries:
                    for item in items:
                        sink(item)
                    seen += len(items)
                if entries:
                    await _ack(client, stream, [entry_id for entry_id, _ in entries])
                    for _ in entries:
                        room.release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume)
        await client.delete([stream])


async def latency(url: str, n: int, poll: float) -> list[float]:
    """Send ``n`` items one at a time (each when the previous arrived); return each one's
    time from XADD to its consumer (after a blocking XREADGROUP and decoding)."""
    stream = f"bench-loop-{uuid.uuid4().hex[:8]}"
    sent: list[float] = []
    latencies: list[float] = []
    arrived = [trio.Event() for _ in range(n)]
    async with _client(url) as client:
        await client.xgroup_create(stream, GROUP, identifier="0", mkstream=True)

        async def produce() -> None:
            for i in range(n):
                sent.append(time.perf_counter())
                await client.xadd(stream, {b"p": encode([Data(fields={"n": i})])})
                await arrived[i].wait()

        async def consume() -> None:
            while len(latencies) < n:
                entries = await _read(client, stream, int(poll * 1000))
                for _, items in entries:
                    for item in items:
                        latencies.append(time.perf_counter() - sent[item.fields["n"]])
                        arrived[item.fields["n"]].set()
                if entries:
                    await _ack(client, stream, [entry_id for entry_id, _ in entries])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume)
        await client.delete([stream])
    return latencies
