"""The graph laid out for drawing: modules in layers from sources to sinks, links between.

A layered (Sugiyama-style) layout, small enough to read: each module's layer is the
longest path of ordinary links leading to it (feedback links, which close cycles, are
left out), modules within a layer are ordered by the mean position of their neighbours
in a few sweeps down and up (fewer crossings), then placed on a grid. The browser only
draws what it is given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .._graph import Graph
from .._specs import LinkSpec
from .._urls import redact_url

__all__ = ["NODE_HEIGHT", "NODE_WIDTH", "layers", "layout", "order_layers"]

NODE_WIDTH = 268
NODE_HEIGHT = 118
GAP_X = 90
GAP_Y = 30
MARGIN = 24
SWEEPS = 4


def layers(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each name's layer: 0 for a module nothing feeds, else one more than the deepest
    module feeding it (``edges`` must have no cycle; those on one keep layer 0)."""
    feeds: dict[str, list[str]] = {name: [] for name in names}
    waiting = dict.fromkeys(names, 0)
    for source, target in edges:
        if source in feeds and target in waiting:
            feeds[source].append(target)
            waiting[target] += 1
    layer = dict.fromkeys(names, 0)
    ready = [name for name in names if waiting[name] == 0]
    while ready:
        name = ready.pop()
        for target in feeds[name]:
            layer[target] = max(layer[target], layer[name] + 1)
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    return layer


def order_layers(
    layer: Mapping[str, int], edges: Sequence[tuple[str, str]], sweeps: int = SWEEPS
) -> list[list[str]]:
    """The names of each layer, ordered to cross few edges (barycentre heuristic; ties
    keep the declaration order)."""
    count = max(layer.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(count)]
    for name, index in layer.items():
        rows[index].append(name)
    up: dict[str, list[str]] = {name: [] for name in layer}
    down: dict[str, list[str]] = {name: [] for name in layer}
    for source, target in edges:
        if source in layer and target in layer:
            down[source].append(target)
            up[target].append(source)
    for sweep in range(sweeps):
        forward = sweep % 2 == 0
        indices = range(1, count) if forward else range(count - 2, -1, -1)
        for index in indices:
            near = rows[index - 1] if forward else rows[index + 1]
            position = {name: at for at, name in enumerate(near)}
            neighbours = up if forward else down
            rows[index] = _by_barycentre(rows[index], neighbours, position)
    return rows


def _by_barycentre(
    row: list[str], neighbours: Mapping[str, list[str]], position: Mapping[str, int]
) -> list[str]:
    def key(item: tuple[int, str]) -> tuple[float, int]:
        at, name = item
        seen = [position[n] for n in neighbours[name] if n in position]
        return (sum(seen) / len(seen) if seen else float(at), at)

    return [name for _, name in sorted(enumerate(row), key=key)]


def _link(spec: LinkSpec, here: Collection[str]) -> dict[str, Any]:
    remote = spec.remote
    return {
        "name": spec.name,
        "source": spec.source,
        "target": spec.target,
        "ports": f"{spec.source_port} → {spec.target_port}",
        "feedback": spec.feedback,
        "remote": remote is not None,
        "url": None if remote is None or remote.url is None else redact_url(remote.url),
        "crosses": (spec.source in here) != (spec.target in here),
    }


def layout(graph: Graph, here: Collection[str]) -> dict[str, Any]:
    """The graph as JSON-ready data: each module with its box (``x``, ``y``, ``w``,
    ``h``), its class and kind and whether it runs in this process; each link with its
    two ends and whether it is remote; the size of the whole drawing."""
    names = [spec.name for spec in graph.modules]
    ordinary = [(link.source, link.target) for link in graph.links if not link.feedback]
    rows = order_layers(layers(names, ordinary), ordinary)
    tallest = max((len(row) for row in rows), default=0)
    height = 2 * MARGIN + tallest * NODE_HEIGHT + max(tallest - 1, 0) * GAP_Y
    boxes: dict[str, tuple[int, int]] = {}
    for index, row in enumerate(rows):
        span = len(row) * NODE_HEIGHT + (len(row) - 1) * GAP_Y
        top = (height - span) // 2
        for at, name in enumerate(row):
            boxes[name] = (MARGIN + index * (NODE_WIDTH + GAP_X), top + at * (NODE_HEIGHT + GAP_Y))
    modules = []
    for spec in graph.modules:
        x, y = boxes[spec.name]
        kind = getattr(getattr(spec.factory, "kind", None), "value", None)
        modules.append(
            {
                "name": spec.name,
                "class": str(getattr(spec.factory, "__qualname__", spec.factory)),
                "kind": kind,
                "here": spec.name in here,
                "x": x,
                "y": y,
                "w": NODE_WIDTH,
                "h": NODE_HEIGHT,
            }
        )
    width = 2 * MARGIN + len(rows) * NODE_WIDTH + max(len(rows) - 1, 0) * GAP_X
    return {
        "graph": graph.name,
        "width": width,
        "height": height,
        "modules": modules,
        "links": [_link(link, here) for link in graph.links],
    }
