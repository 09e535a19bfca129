"""The progressive driver: call ``run_step`` until the module is done.

Each step is sized to the quantum from the measured seconds per unit; between steps the
actor checkpoints. An interactive module that terminated waits for new input to be
resurrected; a suspended one waits to be resumed.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import RunError, describe
from .._hooks import HookStyle, hook_style
from .._link import Link
from .._progressive import Step, StepState
from .._status import ActorState, DropReason
from ._incarnation import Incarnation
from ._priority import Interactions, interactions_of
from ._room import Room

__all__ = ["StepDriver", "read_port", "read_synced"]


def read_port(room: Room, port: str, limit: int | None) -> list[Any]:
    """Take what arrived on input ``port``, at most ``limit`` (not counted here)."""
    taken: list[Any] = []
    for link in room.mailbox.links:
        if link.spec.target_port != port or not link.items:
            continue
        free = len(link.items) if limit is None else limit - len(taken)
        if free <= 0:
            break
        got = link.take(free)
        if room.watched:
            room.trace("message.received", got, link=link)
        taken.extend(got)
    return taken


def read_synced(
    room: Room, ports: Sequence[str], key: Callable[[Any], Any] | None, limit: int | None
) -> list[tuple[Any, ...]]:
    """Take the items every port has produced, joined by sequence or by ``key``."""
    links = {port: [k for k in room.mailbox.links if k.spec.target_port == port] for port in ports}
    unknown = [port for port, found in links.items() if not found]
    if unknown:
        raise KeyError(f"module {room.name!r} has no linked input port {unknown[0]!r}")
    if key is None:
        count = min(sum(len(k.items) for k in found) for found in links.values())
        if limit is not None:
            count = min(count, limit)
        columns = [read_port(room, port, count) for port in ports]
        room.received += count * len(ports)
        rows: list[tuple[Any, ...]] = list(zip(*columns, strict=True))
    else:
        rows = _join_by_key(links, ports, key, limit)
        room.received += len(rows) * len(ports)
        stuck = [_stuck(found) for found in links.values()]
        if not rows and all(stuck) and not any(_ended(found) for found in links.values()):
            _drop_stuck(room, links)
    # Once every input has ended the module ends too, and what waits is counted then.
    if not room.mailbox.all_closed() and any(_ended(found) for found in links.values()):
        _drop_unmatched(room, links, key)
    return rows


def _ended(links: list[Link]) -> bool:
    return all(link.closed for link in links)


def _drop_unmatched(
    room: Room, links: dict[str, list[Link]], key: Callable[[Any], Any] | None
) -> None:
    """An input that has ended sends nothing more: what waits on the other inputs for a
    partner it does not hold can never be joined. While other inputs still run (so the
    module does not end), it is dropped (``unmatched``) and warned about, rather than
    waiting for ever in silence."""
    ended = [port for port, found in links.items() if _ended(found)]
    if key is None:  # by sequence: the n-th items; an ended input holds the last n
        left = min(sum(len(k.items) for k in links[port]) for port in ended)
        doomed = {
            port: [item for link in found for item in link.items][left:]
            for port, found in links.items()
        }
    else:
        keys = {port: {key(item) for k in links[port] for item in k.items} for port in ended}
        doomed = {
            port: [
                item
                for link in found
                for item in link.items
                if any(key(item) not in keys[other] for other in ended if other != port)
            ]
            for port, found in links.items()
        }
    dropped = 0
    for port, items in doomed.items():
        for item in items:
            for link in links[port]:
                if any(waiting is item for waiting in link.items):
                    link.remove_item(item)
                    break
        dropped += len(items)
    if dropped:
        room.received += dropped
        room.count_drop(dropped, DropReason.UNMATCHED)
        room.log.warning(
            "actor.unmatched",
            count=dropped,
            ended=ended,
            error="read_synced: items wait for a partner that an ended input can never send",
        )


def _join_by_key(
    links: dict[str, list[Link]],
    ports: Sequence[str],
    key: Callable[[Any], Any],
    limit: int | None,
) -> list[tuple[Any, ...]]:
    """Join the waiting items whose keys every port has, in the first port's order;
    items with the same key pair up in arrival order (first with first)."""
    first, *others = ports
    queues = {port: _by_key(links[port], key) for port in others}
    joined: list[tuple[Any, ...]] = []
    for link, item in [(found, item) for found in links[first] for item in found.items]:
        if limit is not None and len(joined) >= limit:
            break
        item_key = key(item)
        if not all(queues[port].get(item_key) for port in others):
            continue
        link.remove_item(item)
        row = [item]
        for port in others:
            other_link, other = queues[port][item_key].popleft()
            other_link.remove_item(other)
            row.append(other)
        joined.append(tuple(row))
    return joined


def _by_key(found: list[Link], key: Callable[[Any], Any]) -> dict[Any, deque[tuple[Link, Any]]]:
    """A port's waiting items by key, each key's in arrival order."""
    queues: dict[Any, deque[tuple[Link, Any]]] = {}
    for link in found:
        for item in link.items:
            queues.setdefault(key(item), deque()).append((link, item))
    return queues


def _stuck(found: list[Link]) -> bool:
    """Whether nothing more can come on a port: each of its links has ended, or is full
    and makes its producer wait (a lossy link makes room by itself)."""
    return all(
        link.closed or (not link.never_blocks and len(link.items) >= link.capacity)
        for link in found
    )


def _drop_stuck(room: Room, links: dict[str, list[Link]]) -> None:
    """Every input is full and no waiting item has a partner: nothing can arrive to
    match them, so the join would wait for ever. The oldest item of each full input is
    dropped (``unmatched``), which lets its producer go on, and warned about (at 1, 2,
    4, ... such drops, so a stream that never matches does not flood the log)."""
    dropped = 0
    for found in links.values():
        full = [link for link in found if link.items and not link.closed]
        if full:
            link = full[0]
            link.remove_item(link.items[0])
            dropped += 1
    before = room.dropped.get(DropReason.UNMATCHED, 0)
    room.received += dropped
    room.count_drop(dropped, DropReason.UNMATCHED)
    total = before + dropped
    if total.bit_length() > before.bit_length():  # 1, 2, 4, 8... : a log, not a flood
        room.log.warning(
            "actor.unmatched",
            count=dropped,
            total=total,
            error="read_synced: every input is full of items no other input can match; "
            "the oldest of each was dropped",
        )


class StepDriver:
    """Runs one incarnation of a progressive module."""

    __slots__ = ("gate", "incarnation", "quantum", "room", "seconds_per_unit", "step_size")

    def __init__(self, room: Room, incarnation: Incarnation) -> None:
        self.room = room
        self.incarnation = incarnation
        module: Any = room.module
        self.quantum: float = module.quantum or room.pacing.quantum
        self.step_size = max(1, int(module.step_size))
        self.seconds_per_unit: float | None = None
        system = room.system
        interactions = None if system is None else interactions_of(system)
        self.gate: Interactions | None = (
            interactions if interactions is not None and interactions.gates(room.name) else None
        )
        """The system's latency-sensitive actors, which go before each step (``None``
        when this module is one of them, or there are none)."""

    def link_added(self, link: Link) -> None:
        """Nothing to do: every link is read where it is needed."""

    async def run(self) -> None:
        """Call run_step until the module is done, sizing each step to the quantum."""
        room, incarnation, gate = self.room, self.incarnation, self.gate
        mailbox, pacing = room.mailbox, room.pacing
        module: Any = room.module
        style = hook_style(module.run_step)
        run_number = 0
        last_report = -math.inf
        while not incarnation.stopping:
            if room.suspended:
                room.set_state(ActorState.SUSPENDED)
                await mailbox.wait()  # resume(), new input and stops all notify
                continue
            if gate is not None and not await self._give_way(gate):
                break
            room.step_size = self.step_size
            room.set_state(ActorState.RUNNING)
            seen = mailbox.version
            result, took = await self._step(module, style, run_number)
            run_number += 1
            await self._send_posted()
            if room.progress is not None and pacing.now() - last_report >= 1.0:
                last_report = pacing.now()
                done, total = room.progress
                room.log.info("actor.progress", done=done, total=total, step_size=self.step_size)
            self._size_next(module, result, took)
            if result.state is StepState.TERMINATED:
                if not module.interactive or not await self._await_resurrection(seen):
                    return
                continue
            if result.state is StepState.BLOCKED:
                # Blocked means "until something new arrives". What is still waiting was
                # seen by the step (held back by a join, say) and does not count.
                if mailbox.version == seen:
                    if mailbox.all_closed():
                        return  # nothing new can come
                    room.set_state(ActorState.BLOCKED, blocked_on="input")
                    await mailbox.wait()
                pacing.restart()
            else:
                await pacing.yield_()

    async def _give_way(self, gate: Interactions) -> bool:
        """Let the interactions go first; whether to go on stepping (not stopped)."""
        await gate.give_way(self.room.pacing.now, self.quantum)
        return not self.incarnation.stopping

    async def _step(self, module: Any, style: HookStyle, run_number: int) -> tuple[Step, float]:
        """One call of ``run_step``; returns its result and how long it took."""
        room = self.room
        now = room.pacing.now
        began = now()
        try:
            result = module.run_step(run_number, self.step_size, self.quantum)
            if style is not HookStyle.SYNC or (
                type(result) is not Step and inspect.isawaitable(result)
            ):
                result = await result
        except Exception as exc:
            room.clear_posted()
            raise RunError(room.name, f"run_step() raised {describe(exc)}") from exc
        took = now() - began
        if not isinstance(result, Step):
            raise RunError(
                room.name,
                f"run_step() returned {type(result).__name__}; expected "
                "actorflow.Step(state, done)",
            )
        return result, took

    def _size_next(self, module: Any, result: Step, took: float) -> None:
        """Learn the speed (seconds per unit) and size the next step to the quantum."""
        step_size = self.step_size
        if result.done > 0 and took > 0:
            measured = took / result.done
            known = self.seconds_per_unit
            self.seconds_per_unit = measured if known is None else (known + measured) / 2
            step_size = round(0.9 * self.quantum / self.seconds_per_unit)
        elif result.done >= step_size:
            step_size *= 2  # free so far: grow until the time shows
        self.step_size = max(1, min(step_size, int(module.max_step_size)))

    async def _await_resurrection(self, seen: int) -> bool:
        """An interactive module terminated: wait for new input. True when it comes
        (the module is resurrected); False when every input ended instead."""
        room, incarnation = self.room, self.incarnation
        mailbox = room.mailbox
        room.set_state(ActorState.TERMINATED)
        while mailbox.version == seen:
            if mailbox.all_closed() or incarnation.stopping:
                return False
            await mailbox.wait()
        if incarnation.stopping or (mailbox.all_closed() and not mailbox.depth()):
            return False
        room.log.info("actor.resurrected")
        room.set_state(ActorState.READY)
        return True

    async def _send_posted(self) -> None:
        by_port: dict[str, list[Any]] = {}
        for port, item in self.room.take_posted():
            by_port.setdefault(port, []).append(item)
        for port, items in by_port.items():
            await self.room.outbox.send(items, port)
