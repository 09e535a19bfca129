"""What keeps a live change from waiting for ever: a graceful stop that bounds it, and
a refusal when it is awaited from inside a hook it would wait for.

A change waits for modules (the old incarnation's stop, a new one's ``restore()``, a
drain) and for the store (a snapshot read or delete). A graceful stop waits for the
change under way, so one that never finishes would hold the stop until its
``drain_timeout``: :class:`Bounds` gives it ``stop_timeout`` seconds from the stop's
request, then cancels what it waits for (see ``actorflow._changes``).

A change that stops a module waits for the module's current hook to return; awaited
from inside that very hook (``system.replace(self.name, ...)`` from ``process()``), it
would wait until the module's shutdown timeout killed it. :func:`hooks_here` finds the
modules whose hook the current task may be inside, so such a change is refused at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterator

import attrs
import trio

__all__ = ["Bounds", "hooks_here"]

_TASK = "actor:"
"""How the supervisor names the task that runs an actor's incarnation."""


@attrs.define(slots=True, eq=False)
class Bounds:
    """The cancel scopes of the change under way.

    Invariant: once :meth:`close` was called, every scope listed (and every one opened
    later) has a deadline at most ``seconds`` after that call.
    """

    seconds: float
    """How long a change may go on once a graceful stop was asked (``stop_timeout``)."""
    scopes: list[trio.CancelScope] = attrs.field(factory=list)
    deadline: float = math.inf
    """When the change under way is given up (``inf`` until a stop is asked)."""

    def close(self) -> None:
        """A graceful stop was asked: the change under way gets ``seconds`` more."""
        self.deadline = trio.current_time() + self.seconds
        for scope in self.scopes:
            scope.deadline = min(scope.deadline, self.deadline)

    @contextlib.contextmanager
    def bounded(self, *, shield: bool = False) -> Iterator[trio.CancelScope]:
        """A cancel scope that a graceful stop bounds; with ``shield``, only that bound
        (not the caller's cancellation, nor the change's own bound) cancels it."""
        scope = trio.CancelScope(shield=shield, deadline=self.deadline)
        self.scopes.append(scope)
        try:
            with scope:
                yield scope
        finally:
            self.scopes.remove(scope)


def hooks_here(actors: Collection[str]) -> set[str]:
    """The modules whose hook the current task may be inside: the actor whose task
    runs it, or started it (workers, spawned handlers). (A stage fused into it has a
    sync hook, which awaits no change.) A hook run in a thread (``blocking``) is not
    found."""
    found: set[str] = set()
    task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    while task is not None:
        name = task.name.removeprefix(_TASK)
        if name != task.name and name in actors:
            found.add(name)
        nursery = task.parent_nursery
        task = None if nursery is None else nursery.parent_task
    return found
