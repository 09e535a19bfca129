"""What a driver may use of the actor it drives (the actor satisfies it structurally).

Drivers depend on this protocol, not on the ``Actor`` class, so that arrows point one
way: ``_core`` chooses a driver; a driver never imports ``_core``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._link import Mailbox
from .._module import Module, ModuleKind, RunningSystem
from .._settings import Settings
from .._status import ActorState
from ._incarnation import Incarnation
from ._outbox import Outbox
from ._pacing import Pacing
from ._retries import Retries

if TYPE_CHECKING:
    import structlog

__all__ = ["Hops", "Room", "spans_done"]


class Hops(Protocol):
    """An actor's tracing (see ``actorflow._tracing.ActorTracing``): told of each batch
    it sends (``where``: the port), takes, is done with; whether the actor logs the
    batch's ids too."""

    def __call__(self, event: str, items: list[Any], where: Any = None, /) -> bool: ...


class Room(Protocol):
    """The actor as its drivers see it."""

    name: str
    kind: ModuleKind
    module: Module
    settings: Settings
    log: structlog.typing.FilteringBoundLogger
    debug: bool
    state: ActorState
    mailbox: Mailbox
    outbox: Outbox
    pacing: Pacing
    retries: Retries
    incarnation: Incarnation | None
    received: int
    filtered: int
    errors: int
    suspended: bool
    fused_into: str | None
    fused_scope: trio.CancelScope | None
    step_size: int | None
    progress: tuple[float, float | None] | None
    thread_limiter: trio.CapacityLimiter | None
    hops: Hops | None
    watched: bool
    """Its per-batch hooks run: its debug log is on (the ids it takes and sends) or it
    traces (``hops``)."""

    @property
    def dropped(self) -> dict[str, int]: ...

    @property
    def system(self) -> RunningSystem | None: ...

    def set_state(
        self, state: ActorState, blocked_on: str | None = None, *, churn: bool = False
    ) -> None: ...

    def trace(self, event: str, items: list[Any], **fields: Any) -> None: ...

    def mark_ready(self) -> None: ...

    def count_drop(self, count: int, reason: str) -> None: ...

    def wait_for_links(self) -> bool: ...

    def system_stopping(self) -> bool: ...

    def take_posted(self) -> list[tuple[str, Any]]: ...

    def clear_posted(self) -> None: ...

    async def lifecycle(self, fn: Callable[[], Any], *, blocking: bool | None = None) -> Any: ...

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    async def emit(self, item: Any, port: str = "out") -> None: ...


def spans_done(room: Room, batch: list[Any]) -> None:
    """Tell the actor's tracing it is done with ``batch`` (its spans end)."""
    if room.watched and room.hops is not None:
        room.hops("message.done", batch)
