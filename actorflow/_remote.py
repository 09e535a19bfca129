"""Remote links: a link carried over a Redis stream, so that its producer and its
consumer may run in different processes or on different machines.

This module only describes a remote link; :mod:`actorflow._transport` asks a backend
(:mod:`actorflow._redis`, the only part of actorflow that imports the Redis client, an
optional extra) to carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._checks import positive_int, positive_number

__all__ = ["Remote", "to_remote"]


def _url(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not (
        isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise ValueError(
            f"remote {attribute.name} must be a redis:// (or rediss://, unix://) URL, "
            f"got {value!r}"
        )


@attrs.frozen
class Remote:
    """How a link crosses processes: over a Redis stream, with a consumer group.

    Pass it (or just a URL, or ``True`` for the system's ``remote_url``) as the
    ``remote`` option of :meth:`Graph.link`.

    Attributes:
        url: The Redis server (``redis://host:6379/0``); ``None`` uses
            ``Settings.remote_url``.
        stream: The stream's key; ``None`` derives it from the graph and the link
            (``actorflow:<graph>:<source>.<port>><target>.<port>``).
        claim_idle: Seconds an item may stay unacknowledged with a consumer that has
            gone silent before another consumer of the group takes it over.
        batch: The most items written in one pipeline or read in one call.
        poll: Seconds between checks while waiting: a producer for room in the stream,
            a consumer for new items or the end of the stream.
    """

    url: str | None = attrs.field(default=None, validator=_url)
    stream: str | None = None
    claim_idle: float = attrs.field(default=30.0, validator=positive_number)
    batch: int = attrs.field(default=100, validator=positive_int)
    poll: float = attrs.field(default=0.05, validator=positive_number)


def to_remote(value: Remote | str | bool | Mapping[str, Any] | None) -> Remote | None:
    """The ``remote`` option as given to :meth:`Graph.link` or in a graph file."""
    if value is None or value is False:
        return None
    if value is True:
        return Remote()
    if isinstance(value, Remote):
        return value
    if isinstance(value, str):
        return Remote(url=value)
    if isinstance(value, Mapping):
        try:
            return Remote(**value)
        except TypeError:
            names = [f.name for f in attrs.fields(Remote)]
            unknown = ", ".join(repr(k) for k in value if k not in names)
            raise ValueError(
                f"remote: unknown option {unknown} (options: {', '.join(names)})"
            ) from None
    raise ValueError(
        f"remote must be a redis:// URL, true, a table of options or actorflow.Remote, "
        f"got {value!r}"
    )
