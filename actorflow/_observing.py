"""What a system shows of itself while it runs: its metrics endpoint, its spans and its
web dashboard, set up from its settings and ``open_system``'s arguments.

Kept apart from :mod:`actorflow._system` so the runner does not grow a branch per way of
watching it; each part imports its library only when asked for.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Protocol

import trio

from ._exceptions import describe

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from structlog.typing import FilteringBoundLogger

    from ._actor import DeadLetter
    from ._graph import Graph
    from ._settings import Settings
    from ._status import SystemStatus
    from ._tracing import Tracing
    from ._wiring import Wiring


class System(Protocol):
    """What of a running system its watchers read (:class:`actorflow.System`), named
    here so this module need not import the runner that imports it."""

    graph: Graph
    settings: Settings
    here: set[str]
    started_at: float
    log: FilteringBoundLogger
    metrics_address: str | None
    _wiring: Wiring
    _listeners: list[trio.SocketListener] | None
    _tracing: Tracing | None

    @property
    def dead_letters(self) -> tuple[DeadLetter, ...]: ...

    def status(self) -> SystemStatus: ...

    async def wait(self) -> None: ...


__all__ = ["observe", "watch_system"]


async def observe(
    system: System,
    owned: AsyncExitStack,
    provider: TracerProvider | None,
    dashboard: object,
) -> socket.socket | None:
    """Bind the dashboard's socket and the metrics endpoint (a port in use fails here,
    before any module is built) and set up tracing, as asked; the dashboard's socket."""
    listening = owned.enter_context(_listen(dashboard))
    settings = system.settings
    if settings.trace_ratio > 0:
        try:
            from ._tracing import Tracing
        except ImportError as exc:
            raise ImportError(
                f"trace_ratio={settings.trace_ratio:g} needs OpenTelemetry, which is not "
                "installed: pip install 'actorflow[otel]'"
            ) from exc
        system._tracing = Tracing.start(system.graph.name, settings.trace_ratio, provider)
    if settings.metrics is not None:
        from ._address import parse_address
        from ._metrics import bound, listen

        listeners = await listen(parse_address(settings.metrics, "metrics"))
        for listener in listeners:
            owned.push_async_callback(listener.aclose)
        system._listeners = listeners
        system.metrics_address = str(bound(listeners))
        system.log.info("metrics.serving", address=system.metrics_address)
    return listening


@contextmanager
def _listen(dashboard: object) -> Iterator[socket.socket | None]:
    """The dashboard's socket, bound (see :func:`open_system`), if one is asked for.

    Raises:
        ValueError: ``dashboard`` is not an address (TypeError: not even text).
    """
    if dashboard is None:
        yield None
        return
    from ._dashboard import bind, parse_address, require_extra

    address = parse_address(dashboard)
    require_extra()
    with bind(*address) as listening:
        yield listening


async def watch_system(
    system: System,
    listening: socket.socket | None,
    left: trio.Event,
    *,
    task_status: trio.TaskStatus[str | None],
) -> None:
    """Serve the dashboard, and publish this process's view for one elsewhere when the
    graph has remote links (see :mod:`actorflow._dashboard`), until the system has ended
    and its block has been ``left``. Without a dashboard here, the watcher (~3 ms of
    imports) is loaded only at its first look: a short run never loads it."""
    done = partial(_both, system.wait, left.wait)
    if listening is None:
        task_status.started(None)
        task_status = trio.TASK_STATUS_IGNORED
        with trio.move_on_after(FIRST_LOOK):
            await done()
            return
    from ._dashboard._tracker import Watched
    from ._dashboard._watch import watch

    urls = [system.settings.remote_url, *system.settings.reporters]
    urls += [link.remote.url for link in system.graph.links if link.remote is not None]
    watched = Watched(
        status=system.status,
        errors=partial(_errors, system),
        dead_letters=lambda: system.dead_letters,
        here=system.here,
        started_at=system.started_at,
        secrets=tuple(url for url in urls if url),
    )
    remote = _redis_url(urls) if system._wiring.pumps else None
    await watch(
        watched,
        system.graph,
        done=done,
        listening=listening,
        remote_url=remote,
        log=system.log,
        task_status=task_status,
    )


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

FIRST_LOOK = 1.0
"""Seconds before a process without a dashboard loads the watcher that publishes its
view (``actorflow._dashboard._peers`` looks for a dashboard 0.2 s later): a run over
sooner pays neither its imports (~3 ms) nor its connection, and a page that watches
from elsewhere shows the process about a second after it started."""


def _redis_url(urls: list[str | None]) -> str | None:
    """The first Redis URL of ``urls`` (a reporter's ``http://`` URL is none)."""
    return next((url for url in urls if url and url.lower().startswith(_REDIS_SCHEMES)), None)


async def _both(*waits: Callable[[], Awaitable[object]]) -> None:
    for wait in waits:
        await wait()


def _errors(system: System) -> Mapping[str, str]:
    """The last error of each actor whose module failed, in one line."""
    return {
        name: describe(actor.failure.__cause__ or actor.failure)
        for name, actor in system._wiring.actors.items()
        if actor.failure is not None
    }
