"""Graphs built in Python, named on the command line as ``package.module:attribute``.

``actorflow run plant.build:graph`` runs what ``plant/build.py`` defines: a
:class:`Graph` or :class:`Job`, or a function that returns one (or a graph and its
:class:`Settings`), called with no arguments. The live view, the summary and the exit
codes are those of a graph file.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

from ._exceptions import GraphFileError, describe
from ._graph import Graph
from ._job import Job
from ._settings import Settings

__all__ = ["is_python_target", "load_python"]

_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def is_python_target(text: str) -> bool:
    """Whether ``text`` names a Python object (``pkg.module:name``) rather than a file:
    it has that shape and no file of that name exists."""
    return bool(_TARGET.fullmatch(text)) and not os.path.exists(text)


def load_python(target: str) -> tuple[Graph, Settings] | Job:
    """What ``target`` names, as a graph and its settings, or a job.

    The current directory is importable, as with ``python -m``.

    Raises:
        GraphFileError: The module does not import, the attribute is missing, calling it
            failed, or it is not a graph or a job; the message names ``target``.
    """
    module_name, _, attribute = target.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:  # a module that raises anything while importing
        raise _error(target, f"cannot import {module_name!r}: {describe(exc)}") from exc
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _error(target, f"{module_name!r} has no attribute {attribute!r}") from None
    if callable(found) and not isinstance(found, Graph | Job):
        try:
            found = found()
        except Exception as exc:
            raise _error(target, f"calling {attribute}() failed: {describe(exc)}") from exc
    return _as_runnable(target, found)


def _as_runnable(target: str, found: Any) -> tuple[Graph, Settings] | Job:
    if isinstance(found, Job):
        return found
    if isinstance(found, Graph):
        return _valid(target, found), Settings()
    if (
        isinstance(found, tuple)
        and len(found) == 2
        and isinstance(found[0], Graph)
        and isinstance(found[1], Settings)
    ):
        return _valid(target, found[0]), found[1]
    raise _error(
        target,
        f"it is {type(found).__name__}; expected a Graph, a Job, (Graph, Settings), or a "
        "function returning one",
    )


def _valid(target: str, graph: Graph) -> Graph:
    problems = graph.problems()
    if problems:
        raise _error(target, *(f"graph: {problem.message}" for problem in problems))
    return graph


def _error(target: str, *problems: str) -> GraphFileError:
    return GraphFileError(Path(target), list(problems))
