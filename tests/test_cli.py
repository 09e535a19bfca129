"""The actorflow command line, run as a user would, in a project of its own."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import actorflow
from actorflow._cli import _parser

CHECKOUT = Path(actorflow.__file__).resolve().parent.parent
"""The actorflow under test, put on the subprocess's path before any installed copy."""

PLANT = """
from typing import ClassVar
import actorflow as af

class Readings(af.Source):
    outputs: ClassVar = {"out": float}
    def __init__(self, count: int) -> None:
        self.count = count
    def start(self):
        return [float(n) for n in range(self.count)]

class Store(af.Sink):
    inputs: ClassVar = {"in": float}
    def consume(self, data: float) -> None:
        if data < 0:
            raise ValueError("negative reading")

class Copy(af.Task):
    def __init__(self, files: int, fail: bool = False) -> None:
        self.files = files
        self.fail = fail
    def validate(self) -> None:
        if self.files < 0:
            raise ValueError("files must be >= 0")
    def run(self) -> None:
        self.report(50, f"file 1/{self.files}")
        if self.fail:
            raise OSError("disk full")
        self.report(100, f"file {self.files}/{self.files}")
    def cleanup(self) -> None:
        print(f"cleanup {self.name}", flush=True)

class Broken(af.Processor):
    inputs: ClassVar = {"in": float}
    outputs: ClassVar = {"out": float}
    def process(self, data: float) -> float:
        raise ValueError("broken")
"""

GRAPH = """
[graph]
name = "plant"

[modules.readings]
module = "readings"
config = { count = 5 }

[modules.store]
module = "store"

[[links]]
from = "readings"
to = "store"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "plant.py").write_text(PLANT)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.actorflow.modules]
            readings = "plant:Readings"
            store = "plant:Store"
            broken = "plant:Broken"
            copy = "plant:Copy"
            """
        )
    )
    (tmp_path / "plant.toml").write_text(GRAPH)
    return tmp_path


def actorflow(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(CHECKOUT)])}
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_runs_a_graph_file_and_exits_0(project: Path) -> None:
    """`actorflow run FILE` runs the graph to its end and prints a summary."""
    result = actorflow(project, "run", "plant.toml")
    assert result.returncode == 0, result.stderr
    assert "graph 'plant' done, dropped=0" in result.stdout
    assert re.search(r"^store\b.*\bterminated\s+5\s+0\b", result.stdout, re.MULTILINE)


def test_validate_accepts_a_good_file_and_refuses_a_bad_one_with_exit_2(project: Path) -> None:
    """`actorflow validate` says what is wrong, naming file, table and key, exit 2."""
    good = actorflow(project, "validate", "plant.toml")
    assert good.returncode == 0
    assert "valid graph 'plant' (2 modules, 1 links)" in good.stdout
    (project / "bad.toml").write_text(GRAPH.replace("count = 5", "count = 'five'"))
    bad = actorflow(project, "validate", "bad.toml")
    assert bad.returncode == 2
    assert "bad.toml" in bad.stderr
    assert "[modules.readings.config] key 'count': expected int" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_validate_json_says_what_is_valid_or_every_problem(project: Path) -> None:
    """`validate --json`: one object on stdout, for scripts, with the exit code as before."""
    good = actorflow(project, "validate", "plant.toml", "--json")
    assert good.returncode == 0
    assert json.loads(good.stdout) == {
        "file": "plant.toml",
        "valid": True,
        "name": "plant",
        "kind": "graph",
        "modules": ["readings", "store"],
        "links": ["readings.out -> store.in"],
    }
    (project / "bad.toml").write_text(
        GRAPH.replace("count = 5", "count = 'five'").replace('to = "store"', 'to = "stor"')
    )
    bad = actorflow(project, "validate", "bad.toml", "--json")
    assert bad.returncode == 2
    verdict = json.loads(bad.stdout)
    assert verdict["valid"] is False
    assert any("key 'count': expected int" in problem for problem in verdict["problems"])
    (project / "job.toml").write_text(JOB)
    job = actorflow(project, "validate", "job.toml", "--json")
    assert json.loads(job.stdout)["tasks"] == ["first", "second"]


def test_modules_json_is_one_object_per_entry(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.actorflow.modules]\nreadings = "plant:Readings"\nghost = "plant_gone:Ghost"\n'
    )
    result = actorflow(project, "modules", "--json")
    assert result.returncode == 0
    entries = {entry["name"]: entry for entry in map(json.loads, result.stdout.splitlines())}
    assert entries["readings"] == {
        "name": "readings",
        "target": "plant:Readings",
        "origin": "pyproject.toml",
        "problem": None,
    }
    assert "plant_gone" in entries["ghost"]["problem"]


def test_a_missing_file_is_bad_input(project: Path) -> None:
    """A file that does not exist is exit 2 with its name, not a traceback."""
    result = actorflow(project, "run", "nope.toml")
    assert result.returncode == 2
    assert "nope.toml: invalid graph file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_graph_failing_at_run_time_exits_1(project: Path) -> None:
    """A module that keeps failing makes `run` exit 1 with the error."""
    (project / "failing.toml").write_text(
        GRAPH.replace('to = "store"', 'to = "broken"')
        + '\n[modules.broken]\nmodule = "broken"\n\n[[links]]\nfrom = "broken"\nto = "store"\n'
        + "\n[supervisor]\nmax_restarts = 0\n"
    )
    result = actorflow(project, "run", "failing.toml")
    assert result.returncode == 1, result.stderr
    assert "module 'broken' failed in run" in result.stderr


def test_modules_lists_what_is_enabled_and_where_from(project: Path) -> None:
    """`actorflow modules` shows each enabled module with its origin."""
    result = actorflow(project, "modules")
    assert result.returncode == 0
    assert "readings" in result.stdout
    assert "plant:Readings" in result.stdout
    assert "pyproject.toml" in result.stdout


@pytest.mark.parametrize(
    ("fmt", "fragment"),
    [("mermaid", 'm0 -->|"out to in"| m1'), ("dot", '"readings" -> "store"')],
)
def test_graph_prints_mermaid_or_dot(project: Path, fmt: str, fragment: str) -> None:
    """`actorflow graph FILE --format` draws the graph."""
    result = actorflow(project, "graph", "plant.toml", "--format", fmt)
    assert result.returncode == 0
    assert fragment in result.stdout


def test_help_is_everywhere(project: Path) -> None:
    """Every command answers --help, and every option and argument has help text."""
    commands = [[], ["run"], ["validate"], ["modules"], ["graph"], ["logs"], ["init"]]
    for command in [*commands, ["completion"]]:
        result = actorflow(project, *command, "--help")
        assert result.returncode == 0
        assert "usage: actorflow" in result.stdout
    undocumented = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif not action.help and action.dest != "help":
                undocumented.append((path, action.option_strings or action.dest))

    walk(_parser(), ["actorflow"])
    assert undocumented == []


JOB = """
[job]
name = "backup"

[tasks.first]
module = "copy"
config = { files = 2 }

[tasks.second]
module = "copy"
config = { files = 3 }
"""


def test_run_runs_a_job_file_and_exits_0(project: Path) -> None:
    """A job file runs its tasks in order; every task's state and last report is shown."""
    (project / "backup.toml").write_text(JOB)
    result = actorflow(project, "run", "backup.toml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["cleanup second", "cleanup first"]
    assert "first  succeeded" in lines[2]
    assert lines[3].endswith("100.0%  file 3/3")
    assert lines[-1] == "job 'backup' done: 2 tasks succeeded"


def test_a_job_task_failing_exits_1_and_names_the_task(project: Path) -> None:
    """A task that raises stops the job (exit 1); later tasks do not run; cleanup does."""
    (project / "backup.toml").write_text(JOB.replace("files = 2 }", "files = 2, fail = true }"))
    result = actorflow(project, "run", "backup.toml")
    assert result.returncode == 1
    assert "module 'first' failed in run: OSError: disk full" in result.stderr
    assert "second  not_run" in result.stdout
    assert "cleanup first" in result.stdout
    # The failure's traceback shows where the task's own code raised, not the runtime.
    assert 'plant.py", line' in result.stderr
    assert 'raise OSError("disk full")' in result.stderr
    assert "actorflow/_job.py" not in result.stderr


def test_a_job_task_refusing_its_config_is_bad_input(project: Path) -> None:
    """validate() refusing is exit 2 and nothing runs."""
    (project / "backup.toml").write_text(JOB.replace("files = 3", "files = -1"))
    result = actorflow(project, "run", "backup.toml")
    assert result.returncode == 2
    assert "module 'second' failed in validate" in result.stderr
    assert "files must be >= 0" in result.stderr
    assert "cleanup" not in result.stdout


def test_validate_and_graph_understand_job_files(project: Path) -> None:
    (project / "backup.toml").write_text(JOB)
    valid = actorflow(project, "validate", "backup.toml")
    assert valid.stdout.strip() == "backup.toml: valid job 'backup' (2 tasks)"
    drawn = actorflow(project, "graph", "backup.toml")
    assert "t0 --> t1" in drawn.stdout
    assert 't0["first"]' in drawn.stdout
    dot = actorflow(project, "graph", "backup.toml", "--format", "dot")
    assert '"first" -> "second";' in dot.stdout


def test_a_bad_job_file_names_the_table_and_key(project: Path) -> None:
    """Unknown keys, wrong types and a graph module used as a task: exit 2, each named."""
    (project / "bad.toml").write_text(
        JOB.replace("files = 2 }", "files = 'two' }")
        + '\n[tasks.third]\nmodule = "store"\nretries = 3\n'
    )
    result = actorflow(project, "validate", "bad.toml")
    assert result.returncode == 2
    assert "bad.toml" in result.stderr
    assert "[tasks.first.config] key 'files': expected int, got str 'two'" in result.stderr
    assert "[tasks.third] unknown key 'retries'" in result.stderr
    assert "'plant:Store' is not a subclass of actorflow.Task" in result.stderr


def test_graph_files_are_found_relative_to_their_project(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Run from anywhere: the pyproject.toml above the file enables its modules, and the
    project's directory is importable without PYTHONPATH."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", str(project / "plant.toml")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "graph 'plant' done, dropped=0" in result.stdout


def test_a_job_file_run_with_the_view_draws_its_tasks(project: Path) -> None:
    """`--view` shows a job too: the job's state and each task's, then the summary."""
    (project / "backup.toml").write_text(JOB)
    result = actorflow(project, "run", "backup.toml", "--view")
    assert result.returncode == 0, result.stderr
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)
    assert "backup  done" in drawn
    assert re.search(r"second\s+succeeded", drawn)
    assert drawn.rstrip().endswith("job 'backup' done: 2 tasks succeeded")


def test_only_across_a_local_link_is_bad_input(project: Path) -> None:
    """Splitting a graph across processes needs remote links: exit 2, naming the link."""
    result = actorflow(project, "run", "plant.toml", "--only", "readings", "--no-view")
    assert result.returncode == 2
    assert "link readings.out -> store.in joins a module that runs here" in result.stderr
    assert "Traceback" not in result.stderr
    unknown = actorflow(project, "run", "plant.toml", "--only", "readings,store,ghost")
    assert unknown.returncode == 2
    assert "only: unknown module 'ghost'" in unknown.stderr


def test_with_a_log_file_warnings_and_errors_still_reach_the_console(project: Path) -> None:
    """--log sends every event to the file; what goes wrong is on stderr too, with the
    module's own traceback, and info events are not."""
    (project / "failing.toml").write_text(
        GRAPH.replace('to = "store"', 'to = "broken"')
        + '\n[modules.broken]\nmodule = "broken"\n\n[[links]]\nfrom = "broken"\nto = "store"\n'
        + "\n[supervisor]\nmax_restarts = 0\n"
    )
    result = actorflow(project, "run", "failing.toml", "--log", "run.jsonl")
    assert result.returncode == 1
    assert "actor.failed" in result.stderr
    assert "in process" in result.stderr  # the traceback's frame in Broken.process
    assert "actor.state" not in result.stderr
    events = [
        json.loads(line)["event"] for line in (project / "run.jsonl").read_text().splitlines()
    ]
    assert "actor.failed" in events
    assert "actor.state" in events


BUILD = """
import actorflow as af
from plant import Readings, Store

def build(count: int = 4) -> af.Graph:
    graph = af.Graph(name="built")
    graph.add("readings", Readings, count=count)
    graph.add("store", Store)
    graph.link("readings", "store")
    return graph

def with_settings():
    return build(), af.Settings(quantum=0.02)

graph = build(2)
broken = af.Graph()
broken.link("a", "b")
number = 5

def fails():
    raise RuntimeError("no graph today")
"""


def test_run_takes_a_graph_built_in_python(project: Path) -> None:
    """`run pkg.module:function` runs the graph it returns, with the summary and exit
    codes of a graph file; a variable naming a graph works too."""
    (project / "plant_build.py").write_text(BUILD)
    result = actorflow(project, "run", "plant_build:build", "--no-view")
    assert result.returncode == 0, result.stderr
    assert "graph 'built' done" in result.stdout
    assert re.search(r"^store\b.*\bterminated\s+4\b", result.stdout, re.MULTILINE), result.stdout
    for target in ("plant_build:graph", "plant_build:with_settings"):
        assert actorflow(project, "run", target, "--no-view").returncode == 0
    valid = actorflow(project, "validate", "plant_build:build", "--json")
    assert json.loads(valid.stdout)["modules"] == ["readings", "store"]
    assert actorflow(project, "run", "plant_build:build", "--set", "quantum=0.05").returncode == 0


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        ("plant_nope:build", (), "cannot import 'plant_nope'"),
        ("plant_build:missing", (), "has no attribute 'missing'"),
        ("plant_build:number", (), "it is int; expected a Graph"),
        ("plant_build:fails", (), "calling fails() failed: RuntimeError: no graph today"),
        ("plant_build:broken", (), "unknown module 'a'"),
        ("plant_build:build", ("--set", "links.1.buffer=2"), "takes settings only"),
        ("plant_build:build", ("--set", "quantum=-1"), "quantum must be seconds"),
    ],
)
def test_a_python_target_that_gives_no_graph_is_one_line_exit_2(
    project: Path, target: str, extra: tuple[str, ...], message: str
) -> None:
    (project / "plant_build.py").write_text(BUILD)
    result = actorflow(project, "run", target, "--no-view", *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


LOSSY = GRAPH.replace('to = "store"', 'to = "store"\nbuffer = 1\noverflow = "drop_newest"')


def test_the_summary_counts_drops_by_reason_and_strict_makes_them_fail(project: Path) -> None:
    """The totals line says what was lost and why; --strict turns any loss into exit 1."""
    (project / "plant.py").write_text(
        PLANT.replace("if data < 0:", "import time; time.sleep(0.01)\n        if data < 0:")
    )
    (project / "lossy.toml").write_text(LOSSY.replace("count = 5", "count = 50"))
    result = actorflow(project, "run", "lossy.toml", "--no-view")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"graph 'plant' done, dropped=(\d+) \(overflow \1\), dead_lettered=0, errors=0, "
        r"restarts=0",
        line,
    ), line
    strict = actorflow(project, "run", "lossy.toml", "--no-view", "--strict")
    assert strict.returncode == 1
    assert re.search(r"strict: 0 dead-lettered and \d+ dropped items", strict.stderr)
    clean = actorflow(project, "run", "plant.toml", "--no-view", "--strict")
    assert clean.returncode == 0, clean.stderr


def test_run_json_prints_the_summary_as_one_object(project: Path) -> None:
    result = actorflow(project, "run", "plant.toml", "--no-view", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["graph"] == "plant"
    assert summary["state"] == "done"
    assert summary["dropped"] == 0
    assert summary["signal"] is None
    assert summary["actors"]["store"]["in"] == 5
    assert summary["actors"]["readings"]["out"] == 5


def test_run_traceback_prints_the_whole_chain_of_a_failure(project: Path) -> None:
    failing = (
        GRAPH.replace('to = "store"', 'to = "broken"')
        + '\n[modules.broken]\nmodule = "broken"\n\n[[links]]\nfrom = "broken"\nto = "store"\n'
        + "\n[supervisor]\nmax_restarts = 0\n"
    )
    (project / "failing.toml").write_text(failing)
    plain_run = actorflow(project, "run", "failing.toml", "--no-view")
    traced = actorflow(project, "run", "failing.toml", "--no-view", "--traceback")
    assert plain_run.returncode == traced.returncode == 1
    assert "Traceback (most recent call last)" in traced.stderr
    assert 'raise ValueError("broken")' in traced.stderr
    assert "The above exception was the direct cause" in traced.stderr
    assert traced.stderr.strip().splitlines()[-1].startswith("error: ")
    # Without it, the failure event shows only the module's own frames.
    assert "actorflow/_" in traced.stderr
    assert "actorflow/_" not in plain_run.stderr


def test_a_failed_run_still_prints_its_summary_then_the_error(project: Path) -> None:
    """A run that fails once running shows what it did and lost (the table, the totals
    line) before the error, exit 1; with --json, the summary object."""
    failing = (
        GRAPH.replace('to = "store"', 'to = "broken"')
        + '\n[modules.broken]\nmodule = "broken"\n\n[[links]]\nfrom = "broken"\nto = "store"\n'
        + "\n[supervisor]\nmax_restarts = 0\n"
    )
    (project / "failing.toml").write_text(failing)
    result = actorflow(project, "run", "failing.toml", "--no-view")
    assert result.returncode == 1
    assert re.search(r"^broken\b.*\binvalid\b", result.stdout, re.MULTILINE), result.stdout
    assert "graph 'plant' failed, dropped=" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    as_json = actorflow(project, "run", "failing.toml", "--no-view", "--json")
    assert as_json.returncode == 1
    summary = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert summary["state"] == "failed"
    assert (
        sum(sum(a["dropped"].values()) for a in summary["actors"].values()) == summary["dropped"]
    )


def test_run_json_of_a_job_file_is_one_object(project: Path) -> None:
    (project / "backup.toml").write_text(JOB)
    result = actorflow(project, "run", "backup.toml", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["job"] == "backup"
    assert summary["state"] == "done"
    assert [task["state"] for task in summary["tasks"]] == ["succeeded", "succeeded"]
