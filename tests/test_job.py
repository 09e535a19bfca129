"""Jobs: tasks built and validated first, run in order, always cleaned up, with results."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._cli import main
from actorflow._job import TaskState


class Step(af.Task):
    """Takes `seconds`, reports progress, and can fail in a chosen phase."""

    def __init__(self, journal: list[str], seconds: float = 1, fail_in: str = "") -> None:
        self.journal = journal
        self.seconds = seconds
        self.fail_in = fail_in
        if fail_in == "init":
            raise OSError("no codec")

    def validate(self) -> None:
        self.journal.append(f"validate:{self.name}")
        if self.fail_in == "validate":
            raise ValueError("bitrate must be positive")

    async def run(self) -> None:
        self.journal.append(f"run:{self.name}")
        for frame in range(1, 5):
            await trio.sleep(self.seconds / 4)
            self.report(frame * 25, f"frame {frame}/4")
        if self.fail_in == "run":
            raise RuntimeError("disk full")

    def cleanup(self) -> None:
        self.journal.append(f"cleanup:{self.name}")
        if self.fail_in == "cleanup":
            raise RuntimeError("temp dir busy")


def job(journal: list[str], fail: str = "", where: str = "b") -> af.Job:
    built = af.Job("encode")
    for name, seconds in (("a", 1), ("b", 2), ("c", 3)):
        built.add(
            name, Step, journal=journal, seconds=seconds, fail_in=fail if name == where else ""
        )
    return built


async def test_tasks_run_in_order_with_durations_tracked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every task is validated first, then they run one after another, timed by the runtime."""
    journal: list[str] = []
    result = await job(journal).run()
    assert result.ok
    assert journal == [
        "validate:a", "validate:b", "validate:c",
        "run:a", "run:b", "run:c",
        "cleanup:c", "cleanup:b", "cleanup:a",
    ]  # fmt: skip
    assert [t.duration for t in result.tasks] == [1, 2, 3]
    assert [t.state for t in result.tasks] == ["succeeded"] * 3
    assert result.tasks[1].info == "frame 4/4"
    assert all(t.progress == 100 for t in result.tasks)
    assert result.succeeded == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("phase", "error"), [("init", af.InitializationError), ("validate", af.ValidationError)]
)
async def test_a_task_failing_to_build_or_validate_stops_the_job_before_anything_runs(
    autojump_clock: trio.testing.MockClock, phase: str, error: type[Exception]
) -> None:
    """No task runs (and none needs cleanup) when one cannot be built or validated."""
    journal: list[str] = []
    result = await job(journal, phase, where="c").run()
    assert isinstance(result.error, error)
    assert result.error.module == "c"
    assert not any(entry.startswith(("run", "cleanup")) for entry in journal)
    assert [t.state for t in result.tasks] == ["not_run"] * 3


async def test_a_run_failure_stops_the_job_and_cleans_up_what_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The failing task is named with its phase; later tasks do not run; started ones are
    cleaned up; the result says which succeeded."""
    journal: list[str] = []
    result = await job(journal, "run", where="b").run()
    assert isinstance(result.error, af.RunError)
    assert str(result.error) == "module 'b' failed in run: RuntimeError: disk full"
    assert [t.state for t in result.tasks] == ["succeeded", "failed", "not_run"]
    assert result.succeeded == ["a"]
    assert result.tasks[1].error is result.error
    assert journal[-2:] == ["cleanup:b", "cleanup:a"]
    assert "run:c" not in journal
    with pytest.raises(af.RunError, match="disk full"):
        result.raise_for_error()


async def test_a_cleanup_failure_is_reported_without_hiding_a_run_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cleanup() failing alone is a CleanupError; after a run failure it is a note."""
    alone = await job([], "cleanup", where="a").run()
    assert isinstance(alone.error, af.CleanupError)
    assert alone.error.module == "a"

    both = af.Job("both")
    both.add("a", Step, journal=[], fail_in="cleanup")
    both.add("b", Step, journal=[], fail_in="run")
    result = await both.run()
    assert isinstance(result.error, af.RunError)
    assert any("temp dir busy" in note for note in result.error.__notes__)


class Blocking(af.Task):
    def __init__(self, threads: list[str]) -> None:
        self.threads = threads

    def run(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.report(50, "half")


def test_a_sync_task_runs_in_a_worker_thread_and_can_report() -> None:
    """A sync run() does not hold the event loop; its reports are kept."""
    threads: list[str] = []
    blocking = af.Job("sync")
    blocking.add("only", Blocking, threads=threads)
    result = blocking.run_blocking()
    assert result.ok
    assert threads[0] != threading.main_thread().name
    assert result.tasks[0].info == "half"


def test_task_names_are_unique() -> None:
    """Adding two tasks of the same name is refused."""
    duplicate = af.Job("dup")
    duplicate.add("a", Blocking, threads=[])
    with pytest.raises(ValueError, match="already has a task 'a'"):
        duplicate.add("a", Blocking, threads=[])


def test_job_results_report_ok() -> None:
    """An empty job succeeds."""
    result: Any = af.Job("empty").run_blocking()
    assert result.ok
    assert result.tasks == ()


async def test_status_shows_each_task_while_the_job_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Job.status() says which task runs, for how long, with its last report; the tasks
    after it are pending; after a failure they are not run."""
    journal: list[str] = []
    running = job(journal, fail="run", where="b")
    assert [t.state for t in running.status()] == ["pending"] * 3
    seen: list[tuple[str, ...]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(running.run)
        # Sync validate() runs in worker threads, which the mock clock cannot see: count
        # from when the first task starts running.
        while running.status()[0].state != "running":
            await trio.sleep(0)
        await trio.sleep(1.6)  # a took 1 s; b is 0.6 s in, reported frame 1 at 0.5 s
        now = running.status()
        seen.append(tuple(t.state for t in now))
        assert now[1].duration == pytest.approx(0.6)
        assert (now[1].progress, now[1].info) == (25.0, "frame 1/4")
        assert now[0].duration == pytest.approx(1.0)
    assert seen == [("succeeded", "running", "pending")]
    assert [t.state for t in running.status()] == ["succeeded", "failed", "not_run"]


async def test_progress_is_logged_at_most_once_a_second(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """Reports reach the log as task.progress events, rate-limited so a task that reports
    every frame does not flood it."""

    class Chatty(af.Task):
        def run(self) -> None:
            for n in range(1, 201):
                self.report(n / 2, f"frame {n}/200")

    built = af.Job("chatty")
    built.add("encode", Chatty)
    assert (await built.run()).ok
    progress = [e for e in logs if e["event"] == "task.progress"]
    assert progress[0]["task"] == "encode"
    assert progress[0]["info"] == "frame 1/200"
    assert len(progress) < 200


async def test_task_states_are_a_str_enum_equal_to_their_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Task states are TaskState members, and each equals the string it always was."""
    result = await job([], "run", where="b").run()
    assert [t.state for t in result.tasks] == [
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.NOT_RUN,
    ]
    assert all(isinstance(t.state, TaskState) for t in result.tasks)
    assert f"{result.tasks[2].state}" == "not_run"


@pytest.mark.parametrize("phase", ["init", "validate"])
async def test_a_task_failing_to_build_or_validate_is_logged_once(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]], phase: str
) -> None:
    """The failing task is logged as task.failed with its phase, once."""
    await job([], phase, where="c").run()
    failed = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["task"], e["phase"]) for e in failed] == [("task.failed", "c", phase)]


async def test_a_task_whose_cleanup_fails_is_a_failed_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A task whose run() returned but whose cleanup() raised failed: its result says so,
    with its own CleanupError, also when another task's run failure is the job's error."""
    alone = await job([], "cleanup", where="a").run()
    assert [t.state for t in alone.tasks] == ["failed", "succeeded", "succeeded"]
    assert alone.tasks[0].error is alone.error
    assert alone.succeeded == ["b", "c"]

    both = af.Job("both")
    both.add("a", Step, journal=[], fail_in="cleanup")
    both.add("b", Step, journal=[], fail_in="run")
    result = await both.run()
    assert [t.state for t in result.tasks] == ["failed", "failed"]
    assert isinstance(result.tasks[0].error, af.CleanupError)
    assert "temp dir busy" in str(result.tasks[0].error)
    assert isinstance(result.tasks[1].error, af.RunError)
    assert result.succeeded == []


def test_a_job_file_whose_task_cleanup_fails_exits_1_naming_task_and_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`actorflow run` on a job file: a cleanup failure is the job's failure (exit 1)."""
    (tmp_path / "chores.py").write_text(
        "import actorflow as af\n\n"
        "class Leaky(af.Task):\n"
        "    def run(self):\n"
        "        self.report(100, 'done')\n\n"
        "    def cleanup(self):\n"
        "        raise RuntimeError('temp dir busy')\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.actorflow]\npythonpath = ["."]\n\n'
        '[tool.actorflow.modules]\nleaky = "chores:Leaky"\n'
    )
    (tmp_path / "chores.toml").write_text(
        '[job]\nname = "chores"\n\n[tasks.sweep]\nmodule = "leaky"\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "chores.toml", "--no-view"]) == 1
    captured = capsys.readouterr()
    assert "module 'sweep' failed in cleanup: RuntimeError: temp dir busy" in captured.err
    assert "sweep  failed" in captured.out
    assert "done:" not in captured.out


class Threads(af.Task):
    """Records the thread each sync hook runs in."""

    def __init__(self, threads: dict[str, str]) -> None:
        self.threads = threads

    def validate(self) -> None:
        self.threads["validate"] = threading.current_thread().name

    def run(self) -> None:
        self.threads["run"] = threading.current_thread().name

    def cleanup(self) -> None:
        self.threads["cleanup"] = threading.current_thread().name


def test_sync_validate_and_cleanup_run_in_worker_threads_like_run() -> None:
    """The Task docstring's promise holds for every sync hook, not only run()."""
    threads: dict[str, str] = {}
    built = af.Job("threads")
    built.add("only", Threads, threads=threads)
    assert built.run_blocking().ok
    assert set(threads) == {"validate", "run", "cleanup"}
    assert threading.main_thread().name not in threads.values()


class Recorder:
    """A reporter that keeps every snapshot."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []

    async def report(self, snapshot: dict[str, Any]) -> None:
        self.snapshots.append(snapshot)


async def test_a_job_sends_heartbeats_to_reporters_like_a_graph(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """Every heartbeat_interval a running job logs system.heartbeat and hands each
    reporter a snapshot with one entry per task: its state, progress and last report."""
    recorder = Recorder()
    result = await job([]).run(reporters=[recorder], heartbeat_interval=0.5)
    assert result.ok
    assert len(recorder.snapshots) >= 6  # the tasks take 6 s
    first = recorder.snapshots[0]
    assert (first["graph"], first["state"]) == ("encode", "running")
    assert set(first["actors"]) == {"a", "b", "c"}
    assert (first["actors"]["a"]["kind"], first["actors"]["a"]["task"]) == ("task", "Step")
    b_running = [
        s["actors"]["b"]
        for s in recorder.snapshots
        if s["actors"]["b"]["info"]["state"] == "running"
    ]
    assert b_running
    assert b_running[-1]["state"] == "running"
    assert b_running[-1]["progress"][1] == 100.0
    assert "info" in b_running[-1]["info"]
    beats = [e for e in logs if e["event"] == "system.heartbeat"]
    assert len(beats) == len(recorder.snapshots)
    assert beats[0]["job"] == "encode"


async def test_a_cancelled_sync_run_finishes_before_its_cleanup_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The abandoned run of a cancelled sync task keeps running in its thread; its
    ``cleanup()`` waits for it instead of running beside it. (The run ends by itself
    after a second of real time, or when a cleanup beside it releases it.)"""
    release = threading.Event()
    started = trio.Event()
    state = {"in_run": False}
    overlaps: list[bool] = []

    class Blocking(af.Task):
        def run(self) -> None:
            state["in_run"] = True
            trio.from_thread.run_sync(started.set)
            release.wait(timeout=1)
            state["in_run"] = False

        def cleanup(self) -> None:
            overlaps.append(state["in_run"])
            release.set()

    built = af.Job("blocking")
    built.add("t", Blocking)
    scope = trio.CancelScope()

    async def run_job() -> None:
        with scope:
            await built.run()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_job)
        await started.wait()
        scope.cancel()
    assert overlaps == [False]


class Misspelt(af.Task):
    def rn(self) -> None:  # meant run()
        pass


def test_a_task_without_run_is_refused_when_added_with_a_close_match() -> None:
    """The missing-hook rule of modules covers tasks: a misspelt ``def rn`` is named
    when the task is added, not found by a NotImplementedError at run time."""
    with pytest.raises(TypeError, match=r"task 't': Misspelt does not define run\(\).*rn\(\)"):
        af.Job("j").add("t", Misspelt)
    with pytest.raises(TypeError, match=r"not a subclass of actorflow\.Task"):
        af.Job("j").add("t", int)  # type: ignore[arg-type]


def test_a_job_file_with_a_task_without_run_names_the_table(tmp_path: Path) -> None:
    (tmp_path / "tasks_mod.py").write_text(
        "import actorflow as af\nclass T(af.Task):\n    def rn(self):\n        pass\n"
    )
    (tmp_path / "pyproject.toml").write_text(
        '[tool.actorflow]\npythonpath = ["."]\n\n[tool.actorflow.modules]\nt = "tasks_mod:T"\n'
    )
    path = tmp_path / "job.toml"
    path.write_text('[tasks.t]\nmodule = "t"\n')
    with pytest.raises(af.GraphFileError, match=r"\[tasks.t\]: task 't': T does not define run"):
        af.load_job(path)


class OwnName(af.Task):
    """Sets the attributes a task author naturally sets in __init__."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen
        self.name = "my encoder"
        self.info = {"codec": "h264"}  # type: ignore[assignment]
        self.progress = "none yet"  # type: ignore[assignment]

    def run(self) -> None:
        self.seen.append(self.name)


async def test_a_name_a_task_sets_is_its_own_and_the_job_goes_by_its_key() -> None:
    """Like a module's ``self.name``: the task keeps it, the job names the task by the
    name it was added under; odd progress and info values are reported safely."""
    seen: list[Any] = []
    built = af.Job("j")
    built.add("t", OwnName, seen=seen)
    built.add("u", Step, journal=[], seconds=0)
    result = await built.run()
    assert seen == ["my encoder"]
    assert [(t.name, t.state) for t in result.tasks] == [("t", "succeeded"), ("u", "succeeded")]
    assert result.tasks[0].info == "{'codec': 'h264'}"
    assert result.tasks[0].progress == 100.0


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "x", 10**400])
async def test_a_bad_heartbeat_interval_is_refused_before_any_task_runs(interval: Any) -> None:
    journal: list[str] = []
    with pytest.raises(ValueError, match="heartbeat_interval must be seconds"):
        await job(journal).run(heartbeat_interval=interval)
    with pytest.raises(ValueError, match="heartbeat_interval must be seconds"):
        job(journal).run_blocking(heartbeat_interval=interval)
    assert journal == []
