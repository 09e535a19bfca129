"""Stage fusion: a producer's task runs its consumer's handler by call.

A consumer whose only input is one plain link (blocking, one worker, local, not
feedback) and whose hook is sync lets that link's producer call its item handler
directly while its own task waits on an empty mailbox: the batch skips the buffer and
two task switches, and a private chain of such modules runs in its head's task. Each
module keeps what it owns: its incarnation, its counters and state, its pacing (it
takes the caller's deadline, so the quantum is shared), its retries, its outbox.

A call never waits on what lies below its consumer: a fused stage whose output link is
full ends the call (see ``Outbox._send_rest``) and its own task waits, so the producer is
held only as a full buffer would hold it. A call never hands a consumer more than the
links it passes through would hold together (:meth:`Fusion.reach`: a link's own buffer,
pooled along a chain of links left to the default buffer, which hold nothing while a
batch passes by call), and a fused source pulls no more than that, so buffers bound
lookahead as unfused. Only a port's only link carries calls (never a fan-out's), and
only between modules of the same latency sensitivity. A burst of small batches (a
producer emitting item by item without yielding) waits in the link instead of making a
call each (:meth:`Fusion.fresh`), and goes by one call when it fills the link.

What happens at the boundary of a call, in the caller's task, is what would have
happened in the consumer's own:

* its module raises: the items after the failing one are back in the link (as always);
  the failure is handed to the consumer's own task, which raises it, so its supervisor
  restarts that module only. While the items given back fill the link, the caller
  waits for room as it would on the buffer of a consumer in its own task (a stop asked
  of the caller meanwhile ends its call), so the supervisor acts on the failure before
  the chain above runs ahead; then it goes on, into the buffer, until the new
  incarnation parks again;
* it is asked to stop, or its own task wakes for any reason: the call ends at the next
  item boundary, the rest back in the link, and its own task takes over;
* it is killed or cancelled: the call is cancelled through the scope its chain's first
  call opened (one scope per chain: a scope costs as much as a small batch), so its
  module is left before its ``cleanup()`` runs. Every stage of the chain below the head
  is interrupted at its next checkpoint, gives its unhandled items back to its link and
  owes what it could not send, exactly as when its own task is cancelled; their own
  tasks take over. The head is untouched.

Fusion is switched off with ``Settings(fuse=False)`` (``fuse = false`` in a graph file's
``[settings]``); ``ActorStatus.fused_into`` names the actor whose task runs a fused one.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._exceptions import RunError
from .._link import POOL_LIMIT, Link
from .._status import ActorState
from ._incarnation import Incarnation, Stop
from ._pacing import Pacing
from ._priority import interactions_of
from ._room import Room, spans_done

__all__ = ["Fusion"]

_cancels = [0]
"""How many chain scopes :meth:`Fusion.release` cancelled (nothing else cancels one): a
call during which none was skips asking its scope (``cancel_called`` reads the clock)."""

_UNIQUE = itertools.count()
"""Never equal twice: were trio's count of a task's schedule points gone, every small
batch would be worth a call (as before bursts were told apart)."""

_Handler = Callable[[Link, list[Any]], Awaitable[None]]


class Fusion:
    """One incarnation's side of stage fusion (see the module docstring).

    Invariant: ``link.direct`` is set only while the consumer's own task is parked on
    its empty mailbox and no call is in it; ``inside`` is true while a producer's task
    runs its handler.
    """

    __slots__ = (
        "_eligible",
        "_handler_of",
        "_outside",
        "_points",
        "_scope",
        "_task",
        "failure",
        "incarnation",
        "inside",
        "link",
        "parked",
        "room",
    )

    def __init__(
        self,
        room: Room,
        incarnation: Incarnation,
        handler_of: Callable[[Link], _Handler],
        eligible: Callable[[], bool],
    ) -> None:
        self.room = room
        self.incarnation = incarnation
        self._handler_of = handler_of
        self._eligible = eligible
        self.link: Link | None = None
        """The input link whose producer may call in (while armed)."""
        self.inside = False
        self.parked = False
        self.failure: RunError | None = None
        """The module failed in a producer's task: its own task raises this."""
        self._outside: trio.Event | None = None
        self._scope: trio.CancelScope | None = None
        self._task: object = None
        """The task of the last small call from outside any call."""
        self._points = -1
        """How many times that task had been through trio's scheduler then."""

    def _candidate(self) -> Link | None:
        """The one input link a producer may call through, if fusion is possible now."""
        mailbox = self.room.mailbox
        links = mailbox.links
        if len(links) != 1 or mailbox.remote or self.incarnation.stopping:
            return None
        link = links[0]
        if (
            type(link) is not Link
            or link.items
            or link.closed
            or link.never_blocks
            or link.dedicated
            or link.spec.feedback
            or not self._eligible()
            or not self._same_priority(link)
        ):
            return None
        return link

    def _same_priority(self, link: Link) -> bool:
        """Whether producer and consumer are both latency-sensitive or both not: fused
        into a sensitive producer, a module that is not would skip the wait behind
        progressive steps it opted into; fused the other way, a sensitive one would
        wait behind them."""
        names = interactions_of(self.room.system).names
        return (link.spec.source in names) == (self.room.name in names)

    def arm(self) -> None:
        """The own task is about to park on its empty mailbox: let the producer call in."""
        link = self._candidate()
        self.parked = True
        self.link = link
        if link is None:
            self.room.fused_into = None
            return
        link.direct = self

    def fresh(self) -> bool:
        """Whether a small batch sent from outside any call is worth a call: not when
        its producer's task has not been through trio's scheduler since the last one
        (it emits item by item, say): a call per item costs several times what
        unfused delivery costs it (one wake per run of emits), so the items wait in
        the link, the consumer's own task woken for them; when they fill it before
        the producer yields, they are handed over by one call (see ``Outbox``)."""
        task = trio.lowlevel.current_task()
        points = getattr(task, "_schedule_points", None)
        if points is None:
            points = next(_UNIQUE)
        if task is self._task and points == self._points:
            return False
        self._task, self._points = task, points
        return True

    def reach(self) -> int:
        """The most items one call may hand this consumer: its link's buffer, plus, when
        that buffer was left to the default, the buffers of the armed, empty links
        (also left to the default) a batch would pass through below it: they hold
        nothing while it passes by call, so a chain moves at once what its links would
        hold together, and no more (at most :data:`POOL_LIMIT`). A buffer set on a
        link bounds its batches exactly (``buffer=1``: one item at a time)."""
        link = self.link
        assert link is not None
        total = link.capacity
        fusion = self
        while link.spec.buffer is None and total < POOL_LIMIT:
            outbox = fusion.room.outbox
            below = outbox.outputs.get(outbox.main)
            if below is None or len(below) != 1 or not outbox.fuses:
                break
            link = below[0]
            following = link.direct
            if (
                not isinstance(following, Fusion)
                or link.items
                or link.copier is not None
                or link.spec.buffer is not None
            ):
                break
            total += link.capacity
            fusion = following
        return min(total, POOL_LIMIT)

    def unlink(self) -> None:
        """The input links changed (one was added): producers send into buffers again."""
        if self.link is not None:
            self.link.direct = None
            self.link = None
        self.room.fused_into = None

    async def disarm(self) -> None:
        """The own task woke: wait until a call in progress is over, then take over
        (raising the failure a call handed over, delivering what a call left owed)."""
        self.parked = False
        link = self.link
        if link is not None:
            link.direct = None
        self.room.fused_into = None  # its own task runs it from now on
        if self.inside:
            await self._wait_outside()
        failure = self.failure
        if failure is not None:
            self.failure = None
            raise failure
        outbox = self.room.outbox
        if outbox.owed:
            await outbox.flush()

    async def release(self) -> None:
        """The incarnation ends, however: no call may run on in its module."""
        self.parked = False
        self.unlink()
        if self.inside:
            if self._scope is not None:
                _cancels[0] += 1  # before: a call that sees no change skips the check
                self._scope.cancel()
            with trio.CancelScope(shield=True):
                await self._wait_outside()

    async def _wait_outside(self) -> None:
        while self.inside:
            if self._outside is None:
                self._outside = trio.Event()
            await self._outside.wait()

    async def call(
        self, items: list[Any], caller: Any, pacing: Pacing, *, taken: bool = False
    ) -> None:
        """Handle ``items`` in the caller's task, as the own task would have (the
        caller is the producing actor, ``pacing`` its quantum, shared for the call;
        ``taken``: they were in the link, taken from it, counted on it)."""
        link = self.link
        assert link is not None
        link.direct = None  # no call into a call; the own task stays parked
        room = self.room
        count = len(items)
        if not taken:
            link.sent += count
            link.delivered += count
        try:
            if room.watched:
                room.trace("message.received", items, link=link)
            handle = self._handler_of(link)
        except Exception:
            # Not the producer's failure: the items wait in the link, and the own task
            # takes them and meets the failure itself (nothing lost, nothing counted twice).
            link.requeue(items)
            return
        room.received += count
        room.fused_into = caller.fused_into or caller.name
        room.set_state(ActorState.RUNNING)
        own = room.pacing
        own.deadline = pacing.deadline
        self.inside = done = True
        cancels = _cancels[0]
        try:
            scope = caller.fused_scope
            if scope is None:  # the chain's first call: it opens the chain's scope
                with trio.CancelScope() as scope:
                    self._scope = room.fused_scope = scope
                    await handle(link, items)
            else:
                self._scope = room.fused_scope = scope
                await handle(link, items)
        except RunError as error:
            # Not this frame: it waits below while the own task raises the failure, and
            # the actor clears the frames of the failures it keeps (a suspended one
            # cleared would close this call).
            tb = error.__traceback__
            if tb is not None and tb.tb_frame is inspect.currentframe():
                error.__traceback__ = tb.tb_next
            self.failure = error
            done = False
        except Stop:
            done = False
        except BaseException:
            done = False
            raise
        finally:
            spans_done(room, items)
            # A scope cancelled meanwhile (by a release, the only canceller) may be this
            # chain's: the own task takes over rather than re-arming under it.
            self._left(link, own, pacing, done and cancels == _cancels[0])
        if self.failure is not None:
            await _wait_for_room(link, caller)

    def _left(self, link: Link, own: Pacing, pacing: Pacing, done: bool) -> None:
        """A call is over: re-arm if all went well, else wake the own task to take over."""
        room = self.room
        self._scope = room.fused_scope = None
        self.inside = False
        pacing.deadline = own.deadline
        outside, self._outside = self._outside, None
        if outside is not None:
            outside.set()
        if (
            done
            and self.parked
            and self.link is link
            and not link.items
            and not link.closed
            and not self.incarnation.stopping
        ):
            link.direct = self
            room.set_state(ActorState.BLOCKED, blocked_on="input")
            return
        room.mailbox.notify()


async def _wait_for_room(link: Link, caller: Any) -> None:
    """The consumer failed with its link full of what it gave back: hold the caller
    as that full buffer would hold it in its own task, until there is room, the
    consumer is gone, or the caller is asked to stop (its stop wakes it here)."""
    while len(link.items) >= link.capacity and not link.receiver_closed:
        run = caller.incarnation
        if (run is not None and run.stopping) or caller.fused_scope is not None:
            raise Stop  # a caller itself in a call ends it instead (see Outbox)
        await link.wait_for_space()
