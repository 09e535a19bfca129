"""Graph files: TOML descriptions, checked with errors naming file, table and key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

import actorflow as af


class Readings(af.Source):
    outputs: ClassVar = {"out": float}

    def __init__(self, count: int, scale: float = 1.0, label: str = "t") -> None:
        self.count = count
        self.scale = scale

    def start(self) -> list[float]:
        return [n * self.scale for n in range(self.count)]


class Store(af.Sink):
    inputs: ClassVar = {"in": float}
    seen: ClassVar[list[float]] = []

    def consume(self, data: float) -> None:
        Store.seen.append(data)


class Transcode(af.Task):
    def __init__(self, frames: int, codec: str = "av1") -> None:
        self.frames = frames
        self.codec = codec

    def run(self) -> None:
        self.report(100, f"{self.frames} frames in {self.codec}")


@pytest.fixture
def registry() -> af.Registry:
    return af.Registry(
        {
            "readings": af.RegistryEntry("readings", f"{__name__}:Readings", "test"),
            "store": af.RegistryEntry("store", f"{__name__}:Store", "test"),
            "transcode": af.RegistryEntry("transcode", f"{__name__}:Transcode", "test"),
        }
    )


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
    [graph]
    name = "plant"

    [settings]
    quantum = 0.005

    [modules.readings]
    module = "readings"
    config = { count = 4, scale = 0.5 }
    supervise = { restart = "transient", attempts = 2 }

    [modules.store]
    module = "store"

    [[links]]
    from = "readings"
    to = "store"
    buffer = 8
    overflow = "block"
"""


def test_a_graph_file_loads_and_runs(tmp_path: Path, registry: af.Registry) -> None:
    """Modules, config, links, supervision and settings all come from the file."""
    graph, settings = af.load_graph(write(tmp_path, GOOD), registry)
    assert graph.name == "plant"
    assert settings.quantum == 0.005
    assert graph.links[0].buffer == 8
    assert graph.supervision_of("readings").attempts == 2
    Store.seen.clear()
    af.run(graph, settings)
    assert Store.seen == [0.0, 0.5, 1.0, 1.5]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            GOOD.replace("count = 4, scale = 0.5", "cuont = 4"),
            [
                "[modules.readings.config] key 'cuont': Readings takes no such key "
                "(keys: count, scale, label)",
                "[modules.readings.config]: required key 'count' is missing",
            ],
        ),
        (
            GOOD.replace("count = 4", 'count = "four"'),
            ["[modules.readings.config] key 'count': expected int, got str 'four'"],
        ),
        (
            GOOD.replace('module = "store"', 'module = "archive"'),
            ["[modules.store] key 'module': module 'archive' is not enabled"],
        ),
        (GOOD.replace("buffer = 8", "buffer = 0"), ["[[links]] #1 (readings -> store): buffer"]),
        (GOOD.replace("buffer = 8", "bufer = 8"), ["[[links]] #1 unknown key 'bufer'"]),
        (
            GOOD.replace('to = "store"', 'to = "nowhere"'),
            ["graph: link readings.out -> nowhere.in"],
        ),
        (GOOD.replace("quantum = 0.005", "quantum = -1"), ["[settings] key 'quantum'"]),
        (GOOD.replace("quantum = 0.005", "quantom = 1"), ["[settings] unknown key 'quantom'"]),
        (GOOD + "\n[extra]\nx = 1\n", ["unknown table or key 'extra'"]),
        (GOOD.replace("attempts = 2", "attempts = 0"), ["[modules.readings] key 'supervise'"]),
    ],
)
def test_each_mistake_is_named_by_file_table_and_key(
    tmp_path: Path, registry: af.Registry, body: str, expected: list[str]
) -> None:
    """Bad input gives a GraphFileError whose problems point at the table and key."""
    path = write(tmp_path, body)
    with pytest.raises(af.GraphFileError) as caught:
        af.load_graph(path, registry)
    assert str(path) in str(caught.value)
    for fragment in expected:
        assert any(fragment in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("[modules\n", "not valid TOML"),
        ("", "needs at least one module"),
    ],
)
def test_missing_or_broken_files_are_clear_errors(
    tmp_path: Path, registry: af.Registry, content: Any, message: str
) -> None:
    """A missing file, broken TOML or an empty graph each say so."""
    path = tmp_path / "graph.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(af.GraphFileError, match=message):
        af.load_graph(path, registry)


JOB = """
    [job]
    name = "transcode-all"

    [tasks.small]
    module = "transcode"
    config = { frames = 10 }

    [tasks.large]
    module = "transcode"
    config = { frames = 1000, codec = "h264" }
"""


def test_a_job_file_loads_its_tasks_in_file_order_and_runs(
    tmp_path: Path, registry: af.Registry
) -> None:
    job = af.load_job(write(tmp_path, JOB), registry)
    assert job.name == "transcode-all"
    assert job.tasks == ("small", "large")
    result = job.run_blocking()
    assert result.ok
    assert [t.info for t in result.tasks] == ["10 frames in av1", "1000 frames in h264"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            JOB.replace("frames = 10", "frames = 1.5"),
            "[tasks.small.config] key 'frames': expected",
        ),
        (JOB.replace("frames = 10", "fps = 10"), "[tasks.small.config] key 'fps': Transcode"),
        (JOB.replace('name = "transcode-all"', "title = 1"), "[job] unknown key 'title'"),
        (JOB + "\n[settings]\nquantum = 1\n", "unknown table or key 'settings'"),
        (
            JOB.replace('module = "transcode"\n    config = { frames = 10 }', ""),
            "[tasks.small]: required key 'module'",
        ),
        (
            JOB.replace('module = "transcode"\n    config = { frames = 10 }', 'module = "store"'),
            "is not a subclass of actorflow.Task",
        ),
        (
            JOB.replace(
                'module = "transcode"\n    config = { frames = 10 }',
                'module = "transcode"\n    config = 3',
            ),
            "[tasks.small] key 'config': expected a table",
        ),
        ('[job]\nname = "empty"\n', "[tasks]: a job needs at least one task table"),
        ('job = 3\n[tasks.a]\nmodule = "transcode"\n', "[job]: expected a table"),
        ("[tasks]\na = 3\n", "[tasks.a]: expected a table"),
    ],
)
def test_each_job_file_mistake_is_named(
    tmp_path: Path, registry: af.Registry, body: str, expected: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(af.GraphFileError) as caught:
        af.load_job(path, registry)
    assert str(path) in str(caught.value)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


class Idle(af.Task):
    """A task that defines no ``__init__``."""

    def run(self) -> None:
        pass


def test_a_class_without_init_takes_no_config_keys(tmp_path: Path, registry: af.Registry) -> None:
    """object.__init__ reads as ``(*args, **kwargs)``, yet takes nothing: a key given to a
    module or task class that defines no ``__init__`` is refused at load, not at start."""
    path = write(
        tmp_path, GOOD.replace('module = "store"', 'module = "store"\nconfig = {colur = 1}')
    )
    with pytest.raises(
        af.GraphFileError,
        match=r"\[modules.store.config\] key 'colur': Store takes no such key \(keys: none\)",
    ):
        af.load_graph(path, registry)
    registry.entries["idle"] = af.RegistryEntry("idle", f"{__name__}:Idle", "test")
    path = write(tmp_path, '[tasks.a]\nmodule = "idle"\nconfig = {frames = 2}\n')
    with pytest.raises(af.GraphFileError, match="Idle takes no such key"):
        af.load_job(path, registry)
    path = write(tmp_path, '[tasks.a]\nmodule = "idle"\n')
    assert list(af.load_job(path, registry).tasks) == ["a"]


def test_a_graph_file_is_not_a_job_and_a_job_file_is_not_a_graph(
    tmp_path: Path, registry: af.Registry
) -> None:
    graph_file = write(tmp_path, GOOD)
    with pytest.raises(af.GraphFileError, match="describes a graph"):
        af.load_job(graph_file, registry)
    job_file = tmp_path / "job.toml"
    job_file.write_text(textwrap.dedent(JOB))
    with pytest.raises(af.GraphFileError, match="describes a job"):
        af.load_graph(job_file, registry)


def test_a_file_that_is_not_text_is_a_clear_error(tmp_path: Path, registry: af.Registry) -> None:
    path = tmp_path / "graph.toml"
    path.write_bytes(b"\xff\xfe[modules]")
    with pytest.raises(af.GraphFileError, match="not UTF-8 text"):
        af.load_graph(path, registry)
