"""``actorflow init``: a new project that runs and passes its own test from the start.

The project has what every actorflow project needs and nothing more: a ``pyproject.toml``
that enables its modules, one package with a source and a sink, one graph file, and one
test that runs the graph. ``actorflow run graph.toml`` and ``python -m pytest`` work in
it at once.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from pathlib import Path

__all__ = ["ScaffoldError", "scaffold"]


class ScaffoldError(Exception):
    """The project cannot be made there (a file would be overwritten, a bad name)."""


_PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["actorflow"]

[project.optional-dependencies]
test = ["pytest"]             # pip install -e ".[test]"

[tool.actorflow]
pythonpath = ["src"]          # where the modules below are imported from

[tool.actorflow.modules]      # the names graph files use, and where each module lives
counter = "{package}.modules:Counter"
printer = "{package}.modules:Printer"

[tool.pytest.ini_options]
pythonpath = ["src"]
"""

_MODULES = '''\
"""The modules of {name}: a source that counts and a sink that prints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import actorflow as af


class Counter(af.Source):
    """Emits 0, 1, ... up to ``count`` - 1."""

    outputs: ClassVar = {{"out": int}}

    def __init__(self, count: int = 10) -> None:
        self.count = count

    def start(self) -> Iterator[int]:
        return iter(range(self.count))


class Printer(af.Sink):
    """Prints every number it receives, and keeps them in ``seen``."""

    inputs: ClassVar = {{"in": int}}

    def __init__(self) -> None:
        self.seen: list[int] = []

    def consume(self, data: int) -> None:
        self.seen.append(data)
        print(f"{{self.name}}: {{data}}")
'''

_GRAPH = """\
[graph]
name = "{name}"

[modules.counter]
module = "counter"
config = {{ count = 10 }}

[modules.printer]
module = "printer"

[[links]]
from = "counter"
to = "printer"
"""

_TEST = '''\
"""The graph file runs end to end: every number reaches the printer, in order."""

from __future__ import annotations

from pathlib import Path

import actorflow as af

GRAPH = Path(__file__).resolve().parent.parent / "graph.toml"


def test_the_graph_delivers_every_number() -> None:
    graph, settings = af.load_graph(GRAPH)
    status = af.run(graph, settings)
    assert status.actors["printer"].received == 10
    assert status.actors["counter"].emitted == 10
'''


def _package_name(name: str) -> str:
    """An importable package name for the project that shadows nothing: not a keyword,
    and no module Python would find first (``json``, ``trio``, ``actorflow``)."""
    package = re.sub(r"\W", "_", name.lower()).strip("_") or "project"
    if package[0].isdigit() or keyword.iskeyword(package):
        package = f"project_{package}"
    if package in sys.stdlib_module_names or importlib.util.find_spec(package) is not None:
        package = f"{package}_project"
    return package


def scaffold(directory: Path, name: str | None = None) -> list[Path]:
    """Write a new project into ``directory`` (made if missing); the files written.

    Raises:
        ScaffoldError: A file it would write exists already, or ``directory`` is not one.
    """
    name = name or directory.resolve().name or "project"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ScaffoldError(f"{name!r} is not a project name (letters, digits, '.', '_', '-')")
    package = _package_name(name)
    files = {
        Path("pyproject.toml"): _PYPROJECT.format(name=name, package=package),
        Path("src", package, "__init__.py"): f'"""{name}: an actorflow project."""\n',
        Path("src", package, "modules.py"): _MODULES.format(name=name),
        Path("graph.toml"): _GRAPH.format(name=name),
        Path("tests", "test_graph.py"): _TEST,
    }
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory}: not a directory")
    taken = [path for path in files if (directory / path).exists()]
    if taken:
        raise ScaffoldError(f"{directory / taken[0]}: exists already; nothing was written")
    written = []
    for path, text in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
