"""The live view: rows drawn from status snapshots, smoothed rates, the refresh loop, and
``actorflow run`` with and without it, piped and at a real pseudo-terminal."""

from __future__ import annotations

import io
import math
import os
import re
import select
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from rich.console import Console
from sample_modules import Add, Collect, Forever
from test_cli import CHECKOUT
from test_cli import actorflow as run_actorflow

import actorflow as af
from actorflow._cli import _view_by_default
from actorflow._view import (
    Header,
    Rates,
    Row,
    counts_from_status,
    live_view,
    render,
    render_status,
    rows_from_job,
    rows_from_status,
    view_job,
    view_status,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def draw(renderable: object, *, terminal: bool = False, width: int = 120) -> str:
    """What a console of ``width`` columns shows for ``renderable``, escapes included."""
    out = io.StringIO()
    if terminal:
        console = Console(file=out, force_terminal=True, width=width, color_system="standard")
    else:
        console = Console(file=out, force_terminal=False, width=width)
    console.print(renderable)
    return out.getvalue()


def plain(text: str) -> str:
    return ANSI.sub("", text)


BASE = af.ActorStatus(
    name="",
    kind="processor",
    state=af.ActorState.RUNNING,
    blocked_on=None,
    received=0,
    emitted=0,
    filtered=0,
    dropped={},
    mailbox_depth=0,
    errors=0,
    reason=None,
)


def actor(name: str, **fields: Any) -> af.ActorStatus:
    return attrs.evolve(BASE, name=name, **fields)


def snapshot(
    *actors: af.ActorStatus, state: af.SystemState = af.SystemState.RUNNING
) -> af.SystemStatus:
    return af.SystemStatus(
        graph="plant", state=state, actors={a.name: a for a in actors}, links={}
    )


ROWS = [
    Row(
        "reader",
        "running",
        task="Decode",
        progress=(3, 10),
        rate=12.34,
        depth=7,
        info="frame=3 frames=10",
    ),
    Row(
        "scaler",
        "blocked",
        task="Scale",
        detail="on output:out",
        progress=(1234, None),
        rate=2500.0,
        depth=64,
        restarts=2,
        errors=1,
    ),
    Row("writer", "terminated", task="Write", depth=0),
    Row("checker", "invalid", task="Check"),
    Row("encoder", "failed", task="Encode"),
]


# -- rendering ---------------------------------------------------------------------------


def test_a_row_shows_name_task_state_progress_rate_depth_restarts_errors_and_info() -> None:
    """Every field of a row is on its line: percentages, counts, rates and info."""
    lines = plain(draw(render(Header("plant", "running", 75.0, 0), ROWS))).splitlines()
    reader = next(line for line in lines if line.startswith("reader"))
    assert reader.split()[:3] == ["reader", "Decode", "running"]
    assert "30%" in reader
    assert "12.3/s" in reader
    assert " 7 " in reader
    assert reader.rstrip().endswith("frame=3 frames=10")
    scaler = next(line for line in lines if line.startswith("scaler"))
    assert "blocked on output:out" in scaler
    assert "1,234" in scaler  # no total: the done count, no percentage
    assert "%" not in scaler
    assert "2.5k/s" in scaler
    assert scaler.split()[-3:] == ["64", "2", "1"]  # depth, restarts, errors


def test_the_header_shows_the_graph_its_state_the_time_and_what_was_dropped() -> None:
    """The first line names the graph, its state, the elapsed time and the drop count."""
    first = plain(draw(render(Header("plant", "stopping", 3725.0, 12), ROWS))).splitlines()[0]
    assert first.split() == ["plant", "stopping", "elapsed", "1:02:05", "dropped", "12"]
    job = plain(draw(render(Header("encode", "running", 65.0), []))).splitlines()[0]
    assert job.split() == ["encode", "running", "elapsed", "01:05"]  # nothing counted


def test_states_are_coloured_by_what_they_mean() -> None:
    """Running is green, blocked yellow, failed and invalid red, terminated dim."""
    out = draw(render(Header("plant", "running", 1.0, 0), ROWS), terminal=True)
    assert "\x1b[32mrunning" in out
    assert "\x1b[33mblocked" in out
    assert "\x1b[33m on output:out" in out
    assert "\x1b[31minvalid" in out
    assert "\x1b[31mfailed" in out
    assert "\x1b[2mterminated" in out


def test_progress_is_a_bar_with_a_percentage_only_when_there_is_a_total() -> None:
    """A total gives a bar and a percentage, clamped; no progress gives nothing."""
    rows = [
        Row("half", "running", progress=(1, 2)),
        Row("over", "running", progress=(15, 10)),
        Row("empty", "running", progress=(0, 0)),
        Row("count", "running", progress=(2.5, None)),
        Row("none", "running"),
    ]
    lines = {
        line.split()[0]: line
        for line in plain(draw(render(Header("p", "running", 0.0), rows))).splitlines()[3:]
    }
    assert "50%" in lines["half"]
    assert "━" in lines["half"]
    assert "100%" in lines["over"]
    assert "100%" in lines["empty"]
    assert "2.5" in lines["count"]
    assert "━" not in lines["count"]
    assert lines["none"].split() == ["none", "running", "0", "0"]


def test_a_console_that_is_not_a_terminal_gets_no_escape_sequences() -> None:
    """Piped or written to a file, the same frame is plain text."""
    out = draw(render(Header("plant", "failed", 5.0, 3), ROWS), terminal=False)
    assert "\x1b" not in out
    assert "invalid" in out


def test_rows_from_status_takes_every_actor_in_order_with_its_rate() -> None:
    """Each actor of a snapshot becomes a row; info is compact, blocked_on is the detail."""
    status = snapshot(
        actor(
            "frames",
            kind="source",
            task="Frames",
            progress=(3.0, 10.0),
            info={"frame": 3, "frames": 10, "ratio": 1 / 3},
        ),
        actor(
            "scale",
            state=af.ActorState.BLOCKED,
            blocked_on="input",
            mailbox_depth=4,
            restarts=1,
            errors=2,
        ),
    )
    rows = rows_from_status(status, {"frames": 5.0})
    assert [row.name for row in rows] == ["frames", "scale"]
    assert rows[0] == Row(
        "frames",
        "running",
        task="Frames",
        progress=(3.0, 10.0),
        rate=5.0,
        depth=0,
        info="frame=3 frames=10 ratio=0.3333",
        taken=0,
        sent=0,
        dead=0,
        lost=0,
    )
    assert rows[1] == Row(
        "scale",
        "blocked",
        detail="on input",
        depth=4,
        restarts=1,
        errors=2,
        taken=0,
        sent=0,
        dead=0,
        lost=0,
    )


def test_render_status_is_the_header_and_rows_of_one_snapshot() -> None:
    """A snapshot is drawn with its graph, state, total drops and the rates of the actors
    still going; an actor that has ended shows none."""
    status = snapshot(
        actor("reader", kind="source"),
        actor("sink", state=af.ActorState.TERMINATED, dropped={"failed": 2}),
        state=af.SystemState.STOPPING,
    )
    out = plain(draw(render_status(status, 2.0, {"reader": 40.0, "sink": 30.0})))
    lines = out.splitlines()
    assert lines[0].split() == ["plant", "stopping", "elapsed", "00:02", "dropped", "2"]
    assert "40.0/s" in next(line for line in lines if line.startswith("reader"))
    assert "/s" not in next(line for line in lines if line.startswith("sink"))


BUSY = snapshot(
    actor(
        "sensor-readings",
        kind="source",
        task="ReadingsFromTheNorthWingSensors",
        emitted=1_234_567,
        progress=(1_234_567.0, 5_000_000.0),
        info={"batch": 17, "device": "/dev/ttyUSB0", "firmware": "4.2.1-rc3"},
    ),
    actor(
        "calibrate",
        state=af.ActorState.BLOCKED,
        blocked_on="output:out",
        received=1_234_000,
        emitted=1_233_990,
        mailbox_depth=64,
        restarts=3,
        errors=3,
        dead_lettered=7,
        dropped={"overflow": 12, "shutdown": 1},
    ),
)


@pytest.mark.parametrize("width", [80, 100, 200])
def test_at_any_width_headers_are_whole_and_the_counts_that_matter_stay(width: int) -> None:
    """A narrow terminal loses whole columns, context first (info, task, the bar), never
    a cut header or the counts that say whether items were lost."""
    lines = plain(draw(render_status(BUSY, 3.0, {"sensor-readings": 2e5}), width=width))
    lines = lines.splitlines()
    header = lines[1].split()
    assert "…" not in lines[1]
    assert all(len(line) <= width for line in lines)
    for title in ("name", "state", "in", "errors", "dead", "dropped"):
        assert title in header, (width, header)
    calibrate = next(line for line in lines if line.startswith("calibrate"))
    assert calibrate.split()[-3:] == ["3", "7", "13"]  # errors, dead letters, dropped
    assert "1,234,000" in calibrate
    assert "out" in header
    if width >= 200:
        assert {"task", "progress", "rate", "depth", "restarts"} <= set(header)


# -- rates -------------------------------------------------------------------------------


def test_a_rate_is_measured_from_the_second_count_on() -> None:
    """The first count is a baseline; the next one gives items per second."""
    rates = Rates()
    assert rates.update({"a": 10}, now=5.0) == {}
    assert rates.update({"a": 60}, now=5.5) == {"a": 100.0}


def test_the_rate_is_an_exponential_moving_average_over_the_window() -> None:
    """A steady rate stays put; after a stop it decays by exp(-dt / window)."""
    rates = Rates(window=1.0)
    rates.update({"a": 0}, now=0.0)
    for step in range(1, 5):
        assert rates.update({"a": 25 * step}, now=0.25 * step)["a"] == pytest.approx(100.0)
    assert rates.update({"a": 100}, now=2.0)["a"] == pytest.approx(100 * math.exp(-1))
    rates.update({"a": 100}, now=3.0)
    assert rates.update({"a": 100}, now=3.0)["a"] == pytest.approx(100 * math.exp(-2))


def test_a_burst_shows_smoothed_not_as_its_peak() -> None:
    """Half a window after a burst starts, about 39% of the new rate shows."""
    rates = Rates(window=1.0)
    rates.update({"a": 0}, now=0.0)
    rates.update({"a": 0}, now=1.0)  # measured: 0/s
    burst = rates.update({"a": 500}, now=1.5)["a"]  # 1000/s for half a second
    assert burst == pytest.approx(1000 * (1 - math.exp(-0.5)))


def test_a_counter_that_went_down_starts_its_measurement_again() -> None:
    """A reset counter never makes a negative rate; the rate resumes from the new base."""
    rates = Rates(window=1.0)
    rates.update({"a": 0}, now=0.0)
    rates.update({"a": 100}, now=1.0)
    assert rates.update({"a": 5}, now=2.0) == {"a": 100.0}
    assert rates.update({"a": 105}, now=3.0)["a"] == pytest.approx(100.0)


def test_no_time_passed_measures_nothing_and_the_window_must_be_positive() -> None:
    """Two counts at the same instant keep the older baseline; window=0 is refused."""
    rates = Rates()
    rates.update({"a": 0}, now=1.0)
    rates.update({"a": 50}, now=1.0)
    assert rates.update({"a": 100}, now=2.0) == {"a": 100.0}
    with pytest.raises(ValueError, match="window"):
        Rates(window=0)


def test_sources_are_counted_by_what_they_emit_others_by_what_they_take() -> None:
    """A source's rate is its output; everything else's is its input."""
    status = snapshot(
        actor("src", kind="source", received=0, emitted=9),
        actor("proc", received=7, emitted=3),
        actor("sink", kind="sink", received=5),
    )
    assert counts_from_status(status) == {"src": 9, "proc": 7, "sink": 5}


# -- the refresh loop --------------------------------------------------------------------


def frames(out: io.StringIO, title: str) -> list[str]:
    """Each frame the view drew, as plain text, split on the header line."""
    text = plain(out.getvalue())
    return [title + part for part in text.split(title)[1:]]


async def test_the_view_redraws_every_refresh_until_cancelled_then_once_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Frames at 0, 0.25, ... 1.0 s, then the final frame on cancellation: 6 in all."""
    calls: list[float] = []
    status = snapshot(actor("reader"))

    def current() -> af.SystemStatus:
        calls.append(trio.current_time())
        return status

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with trio.move_on_after(1.1) as scope:
        await view_status(current, console, refresh=0.25)
    assert scope.cancelled_caught
    start = calls[0]
    assert [t - start for t in calls] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.1])
    drawn = frames(out, "plant")
    assert len(drawn) == 6
    assert "elapsed 00:01" in drawn[-1]
    assert out.getvalue().endswith("\x1b[?25h")  # the cursor is shown again


async def test_the_final_frame_shows_the_system_ended_and_every_actor_terminated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Run beside a real graph as the CLI does, the view's last frame is the end state."""
    graph = af.Graph(name="ticking")
    graph.add("ticks", Forever, interval=0.1)
    graph.add("plus", Add)
    graph.add("sink", Collect, into=[])
    graph.chain("ticks", "plus", "sink")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    async with trio.open_nursery() as nursery:
        async with af.open_system(graph) as system:
            nursery.start_soon(partial(view_status, system.status, console, refresh=0.25))
            await trio.sleep(2.05)
            await system.stop()
        nursery.cancel_scope.cancel()
    drawn = frames(out, "ticking")
    assert len(drawn) >= 9  # 0, 0.25, ... 2.0 s, then the end
    running = next(line for line in drawn[-2].splitlines() if line.startswith("sink"))
    assert "running" in running or "blocked" in running
    rate = re.search(r"([0-9.]+)/s", running)
    assert rate is not None, running
    assert float(rate.group(1)) == pytest.approx(10, rel=0.2)  # ten ticks a second
    last = drawn[-1]
    assert last.splitlines()[0].split()[:2] == ["ticking", "done"]
    for name in ("ticks", "plus", "sink"):
        row = next(line for line in last.splitlines() if line.startswith(name))
        assert "terminated" in row
        assert "/s" not in row  # an ended actor has no rate


async def test_frames_are_drawn_where_ctrl_c_cannot_interrupt_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """KeyboardInterrupt goes to the main task, never into a half-written frame."""
    protected: list[bool] = []

    def frame(elapsed: float) -> str:
        protected.append(trio.lowlevel.currently_ki_protected())
        return f"at {elapsed}"

    console = Console(file=io.StringIO(), force_terminal=True)
    with trio.move_on_after(0.3):
        await live_view(frame, console, refresh=0.25)
    assert protected == [True, True, True]


async def test_live_view_refuses_a_refresh_that_is_not_positive() -> None:
    """A zero refresh would redraw without ever yielding: refused before drawing."""
    console = Console(file=io.StringIO(), force_terminal=True)
    with pytest.raises(ValueError, match="refresh"):
        await live_view(lambda elapsed: "", console, refresh=0)


# -- the command line --------------------------------------------------------------------

TICKS = """
from typing import ClassVar
import trio
import actorflow as af

class Ticks(af.Source):
    outputs: ClassVar = {"out": int}
    def __init__(self, count: int) -> None:
        self.count = count  # -1: never ends
    async def start(self) -> None:
        n = 0
        while self.active and n != self.count:
            await self.emit(n)
            n += 1
            self.set_progress(n)
            await trio.sleep(0.01)
    def cleanup(self) -> None:
        print(f"cleanup {self.name}", flush=True)

class Frames(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}
    def process(self, data: int) -> int:
        self.set_info(frame=data % 10 + 1, frames=10)
        self.set_progress(data % 10 + 1, 10)
        return data
    def cleanup(self) -> None:
        print(f"cleanup {self.name}", flush=True)

class Keep(af.Sink):
    inputs: ClassVar = {"in": int}
    def consume(self, data: int) -> None:
        pass
    def cleanup(self) -> None:
        print(f"cleanup {self.name}", flush=True)
"""

TICKS_GRAPH = """
[graph]
name = "ticking"

[modules.ticks]
module = "ticks"
config = {{ count = {count} }}

[modules.frames]
module = "frames"

[modules.keep]
module = "keep"

[[links]]
from = "ticks"
to = "frames"

[[links]]
from = "frames"
to = "keep"
"""

CLEANUPS = ("cleanup ticks", "cleanup frames", "cleanup keep")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose graph ``short.toml`` ends by itself and ``endless.toml`` never does."""
    (tmp_path / "ticking.py").write_text(TICKS)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.actorflow.modules]
            ticks = "ticking:Ticks"
            frames = "ticking:Frames"
            keep = "ticking:Keep"
            """
        )
    )
    (tmp_path / "short.toml").write_text(TICKS_GRAPH.format(count=20))
    (tmp_path / "endless.toml").write_text(TICKS_GRAPH.format(count=-1))
    return tmp_path


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("tty", "term", "on"),
    [
        (True, "xterm-256color", True),
        (True, None, True),
        (True, "dumb", False),
        (False, "xterm-256color", False),
    ],
)
def test_the_view_is_on_by_default_only_at_a_terminal_that_can_draw_it(
    tty: bool, term: str | None, on: bool
) -> None:
    """Piped, redirected or in CI (no terminal), or with TERM=dumb, there is no view."""
    environ = {} if term is None else {"TERM": term}
    assert _view_by_default(Stream(tty), environ) is on


@pytest.mark.parametrize("flags", [(), ("--no-view",)])
def test_run_piped_prints_no_escape_sequences_and_still_the_summary(
    project: Path, flags: tuple[str, ...]
) -> None:
    """Without a terminal the view is off: plain lines a script or CI log can read."""
    result = run_actorflow(project, "run", "short.toml", *flags)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x1b" not in result.stderr
    assert "elapsed" not in result.stdout  # no view header
    assert "graph 'ticking' done, dropped=0" in result.stdout
    assert re.search(r"^keep\b.*\bterminated", result.stdout, re.MULTILINE)
    for line in CLEANUPS:
        assert line in result.stdout


def test_view_forced_on_a_pipe_draws_the_view_then_the_summary(project: Path) -> None:
    """--view draws on any stdout; the summary follows the closed view, cursor shown."""
    result = run_actorflow(project, "run", "short.toml", "--view")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    summary = out.index("graph 'ticking' done, dropped=0")
    view = out[:summary]
    assert "\x1b[?25l" in view  # the cursor was hidden while drawing
    assert view.rindex("\x1b[?25h") > view.rindex("\x1b[?25l")  # and shown before the summary
    last_frame = plain(view[view.rindex("ticking") :])
    assert last_frame.splitlines()[0].split()[:2] == ["ticking", "done"]
    for name in ("ticks", "frames", "keep"):
        assert re.search(rf"^{name} .*terminated", last_frame, re.MULTILINE), last_frame
    for line in CLEANUPS:
        assert line in plain(out)


def read_until(fd: int, seen: bytearray, wanted: bytes | None, deadline: float) -> bool:
    """Read ``fd`` into ``seen`` until ``wanted`` appears (or, for ``None``, until the
    other side closes); False if the deadline passes first."""
    while wanted is None or wanted not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return False
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO on Linux once the terminal's last user has gone
            chunk = b""
        if not chunk:
            return wanted is None
        seen += chunk
    return True


CONTROLLING_TERMINAL = (
    "import fcntl, os, sys, termios; "
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'actorflow', *sys.argv[1:]])"
)
"""Make stdin (the pty) the controlling terminal of the new session, then run the CLI:
Ctrl-C typed on it is then SIGINT to the command, as for a person at a terminal."""


def run_at_terminal(
    project: Path, graph: str, *, rows: int, columns: int
) -> tuple[subprocess.Popen[bytes], int]:
    """``actorflow run graph`` at a real pseudo-terminal of this size that is its
    controlling terminal; the process and the terminal's master end to read."""
    import termios

    try:
        master, slave = os.openpty()
    except OSError as exc:  # a sandbox without /dev/ptmx: no terminal to test at
        pytest.skip(f"no pseudo-terminal available: {exc}")
    termios.tcsetwinsize(master, (rows, columns))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(CHECKOUT)])
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [sys.executable, "-c", CONTROLLING_TERMINAL, "run", graph],
        cwd=project,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    return process, master


@pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal"
)
def test_ctrl_c_at_a_terminal_stops_the_graph_in_order_and_restores_the_terminal(
    project: Path,
) -> None:
    """At a real terminal the view draws; Ctrl-C runs every cleanup, closes the view,
    then says it was interrupted, exit 130."""
    process, master = run_at_terminal(project, "endless.toml", rows=40, columns=120)
    seen = bytearray()
    try:
        deadline = time.monotonic() + 30
        assert read_until(master, seen, b"frames", deadline), bytes(seen)  # the view drew
        os.write(master, b"\x03")  # Ctrl-C, through the terminal's line discipline
        assert read_until(master, seen, None, deadline), bytes(seen)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    output = bytes(seen)
    text = plain(output.decode(errors="replace"))
    assert returncode == 130, text
    for line in CLEANUPS:
        assert line in text
    assert "interrupted: stopped in order" in text
    interrupted = output.index(b"interrupted")
    assert output.rindex(b"\x1b[?25l") < output.rindex(b"\x1b[?25h") < interrupted
    # The first Ctrl-C drains: the graph ends done, nothing dropped.
    assert "graph 'ticking' done, dropped=0" in text


@pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal"
)
def test_at_an_80_column_terminal_the_view_keeps_whole_headers_and_the_loss_counts(
    project: Path,
) -> None:
    """At a real 80x24 terminal every line of every frame fits, no header is cut, and
    the columns that say whether items were lost (in, out, errors, dead, dropped) are
    there; the summary after it repeats no table (the last frame stays)."""
    process, master = run_at_terminal(project, "short.toml", rows=24, columns=80)
    seen = bytearray()
    try:
        assert read_until(master, seen, None, time.monotonic() + 30), bytes(seen)
        returncode = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    text = plain(bytes(seen).decode(errors="replace"))
    assert returncode == 0, text
    headers = [line for line in text.splitlines() if line.startswith("name ")]
    assert headers, text
    for header in headers:
        assert "…" not in header
        assert {"in", "out", "errors", "dead", "dropped"} <= set(header.split()), header
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "graph 'ticking' done, dropped=0" in text


class Encode(af.Task):
    """Four frames, a second each, reporting after every frame."""

    async def run(self) -> None:
        for frame in range(1, 5):
            await trio.sleep(1)
            self.report(frame * 25, f"frame {frame}/4")


async def test_a_job_is_shown_task_by_task_while_it_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same view shows a job: each task's state, progress and last report; the
    columns no task has (mailbox depth, rate, restarts, errors) are left out."""
    job = af.Job("movie")
    job.add("probe", Encode)
    job.add("encode", Encode)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(view_job, job, console, refresh=0.5))
        nursery.start_soon(job.run)
        await trio.sleep(5.6)  # probe done at 4 s; the last frame, at 5.5 s, shows encode
        middle = frames(out, "movie")[-1]
        assert "running" in middle.splitlines()[0]
        assert re.search(r"probe\s+succeeded 4\.0s .* 100%\s+frame 4/4", middle)
        assert re.search(r"encode\s+running 1\.5s .* 25%\s+frame 1/4", middle)
        assert "depth" not in middle
        assert "restarts" not in middle
        nursery.cancel_scope.cancel()


def test_rows_from_job_show_pending_tasks_without_progress() -> None:
    job = af.Job("movie")
    job.add("probe", Encode)
    rows = rows_from_job(job.status())
    assert rows == [Row(name="probe", state="pending", restarts=None, errors=None)]
    text = plain(draw(render(Header("movie", "starting", 0.0), rows)))
    assert "pending" in text
    assert "%" not in text


def test_names_and_values_with_control_characters_never_reach_the_terminal_raw() -> None:
    """A module named (or reporting) with escapes or newlines is shown escaped: it must
    not colour, clear or break the table."""
    status = snapshot(
        actor("evil\x1b[2J\nname", task="T\x1b[31m", info={"k": "v\x07\n"}),
        actor("plain"),
    )
    out = draw(render_status(status, 1.0), width=200)
    assert "\x1b[2J" not in out
    assert "\x07" not in out
    assert "\\x1b[2J\\nname" in out
    assert len([line for line in out.splitlines() if line.strip()]) == 5  # header, rule, 2


@pytest.mark.parametrize("width", [60, 80])
def test_long_names_give_up_width_before_any_header_or_count_is_cut(width: int) -> None:
    """Many actors with long names on a narrow terminal: names are cut with an
    ellipsis, never a header, a state or a count."""
    status = snapshot(
        *[
            actor(
                f"a-rather-long-module-name-{n:02d}-of-the-plant",
                state=af.ActorState.TERMINATED,
                received=3000 + n,
                emitted=3000,
                errors=1,
                dead_lettered=2,
                dropped={"overflow": 1234},
            )
            for n in range(16)
        ]
    )
    lines = plain(draw(render_status(status, 3.0), width=width)).splitlines()
    assert "…" not in lines[1]
    assert {"in", "errors", "dead", "dropped"} <= set(lines[1].split())
    rows = [line for line in lines[3:] if line.strip()]
    assert len(rows) == 16
    for line in rows:
        assert line.split()[-3:] == ["1", "2", "1,234"]  # errors, dead letters, dropped
        assert " terminated " in line
        assert len(line) <= width
