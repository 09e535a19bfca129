"""attrs validators and converters shared by every user-facing option class.

Each message names the option and the value at fault, so that a bad setting fails where
it is written, with a sentence that says what would be accepted.
"""

from __future__ import annotations

import enum
import math
import reprlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from ._server_url import redis_url_problem
from ._urls import redact_url

__all__ = [
    "MAX_BATCH",
    "MAX_BUFFER",
    "MAX_COUNT",
    "MAX_THREADS",
    "MAX_WORKERS",
    "YEAR",
    "MAX_LINE",
    "check_flag",
    "check_seconds",
    "check_whole",
    "clip",
    "coerce_enum",
    "did_you_mean",
    "flag",
    "fraction",
    "name",
    "name_or_none",
    "redis_url",
    "seconds",
    "short",
    "whole",
]

_E = TypeVar("_E", bound=enum.Enum)


def _is_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coerce_enum(kind: type[_E], value: _E | str, option: str) -> _E:
    """``value`` as a member of ``kind``, accepting the member's string value.

    Raises:
        ValueError: ``value`` is neither, naming ``option`` and the accepted values.
    """
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (ValueError, TypeError):  # TypeError: an unhashable value
        choices = ", ".join(repr(member.value) for member in kind)
        hint = did_you_mean(value, [str(member.value) for member in kind])
        raise ValueError(f"{option} must be one of {choices}, got {short(value)}{hint}") from None


Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]

YEAR = 365 * 24 * 3600.0
"""The longest duration any option takes: beyond it, a value is a slip of the finger."""

MAX_BUFFER = 100_000_000
"""The most items a link holds (each one a reference held in memory)."""

MAX_BATCH = 1_000_000
"""The most items moved in one batch."""

MAX_WORKERS = 10_000
"""The most concurrent workers (trio tasks) one module runs."""

MAX_THREADS = 10_000
"""The most worker threads blocking calls may use at once."""

MAX_COUNT = 1_000_000_000
"""The most of a count that needs no memory per unit (restarts, attempts)."""

SHORTEST = 1e-6
"""The shortest positive duration any option takes (one microsecond)."""


def whole(low: int, high: int, *, none: bool = False) -> Validator:
    """An integer from ``low`` to ``high`` (or ``None`` if ``none``): a count big enough
    for any real graph, small enough that a typo cannot make a run that never ends."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_whole(attribute.name, value, low, high, none=none)

    return check


def check_whole(name: str, value: Any, low: int, high: int, *, none: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a count :func:`whole`
    accepts."""
    if none and value is None:
        return
    if not (_is_int(value) and low <= value <= high):
        allowed = f"an integer from {low} to {high:,}" + (" or None" if none else "")
        raise ValueError(f"{name} must be {allowed}, got {short(value)}")


def seconds(*, zero: bool = False, infinite: bool = False) -> Validator:
    """A duration in seconds: finite (unless ``infinite``), at most a year, and either
    0 (if ``zero``) or at least a microsecond, so that neither an overflow nor a
    denormal (``1e-320``) reaches a clock."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_seconds(attribute.name, value, zero=zero, infinite=infinite)

    return check


def check_seconds(name: str, value: Any, *, zero: bool = False, infinite: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a duration :func:`seconds`
    accepts."""
    if _is_number(value) and (
        (zero and value == 0) or (SHORTEST <= value <= YEAR) or (infinite and value == math.inf)
    ):
        return
    low = "0" if zero else f"{SHORTEST:g}"
    also = " or inf" if infinite else ""
    raise ValueError(
        f"{name} must be seconds from {low} to {YEAR:.0f} (a year){also}, got {short(value)}"
    )


def flag(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``True`` or ``False``, nothing merely truthy: ``"no"`` must not read as yes."""
    check_flag(attribute.name, value)


def check_flag(name: str, value: Any) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {short(value)}")


def name_or_none(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A non-empty string (a name Redis or a log will carry), or ``None``."""
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{attribute.name} must be a non-empty string, got {short(value)}")


def name(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string, got {short(value)}")
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


def redis_url(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A ``redis://`` (``rediss://``, ``unix://``) URL or ``None``; a password in a
    refused value is never shown."""
    if value is not None and not (
        isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://"))
    ):
        shown = redact_url(value) if isinstance(value, str) else short(value)
        raise ValueError(
            f"{attribute.name} must be a redis:// (or rediss://, unix://) URL, got {shown!r}"
        )
    if isinstance(value, str) and (problem := redis_url_problem(value)) is not None:
        raise ValueError(f"{attribute.name} {redact_url(value)!r} is no Redis URL: {problem}")


def fraction(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number from 0 to 1."""
    if not (_is_number(value) and 0 <= value <= 1):
        raise ValueError(f"{attribute.name} must be a number from 0 to 1, got {short(value)}")


class _Short(reprlib.Repr):
    """reprlib's short repr, with integers too long to print (more than 4,300 digits
    raise ``ValueError`` in ``repr``) shown by their size."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 8192:
            return f"<an integer of {x.bit_length():,} bits>"
        return super().repr_int(x, level)


_SHORT = _Short()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 3


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a misspelt ``word``, or
    nothing."""
    if not isinstance(word, str) or len(word) > 200:  # difflib is slow on huge words
        return ""
    import difflib  # only for a mistake: not every run pays for it

    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


MAX_LINE = 1000
"""A problem line in an error message is cut to about this many characters."""


def clip(text: str, limit: int = 200) -> str:
    """``text`` unquoted, its middle cut out when it is longer than ``limit``: for names
    built from user values (a link named after its modules) and whole problem lines."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]}...({len(text) - head - tail} characters cut)...{text[-tail:]}"


def short(value: object) -> str:
    """``repr(value)``, cut short: a huge value is quoted in a line, not a megabyte."""
    return _SHORT.repr(value)
