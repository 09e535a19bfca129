"""Declarations: a leaf that imports no runtime, re-exported where they used to live."""

from __future__ import annotations

import ast
import inspect

import pytest

import actorflow as af
from actorflow import _copying, _graph, _link, _remote, _specs, _supervisor


def test_declarations_import_nothing_from_the_runtime() -> None:
    """_specs imports only the leaf helpers, not even under TYPE_CHECKING."""
    tree = ast.parse(inspect.getsource(_specs))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }
    assert imported <= {"_checks", "_ports", "_urls"}, imported


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (_graph, "LinkSpec"),
        (_graph, "ModuleSpec"),
        (_graph, "Supervision"),
        (_graph, "GroupSpec"),
        (_link, "Overflow"),
        (_copying, "CopyPolicy"),
        (_remote, "Remote"),
        (_remote, "to_remote"),
        (_supervisor, "ChildSpec"),
        (_supervisor, "SupervisorSpec"),
        (_supervisor, "Strategy"),
        (_supervisor, "RestartType"),
        (_supervisor, "AutoShutdown"),
        (_supervisor, "Backoff"),
    ],
)
def test_old_import_paths_still_name_the_declarations(module: object, name: str) -> None:
    """A declaration moved to _specs is still importable from the module it left."""
    assert getattr(module, name) is getattr(_specs, name)


def test_link_options_are_the_fields_of_a_link_besides_its_ends() -> None:
    """What a graph file's [[links]] table may say is what LinkSpec takes."""
    assert {
        "buffer", "copy", "feedback", "overflow", "latest_only", "workers", "spawn_limit",
        "remote",
    } == _specs.LINK_OPTIONS  # fmt: skip


def test_a_module_spec_reads_ports_declared_as_bare_types() -> None:
    """A port declared as just a type becomes a Port of that type."""

    class Words(af.Processor):
        inputs = {"in": str}  # noqa: RUF012 - the declaration style under test

        def process(self, data: str) -> str:
            return data

    spec = af.ModuleSpec("words", Words)
    assert spec.input_ports() == {"in": af.Port(type=str)}
    assert spec.output_ports() == {"out": af.Port()}
