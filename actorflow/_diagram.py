"""Graphs and jobs drawn as Mermaid or Graphviz DOT text (``actorflow graph --format``).

Module and task names are the user's own and may hold any character (a quote, a bracket,
a line break), so no name is ever written as syntax: in DOT every name is an escaped quoted
string; in Mermaid, whose ids are bare words, every node gets a plain id (``m0``, ``m1``,
...) and the name goes into a label with entity codes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._graph import Graph
from ._job import Job

__all__ = ["dot", "job_dot", "job_mermaid", "mermaid"]

_MERMAID_SAFE = re.compile(r"[^A-Za-z0-9 _.:,()/-]")


def mermaid_text(text: str) -> str:
    """``text`` for a Mermaid label: every character but plain ones as an entity code
    (``#34;``), so no quote, bracket, pipe or line break can end the label."""
    return _MERMAID_SAFE.sub(lambda match: f"#{ord(match.group())};", text)


def dot_text(text: str) -> str:
    """``text`` as the inside of a DOT quoted string: backslashes and quotes escaped,
    line breaks as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _ids(names: Sequence[str], prefix: str) -> dict[str, str]:
    return {name: f"{prefix}{index}" for index, name in enumerate(names)}


def mermaid(graph: Graph) -> str:
    """A Mermaid flowchart of ``graph``: modules as boxes, links as labelled arrows."""
    ids = _ids([spec.name for spec in graph.modules], "m")
    lines = ["flowchart LR"]
    lines += [
        f'    {ids[spec.name]}["{mermaid_text(f"{spec.name}: {spec.factory.__qualname__}")}"]'
        for spec in graph.modules
    ]
    for link in graph.links:
        arrow = "-.->" if link.feedback else "-->"
        label = mermaid_text(f"{link.source_port} to {link.target_port}")
        lines.append(f'    {ids[link.source]} {arrow}|"{label}"| {ids[link.target]}')
    return "\n".join(lines)


def dot(graph: Graph) -> str:
    """A Graphviz digraph of ``graph``: modules as nodes, links as labelled edges."""
    lines = [f'digraph "{dot_text(graph.name)}" {{', "    rankdir=LR;"]
    lines += [
        f'    "{dot_text(spec.name)}" [label="{dot_text(spec.name)}\\n'
        f'{dot_text(spec.factory.__qualname__)}"];'
        for spec in graph.modules
    ]
    for link in graph.links:
        style = ", style=dashed" if link.feedback else ""
        label = dot_text(f"{link.source_port} to {link.target_port}")
        lines.append(
            f'    "{dot_text(link.source)}" -> "{dot_text(link.target)}" [label="{label}"{style}];'
        )
    lines.append("}")
    return "\n".join(lines)


def job_mermaid(job: Job) -> str:
    """A Mermaid flowchart of ``job``: its tasks in the order they run."""
    ids = _ids(list(job.tasks), "t")
    lines = ["flowchart LR"]
    lines += [f'    {ids[name]}["{mermaid_text(name)}"]' for name in job.tasks]
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in zip(job.tasks, job.tasks[1:], strict=False)]
    return "\n".join(lines)


def job_dot(job: Job) -> str:
    """A Graphviz digraph of ``job``: its tasks in the order they run."""
    lines = [f'digraph "{dot_text(job.name)}" {{', "    rankdir=LR;"]
    lines += [f'    "{dot_text(name)}";' for name in job.tasks]
    pairs = zip(job.tasks, job.tasks[1:], strict=False)
    lines += [f'    "{dot_text(a)}" -> "{dot_text(b)}";' for a, b in pairs]
    lines.append("}")
    return "\n".join(lines)
