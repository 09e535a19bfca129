"""What one process shows of its part of a graph: each actor's numbers, rate and recent
events, each link's fill, as JSON-ready data.

Events are found by comparing each status snapshot with the one before (a state left,
a restart, an error with its message, a dead letter, a drop), so watching costs the
running graph nothing between snapshots and needs no hook in the actors; each actor
keeps its last :data:`KEEP` events in a ring. The frequent ``ready``/``running``/
``blocked`` changes are left out, as the logs leave them to debug.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

import attrs

from .._actor import DeadLetter
from .._checks import clip
from .._exceptions import describe
from .._rates import Rates, StatusRates
from .._reportable import MAX_TASK, json_ready, text
from .._status import ActorStatus, LinkStatus, SystemStatus
from .._urls import hide_secrets, redact_text

__all__ = ["KEEP", "MAX_SHOWN", "Tracker", "Watched"]

KEEP = 30
"""Recent events kept per actor."""

MAX_SHOWN = 2_000
"""The most characters shown of an error, or of any text an event quotes."""

MARGIN = 1_000
"""How far past what is shown of a cut text secrets are looked for (see Tracker.hide)."""

_FREQUENT = frozenset({"ready", "running", "blocked"})


@attrs.frozen
class Watched:
    """What the dashboard (or a status publisher) may ask of a running system.

    Attributes:
        status: A snapshot of every actor and link here.
        errors: The last error of each actor that has failed, as one line.
        dead_letters: The system's recent dead letters, oldest first.
        here: The modules that run in this process.
        started_at: When the system started (seconds since the epoch).
        secrets: URLs whose passwords must never be shown (remote links, stores).
    """

    status: Callable[[], SystemStatus]
    errors: Callable[[], Mapping[str, str]]
    dead_letters: Callable[[], Sequence[DeadLetter]]
    here: Set[str]
    started_at: float
    secrets: tuple[str, ...] = ()


def _event(level: str, said: str, now: float) -> dict[str, Any]:
    return {"time": now, "level": level, "text": said}


@attrs.define
class Tracker:
    """Turns successive snapshots of one process into its view (see :meth:`update`)."""

    watched: Watched
    rates: StatusRates = attrs.field(factory=lambda: StatusRates(Rates(window=2.0)))
    _last: dict[str, ActorStatus] = attrs.field(factory=dict)
    _events: dict[str, deque[dict[str, Any]]] = attrs.field(factory=dict)
    _newest_letter: int | None = None

    _hidden: dict[str, tuple[str, str]] = attrs.field(factory=dict)

    def hide(self, said: str) -> str:
        """``said`` as it may be shown: no secret of a URL we know or it quotes, and
        at most :data:`MAX_SHOWN` characters (a megabyte of error is not sent twice a
        second to each page). Only the ends that are shown are searched for secrets,
        each with :data:`MARGIN` characters more, so the work is bounded whatever the
        size; a secret longer than that margin, cut by it, may be shown in part."""
        if len(said) <= MAX_SHOWN + 2 * MARGIN:
            return clip(self._redact(said), MAX_SHOWN)
        head, tail = MAX_SHOWN * 2 // 3, MAX_SHOWN // 3
        shown_head = self._redact(said[: head + MARGIN])[:head]
        shown_tail = self._redact(said[-(tail + MARGIN) :])[-tail:]
        return f"{shown_head}...({len(said) - head - tail} characters cut)...{shown_tail}"

    def _redact(self, said: str) -> str:
        return redact_text(hide_secrets(said, *self.watched.secrets))

    def _hide_error(self, name: str, error: str) -> str:
        """An actor's last error as shown, hidden once per error, not once per tick."""
        known = self._hidden.get(name)
        if known is None or known[0] != error:
            known = self._hidden[name] = (error, self.hide(error))
        return known[1]

    def update(self, now: float | None = None) -> dict[str, Any]:
        """A snapshot of the process now: its state, actors, links and their events."""
        now = time.time() if now is None else now
        status = self.watched.status()
        self._forget_removed(status)
        errors = {name: self._hide_error(name, e) for name, e in self.watched.errors().items()}
        rates = self.rates.update(status, time.monotonic())
        letters = self._new_letters()
        dropped_at = status.dropped_at()
        ended = status.state.value in {"done", "failed", "cancelled"}
        actors: dict[str, Any] = {}
        for name, actor in status.actors.items():
            self._observe(actor, errors.get(name), letters.get(name, []), now)
            self._last[name] = actor
            lost = sum(dropped_at.get(name, {}).values())
            rate = None if ended else rates.get(name)  # a run that has ended: no pace
            actors[name] = _actor_view(actor, rate, errors.get(name), lost)
            actors[name]["events"] = list(self._events[name])
            if actor.reason:
                actors[name]["reason"] = self.hide(str(actor.reason))
        return {
            "state": status.state.value,
            "started_at": self.watched.started_at,
            "time": now,
            "dropped": status.dropped,
            "here": sorted(self.watched.here),
            "actors": actors,
            "links": {name: _link_view(link) for name, link in status.links.items()},
        }

    def _forget_removed(self, status: SystemStatus) -> None:
        """Forget the rate, events and last error of every module removed since the
        last update (gone, or removed and added again meanwhile): one added under its
        name is shown afresh."""
        for name in self.rates.forget_removed(status):
            self._last.pop(name, None)
            self._events.pop(name, None)
            self._hidden.pop(name, None)

    def _new_letters(self) -> dict[str, list[DeadLetter]]:
        """The dead letters not seen before, by actor."""
        letters = self.watched.dead_letters()
        fresh: list[DeadLetter] = []
        for letter in reversed(letters):
            if id(letter) == self._newest_letter:
                break
            fresh.append(letter)
        if letters:
            self._newest_letter = id(letters[-1])
        found: dict[str, list[DeadLetter]] = {}
        for letter in reversed(fresh):
            found.setdefault(letter.actor, []).append(letter)
        return found

    def _observe(
        self, actor: ActorStatus, error: str | None, letters: list[DeadLetter], now: float
    ) -> None:
        """Add to ``actor``'s ring what changed since its last snapshot."""
        ring = self._events.get(actor.name)
        if ring is None:
            ring = self._events[actor.name] = deque(maxlen=KEEP)
        before = self._last.get(actor.name)
        state = actor.state.value
        if before is None or (
            before.state is not actor.state and not {before.state.value, state} <= _FREQUENT
        ):
            ended = (
                f" ({self.hide(actor.reason)})" if actor.state.is_final and actor.reason else ""
            )
            level = "error" if state == "invalid" else "info"
            ring.append(_event(level, f"state {state}{ended}", now))
        if before is None:
            return
        if actor.errors > before.errors:
            many = actor.errors - before.errors
            said = f"{many} errors, the last: " if many > 1 else "error: "
            ring.append(_event("error", said + (error or "(no message)"), now))
        if actor.restarts > before.restarts:
            ring.append(_event("warning", f"restarted ({actor.restarts} in all)", now))
        for letter in letters:
            said = f"dead letter {letter.message_id} after {letter.attempts} attempts"
            ring.append(_event("error", f"{said}: {self.hide(describe(letter.error))}", now))
        lost = {r: c - before.dropped.get(r, 0) for r, c in actor.dropped.items()}
        for reason, count in lost.items():
            if count > 0:
                ring.append(_event("warning", f"dropped {count} ({reason})", now))


def _actor_view(
    actor: ActorStatus, rate: float | None, error: str | None, lost: int
) -> dict[str, Any]:
    return {
        "kind": actor.kind,
        "task": text(actor.task, MAX_TASK),
        "state": actor.state.value,
        "blocked_on": actor.blocked_on,
        "fused_into": actor.fused_into,
        "received": actor.received,
        "emitted": actor.emitted,
        "rate": None if actor.state.is_final or rate is None else round(rate, 3),
        "depth": actor.mailbox_depth,
        "progress": json_ready(actor.progress),
        "restarts": actor.restarts,
        "errors": actor.errors,
        "dead": actor.dead_lettered,
        "dropped": lost,
        "reason": actor.reason,
        "error": error,
        "info": json_ready(actor.info),
    }


def _link_view(link: LinkStatus) -> dict[str, Any]:
    return {
        "depth": link.depth,
        "capacity": link.capacity,
        "fill": min(1.0, link.depth / link.capacity) if link.capacity else 0.0,
        "sent": link.sent,
        "delivered": link.delivered,
        "dropped": sum(link.dropped.values()),
        "closed": link.closed,
        "target": link.target,
    }
