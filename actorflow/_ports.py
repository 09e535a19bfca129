"""Port declarations and the type rule that decides which ports may be linked."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Union

import attrs

from ._checks import short

__all__ = ["Port", "describe_type", "is_compatible", "normalize_ports"]


@attrs.frozen
class Port:
    """A named input or output slot of a module.

    Attributes:
        type: What travels through the port. ``object`` (the default) or ``typing.Any``
            accepts anything; a class accepts instances of it and its subclasses; a union
            accepts any of its members.
        required: For an input port: the graph is invalid unless a link feeds it.
            Ignored on output ports (an unlinked output is allowed; what is emitted on it
            is counted as dropped).
        doc: One line saying what the port carries, shown in errors and listings.
    """

    type: Any = object
    required: bool = True
    doc: str = ""


def normalize_ports(
    spec: Mapping[str, Port | Any], owner: str, what: str = "ports"
) -> dict[str, Port]:
    """Turn a ``{name: Port | type}`` declaration into ``{name: Port}``.

    Only a mapping is a declaration: a list of names (``["in"]``) or a string would
    leave every port's type unsaid, so it is refused rather than guessed.

    Raises:
        TypeError: ``spec`` is not a mapping, or a port name is not a non-empty
            identifier-like string.
    """
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{owner}: {what} must be a dict of port name to type or Port "
            f"({{'name': int}}), got {type(spec).__name__} {short(spec)}"
        )
    ports: dict[str, Port] = {}
    for name, value in spec.items():
        if not isinstance(name, str) or not name or "." in name:
            raise TypeError(
                f"{owner}: port names must be non-empty strings without '.', got {name!r}"
            )
        ports[name] = value if isinstance(value, Port) else Port(type=value)
    return ports


def _members(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _is_anything(tp: Any) -> bool:
    return tp is object or tp is Any


def is_compatible(produced: Any, accepted: Any) -> bool:
    """Whether values of type ``produced`` may flow into a port that accepts ``accepted``.

    The rule is deliberately simple and static: a subclass may flow into its base class,
    every member of a produced union must be accepted, anything may flow into
    ``object``/``Any``, and ``Any`` may flow anywhere (the producer opted out of checks).
    Parameterised generics compare by their origin (``list[int]`` into ``list``).
    """
    if _is_anything(accepted) or produced is Any:
        return True
    produced_members = _members(produced)
    if produced_members is not None:
        return all(is_compatible(member, accepted) for member in produced_members)
    accepted_members = _members(accepted)
    if accepted_members is not None:
        return any(is_compatible(produced, member) for member in accepted_members)
    if produced == accepted:
        return True
    produced_cls = typing.get_origin(produced) or produced
    accepted_cls = typing.get_origin(accepted) or accepted
    if isinstance(produced_cls, type) and isinstance(accepted_cls, type):
        if typing.get_args(accepted) and typing.get_args(produced) != typing.get_args(accepted):
            return False
        try:
            return issubclass(produced_cls, accepted_cls)
        except TypeError:  # a class that refuses the check, such as a non-runtime Protocol
            return False
    return False


def describe_type(tp: Any) -> str:
    """A short human name for a port type, for error messages."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")
