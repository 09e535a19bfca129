"""Running a validated graph: construct, validate, start, supervise and stop its actors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import attrs
import trio

from ._actor import Actor, DeadLetter
from ._collector import CollectorRest
from ._copying import copier_for
from ._endpoints import Inlet, Outlet, OutletReader, Variable
from ._exceptions import (
    ActorflowError,
    CleanupError,
    GraphError,
    GraphProblem,
    InitializationError,
    RunError,
    ValidationError,
    _describe,
    single_errors,
)
from ._graph import Graph, LinkSpec
from ._heartbeat import Reporter, snapshot
from ._link import Link, Mailbox
from ._logging import get_logger
from ._module import ModuleKind
from ._redis import ConsumerPump, ProducerPump, stream_key
from ._remote import RemoteInLink
from ._settings import Settings
from ._status import ActorState, SystemState, SystemStatus
from ._store import MemoryStore, Store
from ._supervisor import ChildSpec, Supervisor, Worker

__all__ = ["System", "open_system", "run"]

_DEAD_LETTER_HISTORY = 1000


@final
class System:
    """A graph while it runs: its actors under a supervisor tree, its links, and the
    handles to watch and stop it.

    Get one from :func:`open_system`; do not construct it directly.
    """

    def __init__(
        self,
        graph: Graph,
        settings: Settings,
        store: Store | None = None,
        reporters: Sequence[Reporter] = (),
        only: Collection[str] | None = None,
    ) -> None:
        self.graph = graph
        self.here: frozenset[str] = frozenset(
            spec.name for spec in graph.modules if only is None or spec.name in only
        )
        """The modules that run in this process (all, unless ``only`` was given)."""
        self._only = None if only is None else tuple(only)
        self._pumps: list[Any] = []
        """What carries remote links to and from their streams."""
        self.settings = settings
        self.reporters = list(reporters)
        self.started_at = time.time()
        self._heartbeats = trio.CancelScope()
        self.store: Store = store if store is not None else MemoryStore()
        """The shared data store modules read and write through ``self.shared``."""
        self.state = SystemState.STARTING
        self.log = get_logger(graph=graph.name)
        self._actors: dict[str, Actor] = {}
        self._links: list[Link] = []
        self._failure: ActorflowError | None = None
        self._nursery: trio.Nursery | None = None
        self._all_done = trio.Event()
        self._dead_letters: deque[DeadLetter] = deque(maxlen=_DEAD_LETTER_HISTORY)
        self._dead_letter_link: Link | None = None
        self.root: Supervisor | None = None
        self._supervisors: dict[str, Supervisor] = {}
        self._stopping = False
        self._dead_letter_waits_for: set[str] = set()

    # -- public handles ----------------------------------------------------------------

    @property
    def actors(self) -> tuple[str, ...]:
        """Names of the system's actors, in declaration order."""
        return tuple(self._actors)

    @property
    def dead_letters(self) -> tuple[DeadLetter, ...]:
        """The most recent dead letters (up to 1000), oldest first."""
        return tuple(self._dead_letters)

    def supervisor(self, name: str | None = None) -> Supervisor:
        """The root supervisor, or the group supervisor called ``name``.

        Raises:
            KeyError: There is no group of that name.
        """
        if name is None:
            assert self.root is not None
            return self.root
        try:
            return self._supervisors[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self._supervisors) or "none"
            raise KeyError(f"no supervisor {name!r} (groups: {known})") from None

    def status(self) -> SystemStatus:
        """A snapshot of every actor and link, taken without yielding."""
        return SystemStatus(
            graph=self.graph.name,
            state=self.state,
            actors={name: actor.status() for name, actor in self._actors.items()},
            links={link.name: link.status() for link in self._links},
        )

    async def stop(self) -> None:
        """Stop gracefully: every source stops producing (and every remote link stops
        reading from its stream), the end of stream flows down, and the system ends once
        everything queued has been handled.

        A source whose ``start()`` has not returned ``stop_timeout`` seconds later is
        cancelled. Returns at once; leave the ``async with`` block to wait for the end.
        """
        self._stopping = True
        if self.state in (SystemState.STARTING, SystemState.RUNNING):
            self.state = SystemState.STOPPING
            self.log.info("system.stopping")
        if self._nursery is None:
            return
        for actor in self._actors.values():
            actor.resume()  # a suspended module must be able to drain and end
            if actor.kind is ModuleKind.SOURCE and not actor.terminated:
                self._nursery.start_soon(actor.stop_gracefully)
        for pump in self._pumps:
            # A remote link's receiving half is a source here: it stops reading, and
            # what it holds is handled; the rest stays in the stream for the group.
            if isinstance(pump, ConsumerPump):
                pump.stop()

    async def add_link(self, source: str, target: str, **options: Any) -> LinkSpec:
        """Link ``source`` to ``target`` while the system runs (same endpoints and
        options as :meth:`Graph.link`); items emitted from now on flow through it.

        The graph with the new link is validated as at start-up; a link that would make
        it invalid is refused and nothing changes.

        Raises:
            GraphError: The new link would make the graph invalid (the same messages as
                at start-up: unknown module or port, incompatible types, a cycle).
            RuntimeError: One of its modules has already ended.
        """
        spec = self.graph.link(source, target, **options)
        problems = self.graph.problems()
        if problems:
            self.graph._links.remove(spec)
            raise GraphError(problems)
        for name in (spec.source, spec.target):
            if self._actors[name].terminated:
                self.graph._links.remove(spec)
                raise RuntimeError(f"cannot link {spec.name}: module {name!r} has ended")
        self._connect(spec)
        self._count_ancestors()
        self.log.info("link.added", link=spec.name)
        return spec

    async def remove_link(self, name: str, *, return_items: bool = False) -> list[Any]:
        """Remove the link called ``name`` (``"a.out -> b.in"``) while the system runs.

        Its producer stops sending to it at once. What it still holds is delivered to
        its consumer (by default) or, with ``return_items=True``, handed back to the
        caller (counted as ``returned``); either way nothing is lost. If it was the
        consumer's last input, the consumer then reaches its end of stream.

        Returns:
            The items handed back (empty unless ``return_items``).

        Raises:
            KeyError: There is no such link.
        """
        link = next((link for link in self._links if link.name == name and not link.closed), None)
        if link is None or link is self._dead_letter_link:
            known = ", ".join(repr(k.name) for k in self._links if not k.closed) or "none"
            raise KeyError(f"no link {name!r} (links: {known})")
        producer = self._actors[link.spec.source]
        producer.outputs[link.spec.source_port].remove(link)
        self._set_copiers(producer, link.spec.source_port)
        self.graph._links.remove(link.spec)
        items = link.hand_back() if return_items else []
        link.close()
        self.log.info("link.removed", link=name, returned=len(items), depth=len(link.items))
        return items

    def _actor_named(self, name: str) -> Actor:
        actor = self._actors.get(name)
        if actor is None:
            known = ", ".join(repr(n) for n in self._actors) or "none"
            raise KeyError(f"no module {name!r} (modules: {known})")
        return actor

    def _progressive(self, name: str) -> Actor:
        actor = self._actor_named(name)
        if actor.kind is not ModuleKind.PROGRESSIVE:
            raise TypeError(
                f"module {name!r} is a {type(actor.module).__qualname__}; only progressive "
                "modules can be suspended and resumed"
            )
        return actor

    def suspend(self, name: str) -> None:
        """Pause the progressive module ``name`` after its current step (state
        ``suspended``) until :meth:`resume`.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: It is not a progressive module.
        """
        self._progressive(name).suspend()

    def resume(self, name: str) -> None:
        """Let a suspended progressive module take steps again."""
        self._progressive(name).resume()

    async def set(self, name: str, value: Any) -> None:
        """Set the :class:`Variable` module ``name`` to ``value``; it is emitted downstream.

        Waits while the variable has ``pending`` sets queued.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not a Variable.
            RuntimeError: The variable has stopped.
        """
        actor = self._actor_named(name)
        module = actor.module
        if not isinstance(module, Variable):
            raise TypeError(f"module {name!r} is a {type(module).__qualname__}, not a Variable")
        if actor.terminated:
            raise RuntimeError(f"variable {name!r} has stopped")
        await module.set(value)

    def _endpoint(self, name: str, kind: type[Any]) -> Any:
        module = self._actor_named(name).module
        if not isinstance(module, kind):
            raise TypeError(
                f"module {name!r} is a {type(module).__qualname__}, not an {kind.__name__}"
            )
        return module

    async def send(self, name: str, item: Any) -> None:
        """Send ``item`` into the :class:`Inlet` module ``name``; it is emitted downstream.

        Waits while the inlet's buffer is full (backpressure reaches the host).

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not an Inlet.
            RuntimeError: The inlet was closed or has stopped.
        """
        inlet: Inlet = self._endpoint(name, Inlet)
        await inlet.send(item)

    async def close(self, name: str) -> None:
        """Close the :class:`Inlet` ``name``: what was sent is still emitted, then its
        stream ends, and the graph can end by itself once every source has.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not an Inlet.
        """
        inlet: Inlet = self._endpoint(name, Inlet)
        await inlet.close()

    def receive(self, name: str) -> OutletReader:
        """A reader of the :class:`Outlet` ``name``: ``async with system.receive(name) as
        items: async for item in items: ...``. Iteration ends after the last item. Items
        left in the outlet when the system ends can still be read.

        Raises:
            KeyError: There is no module ``name``.
            TypeError: Module ``name`` is not an Outlet.
        """
        outlet: Outlet = self._endpoint(name, Outlet)
        return outlet.reader()

    def cancel(self) -> None:
        """Stop at once: every actor is cancelled, cleanups still run (producers first),
        and what was in flight is counted as dropped (``"shutdown"``)."""
        if self._nursery is not None and not self._all_done.is_set():
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
        graph = self.graph
        graph.validate()
        placement = self._placement_problems()
        if placement:
            raise GraphError(placement)
        for warning in graph.warnings():
            self.log.warning("graph.warning", message=warning)
        for spec in graph.modules:
            if spec.name not in self.here:
                continue
            try:
                module = spec.factory(**spec.config)
            except Exception as exc:
                self.log.error("actor.failed", actor=spec.name, phase="init", error=_describe(exc))
                raise InitializationError(spec.name, _describe(exc)) from exc
            self._actors[spec.name] = Actor(
                spec,
                module,
                self.settings,
                attempts=graph.supervision_of(spec.name).attempts,
                dead_letter=self._dead_letter,
                on_terminated=self._actor_terminated,
                system_stopping=lambda: self._stopping,
            )
        limiter = trio.CapacityLimiter(self.settings.thread_limit)
        for actor in self._actors.values():
            actor.thread_limiter = limiter
        for actor in self._actors.values():
            try:
                await actor._lifecycle(actor.module.validate)
            except Exception as exc:
                actor.set_state(ActorState.INVALID)
                actor.log.error("actor.failed", phase="validate", error=_describe(exc))
                raise ValidationError(actor.name, _describe(exc)) from exc
            actor.set_state(ActorState.VALIDATED)
        self._wire()
        self._wire_dead_letters()
        self.root = self._build_tree()

    def _placement_problems(self) -> list[GraphProblem]:
        """What makes the graph unable to run split across processes as asked."""
        graph, here = self.graph, self.here
        problems = [
            GraphProblem(f"only: unknown module {name!r}", module=name)
            for name in self._only or ()
            if name not in {spec.name for spec in graph.modules}
        ]
        for spec in graph.links:
            crosses = (spec.source in here) != (spec.target in here)
            if crosses and spec.remote is None:
                problems.append(
                    GraphProblem(
                        f"link {spec.name} joins a module that runs here to one that does "
                        "not; make it remote (remote=...) so that it can cross processes",
                        module=spec.target,
                        port=spec.target_port,
                    )
                )
            if (
                spec.remote is not None
                and (spec.source in here or spec.target in here)
                and (spec.remote.url or self.settings.remote_url) is None
            ):
                problems.append(
                    GraphProblem(
                        f"link {spec.name} is remote but names no Redis URL: give it "
                        "remote='redis://...' or set Settings.remote_url",
                        module=spec.target,
                        port=spec.target_port,
                    )
                )
        for module, source, _ in graph.dependencies:
            if module in here and source not in here:
                problems.append(
                    GraphProblem(
                        f"depends_on: {module!r} waits for {source!r}, which does not run "
                        "here; readiness does not cross processes",
                        module=module,
                    )
                )
        return problems

    def _connect(self, spec: LinkSpec) -> Link:
        """Create the running link for ``spec`` and attach it to both actors."""
        producer = self._actors[spec.source]
        consumer = self._actors[spec.target]
        link = Link(spec, spec.buffer or self.settings.default_buffer, consumer.mailbox, None)
        producer.outputs[spec.source_port].append(link)
        self._links.append(link)
        if not spec.feedback and producer not in consumer.upstream:
            consumer.upstream.append(producer)
        self._set_copiers(producer, spec.source_port)
        return link

    def _set_copiers(self, producer: Actor, port: str) -> None:
        """Copying depends on how many links leave a port: recompute for all of them."""
        links = producer.outputs[port]
        for link in links:
            # A remote link serialises what it carries: that is its copy.
            remote = link.spec.remote is not None
            link.copier = None if remote else copier_for(link.spec.copy, len(links))

    def _connect_remote(self, spec: LinkSpec) -> None:
        """The halves of a remote link that run here, and the pumps that carry them."""
        remote = spec.remote
        assert remote is not None
        url = remote.url or self.settings.remote_url
        assert url is not None
        stream = remote.stream or stream_key(
            self.graph.name, spec.source, spec.source_port, spec.target, spec.target_port
        )
        if spec.source in self.here:
            producer = self._actors[spec.source]
            mailbox = Mailbox()
            link = Link(spec, remote.batch, mailbox, None)
            link.name = f"{spec.name} (to the stream)"
            producer.outputs[spec.source_port].append(link)
            self._links.append(link)
            self._set_copiers(producer, spec.source_port)
            self._pumps.append(
                ProducerPump(
                    link,
                    mailbox,
                    url=url,
                    stream=stream,
                    group=spec.target,
                    bound=spec.buffer or self.settings.default_buffer,
                    remote=remote,
                )
            )
        if spec.target in self.here:
            consumer = self._actors[spec.target]
            # Room for two entries: one to read while the module works on the other.
            inbound = RemoteInLink(spec, 2 * remote.batch, consumer.mailbox)
            self._links.append(inbound)
            self._pumps.append(
                ConsumerPump(
                    inbound,
                    url=url,
                    stream=stream,
                    group=spec.target,
                    shared=spec.target in self.graph.shared,
                    remote=remote,
                )
            )

    def _wire(self) -> None:
        for actor in self._actors.values():
            actor.system = self
        for module, source, timeout in self.graph.dependencies:
            if module in self.here:
                self._actors[module].waits_for.append((self._actors[source], timeout))
        for spec in self.graph.links:
            if spec.remote is not None:
                self._connect_remote(spec)
            elif spec.source in self.here:
                self._connect(spec)
        self._count_ancestors()

    def _count_ancestors(self) -> None:
        """Count each actor's distinct ancestors in one pass, producers first.

        An actor fed by one actor has that actor's ancestors plus it; only where links
        join are ancestor sets united, as bit masks kept until their last reader used
        them. Walking the graph again for every actor made a chain's start quadratic.
        """
        actors = list(self._actors.values())
        position = {id(actor): index for index, actor in enumerate(actors)}
        feeds = [[position[id(up)] for up in actor.upstream] for actor in actors]
        readers: list[list[int]] = [[] for _ in actors]
        for index, ups in enumerate(feeds):
            for up in ups:
                readers[up].append(index)
        masked: set[int] = set()  # every ancestor of a join: its mask is needed
        stack = [up for ups in feeds if len(ups) > 1 for up in ups]
        while stack:
            index = stack.pop()
            if index not in masked:
                masked.add(index)
                stack.extend(feeds[index])
        waiting = [len(ups) for ups in feeds]
        unread = [len(found) for found in readers]
        ready = [index for index, count in enumerate(waiting) if count == 0]
        counts = [0] * len(actors)
        masks: dict[int, int] = {}
        while ready:
            index = ready.pop()
            ups = feeds[index]
            if len(ups) == 1:
                counts[index] = counts[ups[0]] + 1
            if len(ups) > 1 or index in masked:
                mask = 0
                for up in ups:
                    mask |= masks[up] | (1 << up)
                counts[index] = mask.bit_count()
                if index in masked:
                    masks[index] = mask
            for up in ups:
                unread[up] -= 1
                if not unread[up]:
                    masks.pop(up, None)
            for reader in readers[index]:
                waiting[reader] -= 1
                if not waiting[reader]:
                    ready.append(reader)
        for index, actor in enumerate(actors):
            if not waiting[index]:
                actor.ancestors = counts[index]
                continue
            seen: set[str] = set()  # on or below a cycle (not in a valid graph): walk
            walk = list(actor.upstream)
            while walk:
                upstream = walk.pop()
                if upstream.name not in seen:
                    seen.add(upstream.name)
                    walk.extend(upstream.upstream)
            actor.ancestors = len(seen)

    def _wire_dead_letters(self) -> None:
        target = self.graph.dead_letter_target
        if target is not None and target[0] in self.here:
            module, port = target
            spec = LinkSpec("<dead letters>", "out", module, port, copy="none")
            link = Link(spec, self.settings.default_buffer, self._actors[module].mailbox, None)
            self._dead_letter_link = link
            self._links.append(link)
            # The link closes once everything that could still send a dead letter ended:
            # every actor but the receiver and what it feeds (they wait for its end).
            downstream = {module}
            to_visit = [module]
            while to_visit:
                for out_links in self._actors[to_visit.pop()].outputs.values():
                    for out in out_links:
                        if out.spec.target in self._actors and out.spec.target not in downstream:
                            downstream.add(out.spec.target)
                            to_visit.append(out.spec.target)
            self._dead_letter_waits_for = set(self._actors) - downstream

    def _build_tree(self) -> Supervisor:
        """The root supervisor: groups and ungrouped actors, consumers before producers."""
        graph = self.graph
        order = [name for name in graph.start_order() if name in self.here]
        position = {name: index for index, name in enumerate(order)}
        grouped = {member for group in graph.groups for member in group.members}
        entries: list[tuple[int, Worker, ChildSpec]] = []
        for group in graph.groups:
            local = [m for m in group.members if m in self.here]
            if not local:
                continue
            members = [(self._actors[m], graph.supervision_of(m).child) for m in local]
            supervisor = Supervisor(group.name, group.spec, members)
            self._supervisors[group.name] = supervisor
            first = min(position[m] for m in local)
            entries.append((first, supervisor, group.child))
        entries.extend(
            (position[name], self._actors[name], graph.supervision_of(name).child)
            for name in order
            if name not in grouped
        )
        entries.sort(key=lambda entry: entry[0])
        root = Supervisor(graph.name, graph.root, [(w, c) for _, w, c in entries])
        self._supervisors[graph.name] = root
        return root

    def _dead_letter(self, letter: DeadLetter) -> None:
        self._dead_letters.append(letter)
        link = self._dead_letter_link
        if link is not None and link.offer([letter]) == 0:
            link.drop(1, "overflow")
            self.log.error("link.dropped", link=link.name, reason="overflow", count=1)

    def _actor_terminated(self, actor: Actor) -> None:
        """Close the dead-letter link once nothing else can produce dead letters."""
        link = self._dead_letter_link
        if link is None or link.closed:
            return
        if all(self._actors[name].terminated for name in self._dead_letter_waits_for):
            link.close()

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        root = self.root
        assert root is not None
        order = [name for name in self.graph.start_order() if name in self.here]
        self.log.info("system.starting", actors=len(self._actors), order=order)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_root, root)
            await root.started.wait()
            if self.state is SystemState.STARTING:
                self.state = SystemState.RUNNING
            self.log.info("system.started", actors=len(self._actors))
            task_status.started()

    async def _heartbeat(self) -> None:
        """Every heartbeat_interval: log a snapshot and hand it to each reporter."""
        from . import __version__

        interval = self.settings.heartbeat_interval
        with self._heartbeats:
            async with trio.open_nursery() as reports:
                while True:
                    await trio.sleep(interval)
                    data = snapshot(self.status(), started_at=self.started_at, version=__version__)
                    self.log.info(
                        "system.heartbeat",
                        state=data["state"],
                        actors={
                            name: {key: actor[key] for key in _HEARTBEAT_LOGGED}
                            for name, actor in data["actors"].items()
                        },
                    )
                    for reporter in self.reporters:
                        reports.start_soon(self._report, reporter, data, interval)

    async def _report(self, reporter: Reporter, data: dict[str, Any], limit: float) -> None:
        with trio.move_on_after(limit) as scope:
            try:
                await reporter.report(data)
            except Exception as exc:
                self.log.warning("reporter.failed", reporter=repr(reporter), error=_describe(exc))
        if scope.cancelled_caught:
            self.log.warning("reporter.slow", reporter=repr(reporter), limit=limit)

    async def _run_pump(self, pump: Any) -> None:
        """Carry a remote link; a failure there (not an unreachable server, which is
        waited out) fails the system, like a module beyond its restart intensity."""
        try:
            await pump.run()
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, ActorflowError)
                else RunError(pump.link.name, _describe(exc))
            )
            error.__cause__ = exc
            self._fail(error)

    def _fail(self, error: ActorflowError) -> None:
        if self._failure is None:
            self._failure = error
            self.state = SystemState.FAILED
            self.log.error("system.failing", error=str(error))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _run_root(self, root: Supervisor) -> None:
        try:
            await root.run()
        except Exception as exc:
            error = exc if isinstance(exc, ActorflowError) else RunError(root.name, _describe(exc))
            self._fail(error)
        finally:
            self._heartbeats.cancel()
            if self._failure is None:
                # A cancellation may have replaced an escalation that was under way.
                recorded = root.failure or next(
                    (s.failure for s in self._supervisors.values() if s.failure), None
                )
                if recorded is not None:
                    self._failure = recorded
                    self.state = SystemState.FAILED
            root.started.set()
            if self._dead_letter_link is not None:
                self._dead_letter_link.close()
            if (
                self._failure is None
                and self._nursery is not None
                and not self._nursery.cancel_scope.cancel_called
            ):
                # Every actor has ended by itself: done, as wait() returns (the end of
                # the block confirms it, or says cancelled if it was cancelled after all).
                self.state = SystemState.DONE
            self._all_done.set()

    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._heartbeat)
        for pump in self._pumps:
            nursery.start_soon(self._run_pump, pump)
        await nursery.start(self._supervise)

    # -- the end -----------------------------------------------------------------------

    def _finalize(self, cancelled: bool) -> None:
        for actor in self._actors.values():
            if not actor.terminated:
                if not actor.incarnations:
                    actor.terminate("not_started")
                else:
                    actor.terminate("cancelled" if cancelled else "shutdown")
        for link in self._links:
            link.finish_dropping()
            count = link.discard("shutdown")
            if count:
                self.log.warning("link.dropped", link=link.name, reason="shutdown", count=count)
        if self.state is not SystemState.FAILED:
            self.state = SystemState.CANCELLED if cancelled else SystemState.DONE
        status = self.status()
        event = "system.done" if self.state is SystemState.DONE else "system.ended"
        self.log.info(event, state=self.state.value, dropped=status.dropped)
        self._all_done.set()

    def _error(self, *, annotate: bool = True) -> ActorflowError | None:
        """The error the system ends with: its failure, else the first cleanup error.

        Every other cleanup error is attached as a note, never hidden (``annotate=False``
        only looks: for a preview before the end, which must not note them twice).
        """
        cleanup_errors: list[CleanupError] = [
            error for actor in self._actors.values() for error in actor.cleanup_errors
        ]
        primary: ActorflowError
        if self._failure is not None:
            primary, others = self._failure, cleanup_errors
        elif cleanup_errors:
            primary, others = cleanup_errors[0], cleanup_errors[1:]
        else:
            return None
        if annotate:
            for other in others:
                primary.add_note(f"also: {other}")
        return primary


_HEARTBEAT_LOGGED = ("task", "state", "received", "mailbox_depth", "progress", "info")
"""The per-actor fields a ``system.heartbeat`` event carries (reporters get them all)."""


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
    graph: Graph,
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    reporters: Sequence[Reporter] = (),
    only: Collection[str] | None = None,
    **overrides: Any,
) -> AsyncIterator[System]:
    """Run ``graph`` in a nursery of its own for the duration of an ``async with`` block.

    The graph is validated, every module constructed and validated, then every actor
    started under the supervisor tree, consumers before producers. Leaving the block
    waits until every actor has ended (the system ends by itself when its sources are
    exhausted and everything downstream has drained); call :meth:`System.stop` or
    :meth:`System.cancel` to end it sooner. An exception in the block cancels the
    system, with cleanup, and is re-raised as it is.

    Args:
        graph: What to run.
        settings: System settings; keyword ``overrides`` replace single fields of it
            (``open_system(graph, quantum=0.002)``).
        store: The shared data store (:class:`MemoryStore` if not given; pass a
            :class:`SQLiteStore` for data that survives the program).
        reporters: Receive every heartbeat snapshot (see :class:`HttpReporter`).
        only: Run only these modules here (the others run in other processes); every
            link between a module here and one elsewhere must be remote.

    Raises:
        GraphError: The graph is invalid, or cannot be split as ``only`` asks;
            nothing was constructed.
        InitializationError: A module's constructor raised; nothing was started.
        ValidationError: A module's ``validate()`` refused; nothing was started.
        EscalationError: Modules kept failing beyond the root supervisor's restart
            intensity; everything was stopped and cleaned up. It is a ``RunError``.
        CleanupError: Everything ran, but a ``cleanup()`` failed.
    """
    system = System(graph, _make_settings(settings, overrides), store, reporters, only)
    collector = CollectorRest.begin()  # no collections while the graph is built
    try:
        await system._prepare()
    except BaseException:
        collector.end()
        raise
    body_error: BaseException | None = None
    cancelled = True
    try:
        # Ctrl-C (or a module's SystemExit) arriving while the nursery waits is wrapped
        # by trio; give the user the exception itself.
        with single_errors():
            async with trio.open_nursery() as nursery:
                await system._start(nursery)
                collector.freeze()  # what was built lives on: no collection walks it
                try:
                    yield system
                except trio.Cancelled:
                    raise
                except BaseException as exc:  # re-raised after shutdown
                    body_error = exc
                    nursery.cancel_scope.cancel()
        cancelled = nursery.cancel_scope.cancelled_caught and system._failure is None
    finally:
        try:
            system._finalize(cancelled)
        finally:
            # Released only now: a collection while the system is still being
            # finalized would walk all of it and free nothing.
            collector.end()
        if system._failure is not None and body_error is None:
            # Raised from here so that an outer cancellation cannot swallow it.
            raise system._error() or system._failure
    error = system._error()
    if body_error is not None:
        if error is not None:
            body_error.add_note(f"the system also failed: {error}")
        raise body_error
    if error is not None:
        raise error


def run(
    graph: Graph,
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    only: Collection[str] | None = None,
    **overrides: Any,
) -> SystemStatus:
    """Run ``graph`` to completion from synchronous code; return its final status.

    A blocking convenience around :func:`open_system` and ``trio.run``. Ctrl-C stops the
    system in order (cleanups run) and then raises ``KeyboardInterrupt``.

    Raises:
        The same errors as :func:`open_system`.
    """

    async def main() -> SystemStatus:
        async with open_system(graph, settings, store=store, only=only, **overrides) as system:
            pass
        return system.status()

    with single_errors():
        # Ctrl-C goes to the main task at a checkpoint, never into a module's code, so
        # the system is stopped in order rather than one actor failing mid-item.
        return trio.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
