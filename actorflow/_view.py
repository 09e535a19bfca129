"""The live terminal view of ``actorflow run``: one row per actor, redrawn in place.

Drawing is a pure function of a :class:`Header` and a sequence of :class:`Row`, so it is
tested without a terminal and can show anything that has rows: :func:`rows_from_status`
makes them from a running system, and a job's tasks can be turned into rows the same
way. :func:`live_view` redraws a frame from a trio task; rich's own refresh thread is
never started, so the view shares the event loop with the graph it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio
from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ._job import Job, TaskResult
from ._rates import Rates, StatusRates, counts_from_status
from ._reportable import printable, text
from ._status import ActorStatus, SystemStatus

__all__ = [
    "Header",
    "Rates",
    "Row",
    "counts_from_status",
    "live_view",
    "render",
    "render_status",
    "render_table",
    "rows_from_job",
    "rows_from_status",
    "view_job",
    "view_status",
]

STYLES: Mapping[str, str] = {
    "running": "green",
    "blocked": "yellow",
    "suspended": "cyan",
    "stopping": "yellow",
    "cancelled": "yellow",
    "failed": "red",
    "invalid": "red",
    "zombie": "dim",
    "terminated": "dim",
    "done": "dim",
    "succeeded": "dim",
    "not_run": "dim",
}
"""How a state is coloured, for actors, systems and job tasks alike; others are plain."""

_BAR_WIDTH = 12


@attrs.frozen
class Row:
    """One line of the view: an actor, or any other unit of work (a job's task).

    Attributes:
        name: What the row is (the actor's name in the graph).
        state: Its state, coloured by :data:`STYLES`.
        task: What it is doing (a module's class name or its ``set_info`` task).
        detail: Shown after the state in its colour ("on input" for a blocked actor).
        progress: ``(done, total)`` drawn as a bar and a percentage; ``total=None``
            shows the done count alone; ``None`` shows nothing.
        rate: Items per second, if measured.
        depth: Items waiting in its mailbox, if it has one.
        restarts: Times it was restarted (``None``: not something it has).
        errors: Exceptions it raised (``None``: not something it counts).
        info: Free-form fields, already compact (``"frame=3 frames=10"``).
        taken: Items it took in (column ``in``; ``None``: not counted).
        sent: Items it sent on (column ``out``).
        dead: Items it dead-lettered.
        lost: Items lost at it, every reason together (column ``dropped``).
    """

    name: str
    state: str
    task: str | None = None
    detail: str | None = None
    progress: tuple[float, float | None] | None = None
    rate: float | None = None
    depth: int | None = None
    restarts: int | None = 0
    errors: int | None = 0
    info: str = ""
    taken: int | None = None
    sent: int | None = None
    dead: int | None = None
    lost: int | None = None


@attrs.frozen
class Header:
    """The line above the rows: what runs, in which state, for how long.

    Attributes:
        title: The graph's (or job's) name.
        state: Its state, coloured like the rows'.
        elapsed: Seconds since the view started.
        dropped: Items lost so far, if counted.
    """

    title: str
    state: str
    elapsed: float
    dropped: int | None = None


def _compact(info: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_short(value)}" for key, value in info.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else text(value)


def rows_from_status(status: SystemStatus, rates: Mapping[str, float] | None = None) -> list[Row]:
    """One row per actor of ``status``, in the system's order, with its rate if known.

    An actor that has ended shows no rate: its smoothed rate only decays towards zero.
    """
    rates = rates or {}
    dropped_at = status.dropped_at()
    return [
        Row(
            name=name,
            state=actor.state.value,
            task=actor.task,
            detail=_detail(actor),
            progress=actor.progress,
            rate=None if actor.state.is_final else rates.get(name),
            depth=actor.mailbox_depth,
            restarts=actor.restarts,
            errors=actor.errors,
            info=_compact(actor.info),
            taken=actor.received,
            sent=actor.emitted,
            dead=actor.dead_lettered,
            lost=sum(dropped_at.get(name, {}).values()),
        )
        for name, actor in status.actors.items()
    ]


def _detail(actor: ActorStatus) -> str | None:
    """What a blocked actor waits on, and whose task runs it while it is fused."""
    waits = None if actor.blocked_on is None else f"on {actor.blocked_on}"
    fused = getattr(actor, "fused_into", None)  # a status from an older peer has none
    if fused is None:
        return waits
    return f"in {fused}'s task" if waits is None else f"{waits}, in {fused}'s task"


def rows_from_job(tasks: Sequence[TaskResult]) -> list[Row]:
    """One row per task of a job (see :meth:`Job.status`): its state, its progress out
    of 100 once it has started, and its last report."""
    return [
        Row(
            name=task.name,
            state=task.state,
            detail=None if task.duration is None else f"{task.duration:.1f}s",
            progress=None if task.state == "pending" else (task.progress, 100.0),
            restarts=None,
            errors=None,
            info=task.info or "",
        )
        for task in tasks
    ]


def _job_state(tasks: Sequence[TaskResult]) -> str:
    states = {task.state for task in tasks}
    if "failed" in states:
        return "failed"
    if states <= {"succeeded"}:
        return "done"
    return "running" if states - {"pending"} else "starting"


async def view_job(job: Job, console: Console, *, refresh: float = 0.25) -> None:
    """The live view of a running job: one row per task. Runs until cancelled."""

    def frame(elapsed: float) -> RenderableType:
        tasks = job.status()
        return render(Header(job.name, _job_state(tasks), elapsed), rows_from_job(tasks))

    await live_view(frame, console, refresh=refresh)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes:02}:{secs:02}"


def _rate(rate: float | None) -> str:
    if rate is None:
        return ""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= limit:
            return f"{rate / limit:.1f}{suffix}/s"
    return f"{rate:.1f}/s"


def _amount(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def _progress(progress: tuple[float, float | None] | None) -> tuple[RenderableType, str]:
    """The bar and the text beside it."""
    if progress is None:
        return "", ""
    done, total = progress
    if total is None:
        return "", _amount(done)
    fraction = 1.0 if total <= 0 else max(0.0, min(1.0, done / total))
    bar = ProgressBar(total=1.0, completed=fraction, width=_BAR_WIDTH)
    return bar, f"{fraction:.0%}"


def _state(row: Row) -> Text:
    text = Text(row.state, style=STYLES.get(row.state, ""))
    if row.detail:
        text.append(f" {row.detail}", style=STYLES.get(row.state, ""))
    return text


def _cut(value: Any) -> Text:
    """One line of text, cut with an ellipsis; any value (a module's odd
    ``set_info``) is shown as its text."""
    return Text(
        printable(value if isinstance(value, str) else text(value)),
        no_wrap=True,
        overflow="ellipsis",
    )


_NUMERIC: dict[str, Any] = {"no_wrap": True, "justify": "right"}
_ALWAYS = {"name", "state"}
_FIELD = {"done": "progress", "in": "taken", "out": "sent", "dropped": "lost"}


def _has(row: Row, column: str) -> bool:
    value = getattr(row, _FIELD.get(column, column))
    return value is not None and value != ""


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _alarm(value: int | None) -> Text:
    """A count that is bad news when not zero (errors, dead letters, drops): red then."""
    if value is None:
        return Text("")
    return Text(f"{value:,}", style="red" if value else "")


_Column = tuple[str, dict[str, Any], Callable[[Row], "RenderableType | str"]]

_COLUMNS: list[_Column] = [
    ("name", {"no_wrap": True}, lambda row: Text(printable(row.name), style="bold")),
    ("task", {}, lambda row: _cut(row.task or "")),
    ("state", {"no_wrap": True}, _state),
    ("progress", {"no_wrap": True, "width": _BAR_WIDTH}, lambda row: _progress(row.progress)[0]),
    ("done", _NUMERIC, lambda row: _progress(row.progress)[1]),
    ("in", _NUMERIC, lambda row: _count(row.taken)),
    ("out", _NUMERIC, lambda row: _count(row.sent)),
    ("rate", _NUMERIC, lambda row: _rate(row.rate)),
    ("depth", _NUMERIC, lambda row: _count(row.depth)),
    ("restarts", _NUMERIC, lambda row: _count(row.restarts)),
    ("errors", _NUMERIC, lambda row: _alarm(row.errors)),
    ("dead", _NUMERIC, lambda row: _alarm(row.dead)),
    ("dropped", _NUMERIC, lambda row: _alarm(row.lost)),
    ("info", {}, lambda row: _cut(row.info)),
]

_GIVE_UP = ("info", "task", "progress", "depth", "rate", "restarts", "detail", "done", "out")
"""On a narrow terminal, the columns left out first, in this order (``detail``: what a
blocked actor waits on, after its state): what is only context goes before the counts
that say whether items were lost."""


class _Frame:
    """The header line above the table, with as many columns as the console's width
    takes: a column that does not fit is left out whole (never cut, headers included),
    the least telling first (see ``_GIVE_UP``)."""

    def __init__(self, top: Text | None, rows: Sequence[Row]) -> None:
        self.top = top
        self.rows = rows
        # A column no row has anything for (a job's tasks have no mailbox) is left out.
        self.columns = [
            column
            for column in _COLUMNS
            if column[0] in _ALWAYS or any(_has(row, column[0]) for row in rows)
        ]

    def table(
        self, columns: Sequence[_Column], rows: Sequence[Row], name_width: int | None = None
    ) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
            header_style="bold",
        )
        for title, options, _ in columns:
            if title == "name" and name_width is not None:
                # Names give up width last, cut with an ellipsis; nothing else is cut.
                table.add_column(title, no_wrap=True, overflow="ellipsis", max_width=name_width)
            else:
                # A count is never narrower than its header, so no header is cut.
                table.add_column(title, min_width=len(title), **options)
        for row in rows:
            table.add_row(*(cell(row) for _, _, cell in columns))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns, rows = list(self.columns), self.rows
        table = self.table(columns, rows)
        unbounded = options.update_width(1_000_000)  # rich clamps a measure to the width
        for title in _GIVE_UP:
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                break
            if title == "detail":
                rows = [attrs.evolve(row, detail=None) for row in rows]
            columns = [column for column in columns if column[0] != title]
            table = self.table(columns, rows)
        excess = Measurement.get(console, unbounded, table).maximum - options.max_width
        if excess > 0:
            longest = max((len(printable(row.name)) for row in rows), default=4)
            table = self.table(columns, rows, max(len("name"), longest - excess))
        if self.top is not None:
            yield self.top
        yield table


def render(header: Header, rows: Sequence[Row]) -> RenderableType:
    """The whole view: the header line above a table with one line per row.

    A pure function of its arguments, drawn the same way on any console of the same
    width (a narrow one shows fewer columns, see ``_GIVE_UP``).
    """
    top = Text.assemble(
        (printable(header.title), "bold"),
        "  ",
        (header.state, STYLES.get(header.state, "")),
        f"  elapsed {_elapsed(header.elapsed)}",
    )
    if header.dropped is not None:
        top.append(f"  dropped {header.dropped}", style="red" if header.dropped else "")
    return _Frame(top, rows)


def render_status(
    status: SystemStatus, elapsed: float, rates: Mapping[str, float] | None = None
) -> RenderableType:
    """The view of one system snapshot, ``elapsed`` seconds in, with measured rates."""
    header = Header(status.graph, status.state.value, elapsed, status.dropped)
    return render(header, rows_from_status(status, rates))


def render_table(status: SystemStatus) -> RenderableType:
    """The table of one snapshot without the header line: the printed summary's."""
    return _Frame(None, rows_from_status(status))


@trio.lowlevel.enable_ki_protection
async def live_view(
    frame: Callable[[float], RenderableType], console: Console, *, refresh: float = 0.25
) -> None:
    """Draw ``frame(elapsed)`` on ``console`` every ``refresh`` seconds until cancelled.

    rich's ``Live`` is refreshed from this task only (no refresh thread). While it runs,
    ``print()`` output is shown above the view instead of tearing it. When cancelled, the
    final frame is drawn once and the cursor restored before this returns, so the
    terminal keeps the end state. Ctrl-C is never raised in the middle of a frame: it
    goes to the main task, which decides what to stop.

    Raises:
        ValueError: ``refresh`` is not positive.
    """
    if refresh <= 0:
        raise ValueError(f"refresh must be positive, not {refresh!r}")
    start = trio.current_time()
    with Live(console=console, auto_refresh=False) as live:
        try:
            while True:
                live.update(frame(trio.current_time() - start), refresh=True)
                await trio.sleep(refresh)
        finally:
            live.update(frame(trio.current_time() - start))  # drawn once as Live stops


async def view_status(
    status: Callable[[], SystemStatus],
    console: Console,
    *,
    refresh: float = 0.25,
    window: float = 1.0,
) -> None:
    """The live view of a system: :func:`live_view` of what ``status()`` returns, with
    rates smoothed over ``window`` seconds (see :class:`Rates`). Runs until cancelled.
    """
    rates = StatusRates(Rates(window=window))

    def frame(elapsed: float) -> RenderableType:
        snapshot = status()
        rates.forget_removed(snapshot)
        return render_status(snapshot, elapsed, rates.update(snapshot, elapsed))

    await live_view(frame, console, refresh=refresh)
