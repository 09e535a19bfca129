"""The module registry: modules enabled by name in pyproject.toml or by entry points."""

from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path
from typing import Any

import pytest

import actorflow as af
from actorflow import _registry

PLUGIN = """
import actorflow as af

class Thermometer(af.Source):
    def start(self):
        return [20.5]

NOT_A_MODULE = 42
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "plant_sensors.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    return tmp_path


def write_pyproject(project: Path, body: str) -> Path:
    path = project / "pyproject.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_module_enabled_in_pyproject_loads_by_name(project: Path) -> None:
    """[tool.actorflow.modules] name = "pkg.module:Class" makes the class loadable."""
    path = write_pyproject(
        project,
        """
        [tool.actorflow.modules]
        thermometer = "plant_sensors:Thermometer"
        """,
    )
    registry = af.Registry.discover(path)
    cls = registry.load("thermometer")
    assert cls.__name__ == "Thermometer"
    assert registry.entries["thermometer"].origin == str(path)


def test_a_module_that_is_not_enabled_says_how_to_enable_it(project: Path) -> None:
    """Loading an unknown name lists what is enabled and how to enable it."""
    registry = af.Registry.discover(write_pyproject(project, "[project]\nname = 'x'\n"))
    with pytest.raises(af.RegistryError) as caught:
        registry.load("barometer")
    message = str(caught.value)
    assert "module 'barometer' is not enabled (enabled: none)" in message
    assert '[tool.actorflow.modules] barometer = "package.module:Class"' in message
    assert "'actorflow.modules' entry-point group" in message
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("plant_missing:Thing", "cannot import 'plant_missing': No module named 'plant_missing'"),
        ("plant_sensors:Hygrometer", "'plant_sensors' has no 'Hygrometer'"),
        ("plant_sensors:NOT_A_MODULE", "'plant_sensors:NOT_A_MODULE' is not a subclass"),
    ],
)
def test_a_bad_import_path_says_which_path_failed_and_why(
    project: Path, target: str, message: str
) -> None:
    """Each kind of broken path is named with its reason."""
    path = write_pyproject(project, f'[tool.actorflow.modules]\nthing = "{target}"\n')
    with pytest.raises(af.RegistryError, match=message):
        af.Registry.discover(path).load("thing")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tool.actorflow.modules\n", "cannot read it"),
        ('[tool.actorflow]\nmodules = "x"\n', r"\[tool.actorflow.modules\] must be a table"),
        ('[tool.actorflow.modules]\nthing = "no_colon"\n', "thing = 'no_colon': expected"),
    ],
)
def test_a_malformed_pyproject_names_the_file_and_key(
    project: Path, body: str, message: str
) -> None:
    """Broken TOML or a malformed table is an error naming the file."""
    path = write_pyproject(project, body)
    with pytest.raises(af.RegistryError, match=message) as caught:
        af.Registry.discover(path)
    assert str(path) in str(caught.value)


class FakeDist:
    name = "plant-plugins"


class FakePoint:
    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value
        self.dist = FakeDist()


def test_installed_plugins_are_found_through_entry_points(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry points in the actorflow.modules group are enabled; pyproject overrides them."""
    points: dict[str, Any] = {
        "actorflow.modules": [FakePoint("thermo", "plant_sensors:Thermometer")]
    }
    monkeypatch.setattr(_registry.importlib.metadata, "entry_points", lambda group: points[group])
    registry = af.Registry.discover(None)
    assert registry.load("thermo").__name__ == "Thermometer"
    assert registry.entries["thermo"].origin == "entry point of plant-plugins"
    path = write_pyproject(
        project, '[tool.actorflow.modules]\nthermo = "plant_sensors:NOT_A_MODULE"\n'
    )
    with pytest.raises(af.RegistryError, match="is not a subclass"):
        af.Registry.discover(path).load("thermo")


def test_the_registry_of_a_file_is_the_nearest_pyproject_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registry.for_file finds the project a graph file belongs to, wherever the command
    runs, and makes the project's `pythonpath` directories importable."""
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    monkeypatch.setattr(_registry.sys, "path", list(_registry.sys.path))
    project = tmp_path / "plant"
    (project / "src" / "plant_meters").mkdir(parents=True)
    (project / "src" / "plant_meters" / "__init__.py").write_text(PLUGIN)
    (project / "graphs" / "nightly").mkdir(parents=True)
    graph_file = project / "graphs" / "nightly" / "plant.toml"
    graph_file.write_text("")
    write_pyproject(
        project,
        """
        [tool.actorflow]
        pythonpath = ["src"]

        [tool.actorflow.modules]
        thermometer = "plant_meters:Thermometer"
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    registry = af.Registry.for_file(graph_file)
    assert registry.paths == (project.resolve(), project.resolve() / "src")
    assert registry.load("thermometer").__name__ == "Thermometer"
    # No pyproject above the file: the current directory's, here none at all.
    lonely = tmp_path / "lonely.toml"
    lonely.write_text("")
    assert af.Registry.for_file(lonely).entries == {}


def test_a_malformed_pythonpath_names_the_file(project: Path) -> None:
    path = write_pyproject(project, '[tool.actorflow]\npythonpath = "src"\n')
    with pytest.raises(af.RegistryError, match="pythonpath must be a list") as caught:
        af.Registry.discover(path)
    assert str(path) in str(caught.value)


def test_tasks_load_by_name_and_only_as_tasks(project: Path) -> None:
    """load_task finds Task classes; a module class is refused, and the other way round."""
    (project / "plant_jobs.py").write_text(
        "import actorflow as af\nclass Backup(af.Task):\n    def run(self):\n        pass\n"
    )
    path = write_pyproject(
        project,
        """
        [tool.actorflow.modules]
        backup = "plant_jobs:Backup"
        thermometer = "plant_sensors:Thermometer"
        """,
    )
    registry = af.Registry.discover(path)
    assert registry.load_task("backup").__name__ == "Backup"
    with pytest.raises(af.RegistryError, match=r"is not a subclass of actorflow\.Task"):
        registry.load_task("thermometer")
    with pytest.raises(af.RegistryError, match=r"is not a subclass of actorflow\.Source"):
        registry.load("backup")
