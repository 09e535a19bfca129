"""The Redis client: loading coredis, connecting, and waiting out an unreachable server.

coredis is an optional extra, imported here and only when a remote link or a
``RedisStore`` is used. coredis reports errors raised inside ``async with client`` as
exception groups; :func:`connect` unwraps them, so users see the error itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._exceptions import describe, single_errors

if TYPE_CHECKING:
    import coredis

__all__ = ["Reader", "Retrying", "connect", "load_coredis"]

T = TypeVar("T")


def load_coredis() -> Any:
    """The coredis module, or an ImportError that says which extra to install."""
    try:
        import coredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "remote links need the Redis client: pip install 'actorflow[redis]'"
        ) from exc
    return coredis


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client for ``url``, whose errors arrive as themselves, not as groups."""
    coredis = load_coredis()
    # No retries inside the client: ours must see every failure, to recover what a
    # read whose reply was lost delivered all the same.
    client = coredis.Redis.from_url(
        url, decode_responses=False, retry_policy=coredis.retry.NoRetryPolicy()
    )
    with single_errors():
        async with client:
            yield client


class Retrying:
    """Runs Redis calls again while the server cannot be reached, saying so once."""

    def __init__(self, log: Any, poll: float) -> None:
        self.log = log
        self.poll = poll
        self.failing = 0
        self.failures = 0
        """Every failed attempt so far: tells a caller that a call had to be retried."""

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        coredis = load_coredis()
        errors = coredis.exceptions
        retryable = (
            errors.ConnectionError,
            errors.BusyLoadingError,  # a restarted server still reading its data
            errors.TryAgainError,
            TimeoutError,
            OSError,
        )
        delay = self.poll
        while True:
            try:
                result = await call()
            except retryable as exc:
                self.failing += 1
                self.failures += 1
                if self.failing == 1:
                    self.log.warning("remote.unreachable", error=describe(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if self.failing:
                self.log.info("remote.recovered", after_failures=self.failing)
                self.failing = 0
            return result


class Reader:
    """Blocking reads on a client of their own, thrown away after any failure.

    coredis loses a pooled connection for every connection that dies during a blocking
    command, so a long-lived client would run out of them after enough blips and then
    wait for ever; a fresh client starts with a full pool.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: coredis.Redis[bytes] | None = None

    async def __call__(self, read: Callable[[coredis.Redis[bytes]], Awaitable[T]]) -> T:
        client = self._client
        if client is None:
            stack = contextlib.AsyncExitStack()
            client = self._client = await stack.enter_async_context(connect(self.url))
            self._stack = stack
        try:
            return await read(client)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stack.aclose()
