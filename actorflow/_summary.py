"""The end of a run, said once: the table of actors, the totals line, or JSON.

The table is the live view's own (:func:`actorflow._view.render_status`), so the last
frame of the view and the printed summary say the same thing in the same columns;
with the view on, its last frame stays on the screen and only the totals follow.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

from rich.console import Console

from ._reportable import printable
from ._status import SystemStatus
from ._view import render_table

__all__ = ["Totals", "print_summary", "summary_json", "totals_line"]


class Totals:
    """What a run lost or failed at, added up over every actor and link."""

    def __init__(self, status: SystemStatus) -> None:
        dropped: Counter[str] = Counter()
        for at in status.dropped_at().values():  # the same counts the rows show
            dropped.update(at)
        self.dropped = dict(sorted((str(k), v) for k, v in dropped.items() if v))
        self.dead_lettered = sum(a.dead_lettered for a in status.actors.values())
        self.errors = sum(a.errors for a in status.actors.values())
        self.restarts = sum(a.restarts for a in status.actors.values())

    @property
    def lost(self) -> int:
        return sum(self.dropped.values())


def totals_line(status: SystemStatus) -> str:
    """``graph 'plant' done, dropped=3 (overflow 2, shutdown 1), dead_lettered=1,
    errors=2, restarts=1``."""
    totals = Totals(status)
    reasons = ", ".join(f"{reason} {count}" for reason, count in totals.dropped.items())
    dropped = f"dropped={totals.lost}" + (f" ({reasons})" if reasons else "")
    return (
        f"graph {printable(repr(status.graph))} {status.state.value}, {dropped}, "
        f"dead_lettered={totals.dead_lettered}, errors={totals.errors}, "
        f"restarts={totals.restarts}"
    )


def print_summary(status: SystemStatus, *, table: bool, out: TextIO | None = None) -> None:
    """The table of actors (unless the view already left it on the screen), then the
    totals line."""
    out = out if out is not None else sys.stdout
    if table:
        console = Console(file=out, highlight=False, soft_wrap=False)
        console.print(render_table(status))
    print(totals_line(status), file=out)


def summary_json(
    status: SystemStatus, *, elapsed: float, signal: str | None = None
) -> dict[str, Any]:
    """The summary as one JSON-ready object: totals and one entry per actor."""
    totals = Totals(status)
    dropped_at = status.dropped_at()
    return {
        "graph": status.graph,
        "state": status.state.value,
        "elapsed": round(elapsed, 6),
        "signal": signal,
        "dropped": totals.lost,
        "dropped_by_reason": totals.dropped,
        "dead_lettered": totals.dead_lettered,
        "errors": totals.errors,
        "restarts": totals.restarts,
        "actors": {
            name: {
                "kind": actor.kind,
                "state": actor.state.value,
                "in": actor.received,
                "out": actor.emitted,
                "dropped": dropped_at.get(name, {}),
                "dead_lettered": actor.dead_lettered,
                "errors": actor.errors,
                "restarts": actor.restarts,
                "reason": None if actor.reason is None else str(actor.reason),
            }
            for name, actor in status.actors.items()
        },
    }
