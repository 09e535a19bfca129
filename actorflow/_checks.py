"""attrs validators and converters shared by every user-facing option class.

Each message names the option and the value at fault, so that a bad setting fails where
it is written, with a sentence that says what would be accepted.
"""

from __future__ import annotations

import enum
import math
from typing import Any, TypeVar

import attrs

__all__ = [
    "coerce_enum",
    "non_negative_int",
    "non_negative_number",
    "positive_int",
    "positive_int_or_none",
    "positive_number",
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
    except ValueError:
        choices = ", ".join(repr(member.value) for member in kind)
        raise ValueError(f"{option} must be one of {choices}, got {value!r}") from None


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_int(value) and value >= 1):
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def positive_int_or_none(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (_is_int(value) and value >= 1):
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


def non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_int(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def positive_number(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_number(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def non_negative_number(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")
