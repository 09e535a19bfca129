"""Every Python snippet in the README and docs runs, so the documentation cannot rot."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import actorflow
import actorflow.aio

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(path for path in DOCS.rglob("*.md") if "_build" not in path.parts),
]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", DOCUMENTS, ids=name)
def test_snippets_run_in_order(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A document's snippets run top to bottom in one namespace without error."""
    namespace: dict[str, object] = {"__name__": "docs_" + re.sub(r"\W", "_", name(path))}
    for index, code in enumerate(snippets(path)):
        exec(compile(code, f"{name(path)}[snippet {index}]", "exec"), namespace)


def test_every_page_of_the_site_is_checked() -> None:
    """The pages in subfolders (tutorial, concepts, how-tos, reference) are found too."""
    found = {name(path) for path in DOCUMENTS}
    assert {"docs/index.md", "docs/reference/api.md"} <= found


def test_the_readme_has_snippets() -> None:
    """The README's first graph is checked by the test above."""
    assert len(snippets(ROOT / "README.md")) >= 2


def test_relative_links_in_docs_point_to_files() -> None:
    """Every relative Markdown link in the README and docs names an existing file."""
    link = re.compile(r"\]\(([^)#:]+)(#[^)]*)?\)")
    for path in DOCUMENTS:
        for target, _ in link.findall(path.read_text(encoding="utf-8")):
            assert (path.parent / target).exists(), f"{name(path)} links to missing {target}"


def test_the_api_reference_documents_every_public_name() -> None:
    """docs/reference/api.md has an autodoc entry for each name in ``actorflow.__all__``
    and ``actorflow.aio.__all__``, so a new public name cannot go undocumented, and none
    for a name that is no longer exported."""
    page = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    documented = set(
        re.findall(r"^\.\. auto(?:class|exception|function)::\s+(actorflow\.[\w.]+)", page, re.M)
    )
    exported = {f"actorflow.{n}" for n in actorflow.__all__} | {
        f"actorflow.aio.{n}" for n in actorflow.aio.__all__
    }
    assert not exported - documented, f"not in the API reference: {sorted(exported - documented)}"
    assert not documented - exported, (
        f"documented but not exported: {sorted(documented - exported)}"
    )


def project_files(page: str) -> dict[str, str]:
    """The files a page asks the reader to create: fences whose first line is
    ``# <file name>``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    fences = re.findall(r"^```(?:python|toml)\n# ([\w.-]+)\n(.*?)^```", text, re.M | re.S)
    return dict(fences)


def console_sessions(page: str) -> list[tuple[str, str]]:
    """Each ``$ command`` of a page's console fences, with the output shown after it."""
    text = (DOCS / page).read_text(encoding="utf-8")
    sessions: list[tuple[str, str]] = []
    for fence in re.findall(r"^```console\n(.*?)^```", text, re.M | re.S):
        for block in re.split(r"^(?=\$ )", fence, flags=re.M):
            if block.startswith("$ "):
                command, _, output = block[2:].partition("\n")
                sessions.append((command, output))
    return sessions


def test_the_tutorial_project_runs_from_the_command_line(tmp_path: Path) -> None:
    """The tutorial's files, written out as it says, give what its console session
    shows: the graph file validates and runs, its log reads back. Timings differ, so
    the summary's output is not compared (nor --help's, which the page does not show)."""
    files = project_files("tutorial.md")
    assert set(files) == {"temperatures.py", "pyproject.toml", "temperatures.toml"}
    for file, code in files.items():
        (tmp_path / file).write_text(code, encoding="utf-8")
    sessions = [s for s in console_sessions("tutorial.md") if s[0].startswith("actorflow ")]
    assert [command.split()[1] for command, _ in sessions] == [
        "--help",
        "validate",
        "run",
        "logs",
        "graph",
    ]
    for command, shown in sessions:
        result = subprocess.run(
            [sys.executable, "-m", "actorflow", *shlex.split(command)[1:]],
            cwd=tmp_path,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
        if shown and "--summary" not in command:
            assert result.stdout == shown, command


CONSOLE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands() -> list[str]:
    """The README's set-up commands: run an example, run the test suite."""
    blocks = CONSOLE.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    return [block.strip() for block in blocks[:2]]


@pytest.mark.parametrize("index", [0, 1], ids=["example", "tests"])
def test_readme_commands_are_one_venv_first_line(index: int) -> None:
    """Each set-up command is one line that makes a virtual environment first and runs
    nothing from the system Python but ``venv`` (Debian's Python is externally managed:
    a bare ``pip install`` is refused there)."""
    command = readme_commands()[index]
    assert "\n" not in command
    steps = [shlex.split(step) for step in command.split("&&")]
    assert steps[0] == ["python3", "-m", "venv", ".venv"]
    for step in steps[1:]:
        assert step[0].startswith(".venv/bin/"), f"{step[0]!r} is not the venv's"


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    """.ci/run ends with the README's test command, so CI tests what a newcomer runs."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_commands()[1] in ci
