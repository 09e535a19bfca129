"""Graph files: a graph, its links and its settings, described in TOML.

    [graph]
    name = "sensors"

    [settings]
    quantum = 0.005

    [modules.readings]
    module = "thermometer"          # a name enabled in the registry
    config = { interval = 0.5 }

    [[links]]
    from = "readings"
    to = "store.in"
    buffer = 64

A job file lists tasks instead, run one after another in the order of the file::

    [job]
    name = "encode-movie"

    [tasks.probe]
    module = "probe"                # a Task subclass enabled in the registry
    config = { source = "holiday.mov" }

Every problem is collected, each pointing at the file, the table and the key, and raised
together as one :class:`GraphFileError`; module and task configuration is checked against
what the constructor declares (unknown keys, missing required keys, wrong types).
"""

from __future__ import annotations

import inspect
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ._exceptions import GraphFileError, RegistryError
from ._graph import Graph
from ._job import Job, Task
from ._module import Module
from ._registry import Registry
from ._settings import Settings
from ._specs import LINK_OPTIONS

__all__ = ["load_graph", "load_job"]

_Class = TypeVar("_Class", type[Module], type[Task])

_TOP = {"graph", "settings", "modules", "links", "supervisor"}
_JOB_TOP = {"job", "tasks"}
_MODULE_KEYS = {"module", "config", "supervise", "shared"}
_SIMPLE_TYPES: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
    list: (list,),
    dict: (dict,),
}


def _entry(
    table: Any,
    where: str,
    keys: set[str],
    load: Callable[[str], _Class],
    problems: list[str],
) -> tuple[_Class, dict[str, Any]] | None:
    """A ``[modules.NAME]`` or ``[tasks.NAME]`` table: its class (loaded by name from
    the registry) and its config, checked against the class's constructor, or ``None``
    with the problems noted."""
    if not isinstance(table, dict):
        problems.append(f"{where}: expected a table")
        return None
    problems.extend(f"{where} unknown key {key!r}" for key in table if key not in keys)
    if "module" not in table:
        problems.append(f"{where}: required key 'module' is missing")
        return None
    try:
        cls = load(str(table["module"]))
    except RegistryError as exc:
        problems.append(f"{where} key 'module': {exc}")
        return None
    config = table.get("config", {})
    if not isinstance(config, dict):
        problems.append(f"{where} key 'config': expected a table")
        return None
    _check_config(cls, config, f"{where[:-1]}.config]", problems)
    return cls, config


def _check_config(
    module: type[Module] | type[Task], config: dict[str, Any], where: str, problems: list[str]
) -> None:
    """Check ``config`` against the module or task constructor's parameters."""
    try:
        signature = inspect.signature(module.__init__)
        hints = typing.get_type_hints(module.__init__)
    except (TypeError, ValueError, NameError):  # pragma: no cover - exotic constructors
        return
    params = {
        name: param
        for name, param in list(signature.parameters.items())[1:]
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key, value in config.items():
        if key not in params:
            if not takes_any:
                known = ", ".join(params) or "none"
                problems.append(
                    f"{where} key {key!r}: {module.__qualname__} takes no such key (keys: {known})"
                )
            continue
        expected = hints.get(key)
        accepted = _SIMPLE_TYPES.get(typing.get_origin(expected) or expected)
        if accepted and (
            not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool))
        ):
            problems.append(
                f"{where} key {key!r}: expected {getattr(expected, '__name__', expected)}, "
                f"got {type(value).__name__} {value!r}"
            )
    for name, param in params.items():
        if param.default is param.empty and name not in config:
            problems.append(f"{where}: required key {name!r} is missing")


def load_graph(path: str | Path, registry: Registry | None = None) -> tuple[Graph, Settings]:
    """Read a graph file; return the graph (not yet validated as a graph) and settings.

    Raises:
        GraphFileError: The file is missing, not TOML, or describes something invalid;
            every problem is listed with the file, table and key at fault.
    """
    path = Path(path)
    data = _read(path)
    if _is_job(data):
        raise GraphFileError(path, ["it describes a job ([job] / [tasks]), not a graph"])
    return _graph_from(path, data, registry if registry is not None else Registry.for_file(path))


def load_job(path: str | Path, registry: Registry | None = None) -> Job:
    """Read a job file; return the job, its tasks in the order of the file.

    Raises:
        GraphFileError: The file is missing, not TOML, or describes something invalid;
            every problem is listed with the file, table and key.
    """
    path = Path(path)
    data = _read(path)
    if not _is_job(data):
        raise GraphFileError(path, ["it describes a graph ([modules]), not a job ([tasks])"])
    return _job_from(path, data, registry if registry is not None else Registry.for_file(path))


def load_any(path: str | Path, registry: Registry | None = None) -> tuple[Graph, Settings] | Job:
    """Read a graph file or a job file, whichever ``path`` holds."""
    path = Path(path)
    data = _read(path)
    registry = registry if registry is not None else Registry.for_file(path)
    return _job_from(path, data, registry) if _is_job(data) else _graph_from(path, data, registry)


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GraphFileError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise GraphFileError(path, [f"not UTF-8 text: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise GraphFileError(path, [f"not valid TOML: {exc}"]) from None


def _is_job(data: dict[str, Any]) -> bool:
    return bool(_JOB_TOP & data.keys()) and "modules" not in data


def _job_from(path: Path, data: dict[str, Any], registry: Registry) -> Job:
    problems = [f"unknown table or key {key!r}" for key in data if key not in _JOB_TOP]
    job_table = data.get("job", {})
    if not isinstance(job_table, dict):
        problems.append("[job]: expected a table")
        job_table = {}
    problems.extend(f"[job] unknown key {key!r}" for key in job_table if key != "name")
    job = Job(str(job_table.get("name", path.stem)))
    tasks = data.get("tasks", {})
    if not isinstance(tasks, dict) or not tasks:
        problems.append("[tasks]: a job needs at least one task table")
        tasks = {}
    for name, table in tasks.items():
        where = f"[tasks.{name}]"
        entry = _entry(table, where, {"module", "config"}, registry.load_task, problems)
        if entry is not None:
            cls, config = entry
            job.add(name, cls, **config)
    if problems:
        raise GraphFileError(path, problems)
    return job


def _graph_from(path: Path, data: dict[str, Any], registry: Registry) -> tuple[Graph, Settings]:
    """The graph and settings a graph file describes, or every problem found in it:
    first those of its tables and keys, then (only if there are none) the graph's own."""
    problems = [f"unknown table or key {key!r}" for key in data if key not in _TOP]
    graph = Graph(name=str(data.get("graph", {}).get("name", path.stem)))
    settings = _settings_from(data.get("settings", {}), problems)
    _add_modules(graph, data.get("modules", {}), registry, problems)
    for index, link in enumerate(data.get("links", []), start=1):
        _add_link(graph, link, f"[[links]] #{index}", problems)
    if "supervisor" in data:
        try:
            graph.supervisor(**data["supervisor"])
        except (TypeError, ValueError) as exc:
            problems.append(f"[supervisor]: {exc}")
    if not problems:
        problems.extend(f"graph: {problem.message}" for problem in graph.problems())
    if problems:
        raise GraphFileError(path, problems)
    return graph, settings


def _settings_from(table: dict[str, Any], problems: list[str]) -> Settings:
    """The ``[settings]`` table, each key checked by :class:`Settings` itself."""
    settings = Settings()
    for key, value in table.items():
        try:
            settings = attrs.evolve(settings, **{key: value})
        except TypeError:
            known = ", ".join(f.name for f in attrs.fields(Settings))
            problems.append(f"[settings] unknown key {key!r} (keys: {known})")
        except ValueError as exc:
            problems.append(f"[settings] key {key!r}: {exc}")
    return settings


def _add_modules(graph: Graph, modules: Any, registry: Registry, problems: list[str]) -> None:
    """Declare each ``[modules.NAME]`` table: its class, config, sharing, supervision."""
    if not isinstance(modules, dict) or not modules:
        problems.append("[modules]: a graph needs at least one module table")
        return
    for name, table in modules.items():
        where = f"[modules.{name}]"
        module_entry = _entry(table, where, _MODULE_KEYS, registry.load, problems)
        if module_entry is None:
            continue
        cls, config = module_entry
        graph.add(name, cls, **config)
        shared = table.get("shared", False)
        if not isinstance(shared, bool):
            problems.append(f"{where} key 'shared': expected true or false, got {shared!r}")
        elif shared:
            graph.share(name)
        if "supervise" in table:
            try:
                graph.supervise(name, **table["supervise"])
            except (TypeError, ValueError) as exc:
                problems.append(f"{where} key 'supervise': {exc}")


def _add_link(graph: Graph, link: Any, where: str, problems: list[str]) -> None:
    """Declare one ``[[links]]`` table; its options are those of :class:`LinkSpec`."""
    if not isinstance(link, dict):
        problems.append(f"{where}: expected a table")
        return
    missing = [key for key in ("from", "to") if key not in link]
    problems.extend(f"{where}: required key {key!r} is missing" for key in missing)
    unknown = set(link) - {"from", "to"} - LINK_OPTIONS
    problems.extend(f"{where} unknown key {key!r}" for key in sorted(unknown))
    if missing or unknown:
        return
    options = {key: value for key, value in link.items() if key in LINK_OPTIONS}
    try:
        graph.link(str(link["from"]), str(link["to"]), **options)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where} ({link['from']} -> {link['to']}): {exc}")
