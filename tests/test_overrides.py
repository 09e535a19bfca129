"""--set KEY=VALUE and ACTORFLOW_* settings: a file's keys replaced before it is checked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import GOOD, REGISTRY

import actorflow as af
from actorflow._cli import main
from actorflow._overrides import from_environment, parse_assignment, parse_value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("0.5", 0.5),
        ("true", True),
        ('"quoted"', "quoted"),
        ("[1, 2]", [1, 2]),
        ("{ min = 1 }", {"min": 1}),
        ("redis://:secret@host:6379/0", "redis://:secret@host:6379/0"),
        ("", ""),
        ("inf", float("inf")),
    ],
)
def test_a_value_is_read_as_toml_else_as_text(text: str, value: Any) -> None:
    assert parse_value(text) == value


def test_overrides_replace_settings_config_links_and_supervisor(tmp_path: Path) -> None:
    path = tmp_path / "plant.toml"
    path.write_text(GOOD)
    graph, settings = af.load_graph(
        path,
        REGISTRY,
        overrides={
            "quantum": 0.005,  # a setting named on its own
            "settings.remote_url": "redis://h/0",
            "modules.readings.config.count": 7,  # a table the file does not have
            "links.1.buffer": 3,
            "supervisor.max_restarts": 4,
        },
    )
    assert settings.quantum == 0.005
    assert settings.remote_url == "redis://h/0"
    assert graph.modules[0].config == {"count": 7}
    assert graph.links[0].buffer == 3
    assert graph.root.max_restarts == 4


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("quantum", 0, "[settings] key 'quantum': quantum must be seconds"),
        ("modules.readings.config.cont", 1, "did you mean 'count'?"),
        ("quantm", 1, "override 'quantm': no table 'quantm' (did you mean 'quantum'?)"),
        ("links.2.buffer", 1, "override 'links.2.buffer': '2' is not a number from 1 to 1"),
        ("graph.name.x", 1, "override 'graph.name.x': graph.name is str, not a table"),
        ("modules..config", 1, "an empty part in the key"),
        ("modules.reading.config.count", 1, "no module 'reading' (did you mean 'readings'?)"),
        ("modules", 1, "[modules]"),
    ],
)
def test_a_bad_override_is_a_graph_file_error_naming_the_key(
    tmp_path: Path, key: str, value: Any, expected: str
) -> None:
    path = tmp_path / "plant.toml"
    path.write_text(GOOD)
    with pytest.raises(af.GraphFileError) as caught:
        af.load_graph(path, REGISTRY, overrides={key: value})
    assert expected in str(caught.value)


def test_actorflow_environment_variables_override_settings_only() -> None:
    found = from_environment(
        {"ACTORFLOW_REMOTE_URL": "redis://h/0", "ACTORFLOW_QUANTUM": "0.02", "ACTORFLOW_X": "1"}
    )
    assert found == {"settings.remote_url": "redis://h/0", "settings.quantum": 0.02}


def test_an_assignment_needs_a_key_and_an_equals_sign() -> None:
    assert parse_assignment(" a.b = 5 ") == ("a.b", 5)
    assert parse_assignment("url=redis://h/0?a=b") == ("url", "redis://h/0?a=b")
    for text in ("nothing", "=5", ""):
        with pytest.raises(ValueError, match="expected KEY=VALUE"):
            parse_assignment(text)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.actorflow.modules]\nreadings = "test_bad_input:Readings"\n'
        'store = "test_bad_input:Store"\n'
    )
    (tmp_path / "plant.toml").write_text(GOOD)
    return tmp_path


def test_the_command_line_takes_set_and_the_environment_set_wins(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTORFLOW_QUANTUM", "0")
    code, _, err = run_cli(["validate", "plant.toml"], capsys)
    assert code == 2
    assert "quantum must be seconds" in err
    code, out, err = run_cli(["validate", "plant.toml", "--set", "quantum=0.01"], capsys)
    assert code == 0, err
    assert "valid graph" in out


keys = st.lists(
    st.one_of(
        st.sampled_from(["settings", "modules", "links", "supervisor", "graph", "readings"]),
        st.sampled_from(["quantum", "config", "count", "buffer", "1", "0", "name", ""]),
        st.text(max_size=6),
    ),
    min_size=1,
    max_size=5,
).map(".".join)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=keys, value=st.text(max_size=12))
def test_any_set_option_is_applied_or_refused_in_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], key: str, value: str
) -> None:
    """Fuzzed --set: the file is valid (exit 0) or the one error line names the file or
    the option (exit 2); never a traceback."""
    code, _, err = run_cli(["validate", "plant.toml", f"--set={key}={value}"], capsys)
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("error: ")


def test_a_value_with_a_key_of_100_000_parts_is_read_at_once_as_text() -> None:
    """``--set x={a.a.a...=1}``: tomllib is quadratic in a key's parts, so such a value is
    refused before it parses and stays the text it was, like any other non-TOML value."""
    text = "{" + ".".join(["a"] * 100_000) + " = 1}"
    started = time.perf_counter()
    assert parse_value(text) == text
    assert time.perf_counter() - started < 2
    assert parse_value("{a.b = 1}") == {"a": {"b": 1}}
