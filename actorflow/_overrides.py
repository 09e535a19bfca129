"""Overrides of a graph or job file's keys: ``--set KEY=VALUE`` and ``ACTORFLOW_*``.

An override changes the file's document (the parsed TOML) before anything is built from
it, so an overridden value is checked exactly as one written in the file, and a problem
names the same table and key. Deployment-specific values (a remote URL with its
password, a heartbeat interval) then need not live in the file.

A key is a dotted path into the document: ``settings.quantum``, ``modules.readings.config.
count``, ``supervisor.max_restarts``, ``links.2.buffer`` (links are numbered from 1, as
errors number them). A key that names a field of :class:`~actorflow.Settings` on its own
(``quantum``, ``remote_url``) means that setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from ._checks import did_you_mean, short
from ._settings import Settings
from ._toml import loads as bounded_toml

__all__ = [
    "ENV_PREFIX",
    "apply_overrides",
    "from_environment",
    "parse_assignment",
    "parse_value",
]

ENV_PREFIX = "ACTORFLOW_"
"""``ACTORFLOW_<SETTING>`` (``ACTORFLOW_REMOTE_URL``) overrides that setting."""

_TABLES = ("graph", "settings", "modules", "links", "supervisor", "job", "tasks")


def _settings_fields() -> list[str]:
    return [field.name for field in attrs.fields(Settings)]


def parse_value(text: str) -> Any:
    """``text`` read as a TOML value (``5``, ``0.5``, ``true``, ``"a"``, ``[1, 2]``,
    ``{ min = 1 }``), or the text itself when it is not one (``redis://host/0``) or goes
    beyond the bounds of :mod:`actorflow._toml` (tomllib is quadratic in a key's parts)."""
    try:
        return bounded_toml(f"value = {text}")["value"]
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as the key and its value (see :func:`parse_value`).

    Raises:
        ValueError: There is no ``=`` or no key.
    """
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ValueError(f"--set {short(text)}: expected KEY=VALUE, e.g. quantum=0.005")
    return key.strip(), parse_value(value.strip())


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings ``ACTORFLOW_<SETTING>`` variables override (other ``ACTORFLOW_``
    variables are not settings and are left alone)."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for name in _settings_fields():
        text = environ.get(ENV_PREFIX + name.upper())
        if text is not None:
            found[f"settings.{name}"] = parse_value(text)
    return found


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Set each override's key in ``data`` (the file's document), in order; the problems
    (a key that leads nowhere), each naming the key."""
    problems = []
    for key, value in overrides.items():
        problem = _set(data, _path(key), value)
        if problem is not None:
            problems.append(f"override {short(key)}: {problem}")
    return problems


def _path(key: str) -> list[str]:
    parts = key.split(".")
    if parts[0] not in _TABLES and len(parts) == 1 and parts[0] in _settings_fields():
        return ["settings", *parts]
    return parts


def _set(data: dict[str, Any], path: list[str], value: Any) -> str | None:
    """Put ``value`` at ``path``, making the tables on the way; why not, if it cannot."""
    if any(not part for part in path):
        return "an empty part in the key"
    if path[0] not in _TABLES:
        tables = ", ".join(_TABLES)
        return f"no table {short(path[0])}{_hint(path[0])} (a key starts with one of: {tables})"
    named = data.get(path[0])
    # An override changes a module (or task); it does not add one.
    adds = len(path) > 1 and isinstance(named, dict) and path[1] not in named
    if path[0] in ("modules", "tasks") and adds:
        return (
            f"the file has no {path[0][:-1]} {short(path[1])}"
            f"{did_you_mean(path[1], [str(key) for key in named or {}])}"
        )
    here: Any = data
    for depth, part in enumerate(path[:-1]):
        here, problem = _step(here, part)
        if problem is not None:
            return f"{problem} at {'.'.join(path[: depth + 1])}"
    last = path[-1]
    if isinstance(here, list):
        index = _index(here, last)
        if isinstance(index, str):
            return index
        here[index] = value
    elif isinstance(here, dict):
        here[last] = value
    else:
        return f"{'.'.join(path[:-1])} is {type(here).__name__}, not a table"
    return None


def _step(here: Any, part: str) -> tuple[Any, str | None]:
    """What is under ``part`` in the table or array ``here`` (a new table if nothing is
    yet), or why nothing can be."""
    if isinstance(here, list):
        index = _index(here, part)
        return (None, index) if isinstance(index, str) else (here[index], None)
    if not isinstance(here, dict):
        return None, f"{type(here).__name__} is not a table"
    return here.setdefault(part, {}), None


def _index(array: list[Any], part: str) -> int | str:
    """A 1-based array index (``links.2``) as a list index, or why it is not one."""
    if not part.isdigit() or not 1 <= int(part) <= len(array):
        return f"{short(part)} is not a number from 1 to {len(array)}"
    return int(part) - 1


def _hint(word: str) -> str:
    return did_you_mean(word, [*_TABLES, *_settings_fields()])
