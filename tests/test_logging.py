"""configure_logging and the default, quiet-unless-asked behaviour."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
import structlog.testing
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow import _logging
from actorflow._logging import Tracebacks, get_logger, log_write_error


def small_graph() -> af.Graph:
    graph = af.Graph(name="small")
    graph.add("src", Numbers, count=3)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    return graph


def test_json_logs_go_to_a_file_one_object_per_line(tmp_path: Path) -> None:
    """format='json' with a path writes JSON lines with stable event names and fields."""
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", level="info", file=str(path))
    af.run(small_graph())
    events = [json.loads(line) for line in path.read_text().splitlines()]
    states = [(e["actor"], e["state"]) for e in events if e["event"] == "actor.state"]
    assert ("src", "created") in states
    assert ("sink", "terminated") in states
    done = [e for e in events if e["event"] == "system.done"]
    assert done[0]["graph"] == "small"
    assert done[0]["dropped"] == 0
    assert all({"timestamp", "level"} <= e.keys() for e in events)
    # Debug-level churn is filtered out at info.
    assert all(e["level"] != "debug" for e in events)


def test_debug_level_shows_every_transition() -> None:
    """level='debug' includes the running/blocked transitions."""
    stream = io.StringIO()
    af.configure_logging(format="json", level="debug", file=stream)
    af.run(small_graph())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["event"] == "actor.state" and e["state"] == "running" for e in events)


def test_console_format_is_readable_text() -> None:
    """format='console' writes human-readable lines naming event and actor."""
    stream = io.StringIO()
    af.configure_logging(format="console", level="info", file=stream)
    af.run(small_graph())
    text = stream.getvalue()
    assert "actor.state" in text
    assert "actor=sink" in text
    assert not text.lstrip().startswith("{")


def test_unconfigured_logging_only_shows_warnings_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without configuration, info events stay quiet and warnings reach stderr."""
    af.run(small_graph())
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
    get_logger(actor="x").warning("actor.dropped", port="p", reason="unconnected", count=1)
    assert "actor.dropped" in capsys.readouterr().err


def test_unconfigured_warnings_follow_sys_stderr_when_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A logger made earlier writes to the stderr of the moment (a live view's proxy)."""
    log = get_logger(actor="x")
    replacement = io.StringIO()
    monkeypatch.setattr(sys, "stderr", replacement)
    log.warning("link.dropped", reason="shutdown", count=3)
    assert "link.dropped" in replacement.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "xml"}, "unknown log format 'xml'"),
        ({"level": "loud"}, "unknown log level 'loud'"),
    ],
)
def test_bad_logging_options_are_refused_by_name(kwargs: dict[str, str], message: str) -> None:
    """An unknown format or level is a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        af.configure_logging(**kwargs)  # type: ignore[arg-type]


def test_numeric_levels_are_accepted() -> None:
    """A logging level number works like its name."""
    stream = io.StringIO()
    af.configure_logging(format="json", level=30, file=stream)
    af.run(small_graph())
    assert stream.getvalue() == ""


def test_debug_logs_trace_each_data_message_through_every_actor(tmp_path: Path) -> None:
    """At debug level every actor logs the ids of the Data items it took and sent, so one
    message can be followed from its source to its sink (``actorflow logs --trace``)."""

    class Readings(af.Source):
        outputs: ClassVar = {"out": af.Data}

        def start(self) -> list[af.Data]:
            return [af.Data(fields={"n": n}) for n in range(3)]

    class Double(af.Processor):
        inputs: ClassVar = {"in": af.Data}
        outputs: ClassVar = {"out": af.Data}

        def process(self, data: af.Data) -> af.Data:
            return data.with_fields(n=data.fields["n"] * 2)

    graph = af.Graph(name="traced")
    graph.add("src", Readings)
    graph.add("double", Double)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "double", "sink")
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", level="debug", file=str(path))
    af.run(graph)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    sent = [e for e in events if e["event"] == "message.sent" and e["actor"] == "src"]
    first = sent[0]["message_ids"][0]
    hops = [
        (e["actor"], e["event"])
        for e in events
        if e["event"].startswith("message.") and first in e["message_ids"]
    ]
    assert hops == [
        ("src", "message.sent"),
        ("double", "message.received"),
        ("double", "message.sent"),
        ("sink", "message.received"),
    ]


def test_no_message_trace_events_at_info_level(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", level="info", file=str(path))
    af.run(small_graph())
    assert "message." not in path.read_text()


def test_capture_logs_in_a_harness_does_not_turn_on_every_event_afterwards(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """capture_logs() (what docs/howto/testing.md recommends) captures every event while
    it is active; after it, actorflow is as quiet as before it: structlog calls itself
    configured from then on, but with its builtin defaults, which are nobody's choice."""
    with structlog.testing.capture_logs() as captured:
        af.run(small_graph())
    assert any(e["event"] == "actor.state" and e["log_level"] == "debug" for e in captured)
    capsys.readouterr()
    af.run(small_graph())
    after = capsys.readouterr()
    assert (after.out, after.err) == ("", "")
    get_logger(actor="x").warning("actor.dropped", port="p", reason="unconnected", count=1)
    after = capsys.readouterr()
    assert after.out == ""
    assert "actor.dropped" in after.err


def test_an_application_configuration_is_still_honoured_after_capture_logs() -> None:
    """Telling structlog's builtin defaults apart does not ignore a real configuration."""
    with structlog.testing.capture_logs():
        pass
    stream = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    af.run(small_graph())
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["event"] == "system.done" for e in events)
    assert all(e.get("state") != "running" for e in events)  # debug filtered by the app


def test_running_a_graph_changes_no_global_logging_state() -> None:
    """actorflow configures nothing it was not asked to: structlog's configuration and
    the standard library's root logger are as the application left them."""
    root = logging.getLogger()
    before = (structlog.is_configured(), dict(structlog.get_config()))
    root_before = (root.level, list(root.handlers), logging.root.manager.disable)
    af.run(small_graph())
    with structlog.testing.capture_logs():
        af.run(small_graph())
    structlog.reset_defaults()
    assert (structlog.is_configured(), dict(structlog.get_config())) == before
    assert (root.level, list(root.handlers), logging.root.manager.disable) == root_before


def test_an_application_logging_through_the_generic_bound_logger_runs_graphs(
    tmp_path: Any,
) -> None:
    """structlog's generic BoundLogger cannot say which levels it writes: actorflow then
    writes every event through it instead of crashing on its first check."""
    import subprocess
    import sys

    script = tmp_path / "generic.py"
    script.write_text(
        "import structlog, trio, trio.testing\n"
        "import actorflow as af\n"
        "structlog.configure(processors=[structlog.processors.KeyValueRenderer()],\n"
        "    wrapper_class=structlog.BoundLogger,\n"
        "    logger_factory=structlog.PrintLoggerFactory(open('/dev/null', 'w')))\n"
        "async def main():\n"
        "    g = af.Graph(name='g')\n"
        "    g.add('a', af.Inlet); g.add('o', af.Outlet); g.link('a', 'o')\n"
        "    async with af.open_system(g, heartbeat_interval=1) as system:\n"
        "        await system.send('a', 1)\n"
        "        await trio.sleep(3)\n"
        "        await system.close('a')\n"
        "        async with system.receive('o') as items:\n"
        "            got = [n async for n in items]\n"
        "    print('got', got, system.status().state.value)\n"
        "trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "got [1] done" in done.stdout


class FillsUp(io.StringIO):
    """A log stream whose disk fills up after ``room`` writes."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise OSError(28, "No space left on device")
        self.room -= 1
        return super().write(text)


def test_a_log_that_cannot_be_written_mid_run_is_said_once_and_never_fails_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A full disk under the log is one line on stderr; the modules that log carry on."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=50)
    graph.add("sink", Collect, into=out)
    graph.link("src", "sink")
    stream = FillsUp(room=4)  # print() writes a line and its newline apart
    af.configure_logging(format="json", level="debug", file=stream)
    status = af.run(graph)
    assert out == list(range(50))
    assert status.actors["sink"].errors == 0
    err = capsys.readouterr().err
    assert err.count("cannot write the log") == 1, err
    assert "No space left on device" in err
    assert len(stream.getvalue().splitlines()) == 2
    assert log_write_error() is not None


class Glitchy(af.Processor):
    """Fails on every item, with a secret in its locals."""

    def process(self, data: int) -> int:
        password = "hunter2"  # noqa: F841 - a local that must never reach a log
        raise RuntimeError("sensor glitch")


def failing_graph() -> af.Graph:
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("glitchy", Glitchy)
    graph.add("sink", Collect, into=[])
    graph.link("src", "glitchy")
    graph.link("glitchy", "sink")
    graph.supervise("glitchy", restart="transient", attempts=2)
    graph.supervisor(max_restarts=5)
    return graph


def test_a_failure_event_carries_the_traceback_as_a_dict_in_json(tmp_path: Path) -> None:
    """In JSON lines an event's exception is a dict with its chain and frames (file,
    line, function), never the frames' locals. Each failure's event says what became
    of its item (tried again, then dead-lettered); the same traceback again is a
    reference to the event that has it, and a count."""
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", level="info", file=str(path))
    af.run(failing_graph())
    text = path.read_text()
    assert "hunter2" not in text
    events = [json.loads(line) for line in text.splitlines()]
    first, second = (e for e in events if e["event"] == "actor.failed")
    assert (first["attempts"], first["dead_lettered"], first["incarnation"]) == (1, False, 1)
    assert (second["attempts"], second["dead_lettered"], second["incarnation"]) == (2, True, 2)
    assert (second["same_traceback_as"], second["repeats"]) == (1, 1)
    assert "exception" not in second
    chain = first["exception"]
    frames = [frame for error in chain for frame in error["frames"]]
    assert any(frame["filename"] == __file__ and frame["name"] == "process" for frame in frames), (
        chain
    )
    assert any(error["exc_value"] == "sensor glitch" for error in chain)


def test_a_failure_on_the_console_shows_the_modules_own_frames(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without configuration, errors reach stderr with a short traceback: where the
    module's code raised, not the runtime's frames, and no locals."""
    af.run(failing_graph())
    err = capsys.readouterr().err
    assert "actor.failed" in err
    assert "dead_lettered=True" in err
    assert f'File "{__file__}"' in err
    assert 'raise RuntimeError("sensor glitch")' in err
    assert "hunter2" not in err
    assert "_actor/_consumer.py" not in err
    assert "trio/_core" not in err


class QuotesItsDatabase(af.Processor):
    """Fails with a message that quotes a URL with its password, as drivers do."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, item: int) -> int:
        raise ConnectionError(
            "cannot reach postgresql://app:s3cr3t-pw@db.internal:5432/orders?token=tok-123"
        )


@pytest.mark.parametrize("format", ["json", "console"])
def test_a_module_error_quoting_credentials_reaches_no_log_line_with_them(
    format: str,
) -> None:
    """The password and a secret query value of a URL inside a module's error text are
    hidden in every line (event fields, the JSON exception dicts, the console
    traceback) and in the error actorflow raises; the rest of the message is kept (the
    module's own exception, chained, is the user's and left as it is)."""
    stream = io.StringIO()
    af.configure_logging(format=format, level="debug", file=stream)
    graph = af.Graph(name="quoting")
    graph.add("numbers", Numbers, count=2)
    graph.add("query", QuotesItsDatabase)
    graph.add("collect", Collect, into=[])
    graph.chain("numbers", "query", "collect")
    with pytest.raises(af.EscalationError) as raised:
        af.run(graph)
    text = stream.getvalue()
    assert "s3cr3t-pw" not in text
    assert "tok-123" not in text
    assert "db.internal:5432/orders" in text  # what the operator needs stays
    assert "s3cr3t-pw" not in str(raised.value)  # actorflow's own message hides it too


def _raised(line: int) -> ValueError:
    """A ValueError raised from one of two lines of this function."""
    try:
        if line == 1:
            raise ValueError("one")
        raise ValueError("two")
    except ValueError as exc:
        return exc


def test_a_traceback_is_written_in_full_once_then_referred_to_and_counted() -> None:
    """The same failure again (type and frames) is a reference to the incarnation whose
    event has its traceback, with a count; a failure from another line is new; the
    message does not matter (the item in it changes from crash to crash)."""
    tracebacks = Tracebacks()
    first = _raised(1)
    assert tracebacks.fields(first, 1) == {"exc_info": first}
    assert tracebacks.fields(_raised(1), 2) == {"same_traceback_as": 1, "repeats": 1}
    other = _raised(2)
    assert tracebacks.fields(other, 3) == {"exc_info": other}
    assert tracebacks.fields(_raised(1), 4) == {"same_traceback_as": 1, "repeats": 2}
    chained = RuntimeError("wrapped")
    chained.__cause__ = _raised(1)
    assert tracebacks.fields(chained, 5) == {"exc_info": chained}


def test_a_repeated_traceback_is_written_in_full_again_after_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log read from its tail still has every traceback of the last minute."""
    now = [1000.0]
    monkeypatch.setattr(_logging.time, "monotonic", lambda: now[0])
    tracebacks = Tracebacks()
    tracebacks.fields(_raised(1), 1)
    now[0] += 59
    assert "exc_info" not in tracebacks.fields(_raised(1), 2)
    now[0] += 2
    again = _raised(1)
    assert tracebacks.fields(again, 3) == {"exc_info": again}
    assert tracebacks.fields(_raised(1), 4) == {"same_traceback_as": 3, "repeats": 1}


def test_the_tracebacks_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the oldest is forgotten (and written in full if it comes back)."""
    monkeypatch.setattr(_logging, "_KEPT", 1)
    tracebacks = Tracebacks()
    tracebacks.fields(_raised(1), 1)
    tracebacks.fields(_raised(2), 2)
    assert "exc_info" in tracebacks.fields(_raised(1), 3)


def test_a_crash_loop_writes_its_traceback_once_whichever_path_its_items_took(
    tmp_path: Path,
) -> None:
    """A module failing at the same line over and over (its items through its own task
    or a producer's fused call: actorflow's frames differ) is one kind of failure: one
    traceback, then references to it, each crash still its own event."""

    class Fails(af.Processor):
        def process(self, data: int) -> int:
            if data % 3 == 2:
                raise ValueError(f"bad {data}")
            return data

    graph = af.Graph()
    graph.add("src", Numbers, count=30)
    graph.add("fails", Fails)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "fails", "sink")
    graph.supervisor(max_restarts=100)
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", level="info", file=str(path))
    status = af.run(graph)
    failed = [
        e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == "actor.failed"
    ]
    assert len(failed) == status.actors["fails"].errors == 10
    assert ["exception" in e for e in failed] == [True] + [False] * 9
    assert [e.get("repeats") for e in failed[1:]] == list(range(1, 10))
    assert {e.get("same_traceback_as") for e in failed[1:]} == {1}
