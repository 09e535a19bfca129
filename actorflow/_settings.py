"""System-wide settings, checked when they are made."""

from __future__ import annotations

from typing import Any

import attrs

from ._checks import MAX_BATCH, MAX_BUFFER, MAX_THREADS, seconds, short, whole
from ._urls import url_repr

__all__ = ["Settings"]


def _url_text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A URL is text (what scheme it needs is checked where it is used)."""
    if value is not None and not isinstance(value, str):
        raise TypeError(
            f"{attribute.name} must be a URL string, got {type(value).__name__} {short(value)}"
        )


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
        thread_limit: The most worker threads running sync hooks of ``blocking``
            modules at once, for the whole system.
        heartbeat_interval: Seconds between heartbeats (a ``system.heartbeat`` event with
            the status of every actor, also handed to the system's reporters).
        remote_url: The Redis server of remote links that name none
            (``remote=True``), e.g. ``"redis://127.0.0.1:6379/0"``.
    """

    quantum: float = attrs.field(default=0.01, validator=seconds())
    default_buffer: int = attrs.field(default=100, validator=whole(1, MAX_BUFFER))
    max_batch: int = attrs.field(default=256, validator=whole(1, MAX_BATCH))
    cleanup_timeout: float = attrs.field(default=5.0, validator=seconds())
    stop_timeout: float = attrs.field(default=5.0, validator=seconds())
    thread_limit: int = attrs.field(default=8, validator=whole(1, MAX_THREADS))
    heartbeat_interval: float = attrs.field(default=5.0, validator=seconds())
    remote_url: str | None = attrs.field(
        default=None,
        repr=url_repr,
        validator=_url_text,
    )
