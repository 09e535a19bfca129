"""Shared data on a Redis server: the store of every process that uses the server."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from .._logging import get_logger
from .._store import MISSING, decode_value, encode_value
from .._urls import redact_url
from ._client import Retrying, connect

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisStore"]


class RedisStore:
    """Shared data on a Redis server: the API of :class:`~actorflow.MemoryStore`, shared
    by every process (and machine) that uses the server, kept as long as Redis keeps it.

    It holds a connection, so open it around the systems that use it::

        async with RedisStore("redis://127.0.0.1:6379/0") as store:
            async with open_system(graph, store=store) as system:
                ...

    Each module namespace is one Redis hash (``<prefix>:<namespace>``), values are the
    lossless msgpack encoding; calls wait (warning once) while the server is unreachable.
    Needs ``pip install 'actorflow[redis]'``.
    """

    takes_encoded: ClassVar[bool] = True

    def __init__(self, url: str, *, prefix: str = "actorflow:shared", poll: float = 0.05) -> None:
        self.url = url
        self.prefix = prefix
        self._retry = Retrying(get_logger(store="redis", url=redact_url(url)), poll, url)
        self._client: coredis.Redis[bytes] | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> RedisStore:
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(connect(self.url))
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.__aexit__(*exc_info)

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r}, prefix={self.prefix!r})"

    def _connected(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise RuntimeError(
                "RedisStore is not open: use `async with RedisStore(url) as store:` around "
                "the systems that use it"
            )
        return self._client

    def _key(self, module: str) -> str:
        return f"{self.prefix}:{module}"

    async def get(self, module: str, name: str, default: Any = MISSING) -> Any:
        """The value of ``module``/``name`` (see :meth:`MemoryStore.get`)."""
        client = self._connected()
        payload = await self._retry(partial(client.hget, self._key(module), name))
        return decode_value(module, name, payload, default)

    async def put(self, module: str, name: str, value: Any) -> None:
        """Set ``module``/``name`` (see :meth:`MemoryStore.put`)."""
        payload = encode_value(module, name, value)
        client = self._connected()
        await self._retry(partial(client.hset, self._key(module), {name: payload}))

    async def delete(self, module: str, name: str) -> None:
        """Remove ``module``/``name`` (no error if it is not set)."""
        client = self._connected()
        await self._retry(partial(client.hdel, self._key(module), [name]))

    async def names(self, module: str) -> list[str]:
        """The names set under ``module``, sorted."""
        client = self._connected()
        keys = await self._retry(partial(client.hkeys, self._key(module)))
        return sorted(key.decode() if isinstance(key, bytes) else key for key in keys)

    async def aclose(self) -> None:
        """Close the connection (what ``async with`` does on the way out)."""
        await self.__aexit__(None, None, None)
