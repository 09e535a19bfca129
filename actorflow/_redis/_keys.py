"""A link's keys holding what actorflow never writes: one clear error naming the key.

Someone (a person, a script, another program under the same prefix) may set a link's
key to a value of the wrong type or form: a negative or textual run counter, a producer
state that is neither ``open:<run>`` nor ``closed:<run>``, a lease that is a list. The
scripts would then fail with Redis's words and a script hash, or never see the end of
the stream (a hang). :data:`CHECK` looks at every key of the link at once;
:func:`checked` runs it when a pump starts and again when Redis refuses a command.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .._exceptions import RunError
from .._urls import redact_url
from ._client import Retrying, load_coredis
from ._scripts import link_keys

__all__ = ["CHECK", "all_keys", "check_keys", "checked", "group_kept"]

CHECK = """
local forms = {
    {'stream'}, {'string', '^%d+$'}, {'string', '^open:%d+$', '^closed:%d+$'},
    {'string', '^%d+$'}, {'string'}, {'hash'}, {'list'}, {'string'}, {'hash'}, {'list'},
}
for i, key in ipairs(KEYS) do
    local form = forms[i]
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'none' then
        if kind ~= form[1] then return {key, 'a ' .. kind .. ', not a ' .. form[1]} end
        if form[2] then
            local value = redis.call('GET', key)
            local fits = string.match(value, form[2]) or (form[3] and string.match(value, form[3]))
            if not fits then return {key, 'the value ' .. string.sub(value, 1, 40)} end
        end
    end
end
return false
"""
"""The first key of a link (KEYS = :func:`all_keys`) that holds what actorflow never
writes: ``{key, what it holds}``, or false."""


def all_keys(stream: str, group: str) -> list[str]:
    """Every key of a link, in the order :data:`CHECK` expects."""
    return [
        *link_keys(stream, group),
        f"{stream}:lease",
        f"{stream}:lease:clock",
        f"{stream}:lease:released",
        f"{stream}:producer:lease",
        f"{stream}:producer:lease:clock",
        f"{stream}:producer:lease:released",
    ]


async def check_keys(client: Any, stream: str, group: str, target: str) -> None:
    """Raise a ``RunError`` naming the first key of the link that holds a wrong value."""
    bad = await client.eval(CHECK, all_keys(stream, group), [])
    if bad:
        key, what = (part.decode() if isinstance(part, bytes) else str(part) for part in bad)
        raise RunError(
            target,
            f"Redis key {key!r} holds {what}, which actorflow never writes there: "
            "delete it (or the link's keys) and run again",
        )


def _refusal(exc: BaseException) -> bool:
    """Whether ``exc`` (or one inside it) is Redis refusing a command."""
    refused = load_coredis().exceptions.ResponseError
    if isinstance(exc, refused):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_refusal(inner) for inner in exc.exceptions)
    return isinstance(exc.__cause__, refused)


@contextlib.asynccontextmanager
async def checked(
    client: Any, retry: Retrying, stream: str, group: str, target: str, url: str
) -> AsyncIterator[None]:
    """Check the link's keys now, and again if Redis refuses a command in the block: an
    error naming the key, rather than Redis's words or a wait for ever."""
    try:
        await retry(lambda: check_keys(client, stream, group, target))
    except load_coredis().exceptions.ResponseError as exc:  # the first command: SELECT
        raise RunError(
            target,
            f"Redis at {redact_url(url)!r} (the link's url, or the settings' remote_url) "
            f"refused the link's first command: {exc}",
        ) from exc
    try:
        yield
    except Exception as exc:
        if not _refusal(exc):
            raise
        try:
            await check_keys(client, stream, group, target)
            await group_kept(client, stream, group, target)
        except RunError as named:
            raise named from exc
        raise


async def group_kept(client: Any, stream: str, group: str, target: str) -> None:
    """Raise a ``RunError`` if ``stream`` has lost its consumer group (the stream was
    deleted, or the group destroyed, during the run): a producer waiting for room would
    otherwise wait for ever, as nothing reads the stream any more."""
    groups = await client.xinfo_groups(stream) if await client.exists([stream]) else ()
    names = {entry.get(b"name", entry.get("name")) for entry in groups}
    if group.encode() not in names and group not in names:
        raise RunError(
            target,
            f"stream {stream!r} lost its consumer group {group!r} while the run was "
            "under way (the stream deleted, or the group destroyed?): nothing reads what "
            "is written, and what was in it is lost",
        )
