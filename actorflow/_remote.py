"""Remote links: a link carried over a Redis stream, so that its producer and its
consumer may run in different processes or on different machines.

This module only describes a remote link; :mod:`actorflow._transport` asks a backend
(:mod:`actorflow._redis`, the only part of actorflow that imports the Redis client, an
optional extra) to carry it.
"""

from __future__ import annotations

from ._specs import Remote as Remote
from ._specs import to_remote as to_remote

__all__ = ["Remote", "to_remote"]
