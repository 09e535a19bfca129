"""System-wide settings, checked when they are made."""

from __future__ import annotations

import attrs

from ._checks import positive_int, positive_number

__all__ = ["Settings"]


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
        remote_url: The Redis server of remote links that name none
            (``remote=True``), e.g. ``"redis://127.0.0.1:6379/0"``.
    """

    quantum: float = attrs.field(default=0.01, validator=positive_number)
    default_buffer: int = attrs.field(default=100, validator=positive_int)
    max_batch: int = attrs.field(default=256, validator=positive_int)
    cleanup_timeout: float = attrs.field(default=5.0, validator=positive_number)
    stop_timeout: float = attrs.field(default=5.0, validator=positive_number)
    drain_timeout: float = attrs.field(default=10.0, validator=positive_number)
    thread_limit: int = attrs.field(default=8, validator=positive_int)
    heartbeat_interval: float = attrs.field(default=5.0, validator=positive_number)
    remote_url: str | None = None
