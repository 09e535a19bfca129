"""One view of a graph spread over processes, through the Redis its remote links share.

A dashboard keeps a beacon key (``actorflow:<graph>:dashboard``) alive while it runs.
Every process of the graph that has remote links looks for it once a second; while it
is there, the process publishes its view twice a second (see :class:`~._tracker.Tracker`) under
``actorflow:<graph>:status:<host:pid>`` with an expiry, and names itself in the graph's
registry (the set ``actorflow:<graph>:processes``); the dashboard reads the views the
registry names and takes out those whose view has expired. No ``SCAN``: a reading costs
the same in a Redis of millions of keys, and a graph's name is never taken as a pattern.
Nobody watching costs a process one ``EXISTS`` a second and no snapshot; a process
that dies leaves a key that expires. Redis being away is waited out in silence: watching
must never trouble the graph.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from .._exceptions import describe
from ._tracker import Tracker

if TYPE_CHECKING:
    import structlog

__all__ = [
    "PUBLISH_EVERY",
    "TTL",
    "WATCHED_EVERY",
    "beacon_key",
    "process_name",
    "publish",
    "put_view",
    "read_peers",
    "registry_key",
    "status_key",
    "views_of",
]

PUBLISH_EVERY = 1.0
"""Seconds between two looks for the beacon while nobody watches."""

WATCHED_EVERY = 0.5
"""Seconds between two publications while a dashboard watches (as often as it refreshes)."""

FIRST_LOOK = 0.2
"""Seconds before the first look for the beacon: a run over sooner would barely show on
a page (it refreshes every :data:`WATCHED_EVERY`), and a short run then pays no
connection for a dashboard nobody opened (1-3 ms of a 20 ms run)."""

TTL = 10
"""Seconds a published view, or the beacon, lives unless renewed."""

FINAL_TTL = 60
"""Seconds the last view of a process that ended lives (the page shows how it ended)."""


FINAL_WITHIN = 2.0
"""Seconds an ending process gives to writing its last view (Redis may be away)."""


def process_name() -> str:
    """This process, as a page shows it: ``host:pid``."""
    return f"{platform.node()}:{os.getpid()}"


def beacon_key(graph: str) -> str:
    return f"actorflow:{graph}:dashboard"


def status_key(graph: str, process: str) -> str:
    return f"actorflow:{graph}:status:{process}"


def registry_key(graph: str) -> str:
    """The set of the processes that have published a view of ``graph``."""
    return f"actorflow:{graph}:processes"


async def put_view(client: Any, graph: str, view: dict[str, Any], ttl: int) -> None:
    """Publish ``view`` (of process ``view["process"]``) for ``ttl`` seconds and name its
    process in the registry (which outlives any view, then expires too)."""
    process = view["process"]
    await client.set(status_key(graph, process), json.dumps(view).encode(), ex=ttl)
    await client.sadd(registry_key(graph), [process])
    await client.expire(registry_key(graph), FINAL_TTL + TTL)


async def views_of(client: Any, graph: str) -> dict[str, dict[str, Any]]:
    """Every view published for ``graph`` now, by process; the processes whose view has
    expired are taken out of the registry."""
    found = await client.smembers(registry_key(graph))
    names = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in found)
    if not names:
        return {}
    values = await client.mget([status_key(graph, name) for name in names])
    gone = [name for name, value in zip(names, values, strict=True) if value is None]
    if gone:
        await client.srem(registry_key(graph), gone)
    return _views(values)


@asynccontextmanager
async def _client(url: str) -> AsyncIterator[Any]:
    from .._redis._client import connect

    async with connect(url, reply_within=2 * PUBLISH_EVERY) as client:
        yield client


async def publish(
    tracker: Tracker, url: str, graph: str, log: structlog.typing.FilteringBoundLogger
) -> None:
    """Publish this process's view while a dashboard watches, until cancelled; then, if
    one watched, a last view that says how it ended."""
    process = process_name()
    published = False
    await trio.sleep(FIRST_LOOK)
    try:
        while True:
            try:
                async with _client(url) as client:
                    while True:
                        watched = bool(await client.exists([beacon_key(graph)]))
                        if watched:
                            view = {**tracker.update(), "process": process}
                            await put_view(client, graph, view, TTL)
                            published = True
                        await trio.sleep(WATCHED_EVERY if watched else PUBLISH_EVERY)
            except Exception as exc:
                log.debug("dashboard.publish_failed", error=describe(exc))
            await trio.sleep(PUBLISH_EVERY)
    finally:
        if published:
            await _publish_last(tracker, url, graph, process, log)


async def _publish_last(
    tracker: Tracker,
    url: str,
    graph: str,
    process: str,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    """Write the last view for :data:`FINAL_TTL` seconds, shielded from the cancellation
    that ends the run and through a client of its own (the running one is being torn
    down with the rest), for at most :data:`FINAL_WITHIN` seconds."""
    with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WITHIN):
        try:
            async with _client(url) as client:
                view = {**tracker.update(), "process": process}
                await put_view(client, graph, view, FINAL_TTL)
        except Exception as exc:
            log.debug("dashboard.publish_failed", error=describe(exc))


async def read_peers(
    url: str,
    graph: str,
    take: Callable[[dict[str, dict[str, Any]]], None],
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    """Keep the beacon alive and hand ``take``, twice a second, every view published for
    ``graph`` by process (an unreadable one is left out), until cancelled."""
    while True:
        try:
            async with _client(url) as client:
                while True:
                    await client.set(beacon_key(graph), b"1", ex=TTL)
                    take(await views_of(client, graph))
                    await trio.sleep(WATCHED_EVERY)
        except Exception as exc:
            log.debug("dashboard.read_failed", error=describe(exc))
        await trio.sleep(PUBLISH_EVERY)


def _views(values: Any) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    for value in values:
        try:
            view = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(view, dict) and isinstance(view.get("process"), str):
            views[view["process"]] = view
    return views
