"""The ``actorflow`` command line: run, validate, list modules, draw a graph, read logs.

Exit codes: 0 success, 1 the graph failed while running (``logs --trace``: no event
mentions the message), 2 bad input (file, config, validation, option values), 130
stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM (128 + the signal, as shells report).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio
from rich.console import Console

from . import _logfile
from ._checks import short
from ._dashboard import parse_address
from ._diagram import dot as _dot
from ._diagram import job_dot as _job_dot
from ._diagram import job_mermaid as _job_mermaid
from ._diagram import mermaid as _mermaid
from ._exceptions import (
    ActorflowError,
    CleanupError,
    GraphError,
    GraphFileError,
    InitializationError,
    RegistryError,
    RunError,
    ServeError,
    ValidationError,
    single_errors,
)
from ._graph import Graph
from ._graphfile import load_any
from ._interrupt import (
    ending_as_signals,
    exit_status,
    handling_signals,
    raising_on_signals,
    signal_ended,
    signal_name,
)
from ._job import Job, JobResult, TaskResult, TaskState
from ._logging import check_level, configure_logging, get_logger, log_write_error
from ._overrides import from_environment, parse_assignment
from ._pyload import is_python_target, load_python
from ._registry import Registry
from ._scaffold import ScaffoldError, scaffold
from ._settings import Settings
from ._status import SystemState, SystemStatus
from ._summary import Totals, print_summary, summary_json
from ._system import System, open_system
from ._version import __version__
from ._view import view_job, view_status

__all__ = ["main"]

BAD_INPUT = 2
FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorflow", description="Run and inspect actorflow graph files."
    )
    parser.add_argument("--version", action="version", version=f"actorflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_cmd = commands.add_parser("run", help="run a graph file until it ends, or a job file")
    run_cmd.add_argument(
        "file",
        help="the graph or job file (TOML), or a graph built in Python: "
        "package.module:function (or :variable)",
    )
    run_cmd.add_argument(
        "--log",
        metavar="PATH",
        help="append JSON-lines logs to PATH (warnings and errors still reach stderr)",
    )
    run_cmd.add_argument(
        "--only",
        metavar="MODULES",
        action="append",
        help="run only these modules here (comma-separated; repeatable): the others run "
        "in other processes, joined by remote links",
    )
    run_cmd.add_argument(
        "--log-level", default="info", help="lowest level written to --log (default: info)"
    )
    run_cmd.add_argument(
        "--drain",
        metavar="SECONDS",
        type=float,
        help="after SIGINT or SIGTERM, how long what is in flight may take to finish "
        "before the graph is cancelled (default: the drain_timeout setting, 10)",
    )
    _add_outcome_options(run_cmd)
    _add_observing_options(run_cmd)
    run_cmd.add_argument(
        "--view",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a live table of the actors while the graph runs "
        "(default: on when stdout is a terminal and TERM is not 'dumb')",
    )
    run_cmd.add_argument(
        "--dashboard",
        metavar="[HOST:]PORT",
        help="serve a live web dashboard of the graph while it runs (host 127.0.0.1 unless "
        "given; needs actorflow[dashboard])",
    )
    validate_cmd, graph_cmd = _add_file_commands(commands)
    for command in (run_cmd, validate_cmd, graph_cmd):
        _add_overrides(command)
    logs_cmd = commands.add_parser(
        "logs", help="filter, follow, summarise a JSON-lines log, or trace one message"
    )
    _logfile.add_arguments(logs_cmd)
    _add_project_commands(commands)
    return parser


def _add_outcome_options(run_cmd: argparse.ArgumentParser) -> None:
    run_cmd.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any item was dead-lettered or dropped, even if the run ended well",
    )
    run_cmd.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object (totals, drops by reason, one entry "
        "per actor) instead of the table",
    )
    run_cmd.add_argument(
        "--traceback",
        action="store_true",
        help="when the run fails, print the whole chain of the error, every frame",
    )


def _add_observing_options(run_cmd: argparse.ArgumentParser) -> None:
    run_cmd.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics while the graph runs "
        "(HOST defaults to 127.0.0.1; the metrics setting)",
    )
    run_cmd.add_argument(
        "--trace-ratio",
        metavar="RATIO",
        help="trace this share (0 to 1) of the items with OpenTelemetry, a span per hop, "
        "exported as OTEL_TRACES_EXPORTER says (default otlp; needs actorflow[otel])",
    )


def _observing(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings with ``--metrics`` and ``--trace-ratio``, each checked in one line."""
    ratio = None if args.trace_ratio is None else _number(args.trace_ratio)
    given: tuple[tuple[str, str, Any], ...] = (
        ("--metrics", "metrics", args.metrics),
        ("--trace-ratio", "trace_ratio", ratio),
    )
    for option, name, value in given:
        if value is None:
            continue
        try:
            settings = attrs.evolve(settings, **{name: value})
        except (TypeError, ValueError) as exc:
            raise _BadOption(f"{option} {_given(value)}: {exc}") from None
    return settings


def _given(value: object) -> str:
    """An option's value as an error quotes it: as typed, unless quotes make it
    clearer (empty, spaces, control characters)."""
    text = str(value)
    if text and text.isprintable() and not any(c.isspace() for c in text):
        return text
    return short(value)


def _number(value: str) -> float | str:
    """``value`` as a float if it reads as one, else as it is (for the setting's own
    check to refuse in one line, as argparse's ``type=float`` would not)."""
    try:
        return float(value)
    except ValueError:
        return value


def _tracer_provider(settings: Settings) -> tuple[Any, Any]:
    """The provider spans go to when the settings trace, and how to flush it at the end."""
    if settings.trace_ratio == 0:
        return None, lambda: None
    try:
        from ._tracing import provider_from_environment
    except ImportError:
        raise _BadOption(
            f"--trace-ratio {settings.trace_ratio:g}: tracing needs OpenTelemetry, which is "
            "not installed: pip install 'actorflow[otel]'"
        ) from None
    try:
        return provider_from_environment()
    except ActorflowError as exc:
        raise _BadOption(f"--trace-ratio: {exc}") from None


def _add_file_commands(commands: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """``validate``, ``modules`` and ``graph``; the two that read a file."""
    validate_cmd = commands.add_parser(
        "validate", help="check a graph or job file without running it"
    )
    validate_cmd.add_argument("file", help="the graph or job file (TOML)")
    validate_cmd.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: valid (true/false), kind, name, modules, links, problems",
    )
    modules_cmd = commands.add_parser(
        "modules", help="list the modules enabled here, and where from"
    )
    modules_cmd.add_argument(
        "--json",
        action="store_true",
        help="JSON lines: one object per entry (name, target, origin, problem)",
    )
    graph_cmd = commands.add_parser("graph", help="print a graph or job file as Mermaid or DOT")
    graph_cmd.add_argument("file", help="the graph or job file (TOML)")
    graph_cmd.add_argument(
        "--format", choices=("mermaid", "dot"), default="mermaid", help="the diagram language"
    )
    return validate_cmd, graph_cmd


def _add_project_commands(commands: Any) -> None:
    init_cmd = commands.add_parser(
        "init", help="start a project: pyproject, one package of modules, a graph, a test"
    )
    init_cmd.add_argument(
        "directory", nargs="?", default=".", help="where (made if missing; default: here)"
    )
    init_cmd.add_argument("--name", help="the project's name (default: the directory's)")
    completion_cmd = commands.add_parser(
        "completion",
        help='print a shell completion script: eval "$(actorflow completion bash)" in ~/.bashrc',
    )
    completion_cmd.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell")


def _init(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    try:
        written = scaffold(directory, args.name)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        print(f"error: {exc.filename or directory}: {exc.strerror or exc}", file=sys.stderr)
        return BAD_INPUT
    for path in written:
        print(f"created {path}")
    print(
        f"next: cd {directory} && actorflow run graph.toml, and for its test: "
        'pip install -e ".[test]" && python -m pytest'
    )
    return 0


def _completion(args: argparse.Namespace) -> int:
    import shtab

    parser = _parser()
    _complete_paths(parser, {"file": shtab.FILE, "directory": shtab.DIRECTORY, "log": shtab.FILE})
    print(shtab.complete(parser, shell=args.shell))
    return 0


def _complete_paths(parser: argparse.ArgumentParser, kinds: Mapping[str, object]) -> None:
    """Mark the arguments that name files and directories, in every command, so the
    shell completes paths there."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_paths(sub, kinds)
        elif action.dest in kinds:
            action.complete = kinds[action.dest]  # type: ignore[attr-defined]


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the file (repeatable): a setting (quantum=0.005, "
        "remote_url=redis://host/0), or a dotted path (modules.NAME.config.KEY=5, "
        "links.1.buffer=64); VALUE is read as TOML, else as text. ACTORFLOW_<SETTING> "
        "environment variables override settings too (--set wins)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``ACTORFLOW_*`` settings, then ``--set`` assignments, in the order given."""
    overrides = from_environment()
    for text in args.set:
        try:
            key, value = parse_assignment(text)
        except ValueError as exc:
            raise _BadOption(str(exc)) from None
        overrides[key] = value
    return overrides


def _load(args: argparse.Namespace) -> tuple[Graph, Settings] | Job:
    """The graph file, job file or Python target (``pkg.module:build``) ``args`` name,
    with the overrides of ``--set`` and the environment."""
    overrides = _overrides(args)
    if not is_python_target(args.file):
        return load_any(args.file, overrides=overrides)
    loaded = load_python(args.file)
    if isinstance(loaded, Job) or not overrides:
        return loaded
    # A graph built in Python has no file to change: only its settings can be set.
    settings: dict[str, Any] = {}
    for key, value in overrides.items():
        name = key.removeprefix("settings.")
        if "." in name or name not in attrs.fields_dict(Settings):
            raise _BadOption(f"--set {key}: a graph built in Python takes settings only")
        settings[name] = value
    try:
        return loaded[0], attrs.evolve(loaded[1], **settings)
    except (TypeError, ValueError) as exc:
        raise _BadOption(f"--set: {exc}") from None


def _run_job(job: Job, view: bool, *, json_summary: bool = False) -> int:
    """Run a job file's tasks in order. SIGINT or SIGTERM cancels the running task (its
    cleanup and every started task's still run), then the job ends with the signal's
    exit status; a second signal while a sync hook holds the loop ends it at once."""
    signals: list[int] = []

    async def main() -> tuple[JobResult | None, tuple[TaskResult, ...]]:
        result: JobResult | None = None
        async with trio.open_nursery() as nursery:
            if view:
                nursery.start_soon(partial(view_job, job, Console(force_terminal=True)))
            with trio.CancelScope() as scope:

                def on_signal(signum: int, count: int) -> None:
                    signals.append(signum)
                    scope.cancel()

                with handling_signals(on_signal):
                    result = await job.run()
            nursery.cancel_scope.cancel()
        return result, job.status()

    with ending_as_signals(), single_errors():
        result, tasks = trio.run(main)
    if result is None:  # stopped: what had not started never will
        tasks = tuple(
            attrs.evolve(task, state=TaskState.NOT_RUN) if task.state == "pending" else task
            for task in tasks
        )
    if json_summary:
        print(json.dumps(_job_json(job, tasks, result)))
    else:
        _print_tasks(tasks)
    if result is None:
        return _signal_ended(signals[0] if signals else signal.SIGINT, None)
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr)
        bad_input = isinstance(result.error, InitializationError | ValidationError)
        return BAD_INPUT if bad_input else FAILED
    if not json_summary:
        print(f"job {result.name!r} done: {len(result.succeeded)} tasks succeeded")
    return 0


def _job_json(job: Job, tasks: Sequence[TaskResult], result: JobResult | None) -> dict[str, Any]:
    """``run JOB --json``: the job's outcome and each task, as one object."""
    state = "stopped" if result is None else ("failed" if result.error else "done")
    return {
        "job": job.name,
        "state": state,
        "error": None if result is None or result.error is None else str(result.error),
        "tasks": [
            {
                "name": task.name,
                "state": str(task.state),
                "duration": task.duration,
                "progress": task.progress,
                "info": task.info,
            }
            for task in tasks
        ],
    }


def _print_tasks(tasks: Sequence[TaskResult]) -> None:
    for task in tasks:
        took = f"{task.duration:.2f}s" if task.duration is not None else "-"
        info = task.info or ""
        print(f"{task.name:>16}  {task.state:<10} {took:>8}  {task.progress:5.1f}%  {info}")


def _view_by_default(stdout: TextIO, environ: Mapping[str, str]) -> bool:
    """The view is for people at a terminal: off when piped, redirected or TERM=dumb."""
    return stdout.isatty() and environ.get("TERM") != "dumb"


def _wants_view(asked: bool | None) -> bool:
    return asked if asked is not None else _view_by_default(sys.stdout, os.environ)


@attrs.frozen
class _Ran:
    """How a run ended: its final status, and the signal that stopped it, if one did."""

    status: SystemStatus
    signum: int | None = None
    elapsed: float = 0.0
    viewed: bool = False
    """Whether the live view drew it (its last frame is on the screen)."""
    error: ActorflowError | None = None
    """Why it failed once running (a module beyond its restarts, a cleanup): the
    summary still prints, then this."""


def _run(
    graph: Graph,
    settings: Settings,
    view: bool,
    only: list[str] | None = None,
    dashboard: tuple[str, int] | None = None,
) -> _Ran:
    """Run the graph to its end under trio, with the live view beside it if asked.

    The view outlives the system by a moment, so its last frame shows the end state
    (every actor terminated); it is closed, and the cursor restored, before this returns
    or raises, so what is printed next starts on a clean line. SIGINT and SIGTERM stop
    the graph (see :func:`actorflow.open_system`'s ``handle_signals``); a signal before
    it started is raised.
    """

    provider, flush = _tracer_provider(settings)

    async def main() -> _Ran:
        system: System | None = None
        signum: int | None = None
        failure: ActorflowError | None = None
        began = trio.current_time()
        async with trio.open_nursery() as nursery:
            try:
                async with open_system(
                    graph,
                    settings,
                    only=only,
                    handle_signals=True,
                    tracer_provider=provider,
                    dashboard=dashboard,
                ) as system:
                    if system.dashboard_url is not None:
                        print(f"dashboard: {system.dashboard_url}", file=sys.stderr, flush=True)
                    if system.metrics_address is not None:
                        url = f"http://{system.metrics_address}/metrics"
                        print(f"metrics: {url}", file=sys.stderr, flush=True)
                    if view:
                        console = Console(force_terminal=True)
                        nursery.start_soon(partial(view_status, system.status, console))
            except (RunError, CleanupError) as exc:
                if system is None:
                    raise
                failure = exc
            except BaseException as exc:
                signum = signal_ended(exc)
                if system is None or signum is None:
                    raise
            nursery.cancel_scope.cancel()
        took = trio.current_time() - began
        return _Ran(system.status(), signum, took, view, failure)

    # A signal raised at once, or the system's error, wrapped by the view's nursery:
    # give back the one.
    try:
        with ending_as_signals(), single_errors():
            return trio.run(main)
    finally:
        flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``actorflow`` command."""
    args = _parser().parse_args(argv)
    try:
        code = _command(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other Unix tools do.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 0
    return code


def _command(args: argparse.Namespace) -> int:
    if args.command == "logs":
        return _logfile.command(args)
    if args.command == "init":
        return _init(args)
    if args.command == "completion":
        return _completion(args)
    ran: _Ran | None = None
    try:
        if args.command == "modules":
            return _list_modules(json_lines=args.json)
        # While `run` starts (its modules import) and reports, a signal ends it at once,
        # in one line; while the graph runs, the system handles signals itself.
        with raising_on_signals() if args.command == "run" else contextlib.nullcontext():
            loaded = _load(args)
            if not isinstance(loaded, Job):
                ran = _graph_command(args, *loaded)
                return 0 if ran is None else _report(ran, args)
        return _job_command(args, loaded)
    except _INPUT_ERRORS as exc:
        if args.command == "validate" and args.json:
            return _invalid_json(args.file, exc)
        if not isinstance(exc, GraphFileError):
            print(f"error: {exc}", file=sys.stderr)
        elif len(exc.problems) == 1:  # one line: the file and what is wrong with it
            print(f"error: {exc.path}: invalid graph file: {exc.problems[0]}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except _BadOption as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except ActorflowError as exc:
        if getattr(args, "traceback", False):
            traceback.print_exception(exc, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except (KeyboardInterrupt, SystemExit) as exc:  # a signal while it started or reported
        signum = signal_ended(exc)
        if signum is None:
            raise
        return _signal_ended(signum, None, started=ran is not None)


def _report(ran: _Ran, args: argparse.Namespace) -> int:
    """Print the summary of a run, and how a signal ended it if one did; the exit code
    (with ``--strict``, 1 for any dead letter or dropped item)."""
    status, signum = ran.status, ran.signum
    if args.json:
        name = None if signum is None else signal_name(signum)
        print(json.dumps(summary_json(status, elapsed=ran.elapsed, signal=name)))
    else:
        print_summary(status, table=not ran.viewed)
    if ran.error is not None:  # a failure outranks a signal and --strict: exit 1
        if args.traceback:
            traceback.print_exception(ran.error, file=sys.stderr)
        print(f"error: {ran.error}", file=sys.stderr)
        return FAILED
    code = 0 if signum is None else _signal_ended(signum, status)
    totals = Totals(status)
    if code == 0 and args.strict and (totals.dead_lettered or totals.lost):
        print(
            f"strict: {totals.dead_lettered} dead-lettered and {totals.lost} dropped items",
            file=sys.stderr,
        )
        return FAILED
    return code


def _signal_ended(signum: int, status: SystemStatus | None, *, started: bool = True) -> int:
    """Say in one line how a signal ended the run; its exit status (128 + the signal)."""
    said = "interrupted" if signum == signal.SIGINT else f"terminated ({signal_name(signum)})"
    if not started:
        how = "stopped while starting, no module ran"
    elif status is None:
        how = "stopped at once"
    elif status.state is SystemState.CANCELLED:
        how = f"cancelled, dropped={status.dropped}"
    else:
        how = "stopped in order"
    print(f"{said}: {how}", file=sys.stderr)
    return exit_status(signum)


_INPUT_ERRORS = (
    GraphFileError,
    GraphError,
    RegistryError,
    InitializationError,
    ValidationError,
    ServeError,
)
"""What a file (or the modules it names) can be wrong with: bad input, exit 2."""


class _BadOption(ActorflowError):
    """An option names something unusable (a ``--log`` path that cannot be written)."""


def _log_to(args: argparse.Namespace) -> None:
    """Send JSON logs to ``--log``, or say in one line why that path cannot take them."""
    try:
        check_level(args.log_level)  # checked with or without --log
    except ValueError as exc:
        raise _BadOption(f"--log-level: {exc}") from None
    if args.log is None:
        return
    if not args.log:
        raise _BadOption("--log '': not a valid path (it is empty)")
    if "\0" in args.log:
        raise _BadOption(f"--log {args.log!r}: not a valid path (it holds a NUL byte)")
    try:
        configure_logging(format="json", level=args.log_level, file=args.log, echo="warning")
    except OSError as exc:
        raise _BadOption(f"--log {args.log}: cannot write to it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _BadOption(f"--log-level: {exc}") from None
    # The first event proves the file takes writes (a full disk, /dev/full, opens fine).
    with contextlib.redirect_stderr(io.StringIO()):  # said below, in one line
        get_logger().info("log.opened", path=args.log, version=__version__)
    failed = log_write_error()
    if failed is not None:
        raise _BadOption(f"--log {args.log}: cannot write to it: {failed.strerror or failed}")


def _list_modules(*, json_lines: bool = False) -> int:
    """Every enabled entry; one that does not import is marked, and the rest still listed."""
    registry = Registry.discover()
    if not registry.entries and not json_lines:
        print("no modules enabled (see [tool.actorflow.modules] in pyproject.toml)")
    for entry in sorted(registry.entries.values(), key=lambda e: e.name):
        reason = registry.problem(entry.name)
        if json_lines:
            fields = {"name": entry.name, "target": entry.target, "origin": entry.origin}
            print(json.dumps({**fields, "problem": reason}))
            continue
        line = f"{entry.name:<20} {entry.target:<40} {entry.origin}"
        print(line if reason is None else f"{line}  [does not import: {reason}]")
    return 0


def _invalid_json(file: str, error: ActorflowError) -> int:
    """``validate --json`` of a file that is not valid: the problems, one per item."""
    if isinstance(error, GraphFileError):
        problems = list(error.problems)
    elif isinstance(error, GraphError):
        problems = [problem.message for problem in error.problems]
    else:
        problems = [str(error)]
    print(json.dumps({"file": file, "valid": False, "problems": problems}))
    return BAD_INPUT


def _valid_json(file: str, loaded: Job | Graph) -> None:
    """``validate --json`` of a valid file: what it describes."""
    if isinstance(loaded, Job):
        described: dict[str, Any] = {"kind": "job", "tasks": list(loaded.tasks)}
    else:
        described = {
            "kind": "graph",
            "modules": [spec.name for spec in loaded.modules],
            "links": [link.name for link in loaded.links],
        }
    print(json.dumps({"file": file, "valid": True, "name": loaded.name, **described}))


def _job_command(args: argparse.Namespace, job: Job) -> int:
    """``validate``, ``graph`` or ``run`` for a job file."""
    if args.command == "validate":
        if args.json:
            _valid_json(args.file, job)
        else:
            print(f"{args.file}: valid job {job.name!r} ({len(job.tasks)} tasks)")
        return 0
    if args.command == "graph":
        print(_job_mermaid(job) if args.format == "mermaid" else _job_dot(job))
        return 0
    _log_to(args)
    if args.dashboard is not None:
        raise _BadOption("--dashboard: shows a graph; a job file runs tasks")
    return _run_job(job, _wants_view(args.view), json_summary=args.json)


def _graph_command(args: argparse.Namespace, graph: Graph, settings: Settings) -> _Ran | None:
    """``validate``, ``graph`` or ``run`` for a graph file; how a run ended."""
    if args.command == "validate":
        if args.json:
            _valid_json(args.file, graph)
            return None
        print(
            f"{args.file}: valid graph {graph.name!r} "
            f"({len(graph.modules)} modules, {len(graph.links)} links)"
        )
        return None
    if args.command == "graph":
        print(_mermaid(graph) if args.format == "mermaid" else _dot(graph))
        return None
    _log_to(args)
    if args.drain is not None:
        try:
            settings = attrs.evolve(settings, drain_timeout=args.drain)
        except (TypeError, ValueError) as exc:
            raise _BadOption(f"--drain {args.drain}: {exc}") from None
    settings = _observing(args, settings)
    only = None
    if args.only:
        only = [n.strip() for names in args.only for n in names.split(",") if n.strip()]
        if not only:
            raise _BadOption(f"--only {short(','.join(args.only))}: names no module")
    dashboard = _dashboard_address(args.dashboard)
    try:
        return _run(graph, settings, _wants_view(args.view), only, dashboard)
    except ImportError as exc:
        raise _BadOption(f"--dashboard {_given(args.dashboard)}: {exc}") from None
    except ServeError as exc:  # --metrics and --dashboard: one wording for both
        given = {"metrics": args.metrics, "dashboard": args.dashboard}.get(exc.server)
        if given is None:
            raise  # from the settings, not an option: said as it is
        raise _BadOption(f"--{exc.server} {_given(given)}: {exc}") from None


def _dashboard_address(value: str | None) -> tuple[str, int] | None:
    """``--dashboard``'s host and port, or one line saying what is wrong with it."""
    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError as exc:
        raise _BadOption(f"--dashboard {_given(value)}: {exc}") from None
