"""One producer per stream: a second one fails at once, naming the stream.

Two producers on one stream used to break the run silently: each opened a generation,
the first's end ended the consumer, and the second waited for room for ever. The
producer holds ``<stream>:producer:lease`` (kept from a :class:`~._keeper.Keeper`
thread, so a busy loop does not lose it), named for the producer itself, so a second
producer in the same process is refused too. It gives the claim up when it ends, even
cancelled; a claim left by a killed process lapses ``claim_idle`` later, at once for a
producer started again on the same machine, which sees that the holder's process has
ended; one started elsewhere is refused until then.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import trio

from .._exceptions import RunError
from .._specs import Remote
from ._client import Retrying
from ._keeper import Keeper, give_up
from ._lease import Lease, ended_here, free_ended, try_take

__all__ = ["sole_producer"]

_ABANDONED: set[str] = set()
"""Claims of producers of this process that have ended without releasing them (Redis
did not answer then): nothing renews them, so a producer of the stream opened next in
this process frees one at once, as one restarted after a kill frees its dead holder's."""


@contextlib.asynccontextmanager
async def sole_producer(
    client: Any, retry: Retrying, *, url: str, stream: str, remote: Remote, source: str, log: Any
) -> AsyncIterator[None]:
    """Hold the stream's producer lease for the block; fail if another producer holds
    it; the block fails if the lease is lost.

    The claim names this producer (``host:pid:token:producer``), not just its process:
    a second producer of the stream in the same process (another system of the graph)
    is refused too."""
    name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}:producer"
    lease = Lease(f"{stream}:producer:lease", name, remote.claim_idle, source, log)
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
    graceful = False
    try:  # from the take on: one cancelled after Redis took the claim gives it up too
        await _take(client, retry, lease, stream)
        keeper.start()
        async with trio.open_nursery() as watching:
            watching.start_soon(keeper.watch)
            yield
            watching.cancel_scope.cancel()
        graceful = True
    finally:
        released = await give_up(
            keeper,
            functools.partial(_release, lease),
            client if graceful else None,
            url=url,
            reply_within=remote.timeout,
            log=lease.log,
        )
        if not released:
            # Not released, and no longer renewed: a producer of the stream opened next
            # here frees it at once (the set holds one name per failed release).
            _ABANDONED.add(lease.owner)


async def _release(lease: Lease, client: Any) -> None:
    async with client.pipeline(transaction=False) as pipe:
        lease.release(pipe)


async def _take(client: Any, retry: Retrying, lease: Lease, stream: str) -> None:
    owner = await retry(lambda: try_take(client, lease))
    # Restarted after a kill, or opened again here after a producer whose release
    # failed (Redis away when it ended): its holder is gone, no need to wait.
    if owner is not None and (ended_here(owner) or owner in _ABANDONED):
        hint = "left by an earlier producer of this process" if owner in _ABANDONED else None
        await retry(functools.partial(free_ended, client, lease, owner, hint))
        _ABANDONED.discard(owner)
        owner = await retry(lambda: try_take(client, lease))
    if owner is not None:
        raise RunError(
            lease.target,
            f"stream {stream!r} already has a producer ({owner}): a stream takes one "
            f"producer at a time (if that one was killed, its claim lapses within "
            f"{lease.ms / 1000:g} s)",
        )
