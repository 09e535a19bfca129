"""Running a validated graph: construct, validate, start, watch and stop its actors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ._actor import Actor, _describe
from ._copying import copier_for
from ._exceptions import (
    ActorflowError,
    CleanupError,
    InitializationError,
    RunError,
    ValidationError,
)
from ._graph import Graph
from ._hooks import call_hook
from ._link import Link
from ._logging import get_logger
from ._module import ModuleKind
from ._settings import Settings
from ._status import ActorState, SystemState, SystemStatus

__all__ = ["System", "open_system", "run"]


@final
class System:
    """A graph while it runs: its actors, its links, and the handles to watch and stop it.

    Get one from :func:`open_system`; do not construct it directly.
    """

    def __init__(self, graph: Graph, settings: Settings) -> None:
        self.graph = graph
        self.settings = settings
        self.state = SystemState.STARTING
        self.log = get_logger(graph=graph.name)
        self._actors: dict[str, Actor] = {}
        self._links: list[Link] = []
        self._failures: list[RunError] = []
        self._nursery: trio.Nursery | None = None
        self._all_done = trio.Event()

    # -- public handles ----------------------------------------------------------------

    @property
    def actors(self) -> tuple[str, ...]:
        """Names of the system's actors, in declaration order."""
        return tuple(self._actors)

    def status(self) -> SystemStatus:
        """A snapshot of every actor and link, taken without yielding."""
        return SystemStatus(
            graph=self.graph.name,
            state=self.state,
            actors={name: actor.status() for name, actor in self._actors.items()},
            links={link.name: link.status() for link in self._links},
        )

    async def stop(self) -> None:
        """Stop gracefully: every source stops producing, the end of stream flows down,
        and the system ends once everything queued has been handled.

        A source whose ``start()`` has not returned ``stop_timeout`` seconds later is
        cancelled. Returns at once; leave the ``async with`` block to wait for the end.
        """
        if self.state in (SystemState.STARTING, SystemState.RUNNING):
            self.state = SystemState.STOPPING
            self.log.info("system.stopping")
        for actor in self._actors.values():
            if actor.kind is ModuleKind.SOURCE:
                await actor.request_stop()

    def cancel(self) -> None:
        """Stop at once: every actor is cancelled, cleanups still run, and what was in
        flight is counted as dropped (``"cancelled"`` / ``"shutdown"``)."""
        if self._nursery is not None:
            self.log.info("system.cancelling")
            self._nursery.cancel_scope.cancel()

    async def wait(self) -> None:
        """Wait until every actor has ended."""
        await self._all_done.wait()

    # -- start-up ----------------------------------------------------------------------

    async def _prepare(self) -> None:
        """Validate the graph, construct every module, then validate every module.

        Nothing is started here, so a failure leaves nothing to clean up.
        """
        self.graph.validate()
        for spec in self.graph.modules:
            try:
                module = spec.factory(**spec.config)
            except Exception as exc:
                self.log.error("actor.failed", actor=spec.name, phase="init", error=_describe(exc))
                raise InitializationError(spec.name, _describe(exc)) from exc
            self._actors[spec.name] = Actor(spec, module, self.settings, self._on_failure)
        for actor in self._actors.values():
            try:
                await call_hook(actor.module.validate)
            except Exception as exc:
                actor.set_state(ActorState.INVALID)
                actor.log.error("actor.failed", phase="validate", error=_describe(exc))
                raise ValidationError(actor.name, _describe(exc)) from exc
            actor.set_state(ActorState.VALIDATED)
        self._wire()

    def _wire(self) -> None:
        fan_out: dict[tuple[str, str], int] = {}
        for spec in self.graph.links:
            key = (spec.source, spec.source_port)
            fan_out[key] = fan_out.get(key, 0) + 1
        for spec in self.graph.links:
            producer = self._actors[spec.source]
            consumer = self._actors[spec.target]
            link = Link(
                spec,
                spec.buffer or self.settings.default_buffer,
                consumer.mailbox,
                copier_for(spec.copy, fan_out[(spec.source, spec.source_port)]),
            )
            producer.outputs[spec.source_port].append(link)
            self._links.append(link)
            if not spec.feedback and producer not in consumer.upstream:
                consumer.upstream.append(producer)

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        order = self.graph.start_order()
        self.log.info("system.starting", actors=len(order), order=order)
        for name in order:
            await nursery.start(self._run_actor, self._actors[name], name=f"actor:{name}")
        if self.state is SystemState.STARTING:
            self.state = SystemState.RUNNING
        self.log.info("system.started", actors=len(order))

    async def _run_actor(self, actor: Actor, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await actor.run(task_status=task_status)
        finally:
            if all(a.state.is_final for a in self._actors.values()):
                self._all_done.set()

    def _on_failure(self, actor: Actor, error: RunError) -> None:
        self._failures.append(error)
        if self.state is not SystemState.FAILED:
            self.state = SystemState.FAILED
            self.log.error("system.failing", actor=actor.name, error=str(error))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -- the end -----------------------------------------------------------------------

    def _finalize(self, cancelled: bool) -> None:
        for link in self._links:
            count = link.discard("shutdown")
            if count:
                self.log.warning("link.dropped", link=link.name, reason="shutdown", count=count)
        if self.state is not SystemState.FAILED:
            self.state = SystemState.CANCELLED if cancelled else SystemState.DONE
        status = self.status()
        event = "system.done" if self.state is SystemState.DONE else "system.ended"
        self.log.info(event, state=self.state.value, dropped=status.dropped)
        self._all_done.set()

    def _error(self) -> ActorflowError | None:
        """The error the system ends with: the first failure, else the first cleanup error.

        Every other failure and cleanup error is attached as a note, never hidden.
        """
        cleanup_errors: list[CleanupError] = [
            actor.cleanup_error for actor in self._actors.values() if actor.cleanup_error
        ]
        primary: ActorflowError
        others: list[ActorflowError]
        if self._failures:
            primary, others = self._failures[0], [*self._failures[1:], *cleanup_errors]
        elif cleanup_errors:
            primary, others = cleanup_errors[0], list(cleanup_errors[1:])
        else:
            return None
        for other in others:
            primary.add_note(f"also: {other}")
        return primary


def _make_settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    base = settings if settings is not None else Settings()
    if not overrides:
        return base
    known = {field.name for field in attrs.fields(Settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(sorted(known))}"
        )
    return attrs.evolve(base, **overrides)


@asynccontextmanager
async def open_system(
    graph: Graph, settings: Settings | None = None, **overrides: Any
) -> AsyncIterator[System]:
    """Run ``graph`` in a nursery of its own for the duration of an ``async with`` block.

    The graph is validated, every module constructed and validated, then every actor
    started, consumers before producers. Leaving the block waits until every actor has
    ended (the system ends by itself when its sources are exhausted and everything
    downstream has drained); call :meth:`System.stop` or :meth:`System.cancel` to end
    it sooner. An exception in the block cancels the system, with cleanup.

    Args:
        graph: What to run.
        settings: System settings; keyword ``overrides`` replace single fields of it
            (``open_system(graph, quantum=0.002)``).

    Raises:
        GraphError: The graph is invalid; nothing was constructed.
        InitializationError: A module's constructor raised; nothing was started.
        ValidationError: A module's ``validate()`` refused; nothing was started.
        RunError: A module raised while running; the others were stopped and every
            started module was cleaned up.
        CleanupError: Everything ran, but a ``cleanup()`` failed.
    """
    system = System(graph, _make_settings(settings, overrides))
    await system._prepare()
    body_error: BaseException | None = None
    cancelled = True
    try:
        async with trio.open_nursery() as nursery:
            await system._start(nursery)
            try:
                yield system
            except trio.Cancelled:
                raise
            except BaseException as exc:
                body_error = exc
                nursery.cancel_scope.cancel()
        cancelled = nursery.cancel_scope.cancelled_caught and not system._failures
    finally:
        system._finalize(cancelled)
    error = system._error()
    if body_error is not None:
        if error is not None:
            body_error.add_note(f"the system also failed: {error}")
        raise body_error
    if error is not None:
        raise error


def run(graph: Graph, settings: Settings | None = None, **overrides: Any) -> SystemStatus:
    """Run ``graph`` to completion from synchronous code; return its final status.

    A blocking convenience around :func:`open_system` and ``trio.run``. Ctrl-C stops the
    system in order (cleanups run) and then raises ``KeyboardInterrupt``.

    Raises:
        The same errors as :func:`open_system`.
    """

    async def main() -> SystemStatus:
        async with open_system(graph, settings, **overrides) as system:
            pass
        return system.status()

    try:
        return trio.run(main)
    except BaseExceptionGroup as group:
        # Ctrl-C reaches trio's main task while it waits in the nursery, which wraps it.
        interrupt = group.subgroup(KeyboardInterrupt)
        if interrupt is not None:
            raise KeyboardInterrupt from None
        raise
