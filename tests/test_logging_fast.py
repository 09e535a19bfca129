"""The JSON lines path renders what structlog's own processors would, only faster; and a
run imports structlog only when something is written."""

from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys
from typing import Any

import pytest
import structlog
import structlog.tracebacks
from hypothesis import given
from hypothesis import strategies as st

import actorflow as af
from actorflow._logging import _console, _stamp, _traceback_dicts, user_traceback


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def chained() -> BaseException:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as outer:
        return outer


def in_context() -> BaseException:
    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("second")  # noqa: B904 - the implicit context is the point
    except RuntimeError as second:
        return second


def deep(depth: int) -> BaseException:
    def down(n: int) -> None:
        if n == 0:
            raise OSError(5, "at the bottom")
        down(n - 1)

    try:
        down(depth)
    except OSError as exc:
        return exc
    raise AssertionError("unreachable")


def grouped() -> BaseException:
    return raised(
        ExceptionGroup("several", [raised(ValueError("a")), raised(deep(60))])  # type: ignore[list-item]
    )


def with_notes() -> BaseException:
    exc = raised(TypeError("noted"))
    exc.add_note("a note")
    return exc


def broken_str() -> BaseException:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    return raised(Broken())


def cyclic() -> BaseException:
    first, second = raised(ValueError("first")), raised(KeyError("second"))
    first.__context__, second.__context__ = second, first
    return first


def nested_group() -> BaseException:
    inner = raised(ExceptionGroup("inner", [chained()]))  # type: ignore[list-item]
    return raised(ExceptionGroup("outer", [inner, raised(OSError("disk"))]))  # type: ignore[list-item]


def syntax() -> BaseException:
    try:
        compile("x = (", "<graph>", "exec")
    except SyntaxError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "make",
    [
        chained,
        in_context,
        lambda: deep(70),
        lambda: deep(3),
        grouped,
        nested_group,
        with_notes,
        broken_str,
        cyclic,
        syntax,
    ],
)
def test_exception_dicts_are_those_of_structlogs_transformer(make: Any) -> None:
    """Chains, contexts, long stacks (cut to 50 frames), groups, notes and syntax errors
    come out exactly as ``ExceptionDictTransformer(show_locals=False, max_frames=50)``
    writes them."""
    exc = make()
    theirs = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False, max_frames=50)
    )
    ours = _traceback_dicts()
    assert ours(None, "error", {"exc_info": exc}) == theirs(None, "error", {"exc_info": exc})


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_timestamps_are_iso_utc_like_structlogs(moment: float) -> None:
    """The timestamp is the ISO 8601 UTC text of the moment, ``Z``-suffixed, with
    microseconds unless there are none, as ``TimeStamper(fmt="iso", utc=True)``."""
    from unittest import mock

    with mock.patch("time.time", return_value=moment):
        event = _stamp(None, "warn", {})
    assert event["level"] == "warning"
    parsed = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    expected = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    assert abs((parsed - expected).total_seconds()) < 2e-6
    assert event["timestamp"].endswith("Z")
    assert ("." in event["timestamp"]) == (parsed.microsecond != 0)


def test_json_lines_carry_the_same_fields_as_structlogs_renderers() -> None:
    """An event with odd values (a set, an object with ``__structlog__``) is written as
    structlog's JSONRenderer writes it; level and timestamp come after the fields."""

    class Named:
        def __structlog__(self) -> str:
            return "named"

    stream = io.StringIO()
    af.configure_logging(format="json", level="info", file=stream)
    structlog.get_logger("actorflow").bind(actor="a").info("e.v", odd={1}, named=Named())
    event = json.loads(stream.getvalue())
    assert list(event) == ["actor", "odd", "named", "event", "level", "timestamp"]
    assert event["odd"] == "{1}"
    assert event["named"] == "named"


def test_a_run_imports_structlog_only_when_something_is_written() -> None:
    """An application that never imported structlog runs a graph without it (nor rich);
    a warning imports it and is written to stderr."""
    script = (
        "import sys, actorflow as af\n"
        "from typing import ClassVar\n"
        "class Numbers(af.Source):\n"
        "    outputs: ClassVar = {'out': int}\n"
        "    def start(self): return range(3)\n"
        "class Keep(af.Sink):\n"
        "    def consume(self, data): pass\n"
        "g = af.Graph(name='g'); g.add('n', Numbers); g.add('k', Keep); g.link('n', 'k')\n"
        "af.run(g)\n"
        "print('structlog' in sys.modules, 'rich' in sys.modules)\n"
        "from actorflow._logging import get_logger\n"
        "log = get_logger(actor='x').bind(port='p')\n"
        "log.info('quiet.event')\n"
        "log.warning('loud.event', count=2)\n"
        "print('structlog' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]
    assert "loud.event" in done.stderr
    assert "actor=x" in done.stderr
    assert "port=p" in done.stderr
    assert "quiet.event" not in done.stderr


def test_a_quiet_logger_drops_what_is_below_warning_and_writes_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The logger of an application that never imported structlog: binding works as a
    bound logger's does; debug and info cost a call; warnings, errors and anything
    else a bound logger offers go through the fallback logger, to stderr."""
    import logging

    from actorflow._logging import _Quiet

    log = _Quiet({"actor": "a"}).bind(port="p", extra=1).try_unbind("extra", "absent")
    assert not log.is_enabled_for(logging.INFO)
    assert log.is_enabled_for(logging.ERROR)
    assert log.get_effective_level() == logging.WARNING
    log.debug("hidden.debug")
    log.info("hidden.info")
    log.log(logging.INFO, "hidden.log")
    log.warning("shown.warning", count=1)
    log.log(logging.ERROR, "shown.log")
    log.new(other=2).error("shown.error")
    assert callable(log.awarning)  # the fallback's own, for what _Quiet does not define
    with pytest.raises(KeyError):
        log.unbind("absent")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown.warning" in err
    assert "port=p" in err
    assert "extra" not in err
    assert "shown.log" in err
    assert "shown.error" in err
    assert "other=2" in err
    assert "actor=a" not in err.split("shown.error")[1].splitlines()[0]


_KEYS = st.sampled_from(
    ["timestamp", "level", "event", "logger", "logger_name", "stack", "exception", "", "a b"]
) | st.text(max_size=8)
_VALUES = (
    st.text(st.sampled_from(list("ab =\t\r\n\"'\\\x1b")), max_size=8)
    | st.text(max_size=8)
    | st.integers()
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=3)
)
_LEVELS = st.sampled_from(["debug", "info", "warning", "error", "critical", "exception", "x"])


@given(st.dictionaries(_KEYS, _VALUES, max_size=8), _LEVELS, st.text(max_size=40))
def test_plain_console_lines_are_those_of_structlogs_console_renderer(
    fields: dict[str, Any], level: str, name: str
) -> None:
    """Without colours, an event is written exactly as ``ConsoleRenderer(colors=False)``
    writes it (columns, padding, quoting, sorted keys), exception or not."""
    theirs = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=user_traceback)
    ours = _console(colors=False)

    def same(event: dict[str, Any]) -> None:
        found = []
        for render in (ours, theirs):
            try:
                found.append(render(None, "info", dict(event)))
            except Exception as exc:  # a "stack" that is not a string, say: both raise
                found.append(type(exc).__name__)
        assert found[0] == found[1]

    event = {**fields, "event": name, "level": level}
    same(event)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        same({**event, "exc_info": exc})
