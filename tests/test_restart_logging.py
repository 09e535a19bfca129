"""A restart's failure event under default logging: written directly, as the fallback
logger writes it, and with its traceback once per kind of failure."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow._logging import Tracebacks, _fallback_logger, _Quiet, get_logger

_KEYS = st.text(st.sampled_from(list("abcz_")), min_size=1, max_size=6).filter(
    lambda key: key not in {"event", "level", "timestamp", "logger", "logger_name"}
)
_VALUES = (
    st.text(st.sampled_from(list("ab =\t\n\"'")), max_size=8)
    | st.integers()
    | st.booleans()
    | st.none()
    | st.lists(st.integers(), max_size=3)
)
_METHODS = st.sampled_from(["warning", "warn", "error", "critical", "fatal"])


def _written(write: Any) -> list[str]:
    """The lines ``write()`` puts on stderr, their timestamps left out."""
    saved, sys.stderr = sys.stderr, io.StringIO()
    try:
        write()
        text = sys.stderr.getvalue()
    finally:
        sys.stderr = saved
    return [line.split(" ", 1)[1] if line[:4].isdigit() else line for line in text.splitlines()]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6), _METHODS, st.text("ab. _=", max_size=12))
def test_a_quiet_loggers_warnings_are_written_as_the_fallback_logger_writes_them(
    fields: dict[str, Any], method: str, name: str
) -> None:
    """Without structlog configured, a warning or an error is the fallback logger's
    line, bound fields included, byte for byte but the time."""
    bound = {"actor": "w"}
    fields = {key: value for key, value in fields.items() if key not in bound}
    ours = _written(lambda: getattr(_Quiet(bound), method)(name, **fields))
    theirs = _written(lambda: getattr(_fallback_logger().bind(**bound), method)(name, **fields))
    assert ours == theirs
    assert len(ours) == 1


def test_quiet_loggers_with_positional_arguments_and_exceptions_go_through_the_fallback() -> None:
    """%-style arguments are interpolated, and ``exception`` carries its traceback, as
    the fallback logger does it."""
    assert _written(lambda: _Quiet({}).error("made %s", "here")) == ["[error    ] made here"]
    try:
        raise ValueError("boom")
    except ValueError:
        lines = _written(lambda: _Quiet({"actor": "w"}).exception("failed"))
    assert lines[0].startswith("[error    ] failed")
    assert lines[-1] == "ValueError: boom"


def test_loggers_stay_quiet_when_structlog_is_imported_but_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An application that imported structlog and configured nothing gets the quiet
    logger: info events cost nothing, warnings are the fallback's lines."""
    import structlog

    monkeypatch.setattr(structlog, "is_configured", lambda: False)
    log = get_logger(actor="w")
    assert isinstance(log, _Quiet)
    assert _written(lambda: log.info("actor.ready")) == []
    assert _written(lambda: log.warning("link.dropped", count=2)) == [
        "[warning  ] link.dropped                   actor=w count=2"
    ]


def _failure(line: int) -> BaseException:
    """A failure raised from one of two lines of this function, chained as a module's
    failure is (the runtime's error, caused by the module's)."""
    try:
        try:
            if line == 1:
                raise ValueError("one")
            raise ValueError("two")
        except ValueError as cause:
            raise RuntimeError("wrapped") from cause
    except RuntimeError as error:
        return error


def test_a_failures_traceback_is_written_once_per_kind_of_failure() -> None:
    """The same failure again refers to the incarnation whose event has its traceback;
    a failure at another line has its own."""
    seen = Tracebacks()
    first = seen.fields(_failure(1), 1)
    assert set(first) == {"exc_info"}
    assert seen.fields(_failure(1), 2) == {"same_traceback_as": 1, "repeats": 1}
    assert seen.fields(_failure(1), 3) == {"same_traceback_as": 1, "repeats": 2}
    assert set(seen.fields(_failure(2), 4)) == {"exc_info"}
    assert seen.fields(_failure(2), 5) == {"same_traceback_as": 4, "repeats": 1}
