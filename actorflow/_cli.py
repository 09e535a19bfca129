"""The ``actorflow`` command line: run, validate, list modules, draw a graph, read logs.

Exit codes: 0 success, 1 the graph failed while running (``logs --trace``: no event
mentions the message), 2 bad input (file, config, validation, option values),
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio
from rich.console import Console

from . import _logfile
from ._checks import short
from ._diagram import dot as _dot
from ._diagram import job_dot as _job_dot
from ._diagram import job_mermaid as _job_mermaid
from ._diagram import mermaid as _mermaid
from ._exceptions import (
    ActorflowError,
    GraphError,
    GraphFileError,
    InitializationError,
    RegistryError,
    ValidationError,
    single_errors,
)
from ._graph import Graph
from ._graphfile import load_any
from ._interrupt import run_interruptible
from ._job import Job, JobResult
from ._logging import check_level, configure_logging, get_logger, log_write_error
from ._overrides import from_environment, parse_assignment
from ._pyload import is_python_target, load_python
from ._registry import Registry
from ._scaffold import ScaffoldError, scaffold
from ._settings import Settings
from ._status import SystemStatus
from ._system import open_system
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
        "--view",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a live table of the actors while the graph runs "
        "(default: on when stdout is a terminal and TERM is not 'dumb')",
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
    print(f"next: cd {directory} && actorflow run graph.toml && python -m pytest")
    return 0


def _completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(_parser(), shell=args.shell))
    return 0


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


def _run_job(job: Job, view: bool) -> int:
    async def main() -> JobResult:
        async with trio.open_nursery() as nursery:
            if view:
                nursery.start_soon(partial(view_job, job, Console(force_terminal=True)))
            result = await job.run()
            nursery.cancel_scope.cancel()
        return result

    with single_errors():
        result = run_interruptible(main)
    for task in result.tasks:
        took = f"{task.duration:.2f}s" if task.duration is not None else "-"
        info = task.info or ""
        print(f"{task.name:>16}  {task.state:<10} {took:>8}  {task.progress:5.1f}%  {info}")
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr)
        bad_input = isinstance(result.error, InitializationError | ValidationError)
        return BAD_INPUT if bad_input else FAILED
    print(f"job {result.name!r} done: {len(result.succeeded)} tasks succeeded")
    return 0


def _view_by_default(stdout: TextIO, environ: Mapping[str, str]) -> bool:
    """The view is for people at a terminal: off when piped, redirected or TERM=dumb."""
    return stdout.isatty() and environ.get("TERM") != "dumb"


def _wants_view(asked: bool | None) -> bool:
    return asked if asked is not None else _view_by_default(sys.stdout, os.environ)


def _run(
    graph: Graph, settings: Settings, view: bool, only: list[str] | None = None
) -> SystemStatus:
    """Run the graph to its end under trio, with the live view beside it if asked.

    The view outlives the system by a moment, so its last frame shows the end state
    (every actor terminated); it is closed, and the cursor restored, before this returns
    or raises, so what is printed next starts on a clean line.
    """

    async def main() -> SystemStatus:
        async with trio.open_nursery() as nursery:
            async with open_system(graph, settings, only=only) as system:
                if view:
                    console = Console(force_terminal=True)
                    nursery.start_soon(partial(view_status, system.status, console))
            nursery.cancel_scope.cancel()
        return system.status()

    # Ctrl-C or the system's error, wrapped by the view's nursery: give back the one.
    with single_errors():
        # Ctrl-C goes to the main task at a checkpoint, never into a module's code, so
        # the system is stopped in order rather than one actor failing mid-item.
        return run_interruptible(main)


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
    try:
        if args.command == "modules":
            return _list_modules(json_lines=args.json)
        loaded = _load(args)
        if isinstance(loaded, Job):
            return _job_command(args, loaded)
        status = _graph_command(args, *loaded)
    except (
        GraphFileError,
        GraphError,
        RegistryError,
        InitializationError,
        ValidationError,
    ) as exc:
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
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("interrupted: stopped in order", file=sys.stderr)
        return 130
    if status is not None:
        _print_status(status)
    return 0


_INPUT_ERRORS = (GraphFileError, GraphError, RegistryError, InitializationError, ValidationError)
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
    return _run_job(job, _wants_view(args.view))


def _graph_command(
    args: argparse.Namespace, graph: Graph, settings: Settings
) -> SystemStatus | None:
    """``validate``, ``graph`` or ``run`` for a graph file; the end status of a run."""
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
    only = None
    if args.only:
        only = [n.strip() for names in args.only for n in names.split(",") if n.strip()]
        if not only:
            raise _BadOption(f"--only {short(','.join(args.only))}: names no module")
    return _run(graph, settings, _wants_view(args.view), only)


def _print_status(status: SystemStatus) -> None:
    for actor in status.actors.values():
        print(
            f"{actor.name:>16}  {actor.state.value:<10} in={actor.received:<8} "
            f"out={actor.emitted:<8} restarts={actor.restarts}"
        )
    print(f"graph {status.graph!r} {status.state.value}, dropped={status.dropped}")
