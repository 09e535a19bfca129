"""Structured logging: one call to configure it, and the loggers the runtime uses.

Every event actorflow logs has a stable ``event`` name (``"actor.state"``,
``"system.done"``, ...) and keyword fields (``actor=``, ``state=``, ``count=``), never a
formatted sentence, so logs can be filtered and summarised by machines.

If the application never configured structlog, actorflow does not impose structlog's
development defaults (everything, to stdout) on it: it logs warnings and errors to
stderr only. :func:`configure_logging` (or the application's own
``structlog.configure``) turns on the rest. "Configured" means structlog's output is
not its builtin defaults: ``structlog.testing.capture_logs()`` marks structlog as
configured for good and, on leaving, restores the builtin defaults, which must not
turn on every event, debug included, for the rest of the process. actorflow changes
no global logging state (structlog's or the standard library's) unless it is asked to,
by :func:`configure_logging`.

structlog is imported only when something is to be written: an application that never
imported it cannot have configured it, so until a warning comes its loggers are
:class:`_Quiet` ones, and ``import actorflow`` plus a run do not pay for structlog (nor
for rich, which structlog imports if it is installed). An application that configured
nothing keeps :class:`_Quiet` loggers once structlog is imported: they write warnings
and errors as the fallback logger does, without its bound logger's passes.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, MutableMapping
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO, cast

import attrs
import outcome
import trio

from ._checks import did_you_mean, short
from ._urls import redact_text

if TYPE_CHECKING:
    import structlog
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "Tracebacks",
    "check_level",
    "configure_logging",
    "enabled_for",
    "get_logger",
    "log_write_error",
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _GuardedStream:
    """Where configured events are written: a write that fails (a full disk, a file
    system gone, a closed stderr) is said once, in one line on stderr, and the events
    after it are counted, never raised into the module or actor that logged them."""

    def __init__(self, stream: TextIO | None, name: str) -> None:
        self.stream = stream
        self.name = name
        self.error: OSError | None = None
        self.lost = 0
        """Events not written since the first failure."""

    def write(self, text: str) -> int:
        if self.error is None and self.stream is not None:
            try:
                return self.stream.write(text)
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                self._failed(exc)
        self.lost += 1
        return len(text)

    def flush(self) -> None:
        if self.error is None and self.stream is not None:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._failed(exc)

    def isatty(self) -> bool:
        return self.stream is not None and self.error is None and self.stream.isatty()

    def close(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self.stream.close()

    def _failed(self, exc: OSError | ValueError) -> None:
        self.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        reason = getattr(exc, "strerror", None) or str(exc)
        if self.stream is not sys.stderr and sys.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                print(
                    f"actorflow: cannot write the log to {self.name}: {reason}; "
                    "later events are not written",
                    file=sys.stderr,
                    flush=True,
                )


_owned_stream: TextIO | None = None
"""A log file ``configure_logging`` opened itself, closed when it is reconfigured."""

_target: _GuardedStream | None = None
"""Where :func:`configure_logging` sends events now."""


def _release_owned_stream() -> None:
    global _owned_stream
    if _owned_stream is not None:
        with contextlib.suppress(OSError, ValueError):
            _owned_stream.close()
        _owned_stream = None


def _open_append(path: str) -> TextIO:
    """``path`` opened to append, line-buffered. Never blocks: a pipe with no reader
    (a FIFO nobody reads) is an error at once (ENXIO), not a wait for ever."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(exc.errno, "a pipe that nobody reads", path) from None
        raise
    try:
        os.set_blocking(descriptor, True)
        return open(descriptor, "a", encoding="utf-8", buffering=1)
    except BaseException:
        os.close(descriptor)
        raise


def _open_target(file: str | TextIO | None) -> _GuardedStream:
    """Where configured events go: ``file`` (a path is opened here, and owned), else
    stderr."""
    global _owned_stream
    _release_owned_stream()
    raw: TextIO | None
    if file is None:
        raw = sys.stderr
    elif isinstance(file, str):
        raw = _open_append(file)
        _owned_stream = raw
    else:
        raw = file
    name = file if isinstance(file, str) else getattr(raw, "name", "the log stream")
    return _GuardedStream(raw, str(name))


def log_write_error() -> OSError | None:
    """Why the configured log could not be written, if a write has failed."""
    return None if _target is None else _target.error


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        choices = ", ".join(_LEVELS)
        hint = did_you_mean(level.lower(), _LEVELS)
        raise ValueError(f"unknown log level {short(level)}; use one of {choices}{hint}") from None


def check_level(level: str | int) -> None:
    """Refuse ``level`` unless it is a level name (any case) or number.

    Raises:
        ValueError: Naming the level names, and the closest one.
    """
    _level_number(level)


def configure_logging(
    *,
    format: Literal["console", "json"] = "console",
    level: str | int = "info",
    file: str | TextIO | None = None,
    echo: str | int | None = None,
) -> None:
    """Configure structlog for actorflow's events (and the rest of the application).

    Args:
        format: ``"console"`` for people (aligned, coloured on a TTY), ``"json"`` for
            one JSON object per line, for machines and ``actorflow logs``.
        level: The lowest level written: ``"debug"`` shows every state change, including
            the frequent ``running``/``blocked`` ones; ``"info"`` shows lifecycle events.
        file: A path to append to (opened line-buffered, and closed when logging is
            configured again), an open text stream, or ``None`` for stderr.
        echo: With a ``file``, also write the events at this level and above to
            stderr, for people (``"warning"``: what goes wrong is seen where the
            program runs, not only in the file).

    A write that fails later (a full disk) is said once on stderr and never raised into
    the code that logged.

    Raises:
        ValueError: ``format`` or ``level`` is not one of the accepted values.
        OSError: ``file`` is a path that cannot be opened for appending.
    """
    if format not in ("console", "json"):
        raise ValueError(f"unknown log format {format!r}; use 'console' or 'json'")
    import structlog

    global _target
    number = _level_number(level)
    stream = _target = _open_target(file)
    renderer: Any = _JsonLine() if format == "json" else _console(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _stamp,
            structlog.processors.StackInfoRenderer(),
            *([_Echo(_level_number(echo))] if echo is not None and file is not None else []),
            *([] if format == "json" else [structlog.dev.set_exc_info]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=_LineLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
"""The level a logging method writes at, where it is not the method's name."""

_UTC = datetime.UTC
_second: tuple[int, str] = (-1, "")
"""The whole second last stamped, and its ISO text (the same second is formatted once)."""


def _stamp(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``level`` and ``timestamp`` (ISO 8601, UTC), as structlog's ``add_log_level``
    and ``TimeStamper(fmt="iso", utc=True)`` write them, in one processor that formats
    a second once."""
    global _second
    event["level"] = _LEVEL_NAMES.get(method, method)
    now = time.time()
    whole = int(now)
    second = _second
    if whole != second[0]:
        moment = datetime.datetime.fromtimestamp(whole, _UTC)
        second = _second = (whole, moment.strftime("%Y-%m-%dT%H:%M:%S"))
    micro = int((now - whole) * 1_000_000)
    event["timestamp"] = f"{second[1]}.{micro:06d}Z" if micro else f"{second[1]}Z"
    return event


def _for_json(value: Any) -> Any:
    """What structlog's JSONRenderer writes for a value JSON has no type for."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


class _JsonLine:
    """The event as one JSON object, as ``JSONRenderer(sort_keys=False)`` writes it
    (with the encoder built once rather than per event), its exception (``exc_info``)
    first turned into dicts (see :func:`_traceback_dicts`): one processor, since most
    events carry no exception."""

    def __init__(self) -> None:
        import json

        self.exceptions = _traceback_dicts()
        self.encode = json.JSONEncoder(default=_for_json).encode

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        if "exc_info" in event:
            event = self.exceptions(logger, method, event)
        return self.encode(event)


_MAX_FRAMES = 50


def _traceback_dicts() -> Any:
    """An event's exception (``exc_info``) as a list of dicts with its chain and frames,
    in JSON lines: what structlog's ``ExceptionDictTransformer(show_locals=False,
    max_frames=50)`` gives (a test compares them), built directly rather than through
    its dataclasses and ``dataclasses.asdict``, whose deep copies were most of a
    restart's logging. Never the frames' locals: they hold items, batches and secrets."""
    import structlog

    def as_dicts(exc_info: Any) -> list[dict[str, Any]]:
        kind, error, tb = exc_info
        stacks = _chain(kind, error, tb, set())
        for stack in stacks:
            frames = stack["frames"]
            if len(frames) > _MAX_FRAMES:
                half = _MAX_FRAMES // 2
                skipped = len(frames) - 2 * half
                cut = {"filename": "", "lineno": -1, "name": f"Skipped frames: {skipped}"}
                stack["frames"] = [*frames[:half], cut, *frames[-half:]]
        return stacks

    return structlog.processors.ExceptionRenderer(as_dicts)


def _chain(kind: Any, error: Any, tb: Any, seen: set[int]) -> list[dict[str, Any]]:
    """``error`` and the exceptions it chains (its cause, else its context), each as
    structlog's ``tracebacks.extract`` describes it; a group's members each as a chain
    of their own (frames not cut, as structlog leaves them)."""
    stacks: list[dict[str, Any]] = []
    is_cause = False
    while id(error) not in seen:
        seen.add(id(error))
        stack: dict[str, Any] = {
            "exc_type": _safe_str(kind.__name__),
            "exc_value": redact_text(_safe_str(error)),
            "exc_notes": [_safe_str(note) for note in getattr(error, "__notes__", ())],
            "syntax_error": None,
            "is_cause": is_cause,
            "frames": [],
            "is_group": False,
            "exceptions": [],
        }
        if isinstance(error, BaseExceptionGroup):
            stack["is_group"] = True
            stack["exceptions"] = [
                _chain(type(member), member, member.__traceback__, seen)
                for member in error.exceptions
            ]
        if isinstance(error, SyntaxError):
            stack["syntax_error"] = {
                "offset": error.offset or 0,
                "filename": error.filename or "?",
                "line": error.text or "",
                "lineno": error.lineno or 0,
                "msg": error.msg,
            }
        stack["frames"] = [
            {
                "filename": _path(frame.f_code.co_filename),
                "lineno": line,
                "name": frame.f_code.co_name,
            }
            for frame, line in traceback.walk_tb(tb)
        ]
        stacks.append(stack)
        cause = getattr(error, "__cause__", None)
        if cause and cause.__traceback__:
            kind, error, tb, is_cause = cause.__class__, cause, cause.__traceback__, True
            continue
        cause = error.__context__
        if cause and cause.__traceback__ and not getattr(error, "__suppress_context__", False):
            kind, error, tb, is_cause = cause.__class__, cause, cause.__traceback__, False
            continue
        break
    return stacks


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:  # what structlog writes for a broken __str__
        return f"<str-error {str(exc)!r}>"


_absolute: dict[str, str] = {}
"""Absolute file names, normalised: the same whatever the working directory."""


def _path(filename: str) -> str:
    """A frame's file name as structlog writes it: absolute, unless it is a pseudo
    file (``<string>``) or none."""
    if not filename or filename.startswith("<"):
        return filename or "?"
    found = _absolute.get(filename)
    if found is None:
        found = os.path.abspath(filename)
        if os.path.isabs(filename):
            _absolute[filename] = found
    return found


class _LineLogger:
    """Writes each rendered event as a line, flushed (structlog's ``PrintLogger``
    without ``print``'s argument handling; a file ``configure_logging`` opened is
    line-buffered, so its newline flushes it)."""

    def __init__(self, stream: _GuardedStream) -> None:
        self._stream = stream
        self._flush = stream.stream is not _owned_stream
        self._lock = threading.Lock()  # blocking modules log from worker threads

    def msg(self, message: str) -> None:
        stream = self._stream
        with self._lock:
            stream.write(message)
            stream.write("\n")
            if self._flush:
                stream.flush()

    log = debug = info = warning = warn = error = exception = critical = fatal = msg


class _LineLoggerFactory:
    def __init__(self, stream: _GuardedStream) -> None:
        self._logger = _LineLogger(stream)

    def __call__(self, *args: Any) -> _LineLogger:
        return self._logger


_PLUMBING = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (trio.__file__, outcome.__file__, __file__)
)
"""Where the frames between a module's hook and the event loop live: actorflow, trio."""


def user_traceback(sio: TextIO, exc_info: Any) -> None:
    """An exception's chain, with only the frames outside actorflow and trio: what an
    operator reads is where the module's own code failed, in a few lines."""
    _, error, _ = exc_info
    if not isinstance(error, BaseException):
        return
    shown = traceback.TracebackException.from_exception(error)
    seen: set[int] = set()
    pending = [shown]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        kept = [frame for frame in part.stack if not frame.filename.startswith(_PLUMBING)]
        part.stack = traceback.StackSummary.from_list(kept)
        pending.extend(p for p in (part.__cause__, part.__context__) if p is not None)
    sio.write("\n" + redact_text("".join(shown.format()).rstrip("\n")))


_METHOD_LEVELS = {
    **_LEVELS,
    "warn": logging.WARNING,
    "exception": logging.ERROR,
    "fatal": logging.CRITICAL,
}
"""The level of each structlog logging method."""


class _Echo:
    """A processor that also writes events at ``level`` and above to the current
    stderr, rendered for people, and passes every event on unchanged."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.renderer = _console(colors=False)
        self.stderr = _CurrentStderr()

    def __call__(self, logger: Any, method: str, event: Any) -> Any:
        if _METHOD_LEVELS.get(method, logging.INFO) >= self.level:
            with contextlib.suppress(OSError, ValueError):
                self.stderr.write(self.renderer(logger, method, dict(event)) + "\n")
                self.stderr.flush()
        return event


def _console(*, colors: bool) -> Callable[[Any, str, MutableMapping[str, Any]], str]:
    """Events for people; an event's exception as a short traceback of the module's own
    frames (never the frames' locals: they hold items, batches and secrets)."""
    import structlog

    renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=user_traceback)
    return renderer if colors else _PlainConsole(renderer)


_NOTHING = object()
_LEVEL_WIDTH = len("exception")
"""The longest level name: ConsoleRenderer pads levels to it."""
_EVENT_WIDTH = 30
"""ConsoleRenderer's default ``pad_event_to``."""
_QUOTED = frozenset(" \t=\r\n\"'")
"""A string holding any of these is written as its repr."""


class _PlainConsole:
    """What ``ConsoleRenderer(colors=False)`` writes (a test compares them), without its
    per-column formatter objects and string buffers: an event without an exception,
    the line of nearly every event, costs a fifth. An event with an exception or a
    stack goes to structlog's renderer itself."""

    def __init__(self, renderer: structlog.dev.ConsoleRenderer) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        if "stack" in event or "exception" in event or event.get("exc_info"):
            return self.renderer(logger, method, event)
        event.pop("exc_info", None)
        pop = event.pop
        parts = []
        if (nameless := pop("", _NOTHING)) is not _NOTHING:  # its columns' first key
            parts.append(f"={_plain_repr(nameless)}")
        if (stamp := pop("timestamp", _NOTHING)) is not _NOTHING:
            parts.append(str(stamp))
        if (level := pop("level", _NOTHING)) is not _NOTHING:
            parts.append(f"[{level}{' ' * (_LEVEL_WIDTH - len(level))}]")
        if (name := pop("event", _NOTHING)) is not _NOTHING:
            text = str(name)
            parts.append(text + " " * (_EVENT_WIDTH - len(text)))
        if (value := pop("logger", _NOTHING)) is not _NOTHING:
            parts.append(f"[{value}]")
        if (value := pop("logger_name", _NOTHING)) is not _NOTHING:
            parts.append(f"[{value}]")
        plain = _QUOTED.isdisjoint
        append = parts.append
        for key in sorted(event):  # _plain_repr, inline: an event has a dozen fields
            value = event[key]
            if type(value) is not str:
                append(
                    f"{key}={value!r}"
                    if not isinstance(value, str)
                    else f"{key}={_plain_repr(value)}"
                )
            elif plain(value):
                append(f"{key}={value}")
            else:
                append(f"{key}={value!r}")
        return " ".join(filter(None, parts)).rstrip(" ")


def _plain_repr(value: Any) -> str:
    """ConsoleRenderer's ``_repr``: a string as it is unless it holds a space, a quote,
    ``=`` or a line break; anything else as its repr."""
    if isinstance(value, str):
        return repr(value) if not _QUOTED.isdisjoint(value) else value
    return repr(value)


def _builtin_defaults() -> tuple[Any, ...] | None:
    """structlog's builtin processors, wrapper class, logger factory and context class
    (not public: if a structlog release renames them, ``is_configured()`` alone
    decides)."""
    import structlog._config as _structlog_config

    names = ("PROCESSORS", "WRAPPER_CLASS", "LOGGER_FACTORY", "CONTEXT_CLASS")
    found = tuple(getattr(_structlog_config, f"_BUILTIN_DEFAULT_{name}", None) for name in names)
    return None if None in found else found


def _configured_by_application() -> bool:
    """Whether structlog's output is someone's choice rather than its builtin defaults.

    ``structlog.is_configured()`` alone cannot tell: ``capture_logs()`` calls
    ``configure`` (so it stays ``True``) and, on leaving, puts the builtin processors
    back, which print every event, debug included, to stdout. An application that
    never imported structlog has not configured it (nothing is imported to ask).
    """
    if "structlog" not in sys.modules:
        return False
    import structlog

    if not structlog.is_configured():
        return False
    defaults = _builtin_defaults()
    if defaults is None:  # pragma: no cover - depends on the structlog release
        return True
    processors, wrapper_class, logger_factory, context_class = defaults
    config = structlog.get_config()
    current = list(config["processors"])
    builtin = (
        config["wrapper_class"] is wrapper_class
        and config["logger_factory"] is logger_factory
        and config["context_class"] is context_class
        and len(current) == len(processors)
        and all(mine is theirs for mine, theirs in zip(current, processors, strict=True))
    )
    return not builtin


class _CurrentStderr:
    """Writes to ``sys.stderr`` as it is at each write, not as it was when a logger was
    made. A live view that redirects stderr (``actorflow run``'s) then prints warnings
    above itself; written under it, its next redraw would erase them instead."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrLines:
    """The fallback logger's output: each rendered event as one line, written to the
    current stderr (see :class:`_CurrentStderr`) and flushed; structlog's
    ``PrintLogger`` on it made three calls through ``print`` per event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # blocking modules log from worker threads

    def msg(self, message: str) -> None:
        with self._lock:
            stderr = sys.stderr
            stderr.write(message + "\n")
            stderr.flush()

    log = debug = info = warning = warn = error = exception = critical = fatal = msg


_fallback: FilteringBoundLogger | None = None
"""The logger used while structlog is not configured, built on first use and shared."""


def _fallback_logger() -> FilteringBoundLogger:
    """Warnings and errors to the current stderr, for an application that configured
    nothing. Built once: a renderer per actor and per link cost more than the rest of
    an idle actor's logging together (100,000 actors made 150,000 of them)."""
    global _fallback
    if _fallback is None:
        import structlog

        proxy = structlog.wrap_logger(
            _FALLBACK_OUT,
            processors=[
                _stamp,  # add_log_level and TimeStamper(fmt="iso", utc=True), in one
                structlog.dev.set_exc_info,
                _fallback_console(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        )
        _fallback = cast("FilteringBoundLogger", proxy.bind())
    return _fallback


_FALLBACK_OUT = _StderrLines()

_fallback_render: Callable[[Any, str, MutableMapping[str, Any]], str] | None = None


def _fallback_console() -> Callable[[Any, str, MutableMapping[str, Any]], str]:
    """The fallback logger's renderer, made once (see :func:`_write_directly`)."""
    global _fallback_render
    if _fallback_render is None:
        _fallback_render = _console(colors=False)
    return _fallback_render


def _write_directly(level: str, fields: dict[str, Any]) -> None:
    """What the fallback logger does with an event of ``level`` (the name structlog
    gives its processors: warning, error, critical) and without positional arguments,
    minus the bound logger's passes of the fields from call to call: stamp, render,
    write. (``set_exc_info`` acts on the ``exception`` method alone, which goes through
    the fallback logger itself.)"""
    event = _stamp(_FALLBACK_OUT, level, fields)
    _FALLBACK_OUT.msg(_fallback_console()(_FALLBACK_OUT, level, event))


def _passes(method: str, level: str | None = None) -> Callable[..., Any]:
    """A :class:`_Quiet` method for an event at warning or above: written by the
    fallback logger (structlog is imported for the first such event); with the name of
    its ``level``, written as the fallback logger writes it, without going through
    it (a failure event per restart: the bound logger's calls were a fifth of it)."""

    def write(self: _Quiet, event: Any = None, *args: Any, **fields: Any) -> Any:
        loud = self.loud()
        if level is None or args:  # %-style arguments: structlog interpolates them
            return getattr(loud, method)(event, *args, **fields)
        fields = {**self._fields, **fields}
        if event is not None:
            fields["event"] = event
        _write_directly(level, fields)
        return None

    write.__name__ = method
    return write


def _drops(self: _Quiet, event: Any = None, *args: Any, **fields: Any) -> None:
    """A :class:`_Quiet` method for an event below warning: nothing is written."""


class _Quiet:
    """The logger of an application that configured nothing: events below warning cost
    a call; a warning or an error is written as the fallback logger writes it (which
    imports structlog). Anything else a bound logger offers is the fallback's."""

    __slots__ = ("_fields", "_loud")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields
        self._loud: Any = None

    def bind(self, **fields: Any) -> _Quiet:
        return _Quiet({**self._fields, **fields})

    def new(self, **fields: Any) -> _Quiet:
        return _Quiet(fields)

    def unbind(self, *keys: str) -> _Quiet:
        missing = [key for key in keys if key not in self._fields]
        if missing:
            raise KeyError(missing[0])
        return self.try_unbind(*keys)

    def try_unbind(self, *keys: str) -> _Quiet:
        return _Quiet({k: v for k, v in self._fields.items() if k not in keys})

    def is_enabled_for(self, level: int) -> bool:
        return level >= logging.WARNING

    def get_effective_level(self) -> int:
        return logging.WARNING

    def loud(self) -> Any:
        """The fallback logger with these fields bound (bound once: a module failing
        in a loop writes an error per restart)."""
        if self._loud is None:
            self._loud = _fallback_logger().bind(**self._fields)
        return self._loud

    def log(self, level: int, event: Any = None, *args: Any, **fields: Any) -> Any:
        if level < logging.WARNING:
            return None
        return self.loud().log(level, event, *args, **fields)

    debug = info = _drops
    warning = _passes("warning", "warning")
    warn = _passes("warn", "warning")
    error = _passes("error", "error")
    exception = _passes("exception")
    critical = _passes("critical", "critical")
    fatal = _passes("fatal", "critical")
    msg = _passes("msg")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loud(), name)


def get_logger(**context: Any) -> FilteringBoundLogger:
    """A bound logger for actorflow's events, with ``context`` bound.

    Bind once (per actor, per system) and keep the result: binding resolves the
    configuration, so the hot path pays nothing for it.
    """
    if "structlog" in sys.modules and _configured_by_application():
        import structlog

        bound: FilteringBoundLogger = structlog.get_logger("actorflow").bind(**context)
        return bound
    return cast("FilteringBoundLogger", _Quiet(context))


_RENDER_AGAIN_AFTER = 60.0
"""Seconds after which a repeated traceback is written in full again, so that a log
read from its tail (or rotated) still holds every traceback of the last minute."""

_KEPT = 32
"""Distinct tracebacks remembered per actor (the oldest is forgotten first)."""


@attrs.define(slots=True)
class _Seen:
    incarnation: int
    """The incarnation whose failure event carried this traceback in full."""
    at: float
    repeats: int = 0


class Tracebacks:
    """The tracebacks an actor's failures were logged with, so that a module failing
    the same way again and again (a crash loop) has its traceback written in full once,
    then a reference to that event and a count: rendering a traceback was most of a
    restart's cost, and a thousand copies of one traceback tell an operator no more
    than one. Two failures are the same when their exception types and the frames of
    code outside actorflow and trio (code and line, along the whole chain) are."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[tuple[Any, ...], _Seen] = {}

    def fields(self, error: BaseException, incarnation: int) -> dict[str, Any]:
        """The fields a failure event takes for ``error``: ``exc_info`` the first time
        (and once a minute), else ``same_traceback_as`` (the incarnation whose failure
        event has it) and ``repeats`` (how many times since)."""
        key = _signature(error)
        seen = self._seen.get(key)
        now = time.monotonic()
        if seen is not None and now - seen.at < _RENDER_AGAIN_AFTER:
            seen.repeats += 1
            return {"same_traceback_as": seen.incarnation, "repeats": seen.repeats}
        if seen is None and len(self._seen) >= _KEPT:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = _Seen(incarnation, now)
        return {"exc_info": error}


def _signature(error: BaseException) -> tuple[Any, ...]:
    """What makes two failures the same: each chained exception's type and the frames
    (code object and line) of the code outside actorflow and trio, and a group's
    members'. The runtime's own frames are left out: a module failing at the same line
    fails the same way whether its items came through its own task or a fused call."""
    parts: list[Any] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append((type(current), _user_frames(current.__traceback__)))
        if isinstance(current, BaseExceptionGroup):
            parts.append(tuple(_signature(member) for member in current.exceptions))
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        current = cause
    return tuple(parts)


_plumbing: dict[int, tuple[CodeType, bool]] = {}
"""Whether a code object is actorflow's or trio's, by its id (the code is kept, so the
id stays its own): a failure's frames are nearly always the same few, and deciding by
file name, or hashing code objects (which hashes their constants), was most of a
signature."""

_PLUMBING_KEPT = 4096
"""The most code objects :data:`_plumbing` keeps (code made at run time is new)."""


def _user_frames(tb: TracebackType | None) -> tuple[tuple[Any, int], ...]:
    """Each frame of ``tb`` outside actorflow and trio: its code (the code's id if it
    is kept in :data:`_plumbing`) and line."""
    frames = []
    plumbing = _plumbing
    while tb is not None:
        code = tb.tb_frame.f_code
        key: Any = id(code)
        known = plumbing.get(key)
        if known is None:
            known = (code, code.co_filename.startswith(_PLUMBING))
            if len(plumbing) < _PLUMBING_KEPT:
                plumbing[key] = known
            else:
                key = code  # not kept: its id may be reused
        if not known[1]:
            frames.append((key, tb.tb_lineno))
        tb = tb.tb_next
    return tuple(frames)


def enabled_for(log: Any, level: int) -> bool:
    """Whether ``log`` writes events at ``level``; True for a logger that cannot say
    (an application that configured structlog's generic ``BoundLogger``), so that such
    a logger gets every event instead of crashing the system."""
    try:
        return bool(log.is_enabled_for(level))
    except AttributeError:  # proxied to a logger that has no such method
        return True
