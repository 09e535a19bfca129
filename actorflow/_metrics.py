"""Prometheus metrics of a running system, served on its own trio loop.

Nothing is counted for Prometheus while items flow: a :class:`StatusCollector` reads
:meth:`System.status` (the counters every actor and link keeps anyway) when a scrape
comes, so the hot path pays nothing but the per-batch handling times
(:mod:`actorflow._timings`). Each system has a :class:`~prometheus_client.CollectorRegistry`
of its own: two systems in one process never share a series.

The endpoint is a small HTTP/1.1 server on :mod:`h11` (the sans-I/O HTTP library trio's
own documentation builds servers on) and :func:`trio.serve_listeners`: it runs in the
system's nursery, on the loop that runs the actors, so a scrape reads the counters
between two batches, never while an actor changes them, and needs no thread or lock.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Final

import h11
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from ._address import Address
from ._exceptions import ServeError
from ._logging import get_logger
from ._status import ActorState, ActorStatus, LinkStatus, SystemState, SystemStatus
from ._timings import HandlingTimes

__all__ = ["StatusCollector", "listen", "registry_for", "serve"]

_ACTOR: Final = ("graph", "actor")
_LINK: Final = ("graph", "link", "target")
_IDLE: Final = 60.0
"""Seconds a connection may stay silent (Prometheus keeps its connection between
scrapes) before it is closed."""
_MAX_HEAD: Final = 16 * 1024


class StatusCollector:
    """Every metric of one system, read from its status at scrape time."""

    def __init__(
        self,
        status: Callable[[], SystemStatus],
        started_at: float,
        timings: Callable[[], Mapping[str, HandlingTimes]],
    ) -> None:
        self._status = status
        self._started_at = started_at
        self._timings = timings

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield from _system_metrics(status, self._started_at)
        yield from _actor_metrics(status)
        yield _handling_times(status.graph, self._timings())
        yield from _link_metrics(status)


def _system_metrics(status: SystemStatus, started_at: float) -> Iterator[Metric]:
    graph = [status.graph]
    started = GaugeMetricFamily(
        "actorflow_system_start_time_seconds",
        "When the system was opened, in seconds since the epoch.",
        labels=["graph"],
    )
    started.add_metric(graph, started_at)
    uptime = GaugeMetricFamily(
        "actorflow_system_uptime_seconds", "Seconds since the system was opened.", labels=["graph"]
    )
    uptime.add_metric(graph, max(0.0, time.time() - started_at))
    state = StateSetMetricFamily(
        "actorflow_system_state", "Where the system is in its life.", labels=["graph"]
    )
    state.add_metric(graph, {s.value: s is status.state for s in SystemState})
    return iter((started, uptime, state))


_COUNTERS: Final = (
    ("received", "Items the actor took from its mailbox."),
    ("emitted", "Items the actor sent on its output ports (before fan-out)."),
    ("filtered", "Items its process() dropped on purpose by returning None."),
    ("errors", "Exceptions its hooks raised."),
    ("restarts", "How many times its module was rebuilt and restarted."),
    ("dead_lettered", "Items given up on after their attempts failed."),
)


def _actor_metrics(status: SystemStatus) -> Iterator[Metric]:
    actors = status.actors.values()
    for field, doc in _COUNTERS:
        name = "dead_letters" if field == "dead_lettered" else field
        family = CounterMetricFamily(f"actorflow_actor_{name}", doc, labels=_ACTOR)
        for actor in actors:
            family.add_metric([status.graph, actor.name], getattr(actor, field))
        yield family
    dropped = CounterMetricFamily(
        "actorflow_actor_dropped",
        "Items the actor lost, by reason (the links into it count their own).",
        labels=[*_ACTOR, "reason"],
    )
    for actor in actors:
        for reason, count in actor.dropped.items():
            dropped.add_metric([status.graph, actor.name, str(reason)], count)
    yield dropped
    yield from _actor_gauges(status.graph, list(actors))


def _actor_gauges(graph: str, listed: list[ActorStatus]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "actorflow_actor_mailbox_depth",
        "Items waiting in the actor's incoming links.",
        labels=_ACTOR,
    )
    state = StateSetMetricFamily(
        "actorflow_actor_state", "Where the actor is in its life.", labels=_ACTOR
    )
    done = GaugeMetricFamily(
        "actorflow_actor_progress_done",
        "What the module reported done (set_progress).",
        labels=_ACTOR,
    )
    total = GaugeMetricFamily(
        "actorflow_actor_progress_total", "What the module reported as its total.", labels=_ACTOR
    )
    for actor in listed:
        labels = [graph, actor.name]
        depth.add_metric(labels, actor.mailbox_depth)
        state.add_metric(labels, {s.value: s is actor.state for s in ActorState})
        if actor.progress is not None:
            done.add_metric(labels, actor.progress[0])
            if actor.progress[1] is not None:
                total.add_metric(labels, actor.progress[1])
    return iter((depth, state, done, total))


def _handling_times(graph: str, timings: Mapping[str, HandlingTimes]) -> Metric:
    family = HistogramMetricFamily(
        "actorflow_actor_handling_seconds",
        "Seconds the actor's sync code spent per item (a batch's mean, observed per batch).",
        labels=_ACTOR,
    )
    for name, times in timings.items():
        family.add_metric([graph, name], times.cumulative(), times.total)
    return family


def _link_metrics(status: SystemStatus) -> Iterator[Metric]:
    links = status.links.values()
    depth = GaugeMetricFamily("actorflow_link_depth", "Items waiting in the link.", labels=_LINK)
    capacity = GaugeMetricFamily(
        "actorflow_link_capacity", "The most items the link holds.", labels=_LINK
    )
    sent = CounterMetricFamily(
        "actorflow_link_sent", "Items accepted into the link.", labels=_LINK
    )
    delivered = CounterMetricFamily(
        "actorflow_link_delivered", "Items the link handed to its consumer.", labels=_LINK
    )
    dropped = CounterMetricFamily(
        "actorflow_link_dropped",
        "Items the link refused or lost, by reason.",
        labels=[*_LINK, "reason"],
    )
    for link in links:
        labels = _link_labels(status.graph, link)
        depth.add_metric(labels, link.depth)
        capacity.add_metric(labels, link.capacity)
        sent.add_metric(labels, link.sent)
        delivered.add_metric(labels, link.delivered)
        for reason, count in link.dropped.items():
            dropped.add_metric([*labels, str(reason)], count)
    return iter((depth, capacity, sent, delivered, dropped))


def _link_labels(graph: str, link: LinkStatus) -> list[str]:
    return [graph, link.name, link.target or ""]


def registry_for(collector: StatusCollector) -> CollectorRegistry:
    """A registry of one system's own (never the process-wide default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


# -- the endpoint ---------------------------------------------------------------------


async def listen(address: Address) -> list[trio.SocketListener]:
    """Bind ``address`` now, so a port in use fails the start, not the first scrape.

    Raises:
        ServeError: It cannot be bound (in use, not an address of this machine).
    """
    try:
        return await trio.open_tcp_listeners(address.port, host=address.host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another program listens there)"
        raise ServeError("metrics", str(address), reason) from exc


def bound(listeners: list[trio.SocketListener]) -> Address:
    """Where the first of ``listeners`` listens (the port chosen for port 0)."""
    host, port, *_ = listeners[0].socket.getsockname()
    return Address(host, port)


async def serve(
    listeners: list[trio.SocketListener],
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``GET /metrics`` on ``listeners`` until cancelled."""
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(trio.serve_listeners, partial(_connection, registry), listeners)
        )
        task_status.started()


async def _connection(registry: CollectorRegistry, stream: trio.SocketStream) -> None:
    """One client: requests answered in turn until it closes, errs or falls silent."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    async with stream:
        try:
            while await _one_request(connection, stream, registry):
                connection.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.TooSlowError):
            return


async def _next_event(connection: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.fail_after(_IDLE):
            data = await stream.receive_some(_MAX_HEAD)
        connection.receive_data(data)


async def _one_request(
    connection: h11.Connection, stream: trio.SocketStream, registry: CollectorRegistry
) -> bool:
    """Answer one request; whether the connection may carry another."""
    try:
        request = await _next_event(connection, stream)
    except h11.RemoteProtocolError:
        await _send(connection, stream, 400, b"bad request\n", "text/plain; charset=utf-8")
        return False
    if not isinstance(request, h11.Request):
        return False  # closed by the client
    while not isinstance(await _next_event(connection, stream), h11.EndOfMessage):
        pass  # a body: read and ignored
    method, target = request.method.decode(), request.target.decode()
    path = target.partition("?")[0]
    if path != "/metrics":
        await _send(connection, stream, 404, b"not found: try /metrics\n", "text/plain")
    elif method not in ("GET", "HEAD"):
        await _send(connection, stream, 405, b"GET or HEAD only\n", "text/plain")
    else:
        accept = next((v.decode() for k, v in request.headers if k == b"accept"), "")
        encoder, content_type = choose_encoder(accept)
        try:
            body = encoder(registry)
        except Exception as exc:  # a broken collector must not kill the server
            get_logger().exception("metrics.failed", error=str(exc))
            await _send(connection, stream, 500, b"cannot collect metrics\n", "text/plain")
            return False
        await _send(
            connection, stream, 200, b"" if method == "HEAD" else body, content_type, len(body)
        )
    return connection.our_state is h11.DONE and connection.their_state is h11.DONE


async def _send(
    connection: h11.Connection,
    stream: trio.SocketStream,
    status: int,
    body: bytes,
    content_type: str,
    length: int | None = None,
) -> None:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body) if length is None else length)),
    ]
    data = connection.send(h11.Response(status_code=status, headers=headers))
    if body:
        data = (data or b"") + (connection.send(h11.Data(data=body)) or b"")
    data = (data or b"") + (connection.send(h11.EndOfMessage()) or b"")
    await stream.send_all(data)
