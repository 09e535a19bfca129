"""What keeps a consumer's claims alive whatever its module's hooks do: an OS thread.

The lease of a module that is not shared, and the idle time of the entries a consumer
holds, must be renewed every ``claim_idle / 3`` for as long as the process lives. Renewed
from the trio loop, a synchronous hook that works longer than ``claim_idle`` (or a loop
busy for that long) let them lapse: a standby took the lease, or another consumer took
the entries over, and items were handled twice. The :class:`Keeper` renews them from a
thread of its own, with its own trio loop and its own connection, so only the death of
the process (``SIGKILL`` included: the thread dies with it) lets them lapse.

The price: a loop stuck for ever (a hook that never returns) keeps the lease and the
entries for ever too, as a process that lives would. The keeper says so once per stall
(``remote.loop_blocked``); stopping or killing the process hands them over.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from .._exceptions import RunError, describe
from .._urls import hide_secrets
from ._client import Reader, Retrying, connect

if TYPE_CHECKING:
    from ._lease import Lease

__all__ = ["Keeper", "give_up", "take_lease"]

_QUIET = frozenset({"remote.unreachable", "remote.recovered"})
"""Events the keeper leaves to its pump, which says them once per outage."""


class _Quiet:
    """The pump's logger, without the outage events the pump already logs."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def warning(self, event: str, **fields: Any) -> None:
        if event not in _QUIET:
            self.log.warning(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        if event not in _QUIET:
            self.log.info(event, **fields)


class Keeper:
    """Renews a consumer's lease (if it has one) and marks the entries it holds as busy,
    every ``claim_idle / 3``, from a thread of its own."""

    def __init__(
        self,
        *,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        claim_idle: float,
        timeout: float,
        poll: float,
        lease: Lease | None,
        held: Callable[[], list[bytes]],
        log: Any,
    ) -> None:
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.period = claim_idle / 3
        self.claim_idle = claim_idle
        self.timeout = timeout
        self.poll = poll
        self.lease = lease
        self.held = held
        self.log = log
        self.error: RunError | None = None
        self._lost = trio.Event()
        self._main = trio.lowlevel.current_trio_token()
        self._beat = self._asked = time.monotonic()
        """When the pump's loop last answered, and when the keeper last asked it."""
        self._guard = threading.Lock()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._main_of_thread, name=f"actorflow-keeper {stream}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    async def watch(self) -> None:
        """Return never; raise the keeper's ``RunError`` once the lease is lost."""
        await self._lost.wait()
        assert self.error is not None
        raise self.error

    async def stop(self) -> None:
        """Stop renewing and wait for the thread (before the lease is released: a
        renewal after the release would take the lease again)."""
        with self._guard:
            self._stopped.set()
            token, scope = self._token, self._scope
        if token is not None and scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)
        if self._thread.is_alive():
            await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)

    def _main_of_thread(self) -> None:
        # Nothing is due before the first renewal: a run shorter than that never
        # starts the thread's loop nor opens its connection.
        if self._stopped.wait(self.period):
            return
        try:
            trio.run(self._run)
        except Exception as exc:
            target = self.lease.target if self.lease is not None else self.group
            self.error = RunError(
                target,
                f"could not keep its hold on stream {self.stream!r}: "
                f"{hide_secrets(describe(exc), self.url)}",
            )
            self._tell(self._lost.set)

    async def _run(self) -> None:
        with trio.CancelScope() as scope:
            with self._guard:
                if self._stopped.is_set():
                    return
                self._token, self._scope = trio.lowlevel.current_trio_token(), scope
            retry = Retrying(_Quiet(self.log), self.poll, self.url)
            async with connect(self.url, self.timeout) as client:
                blocked = False
                while True:
                    blocked = self._check_loop(blocked)
                    if not await self._renew(client, retry):
                        return
                    await self._touch(client, retry)
                    await trio.sleep(self.period)

    async def _touch(self, client: Any, retry: Retrying) -> None:
        """Reset the idle time of the entries held (``JUSTID`` leaves their delivery
        count as it is): no other consumer takes them over."""
        held = self._held()
        if held:
            await retry(
                lambda: client.xclaim(self.stream, self.group, self.consumer, 0, held, justid=True)
            )

    async def _renew(self, client: Any, retry: Retrying) -> bool:
        """Renew the lease, if there is one; False (and the pump told) if it was lost."""
        lease = self.lease
        if lease is None:
            return True
        from ._lease import renew

        kept = await retry(lambda: renew(client, lease))
        if kept == 2:
            self.log.warning("remote.lease_renewed", hint="it had lapsed: nobody took it")
        elif not kept:
            self.error = RunError(
                lease.target,
                f"lost its lease on {lease.key!r} (silent for more than "
                f"{lease.ms / 1000:g} s) to another instance, which took over",
            )
            self._tell(self._lost.set)
            return False
        return True

    def _check_loop(self, blocked: bool) -> bool:
        """Whether the pump's loop has left the keeper's last question unanswered for
        ``claim_idle``; says so once per stall; asks again once answered."""
        now = time.monotonic()
        if self._beat >= self._asked:  # answered: ask again
            self._asked = now
            self._tell(self._answer)
            return False
        silent = now - self._asked
        if silent > self.claim_idle and not blocked:
            self.log.warning(
                "remote.loop_blocked",
                seconds=round(silent, 1),
                hint="a hook blocks the loop; the lease and held entries are kept meanwhile",
            )
            return True
        return blocked

    def _answer(self) -> None:
        self._beat = time.monotonic()

    def _tell(self, call: Callable[[], object]) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._main.run_sync_soon(call)

    def _held(self) -> list[bytes]:
        """What the pump holds, read from this thread (retried if the pump's loop changed
        it while it was read)."""
        for _ in range(10):
            try:
                return list(self.held())
            except RuntimeError:
                continue
        return []


async def take_lease(
    lease: Lease, client: Any, retry: Retrying, url: str, reply_within: float
) -> None:
    """Wait until ``lease`` is this consumer's; a standby is woken at once when the
    holder releases it (it pops ``<lease>:released``), not at its next look."""
    key = f"{lease.key}:released"
    seconds = lease.ms / 3000
    reader = Reader(url, seconds + reply_within)

    async def nap(seconds: float) -> None:
        try:
            await reader(lambda blocking: blocking.blpop([key], timeout=seconds))
        except Exception:  # unreachable, or the key is not a list: look again later
            await trio.sleep(seconds)

    try:
        await lease.take(client, retry, nap)
    finally:
        await reader.close()


async def give_up(
    keeper: Keeper | None,
    clean_up: Callable[[Any], Awaitable[None]],
    client: Any | None,
    *,
    url: str,
    reply_within: float,
    log: Any,
) -> bool:
    """Also when cancelled (Ctrl-C, a failure): stop ``keeper`` renewing, then
    ``clean_up`` on a client (give up the claims it kept: a successor need not wait for
    them to lapse). After a graceful end on the pump's ``client``; otherwise (or if that
    fails) on a client of its own, inside the shield: a cancellation may have closed
    the other's connections. At most 5 s; whether it was done (else it is logged)."""
    with trio.CancelScope(shield=True), trio.move_on_after(5) as scope:
        try:
            if keeper is not None:
                await keeper.stop()  # before the release: it would renew
            if client is not None:
                with contextlib.suppress(Exception):
                    await clean_up(client)
                    return True
            async with connect(url, reply_within) as fresh:
                await clean_up(fresh)
            return True
        except Exception as exc:
            log.warning("remote.cleanup_failed", error=hide_secrets(describe(exc), url))
    if scope.cancelled_caught:
        log.warning("remote.cleanup_failed", error="Redis did not answer in 5 s")
    return False
