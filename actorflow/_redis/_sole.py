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

from .._exceptions import RunError, describe
from .._specs import Remote
from .._urls import hide_secrets
from ._client import Retrying, connect
from ._keeper import Keeper
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
        await _give_up(keeper, lease, client if graceful else None, url, remote.timeout)


async def _give_up(
    keeper: Keeper, lease: Lease, client: Any | None, url: str, reply_within: float
) -> None:
    """Also when cancelled: stop renewing, then release the claim, so a producer opened
    next (in this process too) need not wait ``claim_idle``. After a graceful end on the
    pump's ``client``; otherwise (or if that fails) on a client of its own, inside the
    shield: a cancellation may have broken the other's connections."""
    with trio.CancelScope(shield=True), trio.move_on_after(5) as scope:
        try:
            await keeper.stop()  # before the release: it would take the claim again
            if client is not None:
                with contextlib.suppress(Exception):
                    await _release(client, lease)
                    return
            async with connect(url, reply_within) as fresh:
                await _release(fresh, lease)
            return
        except Exception as exc:
            lease.log.warning("remote.cleanup_failed", error=hide_secrets(describe(exc), url))
    if scope.cancelled_caught:
        lease.log.warning("remote.cleanup_failed", error="Redis did not answer in 5 s")
    # Not released, and no longer renewed: a producer of the stream opened next here
    # frees it at once (the set holds one name per failed release: a few bytes).
    _ABANDONED.add(lease.owner)


async def _release(client: Any, lease: Lease) -> None:
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
