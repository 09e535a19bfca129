"""Every example runs, as a user would run it, and says what it should; its modules do
what they should, each run on its own with actorflow.testing."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import actorflow as af
from actorflow.testing import Pause, Recorder, run_graph, run_module

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


# -- the examples' modules, one by one, with actorflow.testing -------------------------------


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module of its own (the examples are scripts, not
    a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sensors = load_example("sensor_pipeline")
ticker = load_example("ticker")
progressive = load_example("progressive_stats")
interactive = load_example("interactive_threshold")
readings_service = load_example("aio_service")


def reading(sensor: str, celsius: float) -> af.Data:
    return af.Data(fields={"raw": celsius, "celsius": celsius}, tags={"sensor": sensor})


def test_the_sensors_emit_their_readings_round_robin_and_in_time() -> None:
    """Readings cycle through the sensors, numbered in order, ``interval`` apart."""
    result = run_module(sensors.Sensors, config={"sensors": 3, "readings": 5, "interval": 0.5})
    assert [d.tags["sensor"] for d in result.output()] == ["t0", "t1", "t2", "t0", "t1"]
    assert [d.fields["seq"] for d in result.output()] == [0, 1, 2, 3, 4]
    assert result.output_times() == [0, 0.5, 1, 1.5, 2]
    assert result.output()[0].origin == "sensors"


def test_calibrate_applies_each_sensors_offset_and_refuses_a_broken_one() -> None:
    """Known sensors are shifted by their offset, others not; an offset above 5 degrees
    is refused before anything runs."""
    offsets = {"t0": 0.5, "t1": -0.25}
    items = [reading("t0", 20.0), reading("t1", 20.0), reading("t9", 20.0)]
    result = run_module(sensors.Calibrate, items, config={"offsets": offsets})
    assert [d.fields["celsius"] for d in result.output()] == [20.5, 19.75, 20.0]
    with pytest.raises(af.ValidationError, match="an offset above 5 degrees"):
        run_module(sensors.Calibrate, items, config={"offsets": {"t0": 6}})


def test_check_sends_readings_above_the_limit_out_on_alert_too() -> None:
    """Every reading flows on; those above the limit are also alerts."""
    items = [reading("t0", c) for c in (20.0, 28.5, 27.9, 35.0)]
    result = run_module(sensors.Check, items, config={"limit": 28.0})
    assert [d.fields["celsius"] for d in result.output()] == [20.0, 28.5, 27.9, 35.0]
    assert [d.fields["celsius"] for d in result.output("alert")] == [28.5, 35.0]


def test_the_sinks_report_when_they_clean_up(capsys: pytest.CaptureFixture[str]) -> None:
    """Stats prints a mean per sensor, Alerts the first three alerts and the count."""
    items = [reading("t0", 20.0), reading("t1", 30.0), reading("t0", 21.0)]
    run_module(sensors.Stats, items)
    assert (
        capsys.readouterr().out == "t0: 2 readings, mean 20.50 C\nt1: 1 readings, mean 30.00 C\n"
    )
    result = run_module(
        sensors.Alerts,
        [af.Data(fields={"seq": n, "celsius": 30}, tags={"sensor": "t0"}) for n in range(4)],
    )
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ALERT t0 seq={n} 30 C" for n in range(3)] + ["alerts: 4"]
    assert result.status.actors["alerts"].received == 4


def test_the_sensor_pipeline_accounts_for_every_reading() -> None:
    """The whole graph, on a small run: every reading reaches the stats, none is lost."""
    graph = sensors.build()
    graph.add("alerted", Recorder)
    graph.link("check.alert", "alerted")
    result = run_graph(graph)
    assert result.state is af.SystemState.DONE
    assert result.status.actors["stats"].received == 2500
    assert len(result.output("alerted")) == result.status.actors["alerts"].received
    assert result.dropped == 0


def test_ticks_come_once_per_interval_and_square_squares() -> None:
    """The ticker's source keeps its interval in virtual time; the squares follow."""
    result = run_module(ticker.Ticks, config={"interval": 0.05, "count": 3})
    assert result.output() == [0, 1, 2]
    assert result.output_times() == pytest.approx([0, 0.05, 0.1])
    assert run_module(ticker.Square, [0, 1, 4]).output() == [0, 1, 16]


def test_ticks_without_a_count_run_until_stopped() -> None:
    """Without a count the source runs until the system stops it. It has no stop() hook
    and sleeps a whole interval, so a stop cancels it ``stop_timeout`` (5 s) later."""
    result = run_module(ticker.Ticks, config={"interval": 60.0}, stop_after=150)
    assert result.output() == [0, 1, 2]
    assert result.elapsed == 155
    assert result.status.actors["ticks"].reason == "killed"


def test_progressive_stats_posts_partial_results_up_to_every_row() -> None:
    """Each step posts the mean and histogram so far; the last covers every row."""
    result = run_module(progressive.Stats, config={"rows": 5000})
    partials = result.output()
    rows = [partial["rows"] for partial in partials]
    assert rows == sorted(rows)
    assert rows[-1] == 5000
    assert sum(partials[-1]["histogram"]) == 5000
    assert partials[-1]["progress"] == 1.0
    assert abs(partials[-1]["mean"] - 0.25) < 0.05
    assert result.status.actors["stats"].progress == (5000, 5000)


def test_the_explorer_starts_over_for_each_new_threshold() -> None:
    """A new threshold restarts the partial results; each run reaches 100%."""
    items = [1.0, Pause(1), 2.0]
    result = run_module(interactive.Explorer, {"threshold": items}, config={"rows": 20_000})
    thresholds = [threshold for threshold, _, _ in result.output()]
    assert thresholds == sorted(thresholds)
    assert set(thresholds) == {1.0, 2.0}
    finals = {t: (progress, above) for t, progress, above in result.output() if progress == 1.0}
    assert set(finals) == {1.0, 2.0}
    assert abs(finals[1.0][1] - 0.159) < 0.01
    assert abs(finals[2.0][1] - 0.023) < 0.005
    assert result.state is af.SystemState.DONE


def test_the_service_graph_alerts_and_averages_by_sensor() -> None:
    """The readings sent to the service's inlet come out on its alerts outlet when hot;
    the stats module reports its means through the status."""
    readings = [reading("t1", 21.0), reading("t2", 31.5), reading("t1", 23.0)]
    result = run_graph(readings_service.build(limit=30.0), inputs={"readings": readings})
    assert [d.fields["celsius"] for d in result.output("alerts")] == [31.5]
    stats = result.status.actors["stats"]
    assert (stats.task, stats.info) == ("averaging", {"t1": 22.0, "t2": 31.5})
