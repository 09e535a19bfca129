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
from ._room import Room

__all__ = ["BatchHook"]

_drain = deque[Any](maxlen=0).extend

_Handler = Callable[[Link, list[Any]], Awaitable[None]]


class BatchHook:
    """One incarnation's calls of its module's batch hook.

    Invariant: ``style`` is SYNC while the hook's calls return without awaiting (its
    shape learned once ``probing`` is false): only then may a producer's task call in
    (stage fusion).
    """

    __slots__ = (
        "collect",
        "give_back",
        "item_failed",
        "name",
        "probing",
        "room",
        "shape",
        "style",
    )

    def __init__(
        self,
        room: Room,
        hook: Callable[..., Any],
        name: str,
        give_back: Callable[[Link, list[Any]], None],
        item_failed: Callable[[Exception, Link, Any, list[Any], int], RunError],
    ) -> None:
        self.room = room
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

    @property
    def fusable(self) -> bool:
        """Whether a producer may call this hook in its own task (see ``Fusion``)."""
        return self.style is HookStyle.SYNC and not self.probing

    def handler(self, fn: Callable[[list[Any]], Any]) -> _Handler:
        """The item handler that calls ``fn`` (the hook, its port bound) per batch."""
        return partial(self._handle, fn)

    async def _handle(self, fn: Callable[[list[Any]], Any], link: Link, batch: list[Any]) -> None:
        room = self.room
        pacing = room.pacing
        began = pacing.now()
        if room.fused_scope is not None and began >= pacing.deadline:
            await pacing.yield_()  # a called stage whose caller's quantum is spent
            began = pacing.now()
        try:
            result = fn(batch[:])
            if type(result) is not list or self.probing:
                result = await self._listed(result)
        except Exception as exc:
            raise self._failed(exc, link, batch) from exc
        except BaseException:
            self.give_back(link, batch)  # cancelled inside the hook: none was handled
            raise
        now = pacing.now()
        if pacing.timings is not None:
            pacing.timings.observe(now - began, len(batch))
        isolated = room.retries.isolated
        if isolated:
            for item in batch:
                isolated.pop(id(item), None)
        if self.collect:
            if len(result) < len(batch):
                room.filtered += len(batch) - len(result)
            if result:
                outbox = room.outbox
                await outbox.send(result, outbox.main)
                now = pacing.now()
        if now >= pacing.deadline:
            await pacing.yield_()

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
        if not isinstance(result, Iterable) or isinstance(result, str | bytes | dict):
            raise TypeError(
                f"{self.name} returned {short(result)}, not an iterable of the items to "
                "send (a list, say; None for none)"
            )
        return list(result)

    def _failed(self, exc: Exception, link: Link, batch: list[Any]) -> RunError:
        """The hook raised: on one item, a per-item failure (retried, then
        dead-lettered); on several, all go back and are retried one at a time."""
        room = self.room
        if len(batch) == 1:
            error = self.item_failed(exc, link, batch[0], [], room.received)
            verdict = room.retries.last
            if verdict is not None and verdict.error is error and verdict.dead_lettered:
                room.retries.isolated.pop(id(batch[0]), None)  # given up on: found
            return error
        room.retries.isolated.update((id(item), item) for item in batch)
        self.give_back(link, batch)
        error = RunError(
            room.name,
            f"{self.name} raised {describe(exc)} on a batch of {len(batch)} items; they "
            "are retried one at a time to find the one at fault",
        )
        error.__cause__ = exc
        return error
