"""System-wide settings, checked when they are made."""

from __future__ import annotations

from typing import Any

import attrs

from ._address import address_text, parse_address
from ._checks import (
    MAX_BATCH,
    MAX_BUFFER,
    MAX_THREADS,
    fraction,
    redis_url,
    seconds,
    short,
    whole,
)
from ._urls import redact_url, url_repr

__all__ = ["Settings"]


def _urls(value: Any) -> Any:
    """A list of URLs (a graph file's array) as a tuple; anything else as it is, for the
    validator to refuse."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _http_urls(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"{attribute.name} must be a list of http(s):// URLs, got {short(value)}")
    for url in value:
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            shown = redact_url(url) if isinstance(url, str) else url
            raise ValueError(f"{attribute.name}: {short(shown)} is not an http(s):// URL")


def _address(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        parse_address(value, attribute.name)


def _urls_repr(value: tuple[str, ...]) -> str:
    return repr(tuple(redact_url(url) for url in value))


@attrs.frozen(kw_only=True)
class Settings:
    """How a system runs its actors.

    Attributes:
        quantum: Seconds an actor may keep the event loop while it has work, before it
            yields at a checkpoint so that other actors run. Smaller is fairer, larger is
            faster.
        default_buffer: Capacity, in items, of a link that does not set ``buffer``.
        max_batch: The most items an actor takes from one link at once. Batches amortise
            the cost of waking up; the link buffer bounds them anyway.
        cleanup_timeout: Seconds each module's ``cleanup()`` may take (shielded from
            cancellation) before it is abandoned and reported.
        stop_timeout: Seconds a source may take to finish after a graceful
            :meth:`System.stop`, before it is cancelled.
        drain_timeout: Seconds a graceful stop started by a signal (SIGINT, SIGTERM under
            :func:`run` or ``actorflow run``) may take to finish what is in flight before
            the system is cancelled (what is still queued then is dropped, and every
            ``cleanup()`` still runs).
        thread_limit: The most worker threads running sync hooks of ``blocking``
            modules at once, for the whole system.
        heartbeat_interval: Seconds between heartbeats (a ``system.heartbeat`` event with
            the status of every actor, also handed to the system's reporters).
        reporters: URLs (``http://``, ``https://``) an :class:`HttpReporter` POSTs each
            heartbeat snapshot to, e.g. from a graph file's ``[settings]``; a password in
            one is never shown.
        remote_url: The Redis server of remote links that name none
            (``remote=True``), e.g. ``"redis://127.0.0.1:6379/0"``.
        metrics: ``[HOST:]PORT`` to serve Prometheus metrics on (``/metrics``) while
            the system runs, e.g. ``9464`` (on 127.0.0.1) or ``"0.0.0.0:9464"``; port 0
            takes any free port (:attr:`System.metrics_address` says which). ``None``
            (the default) serves none.
        trace_ratio: The share of items (0 to 1) that get an OpenTelemetry span at
            every hop, decided where they enter the graph; 0 (the default) traces
            nothing and costs nothing. Needs the ``otel`` extra.
        fuse: Stage fusion: a module whose only input is one plain link and whose hook
            is sync is run by call in its producer's task while its own task idles, so a
            private chain of such modules runs in one task (each keeps its own state,
            counters, status and supervision; see ``ActorStatus.fused_into``). ``False``
            runs every module in its own task only.
        snapshot_interval: Seconds between saves of a module's state snapshot while it
            runs (a module that overrides ``snapshot()``; it is also saved when each
            incarnation starts and ends cleanly, and when its replay journal is full).
            ``math.inf`` saves only then. A module may set its own
            (``Module.snapshot_interval``).
    """

    quantum: float = attrs.field(default=0.01, validator=seconds())
    default_buffer: int = attrs.field(default=100, validator=whole(1, MAX_BUFFER))
    max_batch: int = attrs.field(default=256, validator=whole(1, MAX_BATCH))
    cleanup_timeout: float = attrs.field(default=5.0, validator=seconds())
    stop_timeout: float = attrs.field(default=5.0, validator=seconds())
    drain_timeout: float = attrs.field(default=10.0, validator=seconds())
    thread_limit: int = attrs.field(default=8, validator=whole(1, MAX_THREADS))
    heartbeat_interval: float = attrs.field(default=5.0, validator=seconds())
    remote_url: str | None = attrs.field(default=None, validator=redis_url, repr=url_repr)
    reporters: tuple[str, ...] = attrs.field(
        default=(), converter=_urls, validator=_http_urls, repr=_urls_repr
    )
    metrics: str | None = attrs.field(default=None, converter=address_text, validator=_address)
    trace_ratio: float = attrs.field(default=0.0, validator=fraction)
    fuse: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    snapshot_interval: float = attrs.field(default=5.0, validator=seconds(infinite=True))
