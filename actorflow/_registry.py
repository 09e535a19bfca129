"""The module registry: which module classes may be used by name, and where from.

A module is *enabled* by naming it in the application's ``pyproject.toml``::

    [tool.actorflow.modules]
    thermometer = "plant.sensors:Thermometer"

or by an installed package that declares it under the ``actorflow.modules`` entry-point
group. A module that is not enabled cannot be loaded by name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import tomllib
from pathlib import Path

import attrs

from ._exceptions import RegistryError
from ._module import Module

__all__ = ["Registry", "RegistryEntry"]

ENTRY_POINT_GROUP = "actorflow.modules"


@attrs.frozen
class RegistryEntry:
    """An enabled module: its name, its import path, and where it was enabled."""

    name: str
    target: str
    origin: str


@attrs.define
class Registry:
    """Enabled modules by name."""

    entries: dict[str, RegistryEntry] = attrs.field(factory=dict)

    @classmethod
    def discover(cls, pyproject: str | Path | None = "pyproject.toml") -> Registry:
        """Modules from installed entry points, then from ``pyproject`` (which wins).

        Raises:
            RegistryError: ``pyproject`` exists but cannot be read, or its
                ``[tool.actorflow.modules]`` table is malformed (naming file and key).
        """
        registry = cls()
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = point.dist.name if point.dist is not None else "an installed package"
            registry.entries[point.name] = RegistryEntry(
                point.name, point.value, f"entry point of {dist}"
            )
        if pyproject is not None and Path(pyproject).is_file():
            registry.entries.update(cls._from_pyproject(Path(pyproject)))
        return registry

    @staticmethod
    def _from_pyproject(path: Path) -> dict[str, RegistryEntry]:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RegistryError(f"{path}: cannot read it: {exc}") from exc
        table = data.get("tool", {}).get("actorflow", {}).get("modules", {})
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: [tool.actorflow.modules] must be a table")
        entries = {}
        for name, target in table.items():
            if not isinstance(target, str) or ":" not in target:
                raise RegistryError(
                    f"{path}: [tool.actorflow.modules] {name} = {target!r}: expected "
                    '"package.module:Class"'
                )
            entries[name] = RegistryEntry(name, target, str(path))
        return entries

    def load(self, name: str) -> type[Module]:
        """The module class enabled as ``name``.

        Raises:
            RegistryError: ``name`` is not enabled (the message says how to enable it),
                or its import path does not lead to a module class (it says why).
        """
        entry = self.entries.get(name)
        if entry is None:
            enabled = ", ".join(sorted(self.entries)) or "none"
            raise RegistryError(
                f"module {name!r} is not enabled (enabled: {enabled}). Enable it in "
                f'pyproject.toml: [tool.actorflow.modules] {name} = "package.module:Class", '
                f"or install a package that provides it under the {ENTRY_POINT_GROUP!r} "
                "entry-point group"
            )
        module_path, _, attribute = entry.target.partition(":")
        try:
            found: object = importlib.import_module(module_path)
            for part in attribute.split("."):
                found = getattr(found, part)
        except ImportError as exc:
            raise RegistryError(
                f"module {name!r} ({entry.origin}): cannot import {module_path!r}: {exc}"
            ) from exc
        except AttributeError:
            raise RegistryError(
                f"module {name!r} ({entry.origin}): {module_path!r} has no {attribute!r}"
            ) from None
        if not (isinstance(found, type) and issubclass(found, Module)):
            raise RegistryError(
                f"module {name!r} ({entry.origin}): {entry.target!r} is not a subclass of "
                "actorflow.Source, Processor, Sink or Progressive"
            )
        return found
