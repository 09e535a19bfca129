"""Fuzz the command line: any arguments end with exit 0, 1 or 2 and no traceback."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from actorflow._cli import main
from actorflow._logging import _release_owned_stream

_chdir = contextlib.chdir

WORDS = [
    "run",
    "validate",
    "modules",
    "graph",
    "logs",
    "init",
    "completion",
    "bash",
    "--name",
    "--version",
    "--traceback",
    "--set",
    "quantum=0",
    "modules.readings.config.count=2",
    "links.1.buffer=x",
    "--log",
    "--log-level",
    "--only",
    "--format",
    "dot",
    "mermaid",
    "--view",
    "--no-view",
    "--actor",
    "--event",
    "--level",
    "--since",
    "--until",
    "--summary",
    "--trace",
    "--json",
    "-f",
    "debug",
    "10m",
    "x",
    "-h",
    "--",
    "",
    "\x00",
    "é",
]
PATHS = ["DIR", "MISSING", "UNDER_FILE", "EMPTY", "GARBAGE", "GRAPH", "LOG", "GOOD", "NEWLOG"]


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli")
    (root / "empty.toml").write_text("")
    (root / "garbage.toml").write_bytes(b"\xff[[[\x00")
    (root / "file").write_text("")
    (root / "graph.toml").write_text("[modules.a]\nmodule = 'nope'\n")
    (root / "pyproject.toml").write_text(
        "[tool.actorflow.modules]\n"
        'readings = "tests.test_bad_input:Readings"\nstore = "tests.test_bad_input:Store"\n'
        'broken = "tests.no_such_module:Thing"\n'
    )
    (root / "good.toml").write_text(
        "[modules.readings]\nmodule = 'readings'\n[modules.store]\nmodule = 'store'\n"
        "[[links]]\nfrom = 'readings'\nto = 'store'\n"
    )
    (root / "log.jsonl").write_text('{"event": "x"}\nnot json\n')
    return {
        "DIR": str(root),
        "MISSING": str(root / "missing.toml"),
        "UNDER_FILE": str(root / "file" / "x.toml"),
        "EMPTY": str(root / "empty.toml"),
        "GARBAGE": str(root / "garbage.toml"),
        "GRAPH": str(root / "graph.toml"),
        "LOG": str(root / "log.jsonl"),
        "GOOD": str(root / "good.toml"),
        "NEWLOG": str(root / "new.log"),
    }


words = st.sampled_from(WORDS + PATHS) | st.text(max_size=8)
options = st.tuples(
    st.sampled_from(["--log", "--log-level", "--only", "--format", "--view", "--set"]),
    st.sampled_from([*PATHS, "debug", "loud", "dot", "readings", "x", "a=1", "quantum=1e-9"]),
)
arguments = st.lists(words, max_size=7) | st.tuples(
    st.sampled_from(["run", "validate", "graph"]),
    st.sampled_from(["GOOD", "GRAPH", "DIR", "GARBAGE", "UNDER_FILE"]),
    st.lists(options, max_size=3),
).map(lambda t: [t[0], t[1], *(word for pair in t[2] for word in pair)])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=arguments)
@example(argv=["run", "GOOD", "--log", "DIR"])
@example(argv=["run", "GOOD", "--log", "UNDER_FILE"])
@example(argv=["run", "GOOD", "--log", "NEWLOG", "--log-level", "loud"])
@example(argv=["modules"])
@example(argv=["validate", "a\x00b"])
@example(argv=["logs", "a\x00b"])
@example(argv=["run", "GOOD", "--log", "a\x00b"])
def test_any_arguments_exit_0_1_or_2_without_a_traceback(
    place: dict[str, str], argv: list[str]
) -> None:
    argv = [place.get(word, word) for word in argv]
    if "-f" in argv or "--follow" in argv or ("run" in argv[:1]):
        argv = [word for word in argv if word not in ("-f", "--follow")]
    err = io.StringIO()
    with (
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
        _chdir(Path(place["DIR"])),
    ):
        try:
            code: object = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        finally:  # a run may have configured logging: leave none behind
            structlog.reset_defaults()
            _release_owned_stream()
    assert code in (0, 1, 2, None), (argv, err.getvalue())
    assert "Traceback" not in err.getvalue()


def test_a_bad_path_in_a_real_process_is_one_line(place: dict[str, str]) -> None:
    for argv in (["validate", place["DIR"]], ["logs", place["UNDER_FILE"]]):
        result = subprocess.run(
            [sys.executable, "-m", "actorflow", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(place["DIR"]),
        )
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
