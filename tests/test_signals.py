"""SIGINT and SIGTERM sent to real processes (`actorflow run`, an `af.run` script, an
asyncio host): the first drains, a second cancels, every cleanup runs, the exit code
says which signal, and a signal during start-up is one line, never a traceback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._interrupt import (
    STUCK_AFTER,
    SignalRequests,
    Terminated,
    exception_for,
    exit_status,
    handling_signals,
    raising_on_signals,
    signal_ended,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHECKOUT = Path(af.__file__).resolve().parent.parent

MODULES = '''
import os
import time
from pathlib import Path
from typing import ClassVar

import trio

import actorflow as af

MARKS = Path(os.environ["SIGNAL_MARKS"])


def mark(name: str, text: str = "") -> None:
    """Write a marker file whole (a reader never sees it half-written)."""
    part = MARKS / f".{name}.part"
    part.write_text(text)
    os.replace(part, MARKS / name)


mark("importing")
time.sleep(float(os.environ.get("SIGNAL_IMPORT_DELAY", "0")))


class Numbers(af.Source):
    outputs: ClassVar = {"out": int}

    def __init__(self, count: int = -1, construct_delay: float = 0.0) -> None:
        mark("constructing")
        time.sleep(construct_delay)
        self.count = count
        self.emitted = 0

    async def start(self) -> None:
        while self.active and self.emitted != self.count:
            await self.emit(self.emitted)
            self.emitted += 1
            if self.emitted == 1:
                mark("running")
            if self.emitted == 20:
                mark("busy")  # with a slow sink, many items are in flight now
            await trio.sleep(0.002)

    def cleanup(self) -> None:
        mark("cleanup-numbers", str(self.emitted))


class Work(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(
        self, delay: float = 0.01, validate_delay: float = 0.0, cleanup_delay: float = 0.0
    ) -> None:
        self.delay = delay
        self.validate_delay = validate_delay
        self.cleanup_delay = cleanup_delay
        self.handled = 0

    async def validate(self) -> None:
        mark("validating")
        await trio.sleep(self.validate_delay)

    async def consume(self, data: int) -> None:
        await trio.sleep(self.delay)
        self.handled += 1

    async def cleanup(self) -> None:
        mark("cleaning")
        await trio.sleep(self.cleanup_delay)
        mark("cleanup-work", str(self.handled))


class Hangs(af.Sink):
    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        pass

    def cleanup(self) -> None:
        mark("cleaning")
        while True:  # holds the event loop: no signal can reach trio
            time.sleep(0.01)
'''

GRAPH = """
[graph]
name = "g"

[settings]
cleanup_timeout = {cleanup_timeout}

[modules.numbers]
module = "numbers"
config = {{ count = {count}, construct_delay = {construct_delay} }}

[modules.work]
module = "{sink}"
config = {sink_config}

[[links]]
from = "numbers"
to = "work"
buffer = {buffer}
"""

RUN_SCRIPT = """
import sys
import actorflow as af
from sigmods import Numbers, Work

graph = af.Graph(name="g")
graph.add("numbers", Numbers)
graph.add("work", Work, delay=0.01)
graph.link("numbers", "work", buffer=20)
try:
    af.run(graph)
except KeyboardInterrupt:
    print("caught KeyboardInterrupt", flush=True)
    sys.exit(130)
finally:
    print("finally ran", flush=True)
"""

AIO_SCRIPT = """
import asyncio
import signal
import actorflow as af
from actorflow import aio
from sigmods import Numbers, Work, mark

graph = af.Graph(name="g")
graph.add("numbers", Numbers)
graph.add("work", Work, delay=0.01)
graph.link("numbers", "work", buffer=20)


async def main() -> int:
    async with aio.open_system(graph) as system:
        stopping = []
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(
            signal.SIGTERM,
            lambda: stopping.append(asyncio.ensure_future(system.stop(drain_timeout=10))),
        )
        mark("serving")
        await system.wait()
    status = await system.status()
    print(f"state={status.state.value} dropped={status.dropped}", flush=True)
    return 143 if stopping else 0


raise SystemExit(asyncio.run(main()))
"""

STARTUP_PHASES = ("importing", "constructing", "validating")


class Project:
    """A project directory with the modules, a marker directory, and the processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marks = root / "marks"
        self.marks.mkdir()
        (root / "sigmods.py").write_text(MODULES)
        (root / "pyproject.toml").write_text(
            textwrap.dedent(
                """
                [tool.actorflow.modules]
                numbers = "sigmods:Numbers"
                work = "sigmods:Work"
                hangs = "sigmods:Hangs"
                """
            )
        )
        self.processes: list[subprocess.Popen[str]] = []

    def graph(
        self,
        *,
        count: int = -1,
        construct_delay: float = 0.0,
        sink: str = "work",
        sink_config: str = "{ delay = 0.01 }",
        buffer: int = 20,
        cleanup_timeout: float = 5.0,
    ) -> str:
        (self.root / "g.toml").write_text(
            GRAPH.format(
                count=count,
                construct_delay=construct_delay,
                sink=sink,
                sink_config=sink_config,
                buffer=buffer,
                cleanup_timeout=cleanup_timeout,
            )
        )
        return "g.toml"

    def start(self, *args: str, import_delay: float = 0.0) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.root), str(CHECKOUT)]),
            "SIGNAL_MARKS": str(self.marks),
            "SIGNAL_IMPORT_DELAY": str(import_delay),
            "TERM": "dumb",
        }
        with (self.root / "out.txt").open("w") as out, (self.root / "err.txt").open("w") as err:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=self.root, env=env, stdout=out, stderr=err, text=True
            )
        self.processes.append(process)
        return process

    def run(self, *args: str, import_delay: float = 0.0) -> subprocess.Popen[str]:
        return self.start("-m", "actorflow", "run", *args, "--no-view", import_delay=import_delay)

    def marked(self, name: str) -> bool:
        return (self.marks / name).exists()

    def mark(self, name: str) -> str:
        return (self.marks / name).read_text()

    @property
    def out(self) -> str:
        return (self.root / "out.txt").read_text()

    @property
    def err(self) -> str:
        return (self.root / "err.txt").read_text()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = Project(tmp_path)
    yield made
    for process in made.processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[str], seconds: float
) -> bool:
    """Poll ``condition`` until it holds, the process ends, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return condition()
        time.sleep(0.005)  # a polling interval, not a synchronisation
    return False


def ended(process: subprocess.Popen[str], seconds: float = 30) -> int:
    return process.wait(timeout=seconds)


def drained(project: Project) -> None:
    """Every item the source emitted was handled: none was dropped."""
    assert project.mark("cleanup-work") == project.mark("cleanup-numbers"), project.out
    assert "graph 'g' done, dropped=0" in project.out


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_drains_what_is_in_flight_runs_every_cleanup_and_exits_128_plus_n(
    project: Project, signum: signal.Signals
) -> None:
    """SIGTERM (or Ctrl-C) while items are in flight: sources stop, every item already
    emitted is handled, both cleanups run, the summary prints, exit 143 (or 130)."""
    process = project.run(project.graph())
    assert wait_for(lambda: project.marked("running"), process, 30), project.err
    process.send_signal(signum)
    assert ended(process) == exit_status(signum), project.err
    drained(project)
    said = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert f"{said}: stopped in order" in project.err
    assert int(project.mark("cleanup-work")) > 0
    assert "Traceback" not in project.err


def test_a_second_signal_cancels_at_once_and_every_cleanup_still_runs(project: Project) -> None:
    """The drain is under way (a slow sink, a deep buffer); a second signal cancels:
    what was queued is dropped, both cleanups run, the first signal's exit code."""
    process = project.run(project.graph(sink_config="{ delay = 0.2 }", buffer=200))
    assert wait_for(lambda: project.marked("busy"), process, 30), project.err
    process.send_signal(signal.SIGTERM)
    assert wait_for(lambda: "action=stop" in project.err, process, 30), project.err
    process.send_signal(signal.SIGINT)
    assert ended(process, 20) == 143, project.err
    assert "action=cancel" in project.err
    assert project.marked("cleanup-numbers")
    assert project.marked("cleanup-work")
    assert int(project.mark("cleanup-work")) < int(project.mark("cleanup-numbers"))
    assert "graph 'g' cancelled" in project.out
    assert "terminated (SIGTERM): cancelled, dropped=" in project.err
    assert "Traceback" not in project.err


def test_the_drain_deadline_cancels_what_is_left(project: Project) -> None:
    """`--drain 0.2`: a drain that would take seconds is cancelled at the deadline."""
    process = project.run(
        project.graph(sink_config="{ delay = 0.2 }", buffer=200), "--drain", "0.2"
    )
    assert wait_for(lambda: project.marked("busy"), process, 30), project.err
    process.send_signal(signal.SIGINT)
    assert ended(process, 20) == 130, project.err
    assert "system.drain_timeout" in project.err
    assert "graph 'g' cancelled" in project.out
    assert project.marked("cleanup-numbers")
    assert project.marked("cleanup-work")


def test_drain_must_be_a_positive_number(project: Project) -> None:
    """A `--drain` the settings refuse is bad input, exit 2, one line."""
    process = project.run(project.graph(count=3), "--drain", "-1")
    assert ended(process) == 2
    assert "--drain -1.0" in project.err
    assert "Traceback" not in project.err


@pytest.mark.parametrize(
    ("phase", "signum"),
    [
        ("importing", signal.SIGINT),
        ("importing", signal.SIGTERM),
        ("constructing", signal.SIGTERM),
        ("validating", signal.SIGINT),
    ],
)
def test_a_signal_during_start_up_is_one_line_and_the_signals_exit_code(
    project: Project, phase: str, signum: signal.Signals
) -> None:
    """While the modules import, construct or validate, a signal ends start-up: one
    line, no traceback, nothing ran (so no cleanup was due), exit 130 or 143."""
    slow = {"importing": 0.0, "constructing": 0.0, "validating": 0.0, phase: 30.0}
    process = project.run(
        project.graph(
            construct_delay=slow["constructing"],
            sink_config=f"{{ validate_delay = {slow['validating']} }}",
        ),
        import_delay=slow["importing"],
    )
    assert wait_for(lambda: project.marked(phase), process, 30), project.err
    process.send_signal(signum)
    assert ended(process, 40) == exit_status(signum), project.err
    assert "stopped while starting, no module ran" in project.err
    assert "Traceback" not in project.err
    assert not project.marked("running")
    assert not project.marked("cleanup-work")


def test_sigterm_during_a_long_cleanup_still_ends_within_the_cleanup_bound(
    project: Project,
) -> None:
    """A cleanup that would take an hour is cut at cleanup_timeout (1 s), even when
    SIGTERM arrives while it runs; the cleanup error is reported, exit 1."""
    process = project.run(
        project.graph(count=5, sink_config="{ cleanup_delay = 3600 }", cleanup_timeout=1)
    )
    assert wait_for(lambda: project.marked("cleaning"), process, 30), project.err
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert ended(process, 20) == 1, project.err
    assert time.monotonic() - sent < 10
    assert "did not finish within" in project.err
    assert "Traceback" not in project.err


def test_signals_end_a_run_stuck_in_a_sync_cleanup(project: Project) -> None:
    """A sync cleanup() that never returns holds the event loop, so the first signal
    cannot be taken up; the next one is raised at once and ends the process."""
    process = project.run(project.graph(count=5, sink="hangs", sink_config="{}"))
    assert wait_for(lambda: project.marked("cleaning"), process, 30), project.err
    sent = 0
    while process.poll() is None and sent < 3:
        process.send_signal(signal.SIGTERM)
        sent += 1
        if sent < 3:
            wait_for(lambda: False, process, 1)  # a bound: has this one ended it?
    assert ended(process, 10) == 143, project.err
    assert sent >= 2
    assert "Traceback" not in project.err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_ends_a_drain_that_a_sync_cleanup_then_holds(
    project: Project, signum: signal.Signals
) -> None:
    """The first signal is taken up (the drain starts), then a sync cleanup() holds the
    loop for ever: the second signal is raised at once (the loop has stopped ticking),
    not queued for a loop that will never look."""
    process = project.run(project.graph(sink="hangs", sink_config="{}"))
    assert wait_for(lambda: project.marked("running"), process, 30), project.err
    process.send_signal(signum)
    assert wait_for(lambda: project.marked("cleaning"), process, 30), project.err
    wait_for(lambda: False, process, 1)  # the loop has been held for a while
    process.send_signal(signum)
    assert ended(process, 10) == exit_status(signum), project.err
    assert "Traceback" not in project.err


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(phase="validating", after=0.0, signals=[signal.SIGINT, signal.SIGTERM])
@given(
    phase=st.sampled_from([*STARTUP_PHASES, "running", "cleaning"]),
    after=st.floats(min_value=0.0, max_value=0.3),
    signals=st.lists(st.sampled_from([signal.SIGINT, signal.SIGTERM]), min_size=1, max_size=2),
)
def test_signals_at_random_moments_keep_the_promises(
    tmp_path_factory: pytest.TempPathFactory,
    phase: str,
    after: float,
    signals: list[signal.Signals],
) -> None:
    """Whenever signals come (start-up, mid-run, cleanup): no traceback; exit 0 only if
    the graph had ended, else a signal's code; once a module ran, every
    cleanup ran; a graph that ends done dropped nothing and handled all it emitted."""
    project = Project(tmp_path_factory.mktemp("random"))
    count = 60 if phase == "cleaning" else -1
    process = project.run(
        project.graph(count=count, sink_config="{ cleanup_delay = 0.2 }"), import_delay=0.2
    )
    try:
        assert wait_for(lambda: project.marked(phase), process, 30), project.err
        wait_for(lambda: False, process, after)  # the random moment (a bound, not a sync)
        for signum in signals:
            if process.poll() is None:
                process.send_signal(signum)
        code = ended(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in project.err
    # Two signals sent back to back may reach Python together, and Python runs the
    # handlers of signals pending at once in signal-number order: either may be first.
    assert code in (0, *map(exit_status, signals), *(-s for s in signals)), project.err
    if code < 0:  # killed by the signal itself: only as Python exits, after the summary
        assert "graph 'g' done" in project.out, project.err
    if project.marked("running"):
        assert project.marked("cleanup-numbers"), project.err
        assert project.marked("cleanup-work"), project.err
    if "graph 'g' done" in project.out:
        drained(project)


# -- af.run in a script ------------------------------------------------------------------


def test_af_run_drains_on_sigterm_then_exits_143_through_system_exit(project: Project) -> None:
    """Under af.run, SIGTERM drains and cleans up, then SystemExit(143) ends the script
    (its finally blocks run, no traceback)."""
    (project.root / "script.py").write_text(RUN_SCRIPT)
    process = project.start("script.py")
    assert wait_for(lambda: project.marked("running"), process, 30), project.err
    process.send_signal(signal.SIGTERM)
    assert ended(process) == 143, project.err
    assert project.mark("cleanup-work") == project.mark("cleanup-numbers")
    assert project.out.splitlines() == ["finally ran"]
    assert "Traceback" not in project.err


def test_af_run_drains_on_ctrl_c_then_raises_keyboard_interrupt(project: Project) -> None:
    """Under af.run, Ctrl-C drains and cleans up, then KeyboardInterrupt is raised."""
    (project.root / "script.py").write_text(RUN_SCRIPT)
    process = project.start("script.py")
    assert wait_for(lambda: project.marked("running"), process, 30), project.err
    process.send_signal(signal.SIGINT)
    assert ended(process) == 130, project.err
    assert project.mark("cleanup-work") == project.mark("cleanup-numbers")
    assert project.out.splitlines() == ["caught KeyboardInterrupt", "finally ran"]


# -- the asyncio host ----------------------------------------------------------------------


def test_an_asyncio_host_drains_on_its_own_sigterm_handler(project: Project) -> None:
    """In guest mode the host owns signals: its SIGTERM handler calls stop(), and the
    graph drains with every cleanup before the host's block ends."""
    (project.root / "host.py").write_text(AIO_SCRIPT)
    process = project.start("host.py")
    assert wait_for(lambda: project.marked("serving"), process, 30), project.err
    assert wait_for(lambda: project.marked("running"), process, 30), project.err
    process.send_signal(signal.SIGTERM)
    assert ended(process) == 143, project.err
    assert project.mark("cleanup-work") == project.mark("cleanup-numbers")
    assert project.out.splitlines() == ["state=done dropped=0"]


# -- in process --------------------------------------------------------------------------


class Endless(af.Source):
    outputs = {"out": int}  # noqa: RUF012

    async def start(self) -> None:
        n = 0
        while self.active:
            await self.emit(n)
            n += 1
            await trio.sleep(0.01)


class Slow(af.Sink):
    inputs = {"in": int}  # noqa: RUF012

    async def consume(self, data: int) -> None:
        await trio.sleep(1)


def endless_graph() -> af.Graph:
    graph = af.Graph(name="endless")
    graph.add("numbers", Endless)
    graph.add("slow", Slow)
    graph.link("numbers", "slow", buffer=50)
    return graph


async def test_stop_with_a_drain_timeout_cancels_a_drain_that_overruns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stop(drain_timeout=2): fifty queued items at a second each are not all handled;
    the system is cancelled two seconds later and what was queued is dropped."""
    async with af.open_system(endless_graph()) as system:
        await trio.sleep(1)
        stopped_at = trio.current_time()
        await system.stop(drain_timeout=2)
    assert trio.current_time() - stopped_at == pytest.approx(2, abs=0.1)
    status = system.status()
    assert status.state is af.SystemState.CANCELLED
    assert status.dropped > 0


async def test_open_system_leaves_signal_handlers_alone_unless_asked() -> None:
    """A library inside someone's program: open_system changes no signal handler by
    default, and with handle_signals=True puts the previous ones back after."""
    graph = af.Graph()
    graph.add("numbers", Endless)
    graph.add("slow", Slow)
    graph.link("numbers", "slow")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    async with af.open_system(graph) as system:
        assert {s: signal.getsignal(s) for s in before} == before
        system.cancel()
    async with af.open_system(graph, handle_signals=True) as system:
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        system.cancel()
    assert {s: signal.getsignal(s) for s in before} == before


def test_what_a_signal_ends_a_program_with() -> None:
    """SIGINT is KeyboardInterrupt, SIGTERM SystemExit(143); both read back as signals."""
    interrupt = exception_for(signal.SIGINT)
    terminate = exception_for(signal.SIGTERM)
    assert type(interrupt) is KeyboardInterrupt
    assert isinstance(terminate, SystemExit)
    assert terminate.code == 143
    assert signal_ended(interrupt) == signal.SIGINT
    assert signal_ended(terminate) == signal.SIGTERM
    assert signal_ended(SystemExit(3)) is None
    assert signal_ended(ValueError()) is None


# -- the handler's rules, without a process ------------------------------------------------


class FakeToken:
    """Records what the handler hands to the run, as TrioToken.run_sync_soon would."""

    def __init__(self, finished: bool = False) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.finished = finished

    def run_sync_soon(self, fn: Callable[..., object], *args: object) -> None:
        if self.finished:
            raise trio.RunFinishedError
        self.calls.append(args)


def requests(token: FakeToken, got: list[tuple[int, int]]) -> SignalRequests:
    return SignalRequests(token, lambda signum, count: got.append((signum, count)))  # type: ignore[arg-type]


def test_two_signals_sent_together_are_both_handed_to_the_loop() -> None:
    """The second arrives before the loop took up the first: a cancel, not a raise."""
    token = FakeToken()
    handler = requests(token, [])
    handler(signal.SIGTERM, None)
    handler(signal.SIGTERM, None)
    assert token.calls == [(signal.SIGTERM, 1), (signal.SIGTERM, 2)]
    assert handler.waiting == 2


def test_a_signal_is_raised_at_once_when_the_loop_is_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first has waited STUCK_AFTER seconds: the loop is held by sync code, so the
    next one is raised, as the first signal's exception (SIGTERM: Terminated)."""
    now = [100.0]
    monkeypatch.setattr("actorflow._interrupt.time.monotonic", lambda: now[0])
    handler = requests(FakeToken(), [])
    handler(signal.SIGTERM, None)
    now[0] += STUCK_AFTER
    with pytest.raises(Terminated):
        handler(signal.SIGINT, None)


def test_the_third_signal_and_one_after_the_run_are_raised_at_once() -> None:
    """A third signal raises (the first's); so does one the finished run cannot take."""
    got: list[tuple[int, int]] = []
    handler = requests(FakeToken(), got)
    handler(signal.SIGINT, None)
    handler._deliver(signal.SIGINT, 1)
    handler(signal.SIGTERM, None)
    handler._deliver(signal.SIGTERM, 2)
    assert got == [(signal.SIGINT, 1), (signal.SIGTERM, 2)]
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGTERM, None)
    with pytest.raises(Terminated):
        requests(FakeToken(finished=True), [])(signal.SIGTERM, None)


def test_signals_are_raised_at_once_inside_sync_start_up_code() -> None:
    """While constructors run (``raising``), a signal is raised in them."""
    handler = requests(FakeToken(), [])
    with handler.raising(), pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
    assert not handler.at_once


async def test_a_start_up_signal_that_lands_in_trio_code_is_held_for_the_system() -> None:
    """Raised inside trio's own (protected) code it would break the run: the start-up
    handler holds it, and the system's handler takes it over when installed."""
    got: list[tuple[int, int]] = []
    with raising_on_signals():
        held = signal.getsignal(signal.SIGTERM)
        assert callable(held)

        @trio.lowlevel.enable_ki_protection
        def in_trio_code() -> None:
            held(signal.SIGTERM, None)

        in_trio_code()
        with handling_signals(lambda signum, count: got.append((signum, count))) as taken:
            assert taken is not None
            assert taken.received == [signal.SIGTERM]
            await trio.testing.wait_all_tasks_blocked()
    assert got == [(signal.SIGTERM, 1)]


JOB_MODULES = """
import os
import pathlib

import trio

import actorflow as af

MARKS = pathlib.Path(os.environ["SIGNAL_MARKS"])


class Waits(af.Task):
    async def run(self) -> None:
        (MARKS / f"running-{self.name}").write_text("")
        await trio.sleep(60)

    def cleanup(self) -> None:
        (MARKS / f"cleanup-{self.name}").write_text("")
"""

JOB = """
[job]
name = "j"

[tasks.first]
module = "waits"

[tasks.second]
module = "waits"
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_a_job_file_with_its_cleanups_and_the_signals_exit_code(
    project: Project, signum: signal.Signals
) -> None:
    """A job has nothing to drain: the running task is cancelled, its cleanup runs, the
    tasks' table prints, and the exit code is the signal's, SIGTERM like Ctrl-C."""
    (project.root / "jobmods.py").write_text(JOB_MODULES)
    (project.root / "pyproject.toml").write_text(
        '[tool.actorflow.modules]\nwaits = "jobmods:Waits"\n'
    )
    (project.root / "job.toml").write_text(JOB)
    process = project.run("job.toml")
    assert wait_for(lambda: project.marked("running-first"), process, 30), project.err
    process.send_signal(signum)
    assert ended(process) == exit_status(signum), project.err
    assert project.marked("cleanup-first")
    assert not project.marked("running-second")
    assert "Traceback" not in project.err
    said = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert said in project.err
    assert re.search(r"first\s+cancelled", project.out), project.out  # never "succeeded"
    assert re.search(r"second\s+not_run", project.out), project.out


SIGNAL_WHILE_IMPORTING = """
import importlib.abc, os, signal, sys

class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "trio":  # the first heavy import of the command line
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{signal})
        return None

sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["actorflow", "validate", "nothing.toml"]
from actorflow._entry import main
sys.exit(main())
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_command_itself_imports_is_one_line_and_its_exit_code(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Even before the runtime is imported (trio, structlog...), a signal ends the
    command in one line with the signal's status, never a traceback."""
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_WHILE_IMPORTING.format(signal=signum.name)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == exit_status(signum)
    said = "interrupted" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert result.stderr == f"{said}: stopped while starting, no module ran\n"


def test_importing_actorflow_imports_no_runtime_until_it_is_used() -> None:
    """``import actorflow`` is cheap (the exports load on first use), which keeps the
    command's unguarded start-up window to the interpreter's own."""
    code = (
        "import sys, actorflow; "
        "print(sorted(m for m in ('trio', 'structlog', 'msgpack', 'rich') if m in sys.modules)); "
        "actorflow.Graph; print('trio' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split("\n")[:2] == ["[]", "True"]
