"""One producer per stream: a second one fails at once, naming the stream.

Two producers on one stream used to break the run silently: each opened a generation,
the first's end ended the consumer, and the second waited for room for ever. The
producer holds ``<stream>:producer:lease`` (kept from a :class:`~._keeper.Keeper`
thread, so a busy loop does not lose it; it lapses ``claim_idle`` after its process
dies, at once for a producer restarted on the same machine, which sees that the holder's
process has ended; one restarted elsewhere is refused until then).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import trio

from .._exceptions import RunError
from .._specs import Remote
from ._client import Retrying
from ._keeper import Keeper
from ._lease import Lease, ended_here, free_ended, try_take

__all__ = ["sole_producer"]


@contextlib.asynccontextmanager
async def sole_producer(
    client: Any, retry: Retrying, *, url: str, stream: str, remote: Remote, source: str, log: Any
) -> AsyncIterator[None]:
    """Hold the stream's producer lease for the block; fail if another producer holds
    it; the block fails if the lease is lost."""
    name = f"{socket.gethostname()}:{os.getpid()}:producer"
    lease = Lease(f"{stream}:producer:lease", name, remote.claim_idle, source, log)
    await _take(client, retry, lease, stream)
    keeper = Keeper(
        url=url,
        stream=stream,
        group="",
        consumer=name,
        claim_idle=remote.claim_idle,
        timeout=remote.timeout,
        poll=remote.poll,
        lease=lease,
        held=list,
        log=log,
    )
    keeper.start()
    try:
        async with trio.open_nursery() as watching:
            watching.start_soon(keeper.watch)
            yield
            watching.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await keeper.stop()
            with contextlib.suppress(Exception):
                async with client.pipeline(transaction=False) as pipe:
                    lease.release(pipe)


async def _take(client: Any, retry: Retrying, lease: Lease, stream: str) -> None:
    owner = await retry(lambda: try_take(client, lease))
    if owner is not None and ended_here(owner):  # restarted after a kill: no need to wait
        await retry(functools.partial(free_ended, client, lease, owner))
        owner = await retry(lambda: try_take(client, lease))
    if owner is not None:
        raise RunError(
            lease.target,
            f"stream {stream!r} already has a producer ({owner}): a stream takes one "
            f"producer at a time (if that one was killed, its claim lapses within "
            f"{lease.ms / 1000:g} s)",
        )
