"""System-wide settings, checked when they are made."""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["Settings"]


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")
    if isinstance(value, float) and math.isnan(value):  # pragma: no cover - nan > 0 is False
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


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
    """

    quantum: float = attrs.field(default=0.01, validator=_positive)
    default_buffer: int = attrs.field(default=100, validator=_positive_int)
    max_batch: int = attrs.field(default=256, validator=_positive_int)
    cleanup_timeout: float = attrs.field(default=5.0, validator=_positive)
    stop_timeout: float = attrs.field(default=5.0, validator=_positive)
