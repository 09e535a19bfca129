"""Interaction priority: an interaction's answer does not wait behind progressive steps.

A progressive step runs for up to a quantum without a checkpoint. A ping that crosses
three actors while a progressive module computes could wait for one step at each hop
(trio runs a batch of runnable tasks in random order). Like ProgressiVis, which runs
the modules an interaction reaches first, actorflow lets *latency-sensitive* actors go
first: while any of them has input waiting, progressive steps do not resume.

Which actors are latency-sensitive is declared (``Module.latency_sensitive``) or
inferred: the host's entry points (inlets and variables) and every actor they reach
downstream. A progressive module that is itself latency-sensitive is part of the fast
path and never waits here.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import trio

from .._endpoints import Inlet
from .._link import Mailbox

__all__ = ["Interactions", "interactions_of"]


class Member(Protocol):
    """What the priority asks of an actor when the graph is wired."""

    @property
    def name(self) -> str: ...

    @property
    def module(self) -> Any: ...

    @property
    def upstream(self) -> Sequence[Member]: ...

    @property
    def mailbox(self) -> Mailbox: ...


def declared(module: Any) -> bool | None:
    """What a module says of itself: ``True``/``False``, or ``None`` to be inferred."""
    value = getattr(module, "latency_sensitive", None)
    return None if value is None else bool(value)


def sensitive_names(actors: Iterable[Member]) -> frozenset[str]:
    """The latency-sensitive actors: those declared so, and (unless declared not) the
    inlets and variables and every actor downstream of one (through non-feedback
    links)."""
    members = list(actors)
    downstream: dict[str, list[Member]] = {}
    for actor in members:
        for up in actor.upstream:
            downstream.setdefault(up.name, []).append(actor)
    found: set[str] = set()
    pending = [a for a in members if declared(a.module) or isinstance(a.module, Inlet)]
    while pending:
        actor = pending.pop()
        if actor.name in found or declared(actor.module) is False:
            continue
        found.add(actor.name)
        pending.extend(downstream.get(actor.name, ()))
    return frozenset(found)


class Interactions:
    """The latency-sensitive actors of one running system, and the gate progressive
    steps pass before they resume.

    Invariant: :attr:`mailboxes` are the mailboxes of the actors in :attr:`names`.
    """

    __slots__ = ("inlets", "mailboxes", "names")

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()
        self.mailboxes: tuple[Mailbox, ...] = ()
        self.inlets: tuple[Member, ...] = ()
        """The latency-sensitive inlets: what the host sent them waits in their queue."""

    def resolve(self, actors: Iterable[Member]) -> None:
        """Decide, once the graph is wired, which actors are latency-sensitive."""
        members = list(actors)
        self.names = sensitive_names(members)
        chosen = [a for a in members if a.name in self.names]
        self.mailboxes = tuple(a.mailbox for a in chosen)
        self.inlets = tuple(a for a in chosen if isinstance(a.module, Inlet))

    def gates(self, name: str) -> bool:
        """Whether the progressive actor ``name`` waits for the interactions (it does
        not when it is one of them, or when there are none)."""
        return bool(self.names) and name not in self.names

    def pending(self) -> bool:
        """Whether a latency-sensitive actor has input waiting."""
        for mailbox in self.mailboxes:
            for link in mailbox.links:
                if link.items:
                    return True
        return any(inlet.module.backlog() > 0 for inlet in self.inlets)

    async def give_way(self, now: Callable[[], float], limit: float) -> None:
        """Let the latency-sensitive actors handle their waiting input first.

        One checkpoint always: a task woken during the last step (a timer that expired,
        a host's send) runs in the same batch as this one, in random order, and must not
        find the next step already begun. Then checkpoint while any has input waiting:
        each checkpoint lets an item cross one more actor. A steady stream of
        interactions, or a sensitive actor that cannot drain its input (its output is
        full), delays a step at most ``limit`` seconds or two checkpoints per sensitive
        actor, whichever comes first: it never stops progressive steps.
        """
        until = now() + limit
        await trio.lowlevel.checkpoint()
        for _ in range(2 * (len(self.mailboxes) + len(self.inlets))):
            if not self.pending() or now() >= until:
                return
            await trio.lowlevel.checkpoint()


_systems: weakref.WeakKeyDictionary[object, Interactions] = weakref.WeakKeyDictionary()


def interactions_of(system: object) -> Interactions:
    """The interactions of ``system`` (made on first use, forgotten with it); none for
    wiring done without a system (``None``, in tests)."""
    if system is None:
        return Interactions()
    found = _systems.get(system)
    if found is None:
        found = _systems[system] = Interactions()
    return found
