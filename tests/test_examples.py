"""Every example runs, as a user would run it, and says what it should."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_every_example_is_covered_here() -> None:
    """A new example must get a test in this file."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "aio_service.py",
        "encode_job.py",
        "interactive_threshold.py",
        "progressive_stats.py",
        "sensor_pipeline.py",
        "ticker.py",
    ]
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == [
        "encode_job.toml",
        "sensor_pipeline.toml",
    ]


def run_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("cwd", [EXAMPLES.parent, EXAMPLES])
def test_sensor_pipeline_graph_file_runs_from_the_command_line(cwd: Path) -> None:
    """The graph-file form of the sensor pipeline gives the same results as the script,
    from the repository root or from another directory (the registry is found from the
    file's own location)."""
    result = run_command("run", str(EXAMPLES / "sensor_pipeline.toml"), cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert "graph 'sensor-pipeline' done, dropped=0" in result.stdout
    assert "t0: 625 readings, mean 20.50 C" in result.stdout
    assert "alerts: 61" in result.stdout
    assert re.search(r"^stats\b.*\bterminated\s+2,500\s+0\b", result.stdout, re.MULTILINE)


def test_encode_job_file_runs_from_the_command_line() -> None:
    """The job file runs probe, encode and package in order, with their reports."""
    result = run_command("run", "examples/encode_job.toml", cwd=EXAMPLES.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("encode: 100%  frame 48/48") < out.index("package  succeeded")
    assert "encode  succeeded" in out
    assert "job 'encode-movie' done: 3 tasks succeeded" in out


def test_interactive_threshold_restarts_on_change_and_is_resurrected() -> None:
    """Changing the parameter mid-run restarts the partial results; a new one after the
    end resurrects the terminated module; a stop ends it for good."""
    result = run_example("examples/interactive_threshold.py", "--rows", "40000")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("threshold +1.0:  ") < out.index("changes the threshold to 2.0")
    assert "threshold +2.0: 100% done" in out
    assert "-> explorer is terminated; the user asks for threshold 0.0" in out
    assert "threshold +0.0: 100% done, 50." in out
    assert out.rstrip().endswith("explorer ended: terminated")


def test_encode_job_runs_its_tasks_in_order_with_progress() -> None:
    """The job example runs probe, encode and package and reports each."""
    result = run_example("examples/encode_job.py")
    assert result.returncode == 0, result.stderr
    assert "encode: 100%  frame 48/48" in result.stdout
    assert "job done: probe, encode, package" in result.stdout


def test_encode_job_failure_names_the_task_and_stops_the_job() -> None:
    """With --fail the encoder fails: package does not run, cleanup does, exit code 1."""
    result = run_example("examples/encode_job.py", "--fail")
    assert result.returncode == 1
    assert "encode: temporary files removed" in result.stdout
    assert "package  not_run" in result.stdout
    assert "job failed: module 'encode' failed in run: RuntimeError: encoder crashed" in (
        result.stdout
    )


def test_progressive_stats_reports_partial_results_then_the_histogram() -> None:
    """The progressive example prints progress lines, a histogram and the final mean."""
    result = run_example("examples/progressive_stats.py", "--rows", "60000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("100%  rows=   60,000") for line in lines)
    assert sum(line.lstrip().startswith(("-", "+")) and "#" in line for line in lines) == 12
    assert "partial results, final mean +0.2" in lines[-1]


def test_sensor_pipeline_runs_to_completion() -> None:
    """The README's example runs end to end and accounts for every reading."""
    result = run_example("examples/sensor_pipeline.py")
    assert result.returncode == 0, result.stderr
    assert "graph 'sensor-pipeline' done, dropped=0" in result.stdout
    assert "t0: 625 readings" in result.stdout
    assert "stats  terminated in=2500" in result.stdout
    assert result.stderr == ""


def test_sensor_pipeline_json_logs_are_json_lines() -> None:
    """With --json, whatever is logged to stderr is one JSON object per line."""
    result = run_example("examples/sensor_pipeline.py", "--json")
    assert result.returncode == 0, result.stderr
    for line in result.stderr.splitlines():
        assert isinstance(json.loads(line), dict)


def test_ticker_stops_by_itself_with_count() -> None:
    """The ticker example ends by itself and cleans up every module in order."""
    result = run_example("examples/ticker.py", "--count", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "tick 0",
        "tick 1",
        "tick 4",
        "cleanup: ticks",
        "cleanup: square",
        "cleanup: show",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_the_graph_in_order_with_cleanup() -> None:
    """SIGINT (Ctrl-C) stops a running graph: cleanups run producers first, exit 130."""
    # Reset SIGINT in the child: a parent shell may have started us with it ignored.
    code = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['ticker.py']; runpy.run_path('examples/ticker.py', run_name='__main__')"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=EXAMPLES.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "tick 0\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert out.splitlines()[-4:] == [
        "cleanup: ticks",
        "cleanup: square",
        "cleanup: show",
        "interrupted: stopped in order",
    ]
    assert "Traceback" not in err


def request(port: int, method: str, path: str, body: object = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def service() -> Iterator[tuple[subprocess.Popen[str], int]]:
    child = subprocess.Popen(
        [sys.executable, "examples/aio_service.py", "--port", "0", "--limit", "30"],
        cwd=EXAMPLES.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), child.stderr.read()
        yield child, int(line.rsplit(":", 1)[1])
    finally:
        child.kill()
        child.communicate()


def test_aio_service_serves_a_graph_over_real_http(
    service: tuple[subprocess.Popen[str], int],
) -> None:
    """Readings POSTed over HTTP flow through the graph inside asyncio; alerts come back
    on a long poll; the status shows what the stats module reports; a shutdown drains
    the graph and ends the service."""
    child, port = service
    readings = [("t1", 21.0), ("t2", 31.5), ("t1", 23.0), ("t2", 35.0), ("t1", 19.0)]
    ids = []
    for sensor, celsius in readings:
        status, answer = request(port, "POST", "/readings", {"sensor": sensor, "celsius": celsius})
        assert status == 202
        ids.append(answer["id"])
    status, alerts = request(port, "GET", "/alerts?wait=2")
    assert status == 200
    assert [(a["sensor"], a["celsius"], a["id"]) for a in alerts] == [
        ("t2", 31.5, ids[1]),
        ("t2", 35.0, ids[3]),
    ]
    assert request(port, "POST", "/readings", {"celsius": 3})[0] == 400
    assert request(port, "GET", "/nowhere")[0] == 404
    status, final = request(port, "POST", "/shutdown")
    assert status == 200
    assert final["actors"]["stats"]["received"] == 5
    assert final["actors"]["stats"]["info"] == {"t1": 21.0, "t2": 33.25}
    assert final["actors"]["stats"]["task"] == "averaging"
    assert final["dropped"] == 0
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.strip() == "done: 2 alerts"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_aio_service_ctrl_c_cancels_the_graph_and_exits_130(
    service: tuple[subprocess.Popen[str], int],
) -> None:
    child, port = service
    assert request(port, "GET", "/status")[1]["state"] == "running"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "interrupted: the graph was cancelled and cleaned up" in out
    assert "Traceback" not in err
