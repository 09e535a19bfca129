"""``actorflow logs``: read the JSON-lines logs of a run back, for people and for ``jq``.

The log is read as data, never trusted: a line that is not a JSON object with an
``event`` and an ISO 8601 ``timestamp`` is skipped and counted, and the count is
reported at the end. Four ways to look at a log, all behind the same filters:

- list the events (``--json``: the matching lines as they were);
- ``--follow`` the file as it grows, like ``tail -F`` (truncation and rotation included);
- ``--summary``: per actor, state changes, restarts, errors, drops, dead letters and
  throughput;
- ``--trace ID``: the hops of one ``Data`` item, from debug-level ``message.*`` events.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TextIO

import attrs

from ._logging import _LEVELS
from ._paths import regular_file_size
from ._reportable import CONTROL, printable

__all__ = [
    "ActorSummary",
    "Event",
    "Filter",
    "Hop",
    "Line",
    "Skipped",
    "Summary",
    "Tail",
    "add_arguments",
    "command",
    "events",
    "follow",
    "format_event",
    "format_summary",
    "format_trace",
    "parse_time",
    "read_all",
    "summarise",
    "trace",
]

POLL_INTERVAL = 0.25
"""Seconds between two looks at a followed file."""

_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}
_LAST_FIELDS = ("error",)
"""Fields printed after the others, so long error texts do not push the short ones.
(An event's ``exception``, its traceback, is shown by ``--traceback``, not in the line.)"""
_PLAIN = re.compile(r"[^\s\"'=]+")
_DURATION = re.compile(r"-?((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# -- reading lines -------------------------------------------------------------------


@attrs.frozen
class Line:
    """One line of the file, as bytes, with its 1-based number."""

    number: int
    raw: bytes


@attrs.define
class Tail:
    """The complete lines of a file that may grow, be truncated or be replaced.

    A line counts only once its newline is written, so a line caught half-written is
    held back until the writer finishes it. A file that shrinks was truncated: it is
    read again from the start. A path that names a new file was rotated: the old file is
    read to its end, then the new one from its start.
    """

    path: str
    _file: BinaryIO
    _partial: bytes = b""
    _number: int = 0

    @classmethod
    def open(cls, path: str) -> Tail:
        """Open ``path`` for reading; raises ``OSError`` if it cannot be read or is not
        a regular file (a device or a pipe would be read for ever)."""
        regular_file_size(path)
        return cls(path, open(path, "rb"))

    def close(self) -> None:
        self._file.close()

    def poll(self) -> Iterator[Line]:
        """The lines completed since the last poll."""
        if os.fstat(self._file.fileno()).st_size < self._file.tell():
            self._file.seek(0)
            self._partial, self._number = b"", 0
        yield from self._drain()
        replacement = self._replacement()
        if replacement is not None:
            # The old file is finished: a line it left unterminated will not be completed.
            rest = self.rest()
            if rest is not None:
                yield rest
            self._file.close()
            self._file, self._number = replacement, 0
            yield from self._drain()

    def rest(self) -> Line | None:
        """The unterminated last line, taken as complete (the file has ended)."""
        if not self._partial:
            return None
        self._number += 1
        line = Line(self._number, self._partial)
        self._partial = b""
        return line

    def _drain(self) -> Iterator[Line]:
        for raw in self._file:
            if not raw.endswith(b"\n"):
                self._partial += raw
                return
            self._number += 1
            yield Line(self._number, self._partial + raw)
            self._partial = b""

    def _replacement(self) -> BinaryIO | None:
        try:
            current = os.stat(self.path)
            mine = os.fstat(self._file.fileno())
            if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                return None
            return open(self.path, "rb")
        except OSError:
            # Moved away and not recreated yet: keep reading the old file.
            return None


def read_all(tail: Tail) -> Iterator[Line]:
    """Every line of the file as it is now; an unterminated last line counts."""
    yield from tail.poll()
    rest = tail.rest()
    if rest is not None:
        yield rest


def follow(
    tail: Tail, *, wait: Callable[[], None], stop: Callable[[], bool] = lambda: False
) -> Iterator[Line]:
    """The file's lines, then each line it gains, until ``stop()`` is true.

    ``wait()`` runs between two polls (it sleeps in the command; tests append to the
    file there instead). An unterminated last line is never yielded: it may still be
    being written.
    """
    while True:
        yield from tail.poll()
        if stop():
            return
        wait()


# -- parsing events ------------------------------------------------------------------


@attrs.frozen
class Event:
    """One readable log line: its fields, and its timestamp as an aware UTC datetime."""

    line: int
    text: str
    fields: dict[str, Any]
    time: datetime

    @property
    def name(self) -> str:
        name: str = self.fields["event"]
        return name

    @property
    def level(self) -> str | None:
        """The level's name, normalised (``warn`` is ``warning``), or ``None``."""
        level = self.fields.get("level")
        if not isinstance(level, str):
            return None
        level = level.lower()
        return _LEVEL_ALIASES.get(level, level)

    @property
    def actor(self) -> str | None:
        actor = self.fields.get("actor")
        return actor if isinstance(actor, str) else None


@attrs.define
class Skipped:
    """The unreadable lines met so far: how many, and the first one's number."""

    count: int = 0
    first: int | None = None

    def add(self, line: int) -> None:
        self.count += 1
        if self.first is None:
            self.first = line

    def report(self) -> str | None:
        """The line for stderr, or ``None`` if every line was readable."""
        if not self.count:
            return None
        lines = "line" if self.count == 1 else "lines"
        return f"skipped {self.count} unreadable {lines} (first: line {self.first})"


def _text(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) else default


def _utc(moment: datetime) -> datetime:
    """Naive means UTC: that is what actorflow writes."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse(line: Line) -> Event | None:
    try:
        text = line.raw.decode("utf-8").strip()
        fields = json.loads(text)
    # UnicodeDecodeError and JSONDecodeError are ValueErrors; deep nesting recurses.
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict):
        return None
    name, stamp = fields.get("event"), fields.get("timestamp")
    if not isinstance(name, str) or not isinstance(stamp, str):
        return None
    try:
        moment = _utc(datetime.fromisoformat(stamp))
    except (ValueError, OverflowError):  # overflow: an offset past year 1 or 9999
        return None
    return Event(line.number, text, fields, moment)


def events(lines: Iterable[Line], skipped: Skipped) -> Iterator[Event]:
    """The readable events among ``lines``; the others are counted in ``skipped``.

    Blank lines are neither events nor counted.
    """
    for line in lines:
        if not line.raw.strip():
            continue
        event = _parse(line)
        if event is None:
            skipped.add(line.number)
        else:
            yield event


# -- filtering -----------------------------------------------------------------------


def parse_time(text: str, *, now: datetime) -> datetime:
    """A ``--since``/``--until`` value as an aware UTC datetime.

    Accepts an ISO 8601 date (its midnight) or datetime (naive means UTC), or a
    duration such as ``30s``, ``10m``, ``2h``, ``1d`` or ``1h30m``, meaning that long
    before ``now``.

    Raises:
        ValueError: ``text`` is none of these.
    """
    text = text.strip()
    duration = _DURATION.fullmatch(text)
    try:
        if duration is None:
            return _utc(datetime.fromisoformat(text))
        seconds = sum(
            float(amount) * _UNITS[unit]
            for amount, unit in _DURATION_PART.findall(duration.group(1))
        )
        return _utc(now) - timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is before year 1 or after year 9999") from None
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or datetime (2026-11-22, "
            "2026-11-22T16:21:16Z) nor a duration (30s, 10m, 2h, 1d)"
        ) from None


def _time_option(text: str) -> datetime:
    """argparse ``type=`` for ``--since``/``--until``: durations count back from now."""
    try:
        return parse_time(text, now=datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _link_ends(link: str) -> tuple[str, ...]:
    """The module names at both ends of ``"src.out -> dst.in"``."""
    return tuple(end.strip().partition(".")[0] for end in link.split("->"))


@attrs.frozen
class Filter:
    """Which events to show; an empty criterion lets everything through.

    Attributes:
        actors: Events whose ``actor`` or ``child`` is one of these, or whose ``link``
            starts or ends at one of them.
        events: Event names; ``actor.*``, ``actor.`` and ``act*`` are prefixes.
        level: The lowest level shown; an event with no known level is then hidden.
        since: The earliest timestamp shown (inclusive).
        until: The latest timestamp shown (inclusive).
    """

    actors: frozenset[str] = frozenset()
    events: tuple[str, ...] = ()
    level: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(_LEVELS))
    )
    since: datetime | None = None
    until: datetime | None = None

    def __call__(self, event: Event) -> bool:
        return (
            (not self.actors or self._names_actor(event))
            and (not self.events or any(_event_matches(p, event.name) for p in self.events))
            and (self.level is None or self._high_enough(event))
            and (self.since is None or event.time >= self.since)
            and (self.until is None or event.time <= self.until)
        )

    def _names_actor(self, event: Event) -> bool:
        fields = event.fields
        if any(_text(fields.get(key), None) in self.actors for key in ("actor", "child")):
            return True
        link = fields.get("link")
        return isinstance(link, str) and any(end in self.actors for end in _link_ends(link))

    def _high_enough(self, event: Event) -> bool:
        assert self.level is not None
        level = event.level
        return level in _LEVELS and _LEVELS[level] >= _LEVELS[self.level]


def _event_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    if pattern.endswith("."):
        return name.startswith(pattern)
    return name == pattern


# -- the event list ------------------------------------------------------------------


def _json_line(event: Event) -> str:
    """The event's line as it was, or, if it holds control characters (raw in a string,
    which JSON allows for DEL, C1 and separators), the same object with them escaped."""
    if CONTROL.search(event.text.replace("\t", " ")) is None:
        return event.text
    return json.dumps(event.fields)


def _value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return printable(value)
    return printable(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_event(event: Event) -> str:
    """One event as an aligned line: time, level, actor, event, then ``key=value``.

    Events about no actor (a link, a supervisor, the system) show ``-`` as the actor and
    name their subject among the fields.
    """
    fields = event.fields
    actor = "-" if "actor" not in fields else _value(fields["actor"])
    skip = {"event", "level", "timestamp", "actor", "exception", *_LAST_FIELDS}
    keys = [key for key in fields if key not in skip]
    keys += [key for key in _LAST_FIELDS if key in fields]
    pairs = " ".join(f"{printable(key)}={_value(fields[key])}" for key in keys)
    level, name = printable(event.level or "-"), printable(event.name)
    return f"{_stamp(event.time)}  {level:<8} {actor:<16} {name:<24} {pairs}".rstrip()


def format_traceback(event: Event) -> list[str]:
    """The exception an event carries (``exception``, as JSON logs write it), as Python
    prints one: innermost cause first, each with its frames; indented under the event.
    Nothing for an event without one."""
    chain = event.fields.get("exception")
    if not isinstance(chain, list):
        same = event.fields.get("same_traceback_as")
        if isinstance(same, int) and not isinstance(same, bool):
            # A repeated failure: its traceback is on that incarnation's failure event.
            return [f"    (the same traceback as incarnation {same}'s failure)"]
        return []
    lines: list[str] = []
    for error in reversed([e for e in chain if isinstance(e, dict)]):
        if lines:
            lines += ["", "    The above exception was the direct cause of the following:", ""]
        frames = error.get("frames")
        if not isinstance(frames, list):
            frames = []
        if frames:
            lines.append("    Traceback (most recent call last):")
        for frame in frames:
            if isinstance(frame, dict):
                where = f'File "{frame.get("filename")}", line {frame.get("lineno")}'
                lines.append(f"      {where}, in {frame.get('name')}")
        lines.append(f"    {error.get('exc_type')}: {error.get('exc_value')}")
    return [printable(line) for line in lines]


# -- the summary ---------------------------------------------------------------------


@attrs.define
class ActorSummary:
    """What the log says about one actor."""

    name: str
    first: datetime | None = None
    last: datetime | None = None
    state: str | None = None
    reason: str | None = None
    state_changes: int = 0
    restarts_logged: int = 0
    """The highest ``restarts`` field of the actor's own events."""
    restart_events: int = 0
    """The ``supervisor.restarting`` events that named the actor."""
    errors: int = 0
    dead_letters: int = 0
    drops: dict[str, int] = attrs.Factory(dict)
    received: int | None = None
    ended: bool = False

    @property
    def restarts(self) -> int:
        return max(self.restarts_logged, self.restart_events)

    @property
    def lifetime(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return (self.last - self.first).total_seconds()

    @property
    def throughput(self) -> float | None:
        """Messages received per second over the observed lifetime."""
        lifetime = self.lifetime
        if self.received is None or not lifetime:
            return None
        return self.received / lifetime

    def seen(self, moment: datetime) -> None:
        if self.first is None or moment < self.first:
            self.first = moment
        if self.last is None or moment > self.last:
            self.last = moment

    def as_json(self, graph: str | None) -> dict[str, Any]:
        return {
            "graph": graph,
            "actor": self.name,
            "state": self.state,
            "reason": self.reason,
            "state_changes": self.state_changes,
            "restarts": self.restarts,
            "errors": self.errors,
            "dead_letters": self.dead_letters,
            "drops": self.drops,
            "received": self.received,
            "throughput": self.throughput,
            "first": None if self.first is None else _stamp(self.first),
            "last": None if self.last is None else _stamp(self.last),
        }


_HEADINGS = (
    "actor",
    "state",
    "reason",
    "changes",
    "restarts",
    "errors",
    "dead letters",
    "drops",
    "received",
    "msg/s",
    "lifetime",
)
_ERRORS = frozenset({"actor.failed", "actor.cleanup_failed", "actor.stop_failed"})


@attrs.define
class Summary:
    """Per-actor figures gathered from a stream of events."""

    graph: str | None = None
    first: datetime | None = None
    last: datetime | None = None
    count: int = 0
    actors: dict[str, ActorSummary] = attrs.Factory(dict)

    def add(self, event: Event) -> None:
        self.count += 1
        if self.first is None or event.time < self.first:
            self.first = event.time
        if self.last is None or event.time > self.last:
            self.last = event.time
        fields = event.fields
        if self.graph is None and isinstance(fields.get("graph"), str):
            self.graph = fields["graph"]
        name = event.name
        if name == "system.heartbeat":
            self._heartbeat(event)
        elif name == "supervisor.restarting":
            self._restarting(fields)
        elif name in ("link.dropped", "link.dropping_stopped") and event.actor is None:
            link = fields.get("link")
            if isinstance(link, str):
                self._dropped(self._actor(_link_ends(link)[-1]), fields)
        actor = event.actor
        if actor is not None:
            self._actor_event(self._actor(actor), event)

    def _actor(self, name: str) -> ActorSummary:
        if name not in self.actors:
            self.actors[name] = ActorSummary(name)
        return self.actors[name]

    def _actor_event(self, actor: ActorSummary, event: Event) -> None:
        actor.seen(event.time)
        fields, name = event.fields, event.name
        restarts = fields.get("restarts")
        if isinstance(restarts, int):
            actor.restarts_logged = max(actor.restarts_logged, restarts)
        if name == "actor.state":
            actor.state = _text(fields.get("state"), actor.state)
            if fields.get("state") != "created":
                actor.state_changes += 1
        elif name in _ERRORS:
            actor.errors += 1
            if fields.get("dead_lettered") is True:  # the failure's item was given up on
                actor.dead_letters += 1
        elif name == "actor.dead_letter":  # older logs: a separate event
            actor.dead_letters += 1
        elif name in ("actor.dropped", "link.dropped", "link.dropping_stopped"):
            self._dropped(actor, fields)
        elif name == "actor.ended":
            actor.ended = True
            actor.reason = _text(fields.get("reason"), actor.reason)
            received, dead = fields.get("received"), fields.get("dead_lettered")
            if isinstance(received, int):
                actor.received = received
            if isinstance(dead, int):
                actor.dead_letters = max(actor.dead_letters, dead)

    def _heartbeat(self, event: Event) -> None:
        snapshot = event.fields.get("actors")
        if not isinstance(snapshot, dict):
            return
        for name, figures in snapshot.items():
            if not isinstance(figures, dict):
                continue
            actor = self._actor(name)
            if actor.ended:
                continue
            # The last heartbeat is the freshest word on an actor still running.
            actor.seen(event.time)
            actor.state = _text(figures.get("state"), actor.state)
            if isinstance(figures.get("received"), int):
                actor.received = figures["received"]

    def _restarting(self, fields: dict[str, Any]) -> None:
        group = fields.get("group")
        names = group if isinstance(group, list) else [fields.get("child")]
        for name in names:
            # A group may name nested supervisors too: only actors have rows.
            if isinstance(name, str) and name in self.actors:
                self.actors[name].restart_events += 1

    @staticmethod
    def _dropped(actor: ActorSummary, fields: dict[str, Any]) -> None:
        count, reason = fields.get("count"), fields.get("reason")
        if isinstance(count, int):
            key = reason if isinstance(reason, str) else "unknown"
            actor.drops[key] = actor.drops.get(key, 0) + count


def summarise(events: Iterable[Event], actors: frozenset[str] = frozenset()) -> Summary:
    """The summary of ``events``, keeping only the rows of ``actors`` if any are given."""
    summary = Summary()
    for event in events:
        summary.add(event)
    if actors:
        summary.actors = {n: a for n, a in summary.actors.items() if n in actors}
    return summary


def format_summary(summary: Summary) -> list[str]:
    """A header line (graph, time span, event count), then one aligned row per actor."""
    graph = "?" if summary.graph is None else printable(repr(summary.graph))
    header = f"graph {graph}: {summary.count} events"
    if summary.first is not None and summary.last is not None:
        span = (summary.last - summary.first).total_seconds()
        header += f" from {_stamp(summary.first)} to {_stamp(summary.last)} ({span:.3f}s)"
    rows: list[tuple[str, ...]] = [_HEADINGS]
    for actor in summary.actors.values():
        drops = ",".join(f"{reason}={n}" for reason, n in sorted(actor.drops.items()))
        rows.append(
            (
                printable(actor.name),
                printable(actor.state or "-"),
                printable(actor.reason or "-"),
                str(actor.state_changes),
                str(actor.restarts),
                str(actor.errors),
                str(actor.dead_letters),
                drops or "0",
                "-" if actor.received is None else str(actor.received),
                "-" if actor.throughput is None else f"{actor.throughput:.1f}",
                "-" if actor.lifetime is None else f"{actor.lifetime:.3f}s",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [header]
    for row in rows:
        cells = [
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


# -- the trace of one message --------------------------------------------------------


@attrs.frozen
class Hop:
    """One event in a message's life, ``offset`` seconds after its first."""

    offset: float
    event: Event
    what: str

    def as_json(self, message_id: str) -> dict[str, Any]:
        fields = {
            key: value
            for key, value in self.event.fields.items()
            if key not in ("message_ids", "message_id", "level", "timestamp", "event", "actor")
        }
        return {
            "message_id": message_id,
            "offset": self.offset,
            "timestamp": _stamp(self.event.time),
            "actor": self.event.actor,
            "event": self.event.name,
            "what": self.what,
            **fields,
        }


def _mentions(event: Event, message_id: str) -> bool:
    fields = event.fields
    if fields.get("message_id") == message_id:
        return True
    ids = fields.get("message_ids")
    return isinstance(ids, list) and message_id in ids


def _what(event: Event) -> str:
    fields, name = event.fields, event.name
    if name == "message.sent":
        return printable(f"sent on port {fields.get('port')}")
    if name == "message.received":
        return printable(f"received from link {fields.get('link')}")
    if name == "actor.failed" and fields.get("dead_lettered") is True:
        attempts = fields.get("attempts")
        tries = "attempt" if attempts == 1 else "attempts"
        error = fields.get("error")
        return printable(f"failed, dead-lettered after {attempts} {tries}: {error}")
    if name == "actor.failed":
        return printable(f"failed: {fields.get('error')}")
    if name == "actor.dead_letter":
        attempts = fields.get("attempts")
        tries = "attempt" if attempts == 1 else "attempts"
        return printable(f"dead-lettered after {attempts} {tries}: {fields.get('error')}")
    skip = {"event", "level", "timestamp", "actor", "message_id", "message_ids"}
    pairs = " ".join(f"{key}={_value(value)}" for key, value in fields.items() if key not in skip)
    return printable(f"{name} {pairs}".rstrip())


def trace(events: Iterable[Event], message_id: str) -> list[Hop]:
    """Every event that mentions ``message_id``, in file order, timed from the first."""
    mentions = [event for event in events if _mentions(event, message_id)]
    if not mentions:
        return []
    start = mentions[0].time
    return [Hop((event.time - start).total_seconds(), event, _what(event)) for event in mentions]


def format_trace(message_id: str, hops: list[Hop]) -> list[str]:
    """A header line, then one aligned line per hop: offset, actor, what happened."""
    span = hops[-1].offset
    header = (
        f"message {printable(message_id)}: {len(hops)} events "
        f"from {_stamp(hops[0].event.time)} over {span:.6f}s"
    )
    actors = [printable(hop.event.actor or "-") for hop in hops]
    width = max(map(len, actors))
    return [header] + [
        f"{hop.offset:+.6f}s  {actor:<{width}}  {hop.what}"
        for hop, actor in zip(hops, actors, strict=True)
    ]


# -- the command ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``actorflow logs``."""
    parser.add_argument("file", help="a JSON-lines log (actorflow run --log PATH)")
    parser.add_argument(
        "--actor",
        action="append",
        default=[],
        metavar="NAME",
        help="only events about this actor: its own, as a supervisor's child, or at "
        "either end of a link (repeatable)",
    )
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="NAME",
        help="only this event; 'actor.*' or 'actor.' selects a family (repeatable)",
    )
    parser.add_argument(
        "--level",
        type=str.lower,
        choices=tuple(_LEVELS),
        help="the lowest level shown (debug < info < warning < error < critical)",
    )
    for option, edge in (("--since", "earliest"), ("--until", "latest")):
        parser.add_argument(
            option,
            type=_time_option,
            metavar="TIME",
            help=f"the {edge} time shown: an ISO 8601 date or datetime (UTC unless it "
            "says otherwise) or a duration before now (30s, 10m, 2h, 1d)",
        )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing events as the file grows, until Ctrl-C",
    )
    mode.add_argument(
        "--summary",
        action="store_true",
        help="per actor: state changes, restarts, errors, drops, dead letters, throughput",
    )
    mode.add_argument(
        "--trace",
        metavar="MESSAGE_ID",
        help="the timeline of one message (needs a log written at --log-level debug)",
    )
    _add_output_options(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="under each event that carries an exception, its traceback (the chain, "
        "innermost cause first, with file and line of each frame)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="JSON lines: the matching events as they were, one object per actor "
        "(--summary) or per hop (--trace)",
    )


def _pause() -> None:
    """Wait before looking at a followed file again (replaced by tests)."""
    time.sleep(POLL_INTERVAL)


def _open_when_there(path: str, err: TextIO) -> Tail:
    """``Tail.open(path)``, waiting (like ``tail -F``) while no file is there yet; any
    other reason it cannot be read is an error at once."""
    said = False
    while True:
        try:
            return Tail.open(path)
        except FileNotFoundError:
            if not said:
                print(f"waiting for {path} to appear (Ctrl-C to stop)", file=err, flush=True)
                said = True
            _pause()


def command(args: argparse.Namespace) -> int:
    """Run ``actorflow logs``; returns the exit code.

    0 success (also when ``--follow`` ends with Ctrl-C), 1 ``--trace`` found nothing,
    2 the file cannot be read, 130 interrupted (without ``--follow``). With
    ``--follow``, a file that does not exist yet is waited for.
    """
    out, err = sys.stdout, sys.stderr
    selected = Filter(
        actors=frozenset(args.actor),
        events=tuple(args.event),
        level=args.level,
        since=args.since,
        until=args.until,
    )
    skipped = Skipped()
    try:
        tail = _open_when_there(args.file, err) if args.follow else Tail.open(args.file)
    except KeyboardInterrupt:
        return 0  # --follow, still waiting for the file
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
        print(f"error: {args.file}: cannot read it: {reason or exc}", file=err)
        return 2
    try:
        with contextlib.closing(tail):
            return _command(args, tail, selected, skipped, out, err)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as other Unix tools do, and
        # keep the interpreter's last flush of stdout from failing again.
        with contextlib.suppress(OSError, ValueError):
            descriptor = out.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, descriptor)
            os.close(devnull)
        return 0
    except KeyboardInterrupt:
        return 0 if args.follow else 130
    except OSError as exc:
        print(f"error: {args.file}: cannot read it: {exc.strerror or exc}", file=err)
        return 2
    finally:
        report = skipped.report()
        if report is not None:
            print(report, file=err)


def _command(
    args: argparse.Namespace,
    tail: Tail,
    selected: Filter,
    skipped: Skipped,
    out: TextIO,
    err: TextIO,
) -> int:
    if args.summary:
        everyone = attrs.evolve(selected, actors=frozenset())
        summary = summarise(
            filter(everyone, events(read_all(tail), skipped)), actors=selected.actors
        )
        if args.json:
            for actor in summary.actors.values():
                print(json.dumps(actor.as_json(summary.graph)), file=out)
        else:
            print("\n".join(format_summary(summary)), file=out)
        return 0
    if args.trace is not None:
        hops = trace(filter(selected, events(read_all(tail), skipped)), args.trace)
        if not hops:
            print(
                f"no event mentions message id {args.trace} "
                "(was the run logged at --log-level debug?)",
                file=err,
            )
            return 1
        if args.json:
            for hop in hops:
                print(json.dumps(hop.as_json(args.trace)), file=out)
        else:
            print("\n".join(format_trace(args.trace, hops)), file=out)
        return 0

    def wait() -> None:
        out.flush()
        _pause()

    lines = follow(tail, wait=wait) if args.follow else read_all(tail)
    for event in filter(selected, events(lines, skipped)):
        print(_json_line(event) if args.json else format_event(event), file=out)
        if args.traceback and not args.json:
            for line in format_traceback(event):
                print(line, file=out)
    return 0
