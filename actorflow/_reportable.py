"""Values people watch (``set_info`` fields, task names) made safe to show and to send.

What a module reports goes into :meth:`System.status`, every heartbeat, reporters and
the live view, none of which may fail because of it: a value is turned into JSON-ready
data (``None``, ``bool``, ``int``, finite ``float``, ``str``, lists and string-keyed
dicts) that is bounded in depth, width and size, without recursion, so that a
100,000-deep list or an object whose ``__str__`` raises is shown in short instead.
A progress figure that is not a finite number is no figure (``done`` 0, ``total``
unknown): coerced, never refused, since a watcher's figure must not fail the module.
"""

from __future__ import annotations

import math
import re
from itertools import islice
from typing import Any

from ._checks import short
from ._urls import redact_data, redact_text

__all__ = [
    "CONTROL",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_NODES",
    "MAX_TASK",
    "MAX_TEXT",
    "fields",
    "finite",
    "json_ready",
    "printable",
    "task_text",
    "text",
]

MAX_DEPTH = 8
"""Containers nested deeper than this are shown as their short ``repr``."""
MAX_ITEMS = 100
"""The most elements kept of one list or dict (the rest are counted)."""
MAX_NODES = 1_000
"""The most values kept in all (the rest are shown in short)."""
MAX_TEXT = 1_000
"""The most characters kept of one string."""
MAX_TASK = 200
"""The most characters kept of a task name."""

_CONTAINERS = (list, tuple, set, frozenset, dict)


CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on rather than shows: C0 and C1 controls (ANSI escapes),
line and paragraph separators, bidirectional overrides."""

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: str) -> str:
    """``value`` with control characters shown as escapes (``\\x1b``, ``\\n``,
    ``\\u202e``): a name or value written to a terminal must not move its cursor,
    colour it, reorder it or break a table's line."""
    return CONTROL.sub(_escape, value)


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """``str(value)`` cut to ``limit`` characters; never raises (an object whose
    ``__str__`` raises is shown by its type)."""
    if isinstance(value, str):
        found = value
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        found = short(value)  # str() of a huge integer is slow, then refused
    else:
        try:
            found = str(value)
        except Exception:
            found = f"<{type(value).__name__} object>"
    return found if len(found) <= limit else found[: limit - 3] + "..."


def fields(info: Any) -> dict[str, Any]:
    """``set_info``'s fields as bounded JSON-ready data (never raises), secrets hidden
    (:func:`redact_data`): made safe once, here, for everything that shows them (the
    status, heartbeats, reporters, the live view, the dashboard, summaries)."""
    ready = redact_data(json_ready(info))
    return ready if isinstance(ready, dict) else {"info": ready}


def task_text(task: Any) -> str:
    """A ``set_info`` task as it may be shown: cut to :data:`MAX_TASK` characters, with
    any secret it quotes hidden (redacted before the cut, so no secret is half shown)."""
    return text(redact_text(text(task, 4 * MAX_TASK)), MAX_TASK)


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` if it is not one (``nan``, ``10**400``,
    ``"x"``); never raises."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _scalar(value: Any) -> Any:
    """``value`` if JSON carries it as it is (big integers and non-finite floats become
    text), else its text; containers are the caller's."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return text(value)


def _elided(count: int) -> str:
    return f"... ({count} more)"


def json_ready(value: Any) -> Any:
    """``value`` as bounded JSON-ready data (see the module docstring); never raises."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    budget = MAX_NODES
    while stack:
        current, parent, key, level = stack.pop()
        budget -= 1
        if not isinstance(current, _CONTAINERS):
            parent[key] = _scalar(current)
        elif level >= MAX_DEPTH or budget <= 0:
            parent[key] = _short(current)
        else:
            parent[key] = _expand(current, stack, level)
    return root[0]


def _short(value: Any) -> str:
    try:
        return short(value)
    except Exception:
        return f"<{type(value).__name__} object>"


def _expand(
    container: Any, stack: list[tuple[Any, Any, Any, int]], level: int
) -> list[Any] | dict[str, Any]:
    """A list or dict to fill with ``container``'s first elements (pushed on
    ``stack``), plus a note of how many were left out."""
    try:
        size = len(container)
        if isinstance(container, dict):
            out: dict[str, Any] = {}
            for key, item in islice(container.items(), MAX_ITEMS):
                name = key if isinstance(key, str) else text(key, 100)
                out[name] = None
                stack.append((item, out, name, level + 1))
            if size > MAX_ITEMS:
                out["..."] = _elided(size - MAX_ITEMS)
            return out
        items = list(islice(container, MAX_ITEMS))
    except Exception:  # changed while read, or a subclass that refuses: show it short
        return [_short(container)]
    listed: list[Any] = [None] * len(items)
    for index, item in enumerate(items):
        stack.append((item, listed, index, level + 1))
    if size > MAX_ITEMS:
        listed.append(_elided(size - MAX_ITEMS))
    return listed
