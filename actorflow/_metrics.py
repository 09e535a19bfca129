"""Prometheus metrics of a running system, served on its own trio loop.

Nothing is counted for Prometheus while items flow: a :class:`StatusCollector` reads
:meth:`System.status` (the counters every actor and link keeps anyway) when a scrape
comes, so the hot path pays nothing but the per-batch handling times
(:mod:`actorflow._timings`). Each system has a :class:`~prometheus_client.CollectorRegistry`
of its own: two systems in one process never share a series.

The endpoint is a small HTTP/1.1 server on :mod:`h11` (the sans-I/O HTTP library trio's
own documentation builds servers on) and :func:`trio.serve_listeners`: it runs in the
system's nursery, on the loop that runs the actors, so a scrape reads the counters
between two batches, never while an actor changes them, and needs no lock: only that
snapshot is taken on the loop; the text (1.5 MB for 500 actors) is rendered in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from http import HTTPStatus
from typing import Final
from urllib.parse import urlsplit

import attrs
import h11
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.openmetrics import exposition as openmetrics

from ._address import Address, bind_failure, host_named, loopback_names
from ._exceptions import ServeError, describe
from ._logging import get_logger
from ._status import ActorState, ActorStatus, LinkStatus, SystemState, SystemStatus
from ._timings import HandlingTimes

__all__ = [
    "MetricsRegistry",
    "StatusCollector",
    "Taken",
    "connection",
    "listen",
    "negotiate",
    "registry_for",
    "serve",
]

_ACTOR: Final = ("graph", "actor")
_LINK: Final = ("graph", "link", "target")
_LIFETIME: Final = 60.0
"""Seconds a connection may stay open, all its requests together, before it is closed
(Prometheus opens another): a client sending a byte now and then cannot hold it longer."""
_MAX_HEAD: Final = 16 * 1024
_MAX_BODY: Final = 16 * 1024
"""A scrape has no body: a request with a larger one is answered 413 and closed."""
_MAX_CONNECTIONS: Final = 32
"""Connections served at once; more are answered 503 and closed."""
_REFUSE_WITHIN: Final = 1.0
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
_OPENMETRICS: Final = "application/openmetrics-text"
_TEXT: Final = (generate_latest, CONTENT_TYPE_PLAIN_0_0_4)
_OPENMETRICS_1: Final = (
    partial(openmetrics.generate_latest, version="1.0.0"),
    openmetrics.CONTENT_TYPE_LATEST,
)


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

    def take(self) -> Taken:
        """The numbers now: the cheap part of a scrape, done on the loop that runs the
        actors (a status snapshot and a copy of each histogram), so that turning them
        into text can be done elsewhere (:meth:`Taken.collect`, in a thread)."""
        times = {name: (t.cumulative(), t.total) for name, t in self._timings().items()}
        return Taken(self._status(), self._started_at, times, time.time())

    def collect(self) -> Iterator[Metric]:
        return self.take().collect()


@attrs.frozen(eq=False)  # hashed by identity: a registry keeps its collectors in a dict
class Taken:
    """One scrape's numbers, taken on the loop; made into metrics anywhere (they are a
    snapshot: nothing here changes while a thread renders them)."""

    status: SystemStatus
    started_at: float
    times: Mapping[str, tuple[list[tuple[str, int]], float]]
    now: float

    def collect(self) -> Iterator[Metric]:
        yield from _system_metrics(self.status, self.started_at, self.now)
        yield from _actor_metrics(self.status)
        yield _handling_times(self.status.graph, self.times)
        yield from _link_metrics(self.status)


class MetricsRegistry(CollectorRegistry):
    """A system's own registry (never the process-wide default), which can also hand a
    snapshot of its collector's numbers to be rendered off the loop."""

    def __init__(self, collector: StatusCollector) -> None:
        super().__init__(auto_describe=False)
        self.collector = collector
        self.register(collector)

    def taken(self) -> CollectorRegistry:
        """A registry of the numbers now (see :meth:`StatusCollector.take`)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector.take())
        return registry


def _system_metrics(status: SystemStatus, started_at: float, now: float) -> Iterator[Metric]:
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
    uptime.add_metric(graph, max(0.0, now - started_at))
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
    """The actors' counters, each over every module that had its name (removed ones
    included: a counter never goes down), then their gauges."""
    actors = status.actors.values()
    names = [*status.actors, *(name for name in status.removed if name not in status.actors)]
    for field, doc in _COUNTERS:
        name = "dead_letters" if field == "dead_lettered" else field
        family = CounterMetricFamily(f"actorflow_actor_{name}", doc, labels=_ACTOR)
        for actor in names:
            family.add_metric([status.graph, actor], status.counted(actor, field))
        yield family
    dropped = CounterMetricFamily(
        "actorflow_actor_dropped",
        "Items the actor lost, by reason (the links into it count their own).",
        labels=[*_ACTOR, "reason"],
    )
    for actor in names:
        lost: dict[str, int] = {}
        for had in (status.removed.get(actor), status.actors.get(actor)):
            for reason, count in () if had is None else had.dropped.items():
                lost[str(reason)] = lost.get(str(reason), 0) + count
        for reason, count in lost.items():
            dropped.add_metric([status.graph, actor, reason], count)
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


def _handling_times(
    graph: str, timings: Mapping[str, tuple[list[tuple[str, int]], float]]
) -> Metric:
    family = HistogramMetricFamily(
        "actorflow_actor_handling_seconds",
        "Seconds the actor's hook took per item: sync hooks by runs of items (each run's "
        "mean), async and blocking ones item by item (awaits, the thread included).",
        labels=_ACTOR,
    )
    for name, (buckets, total) in timings.items():
        family.add_metric([graph, name], buckets, total)
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


def registry_for(collector: StatusCollector) -> MetricsRegistry:
    """A registry of one system's own (never the process-wide default)."""
    return MetricsRegistry(collector)


# -- the endpoint ---------------------------------------------------------------------


async def listen(address: Address) -> list[trio.SocketListener]:
    """Bind ``address`` now, so a port in use fails the start, not the first scrape.

    Raises:
        ServeError: It cannot be bound (in use, not an address of this machine, a
            host that is no name: ``..``).
    """
    try:
        return await trio.open_tcp_listeners(address.port, host=address.host)
    except OSError as exc:
        raise ServeError("metrics", str(address), bind_failure(exc)) from exc
    except ValueError as exc:  # the host is no name at all: "..", a label of 64 letters
        raise ServeError("metrics", str(address), f"not a host name ({exc})") from exc


def bound(listeners: list[trio.SocketListener]) -> Address:
    """Where the first of ``listeners`` listens (the port chosen for port 0)."""
    host, port, *_ = listeners[0].socket.getsockname()
    return Address(host, port)


async def serve(
    listeners: list[trio.SocketListener],
    registry: MetricsRegistry,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer ``GET /metrics`` on ``listeners`` until cancelled."""
    slots = trio.CapacityLimiter(_MAX_CONNECTIONS)
    hosts = loopback_names(bound(listeners).host)
    handler = partial(connection, registry, slots, hosts=hosts)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(trio.serve_listeners, handler, listeners))
        task_status.started()


async def connection(
    registry: MetricsRegistry,
    slots: trio.CapacityLimiter,
    stream: trio.abc.Stream,
    *,
    hosts: frozenset[str] | None = None,
) -> None:
    """One client: requests answered in turn until it closes, errs, or its time is up;
    with ``hosts`` (bound to loopback), only requests naming one of them in ``Host``.

    Nothing a client sends ends the system: whatever goes wrong is logged at debug level
    and closes this connection only (its task runs in the system's nursery).
    """
    try:
        async with stream:
            try:
                slots.acquire_nowait()
            except trio.WouldBlock:
                with trio.move_on_after(_REFUSE_WITHIN):
                    await stream.send_all(_BUSY)
                return
            try:
                with trio.move_on_after(_LIFETIME):
                    await _requests(registry, stream, hosts)
            finally:
                slots.release()
    except Exception as exc:  # a client's fault (or a closed socket): never the system's
        get_logger().debug("metrics.connection_failed", error=describe(exc))


async def _requests(
    registry: MetricsRegistry, stream: trio.abc.Stream, hosts: frozenset[str] | None
) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    while await _one_request(connection, stream, registry, hosts):
        connection.start_next_cycle()


async def _next_event(connection: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(bytes(await stream.receive_some(_MAX_HEAD)))


async def _one_request(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    registry: MetricsRegistry,
    hosts: frozenset[str] | None,
) -> bool:
    """Answer one request; whether the connection may carry another."""
    try:
        request = await _next_event(connection, stream)
        if isinstance(request, h11.Request) and not await _skip_body(connection, stream, request):
            await _send(connection, stream, 413, b"a scrape has no body\n")
            return False
    except h11.RemoteProtocolError as exc:
        if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await _send(connection, stream, exc.error_status_hint, b"bad request\n")
        return False
    if not isinstance(request, h11.Request):
        return False  # closed by the client
    method = request.method.decode("ascii", "replace")
    named = next((v for k, v in request.headers if k == b"host"), b"")
    if hosts is not None and host_named(named) not in hosts:
        await _send(connection, stream, 400, b"unknown host\n")  # as the dashboard does
    elif _path(request.target.decode("ascii", "replace")) != "/metrics":
        await _send(connection, stream, 404, b"not found: try /metrics\n")
    elif method not in ("GET", "HEAD"):
        await _send(connection, stream, 405, b"GET or HEAD only\n", allow="GET, HEAD")
    else:
        accept = b",".join(v for k, v in request.headers if k == b"accept")
        if not await _answer(connection, stream, registry, method, accept):
            return False
    return connection.our_state is h11.DONE and connection.their_state is h11.DONE


async def _answer(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    registry: MetricsRegistry,
    method: str,
    accept: bytes,
) -> bool:
    """Send the metrics in the format ``accept`` asks for; False if none could be."""
    chosen = negotiate(accept.decode("utf-8", "replace"))
    if chosen is None:
        body = b"Accept: text/plain (Prometheus 0.0.4) or application/openmetrics-text 1\n"
        await _send(connection, stream, 406, body)
        return True
    encoder, content_type = chosen
    try:
        # Only the snapshot is taken on the loop; the text (1.5 MB for 500 actors, a
        # fifth of a second of work) is rendered in a thread, so the actors run on.
        body = await trio.to_thread.run_sync(encoder, registry.taken())
    except Exception as exc:  # a broken collector must not kill the server
        get_logger().exception("metrics.failed", error=str(exc))
        await _send(connection, stream, 500, b"cannot collect metrics\n")
        return False
    await _send(
        connection,
        stream,
        200,
        b"" if method == "HEAD" else body,
        content_type=content_type,
        length=len(body),
    )
    return True


async def _skip_body(
    connection: h11.Connection, stream: trio.abc.Stream, request: h11.Request
) -> bool:
    """Read a request's body and drop it; False (read no further) if it is larger than
    a scrape would ever send."""
    length = next((v for k, v in request.headers if k == b"content-length"), b"0")
    if int(length) > _MAX_BODY:  # h11 checked it is digits
        return False
    read = 0
    while True:
        event = await _next_event(connection, stream)
        if isinstance(event, h11.EndOfMessage):
            return True
        if isinstance(event, h11.Data):
            read += len(event.data)
            if read > _MAX_BODY:
                return False


def _path(target: str) -> str:
    """The path of a request target: origin form (``/metrics?x``) or absolute form
    (``http://host/metrics``, which HTTP/1.1 servers must take too)."""
    if target.startswith("/"):
        return target.partition("?")[0]
    try:
        return urlsplit(target).path if "://" in target else target
    except ValueError:
        return target


def negotiate(accept: str) -> tuple[Callable[[CollectorRegistry], bytes], str] | None:
    """The encoder and ``Content-Type`` for an ``Accept`` header: OpenMetrics 1.0.0 if
    it is preferred, else Prometheus' text format 0.0.4, ``None`` if it takes neither.

    The Content-Type is always one of the two this serves (the client's ``version=``
    is never echoed); ranges are taken by ``q``, best first, then in order.
    """
    if not accept.strip():
        return _TEXT
    ranges: list[tuple[float, int, str, dict[str, str]]] = []
    for index, accepted in enumerate(accept.split(",")):
        media, *parts = accepted.split(";")
        params = {}
        for part in parts:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if q > 0:
            ranges.append((-q, index, media.strip().lower(), params))
    for _, _, media, params in sorted(ranges, key=lambda r: r[:2]):
        if media == _OPENMETRICS and params.get("version", "1").split(".")[0] == "1":
            return _OPENMETRICS_1
        if media in ("text/plain", "text/*", "*/*"):
            return _TEXT
    return None


async def _send(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    length: int | None = None,
    allow: str | None = None,
) -> None:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body) if length is None else length)),
    ]
    if allow is not None:
        headers.append(("Allow", allow))
    reason = HTTPStatus(status).phrase.encode()
    data = connection.send(h11.Response(status_code=status, headers=headers, reason=reason))
    if body:
        data = (data or b"") + (connection.send(h11.Data(data=body)) or b"")
    data = (data or b"") + (connection.send(h11.EndOfMessage()) or b"")
    await stream.send_all(data)
