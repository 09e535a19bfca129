"""The shape of the package: arrows point down, rooms stay small, backends load lazily.

The import graph counts every import of an ``actorflow`` module wherever it is written: at
module level, inside a function (a lazy import) or under ``if TYPE_CHECKING:`` (a type-only
import). A type-only cycle still ties two rooms together, so it counts as a cycle.
"""

from __future__ import annotations

import ast
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs
import pytest

import actorflow

PACKAGE_DIR = Path(actorflow.__file__).parent
MAX_CLASS_LINES = 500
MAX_FUNCTION_LINES = 60


@attrs.frozen
class Edge:
    """One import of a package module by another, where it is written and how."""

    source: str
    target: str
    where: str
    kind: str  # "", "lazy" (inside a function) or "type-only" (under TYPE_CHECKING)


def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package under ``package_dir``, by dotted name."""
    root = package_dir.name
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement in the tree, at any depth, with how it is reached."""

    def visit(
        nodes: Iterable[ast.AST], kind: str
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, kind
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from visit(node.body, "type-only")
                yield from visit(node.orelse, kind)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(ast.iter_child_nodes(node), kind or "lazy")
            else:
                yield from visit(ast.iter_child_nodes(node), kind)

    yield from visit(tree.body, "")


def _base_of(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module ``from <...> import`` names, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def import_edges(package_dir: Path) -> list[Edge]:
    """Every import of one package module by another, self-imports left out."""
    modules = module_files(package_dir)
    root = package_dir.name
    edges: list[Edge] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, kind in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base_of(node, module, path.name == "__init__.py")
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else base)
            where = f"{path.relative_to(package_dir.parent)}:{node.lineno}"
            for target in targets:
                # ``import a.b.c`` names a module; keep the longest prefix that is one.
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != module and target.split(".")[0] == root:
                    edges.append(Edge(module, target, where, kind))
    return edges


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _shortest_cycle(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest path from ``start`` back to itself inside one component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for successor in sorted(graph.get(node, set()) & members):
                if successor == start:
                    return [*paths[node], start]
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def import_cycles(package_dir: Path) -> list[str]:
    """Each strongly connected component of the import graph, then, one per line, a
    shortest cycle through every module of it not yet shown, with the imports closing it."""
    edges = import_edges(package_dir)
    graph: dict[str, set[str]] = {}
    first: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        first.setdefault((edge.source, edge.target), edge)
    found: list[str] = []
    for component in strongly_connected_components(graph):
        if len(component) < 2:
            continue
        members = set(component)
        found.append(f"modules tied together: {', '.join(component)}")
        covered: set[str] = set()
        for start in component:
            if start in covered:
                continue
            cycle = _shortest_cycle(start, graph, members)
            covered.update(cycle)
            hops = []
            for source, target in itertools.pairwise(cycle):
                edge = first[(source, target)]
                hops.append(f"{edge.where}{f' ({edge.kind})' if edge.kind else ''}")
            found.append(f"    {' -> '.join(cycle)}  via {', '.join(hops)}")
    return found


def _definitions(node: ast.AST, prefix: str) -> Iterator[tuple[ast.AST, str]]:
    """Every class and function under ``node``, nested ones too, by qualified name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield child, f"{prefix}{child.name}"
            yield from _definitions(child, f"{prefix}{child.name}.")
        else:
            yield from _definitions(child, prefix)


def oversized(package_dir: Path) -> list[str]:
    """Every class over MAX_CLASS_LINES and every function over MAX_FUNCTION_LINES."""
    found: list[str] = []
    for module, path in module_files(package_dir).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(package_dir.parent)
        for node, name in _definitions(tree, f"{module}."):
            assert isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            is_class = isinstance(node, ast.ClassDef)
            if lines > (MAX_CLASS_LINES if is_class else MAX_FUNCTION_LINES):
                kind = "class" if is_class else "function"
                found.append(f"{where}:{node.lineno} {kind} {name}: {lines} lines")
    return found


# -- the checker itself, on a package made for it ------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body), encoding="utf-8")
    return root / "pkg"


def test_relative_imports_resolve_for_modules_and_packages(tmp_path: Path) -> None:
    """``from . import x``, ``from .x import y`` and ``from .._x import y`` resolve from a
    module and from a subpackage alike, naming a submodule where there is one."""
    package = write_package(
        tmp_path,
        {
            "__init__.py": "from ._a import A\n",
            "_a.py": "from . import _b\nfrom .engine import Engine\nA = 1\n",
            "_b.py": "import pkg._c\nfrom pkg import _a\n",
            "_c.py": "from . import A\n",
            "engine/__init__.py": "from ._core import Engine\nfrom . import _parts\n",
            "engine/_core.py": "from .._b import x\nfrom . import _parts\nfrom .. import _c\n",
            "engine/_parts.py": "from ._core import Engine\n",
        },
    )
    edges = {(edge.source, edge.target) for edge in import_edges(package)}
    assert edges == {
        ("pkg", "pkg._a"),
        ("pkg._a", "pkg._b"),
        ("pkg._a", "pkg.engine"),
        ("pkg._b", "pkg._c"),
        ("pkg._b", "pkg._a"),
        ("pkg._c", "pkg"),
        ("pkg.engine", "pkg.engine._core"),
        ("pkg.engine", "pkg.engine._parts"),
        ("pkg.engine._core", "pkg._b"),
        ("pkg.engine._core", "pkg.engine._parts"),
        ("pkg.engine._core", "pkg._c"),
        ("pkg.engine._parts", "pkg.engine._core"),
    }


def test_type_only_and_lazy_imports_count_as_edges(tmp_path: Path) -> None:
    """Imports under ``if TYPE_CHECKING:`` and inside functions are edges, marked as such,
    and a cycle through them is reported with the lines that close it."""
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "_a.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ._b import B
                """,
            "_b.py": """\
                def make():
                    from ._a import A
                    return A
                """,
            "_c.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg._a\n",
        },
    )
    kinds = {(edge.source, edge.target): edge.kind for edge in import_edges(package)}
    assert kinds == {
        ("pkg._a", "pkg._b"): "type-only",
        ("pkg._b", "pkg._a"): "lazy",
        ("pkg._c", "pkg._a"): "type-only",
    }
    assert import_cycles(package) == [
        "modules tied together: pkg._a, pkg._b",
        "    pkg._a -> pkg._b -> pkg._a  via pkg/_a.py:3 (type-only), pkg/_b.py:2 (lazy)",
    ]


def test_tarjan_finds_every_component() -> None:
    """Separate cycles are separate components; nodes on no cycle stand alone."""
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    components = sorted(strongly_connected_components(graph))
    assert components == [["a", "b"], ["c", "d", "e"], ["f"]]


def test_oversized_names_each_long_class_and_function(tmp_path: Path) -> None:
    """Methods and nested functions are measured too, each under its qualified name."""
    body = "        x = 1\n" * MAX_FUNCTION_LINES
    package = write_package(
        tmp_path, {"__init__.py": "", "_m.py": f"class K:\n    def m(self):\n{body}"}
    )
    assert oversized(package) == [
        f"pkg/_m.py:2 function pkg._m.K.m: {MAX_FUNCTION_LINES + 1} lines"
    ]


# -- the package -----------------------------------------------------------------------------


def test_actorflow_has_no_import_cycle_not_even_a_type_only_one() -> None:
    """No two modules of actorflow import each other, directly or around a loop, in any way."""
    cycles = import_cycles(PACKAGE_DIR)
    assert not cycles, "import cycles in actorflow/:\n" + "\n".join(cycles)


def test_no_class_over_500_lines_and_no_function_over_60() -> None:
    """Every room stays small enough to read: classes up to 500 lines, functions up to 60."""
    found = oversized(PACKAGE_DIR)
    assert not found, "too long:\n" + "\n".join(found)


LOCAL_RUN = """\
import sys

import actorflow as af

def backend():
    return sorted(
        name for name in sys.modules
        if name == "coredis" or name.startswith(("coredis.", "actorflow._redis"))
    )

class Numbers(af.Source):
    def start(self):
        return range(3)

class Collect(af.Sink):
    def consume(self, data):
        pass

after_import = backend()
graph = af.Graph()
graph.add("src", Numbers)
graph.add("k", Collect)
graph.link("src", "k")
af.run(graph)
print(f"after import: {after_import}; after a local run: {backend()}")
"""


def test_a_purely_local_graph_never_loads_the_redis_backend() -> None:
    """Importing actorflow and running a graph without remote links imports neither
    ``actorflow._redis`` nor coredis."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_DIR.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_RUN],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:  # a broken run is a failure, never the expected one
        pytest.fail(f"the local run failed:\n{done.stderr}")
    assert done.stdout.strip() == "after import: []; after a local run: []"
