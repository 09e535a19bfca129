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
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ._checks import did_you_mean, short
from ._exceptions import GraphFileError, RegistryError
from ._graph import Graph
from ._job import Job, Task
from ._module import Module
from ._overrides import apply_overrides
from ._paths import NotARegularFile, regular_file_size
from ._registry import Registry
from ._settings import Settings
from ._specs import LINK_OPTIONS, SupervisorSpec
from ._toml import TomlTooDeep
from ._toml import loads as bounded_toml

__all__ = ["load_graph", "load_job"]

_Class = TypeVar("_Class", type[Module], type[Task])

_TOP = {"graph", "settings", "modules", "links", "supervisor"}
_JOB_TOP = {"job", "tasks"}
_MODULE_KEYS = {"module", "config", "supervise", "shared"}


def _unknown(where: str, key: str, known: Iterable[str]) -> str:
    return f"{where} unknown key {short(key)}{did_you_mean(key, known)}"


def _table(data: dict[str, Any], key: str, where: str, problems: list[str]) -> dict[str, Any]:
    """``data[key]`` if it is a table (empty if absent); otherwise a problem, and empty."""
    value = data.get(key, {})
    if isinstance(value, dict):
        return value
    problems.append(f"{where}: expected a table, got {type(value).__name__} {short(value)}")
    return {}


def _name(table: dict[str, Any], where: str, default: str, problems: list[str]) -> str:
    name = table.get("name", default)
    if isinstance(name, str) and name:
        return name
    problems.append(f"{where} key 'name': expected a non-empty string, got {short(name)}")
    return default or "graph"


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
        problems.append(f"{where}: expected a table, got {type(table).__name__} {short(table)}")
        return None
    problems.extend(_unknown(where, key, keys) for key in table if key not in keys)
    if "module" not in table:
        problems.append(f"{where}: required key 'module' is missing")
        return None
    if not isinstance(table["module"], str):
        problems.append(f"{where} key 'module': expected a string, got {short(table['module'])}")
        return None
    try:
        cls = load(table["module"])
    except RegistryError as exc:
        problems.append(f"{where} key 'module': {exc}")
        return None
    config = table.get("config", {})
    if not isinstance(config, dict):
        problems.append(f"{where} key 'config': expected a table, got {short(config)}")
        return None
    _check_config(cls, config, f"{where[:-1]}.config]", problems)
    return cls, config


def _takes_nothing(self: object) -> None:
    """The signature of a class that does not define ``__init__``."""


def _check_config(
    module: type[Module] | type[Task], config: dict[str, Any], where: str, problems: list[str]
) -> None:
    """Check ``config`` against the module or task constructor's parameters."""
    # object.__init__ reads as (self, *args, **kwargs), yet it takes no keys at all.
    init = _takes_nothing if module.__init__ is object.__init__ else module.__init__
    try:
        signature = inspect.signature(init)
        hints = typing.get_type_hints(init)
    except Exception:  # pragma: no cover - exotic constructors: not checked
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
                    f"{where} key {short(key)}: {module.__qualname__} takes no such key "
                    f"(keys: {known}){did_you_mean(key, params)}"
                )
            continue
        expected = hints.get(key)
        accepted = _SIMPLE_TYPES.get(typing.get_origin(expected) or expected)
        if accepted and (
            not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool))
        ):
            problems.append(
                f"{where} key {short(key)}: expected {getattr(expected, '__name__', expected)}, "
                f"got {type(value).__name__} {short(value)}"
            )
    for name, param in params.items():
        if param.default is param.empty and name not in config:
            problems.append(f"{where}: required key {short(name)} is missing")


def load_graph(
    path: str | Path,
    registry: Registry | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Graph, Settings]:
    """Read a graph file; return the graph, validated as a whole, and its settings.

    ``overrides`` maps dotted keys (``"settings.quantum"``, ``"remote_url"``,
    ``"modules.readings.config.count"``, ``"links.1.buffer"``) to values that replace
    the file's before anything is checked, as ``actorflow run --set`` does.

    Raises:
        GraphFileError: The file is missing, not TOML, or describes something invalid;
            every problem is listed with the file, table and key at fault.
    """
    path = Path(path)
    data = _read(path, overrides)
    if _is_job(data):
        raise GraphFileError(path, ["it describes a job ([job] / [tasks]), not a graph"])
    return _graph_from(path, data, _registry_for(path, registry))


def load_job(
    path: str | Path,
    registry: Registry | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Job:
    """Read a job file; return the job, its tasks in the order of the file
    (``overrides`` as for :func:`load_graph`).

    Raises:
        GraphFileError: The file is missing, not TOML, or describes something invalid;
            every problem is listed with the file, table and key.
    """
    path = Path(path)
    data = _read(path, overrides)
    if not _is_job(data):
        raise GraphFileError(path, ["it describes a graph ([modules]), not a job ([tasks])"])
    return _job_from(path, data, _registry_for(path, registry))


def load_any(
    path: str | Path,
    registry: Registry | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Graph, Settings] | Job:
    """Read a graph file or a job file, whichever ``path`` holds."""
    path = Path(path)
    data = _read(path, overrides)
    registry = _registry_for(path, registry)
    return _job_from(path, data, registry) if _is_job(data) else _graph_from(path, data, registry)


def _registry_for(path: Path, registry: Registry | None) -> Registry:
    """The registry given, or the one of the file's project."""
    if registry is None:
        return Registry.for_file(path)
    if not isinstance(registry, Registry):
        raise TypeError(f"registry must be an actorflow.Registry, got {short(registry)}")
    return registry


MAX_FILE_SIZE = 16 * 2**20
"""A graph or job file bigger than this (16 MiB) is refused unread."""


def _read(path: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The file's document, with ``overrides`` applied."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a mapping of keys to values, got {short(overrides)}")
    data = _parse(path)
    problems = apply_overrides(data, overrides or {})
    if problems:
        raise GraphFileError(path, problems)
    return data


def _parse(path: Path) -> dict[str, Any]:
    try:
        regular_file_size(path, limit=MAX_FILE_SIZE)
        return bounded_toml(path.read_text(encoding="utf-8"))
    except TomlTooDeep as exc:
        raise GraphFileError(path, [f"refused unparsed: {exc}"]) from None
    except RecursionError:
        raise GraphFileError(path, ["not valid TOML: nested too deeply"]) from None
    except NotARegularFile as exc:
        raise GraphFileError(path, [f"cannot read it: {exc}"]) from None
    except OSError as exc:
        raise GraphFileError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise GraphFileError(path, [f"not UTF-8 text: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise GraphFileError(path, [f"not valid TOML: {exc}"]) from None
    except ValueError as exc:  # a path no file can have, such as one with a NUL byte
        raise GraphFileError(path, [f"cannot read it: {exc}"]) from None


def _is_job(data: dict[str, Any]) -> bool:
    return bool(_JOB_TOP & data.keys()) and "modules" not in data


def _top_level(data: dict[str, Any], known: set[str]) -> list[str]:
    return [
        f"unknown table or key {short(key)}{did_you_mean(key, known)}"
        for key in data
        if key not in known
    ]


def _declare(
    declare: Callable[[], object], where: str, problems: list[str], known: Iterable[str] = ()
) -> None:
    """Call ``declare``; whatever it raises about the file's values becomes a problem,
    with a close match from ``known`` for a keyword it did not expect."""
    try:
        declare()
    except Exception as exc:
        unexpected = _UNEXPECTED.search(str(exc)) if isinstance(exc, TypeError) else None
        hint = did_you_mean(unexpected.group(1), known) if unexpected else ""
        problems.append(f"{where}: {_short_text(exc)}{hint}")


_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']*)'")


def _graph_problems(graph: Graph) -> list[str]:
    return [f"graph: {problem.message}" for problem in graph.problems()]


def _short_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else f"{text[:200]}...{text[-60:]}"


def _job_from(path: Path, data: dict[str, Any], registry: Registry) -> Job:
    problems = _top_level(data, _JOB_TOP)
    job_table = _table(data, "job", "[job]", problems)
    problems.extend(_unknown("[job]", key, {"name"}) for key in job_table if key != "name")
    job = Job(_name(job_table, "[job]", path.stem, problems))
    tasks = data.get("tasks", {})
    if not isinstance(tasks, dict) or not tasks:
        problems.append("[tasks]: a job needs at least one task table")
        tasks = {}
    for name, table in tasks.items():
        where = f"[tasks.{name}]"
        entry = _entry(table, where, {"module", "config"}, registry.load_task, problems)
        if entry is not None:
            cls, config = entry
            _declare(partial(job.add, name, cls, **config), where, problems)
    if problems:
        raise GraphFileError(path, problems)
    return job


def _graph_from(path: Path, data: dict[str, Any], registry: Registry) -> tuple[Graph, Settings]:
    """The graph and settings a graph file describes, or every problem found in it:
    first those of its tables and keys, then (only if there are none) the graph's own."""
    problems = _top_level(data, _TOP)
    graph_table = _table(data, "graph", "[graph]", problems)
    problems.extend(_unknown("[graph]", key, {"name"}) for key in graph_table if key != "name")
    graph = Graph(name=_name(graph_table, "[graph]", path.stem, problems))
    settings = _settings_from(_table(data, "settings", "[settings]", problems), problems)
    _add_modules(graph, data.get("modules", {}), registry, problems)
    links = data.get("links", [])
    if not isinstance(links, list):
        problems.append(f"links: expected an array of tables ([[links]]), got {short(links)}")
        links = []
    for index, link in enumerate(links, start=1):
        _add_link(graph, link, f"[[links]] #{index}", problems)
    if "supervisor" in data:
        options = _table(data, "supervisor", "[supervisor]", problems)
        known = [field.name for field in attrs.fields(SupervisorSpec)]
        _declare(partial(graph.supervisor, **options), "[supervisor]", problems, known)
    if not problems:
        _declare(lambda: problems.extend(_graph_problems(graph)), "graph", problems)
    if problems:
        raise GraphFileError(path, problems)
    return graph, settings


def _settings_from(table: dict[str, Any], problems: list[str]) -> Settings:
    """The ``[settings]`` table, each key checked by :class:`Settings` itself."""
    settings = Settings()
    known = [f.name for f in attrs.fields(Settings)]
    for key, value in table.items():
        if key not in known:
            problems.append(
                f"[settings] unknown key {short(key)} (keys: {', '.join(known)})"
                f"{did_you_mean(key, known)}"
            )
            continue
        try:
            settings = attrs.evolve(settings, **{key: value})
        except Exception as exc:
            problems.append(f"[settings] key {short(key)}: {_short_text(exc)}")
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
        _declare(partial(graph.add, name, cls, **config), where, problems)
        shared = table.get("shared", False)
        if not isinstance(shared, bool):
            problems.append(f"{where} key 'shared': expected true or false, got {short(shared)}")
        elif shared:
            graph.share(name)
        if "supervise" in table:
            options = _table(table, "supervise", f"{where} key 'supervise'", problems)
            known = list(inspect.signature(graph.supervise).parameters)
            declare = partial(graph.supervise, name, **options)
            _declare(declare, f"{where} key 'supervise'", problems, known)


def _add_link(graph: Graph, link: Any, where: str, problems: list[str]) -> None:
    """Declare one ``[[links]]`` table; its options are those of :class:`LinkSpec`."""
    if not isinstance(link, dict):
        problems.append(f"{where}: expected a table, got {type(link).__name__} {short(link)}")
        return
    missing = [key for key in ("from", "to") if key not in link]
    problems.extend(f"{where}: required key {short(key)} is missing" for key in missing)
    known = {"from", "to"} | LINK_OPTIONS
    unknown = sorted(set(link) - known)
    problems.extend(_unknown(where, key, known) for key in unknown)
    if missing or unknown:
        return
    ends = [link["from"], link["to"]]
    bad = [key for key, end in zip(("from", "to"), ends, strict=True) if not isinstance(end, str)]
    problems.extend(
        f'{where} key {short(key)}: expected "module" or "module.port", got {short(link[key])}'
        for key in bad
    )
    if bad:
        return
    options = {key: value for key, value in link.items() if key in LINK_OPTIONS}
    _declare(
        partial(graph.link, link["from"], link["to"], **options),
        f"{where} ({short(link['from'])[1:-1]} -> {short(link['to'])[1:-1]})",
        problems,
    )
