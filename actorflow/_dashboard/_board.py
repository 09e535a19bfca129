"""The page's data: the laid-out graph and, refreshed on a beat, one snapshot of it all.

One task refreshes the board every ``interval`` seconds, however many pages watch, and
each page's event stream waits for the next version. The snapshot merges this process's
view with those other processes of the same graph published (see :mod:`._peers`):
each actor is shown as the process that runs it reports it, tagged with that process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from .._graph import Graph
from ._layout import layout
from ._tracker import Tracker

__all__ = ["Board", "GONE_AFTER"]

GONE_AFTER = 5.0
"""Seconds after its last report that another process is shown as gone."""


@attrs.define
class Board:
    """The snapshot pages are sent, and the version they have seen.

    Invariant: ``version`` counts the snapshots made; ``_changed`` is set (and
    replaced) each time it grows. ``layout`` is the graph as its links are now: a link
    added or removed while the system runs lays it out again (``drawing`` counts how
    often, and each snapshot says which drawing it goes with).
    """

    graph: Graph
    here: frozenset[str]
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
    _shape: tuple[str, ...] | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _encoded: tuple[int, str] = (-1, "")

    def __attrs_post_init__(self) -> None:
        self._draw()

    def _draw(self) -> None:
        """Lay the graph out again if its links have changed."""
        shape = tuple(link.name for link in self.graph.links)
        if shape != self._shape:
            self._shape = shape
            self.layout = {**layout(self.graph, self.here), "drawing": self.drawing + 1}
            self.drawing += 1

    def take_peers(self, views: Mapping[str, dict[str, Any]]) -> None:
        """What the other processes published now (a process that is no longer there
        keeps its last view, marked gone)."""
        for process, view in views.items():
            if process != self.process:
                self.peers[process] = view

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


def _receiving_last(item: tuple[str, Any]) -> bool:
    return item[0].endswith(_RECEIVING)


def merge(
    process: str,
    own: dict[str, Any],
    peers: Mapping[str, dict[str, Any]],
    drawn: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:
    """One snapshot of the whole graph: each process's actors where they run, each
    link as the process of its consumer (else of its producer) sees it."""
    processes: dict[str, Any] = {
        process: {"state": own["state"], "here": own["here"], "local": True, "gone": False}
    }
    actors: dict[str, Any] = {}
    links: dict[str, Any] = {}
    views = [(name, view) for name, view in sorted(peers.items())] + [(process, own)]
    for where, view in views:
        if where != process:
            gone = now - float(view.get("time", 0)) > GONE_AFTER
            processes[where] = {
                "state": view.get("state"),
                "here": view.get("here", []),
                "local": False,
                "gone": gone,
            }
        here = set(view.get("here", ()))
        for actor, shown in view.get("actors", {}).items():
            if actor in here:
                actors[actor] = {**shown, "process": where}
        # A remote link's halves are its buffer to the stream (where its producer runs)
        # and from it (where its consumer runs): the consumer's half is the link's fill.
        for name, shown in sorted(view.get("links", {}).items(), key=_receiving_last):
            link = name.removesuffix(_SENDING).removesuffix(_RECEIVING)
            if link not in links or shown.get("target") in here:
                links[link] = shown
    return {
        "graph": drawn["graph"],
        "drawing": drawn.get("drawing"),
        "process": process,
        "state": own["state"],
        "started_at": own["started_at"],
        "time": now,
        "dropped": sum(int(view.get("dropped", 0)) for _, view in views),
        "processes": processes,
        "actors": actors,
        "links": links,
    }
