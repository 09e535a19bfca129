"""The page's data: the laid-out graph and, refreshed on a beat, one snapshot of it all.

One task refreshes the board every ``interval`` seconds, however many pages watch, and
each page's event stream waits for the next version. The snapshot merges this process's
view with those other processes of the same graph published (see :mod:`._peers`):
each actor is shown as the process that runs it reports it, tagged with that process.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Set
from typing import Any

import attrs
import trio

from .._graph import Graph
from ._layout import layout
from ._tracker import KEEP, Tracker

__all__ = ["Board", "GONE_AFTER"]

GONE_AFTER = 5.0
"""Seconds after its last report that another process is shown as gone."""


@attrs.define
class Board:
    """The snapshot pages are sent, and the version they have seen.

    Invariant: ``version`` counts the snapshots made; ``_changed`` is set (and
    replaced) each time it grows. ``layout`` is the graph as its links are now: a link
    added or removed while the system runs lays it out again (``drawing`` counts how
    often, and each snapshot says which drawing it goes with). ``run`` is this board's
    own id: a page that outlives its server and reconnects to the next one on the same
    port (another graph, perhaps, at drawing 1 again) sees a new run and draws anew.
    """

    graph: Graph
    here: Set[str]
    tracker: Tracker
    process: str
    """This process, as ``host:pid``."""
    interval: float = 0.5
    peers: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """The last view each other process published, by process."""
    current: dict[str, Any] = attrs.field(factory=dict)
    version: int = 0
    watchers: int = 0
    """Pages following the snapshots now."""
    layout: dict[str, Any] = attrs.field(init=False)
    drawing: int = 0
    run: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    _shape: tuple[object, ...] | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _encoded: tuple[int, str] = (-1, "")

    def __attrs_post_init__(self) -> None:
        self._draw()

    def _draw(self) -> None:
        """Lay the graph out again if its modules or links have changed."""
        modules = [(spec.name, spec.factory) for spec in self.graph.modules]
        shape = (*modules, *(link.name for link in self.graph.links))
        if shape != self._shape:
            self._shape = shape
            self.layout = {
                **layout(self.graph, self.here),
                "drawing": self.drawing + 1,
                "run": self.run,
            }
            self.drawing += 1

    def take_peers(self, views: Mapping[str, dict[str, Any]]) -> None:
        """What the other processes published now: a process whose view has expired
        (it ended a while ago, or was killed) is no longer shown."""
        self.peers = {p: view for p, view in views.items() if p != self.process}

    def refresh(self, now: float | None = None) -> dict[str, Any]:
        """Make a new snapshot and wake every page waiting for one."""
        now = time.time() if now is None else now
        own = self.tracker.update(now)
        self._draw()
        self.current = merge(self.process, own, self.peers, self.layout, now)
        self.version += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        return self.current

    async def newer(self, seen: int) -> tuple[int, dict[str, Any]]:
        """The first snapshot after version ``seen``, and its version."""
        while self.version <= seen:
            await self._changed.wait()
        return self.version, self.current

    def encoded(self) -> str:
        """The current snapshot as JSON, encoded once however many pages watch."""
        if self._encoded[0] != self.version:
            self._encoded = (self.version, json.dumps(self.current))
        return self._encoded[1]


_SENDING = " (to the stream)"
_RECEIVING = " (from the stream)"

_ENDED = frozenset({"done", "failed", "cancelled"})

_SUMMED = ("received", "emitted", "depth", "restarts", "errors", "dead", "dropped")
"""An actor's numbers that add up over the processes running one shared module."""

_LINK_SUMMED = ("depth", "capacity", "sent", "delivered", "dropped")

_LIVE, _ENDED_RANK, _STALE = 0, 1, 2
"""How much a process's view is believed: running and reporting, ended (its last view),
silent (killed, or cut off: what it last said is out of date)."""


@attrs.frozen
class _View:
    process: str
    view: Mapping[str, Any]
    rank: int
    time: float
    here: frozenset[str] = attrs.field(init=False)
    """The actors its process runs: made once, asked of every actor and link (a set
    made per question was quadratic, 13 ms a refresh for 500 actors)."""

    def __attrs_post_init__(self) -> None:
        here = self.view.get("here", ())
        object.__setattr__(self, "here", frozenset(here if isinstance(here, list) else ()))


def _rank(view: Mapping[str, Any], now: float, local: bool) -> int:
    if local:
        return _LIVE
    if view.get("state") in _ENDED:
        return _ENDED_RANK
    return _STALE if now - _number(view.get("time")) > GONE_AFTER else _LIVE


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _ordered(
    process: str, own: dict[str, Any], peers: Mapping[str, Mapping[str, Any]], now: float
) -> list[_View]:
    """Every view, the most believed first: this process, then the others live, ended,
    silent, each the most recent first."""
    views = [_View(process, own, _LIVE, now)]
    views += [
        _View(name, view, _rank(view, now, False), _number(view.get("time")))
        for name, view in peers.items()
        if name != process and isinstance(view, Mapping)
    ]
    return sorted(views, key=lambda v: (v.process != process, v.rank, -v.time, v.process))


def merge(
    process: str,
    own: dict[str, Any],
    peers: Mapping[str, Mapping[str, Any]],
    drawn: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:
    """One snapshot of the whole graph: each actor as the processes that run it report
    it (summed over the instances of a shared module, the most believed views only),
    each link as the process of its consumer (else of its producer) sees it."""
    views = _ordered(process, own, peers, now)
    processes = {
        v.process: {
            "state": v.view.get("state"),
            "here": list(v.view.get("here", [])),
            "local": v.process == process,
            "gone": v.rank == _STALE,
            "time": v.time,
        }
        for v in views
    }
    instances: dict[str, list[tuple[_View, Mapping[str, Any]]]] = {}
    for v in views:
        for actor, shown in v.view.get("actors", {}).items():
            if actor in v.here and isinstance(shown, Mapping):
                instances.setdefault(actor, []).append((v, shown))
    return {
        "graph": drawn["graph"],
        "drawing": drawn.get("drawing"),
        "run": drawn.get("run"),
        "process": process,
        "state": own["state"],
        "started_at": own["started_at"],
        "time": now,
        "dropped": sum(int(_number(v.view.get("dropped"))) for v in views if v.rank != _STALE),
        "processes": processes,
        "actors": {name: _actor(found) for name, found in instances.items()},
        "links": _links(views),
    }


def _actor(found: list[tuple[_View, Mapping[str, Any]]]) -> dict[str, Any]:
    """One actor from its instances (the most believed first): those of the best rank
    summed; a silent process's actor is stale (no rate: it is not known to run)."""
    best = found[0][0].rank
    counted = [(v, shown) for v, shown in found if v.rank == best]
    first_view, first = counted[0]
    actor: dict[str, Any] = {**first, "process": first_view.process}
    if len(counted) > 1:
        for key in _SUMMED:
            actor[key] = sum(int(_number(shown.get(key))) for _, shown in counted)
        rates = [shown.get("rate") for _, shown in counted]
        actor["rate"] = (
            sum(_number(r) for r in rates) if any(r is not None for r in rates) else None
        )
        actor["state"] = _busiest([str(shown.get("state")) for _, shown in counted])
        failed = [shown for _, shown in counted if shown.get("error")]
        actor["error"] = failed[0]["error"] if failed else None
        events = [e for _, shown in counted for e in shown.get("events", [])]
        actor["events"] = sorted(events, key=lambda e: _number(e.get("time")))[-KEEP:]
    actor["stale"] = best == _STALE
    if actor["stale"]:
        actor["rate"] = None
    actor["instances"] = [
        {
            "process": v.process,
            "state": shown.get("state"),
            "received": shown.get("received"),
            "emitted": shown.get("emitted"),
            "rate": None if v.rank == _STALE else shown.get("rate"),
            "stale": v.rank == _STALE,
        }
        for v, shown in found
    ]
    return actor


_BUSIEST = ("invalid", "running", "blocked", "ready", "zombie", "terminated")


def _busiest(states: list[str]) -> str:
    """What the instances of a shared module are, together: failed if one has, else
    running if one runs, and so on."""
    for state in _BUSIEST:
        if state in states:
            return state
    return states[0]


def _links(views: list[_View]) -> dict[str, Any]:
    """Each link as the most believed views see it: a remote link's halves are its
    buffer to the stream (where its producer runs) and from it (where its consumer
    runs), the consumer's half its fill; a shared consumer's halves summed."""
    found: dict[str, list[tuple[tuple[int, int], Mapping[str, Any]]]] = {}
    for v in views:
        for name, shown in v.view.get("links", {}).items():
            if not isinstance(shown, Mapping):
                continue
            link = name.removesuffix(_SENDING).removesuffix(_RECEIVING)
            near = 0 if shown.get("target") in v.here else 1
            found.setdefault(link, []).append(((v.rank, near), shown))
    links: dict[str, Any] = {}
    for link, halves in found.items():
        best = min(key for key, _ in halves)
        counted = [shown for key, shown in halves if key == best]
        merged = dict(counted[0])
        if len(counted) > 1:
            for key in _LINK_SUMMED:
                merged[key] = sum(int(_number(shown.get(key))) for shown in counted)
            capacity = merged["capacity"]
            merged["fill"] = min(1.0, merged["depth"] / capacity) if capacity else 0.0
        links[link] = merged
    return links
