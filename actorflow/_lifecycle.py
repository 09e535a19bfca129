"""Construct, validate, clean up: the three lifecycle steps around a module's or a task's
run, each turning what the user's code raised into its :class:`LifecycleError`, logged
once, here.

The system (constructing and validating every module before any runs), an actor (a
fresh incarnation after a restart, and its cleanup) and a job (its tasks) all go
through these functions. How a hook is called (awaited when async, in a worker thread
when the module blocks) is the caller's business: it passes a :data:`HookCall`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from ._exceptions import CleanupError, InitializationError, ValidationError, describe

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "ACTOR_EVENTS",
    "TASK_EVENTS",
    "Events",
    "HookCall",
    "cleanup",
    "construct",
    "does_nothing",
    "is_default",
    "validate",
]

_T = TypeVar("_T")

HookCall = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Calls a lifecycle hook and gives back its result, awaiting it when it is async."""


@attrs.frozen
class Events:
    """The log events a failed step is reported as."""

    failed: str
    """A constructor or ``validate()`` raised (``phase`` says which)."""
    cleanup_failed: str
    """``cleanup()`` raised or overran its time."""


ACTOR_EVENTS = Events("actor.failed", "actor.cleanup_failed")
TASK_EVENTS = Events("task.failed", "task.cleanup_failed")

_defaults: set[Callable[..., Any]] = set()
"""Base-class hooks that do nothing (``Module.validate``, ``Module.cleanup``, ...)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def does_nothing(fn: _F) -> _F:
    """Mark a base class's hook as one that does nothing, so that it is not called.

    A restart validates and cleans up a module: when neither hook was overridden, this
    skips two hook calls, a timeout scope and (for a blocking module) two thread hops.
    """
    _defaults.add(fn)
    return fn


def is_default(hook: Callable[..., Any]) -> bool:
    """Whether ``hook`` (a bound method, usually) is a base class's do-nothing hook."""
    return getattr(hook, "__func__", None) in _defaults


def construct(
    name: str,
    factory: Callable[..., _T],
    config: Mapping[str, Any],
    log: FilteringBoundLogger,
    events: Events = ACTOR_EVENTS,
) -> _T:
    """Build ``factory(**config)``.

    Raises:
        InitializationError: The constructor raised; its error is the cause.
    """
    try:
        return factory(**config)
    except Exception as exc:
        log.error(events.failed, phase="init", error=describe(exc), exc_info=exc)
        raise InitializationError(name, describe(exc)) from exc


async def validate(
    name: str,
    hook: Callable[[], Any],
    call: HookCall,
    log: FilteringBoundLogger,
    events: Events = ACTOR_EVENTS,
) -> None:
    """Run a ``validate()`` hook.

    Raises:
        ValidationError: The hook raised (refused its configuration); its error is the
            cause.
    """
    if is_default(hook):
        return
    try:
        await call(hook)
    except Exception as exc:
        log.error(events.failed, phase="validate", error=describe(exc), exc_info=exc)
        raise ValidationError(name, describe(exc)) from exc


async def cleanup(
    name: str,
    hook: Callable[[], Any],
    call: HookCall,
    limit: float,
    log: FilteringBoundLogger,
    events: Events = ACTOR_EVENTS,
) -> CleanupError | None:
    """Run a ``cleanup()`` hook for at most ``limit`` seconds (``math.inf``: no limit).

    A cleanup failure never hides the error that stopped the work, so it is returned
    rather than raised: the caller decides whether it becomes the error or a note.

    Returns:
        The :class:`CleanupError` (its cause the hook's error, if it raised), or ``None``.
    """
    if is_default(hook):
        return None
    cause: Exception | None = None
    began = trio.current_time()
    try:
        with trio.fail_after(limit):
            await call(hook)
    except trio.TooSlowError:
        message = f"cleanup() did not finish within {limit:g} s"
    except Exception as exc:
        message, cause = describe(exc), exc
    else:
        # Trio cannot interrupt sync code on the event loop: a sync cleanup() that
        # overran is only seen when it returns. It overran all the same.
        took = trio.current_time() - began
        if took <= limit:
            return None
        message = (
            f"cleanup() did not finish within {limit:g} s (it ran {took:.3g} s without "
            "yielding to the event loop; a module whose cleanup() blocks sets blocking = True)"
        )
    error = CleanupError(name, message)
    error.__cause__ = cause
    log.error(events.cleanup_failed, phase="cleanup", error=message, exc_info=cause)
    return error
