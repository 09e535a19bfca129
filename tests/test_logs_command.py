"""``actorflow logs``: filter, follow, summarise and trace the JSON-lines logs of a run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow import _logfile
from actorflow._cli import main
from actorflow._logfile import (
    Filter,
    Line,
    Skipped,
    Tail,
    events,
    follow,
    format_event,
    format_summary,
    format_trace,
    parse_time,
    summarise,
    trace,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


# -- logs to read ----------------------------------------------------------------------


class Readings(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int = 6) -> None:
        self.count = count

    def start(self) -> list[af.Data]:
        return [af.Data(fields={"n": n}) for n in range(self.count)]


class Double(af.Processor):
    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data:
        return data.with_fields(n=data.fields["n"] * 2)


class Flaky(af.Processor):
    """Fails on the reading 3, which is dead-lettered; the actor is restarted."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def process(self, data: af.Data) -> af.Data:
        if data.fields["n"] == 3:
            raise ValueError("bad reading 3")
        return data


def logged_run(path: Path, graph: af.Graph, level: str = "debug") -> Path:
    af.configure_logging(format="json", level=level, file=str(path))
    af.run(graph)
    return path


def traced_run(tmp_path: Path) -> Path:
    graph = af.Graph(name="traced")
    graph.add("src", Readings, count=3)
    graph.add("double", Double)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "double", "sink")
    return logged_run(tmp_path / "traced.jsonl", graph)


def flaky_run(tmp_path: Path) -> Path:
    graph = af.Graph(name="flaky")
    graph.add("src", Readings, count=6)
    graph.add("flaky", Flaky)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "flaky", "sink")
    return logged_run(tmp_path / "flaky.jsonl", graph)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(name: str, at: float | datetime = 0.0, level: str = "info", **fields: Any) -> str:
    """One log line as structlog writes it; ``at`` is seconds after T0 or a datetime."""
    moment = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    return json.dumps({**fields, "event": name, "level": level, "timestamp": stamp(moment)})


def write(path: Path, *lines: str | bytes, end: bytes = b"\n") -> Path:
    """Write lines (text or raw bytes), each followed by ``end``."""
    with path.open("wb") as file:
        for line in lines:
            file.write((line if isinstance(line, bytes) else line.encode()) + end)
    return path


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as file:
        file.write(data if isinstance(data, bytes) else data.encode())


def logs(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run ``actorflow logs ARGS`` in-process: exit code, stdout, stderr."""
    code = main(["logs", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def event_names(out: str) -> list[str]:
    """The event column of the human-readable listing."""
    return [line.split()[3] for line in out.splitlines()]


# -- listing -------------------------------------------------------------------------


def test_lists_every_event_of_a_real_run_in_aligned_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without options every event is printed, one line each, time / level / actor /
    event in fixed columns, then the fields as key=value."""
    path = traced_run(tmp_path)
    expected = records(path)
    code, out, err = logs(capsys, path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == len(expected)
    for line, record in zip(lines, expected, strict=True):
        assert line[:27] == record["timestamp"]
        assert line[29:38].rstrip() == record["level"]
        assert line[38:55].rstrip() == record.get("actor", "-")
        assert line[55:].startswith(record["event"])
    ended = next(line for line in lines if " sink " in line and "actor.ended" in line)
    assert "reason=normal received=3" in ended
    received = next(line for line in lines if "double" in line and "message.received" in line)
    assert 'link="src.out -> double.in"' in received


def test_json_passes_the_matching_lines_through_as_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json prints the matching lines unchanged, so the output composes with jq."""
    path = traced_run(tmp_path)
    code, out, _ = logs(capsys, path, "--json", "--actor", "sink")
    assert code == 0
    expected = [
        line
        for line in path.read_text().splitlines()
        if json.loads(line).get("actor") == "sink"
        or json.loads(line).get("child") == "sink"
        or json.loads(line).get("link", "").endswith("sink.in")
    ]
    assert out.splitlines() == expected
    assert any('"supervisor.child_exited"' in line for line in expected)


def test_error_text_is_kept_whole_on_one_line_after_the_other_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error's text is printed in full, quoted, newlines escaped, as the last field."""
    error = "RunError: module 'a' failed: ValueError: \"x\"\nsecond line"
    path = write(
        tmp_path / "run.jsonl",
        event("actor.failed", level="error", actor="a", error=error, phase="run", restarts=0),
    )
    code, out, _ = logs(capsys, path)
    assert code == 0
    assert out.count("\n") == 1
    assert out.rstrip().endswith("phase=run restarts=0 error=" + json.dumps(error))


# -- filters -------------------------------------------------------------------------


def test_actor_filter_matches_the_actor_a_child_and_either_end_of_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--actor NAME keeps events whose actor or child is NAME or whose link starts or
    ends at NAME's module, and nothing merely sharing a prefix; it can be repeated."""
    path = write(
        tmp_path / "run.jsonl",
        event("e1", actor="a"),
        event("e2", supervisor="root", child="a"),
        event("e3", link="a.out -> b.in", count=1),
        event("e4", link="c.out -> a.in"),
        event("e5", actor="ab"),
        event("e6", link="ab.out -> b.in"),
        event("e7", actor="b", link="b.out -> c.in"),
        event("e8", graph="a"),
        event("e9", actor=["a"], child={"a": 1}),
    )
    assert event_names(logs(capsys, path, "--actor", "a")[1]) == ["e1", "e2", "e3", "e4"]
    assert event_names(logs(capsys, path, "--actor", "c", "--actor", "ab")[1]) == [
        "e4",
        "e5",
        "e6",
        "e7",
    ]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["actor.state"], ["actor.state"]),
        (["actor.*"], ["actor.state", "actor.failed"]),
        (["supervisor."], ["supervisor.restarting"]),
        (["sup*"], ["supervisor.restarting"]),
        (["actor"], []),
        (["actor.failed", "system.*"], ["actor.failed", "system.done"]),
    ],
)
def test_event_filter_takes_exact_names_and_family_prefixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], patterns: list[str], expected: list[str]
) -> None:
    """--event is an exact name unless it ends in '*' or '.'; several are alternatives."""
    path = write(
        tmp_path / "run.jsonl",
        event("actor.state", actor="a"),
        event("actorx", actor="a"),
        event("supervisor.restarting", child="a"),
        event("actor.failed", actor="a"),
        event("system.done", graph="g"),
    )
    args = [arg for pattern in patterns for arg in ("--event", pattern)]
    assert event_names(logs(capsys, path, *args)[1]) == expected


def test_level_filter_keeps_the_level_and_above(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--level is a minimum (case-insensitive); 'warn' counts as warning; an event with no
    level is shown only when no --level is given."""
    path = write(
        tmp_path / "run.jsonl",
        event("d", level="debug"),
        event("i", level="info"),
        event("w", level="warning"),
        event("w2", level="warn"),
        event("e", level="error"),
        event("c", level="critical"),
        json.dumps({"event": "nolevel", "timestamp": stamp(T0)}),
    )
    assert event_names(logs(capsys, path, "--level", "WARNING")[1]) == ["w", "w2", "e", "c"]
    assert event_names(logs(capsys, path, "--level", "critical")[1]) == ["c"]
    assert len(logs(capsys, path)[1].splitlines()) == 7


def test_since_and_until_select_a_time_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since/--until are inclusive bounds; naive times are UTC; offsets are honoured,
    in the options and in the file; a bare date is its midnight."""
    path = write(
        tmp_path / "run.jsonl",
        event("at10", at=0),
        event("at11", at=3600),
        json.dumps({"event": "at12", "level": "info", "timestamp": "2026-11-22T14:00:00+02:00"}),
    )

    def window(*args: str) -> list[str]:
        return event_names(logs(capsys, path, *args)[1])

    assert window("--since", "2026-11-22T10:30", "--until", "2026-11-22T11:30:00Z") == ["at11"]
    assert window("--since", "2026-11-22T11:00:00Z") == ["at11", "at12"]
    assert window("--until", "2026-11-22T11:00:00+00:00") == ["at10", "at11"]
    assert window("--since", "2026-11-22T13:30+02:00") == ["at12"]
    assert window("--since", "2026-11-22") == ["at10", "at11", "at12"]
    assert window("--until", "2026-11-22") == []


def test_a_duration_counts_back_from_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since 10m means from ten minutes before the command ran; --until 1h, up to an
    hour before."""
    now = datetime.now(UTC)
    path = write(
        tmp_path / "run.jsonl",
        event("old", at=now - timedelta(hours=2)),
        event("recent", at=now - timedelta(minutes=1)),
    )
    assert event_names(logs(capsys, path, "--since", "10m")[1]) == ["recent"]
    assert event_names(logs(capsys, path, "--until", "1h")[1]) == ["old"]


NOW = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - timedelta(seconds=30)),
        ("10m", NOW - timedelta(minutes=10)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("1.5s", NOW - timedelta(seconds=1.5)),
        ("250ms", NOW - timedelta(milliseconds=250)),
        ("-10m", NOW - timedelta(minutes=10)),
        ("2026-11-21", datetime(2026, 11, 21, tzinfo=UTC)),
        ("2026-11-22T16:21:16", datetime(2026, 11, 22, 16, 21, 16, tzinfo=UTC)),
        ("2026-11-22T16:21:16.537352Z", datetime(2026, 11, 22, 16, 21, 16, 537352, tzinfo=UTC)),
        ("2026-11-22T18:21:16+02:00", datetime(2026, 11, 22, 16, 21, 16, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_dates_datetimes_and_durations(text: str, expected: datetime) -> None:
    """A time option is an ISO date or datetime (naive is UTC) or a duration before now."""
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10x", "10", "2026-13-01", "m", ""])
def test_parse_time_refuses_anything_else_with_the_accepted_forms(text: str) -> None:
    """An unreadable time is a ValueError that shows what would have been accepted."""
    with pytest.raises(ValueError, match=r"not an ISO 8601 date or datetime .* duration"):
        parse_time(text, now=NOW)


@pytest.mark.parametrize("text", ["99999999d", "9999-12-31T23:59:59-01:00"])
def test_parse_time_refuses_a_time_out_of_range(text: str) -> None:
    """A duration or an offset past the calendar's ends is a ValueError, not a crash."""
    with pytest.raises(ValueError, match="before year 1 or after year 9999"):
        parse_time(text, now=NOW)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "argument --since: 'yesterday' is not an ISO 8601"),
        (["--until", "10x"], "argument --until: '10x' is not an ISO 8601"),
        (["--level", "loud"], "argument --level: invalid choice: 'loud'"),
        (["--follow", "--summary"], "argument --summary: not allowed with argument -f/--follow"),
        (["--summary", "--trace", "x"], "argument --trace: not allowed with argument --summary"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A bad option value is refused before reading anything, naming the option; exit 2."""
    path = write(tmp_path / "run.jsonl", event("e"))
    with pytest.raises(SystemExit) as exit_info:
        main(["logs", str(path), *args])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
    assert "usage: actorflow logs" in captured.err


def test_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`actorflow logs --help` exits 0 and lists the options."""
    with pytest.raises(SystemExit) as exit_info:
        main(["logs", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: actorflow logs")
    for option in ("--actor", "--event", "--level", "--since", "--until", "--follow"):
        assert option in out
    for option in ("--summary", "--trace", "--json"):
        assert option in out


# -- bad input -----------------------------------------------------------------------


def test_unreadable_lines_are_skipped_counted_and_reported_at_the_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines that are not JSON objects with a string event and an ISO timestamp are
    skipped; blank lines are ignored; the count and the first line number go to stderr;
    an unterminated last line is read; the exit code stays 0."""
    path = write(
        tmp_path / "run.jsonl",
        event("first"),
        "not json at all",
        json.dumps(["event", "timestamp"]),
        json.dumps({"timestamp": stamp(T0)}),
        json.dumps({"event": "no.timestamp"}),
        json.dumps({"event": "bad.timestamp", "timestamp": "yesterday"}),
        json.dumps({"event": 7, "timestamp": stamp(T0)}),
        json.dumps({"event": "overflow", "timestamp": "9999-12-31T23:59:59-01:00"}),
        "[" * 100_000,
        b'{"event": "bad.bytes", "timestamp": "2026-11-22T10:00:00Z", "x": "\xff"}',
        "",
        "   ",
        event("second", at=1),
        '{"event": "cut", "timestamp": "2026',
    )
    append(path, event("last", at=2))  # no newline: the file just ends
    code, out, err = logs(capsys, path)
    assert code == 0
    assert event_names(out) == ["first", "second", "last"]
    assert err == "skipped 10 unreadable lines (first: line 2)\n"
    code, out, err = logs(capsys, path, "--summary")
    assert code == 0
    assert "3 events" in out
    assert err == "skipped 10 unreadable lines (first: line 2)\n"


def test_one_unreadable_line_is_reported_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report names its one line, even when nothing matched the filters."""
    path = write(tmp_path / "run.jsonl", event("a"), event("b"), "{oops")
    code, out, err = logs(capsys, path, "--event", "nothing")
    assert (code, out) == (0, "")
    assert err == "skipped 1 unreadable line (first: line 3)\n"


@pytest.mark.parametrize(
    ("name", "reason", "follow"),
    [
        ("missing.jsonl", "No such file or directory", ()),
        (".", "Is a directory", ()),
        (".", "Is a directory", ("--follow",)),
    ],
)
def test_a_file_that_cannot_be_read_exits_2_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    reason: str,
    follow: tuple[str, ...],
) -> None:
    """A missing file or a directory is an error naming the file and why, exit 2; with
    --follow, so is a directory (only a missing file is waited for)."""
    path = tmp_path / name
    code, out, err = logs(capsys, path, *follow)
    assert code == 2
    assert out == ""
    assert err == f"error: {path}: cannot read it: {reason}\n"


def test_a_closed_pipe_ends_the_listing_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the reader of stdout goes away (`| head`), the command stops with exit 0."""

    class ClosedPipe:
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            raise io.UnsupportedOperation("fileno")

    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    path = write(tmp_path / "run.jsonl", event("a"), event("b"))
    assert main(["logs", str(path)]) == 0
    assert pipe.writes == 1
    assert capsys.readouterr().err == ""


_EVENTS = [
    "actor.state",
    "actor.ended",
    "actor.failed",
    "actor.dead_letter",
    "actor.dropped",
    "link.dropped",
    "link.dropping_stopped",
    "system.heartbeat",
    "supervisor.restarting",
    "message.sent",
    "message.received",
]
_KEYS = [
    "actor",
    "child",
    "link",
    "group",
    "count",
    "reason",
    "received",
    "restarts",
    "dead_lettered",
    "state",
    "graph",
    "actors",
    "message_id",
    "message_ids",
    "level",
    "error",
]
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["a", "a.out -> b.in", "m1", "info", "warn", "created"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["a", "b", *_KEYS]) | st.text(max_size=4), inner, max_size=3
        )
    ),
    max_leaves=8,
)
_stamps = st.sampled_from(
    ["2026-11-22T10:00:00Z", "2026-11-22", "0001-01-01T00:00:00+01:00", "yesterday"]
) | st.text(max_size=12)
_objects = st.fixed_dictionaries(
    {"event": st.sampled_from(_EVENTS) | st.text(max_size=6), "timestamp": _stamps},
    optional=dict.fromkeys(_KEYS, _json),
)
_lines = st.one_of(
    _objects.map(lambda o: json.dumps(o).encode()),
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=30),
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(_lines, max_size=8))
def test_no_line_can_crash_any_view(raw: list[bytes]) -> None:
    """Whatever the lines hold, every view renders (or skips them), and every line is
    either an event or counted as unreadable."""
    lines = [Line(n, line.replace(b"\n", b" ") + b"\n") for n, line in enumerate(raw, 1)]
    skipped = Skipped()
    found = list(events(lines, skipped))
    assert len(found) + skipped.count == sum(1 for line in lines if line.raw.strip())
    picky = Filter(actors=frozenset({"a"}), events=("actor.*", "link."), level="info")
    for event in found:
        assert format_event(event).startswith(event.time.strftime("%Y-%m-%dT"))
        picky(event)
    summary = summarise(found)
    assert len(format_summary(summary)) == 2 + len(summary.actors)
    for actor in summary.actors.values():
        json.dumps(actor.as_json(summary.graph))
    hops = trace(found, "m1")
    if hops:
        assert len(format_trace("m1", hops)) == 1 + len(hops)
        for hop in hops:
            json.dumps(hop.as_json("m1"))


# -- summary -------------------------------------------------------------------------


def summary_rows(out: str) -> dict[str, dict[str, str]]:
    """The summary table as {actor: {heading: cell}} (headings may hold one space)."""
    lines = out.splitlines()
    headings = lines[1].replace("dead letters", "dead_letters").split()
    return {row.split()[0]: dict(zip(headings, row.split(), strict=True)) for row in lines[2:]}


def test_summary_of_a_real_run_counts_restarts_errors_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--summary has a header (graph, span, events) and one row per actor with its final
    state and reason, restarts, errors, dead letters and messages received."""
    path = flaky_run(tmp_path)
    expected = records(path)
    code, out, err = logs(capsys, path, "--summary")
    assert (code, err) == (0, "")
    header = out.splitlines()[0]
    assert header.startswith(f"graph 'flaky': {len(expected)} events from ")
    assert f"from {expected[0]['timestamp']} to {expected[-1]['timestamp']}" in header
    rows = summary_rows(out)
    assert list(rows) == ["src", "flaky", "sink"]
    flaky = rows["flaky"]
    assert (flaky["state"], flaky["reason"]) == ("terminated", "normal")
    assert (flaky["restarts"], flaky["errors"], flaky["dead_letters"]) == ("1", "1", "1")
    assert (flaky["received"], flaky["drops"]) == ("6", "0")
    assert rows["sink"]["received"] == "5"
    assert rows["sink"]["restarts"] == "0"
    assert float(rows["sink"]["msg/s"]) > 0


def test_summary_json_is_one_object_per_actor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--summary --json prints one JSON object per actor, with the same figures, and
    a throughput equal to received over the actor's first-to-last-event lifetime."""
    path = flaky_run(tmp_path)
    code, out, _ = logs(capsys, path, "--summary", "--json")
    assert code == 0
    rows = {row["actor"]: row for row in map(json.loads, out.splitlines())}
    assert set(rows) == {"src", "flaky", "sink"}
    flaky = rows["flaky"]
    assert flaky["graph"] == "flaky"
    assert (flaky["restarts"], flaky["errors"], flaky["dead_letters"]) == (1, 1, 1)
    assert flaky["received"] == 6
    own = [e for e in records(path) if e.get("actor") == "flaky"]
    assert (flaky["first"], flaky["last"]) == (own[0]["timestamp"], own[-1]["timestamp"])
    lifetime = (
        datetime.fromisoformat(flaky["last"]) - datetime.fromisoformat(flaky["first"])
    ).total_seconds()
    assert flaky["throughput"] == pytest.approx(6 / lifetime)


def test_summary_sums_drops_by_reason_and_reads_heartbeats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drops are summed by reason (a link's drops count for the actor that logged them,
    else for the link's consumer); errors include cleanup failures; a running actor's
    received count and state come from the last heartbeat, which ends its observed
    lifetime; --actor picks rows, and heartbeats still feed them."""
    path = write(
        tmp_path / "run.jsonl",
        event("system.starting", 0, graph="plant", actors=2),
        event("actor.state", 0, actor="a", state="created", kind="source"),
        event("actor.state", 0, actor="b", state="created", kind="sink"),
        event("actor.state", 0, actor="c", state="created", kind="sink"),
        event("actor.dropped", 1, level="warning", actor="a", reason="unconnected", count=3),
        event("link.dropping_stopped", 1, link="a.out -> b.in", reason="overflow", count=5),
        event("link.dropped", 1, actor="b", link="a.out -> b.in", reason="shutdown", count=2),
        event("link.dropped", 2, link="a.out -> b.in", reason="shutdown", count=4),
        event("actor.failed", 2, level="error", actor="b", phase="run", error="E"),
        event("actor.cleanup_failed", 2, level="error", actor="b", phase="cleanup", error="C"),
        event("supervisor.restarting", 2, supervisor="plant", child="b", group=["b", "g"]),
        event("actor.ended", 3, actor="b", reason="failed", received=9, restarts=0),
        event(
            "system.heartbeat",
            4,
            graph="plant",
            actors={
                "a": {"state": "running", "received": 0, "mailbox_depth": 0},
                "b": {"state": "invalid", "received": 1000, "mailbox_depth": 0},
            },
        ),
        event(
            "system.heartbeat",
            5,
            graph="plant",
            actors={"a": {"state": "blocked", "received": 100}, "b": "garbage"},
        ),
    )
    code, out, _ = logs(capsys, path, "--summary", "--json")
    assert code == 0
    rows = {row["actor"]: row for row in map(json.loads, out.splitlines())}
    assert rows["a"]["drops"] == {"unconnected": 3}
    assert rows["a"]["state"] == "blocked"
    assert rows["a"]["received"] == 100
    assert rows["a"]["throughput"] == pytest.approx(100 / 5)
    assert rows["b"]["drops"] == {"overflow": 5, "shutdown": 6}
    assert rows["b"]["errors"] == 2
    assert rows["b"]["restarts"] == 1
    assert (rows["b"]["state"], rows["b"]["reason"], rows["b"]["received"]) == (
        "created",
        "failed",
        9,
    )
    assert rows["b"]["throughput"] == pytest.approx(9 / 3)
    assert "g" not in rows
    assert (rows["c"]["received"], rows["c"]["throughput"]) == (None, None)
    code, out, _ = logs(capsys, path, "--summary", "--actor", "a")
    rows_text = summary_rows(out)
    assert list(rows_text) == ["a"]
    assert rows_text["a"]["drops"] == "unconnected=3"
    assert rows_text["a"]["msg/s"] == "20.0"
    assert out.splitlines()[0].startswith("graph 'plant': 14 events from ")
    _, out, _ = logs(capsys, path, "--summary", "--actor", "c")
    assert summary_rows(out)["c"]["msg/s"] == "-"
    assert summary_rows(out)["c"]["lifetime"] == "0.000s"


def test_summary_counts_the_dead_letters_failures_say_and_older_logs_dead_letter_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure whose item was given up on (``dead_lettered``) is an error and a dead
    letter; one whose item is tried again is an error only; a separate
    ``actor.dead_letter`` (as older logs have it) is still a dead letter."""
    path = write(
        tmp_path / "run.jsonl",
        event("actor.failed", 0, "error", actor="a", attempts=1, dead_lettered=False),
        event("actor.failed", 1, "error", actor="a", attempts=2, dead_lettered=True),
        event("actor.dead_letter", 2, "error", actor="b", message_id="m", attempts=1),
    )
    code, out, _ = logs(capsys, path, "--summary", "--json")
    assert code == 0
    rows = {row["actor"]: row for row in map(json.loads, out.splitlines())}
    assert (rows["a"]["errors"], rows["a"]["dead_letters"]) == (2, 1)
    assert (rows["b"]["errors"], rows["b"]["dead_letters"]) == (0, 1)


def test_summary_of_a_log_with_no_events_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty log still gets a header, with no graph name, and exit 0."""
    path = write(tmp_path / "run.jsonl")
    code, out, _ = logs(capsys, path, "--summary")
    assert code == 0
    assert out.splitlines()[0] == "graph ?: 0 events"


# -- trace ---------------------------------------------------------------------------


def first_sent_id(path: Path, actor: str) -> str:
    sent = next(e for e in records(path) if e["event"] == "message.sent" and e["actor"] == actor)
    message_id: str = sent["message_ids"][0]
    return message_id


def test_trace_follows_one_message_from_source_to_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trace ID prints each hop of one message, timed from the first, naming the actor
    and the port it was sent on or the link it was received from."""
    path = traced_run(tmp_path)
    message_id = first_sent_id(path, "src")
    code, out, err = logs(capsys, path, "--trace", message_id)
    assert (code, err) == (0, "")
    header, *hops = out.splitlines()
    assert header.startswith(f"message {message_id}: 4 events from ")
    assert [hop.split(None, 1)[1] for hop in hops] == [
        "src     sent on port out",
        "double  received from link src.out -> double.in",
        "double  sent on port out",
        "sink    received from link double.out -> sink.in",
    ]
    offsets = [float(hop.split()[0].removesuffix("s")) for hop in hops]
    assert hops[0].startswith("+0.000000s")
    assert offsets == sorted(offsets)


def test_trace_of_a_failing_message_shows_the_failure_and_the_dead_letter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The item that made an actor fail ends in a failure that dead-lettered it; with
    --json each hop is one object with its offset, actor, event and what happened."""
    path = flaky_run(tmp_path)
    dead = next(e for e in records(path) if e.get("dead_lettered") is True)
    code, out, _ = logs(capsys, path, "--trace", dead["message_id"], "--json")
    assert code == 0
    hops = [json.loads(line) for line in out.splitlines()]
    assert [(h["actor"], h["what"]) for h in hops] == [
        ("src", "sent on port out"),
        ("flaky", "received from link src.out -> flaky.in"),
        ("flaky", "failed, dead-lettered after 1 attempt: ValueError: bad reading 3"),
    ]
    assert hops[0]["offset"] == 0.0
    assert hops[-1]["event"] == "actor.failed"
    assert hops[-1]["phase"] == "run"
    assert {h["message_id"] for h in hops} == {dead["message_id"]}
    assert all("message_ids" not in h for h in hops)


def test_trace_describes_other_events_by_their_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event of another kind that names the message is shown with its fields."""
    path = write(
        tmp_path / "run.jsonl",
        event("actor.dead_letter", 0, actor="a", message_id="m1", attempts=3, error="E"),
        event("custom.note", 0.5, message_id="m1", note="seen twice"),
    )
    _, out, _ = logs(capsys, path, "--trace", "m1")
    assert out.splitlines()[1:] == [
        "+0.000000s  a  dead-lettered after 3 attempts: E",
        '+0.500000s  -  custom.note note="seen twice"',
    ]


def test_trace_of_an_unknown_id_exits_1_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No event mentions the id (or the run was logged at info): exit 1, a hint on stderr."""
    path = logged_run(tmp_path / "info.jsonl", af.Graph(name="empty"), level="info")
    code, out, err = logs(capsys, path, "--trace", "abc-1")
    assert (code, out) == (1, "")
    assert err == (
        "no event mentions message id abc-1 (was the run logged at --log-level debug?)\n"
    )


# -- follow --------------------------------------------------------------------------


def names(lines: list[_logfile.Line]) -> list[str]:
    return [e.name for e in events(lines, Skipped())]


def test_follow_reads_what_is_appended_between_polls(tmp_path: Path) -> None:
    """follow() yields the file's lines, then what each wait() appended, until stop()."""
    path = write(tmp_path / "run.jsonl", event("one"))
    steps: list[Callable[[], None]] = [
        lambda: append(path, event("two") + "\n" + event("three") + "\n"),
        lambda: None,  # a poll that finds nothing new
        lambda: append(path, event("four") + "\n"),
    ]
    tail = Tail.open(str(path))
    seen = list(follow(tail, wait=lambda: steps.pop(0)(), stop=lambda: not steps))
    tail.close()
    assert names(seen) == ["one", "two", "three", "four"]
    assert [line.number for line in seen] == [1, 2, 3, 4]


def test_a_half_written_line_waits_for_its_newline(tmp_path: Path) -> None:
    """A line caught half-written is held back, not counted as unreadable, until its
    newline arrives; then it is read whole."""
    path = write(tmp_path / "run.jsonl", event("one"))
    line = event("two")
    append(path, line[:20])
    tail = Tail.open(str(path))
    assert names(list(tail.poll())) == ["one"]
    append(path, line[20:35])
    assert list(tail.poll()) == []
    append(path, line[35:] + "\n")
    [whole] = tail.poll()
    assert (whole.number, names([whole])) == (2, ["two"])
    tail.close()


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    """When the file shrinks, it was truncated: reading starts over at line 1."""
    path = write(tmp_path / "run.jsonl", event("one"), event("two"), event("three"))
    tail = Tail.open(str(path))
    assert len(list(tail.poll())) == 3
    write(tmp_path / "run.jsonl", event("again"))
    seen = list(tail.poll())
    assert (names(seen), seen[0].number) == (["again"], 1)
    tail.close()


def test_a_rotated_file_is_finished_then_the_new_one_is_read(tmp_path: Path) -> None:
    """When the path names a new file (rotation), the old one is read to its end, its
    unterminated last line included, then the new one from line 1; while the path is
    missing the old file is kept."""
    path = write(tmp_path / "run.jsonl", event("one"))
    tail = Tail.open(str(path))
    assert names(list(tail.poll())) == ["one"]
    append(path, event("two") + "\n" + event("three"))
    path.rename(tmp_path / "run.jsonl.1")
    assert names(list(tail.poll())) == ["two"]
    write(path, event("new"))
    seen = list(tail.poll())
    assert names(seen) == ["three", "new"]
    assert [line.number for line in seen] == [3, 1]
    tail.close()


def test_follow_on_the_command_line_filters_and_ends_quietly_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--follow applies the filters to the lines appended while it waits, and Ctrl-C
    ends it with exit 0, the skipped-lines report and no traceback."""
    path = write(tmp_path / "run.jsonl", event("before", actor="a"), event("x", actor="b"))
    printed: list[str] = []

    def pause() -> None:
        printed.append(capsys.readouterr().out)
        if len(printed) == 1:
            append(path, event("after", actor="a") + "\nnot json\n" + event("y", actor="b") + "\n")
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(_logfile, "_pause", pause)
    code = main(["logs", str(path), "--follow", "--actor", "a"])
    captured = capsys.readouterr()
    assert code == 0
    assert [event_names(out) for out in printed] == [["before"], ["after"]]
    assert captured.err == "skipped 1 unreadable line (first: line 4)\n"


def test_follow_waits_for_a_file_that_does_not_exist_yet_like_tail_f(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--follow on a log the run has not created yet says so once, waits, then prints
    what the file holds and gains."""
    path = tmp_path / "later.jsonl"
    pauses: list[str] = []
    errors: list[str] = []

    def pause() -> None:
        captured = capsys.readouterr()
        pauses.append(captured.out)
        errors.append(captured.err)
        if len(pauses) == 2:
            write(path, event("first", actor="a"))
        elif len(pauses) > 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(_logfile, "_pause", pause)
    code = main(["logs", str(path), "--follow"])
    captured = capsys.readouterr()
    err = "".join(errors) + captured.err
    assert code == 0
    assert err.count("waiting for") == 1
    assert str(path) in err
    assert event_names("".join(pauses) + captured.out) == ["first"]


def test_ctrl_c_while_waiting_for_a_followed_file_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def pause() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_logfile, "_pause", pause)
    assert main(["logs", str(tmp_path / "never.jsonl"), "--follow"]) == 0


def test_ctrl_c_while_reading_without_follow_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupting a plain listing is exit 130, the command line's 'interrupted'."""

    def interrupted(event: _logfile.Event) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(_logfile, "format_event", interrupted)
    path = write(tmp_path / "run.jsonl", event("a"))
    assert main(["logs", str(path)]) == 130


# -- the real command ----------------------------------------------------------------


def actorflow(*args: str | Path, **popen: Any) -> subprocess.Popen[str]:
    # Without PYTHONUNBUFFERED, as a user's shell has it: the command must flush itself.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONUNBUFFERED", None)
    return subprocess.Popen(
        [sys.executable, "-m", "actorflow", "logs", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_the_command_reads_a_real_log(tmp_path: Path) -> None:
    """`python -m actorflow logs FILE` works as a user runs it."""
    path = flaky_run(tmp_path)
    with actorflow(path, "--level", "error", "--actor", "flaky") as process:
        out, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, "")
    assert event_names(out) == ["actor.failed"]
    assert out.count('error="ValueError: bad reading 3"') == 1
    assert "dead_lettered=true" in out


def test_the_command_follows_a_growing_file_until_sigint(tmp_path: Path) -> None:
    """`actorflow logs FILE --follow` in a real process prints lines as they are appended
    (so it flushes its output) and exits 0 on Ctrl-C without a traceback."""
    path = write(tmp_path / "run.jsonl", event("one"))
    lines: queue.Queue[str] = queue.Queue()
    process = actorflow(path, "--follow")
    assert process.stdout is not None
    assert process.stderr is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: [lines.put(line) for line in stdout])
    reader.start()
    try:
        # The timeouts only keep a broken build from hanging the suite.
        assert " one" in lines.get(timeout=60)
        append(path, event("two") + "\n")
        assert " two" in lines.get(timeout=60)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        reader.join(timeout=60)
        process.stdout.close()
        process.stderr.close()
    assert lines.empty()


def test_traceback_shows_an_events_exception_under_it_innermost_cause_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure logged as JSON carries its chain; ``--traceback`` prints it as Python
    would, and the event line itself stays one short line."""

    class Glitchy(af.Processor):
        def process(self, data: int) -> int:
            raise RuntimeError("sensor glitch")

    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("glitchy", Glitchy)
    graph.link("src", "glitchy")
    graph.supervise("glitchy", attempts=2)  # the first failure keeps its frames
    graph.supervisor(max_restarts=5)
    path = tmp_path / "run.jsonl"
    af.configure_logging(format="json", file=str(path))
    af.run(graph)
    code, out, _ = logs(capsys, path, "--event", "actor.failed")
    assert code == 0
    assert len(out.splitlines()) == 2
    assert "exception=" not in out
    code, out, _ = logs(capsys, path, "--event", "actor.failed", "--traceback")
    lines = out.splitlines()
    lines = lines[: [i for i, line in enumerate(lines) if "actor.failed" in line][1]]
    cause = lines.index("    RuntimeError: sensor glitch")
    assert "in process" in lines[cause - 1]
    assert __file__ in lines[cause - 1]
    assert "The above exception was the direct cause of the following:" in lines[cause + 2]
    assert lines[-1].startswith("    RunError: module 'glitchy' failed in run")
    second = out.splitlines()[-2:]
    assert "same_traceback_as=1" in second[0]
    assert second[1] == "    (the same traceback as incarnation 1's failure)"


# -- what a log cannot do to the terminal ------------------------------------------------

_CONTROLS = st.sampled_from(list("\x00\x1b[m\n\r\t\x7f\x9b\u2028\u2029\u202e\u2066"))
_TEXT = st.text(_CONTROLS | st.characters(codec="utf-8"), max_size=12)
"""Any text, with characters a terminal acts on (and ANSI escapes' parts) often."""
_ANY_NAMES = (
    st.sampled_from(
        ["actor.failed", "actor.state", "actor.ended", "message.sent", "message.received"]
    )
    | _TEXT
)
_ANY_KEYS = (
    st.sampled_from(
        ["actor", "state", "reason", "graph", "error", "port", "link", "to", "from", "restarts"]
    )
    | _TEXT
)
_FRAME = st.fixed_dictionaries({"filename": _TEXT, "lineno": _TEXT, "name": _TEXT})
_EXCEPTION = st.lists(
    st.fixed_dictionaries(
        {"exc_type": _TEXT, "exc_value": _TEXT, "frames": st.lists(_FRAME, max_size=2)}
    ),
    max_size=2,
)
_LOGGED = st.lists(
    st.tuples(_ANY_NAMES, st.dictionaries(_ANY_KEYS, _TEXT, max_size=5), _EXCEPTION),
    min_size=1,
    max_size=6,
)
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _acted_on(char: str) -> bool:
    """A character a terminal acts on rather than shows."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI


@pytest.mark.parametrize(
    "mode",
    [[], ["--summary"], ["--trace", "m1"], ["--traceback"], ["--json"]],
    ids=["list", "summary", "trace", "traceback", "json"],
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(logged=_LOGGED)
def test_no_field_of_a_log_reaches_the_terminal_as_a_control_character(
    tmp_path: Path, mode: list[str], logged: list[tuple[str, dict[str, str], Any]]
) -> None:
    """Whatever strings a log's events hold (ANSI escapes, line breaks, C1 controls,
    bidirectional overrides, in names, keys, values, actors, tracebacks), every line
    ``actorflow logs`` prints, in every mode, is free of them: they come out escaped."""
    path = tmp_path / "run.jsonl"
    lines = [
        json.dumps(
            {
                **fields,
                "event": name,
                "timestamp": (T0 + timedelta(seconds=at)).isoformat(),
                "level": "error",
                "message_id": "m1",
                "exception": exception,
            },
            ensure_ascii=False,
        )
        for at, (name, fields, exception) in enumerate(logged)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["logs", str(path), *mode]) == 0
    printed = out.getvalue().split("\n")
    assert printed[-1] == ""
    for line in printed:
        assert not any(map(_acted_on, line)), line
