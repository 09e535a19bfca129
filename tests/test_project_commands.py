"""The project commands a newcomer meets first: init, completion and --version."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import actorflow
from actorflow._scaffold import ScaffoldError, scaffold


def actorflow_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_makes_a_project_that_runs_and_passes_its_own_test(tmp_path: Path) -> None:
    made = actorflow_cli(tmp_path, "init", "plant", "--name", "my-plant")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "plant"
    assert (project / "src" / "my_plant" / "modules.py").is_file()
    ran = actorflow_cli(project, "run", "graph.toml", "--no-view")
    assert ran.returncode == 0, ran.stderr
    assert "printer: 9" in ran.stdout
    assert "graph 'my-plant' done" in ran.stdout
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout


def test_init_never_overwrites_and_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "graph.toml").write_text("mine")
    result = actorflow_cli(tmp_path, "init")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: graph.toml: exists already; nothing was written"
    ]
    assert (tmp_path / "graph.toml").read_text() == "mine"
    assert not (tmp_path / "pyproject.toml").exists()


@pytest.mark.parametrize("name", ["", "-x", "a b", "../up"])
def test_init_refuses_a_name_that_is_not_a_project_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScaffoldError, match="is not a project name"):
        scaffold(tmp_path / "p", name or "-")


def test_init_into_a_file_or_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for target in (tmp_path / "file", tmp_path / "file" / "below"):
        result = actorflow_cli(tmp_path, "init", str(target))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_a_keyword_or_digit_name_still_makes_an_importable_package(tmp_path: Path) -> None:
    written = scaffold(tmp_path / "p", "2fast")
    assert any(path.parent.name == "project_2fast" for path in written)


def test_version_prints_the_version() -> None:
    result = actorflow_cli(Path.cwd(), "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"actorflow {actorflow.__version__}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_completion_script_installs_and_knows_the_commands(tmp_path: Path) -> None:
    script = actorflow_cli(tmp_path, "completion", "bash")
    assert script.returncode == 0, script.stderr
    for command in ("run", "validate", "graph", "modules", "logs", "init", "--set"):
        assert command in script.stdout
    (tmp_path / "completion.bash").write_text(script.stdout)
    installed = subprocess.run(
        ["bash", "-c", f"source {tmp_path / 'completion.bash'} && complete -p actorflow"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    assert "actorflow" in installed.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_completion_completes_commands_options_and_file_names(tmp_path: Path) -> None:
    """Driven as bash drives it (COMP_WORDS): subcommands, options, and the graph file
    a command takes."""
    script = actorflow_cli(tmp_path, "completion", "bash").stdout
    (tmp_path / "completion.bash").write_text(script)
    (tmp_path / "drain.toml").write_text("")

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        driver = (
            f"source {tmp_path / 'completion.bash'}; "
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
            f"COMP_POINT={len(line)}; _shtab_actorflow; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        done = subprocess.run(
            ["bash", "-c", driver], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        return done.stdout.split()

    assert "run" in complete("actorflow", "ru")
    assert "--strict" in complete("actorflow", "run", "--st")
    assert "drain.toml" in complete("actorflow", "run", "dra")
    assert "drain.toml" in complete("actorflow", "validate", "dra")


@pytest.mark.parametrize("name", ["json", "trio", "actorflow", "tests"])
def test_init_with_a_name_python_already_knows_makes_a_package_that_shadows_nothing(
    tmp_path: Path, name: str
) -> None:
    made = actorflow_cli(tmp_path, "init", name)
    assert made.returncode == 0, made.stderr
    ran = actorflow_cli(tmp_path / name, "run", "graph.toml", "--no-view")
    assert ran.returncode == 0, ran.stderr
    assert "printer: 9" in ran.stdout
