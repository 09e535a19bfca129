"""The Redis backend: remote links over Redis Streams, and shared data on Redis.

Imported only when a link or a store is remote (see :mod:`actorflow._transport`);
coredis, an optional extra, is imported only in :mod:`._client`.

* :mod:`._client`: loading coredis, connecting, retrying while the server is away;
* :mod:`._pumps`: :data:`backend`, which makes the pumps that carry remote links:
  :mod:`._producer`, :mod:`._consumer` (with :mod:`._entries` at its boundary and
  :mod:`._lease` for modules that are not shared; Lua in :mod:`._scripts`); the lease
  and held entries are kept from a thread (:mod:`._keeper`), a stream has one producer
  (:mod:`._sole`), and keys holding what actorflow never writes are named (:mod:`._keys`);
* :mod:`._store`: :class:`RedisStore`.
"""

from __future__ import annotations

from ._client import connect
from ._pumps import ConsumerPump, ProducerPump, RedisBackend, backend, stream_key
from ._store import RedisStore

__all__ = [
    "ConsumerPump",
    "ProducerPump",
    "RedisBackend",
    "RedisStore",
    "backend",
    "connect",
    "stream_key",
]
