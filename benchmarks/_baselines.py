"""Reference baselines for actorflow pipeline benchmarks.

Each baseline runs the same pipeline without actorflow, so actorflow's numbers
can be compared against plain trio and plain asyncio:

    source -> 4 processors -> sink

connected by 5 bounded channels of capacity ``buffer``. The source sends the
ints ``0..n-1``; each processor forwards ``x + 1``; the sink sums what it
receives. Each function returns the wall-clock seconds (``time.perf_counter``)
the pipeline took, measured inside the event loop so loop startup is excluded,
and asserts the sink's total so a broken baseline fails loudly.
"""

from __future__ import annotations

import asyncio
import enum
import time

import trio

N_PROCESSORS = 4


def _expected_total(n: int) -> int:
    """Return the sum the sink must see for ``n`` messages."""
    return sum(range(n)) + N_PROCESSORS * n


# --------------------------------------------------------------------------
# trio: naive memory-channel pipeline
# --------------------------------------------------------------------------


async def _trio_source(send: trio.MemorySendChannel[int], n: int) -> None:
    """Send ``0..n-1``, then close the channel to signal end of stream."""
    async with send:
        for i in range(n):
            await send.send(i)


async def _trio_processor(
    recv: trio.MemoryReceiveChannel[int], send: trio.MemorySendChannel[int]
) -> None:
    """Forward ``x + 1`` for every ``x`` received; close downstream at end."""
    async with recv, send:
        async for x in recv:
            await send.send(x + 1)


async def _trio_sink(recv: trio.MemoryReceiveChannel[int], out: list[int]) -> None:
    """Sum everything received and store the total in ``out``."""
    total = 0
    async with recv:
        async for x in recv:
            total += x
    out.append(total)


async def _trio_pipeline(n: int, buffer: int) -> tuple[float, int]:
    """Run the trio pipeline; return ``(elapsed_seconds, sink_total)``."""
    out: list[int] = []
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        send, recv = trio.open_memory_channel[int](buffer)
        nursery.start_soon(_trio_source, send, n)
        for _ in range(N_PROCESSORS):
            next_send, next_recv = trio.open_memory_channel[int](buffer)
            nursery.start_soon(_trio_processor, recv, next_send)
            recv = next_recv
        nursery.start_soon(_trio_sink, recv, out)
    elapsed = time.perf_counter() - start
    return elapsed, out[0]


def run_trio_channels(n: int, buffer: int = 100) -> float:
    """Run the pipeline on trio memory channels; return elapsed seconds."""
    elapsed, total = trio.run(_trio_pipeline, n, buffer)
    assert total == _expected_total(n), (total, _expected_total(n))
    return elapsed


# --------------------------------------------------------------------------
# asyncio: Queue pipeline with an end-of-stream sentinel
# --------------------------------------------------------------------------


class _End(enum.Enum):
    """End-of-stream sentinel for the asyncio pipeline."""

    END = enum.auto()


_Item = int | _End


async def _aio_source(q: asyncio.Queue[_Item], n: int) -> None:
    """Put ``0..n-1``, then the end-of-stream sentinel."""
    for i in range(n):
        await q.put(i)
    await q.put(_End.END)


async def _aio_processor(inq: asyncio.Queue[_Item], outq: asyncio.Queue[_Item]) -> None:
    """Forward ``x + 1`` for every ``x``; pass the sentinel on and stop."""
    while True:
        x = await inq.get()
        if x is _End.END:
            await outq.put(_End.END)
            return
        await outq.put(x + 1)


async def _aio_sink(q: asyncio.Queue[_Item]) -> int:
    """Sum everything received until the sentinel; return the total."""
    total = 0
    while True:
        x = await q.get()
        if x is _End.END:
            return total
        total += x


async def _aio_pipeline(n: int, buffer: int) -> tuple[float, int]:
    """Run the asyncio pipeline; return ``(elapsed_seconds, sink_total)``."""
    queues: list[asyncio.Queue[_Item]] = [
        asyncio.Queue(maxsize=buffer) for _ in range(N_PROCESSORS + 1)
    ]
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_aio_source(queues[0], n))
        for i in range(N_PROCESSORS):
            tg.create_task(_aio_processor(queues[i], queues[i + 1]))
        sink = tg.create_task(_aio_sink(queues[-1]))
    elapsed = time.perf_counter() - start
    return elapsed, sink.result()


def run_asyncio_queue(n: int, buffer: int = 100) -> float:
    """Run the pipeline on asyncio queues; return elapsed seconds."""
    elapsed, total = asyncio.run(_aio_pipeline(n, buffer))
    assert total == _expected_total(n), (total, _expected_total(n))
    return elapsed


if __name__ == "__main__":
    N = 200_000
    for name, fn in (
        ("trio channels", run_trio_channels),
        ("asyncio queue", run_asyncio_queue),
    ):
        secs = fn(N)
        print(f"{name:>14}: {N / secs:>12,.0f} msgs/s  ({secs:.3f} s, n={N:,})")
