"""Where an actor's outputs go: ports to links, owed items first, copies, flushing.

Whatever could not be delivered when a wait was interrupted (a stop, a cancellation,
a crash mid-batch) is *owed*: it belongs to the actor, not to the incarnation, and the
next incarnation delivers it before anything else; when the actor ends for good, what
still does not fit is counted as dropped (``"shutdown"``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from .._exceptions import describe
from .._link import POOL_LIMIT, Link
from .._module import ModuleKind
from .._status import ActorState, DropReason
from ._incarnation import Incarnation, Stop
from ._pacing import Pacing

if TYPE_CHECKING:
    import structlog

__all__ = ["Outbox", "Sender"]


class Sender(Protocol):
    """What the outbox needs of the actor it belongs to."""

    name: str
    kind: ModuleKind
    log: structlog.typing.FilteringBoundLogger
    watched: bool
    state: ActorState
    emitted: int
    ready: bool
    incarnation: Incarnation | None
    fused_into: str | None
    fused_scope: trio.CancelScope | None

    def set_state(self, state: ActorState, blocked_on: str | None = None) -> None: ...

    def mark_ready(self) -> None: ...

    def count_drop(self, count: int, reason: str) -> None: ...

    def trace(self, event: str, items: list[Any], **fields: Any) -> None: ...


@attrs.define(slots=True, eq=False)
class Outbox:
    """An actor's output ports, their links and the items it still owes them.

    Invariant: ``owed`` holds (link, copies) pairs in the order they must go out; the
    deque is made on first use (most actors never owe anything).
    """

    owner: Sender
    pacing: Pacing
    outputs: dict[str, list[Link]]
    owed: deque[tuple[Link, list[Any]]] | None = None
    _warned: set[str] | None = None
    main: str = attrs.field(init=False)
    """Where what a hook returns or yields goes: ``out``, or a module's only output port
    whatever its name."""
    fuses: bool = attrs.field(init=False)
    """Whether it may hand batches to a fused consumer by call (not from a progressive
    module: what its consumers do would count in its step's time, which sizes the next
    step, and they would see its items before its step is over)."""

    def __attrs_post_init__(self) -> None:
        outputs = self.outputs
        self.main = "out" if "out" in outputs or len(outputs) != 1 else next(iter(outputs))
        self.fuses = self.owner.kind is not ModuleKind.PROGRESSIVE

    def port(self, port: str) -> str:
        """``port``, with ``out`` (the default of ``emit``) meaning the main port."""
        if port not in self.outputs:
            if port == "out" and self.main != "out":
                return self.main
            self.check_port(port)
        return port

    def check_port(self, port: str) -> None:
        """Raise KeyError naming the known ports if ``port`` is not an output port."""
        if port not in self.outputs:
            known = ", ".join(repr(p) for p in self.outputs) or "none"
            hint = (
                "; what a hook returns or yields goes to 'out': emit(item, port) chooses "
                "another port"
                if port == "out"
                else ""
            )
            raise KeyError(
                f"module {self.owner.name!r} has no output port {port!r} (output ports: "
                f"{known}){hint}"
            )

    def links(self) -> list[Link]:
        """Every link leaving this actor."""
        return [link for links in self.outputs.values() for link in links]

    def wake(self) -> None:
        """Wake the owner if it waits for room in one of its links."""
        for links in self.outputs.values():
            for link in links:
                link.wake_producers()

    def _alone(self, link: Link) -> bool:
        """Whether ``link`` is the only link of its port (only such a link may carry a
        call into a fused consumer: a fan-out's other links would wait on it)."""
        return any(links == [link] for links in self.outputs.values())

    def _owe(self, link: Link, items: list[Any]) -> None:
        if self.owed is None:
            self.owed = deque()
        self.owed.append((link, items))

    def copies_for(self, link: Link, items: list[Any]) -> list[Any]:
        """The items as ``link`` must receive them (copied per its policy).

        An item that cannot be copied (``copy="msgpack"`` and a value msgpack cannot
        carry, say) is counted on the link as ``copy_failed`` and logged; the others go.
        """
        copier = link.copier
        if copier is None:
            return items
        copies = []
        for item in items:
            try:
                copies.append(copier(item))
            except Exception as exc:
                link.drop(1, DropReason.COPY_FAILED)
                self.owner.log.error(
                    "link.dropped",
                    link=link.name,
                    reason=DropReason.COPY_FAILED,
                    count=1,
                    copy=link.spec.copy.value,
                    error=describe(exc),
                    exc_info=exc,
                )
        return copies

    def _copy_some(self, link: Link, items: list[Any], start: int) -> tuple[list[Any], int]:
        """Copy ``items`` from ``start`` until the end or the quantum is spent."""
        position = start
        copies: list[Any] = []
        for size in self.pacing.strides(len(items) - start, timed=False):  # not the hook
            copies.extend(self.copies_for(link, items[position : position + size]))
            position += size
        return copies, position

    def _unconnected(self, count: int, port: str) -> None:
        self.owner.count_drop(count, DropReason.UNCONNECTED)
        warned = self._warned
        if warned is None:
            warned = self._warned = set()
        if port not in warned:
            warned.add(port)
            self.owner.log.warning(
                "actor.dropped", port=port, reason=DropReason.UNCONNECTED, count=count
            )

    async def send(self, items: list[Any], port: str) -> None:
        """Deliver ``items`` to every link of ``port``, waiting while one is full.

        Copies are made in chunks that fit the quantum. Whatever is not delivered when
        the wait is interrupted (a stop, a cancellation) is owed. The links are those of
        the port when the send began: a link removed meanwhile gets nothing more, and
        its removal cannot make a sibling link miss the items.
        """
        owner = self.owner
        links = self.outputs.get(port)
        if links is None:
            self.check_port(port)
            return
        owner.emitted += len(items)
        if owner.watched:
            owner.trace("message.sent", items, port=port)
        if not owner.ready:
            owner.mark_ready()
        if not links:
            self._unconnected(len(items), port)
            return
        if len(links) == 1:
            link = links[0]
            if link.copier is None and not link.closed:  # the common case, inlined
                direct = link.direct
                if (
                    direct is not None
                    and self.fuses
                    and _fits(link, items, owner)
                    and (
                        owner.fused_scope is not None  # the chain's head sized the batch
                        or len(items) >= link.capacity
                        or direct.fresh()
                    )
                ):
                    await direct.call(items, owner, self.pacing)  # stage fusion
                    return
                accepted = link.offer(items)
                if accepted < len(items):
                    await self._send_rest(link, items, accepted, port)
                return
            await self._send_one(link, items, port)
            return
        snapshot = list(links)
        for index, link in enumerate(snapshot):
            try:
                await self._send_one(link, items, port)
            except BaseException:
                # Every later link is owed the items (what this one had not had yet
                # already is).
                for later in snapshot[index + 1 :]:
                    if not later.closed:
                        self._owe(later, self.copies_for(later, items))
                raise

    async def _send_one(self, link: Link, items: list[Any], port: str) -> None:
        if link.closed:
            self._removed(link, len(items))  # removed while this send waited on a sibling
            return
        if link.copier is None:
            await self._deliver(link, items, port)
            return
        pacing = self.pacing
        position = 0
        try:
            while position < len(items):
                copies, position = self._copy_some(link, items, position)
                await self._deliver(link, copies, port)
                # Read even after the last chunk: it adapts the stride to the cost of
                # copying, and the next link's copies start in a fresh quantum if due.
                if pacing.spent(pacing.deadline):
                    await pacing.yield_()
        except BaseException:
            if position < len(items):
                if _removed_meanwhile(link):
                    self._removed(link, len(items) - position)
                else:
                    self._owe(link, self.copies_for(link, items[position:]))
            raise

    async def _deliver(self, link: Link, batch: list[Any], port: str) -> None:
        accepted = link.offer(batch)
        if accepted < len(batch):
            await self._send_rest(link, batch, accepted, port)

    async def _send_rest(self, link: Link, batch: list[Any], accepted: int, port: str) -> None:
        owner = self.owner
        previous = owner.state
        owner.set_state(ActorState.BLOCKED, blocked_on=f"output:{port}")
        try:
            while accepted < len(batch):
                run = owner.incarnation
                if run is not None and run.stopping:
                    raise Stop
                if owner.fused_scope is not None:
                    # Fused, in a producer's call: it must not wait there (the producer
                    # would wait on what is downstream of its consumer, and drain or send
                    # nothing else meanwhile). The call ends, the rest owed; the own task
                    # takes over and waits here while the producer fills the link.
                    raise Stop
                direct = link.direct
                if (
                    direct is not None
                    and link.items
                    and self.fuses
                    and len(self.outputs[port]) == 1  # never a fan-out port's link
                ):
                    # A burst of small batches filled the link before the consumer's own
                    # task (woken for them) could run: one call takes them all.
                    taken = link.take(len(link.items))
                    await direct.call(taken, owner, self.pacing, taken=True)
                    accepted = link.offer(batch, accepted)
                    continue
                await link.wait_for_space()
                if link.closed:  # removed: it gets nothing more
                    self._removed(link, len(batch) - accepted)
                    break
                direct = link.direct
                if (
                    direct is not None
                    and self.fuses
                    and _fits(link, batch, owner, accepted)
                    and len(self.outputs[port]) == 1  # never a fan-out port's link
                ):
                    # The consumer parked meanwhile: it takes the rest by call (handled,
                    # or given back into the link: delivered either way).
                    rest, accepted = batch[accepted:], len(batch)
                    await direct.call(rest, owner, self.pacing)
                    break
                accepted = link.offer(batch, accepted)
        except BaseException:
            if accepted < len(batch):
                if link.closed:
                    self._removed(link, len(batch) - accepted)
                else:
                    self._owe(link, batch[accepted:])
            raise
        owner.set_state(previous)

    def _removed(self, link: Link, count: int) -> None:
        """``count`` items meant for ``link`` never reached it: it was removed while the
        actor was sending them. Counted on the link, never lost in silence."""
        if count:
            link.drop(count, DropReason.LINK_REMOVED)
            self.owner.log.warning(
                "link.dropped", link=link.name, reason=DropReason.LINK_REMOVED, count=count
            )

    def owe(self, items: list[Any], port: str) -> None:
        """Keep outputs that could not be sent now; they go out before anything else."""
        if not items:
            return
        owner = self.owner
        self.check_port(port)
        owner.emitted += len(items)
        if owner.watched:
            owner.trace("message.sent", items, port=port)
        links = self.outputs[port]
        if not links:
            owner.count_drop(len(items), DropReason.UNCONNECTED)
        for link in links:
            self._owe(link, self.copies_for(link, items))

    async def flush(self) -> None:
        """Deliver what is owed, oldest first, before anything new."""
        owed = self.owed
        while owed:
            link, items = owed[0]
            if link.closed:  # removed since: it gets nothing more
                self._removed(link, len(items))
                owed.popleft()
                continue
            direct = link.direct
            owner = self.owner
            if (
                direct is not None
                and self.fuses
                and _fits(link, items, owner)
                and self._alone(link)
            ):
                owed.popleft()  # delivered by the call, handled or given back
                await direct.call(items, owner, self.pacing)
                continue
            accepted = link.offer(items)
            if accepted < len(items):
                owed[0] = (link, items[accepted:])
                self.owner.set_state(ActorState.BLOCKED, blocked_on="output:pending")
                await link.wait_for_space()
                run = self.owner.incarnation
                if run is not None and run.stopping:
                    raise Stop
                continue
            owed.popleft()

    def close(self) -> None:
        """The actor ended for good: deliver what fits of what is owed, count the rest,
        and pass the end of stream down every link."""
        owed = self.owed
        while owed:
            link, items = owed.popleft()
            accepted = link.offer(items)
            link.drop(len(items) - accepted, DropReason.SHUTDOWN)
        for links in self.outputs.values():
            for link in links:
                link.close()


def _fits(link: Link, items: list[Any], sender: Sender, start: int = 0) -> bool:
    """Whether a fused consumer may take ``items[start:]`` by call: its link is empty and
    they are no more than the buffers the call passes through would hold together
    (:meth:`Fusion.reach`). A sender itself inside a call passes on what its batch gave:
    the chain's head sized that batch to the buffers of the whole chain."""
    if link.items:
        return False
    count = len(items) - start
    if count <= link.capacity:
        return True
    if sender.fused_scope is not None and link.spec.buffer is None:
        return count <= POOL_LIMIT
    direct = link.direct
    return direct is not None and count <= direct.reach()


def _removed_meanwhile(link: Link) -> bool:
    """Whether ``link`` was removed while the send awaited (a call, so that a check made
    before the await does not decide this one)."""
    return link.closed
