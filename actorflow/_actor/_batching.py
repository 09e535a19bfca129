"""Batch hooks: ``process_batch`` and ``consume_batch`` take a list of items per call.

The handler a consumer builds for a batch hook hands it the whole batch taken from a
link (a copy: the runtime keeps its own list, which the journal, tracing and a failure
may still read), and sends what it returns on the main output port. The runtime's
work is per batch, not per item: one count of what it took (done when taken), of what
it sent, of what it filtered (how many fewer items came out than went in), two clock
reads, and the batch's timing at the mean of its items.

A batch hook that raises on a batch of several items names no item: the whole batch
goes back to the front of its link, untouched (not one is lost, and none of its results
was sent), and the module restarts as after any failure. Its items are then marked
(:attr:`Retries.isolated`): the next incarnations take from their links one item at a
time while any is left, so the item at fault fails alone and is retried, then
dead-lettered, as a per-item hook's would be (``attempts`` counts per item, the dead
letter names it). A failure on a batch of one item is a per-item failure from the start.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from .._checks import short
from .._exceptions import RunError, describe
from .._hooks import HookStyle, hook_style, learn_style, learned_sync
from .._link import Link
from .._module import ModuleKind
from ._incarnation import Incarnation, Stop
from ._room import Room

__all__ = ["BatchHook"]

_drain = deque[Any](maxlen=0).extend

_NONE: list[Any] = []
"""No items after a call's (never changed)."""

_NOT_A_BATCH = (str, bytes, bytearray, memoryview, dict)
"""Iterable, but one value, not the items to send: iterating it would send its
characters, bytes (as ints) or keys."""

_UNBOUNDED = 1 << 62
"""A call's size before one was seen to overrun its share of the quantum."""

_Handler = Callable[[Link, list[Any]], Awaitable[None]]


class BatchHook:
    """One incarnation's calls of its module's batch hook.

    Invariant: ``style`` is SYNC while the hook's calls return without awaiting (its
    shape learned once ``probing`` is false): only then may a producer's task call in
    (stage fusion).
    """

    __slots__ = (
        "collect",
        "fit",
        "give_back",
        "incarnation",
        "item_failed",
        "name",
        "overran",
        "probing",
        "room",
        "shape",
        "style",
    )

    def __init__(
        self,
        room: Room,
        incarnation: Incarnation,
        hook: Callable[..., Any],
        name: str,
        give_back: Callable[[Link, list[Any]], None],
        item_failed: Callable[[Exception, Link, Any, list[Any], int], RunError],
    ) -> None:
        self.room = room
        self.incarnation = incarnation
        self.name = name
        self.collect = room.kind is ModuleKind.PROCESSOR
        self.shape = hook
        """The hook itself, whose shape a first call may teach (``fn`` binds a port)."""
        self.give_back = give_back
        self.item_failed = item_failed
        """How a failure on one item is dealt with (retried or dead-lettered)."""
        style = hook_style(hook)
        self.style = HookStyle.SYNC if style is HookStyle.SYNC_GEN else style
        self.probing = self.style is HookStyle.SYNC and not learned_sync(hook)
        """Its first call tells whether a sync-looking hook hides an ``async def``."""
        self.fit = _UNBOUNDED
        """The most items one call is given: what fits a quarter of the quantum, at the
        cost per item of the last call that took longer than that (see :meth:`_took`)."""
        self.overran: tuple[int, float] | None = None
        """The size and time of the last call that took longer than a quarter of the
        quantum; ``(0, 0.0)`` once slicing was seen not to help (see :meth:`_size`)."""

    @property
    def fusable(self) -> bool:
        """Whether a producer may call this hook in its own task (see ``Fusion``)."""
        return self.style is HookStyle.SYNC and not self.probing

    def handler(self, fn: Callable[[list[Any]], Any]) -> _Handler:
        """The item handler that calls ``fn`` (the hook, its port bound) per batch."""
        return partial(self._handle, fn)

    async def _handle(self, fn: Callable[[list[Any]], Any], link: Link, batch: list[Any]) -> None:
        if len(batch) <= self.fit:
            await self._call(fn, link, batch, _NONE)
            return
        # Calls this long would overrun the quantum: the batch goes in slices that fit,
        # the actor yielding between them when its quantum is spent.
        # Each slice is sized anew: a call may show that slicing does not help.
        stopping, start = self.incarnation, 0
        while start < len(batch):
            if start and stopping.stopping:
                self.give_back(link, batch[start:])
                raise Stop
            end = start + self.fit
            await self._call(fn, link, batch[start:end], batch[end:])
            start = end

    async def _call(
        self, fn: Callable[[list[Any]], Any], link: Link, items: list[Any], rest: list[Any]
    ) -> None:
        """One call of the hook on ``items`` (``rest``: what comes after them in the
        batch, given back if this call fails or is cancelled)."""
        room = self.room
        pacing = room.pacing
        began = pacing.now()
        try:
            if room.fused_scope is not None and began >= pacing.deadline:
                await pacing.yield_()  # a called stage whose caller's quantum is spent
                began = pacing.now()
            result = fn(items[:])
            if type(result) is not list or self.probing:
                result = await self._listed(result)
        except Exception as exc:
            raise self._failed(exc, link, items, rest) from exc
        except BaseException:
            self.give_back(link, [*items, *rest])  # cancelled: none of them was handled
            raise
        try:
            now = pacing.now()
            self._took(now - began, items)
            if self.collect:
                if len(result) < len(items):
                    room.filtered += len(items) - len(result)
                if result:
                    outbox = room.outbox
                    await outbox.send(result, outbox.main)
                    now = pacing.now()
            if now >= pacing.deadline:
                await pacing.yield_()
        except BaseException:
            if rest:
                self.give_back(link, rest)
            raise

    def _took(self, elapsed: float, items: list[Any]) -> None:
        """A call on ``items`` took ``elapsed`` seconds: time it, size the next calls to
        a quarter of the quantum at that cost, and unmark the items it handled."""
        room = self.room
        pacing = room.pacing
        if pacing.timings is not None:
            pacing.timings.observe(elapsed, len(items))
        if self.style is HookStyle.SYNC:
            self._size(elapsed, len(items), pacing.quantum / 4)
        isolated = room.retries.isolated
        if isolated:
            for item in items:
                isolated.pop(id(item), None)

    def _size(self, elapsed: float, count: int, budget: float) -> None:
        """Size the next calls from one of ``count`` items that took ``elapsed``
        seconds. Only a hook that runs on the loop is sized (an async or threaded one
        lets the loop run while it waits), and only while its cost is seen to follow
        its size: a call cut to a slice that still costs well over its share of the
        one before (a fixed cost per call: a round trip, a vectorised call) stops the
        slicing, which would only multiply that cost."""
        overran = self.overran
        if overran == (0, 0.0):
            return
        if elapsed > budget:
            if overran is not None and count < overran[0]:
                expected = overran[1] * count / overran[0]
                if elapsed > 1.5 * expected:
                    self.fit, self.overran = _UNBOUNDED, (0, 0.0)
                    return
            self.fit = max(1, int(count * budget / elapsed))
            self.overran = (count, elapsed)
        elif self.fit < _UNBOUNDED and elapsed < budget / 2 and count >= self.fit:
            self.fit *= 2

    async def _listed(self, result: Any) -> list[Any]:
        """What a call returned, as a list: awaited if awaitable (a decorator hid an
        ``async def``: learnt on the first call), gathered if an async generator,
        ``None`` as none. A sink's return value is not used, but a generator still runs."""
        if self.probing:
            self.probing = False
            if learn_style(self.shape, result) in (HookStyle.ASYNC, HookStyle.ASYNC_GEN):
                self.style = HookStyle.ASYNC
        if inspect.isawaitable(result):
            result = await result
        if inspect.isasyncgen(result):
            return [value async for value in result]
        if result is None or type(result) is list:
            return result or []
        if not self.collect:
            if inspect.isgenerator(result):
                _drain(result)
            return []
        if not isinstance(result, Iterable) or isinstance(result, _NOT_A_BATCH):
            raise TypeError(
                f"{self.name} returned {short(result)}, not an iterable of the items to "
                "send (a list, say; None for none)"
            )
        return list(result)

    def _failed(self, exc: Exception, link: Link, items: list[Any], rest: list[Any]) -> RunError:
        """The hook raised: on one item, a per-item failure (retried, then
        dead-lettered); on several, all go back and are retried one at a time."""
        room = self.room
        if len(items) == 1:
            error = self.item_failed(exc, link, items[0], rest, room.received - len(rest))
            verdict = room.retries.last
            if verdict is not None and verdict.error is error and verdict.dead_lettered:
                room.retries.isolated.pop(id(items[0]), None)  # given up on: found
            return error
        room.retries.isolated.update((id(item), item) for item in items)
        self.give_back(link, [*items, *rest])
        error = RunError(
            room.name,
            f"{self.name} raised {describe(exc)} on a batch of {len(items)} items; they "
            "are retried one at a time to find the one at fault",
        )
        error.__cause__ = exc
        return error
