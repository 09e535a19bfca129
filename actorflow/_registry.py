"""The module registry: which module classes may be used by name, and where from.

A module is *enabled* by naming it in the application's ``pyproject.toml``::

    [tool.actorflow.modules]
    thermometer = "plant.sensors:Thermometer"

or by an installed package that declares it under the ``actorflow.modules`` entry-point
group. A module that is not enabled cannot be loaded by name. The same table enables job
tasks (:class:`actorflow.Task` subclasses).

Import paths are resolved like the project's own code: loading puts the directory of the
``pyproject.toml`` on ``sys.path``, and any directories listed (relative to it) in::

    [tool.actorflow]
    pythonpath = ["src"]

the way pytest's ``pythonpath`` option does. :meth:`Registry.for_file` finds the
``pyproject.toml`` that governs a graph file: the nearest one above it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ._checks import clip, did_you_mean, short
from ._exceptions import RegistryError
from ._job import Task
from ._module import Module
from ._toml import loads as bounded_toml

__all__ = ["Registry", "RegistryEntry"]

ENTRY_POINT_GROUP = "actorflow.modules"

_Loadable = TypeVar("_Loadable", Module, Task)

_KINDS = {
    Module: "actorflow.Source, Processor, Sink or Progressive",
    Task: "actorflow.Task",
}


@attrs.frozen
class RegistryEntry:
    """An enabled module: its name, its import path, and where it was enabled."""

    name: str
    target: str
    origin: str


def _entries(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (
        isinstance(value, dict)
        and all(isinstance(entry, RegistryEntry) for entry in value.values())
    ):
        raise TypeError(f"{attribute.name} must map names to RegistryEntry, got {short(value)}")


@attrs.define
class Registry:
    """Enabled modules by name."""

    entries: dict[str, RegistryEntry] = attrs.field(factory=dict, validator=_entries)
    paths: tuple[Path, ...] = ()
    """Directories put on ``sys.path`` before importing a module: the project's, and its
    ``[tool.actorflow] pythonpath`` entries."""

    @classmethod
    def for_file(cls, path: str | Path) -> Registry:
        """The registry that governs the graph or job file ``path``: from the nearest
        ``pyproject.toml`` in its directory or above, else the current directory's."""
        start = Path(path).resolve().parent
        for directory in (start, *start.parents):
            if (directory / "pyproject.toml").is_file():
                return cls.discover(directory / "pyproject.toml")
        return cls.discover()

    @classmethod
    def discover(cls, pyproject: str | Path | None = "pyproject.toml") -> Registry:
        """Modules from installed entry points, then from ``pyproject`` (which wins).

        Raises:
            RegistryError: ``pyproject`` exists but cannot be read, or its
                ``[tool.actorflow.modules]`` table or ``pythonpath`` is malformed
                (naming file and key).
        """
        registry = cls()
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = point.dist.name if point.dist is not None else "an installed package"
            registry.entries[point.name] = RegistryEntry(
                point.name, point.value, f"entry point of {dist}"
            )
        if pyproject is not None and Path(pyproject).is_file():
            entries, paths = cls._from_pyproject(Path(pyproject))
            registry.entries.update(entries)
            registry.paths = paths
        return registry

    @staticmethod
    def _from_pyproject(path: Path) -> tuple[dict[str, RegistryEntry], tuple[Path, ...]]:
        try:
            data = bounded_toml(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8 or TOML
            raise RegistryError(f"{path}: cannot read it: {exc}") from exc
        tool = data.get("tool", {})
        tool = tool.get("actorflow", {}) if isinstance(tool, dict) else None
        if not isinstance(tool, dict):
            raise RegistryError(f"{path}: [tool.actorflow] must be a table")
        root = path.resolve().parent
        extra = tool.get("pythonpath", [])
        if not isinstance(extra, list) or not all(isinstance(p, str) for p in extra):
            raise RegistryError(
                f"{path}: [tool.actorflow] pythonpath must be a list of directories, "
                f"got {short(extra)}"
            )
        paths = (root, *(root / entry for entry in extra))
        table = tool.get("modules", {})
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: [tool.actorflow.modules] must be a table")
        entries = {}
        for name, target in table.items():
            if not isinstance(target, str) or ":" not in target:
                raise RegistryError(
                    f"{path}: [tool.actorflow.modules] {clip(name, 60)} = {short(target)}: "
                    "expected "
                    '"package.module:Class"'
                )
            entries[name] = RegistryEntry(name, target, str(path))
        return entries, paths

    def load(self, name: str) -> type[Module]:
        """The module class enabled as ``name``.

        Raises:
            RegistryError: ``name`` is not enabled (the message says how to enable it),
                or its import path does not lead to a module class (it says why).
        """
        return self._load(name, Module)

    def problem(self, name: str) -> str | None:
        """Why the entry ``name`` cannot be loaded as a module or a task, or ``None``."""
        try:
            self.load(name)
        except RegistryError as exc:
            try:
                self.load_task(name)
            except RegistryError:
                return str(exc).partition("): ")[2] or str(exc)
        return None

    def load_task(self, name: str) -> type[Task]:
        """The job task class enabled as ``name`` (errors as for :meth:`load`)."""
        return self._load(name, Task)

    def _load(self, name: str, base: type[_Loadable]) -> type[_Loadable]:
        entry = self.entries.get(name)
        if entry is None:
            enabled = ", ".join(sorted(self.entries)) or "none"
            hint = did_you_mean(name, self.entries)
            raise RegistryError(
                f"module {short(name)} is not enabled{hint} (enabled: {enabled}). Enable it in "
                f"pyproject.toml: [tool.actorflow.modules] {clip(name, 60)} = "
                '"package.module:Class", '
                f"or install a package that provides it under the {short(ENTRY_POINT_GROUP)} "
                "entry-point group"
            )
        module_path, _, attribute = entry.target.partition(":")
        for directory in reversed(self.paths):
            if str(directory) not in sys.path:
                sys.path.insert(0, str(directory))
        try:
            found: object = importlib.import_module(module_path)
            for part in attribute.split("."):
                found = getattr(found, part)
        except ImportError as exc:
            raise RegistryError(
                f"module {short(name)} ({entry.origin}): cannot import {short(module_path)}: {exc}"
            ) from exc
        except AttributeError as exc:
            raise RegistryError(
                f"module {short(name)} ({entry.origin}): {short(module_path)} has no "
                f"{short(attribute)}"
            ) from exc
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            # SyntaxError, any error raised while the module ran, even SystemExit.
            raise RegistryError(
                f"module {short(name)} ({entry.origin}): importing {short(module_path)} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not (isinstance(found, type) and issubclass(found, base)):
            raise RegistryError(
                f"module {short(name)} ({entry.origin}): {short(entry.target)} is not a "
                "subclass of "
                f"{_KINDS[base]}"
            )
        return found
