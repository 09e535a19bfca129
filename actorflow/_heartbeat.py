"""Heartbeats: a status snapshot every few seconds, logged and sent to reporters.

A heartbeat is :meth:`System.status` turned into plain JSON-ready data, with the host,
the actorflow version and when the system started. It is logged as a
``system.heartbeat`` event and handed to every reporter; a reporter that is slow or
failing never holds the graph back: each report runs in its own task, bounded by the
heartbeat interval.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._checks import check_seconds
from ._exceptions import describe
from ._logging import enabled_for, get_logger
from ._reportable import MAX_TASK, json_ready, text
from ._status import SystemStatus
from ._urls import hide_secrets, redact_url
from ._version import __version__

if TYPE_CHECKING:
    import structlog

__all__ = ["HttpReporter", "Reporter", "beat", "snapshot"]

_HEARTBEAT_LOGGED = ("task", "state", "received", "mailbox_depth", "progress", "info")
"""The per-actor fields a ``system.heartbeat`` event carries (reporters get them all)."""


class Reporter(Protocol):
    """Receives every heartbeat snapshot."""

    async def report(self, snapshot: dict[str, Any]) -> None: ...


def snapshot(status: SystemStatus, *, started_at: float, version: str) -> dict[str, Any]:
    """The status as JSON-ready data, with host, version and start time."""
    return {
        "graph": status.graph,
        "state": status.state.value,
        "host": platform.node(),
        "version": version,
        "started_at": started_at,
        "time": time.time(),
        "dropped": status.dropped,
        "actors": {
            name: {
                "kind": actor.kind,
                "task": text(actor.task, MAX_TASK),
                "state": actor.state.value,
                "blocked_on": actor.blocked_on,
                "fused_into": actor.fused_into,
                "received": actor.received,
                "emitted": actor.emitted,
                "filtered": actor.filtered,
                "dropped": sum(actor.dropped.values()),
                "errors": actor.errors,
                "restarts": actor.restarts,
                "dead_lettered": actor.dead_lettered,
                "mailbox_depth": actor.mailbox_depth,
                "progress": json_ready(actor.progress),
                "info": json_ready(actor.info),
            }
            for name, actor in status.actors.items()
        },
    }


async def beat(
    status: Callable[[], SystemStatus],
    *,
    interval: float,
    started_at: float,
    reporters: Sequence[Reporter],
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    """Every ``interval`` seconds, until cancelled: log a snapshot of ``status()`` and
    hand it to each reporter.

    Nobody reads it when there is no reporter and info events are filtered out (the
    default): then no snapshot is taken, which for 100,000 actors is seconds of work.
    """
    async with trio.open_nursery() as reports:
        while True:
            await trio.sleep(interval)
            logged = enabled_for(log, logging.INFO)
            if not (reporters or logged):
                continue
            data = snapshot(status(), started_at=started_at, version=__version__)
            if logged:
                log.info(
                    "system.heartbeat",
                    state=data["state"],
                    actors={
                        name: {key: actor[key] for key in _HEARTBEAT_LOGGED}
                        for name, actor in data["actors"].items()
                    },
                )
            for reporter in reporters:
                reports.start_soon(_report, reporter, data, interval, log)
            del data  # the reports hold it as long as they need; the next beat makes anew


async def _report(
    reporter: Reporter,
    data: dict[str, Any],
    limit: float,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    with trio.move_on_after(limit) as scope:
        try:
            await reporter.report(data)
        except Exception as exc:
            log.warning("reporter.failed", reporter=repr(reporter), error=describe(exc))
    if scope.cancelled_caught:
        log.warning("reporter.slow", reporter=repr(reporter), limit=limit)


class HttpReporter:
    """POSTs each snapshot as JSON to ``url`` (needs ``pip install actorflow[http]``).

    When the server cannot be reached it logs one warning (``reporter.failing``), keeps
    trying at every heartbeat, and logs ``reporter.recovered`` once it answers again.
    """

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("HttpReporter needs httpx: pip install 'actorflow[http]'") from exc
        check_seconds("timeout", timeout)
        self.url = url
        self.timeout = timeout
        self.failures = 0
        self.sent = 0
        self._client = httpx.AsyncClient(timeout=timeout)
        self._httpx = httpx
        self.log = get_logger(reporter="http", url=redact_url(url))

    async def report(self, snapshot: dict[str, Any]) -> None:
        try:
            response = await self._client.post(self.url, json=snapshot)
            response.raise_for_status()
        except self._httpx.HTTPError as exc:
            self.failures += 1
            if self.failures == 1:
                error = hide_secrets(f"{type(exc).__name__}: {exc}", self.url)
                self.log.warning("reporter.failing", error=error)
            return
        self.sent += 1
        if self.failures:
            self.log.info("reporter.recovered", after_failures=self.failures)
            self.failures = 0

    def __repr__(self) -> str:
        return f"HttpReporter({redact_url(self.url)!r})"

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def __aenter__(self) -> HttpReporter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
