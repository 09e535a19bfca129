"""The pipeline shapes of ``bench_pipeline.py`` and the hand-written peers that run them.

A shape is a small DAG of three kinds of node: ``src`` (sends ``0..n-1``), ``inc``
(forwards ``x + 1``) and ``sink`` (sums what it gets). A node with several successors
sends every item to each (a broadcast, as an actorflow port with several links does);
a node with several predecessors takes from all of them. Every runner builds the same
DAG its own way and returns ``(seconds, cpu_seconds, total)``: the sum of every sink,
which the harness checks against :func:`expected_total`.

The peers:

* ``plain``: no concurrency at all, each node a function calling its successors: the
  limit.
* ``asyncio-batched`` / ``trio-batched``: what a user who batches by hand writes: lists
  of up to ``buffer`` items through an ``asyncio.Queue(maxsize=1)`` / a trio memory
  channel of capacity 0 per node, so at most one list (``buffer`` items) waits per link,
  as in actorflow.
* ``asyncio-queue`` / ``trio-channels``: the idiomatic item-at-a-time pipelines.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio


@attrs.frozen
class Shape:
    """A DAG: node name -> kind, and edges (from, to) in a topological order."""

    name: str
    kinds: dict[str, str]
    edges: tuple[tuple[str, str], ...]
    items: int
    """How many items each source sends, as a multiple of ``--messages`` (1.0: as many)."""
    emits: bool = False
    """actorflow's sources emit item by item from an async ``start()`` (``await
    self.emit(x)``, as ``actorflow.testing.Feed`` does) instead of returning an
    iterator; the other variants run the same DAG as they always do."""

    def successors(self, node: str) -> list[str]:
        return [b for a, b in self.edges if a == node]

    def predecessors(self, node: str) -> list[str]:
        return [a for a, b in self.edges if b == node]


def chain(stages: int) -> Shape:
    names = ["src", *(f"p{i}" for i in range(stages)), "sink"]
    kinds = dict.fromkeys(names, "inc")
    kinds["src"], kinds["sink"] = "src", "sink"
    # Longer chains get fewer items, so every shape costs about the same item-hops.
    return Shape(f"chain-{stages}", kinds, tuple(itertools.pairwise(names)), 5 / (stages + 1))


def emits(stages: int) -> Shape:
    """:func:`chain`, its actorflow source emitting item by item."""
    return attrs.evolve(chain(stages), name=f"emits-{stages}", emits=True)


def fan_out(width: int) -> Shape:
    kinds = {"src": "src"} | {f"s{i}": "sink" for i in range(width)}
    edges = tuple(("src", f"s{i}") for i in range(width))
    return Shape(f"fan-out-1-{width}", kinds, edges, 5 / (width + 1))


def fan_in(width: int) -> Shape:
    kinds = {f"src{i}": "src" for i in range(width)} | {"sink": "sink"}
    edges = tuple((f"src{i}", "sink") for i in range(width))
    return Shape(f"fan-in-{width}-1", kinds, edges, 1 / width)


def dag(branches: int = 14, depth: int = 7) -> Shape:
    """One source broadcasting into ``branches`` chains of ``depth`` processors, merged
    into one sink: ``2 + branches * depth`` actors (100 by default)."""
    kinds = {"src": "src", "sink": "sink"}
    edges: list[tuple[str, str]] = []
    for b in range(branches):
        previous = "src"
        for d in range(depth):
            node = f"b{b}d{d}"
            kinds[node] = "inc"
            edges.append((previous, node))
            previous = node
        edges.append((previous, "sink"))
    return Shape(f"dag-{len(kinds)}", kinds, tuple(edges), 1 / branches / depth * 5)


def count(shape: Shape, n: int) -> int:
    """How many items each source of ``shape`` sends when ``--messages`` is ``n``."""
    return max(1, int(n * shape.items))


def expected_total(shape: Shape, n: int) -> int:
    """The sum of every sink: each path from a source adds one per ``inc`` on it."""
    arrived: dict[str, tuple[int, int]] = {}  # node -> (items, their sum) arriving
    order = _topological(shape)
    total = 0
    for node in order:
        kind = shape.kinds[node]
        if kind == "src":
            items, value = n, n * (n - 1) // 2
        else:
            items = sum(arrived[p][0] for p in shape.predecessors(node))
            value = sum(arrived[p][1] for p in shape.predecessors(node))
            if kind == "inc":
                value += items
        if kind == "sink":
            total += value
        arrived[node] = (items, value)
    return total


def _topological(shape: Shape) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        if node in seen:
            return
        seen.add(node)
        for p in shape.predecessors(node):
            visit(p)
        order.append(node)

    for node in shape.kinds:
        visit(node)
    return order


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def done(self, total: int) -> tuple[float, float, int]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu, total


# -- plain calls ---------------------------------------------------------------------


def run_plain(shape: Shape, n: int, buffer: int) -> tuple[float, float, int]:
    """Each node a function calling its successors; sources looped one after another."""
    totals = dict.fromkeys(shape.kinds, 0)
    calls: dict[str, Callable[[int], None]] = {}
    for node in reversed(_topological(shape)):
        after = [calls[s] for s in shape.successors(node)]
        kind = shape.kinds[node]
        if kind == "sink":
            calls[node] = _sink_call(totals, node)
        elif len(after) == 1:
            calls[node] = _inc_one(after[0]) if kind == "inc" else after[0]
        else:
            calls[node] = _inc_many(after, kind == "inc")
    clock = _Clock()
    for node, kind in shape.kinds.items():
        if kind == "src":
            push = calls[node]
            for i in range(n):
                push(i)
    return clock.done(sum(totals.values()))


def _sink_call(totals: dict[str, int], node: str) -> Callable[[int], None]:
    total = 0

    def sink(x: int) -> None:
        nonlocal total
        total += x
        totals[node] = total

    return sink


def _inc_one(then: Callable[[int], None]) -> Callable[[int], None]:
    return lambda x: then(x + 1)


def _inc_many(after: list[Callable[[int], None]], inc: bool) -> Callable[[int], None]:
    def fan(x: int) -> None:
        y = x + 1 if inc else x
        for call in after:
            call(y)

    return fan


# -- asyncio ---------------------------------------------------------------------------


_END: Any = None


async def _aio(shape: Shape, n: int, buffer: int, batched: bool) -> tuple[float, float, int]:
    size = buffer if batched else 1
    queues = {
        node: asyncio.Queue(maxsize=1 if batched else buffer)
        for node, kind in shape.kinds.items()
        if kind != "src"
    }
    totals: list[int] = []
    clock = _Clock()
    async with asyncio.TaskGroup() as group:
        for node, kind in shape.kinds.items():
            outs = [queues[s] for s in shape.successors(node)]
            if kind == "src":
                step = _aio_src_batched if batched else _aio_src
                group.create_task(step(outs, n, size))
            elif kind == "inc":
                step = _aio_inc_batched if batched else _aio_inc
                group.create_task(step(queues[node], outs, len(shape.predecessors(node))))
            else:
                step = _aio_sink_batched if batched else _aio_sink
                group.create_task(step(queues[node], len(shape.predecessors(node)), totals))
    return clock.done(sum(totals))


async def _aio_src(outs: list[asyncio.Queue[Any]], n: int, size: int) -> None:
    for i in range(n):
        for q in outs:
            await q.put(i)
    for q in outs:
        await q.put(_END)


async def _aio_inc(q: asyncio.Queue[Any], outs: list[asyncio.Queue[Any]], ends: int) -> None:
    while True:
        x = await q.get()
        if x is _END:
            ends -= 1
            if not ends:
                for out in outs:
                    await out.put(_END)
                return
            continue
        for out in outs:
            await out.put(x + 1)


async def _aio_sink(q: asyncio.Queue[Any], ends: int, totals: list[int]) -> None:
    total = 0
    while True:
        x = await q.get()
        if x is _END:
            ends -= 1
            if not ends:
                totals.append(total)
                return
            continue
        total += x


async def _aio_src_batched(outs: list[asyncio.Queue[Any]], n: int, size: int) -> None:
    for start in range(0, n, size):
        batch = list(range(start, min(start + size, n)))
        for q in outs:
            await q.put(batch)
    for q in outs:
        await q.put(_END)


async def _aio_inc_batched(
    q: asyncio.Queue[Any], outs: list[asyncio.Queue[Any]], ends: int
) -> None:
    while True:
        batch = await q.get()
        if batch is _END:
            ends -= 1
            if not ends:
                for out in outs:
                    await out.put(_END)
                return
            continue
        done = [x + 1 for x in batch]
        for out in outs:
            await out.put(done)


async def _aio_sink_batched(q: asyncio.Queue[Any], ends: int, totals: list[int]) -> None:
    total = 0
    while True:
        batch = await q.get()
        if batch is _END:
            ends -= 1
            if not ends:
                totals.append(total)
                return
            continue
        for x in batch:
            total += x


def run_asyncio_queue(shape: Shape, n: int, buffer: int) -> tuple[float, float, int]:
    return asyncio.run(_aio(shape, n, buffer, batched=False))


def run_asyncio_batched(shape: Shape, n: int, buffer: int) -> tuple[float, float, int]:
    return asyncio.run(_aio(shape, n, buffer, batched=True))


# -- trio ------------------------------------------------------------------------------


async def _trio(shape: Shape, n: int, buffer: int, batched: bool) -> tuple[float, float, int]:
    channels = {
        node: trio.open_memory_channel[Any](0 if batched else buffer)
        for node, kind in shape.kinds.items()
        if kind != "src"
    }
    totals: list[int] = []
    clock = _Clock()
    async with trio.open_nursery() as nursery:
        for node, kind in shape.kinds.items():
            outs = [channels[s][0].clone() for s in shape.successors(node)]
            if kind == "src":
                nursery.start_soon(_trio_src, outs, n, buffer if batched else 0)
            elif kind == "inc":
                step = _trio_inc_batched if batched else _trio_inc
                nursery.start_soon(step, channels[node][1], outs)
            else:
                nursery.start_soon(_trio_sink, channels[node][1], totals, batched)
        for send, _ in channels.values():
            send.close()  # the clones keep each channel open until its producers end
    return clock.done(sum(totals))


async def _trio_src(outs: list[trio.MemorySendChannel[Any]], n: int, size: int) -> None:
    try:
        if size:
            for start in range(0, n, size):
                batch = list(range(start, min(start + size, n)))
                for out in outs:
                    await out.send(batch)
        else:
            for i in range(n):
                for out in outs:
                    await out.send(i)
    finally:
        for out in outs:
            out.close()


async def _trio_inc(
    recv: trio.MemoryReceiveChannel[Any], outs: list[trio.MemorySendChannel[Any]]
) -> None:
    try:
        async for x in recv:
            for out in outs:
                await out.send(x + 1)
    finally:
        for out in outs:
            out.close()


async def _trio_inc_batched(
    recv: trio.MemoryReceiveChannel[Any], outs: list[trio.MemorySendChannel[Any]]
) -> None:
    try:
        async for batch in recv:
            done = [x + 1 for x in batch]
            for out in outs:
                await out.send(done)
    finally:
        for out in outs:
            out.close()


async def _trio_sink(
    recv: trio.MemoryReceiveChannel[Any], totals: list[int], batched: bool
) -> None:
    total = 0
    async for got in recv:
        if batched:
            for x in got:
                total += x
        else:
            total += got
    totals.append(total)


def run_trio_channels(shape: Shape, n: int, buffer: int) -> tuple[float, float, int]:
    return trio.run(_trio, shape, n, buffer, False)


def run_trio_batched(shape: Shape, n: int, buffer: int) -> tuple[float, float, int]:
    return trio.run(_trio, shape, n, buffer, True)


PEERS: dict[str, Callable[[Shape, int, int], tuple[float, float, int]]] = {
    "plain": run_plain,
    "asyncio-batched": run_asyncio_batched,
    "trio-batched": run_trio_batched,
    "asyncio-queue": run_asyncio_queue,
    "trio-channels": run_trio_channels,
}


# -- latency: one item at a time through four stages ------------------------------------


async def _aio_latency(n: int) -> list[float]:
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=100) for _ in range(5)]
    done = asyncio.Event()
    sent = [0.0]
    samples: list[float] = []

    async def stage(q: asyncio.Queue[Any], out: asyncio.Queue[Any]) -> None:
        while True:
            x = await q.get()
            await out.put(x + 1)

    async def sink(q: asyncio.Queue[Any]) -> None:
        while True:
            await q.get()
            samples.append(time.perf_counter() - sent[0])
            done.set()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(stage(queues[i], queues[i + 1])) for i in range(4)]
        tasks.append(group.create_task(sink(queues[4])))
        for i in range(n):
            done.clear()
            sent[0] = time.perf_counter()
            await queues[0].put(i)
            await done.wait()
        for task in tasks:
            task.cancel()
    return samples


def latency_asyncio_queue(n: int) -> list[float]:
    return asyncio.run(_aio_latency(n))
