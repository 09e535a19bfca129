"""Jobs: an ordered list of tasks that each run once, with progress.

Every task is constructed, then every task validated, before the first one runs; they
run one after another; ``cleanup()`` runs for every task that was started, also after a
failure. A failure stops the job, and the :class:`JobResult` says which task failed in
which phase and which tasks succeeded. Start time and duration are tracked by the
runtime, not by the task's author.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._actor._threads import Threads
from ._checks import check_seconds, short
from ._exceptions import (
    CleanupError,
    InitializationError,
    LifecycleError,
    RunError,
    ValidationError,
    describe,
)
from ._heartbeat import Reporter, beat
from ._hooks import HookStyle, call_hook, hook_style
from ._interrupt import run_interruptible
from ._lifecycle import TASK_EVENTS, cleanup, construct, does_nothing, validate
from ._logging import get_logger
from ._module import missing_hook, required
from ._status import ActorState, ActorStatus, SystemState, SystemStatus, Vocabulary
from ._urls import redact_text

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["Job", "JobResult", "Task", "TaskResult", "TaskState"]


class TaskState(Vocabulary):
    """Where a task of a job stands; each compares equal to its string value."""

    PENDING = "pending"
    """Not run yet, and the job has not failed (only while the job runs)."""
    RUNNING = "running"
    """Running now (only while the job runs)."""
    SUCCEEDED = "succeeded"
    """Its ``run()`` returned."""
    FAILED = "failed"
    """Its constructor, ``validate()``, ``run()`` or ``cleanup()`` raised (a task whose
    ``run()`` returned but whose ``cleanup()`` raised failed too)."""
    NOT_RUN = "not_run"
    """The job failed (or was stopped) before this task's turn, so it never started."""
    CANCELLED = "cancelled"
    """The job was stopped (a signal, a cancellation) while its ``run()`` ran."""


class Task:
    """A unit of work that runs once. Override :meth:`run`; report progress with
    :meth:`report`. Sync hooks run in a worker thread (tasks usually block: encoding,
    copying files), async ones on the event loop."""

    name: str = ""
    """The task's name in its job, unless the task set its own ``self.name`` (then it
    is the task's: the job never reads it)."""
    progress: float = 0.0
    info: str | None = None
    _key: str = ""
    """The task's name in its job, which the job goes by."""
    _log: FilteringBoundLogger | None = None
    _last_logged: float | None = None

    @does_nothing
    def validate(self) -> Any:
        """Refuse a bad configuration by raising; runs before any task of the job runs."""
        return None

    @required
    def run(self) -> Any:
        """Do the work."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement run()")

    @does_nothing
    def cleanup(self) -> Any:
        """Release what the task holds; runs if the task was started, whatever happened."""
        return None

    def report(self, progress: float, info: str | None = None) -> None:
        """Report progress from 0 to 100 and, optionally, free-form info ("frame 3/10")."""
        self.progress = max(0.0, min(100.0, float(progress)))
        self.info = redact_text(info) if isinstance(info, str) else info  # shown: see _urls
        # Logged at most once a second (the live view and status() show every report).
        now = time.monotonic()
        if self._log is not None and (self._last_logged is None or now - self._last_logged >= 1.0):
            self._last_logged = now
            self._log.info("task.progress", task=self._key, progress=self.progress, info=self.info)


@attrs.frozen
class TaskResult:
    """How one task of a job went.

    Attributes:
        state: ``"succeeded"``, ``"failed"`` or ``"not_run"``.
        started_at: When it started (seconds since the epoch), if it did.
        duration: How long it ran, in seconds, if it did.
    """

    name: str
    state: str
    """``"succeeded"``, ``"failed"`` or ``"not_run"``; while the job runs,
    :meth:`Job.status` also says ``"pending"`` or ``"running"``. A ``TaskState``, which
    is a ``str`` equal to its value."""
    started_at: float | None = None
    duration: float | None = None
    progress: float = 0.0
    info: str | None = None
    error: LifecycleError | None = None


@attrs.frozen
class JobResult:
    """How a job went: one :class:`TaskResult` per task, in order."""

    name: str
    tasks: tuple[TaskResult, ...]
    error: LifecycleError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def succeeded(self) -> list[str]:
        """Names of the tasks that succeeded."""
        return [task.name for task in self.tasks if task.state == TaskState.SUCCEEDED]

    def raise_for_error(self) -> None:
        """Raise the job's error (naming the task and phase), if it failed."""
        if self.error is not None:
            raise self.error


async def _call_in_thread(hook: Callable[[], Any], *, abandon_on_cancel: bool) -> Any:
    """Call a task's hook as the :class:`Task` docstring promises: a sync one in a worker
    thread (tasks block: encoding, copying files), an async one on the event loop. (The
    do-nothing hooks a task inherits are not called at all: see ``does_nothing``.)"""
    if hook_style(hook) is HookStyle.SYNC:
        # Boxed both ways: trio refuses a callable that looks async (an object with an
        # async __call__) and a coroutine coming back; such a result is awaited below.
        (result,) = await trio.to_thread.run_sync(
            lambda: (hook(),), abandon_on_cancel=abandon_on_cancel
        )
    else:
        result = hook()
    if inspect.isawaitable(result):
        return await result
    return result


_validate_hook = partial(_call_in_thread, abandon_on_cancel=True)
_cleanup_hook = partial(_call_in_thread, abandon_on_cancel=False)
"""A cleanup is never abandoned: it runs to its end, shielded, like a module's."""

_HEARTBEAT_STATES = {
    TaskState.PENDING: ActorState.CREATED,
    TaskState.NOT_RUN: ActorState.CREATED,
    TaskState.RUNNING: ActorState.RUNNING,
    TaskState.SUCCEEDED: ActorState.TERMINATED,
    TaskState.FAILED: ActorState.TERMINATED,
    TaskState.CANCELLED: ActorState.TERMINATED,
}
"""A task's state as the actor state a heartbeat carries (its exact state is in
``info["state"]``)."""


def _task_status(result: TaskResult, kind: str) -> ActorStatus:
    """One task as a heartbeat's actor entry."""
    failed = result.state == TaskState.FAILED
    ended = result.state in (TaskState.SUCCEEDED, TaskState.FAILED)
    return ActorStatus(
        name=result.name,
        kind="task",
        state=_HEARTBEAT_STATES[TaskState(result.state)],
        blocked_on=None,
        received=0,
        emitted=0,
        filtered=0,
        dropped={},
        mailbox_depth=0,
        errors=1 if failed else 0,
        reason=str(result.state) if ended else None,
        progress=(result.progress, 100.0),
        task=kind,
        info={"state": str(result.state), "info": result.info},
    )


def _progress(value: Any) -> float:
    """A task's progress as a number from 0 to 100, whatever it set ``progress`` to."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(max(0, min(100, value)))
    return 0.0


def _info(value: Any) -> str | None:
    """A task's info as the text a result carries, whatever it set ``info`` to."""
    return value if value is None or isinstance(value, str) else short(value)


class Job:
    """An ordered list of tasks, declared like a graph's modules."""

    def __init__(self, name: str = "job") -> None:
        self.name = name
        self._specs: list[tuple[str, type[Task], dict[str, Any]]] = []
        self._tasks: list[Task] = []
        self._running: tuple[str, float, float] | None = None
        self._timings: dict[str, tuple[float, float]] = {}
        self._error: LifecycleError | None = None
        self._failed: dict[str, LifecycleError] = {}
        self._cancelled: set[str] = set()
        """Every task that failed, in any phase (cleanup too), with its own error."""
        self._threads = Threads()
        """Sync runs a cancellation abandoned: a task's cleanup waits for its run."""

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, in order."""
        return tuple(name for name, _, _ in self._specs)

    def status(self) -> tuple[TaskResult, ...]:
        """Every task as it stands now: pending, running (with its duration so far and
        last report), succeeded, failed or not run. Cheap; safe to call while it runs."""
        running = self._running
        results = list(self._results(self._tasks, self._timings, self._error))
        if running is not None:
            name, began_wall, began = running
            index = self.tasks.index(name)
            results[index] = attrs.evolve(
                results[index],
                state=TaskState.RUNNING,
                started_at=began_wall,
                duration=trio.current_time() - began,
            )
        if self._error is None:
            results = [
                attrs.evolve(r, state=TaskState.PENDING) if r.state == TaskState.NOT_RUN else r
                for r in results
            ]
        return tuple(results)

    def add(self, name: str, task: type[Task], /, **config: Any) -> str:
        """Append a task named ``name``, built as ``task(**config)`` when the job runs.

        Raises:
            ValueError: The job already has a task ``name``.
            TypeError: ``task`` is not a :class:`Task` class, or does not define
                ``run()`` (a misspelt ``def rn`` is named).
        """
        if any(existing == name for existing, _, _ in self._specs):
            raise ValueError(f"job {self.name!r} already has a task {name!r}")
        if not (isinstance(task, type) and issubclass(task, Task)):
            raise TypeError(f"task {name!r}: {task!r} is not a subclass of actorflow.Task")
        missing = missing_hook(task, "run")
        if missing is not None:
            hint = f"; did you mean to name {missing[1]}() run()?" if missing[1] else ""
            raise TypeError(
                f"task {name!r}: {task.__qualname__} does not define run(), which a task "
                f"must{hint}"
            )
        self._specs.append((name, task, config))
        return name

    def _heartbeat_status(self) -> SystemStatus:
        """The running job as a heartbeat sees it: one entry per task, kind ``"task"``."""
        kinds = {name: cls.__name__ for name, cls, _ in self._specs}
        return SystemStatus(
            graph=self.name,
            state=SystemState.RUNNING,
            actors={r.name: _task_status(r, kinds[r.name]) for r in self.status()},
            links={},
        )

    async def run(
        self, *, reporters: Sequence[Reporter] = (), heartbeat_interval: float = 5.0
    ) -> JobResult:
        """Run the job; never raises for a task's failure (see :class:`JobResult`).

        Like a graph, a running job logs a ``system.heartbeat`` every
        ``heartbeat_interval`` seconds and hands the snapshot to each of ``reporters``.

        Raises:
            ValueError: ``heartbeat_interval`` is not a duration ``Settings`` accepts.
        """
        check_seconds("heartbeat_interval", heartbeat_interval)
        log = get_logger(job=self.name)
        heartbeats = partial(
            beat,
            self._heartbeat_status,
            interval=heartbeat_interval,
            started_at=time.time(),
            reporters=reporters,
            log=log,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeats)
            result = await self._run(log)
            nursery.cancel_scope.cancel()
        return result

    async def _run(self, log: FilteringBoundLogger) -> JobResult:
        """Prepare, run and clean up every task; the result says how it went."""
        self._tasks, self._timings, self._error, self._running = [], {}, None, None
        self._failed, self._threads = {}, Threads()
        self._cancelled = set()
        try:
            await self._prepare(log)
        except (InitializationError, ValidationError) as error:
            return self._result(self._tasks, {}, error, log)
        started: list[Task] = []
        failure: LifecycleError | None = None
        try:
            failure = await self._run_tasks(started, log)
        finally:
            with trio.CancelScope(shield=True):
                failure = await self._clean_up(started, failure, log)
        return self._result(self._tasks, self._timings, failure, log)

    async def _prepare(self, log: FilteringBoundLogger) -> None:
        """Construct every task, then validate every task, before the first one runs."""
        for name, cls, config in self._specs:
            task = construct(name, cls, config, log.bind(task=name), TASK_EVENTS)
            task._key = name
            if "name" not in vars(task):
                task.name = name
            task._log = log
            self._tasks.append(task)
        for task in self._tasks:
            await validate(
                task._key, task.validate, _validate_hook, log.bind(task=task._key), TASK_EVENTS
            )

    async def _run_tasks(self, started: list[Task], log: FilteringBoundLogger) -> RunError | None:
        """Run the tasks in order until one fails; ``started`` collects those begun."""
        for task in self._tasks:
            started.append(task)
            failure = await self._run_one(task, log)
            if failure is not None:
                log.error(
                    "task.failed",
                    task=task._key,
                    phase="run",
                    error=str(failure),
                    exc_info=failure,
                )
                self._failed[task._key] = failure
                return failure
            task.progress = 100.0
            log.info("task.succeeded", task=task._key, duration=self._timings[task._key][1])
        return None

    async def _run_one(self, task: Task, log: FilteringBoundLogger) -> RunError | None:
        """Run one task (a sync ``run`` in a worker thread), timing it."""
        began_wall, began = time.time(), trio.current_time()
        self._running = (task._key, began_wall, began)
        log.info("task.started", task=task._key)
        try:
            if hook_style(task.run) is HookStyle.SYNC:
                await self._threads.run(task.run, (), None)
            else:
                await call_hook(task.run)
        except Exception as exc:
            failure = RunError(task._key, describe(exc))
            failure.__cause__ = exc
            return failure
        except BaseException:
            self._cancelled.add(task._key)  # stopped, not returned: never "succeeded"
            raise
        finally:
            self._timings[task._key] = (began_wall, trio.current_time() - began)
            self._running = None
        return None

    async def _clean_up(
        self, started: list[Task], failure: LifecycleError | None, log: FilteringBoundLogger
    ) -> LifecycleError | None:
        """Clean up every started task, last first; the job's error is the run's failure,
        else the first cleanup error, and any other cleanup error is a note on it. A task
        whose cleanup failed is a failed task, whatever its run did.

        A sync run a cancellation abandoned finishes in its thread first: a cleanup never
        runs beside it (no limit, like the cleanup itself)."""
        await self._threads.settle(math.inf, log)
        for task in reversed(started):
            error: CleanupError | None = await cleanup(
                task._key,
                task.cleanup,
                _cleanup_hook,
                math.inf,
                log.bind(task=task._key),
                TASK_EVENTS,
            )
            if error is None:
                continue
            self._failed.setdefault(task._key, error)
            if failure is None:
                failure = error
            else:
                failure.add_note(f"also: {error}")
        return failure

    def run_blocking(
        self, *, reporters: Sequence[Reporter] = (), heartbeat_interval: float = 5.0
    ) -> JobResult:
        """Run the job from synchronous code."""
        check_seconds("heartbeat_interval", heartbeat_interval)
        run = partial(self.run, reporters=reporters, heartbeat_interval=heartbeat_interval)
        return run_interruptible(run)

    def _result(
        self,
        tasks: list[Task],
        timings: dict[str, tuple[float, float]],
        error: LifecycleError | None,
        log: FilteringBoundLogger,
    ) -> JobResult:
        self._error = error
        result = JobResult(self.name, self._results(tasks, timings, error), error)
        log.info("job.ended", ok=result.ok, succeeded=result.succeeded)
        return result

    def _results(
        self,
        tasks: list[Task],
        timings: dict[str, tuple[float, float]],
        error: LifecycleError | None,
    ) -> tuple[TaskResult, ...]:
        results = []
        for name, _, _ in self._specs:
            task = next((t for t in tasks if t._key == name), None)
            own_error = self._failed.get(name)
            if error is not None and error.module == name:
                own_error = error
            if name in timings:
                state = (
                    TaskState.FAILED
                    if name in self._failed
                    else TaskState.CANCELLED
                    if name in self._cancelled
                    else TaskState.SUCCEEDED
                )
                started_at, duration = timings[name]
            else:
                state, started_at, duration = TaskState.NOT_RUN, None, None
            results.append(
                TaskResult(
                    name=name,
                    state=state,
                    started_at=started_at,
                    duration=duration,
                    progress=_progress(task.progress) if task else 0.0,
                    info=_info(task.info) if task else None,
                    error=own_error,
                )
            )
        return tuple(results)
