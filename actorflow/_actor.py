"""Driving one module: its mailbox, its loop, its states and its end.

An actor handles what is already in its mailbox without yielding to the scheduler until
its *quantum* (a time budget) is spent, then checkpoints. That is what makes actorflow
fast on trio: scheduling costs are paid once per quantum or once per empty mailbox, not
once per message; and it is what keeps it fair: no actor holds the loop longer than a
quantum while others wait.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import trio

from ._data import Data
from ._exceptions import CleanupError, RunError
from ._graph import ModuleSpec
from ._hooks import HookStyle, accepts_port, call_hook, hook_style
from ._link import Link, Mailbox
from ._logging import get_logger
from ._module import Many, Module, ModuleKind
from ._settings import Settings
from ._status import ActorState, ActorStatus

__all__ = ["Actor"]

# The most items handled between two reads of the clock.
_MAX_STRIDE = 16

# Transitions that happen once per batch are logged at debug level; the rest at info.
_FREQUENT = frozenset({ActorState.RUNNING, ActorState.BLOCKED, ActorState.READY})


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Actor:
    """The runtime object that drives one module instance."""

    def __init__(
        self,
        spec: ModuleSpec,
        module: Module,
        settings: Settings,
        on_failure: Callable[[Actor, RunError], None],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.module = module
        self.kind: ModuleKind = module.kind
        self.settings = settings
        self.log = get_logger(actor=spec.name)
        self._on_failure = on_failure

        self.state = ActorState.CREATED
        self.blocked_on: str | None = None
        self.mailbox = Mailbox()
        self.outputs: dict[str, list[Link]] = {port: [] for port in spec.output_ports()}
        self.upstream: list[Actor] = []
        """Actors feeding this one through non-feedback links; cleaned up before it."""

        self.received = 0
        self.emitted = 0
        self.filtered = 0
        self.errors = 0
        self.dropped: dict[str, int] = {}
        self.reason: str | None = None
        self.failure: RunError | None = None
        self.cleanup_error: CleanupError | None = None
        self.cleaned = trio.Event()

        self.active = True
        self._stop_requested = False
        self._warned_unconnected: set[str] = set()
        self._produce_scope: trio.CancelScope | None = None
        self._quantum = settings.quantum
        self._deadline = 0.0
        self._stride = 1
        self._last_check = 0.0
        self._now: Callable[[], float] = trio.current_time

        module._actor = self
        self.log.info("actor.state", state=ActorState.CREATED.value, kind=self.kind.value)

    # -- state -------------------------------------------------------------------------

    def set_state(self, state: ActorState, blocked_on: str | None = None) -> None:
        """Move to ``state`` and log the transition (no-op if already there)."""
        previous = self.state
        if previous is state and self.blocked_on == blocked_on:
            return
        self.state = state
        self.blocked_on = blocked_on
        if state in _FREQUENT and previous in _FREQUENT:
            self.log.debug(
                "actor.state", state=state.value, previous=previous.value, blocked_on=blocked_on
            )
        else:
            self.log.info("actor.state", state=state.value, previous=previous.value)

    def status(self) -> ActorStatus:
        return ActorStatus(
            name=self.name,
            kind=self.kind.value,
            state=self.state,
            blocked_on=self.blocked_on,
            received=self.received,
            emitted=self.emitted,
            filtered=self.filtered,
            dropped=dict(self.dropped),
            mailbox_depth=self.mailbox.depth(),
            errors=self.errors,
            reason=self.reason,
        )

    def _drop(self, count: int, reason: str) -> None:
        if count > 0:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    # -- life --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The actor's task: listen, handle items until the end of stream, then finish.

        Never raises anything but cancellation: a module failure is reported to the
        system through ``on_failure`` and recorded in :attr:`failure`.
        """
        self._now = trio.lowlevel.current_clock().current_time
        self.set_state(ActorState.READY)
        task_status.started()
        try:
            self._deadline = self._now() + self._quantum
            if self.kind is ModuleKind.SOURCE:
                await self._run_source()
            else:
                await self._run_consumer()
        except RunError as error:
            self._fail(error)
        except Exception as exc:
            wrapped = RunError(self.name, _describe(exc))
            wrapped.__cause__ = exc
            self._fail(wrapped)
        except BaseException:
            self.reason = "cancelled"
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._finish()

    def _fail(self, error: RunError) -> None:
        self.failure = error
        self.errors += 1
        self.reason = "failed"
        self.set_state(ActorState.INVALID)
        self.log.error(
            "actor.failed",
            phase="run",
            error=_describe(error.__cause__ or error),
            message_id=error.message_id,
            exc_info=error.__cause__ or error,
        )
        self._on_failure(self, error)

    async def _finish(self) -> None:
        if self.state is not ActorState.INVALID:
            self.reason = self.reason or "normal"
            self.set_state(ActorState.ZOMBIE)
        for links in self.outputs.values():
            for link in links:
                link.close()
        for link in self.mailbox.links:
            link.close_receiver()
        timeout = self.settings.cleanup_timeout
        with trio.move_on_after(timeout):
            for actor in self.upstream:
                await actor.cleaned.wait()
        try:
            with trio.fail_after(timeout):
                await call_hook(self.module.cleanup)
        except trio.TooSlowError:
            self._cleanup_failed(f"cleanup() did not finish within {timeout} s", None)
        except Exception as exc:
            self._cleanup_failed(_describe(exc), exc)
        finally:
            self.cleaned.set()
        if self.state is not ActorState.INVALID:
            self.set_state(ActorState.TERMINATED)
        self.log.info("actor.ended", reason=self.reason, received=self.received)

    def _cleanup_failed(self, message: str, cause: Exception | None) -> None:
        error = CleanupError(self.name, message)
        error.__cause__ = cause
        self.cleanup_error = error
        self.errors += 1
        self.log.error("actor.cleanup_failed", phase="cleanup", error=message)

    async def request_stop(self) -> None:
        """Ask a source to stop: ``active`` turns false, ``stop()`` runs, and after
        ``stop_timeout`` a ``start()`` that has not returned is cancelled."""
        if self._stop_requested or self.state.is_final:
            return
        self._stop_requested = True
        self.active = False
        self.log.info("actor.stopping")
        if self.kind is ModuleKind.SOURCE:
            stop = getattr(self.module, "stop", None)
            if stop is not None:
                try:
                    await call_hook(stop)
                except Exception as exc:
                    self.errors += 1
                    self.log.error("actor.stop_failed", error=_describe(exc), exc_info=exc)
        scope = self._produce_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, trio.current_time() + self.settings.stop_timeout)

    # -- scheduling --------------------------------------------------------------------

    async def _yield(self) -> None:
        """Spend a checkpoint so other actors run; then start a fresh quantum."""
        self.set_state(ActorState.READY)
        await trio.lowlevel.checkpoint()
        self._deadline = self._now() + self._quantum
        self.set_state(ActorState.RUNNING)

    # -- output ------------------------------------------------------------------------

    async def emit(self, item: Any, port: str = "out") -> None:
        """Send one item on ``port``, then yield if the quantum is spent."""
        if port not in self.outputs:
            known = ", ".join(repr(p) for p in self.outputs) or "none"
            raise KeyError(
                f"module {self.name!r} has no output port {port!r} (output ports: {known})"
            )
        await self._send([item], port)
        if self._now() >= self._deadline:
            await self._yield()

    async def _send(self, items: list[Any], port: str) -> None:
        self.emitted += len(items)
        links = self.outputs[port]
        if not links:
            self._drop(len(items), "unconnected")
            if port not in self._warned_unconnected:
                self._warned_unconnected.add(port)
                self.log.warning(
                    "actor.dropped", port=port, reason="unconnected", count=len(items)
                )
            return
        for link in links:
            batch = items if link.copier is None else [link.copier(item) for item in items]
            accepted = link.offer(batch)
            if accepted < len(batch):
                await self._send_rest(link, batch, accepted, port)

    async def _send_rest(self, link: Link, batch: list[Any], accepted: int, port: str) -> None:
        previous = self.state
        self.set_state(ActorState.BLOCKED, blocked_on=f"output:{port}")
        try:
            while accepted < len(batch):
                await link.wait_for_space()
                accepted = link.offer(batch, accepted)
        except BaseException:
            link.drop(len(batch) - accepted, "cancelled")
            raise
        self.set_state(previous)

    # -- sources -----------------------------------------------------------------------

    async def _run_source(self) -> None:
        with trio.CancelScope() as scope:
            self._produce_scope = scope
            if not self.active:
                return
            self.set_state(ActorState.RUNNING)
            try:
                produced = self.module.start()  # type: ignore[attr-defined]
                if inspect.isawaitable(produced):
                    produced = await produced
            except Exception as exc:
                raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
            if produced is None:
                pass
            elif hasattr(produced, "__aiter__"):
                await self._pull_async(produced)
            elif hasattr(produced, "__iter__"):
                await self._pull_sync(iter(produced))
            else:
                raise RunError(
                    self.name,
                    f"start() returned {type(produced).__name__}; expected an iterable, an "
                    "async iterable, or None (after emitting with `await self.emit(...)`)",
                )
        if scope.cancelled_caught:
            self.reason = "killed"
            self.log.warning("actor.killed", timeout=self.settings.stop_timeout)
        elif self._stop_requested:
            self.reason = "stopped"

    async def _pull_sync(self, iterator: Any) -> None:
        limit = self.settings.max_batch
        now = self._now
        try:
            while self.active:
                batch: list[Any] = []
                append = batch.append
                deadline = self._deadline
                self._last_check = now()
                countdown = min(self._stride, limit)
                try:
                    for item in iterator:
                        append(item)
                        countdown -= 1
                        if not countdown:
                            if len(batch) >= limit or self._quantum_spent(deadline):
                                break
                            countdown = min(self._stride, limit - len(batch))
                except Exception as exc:
                    self._drop(len(batch), "failed")
                    raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
                if not batch:
                    return
                await self._send(batch, "out")
                if now() >= self._deadline:
                    await self._yield()
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    async def _pull_async(self, iterator: Any) -> None:
        try:
            while self.active:
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise RunError(self.name, f"start() raised {_describe(exc)}") from exc
                await self.emit(item)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    # -- processors and sinks ----------------------------------------------------------

    async def _run_consumer(self) -> None:
        module: Any = self.module
        hook = module.process if self.kind is ModuleKind.PROCESSOR else module.consume
        style = hook_style(hook)
        with_port = accepts_port(hook)
        collect = self.kind is ModuleKind.PROCESSOR
        mailbox = self.mailbox
        limit = self.settings.max_batch
        feedback_closed = not any(link.spec.feedback for link in mailbox.links)
        while True:
            got = mailbox.take(limit)
            if got is None:
                if mailbox.exhausted():
                    if feedback_closed:
                        return
                    # The real inputs are done: feedback links close too; what they
                    # already hold is still handled.
                    for link in mailbox.links:
                        if link.spec.feedback:
                            link.close_receiver()
                    feedback_closed = True
                    continue
                self.set_state(ActorState.BLOCKED, blocked_on="input")
                await mailbox.wait()
                self._deadline = self._now() + self._quantum
                continue
            link, batch = got
            self.set_state(ActorState.RUNNING)
            fn = hook
            if with_port:
                port = link.spec.target_port
                fn = lambda item, port=port: hook(item, port)  # noqa: E731
            if style is HookStyle.SYNC:
                await self._handle_sync(fn, batch, collect)
            else:
                await self._handle_general(fn, style, batch, collect)

    def _item_error(self, exc: Exception, item: Any, sequence: int) -> RunError:
        message_id = item.id if isinstance(item, Data) else f"{self.name}#{sequence}"
        hook = "process()" if self.kind is ModuleKind.PROCESSOR else "consume()"
        error = RunError(self.name, f"{hook} raised {_describe(exc)}", message_id=message_id)
        error.__cause__ = exc
        return error

    def _quantum_spent(self, deadline: float) -> bool:
        """Read the clock, every ``_stride`` items: True once ``deadline`` has passed.

        Otherwise adapt the stride: read the clock less often while a stride of items
        costs under 1/16 of the quantum, more often when it costs more.
        """
        checked = self._now()
        if checked >= deadline:
            return True
        if checked - self._last_check < self._quantum / 16:
            self._stride = min(self._stride * 2, _MAX_STRIDE)
        elif self._stride > 1:
            self._stride //= 2
        self._last_check = checked
        return False

    async def _handle_sync(
        self, fn: Callable[[Any], Any], batch: list[Any], collect: bool
    ) -> None:
        now = self._now
        base = self.received
        count = len(batch)
        self.received += count
        items = iter(batch)
        out: list[Any] = []
        item: Any = None
        try:
            while True:
                deadline = self._deadline
                self._last_check = now()
                countdown = self._stride
                finished = True
                out = []
                if collect:
                    append = out.append
                    for item in items:
                        result = fn(item)
                        if result is None:
                            self.filtered += 1
                        elif type(result) is Many:
                            out.extend(result.items)
                        else:
                            append(result)
                        countdown -= 1
                        if not countdown:
                            if self._quantum_spent(deadline):
                                finished = False
                                break
                            countdown = self._stride
                    if out:
                        sending, out = out, []
                        await self._send(sending, "out")
                else:
                    for item in items:
                        fn(item)
                        countdown -= 1
                        if not countdown:
                            if self._quantum_spent(deadline):
                                finished = False
                                break
                            countdown = self._stride
                if now() >= self._deadline:
                    await self._yield()
                if finished:
                    return
        except Exception as exc:
            # `item` raised; it, the outputs not yet sent and the rest of the batch are
            # lost with the actor.
            rest = sum(1 for _ in items)
            self._drop(rest + 1 + len(out), "failed")
            raise self._item_error(exc, item, base + count - rest) from exc
        except BaseException:
            self._drop(sum(1 for _ in items), "cancelled")
            raise

    async def _handle_general(
        self, fn: Callable[[Any], Any], style: HookStyle, batch: list[Any], collect: bool
    ) -> None:
        base = self.received
        self.received += len(batch)
        count = len(batch)
        index = 0
        try:
            while index < count:
                item = batch[index]
                index += 1
                try:
                    results = await self._call_item_hook(fn, style, item)
                except Exception as exc:
                    self._drop(count - index + 1, "failed")
                    raise self._item_error(exc, item, base + index) from exc
                if collect:
                    if results:
                        await self._send(results, "out")
                    else:
                        self.filtered += 1
                if self._now() >= self._deadline:
                    await self._yield()
        except RunError:
            raise
        except BaseException:
            self._drop(count - index, "cancelled")
            raise

    async def _call_item_hook(
        self, fn: Callable[[Any], Any], style: HookStyle, item: Any
    ) -> list[Any]:
        if style is HookStyle.SYNC_GEN:
            return list(fn(item))
        if style is HookStyle.ASYNC_GEN:
            return [value async for value in fn(item)]
        result = await fn(item)
        if result is None:
            return []
        if type(result) is Many:
            return list(result.items)
        return [result]
