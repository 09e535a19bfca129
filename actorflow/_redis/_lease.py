"""The lease by which one instance of a module that is not shared consumes its stream alone.

The lease is a key holding the consumer's name, with an expiry of ``claim_idle`` (one
second at least), renewed every third of that. An outage of Redis longer than the
expiry lets the key lapse: the holder then takes it again, unless another instance took
it meanwhile, in which case it has truly been replaced and stops.

A standby must not be the one to take a lease that lapsed in an outage: a command it
sent while Redis was paused runs the moment Redis comes back, before its client even
knows the outage ended. So Redis itself keeps a clock beside the lease (``:lease:clock``,
when a lease script last ran, by Redis's own time): a standby's take that finds nobody
ran one for a whole lease period sees an outage, not a dead holder, and every take waits
a lease period and the longest retry delay more, time for a living holder to renew.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import trio

from ._client import MAX_DELAY, Retrying

if TYPE_CHECKING:
    import coredis

__all__ = ["Lease", "renew", "try_take"]

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = tonumber(redis.call('HGET', KEYS[2], 'seen'))
local grace = tonumber(redis.call('HGET', KEYS[2], 'grace'))
redis.call('HSET', KEYS[2], 'seen', now)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
"""
"""Shared head of the lease scripts: Redis's time now, when a lease script last ran
(``seen``), until when takes wait after an outage (``grace``); this one is seen now."""

_RENEW = (
    _CLOCK
    + """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not owner then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 2
end
return 0
"""
)
"""Renew the lease if it is ours, take it again if it lapsed (2), or say it is another's (0)."""

_TAKE = (
    _CLOCK
    + """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return false
end
if owner then
    redis.call('HSET', KEYS[2], 'waiting', now)
    return owner
end
if seen and now - seen > tonumber(ARGV[2]) then
    grace = now + tonumber(ARGV[3])
    redis.call('HSET', KEYS[2], 'grace', grace)
end
if grace and now < grace then return ARGV[5] end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
)
"""Take the lease (also when a retried call already took it): false, or the owner's
name, or ARGV[5] while a lease that lapsed in an outage is left to its holder."""

_OUTAGE = "(its holder, after an outage)"
_CLOCK_MS = 24 * 3600 * 1000
"""How long the clock outlives the last lease script (a consumer that never released)."""

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local waiting = tonumber(redis.call('HGET', KEYS[2], 'waiting'))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if waiting and now - waiting <= 2 * tonumber(ARGV[2]) then
    redis.call('RPUSH', KEYS[3], '1')
    redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return 1
"""
"""Delete the lease if it is ours and, if a standby has lately found it held (its take
notes when, as ``waiting``), wake it: it pops ``:lease:released``, which expires after a
lease period if nobody does."""


async def renew(client: coredis.Redis[bytes], lease: Lease) -> int:
    """Run the renewal script: 1 renewed, 2 taken again after it lapsed, 0 another's."""
    return cast("int", await client.eval(_RENEW, lease.keys, lease.args))


def ended_here(owner: str) -> bool:
    """Whether ``owner`` (``host:pid:...``) is a process of this machine that has
    ended: its lease need not lapse, so a process restarted after a kill (by a service
    manager, say) takes over at once instead of waiting ``claim_idle``."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's; or no way to tell
        return False
    return False


async def free_ended(
    client: coredis.Redis[bytes], lease: Lease, owner: str, hint: str | None = None
) -> None:
    """Delete ``lease`` if ``owner``, a holder found gone (its process ended, unless
    ``hint`` says otherwise), still holds it."""
    hint = hint or "its holder's process has ended"
    lease.log.info("remote.lease_freed", owner=owner, hint=hint)
    await client.eval(_RELEASE, [*lease.keys, f"{lease.key}:released"], [owner, lease.ms])


class Lease:
    """One consumer's hold on a stream's lease."""

    def __init__(self, key: str, owner: str, claim_idle: float, target: str, log: Any) -> None:
        self.key = key
        self.keys = [key, f"{key}:clock"]
        self.owner = owner
        self.ms = max(int(claim_idle * 1000), 1000)
        self.target = target
        self.log = log
        self.args: list[str | int] = [
            owner,
            self.ms,
            self.ms + int(MAX_DELAY * 1000),
            _CLOCK_MS,
            _OUTAGE,
        ]

    async def take(
        self,
        client: coredis.Redis[bytes],
        retry: Retrying,
        nap: Callable[[float], Awaitable[object]] = trio.sleep,
    ) -> None:
        """Wait until this consumer holds the lease (a standby until the holder stops).

        A lease that lapsed while Redis was away is left alone for a lease period and
        the longest retry delay after it came back: its holder, if it lives, takes it
        again first."""
        waiting = False
        while True:
            owner: Any
            if retry.calm(self.ms / 1000 + MAX_DELAY):
                owner = await retry(lambda: client.eval(_TAKE, self.keys, self.args))
                if not owner:
                    if waiting:
                        self.log.info("remote.lease_taken")
                    return
            else:
                owner = await retry(lambda: client.get(self.key))
            if isinstance(owner, bytes):
                owner = owner.decode(errors="replace")
            if owner is not None and ended_here(owner):
                await retry(functools.partial(free_ended, client, self, owner))
                continue
            if owner is not None and not waiting:
                waiting = True
                self.log.warning(
                    "remote.standby",
                    owner=owner,
                    hint="the module is not shared: this instance waits to take over",
                )
            await nap(self.ms / 3000)  # or less: woken when the holder releases it

    def release(self, pipe: Any) -> None:
        """Give the lease up, if it is still ours (a standby need not wait for it to
        lapse, and is woken through ``<lease>:released``), as a command of the pipeline
        ``pipe``, sent with others."""
        pipe.eval(_RELEASE, [*self.keys, f"{self.key}:released"], [self.owner, self.ms])


async def try_take(client: coredis.Redis[bytes], lease: Lease) -> str | None:
    """Take the lease if it is free (or ours): None, else who holds it."""
    owner = await client.eval(_TAKE, lease.keys, lease.args)
    if not owner:
        return None
    return owner.decode() if isinstance(owner, bytes) else str(owner)
