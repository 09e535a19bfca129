"""The Redis client: loading coredis, connecting, and waiting out an unreachable server.

coredis is an optional extra, imported here and only when a remote link or a
``RedisStore`` is used. coredis reports errors raised inside ``async with client`` as
exception groups; :func:`connect` unwraps them, so users see the error itself.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._exceptions import describe, single_errors
from .._urls import hide_secrets

if TYPE_CHECKING:
    import coredis

__all__ = ["MAX_DELAY", "Reader", "Retrying", "connect", "ensure_group", "load_coredis"]

MAX_DELAY = 1.0
"""The longest wait between two attempts of a call while the server is unreachable."""

T = TypeVar("T")


@functools.cache
def load_coredis() -> Any:
    """The coredis module, or an ImportError that says which extra to install (looked
    up once: the pumps ask on every command)."""
    try:
        import coredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "remote links need the Redis client: pip install 'actorflow[redis]'"
        ) from exc
    return coredis


@contextlib.asynccontextmanager
async def connect(
    url: str, reply_within: float | None = None
) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client for ``url``, whose errors arrive as themselves, not as groups,
    with any password hidden from their messages.

    Args:
        url: The server.
        reply_within: Seconds to wait for a connection or a reply before the call fails with
            ``TimeoutError`` (a paused server never closes its connections, so without
            it a call would wait for ever); ``None`` waits for ever.
    """
    coredis = load_coredis()
    # No retries inside the client: ours must see every failure, to recover what a
    # read whose reply was lost delivered all the same.
    client = coredis.Redis.from_url(
        url,
        decode_responses=False,
        retry_policy=coredis.retry.NoRetryPolicy(),
        stream_timeout=reply_within,
        connect_timeout=reply_within,
    )
    with _secrets_hidden(url), single_errors():
        async with client:
            yield client


@contextlib.contextmanager
def _secrets_hidden(url: str) -> Iterator[None]:
    """Errors that quote ``url``'s password (a client's message may) say ``***``."""
    try:
        yield
    except Exception as exc:
        text = str(exc)
        hidden = hide_secrets(text, url)
        if hidden == text:
            raise
        raise type(exc)(hidden) if _rebuildable(exc) else RuntimeError(hidden) from None


def _rebuildable(exc: Exception) -> bool:
    try:
        type(exc)("")
    except Exception:
        return False
    return True


async def ensure_group(client: coredis.Redis[bytes], stream: str, group: str) -> None:
    """The consumer group ``group`` of ``stream`` (both made if missing), reading from
    the start."""
    coredis = load_coredis()
    with contextlib.suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):
        await client.xgroup_create(stream, group, identifier="0", mkstream=True)


@functools.cache
def _retryable() -> tuple[type[BaseException], ...]:
    """The errors that say the server cannot be reached now (looked up once)."""
    errors = load_coredis().exceptions
    return (
        errors.ConnectionError,
        errors.BusyLoadingError,  # a restarted server still reading its data
        errors.TryAgainError,
        TimeoutError,
        OSError,
    )


class Retrying:
    """Runs Redis calls again while the server cannot be reached, saying so once."""

    def __init__(self, log: Any, poll: float, url: str | None = None) -> None:
        self.log = log
        self.poll = poll
        self.url = url
        """The server's URL, whose secrets never reach a log event."""
        self.failing = 0
        self.failures = 0
        """Every failed attempt so far: tells a caller that a call had to be retried."""
        self.recovered_at = -math.inf
        """When a call last succeeded after failing (trio's clock)."""

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        retryable = _retryable()
        delay = self.poll
        failed_here = False
        while True:
            try:
                result = await call()
            except retryable as exc:
                failed_here = True
                self.failing += 1
                self.failures += 1
                if self.failing == 1:
                    error = hide_secrets(describe(exc), self.url)
                    self.log.warning("remote.unreachable", error=error)
                await trio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            if delay > self.poll:
                self.recovered_at = trio.current_time()
            # Only a call that failed and now went through shows that the server is
            # back: another may have succeeded without reaching it (nothing to send).
            if self.failing and failed_here:
                self.log.info("remote.recovered", after_failures=self.failing)
                self.failing = 0
            return result

    def calm(self, seconds: float) -> bool:
        """Whether every call has gone through for the last ``seconds``: after an
        outage, the other consumers need a moment to say again what they hold."""
        return not self.failing and trio.current_time() - self.recovered_at >= seconds


class Reader:
    """Blocking reads on a client of their own, thrown away after any failure.

    coredis loses a pooled connection for every connection that dies during a blocking
    command, so a long-lived client would run out of them after enough blips and then
    wait for ever; a fresh client starts with a full pool.
    """

    def __init__(self, url: str, reply_within: float | None = None) -> None:
        self.url = url
        self.reply_within = reply_within
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: coredis.Redis[bytes] | None = None

    async def __call__(self, read: Callable[[coredis.Redis[bytes]], Awaitable[T]]) -> T:
        client = self._client
        if client is None:
            stack = contextlib.AsyncExitStack()
            client = self._client = await stack.enter_async_context(
                connect(self.url, self.reply_within)
            )
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
