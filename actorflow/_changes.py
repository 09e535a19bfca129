"""Changing a running graph's modules: add, remove, stop, start and replace one.

A change is checked the way the graph was at start-up before anything is touched: the
graph with the change is validated (only the problems the change brings count: a link
removed earlier may have left one behind) and a new module is constructed and
validated, so a refused change raises the start-up error (``GraphError``,
``InitializationError``, ``ValidationError``) and the system runs on unchanged. Then
the change goes through the supervisor, which is how an actor's incarnations come and
go anyway: an added module is a new child at the end of its start order, a stop is
``terminate_child`` (the current item finishes, what the module held goes back to its
links, its state is snapshotted), a start is ``restart_child``, and a replacement is a
stop, the actor adopting the new module (restored from the stopped one's snapshot at
once: the old one is adopted back if that fails), and a start. The actor outlives its
incarnations, so its mailbox, links, counters and owed outputs carry over; a stage
fused into its producer is unfused by its incarnation's end and fusion is planned
afresh by the next one.

Changes of one system are serialized by one lock (``Changes.lock``), each checked under
it against what the one before left; a graceful stop takes the lock too, so a change
under way finishes (or is undone) before the stop acts, and one asked later is refused
(``ChangeError``).

Links are changed here too (``add_link``, ``remove_link``). ``System`` takes each of
these as its method of the same name (``add = _changes.add`` in its class body): the
public documentation is the :class:`Changes` method's, and ``System`` stays a handle.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from functools import partial, wraps
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import attrs
import trio

from ._actor import Actor
from ._actor._core import adopt, build_next
from ._actor._priority import interactions_of
from ._change_guards import Bounds, hooks_here
from ._checks import check_flag
from ._endpoints import Inlet
from ._exceptions import ChangeError, GraphError, GraphProblem, RunError, describe
from ._graph import Graph, ModuleSpec, respec, unadd, unlink
from ._lifecycle import construct, validate
from ._link import Link
from ._module import Module, ModuleKind, RunningSystem, attach
from ._snapshots import namespace, reached, renew, restore_early
from ._specs import LinkSpec, RestartType
from ._status import ActorState, ActorStatus, EndReason, removed_status
from ._supervisor import Supervisor, hold, leaving, release, restarting
from ._wiring import Wiring

if TYPE_CHECKING:
    import structlog

    from ._store import Store

__all__ = ["Changes", "LinkRequest", "Modules"]

LinkRequest = tuple[str, str] | tuple[str, str, Mapping[str, Any]]
"""A link of a module added while running: ``(source, target)`` or ``(source, target,
options)``, with :meth:`Graph.link`'s endpoints and options."""


_Change = TypeVar("_Change", bound=Callable[..., Coroutine[Any, Any, Any]])


_WAITS_FOR_MODULE = frozenset({"stop_module", "replace", "remove"})
"""The changes that wait for their module's current hook to return."""


def _serialized(method: _Change) -> _Change:
    """Make ``method`` one change at a time (two changes of one system interleaving at
    their awaits would each check a state the other then changes), refused at once if
    awaited from a hook it would wait for, and given up ``stop_timeout`` seconds after
    a graceful stop was asked (:class:`Bounds`)."""
    verb = method.__name__

    @wraps(method)
    async def serialized(self: Changes, *args: Any, **kwargs: Any) -> Any:
        subject = args[0] if args else kwargs.get("name", kwargs.get("source"))
        target = subject if verb in _WAITS_FOR_MODULE else None
        hooks = hooks_here(self.wiring.actors.keys())
        if hooks:
            _not_from_its_hook(self, verb, target, hooks)
            if verb == "remove" and kwargs.get("drain", True):
                _not_drained_into_its_hook(self, str(subject), hooks)
        with self.bounds.bounded():
            if self.lock.locked():
                await self.lock.acquire()
            else:  # no checkpoint: a change that does not wait stays one step, as before
                self.lock.acquire_nowait()
            try:
                self.touching = target
                return await method(self, *args, **kwargs)
            finally:
                self.touching = None
                self.lock.release()
        raise ChangeError(  # its bound cancelled it: the system is stopping
            f"{verb}({subject!r}) was given up: the system is stopping, and the change "
            f"had not finished {self.bounds.seconds:g} s (stop_timeout) after the stop "
            "was asked"
        )

    return cast("_Change", serialized)


def _not_from_its_hook(changes: Changes, verb: str, target: str | None, hooks: set[str]) -> None:
    """Refuse a change awaited from inside a hook it would wait for (``hooks``: those
    the caller may be in): it would wait until the module's shutdown timeout killed the
    hook."""
    if target in hooks:
        raise ChangeError(
            f"cannot {verb} module {target!r} from inside its own hook: the change "
            "waits for that hook to return; make it from another task"
        )
    if changes.lock.locked() and changes.touching in hooks:
        raise ChangeError(
            f"cannot {verb} now: a change of module {changes.touching!r} is under way "
            "and waits for this hook to return; make it from another task"
        )


def _not_drained_into_its_hook(changes: Changes, name: str, hooks: set[str]) -> None:
    """Refuse ``remove(name, drain=True)`` awaited from the hook of a module downstream
    of ``name`` (``hooks``: those the caller may be in): the drain waits for ``name`` to
    send what it holds, which may wait for room that only that hook would make."""
    waiting = sorted(hooks & reached(name, changes.graph.links))
    if waiting:
        raise ChangeError(
            f"cannot remove module {name!r} with drain=True from inside the hook of "
            f"{waiting[0]!r}, downstream of it: the drain may wait for room only that "
            "hook makes; make it from another task, or remove with drain=False"
        )


def _closing(changes: Changes, _: Any, closed: bool) -> bool:
    """``Changes.closed`` is set: a stop bounds the change under way."""
    if closed:
        changes.bounds.close()
    return closed


class Modules(Protocol):
    """What ``System`` delegates to: its :class:`Changes` (``System.changes``)."""

    changes: Changes


@attrs.define(slots=True, eq=False)
class Changes:
    """The running graph's module changes (see the module docstring).

    Invariant: the graph, the wiring and the supervisor tree list the same modules and
    links; a change is either made in all three or in none.
    """

    graph: Graph
    wiring: Wiring
    log: structlog.typing.FilteringBoundLogger
    system: RunningSystem
    """What each actor is bound to (the ``System``)."""
    stopping: Callable[[], bool]
    """Whether the system is stopping (no module may be added or started then)."""
    root: Callable[[], Supervisor | None]
    """The root supervisor, once the system runs."""
    here: set[str]
    """The modules that run in this process (``System.here``: the dashboard reads it)."""
    observe: Callable[[Actor], None] = lambda actor: None
    """Gives an added module's actor what the system's metrics and traces read, as
    every actor gets at start-up."""
    stopped: set[str] = attrs.field(factory=set)
    """Modules stopped by :meth:`stop_module` and not started since."""
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    """Held by each change from its checks to its end, and by a graceful stop before it
    acts: changes happen one at a time, and never while a stop is under way."""
    closed: bool = attrs.field(default=False, on_setattr=_closing)
    """A graceful stop was asked for: every change from now on is refused, and the one
    under way is given ``stop_timeout`` seconds (``bounds``)."""
    bounds: Bounds = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: Bounds(self.wiring.settings.stop_timeout), True),
    )
    touching: str | None = None
    """The module the change under way stops (and waits for), if any."""
    removed: dict[str, ActorStatus] = attrs.field(factory=dict)
    """The status of each module removed, as it ended (``SystemStatus.removed``)."""
    tombstones: set[str] = attrs.field(factory=set)
    """Removed modules whose snapshot the store failed to delete: one added later under
    such a name deletes it first (or is refused), never restoring the removed state."""

    # -- checks ------------------------------------------------------------------------

    def _running(self, what: str) -> Supervisor:
        root = self.root()
        if root is None or root.finished or root.failure is not None:
            raise ChangeError(f"cannot {what}: the system is not running")
        if self.closed or self.stopping():
            raise ChangeError(f"cannot {what}: the system is stopping")
        return root

    def _live(self, name: str, what: str) -> Actor:
        actor = self.wiring.actor(name)  # KeyError naming the known modules
        ending = actor.state is ActorState.ZOMBIE and not restarting(
            self._supervisor_of(name), name
        )  # its last incarnation ended, and no restart follows
        if actor.terminated or ending:
            raise ChangeError(f"cannot {what} module {name!r}: it has ended")
        return actor

    def _check(self, change: Callable[[], Callable[[], None]]) -> None:
        """Make ``change`` to the graph (it returns its undo) and keep it only if it
        brings no new problem; else undo it and raise them."""
        before = set(self.graph.problems())
        undo = change()
        problems = [p for p in self.graph.problems() if p not in before]
        if problems:
            undo()
            raise GraphError(problems)

    def _supervisor_of(self, name: str) -> Supervisor:
        """The supervisor ``name`` is a child of: its group's, or the root."""
        for group in self.graph.groups:
            if name in group.members and group.name in self.wiring.supervisors:
                return self.wiring.supervisors[group.name]
        root = self.root()
        assert root is not None
        return root

    async def _build(self, spec: ModuleSpec, actor: Actor | None) -> Module:
        """Construct and validate a module from ``spec`` (InitializationError,
        ValidationError), bound to ``actor`` if it replaces that one's."""
        log = self.log.bind(actor=spec.name)
        module: Module = construct(spec.name, spec.factory, spec.config, log)
        if actor is not None:
            attach(module, actor)
            call = partial(actor.lifecycle, blocking=module.blocking)  # the new one's
            await validate(spec.name, module.validate, call, log)
        return module

    def _rewire(self) -> None:
        self.wiring.count_ancestors()
        interactions_of(self.system).resolve(self.wiring.actors.values())

    # -- links -------------------------------------------------------------------------

    @_serialized
    async def add_link(self, source: str, target: str, **options: Any) -> LinkSpec:
        """Link ``source`` to ``target`` while the system runs (same endpoints and
        options as :meth:`Graph.link`); items emitted from now on flow through it.

        The graph with the new link is validated as at start-up; a link that would make
        it invalid is refused and nothing changes.

        Raises:
            GraphError: The new link would make the graph invalid (the same messages as
                at start-up: unknown module or port, incompatible types, a cycle).
            ChangeError: One of its modules has already ended.
        """
        spec = self.graph.link(source, target, **options)
        problems = self.graph.problems()
        if problems:
            unlink(self.graph, spec)
            raise GraphError(problems)
        for name in (spec.source, spec.target):
            if self.wiring.actors[name].terminated:
                unlink(self.graph, spec)
                raise ChangeError(f"cannot link {spec.name}: module {name!r} has ended")
        link = self.wiring.connect(spec)
        self.wiring.actors[spec.target].link_added(link)
        self.wiring.count_ancestors()
        self.log.info("link.added", link=spec.name)
        return spec

    @_serialized
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
            TypeError: ``return_items`` is not ``True`` or ``False`` (nothing changes).
        """
        check_flag("return_items", return_items)
        link = self.wiring.disconnect(name)
        unlink(self.graph, link.spec)
        items = link.hand_back() if return_items else []
        link.close()
        link.retire()
        self.log.info("link.removed", link=name, returned=len(items), depth=len(link.items))
        return items

    # -- add ---------------------------------------------------------------------------

    @_serialized
    async def add(
        self,
        name: str,
        module: type[Module],
        /,
        *,
        config: Mapping[str, Any] | None = None,
        links: Iterable[LinkRequest] = (),
        supervise: Mapping[str, Any] | None = None,
    ) -> None:
        """Add module ``name`` (``module(**config)``) and its ``links`` to the running
        graph, validated as at start-up, and start it (a new child at the end of its
        supervisor's start order: one_for_all and rest_for_one restarts take it along
        when an earlier child fails). Items flow through its links at once.

        Args:
            name: The new module's name.
            module: Its class.
            config: Its keyword arguments.
            links: ``(source, target)`` or ``(source, target, options)`` per link, to or
                from it (options as :meth:`Graph.link`; not ``remote``).
            supervise: Options of :meth:`Graph.supervise` for it.

        Raises:
            GraphError: The graph with it would be invalid (the start-up messages:
                duplicate module, unknown port, incompatible types, a cycle, ...).
            InitializationError: Its constructor raised.
            ValidationError: Its ``validate()`` refused.
            ChangeError: The system is not running or stopping, a linked module has
                ended, or the snapshot of a module removed under ``name`` is still
                stored and the store failed to delete it.
        """
        self._running(f"add module {name!r}")
        await _bury(self.system.store, self.graph.name, name, self.tombstones)
        spec = ModuleSpec(name, module, config or {})
        added: list[LinkSpec] = []
        self._check(partial_add(self.graph, spec, links, supervise, added))
        spec = self.graph.modules[-1]  # the graph's own (removed by identity later)
        try:
            for link in added:
                other = link.target if link.source == name else link.source
                if other != name and other not in self.wiring.actors:
                    raise ChangeError(
                        f"cannot add module {name!r}: its link {link.name} joins module "
                        f"{other!r}, which runs in another process (only a remote link may)"
                    )
                if other != name:
                    self._live(other, f"link {link.name} to")
            actor = _new_actor(self, spec, await self._build(spec, None))
            await _validate(actor)
            for link_spec in added:  # only now: nothing can be sent to a refused module
                self.wiring.actors[link_spec.target].link_added(self.wiring.connect(link_spec))
            await self._running(f"add module {name!r}").start_child(
                actor, self.graph.supervision_of(name).child
            )
        except BaseException:
            _forget(self, name, spec, added)
            raise
        self._rewire()
        self.log.info("module.added", module=name, links=[link.name for link in added])

    # -- stop and start ----------------------------------------------------------------

    @_serialized
    async def stop_module(self, name: str) -> None:
        """Stop module ``name`` after its current item, keeping its links: what it held
        goes back to them, its state is snapshotted, and items sent to it meanwhile
        queue in its links up to their buffer (then their overflow policy applies:
        a ``block`` link holds its producer back). :meth:`start_module` starts it again;
        a graceful ``System.stop()`` does too, so that it drains.

        Raises:
            KeyError: There is no module ``name``.
            ChangeError: It has ended, is stopped already, waits to be restarted after a
                failure, or is ``temporary`` (a stop would end it for good: remove it
                instead); or the system is not running.
        """
        actor = self._stoppable(name, "stop")
        if name in self.stopped:
            raise ChangeError(f"cannot stop module {name!r}: it is stopped already")
        supervisor = self._supervisor_of(name)
        hold(supervisor)  # a stopped module keeps its supervisor (the system) running
        try:  # done whole once begun (a cancel half-way would leave it ended for good)
            with trio.CancelScope(shield=True):
                await supervisor.terminate_child(name)
        except BaseException:
            release(supervisor)
            raise
        self.stopped.add(name)
        actor.set_state(ActorState.STOPPED)
        self.log.info("module.stopped", module=name, depth=actor.mailbox.depth())

    @_serialized
    async def start_module(self, name: str) -> None:
        """Start module ``name`` again after :meth:`stop_module`: a new incarnation
        restores its snapshot and handles what queued meanwhile.

        Raises:
            KeyError: There is no module ``name``.
            ChangeError: It is not stopped, or the system is not running or stopping.
        """
        self._live(name, "start")
        self._running(f"start module {name!r}")
        if name not in self.stopped:
            raise ChangeError(f"cannot start module {name!r}: it is not stopped")
        supervisor = self._supervisor_of(name)
        await supervisor.restart_child(name)
        self.stopped.discard(name)
        release(supervisor)
        self.log.info("module.started", module=name)

    async def start_stopped(self) -> None:
        """A graceful system stop: start every stopped module, so that it drains."""
        async with self.lock:
            await self.restart_stopped(inlets=False)

    async def restart_stopped(self, *, inlets: bool) -> None:
        """Start the stopped inlets again (``inlets``: before a graceful stop begins, so
        that they hand on what the host sent them), or the other stopped modules."""
        for name in sorted(self.stopped):
            actor = self.wiring.actors.get(name)
            if inlets != (actor is not None and isinstance(actor.module, Inlet)):
                continue
            supervisor = self._supervisor_of(name)
            self.stopped.discard(name)
            try:
                if actor is not None and not actor.terminated:
                    await supervisor.restart_child(name)
                    self.log.info("module.started", module=name, why="system stopping")
            finally:
                release(supervisor)

    def _stoppable(self, name: str, what: str) -> Actor:
        actor = self._live(name, what)
        self._running(f"{what} module {name!r}")
        self._not_restarting(name, what)
        if self.graph.supervision_of(name).child.restart is RestartType.TEMPORARY:
            raise ChangeError(
                f"cannot {what} module {name!r}: it is supervised as temporary, so a stop "
                "ends it for good; remove it instead"
            )
        return actor

    # -- replace -----------------------------------------------------------------------

    @_serialized
    async def replace(
        self,
        name: str,
        module: type[Module] | None = None,
        /,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace module ``name``'s class or config in place (a hot upgrade, as Erlang
        does it): the new version is validated while the old one runs, then the old
        one stops after its current item (its state snapshotted), and the new one
        restores that state and takes over the same mailbox, links and counters.
        Nothing queued is lost or handled twice. A stopped module stays stopped.

        Args:
            name: The module.
            module: Its new class (by default its class stays).
            config: Its new keyword arguments (by default they stay).

        Raises:
            GraphError: The new class does not fit the links (unknown port, incompatible
                types) or is another kind of module; the old one runs on.
            InitializationError: The new constructor raised; the old one runs on.
            ValidationError: The new ``validate()`` refused; the old one runs on.
            ChangeError: The new ``restore()`` refused the old one's snapshot: the old
                class and config are back, with the same state and mailbox, and run on.
            ChangeError: The module has ended, waits to be restarted after a failure,
                or is ``temporary``, or the system is not running.
        """
        actor = self._stoppable(name, "replace")
        old = actor.spec
        spec = ModuleSpec(name, module or old.factory, old.config if config is None else config)
        self._check(partial_replace(self.graph, spec, actor.kind))
        try:
            built = await self._build(spec, actor)
        except BaseException:
            respec(self.graph, old)
            raise
        if name in self.stopped:
            await self._adopt(actor, old, spec, built)
        else:
            await self._swap(actor, old, spec, built)
        self._rewire()
        self.log.info(
            "module.replaced",
            module=name,
            old=old.factory.__qualname__,
            new=spec.factory.__qualname__,
            config_changed=spec.config != old.config,
        )

    async def _swap(self, actor: Actor, old: ModuleSpec, spec: ModuleSpec, built: Module) -> None:
        """Stop the old incarnation, adopt ``built``, start again: done whole once begun,
        as an upgrade is in OTP (a caller cancelled half-way would leave it ended)."""
        supervisor = self._supervisor_of(actor.name)
        hold(supervisor)  # it must not end between the two incarnations
        with trio.CancelScope(shield=True):
            try:
                await supervisor.terminate_child(actor.name)
                try:
                    await self._adopt(actor, old, spec, built)
                finally:  # the new one, or the old one again
                    await supervisor.restart_child(actor.name)
            finally:
                release(supervisor)

    async def _adopt(self, actor: Actor, old: ModuleSpec, spec: ModuleSpec, built: Module) -> None:
        """Have ``actor`` take ``built`` (of ``spec``) over and restore it from the last
        snapshot at once; if that fails (its ``restore()`` refuses the state, the store
        cannot read it, or either has not answered ``stop_timeout`` seconds after a
        stop was asked), go back to ``old`` (a new instance, as a restart makes: it
        restores the same state as its incarnation starts) and raise ChangeError."""
        adopt(actor, spec, built)
        renew(actor)
        failure: Exception | None = None
        with self.bounds.bounded(shield=True) as step:
            try:
                _say_replayed(self.log, actor.name, await restore_early(actor))
            except Exception as error:
                failure = error
        if failure is None and not step.cancelled_caught:
            return
        respec(self.graph, old)
        why = _why_not_adopted(failure, self.bounds.seconds)
        refused = f"cannot replace module {actor.name!r} by {spec.factory.__qualname__}: {why}"
        try:
            adopt(actor, old, await self._build(old, actor))
        except Exception as error:  # the old one's constructor or validate() refuses now
            build_next(actor, old)
            raise ChangeError(
                f"{refused}; the old one could not be built again ({describe(error)}): "
                "it is started again as after a failure"
            ) from error
        finally:
            renew(actor)
        raise ChangeError(f"{refused}; the old one runs on") from failure

    # -- remove ------------------------------------------------------------------------

    @_serialized
    async def remove(self, name: str, *, drain: bool = True) -> list[Any]:
        """Remove module ``name`` and every link to or from it.

        Its snapshot is deleted from the store once it has ended (an earlier
        version's too), so a module added later under its name starts afresh: if the
        store fails to delete it, the add deletes it first (or is refused).

        Its producers stop sending to it at once (none is left waiting for room). With
        ``drain`` (default) it handles what its links hold, then ends (a source stops
        producing); without, it stops after its current item and what its links hold
        is handed back, counted on them as ``returned``. Either way it ends for good
        (``cleanup()`` runs, its end of stream flows downstream: a consumer whose last
        input it was ends too) and what it had emitted is still delivered.

        Returns:
            The items handed back (empty with ``drain``).

        Raises:
            KeyError: There is no module ``name`` (a module that ended by itself is
                still there: removing it takes its place and links away).
            TypeError: ``drain`` is not ``True`` or ``False`` (nothing changes).
            ChangeError: It has a remote link, receives the dead letters, or waits to be
                restarted after a failure, or the system is not running.
        """
        check_flag("drain", drain)
        actor = self.wiring.actor(name)
        self._running(f"remove module {name!r}")
        self._not_restarting(name, "remove")
        _refuse_removal(self.graph, name)
        supervisor = self._supervisor_of(name)
        inputs = [link for link in self.wiring.links if link.spec.target == name]
        returned: list[Any] = []
        if actor.terminated:  # it ended by itself: only its place is left
            for link in inputs:
                self._drop_link(link)
        elif drain and actor.kind is not ModuleKind.SOURCE and inputs:
            _drainable(self.graph, self.stopped, name)
            await self._drain(actor, supervisor, inputs)
        else:
            if name not in self.stopped:
                await supervisor.terminate_child(name)
            for link in inputs:
                returned.extend(link.hand_back())
                self._drop_link(link)
        if name in self.stopped:
            self.stopped.discard(name)
            release(supervisor)
        await _delete(supervisor, name)
        self.removed[name] = removed_status(self.removed.get(name), actor.status())
        self._unwire(actor)
        deleted = False
        with self.bounds.bounded(shield=True) as step:  # it is removed: a stop cuts only this
            deleted = await _delete_snapshot(self.system.store, self.graph.name, name, self.log)
        if step.cancelled_caught:
            self.log.warning("module.snapshot_kept", module=name, error="the system is stopping")
        if not deleted:
            self.tombstones.add(name)
        self.log.info("module.removed", module=name, drained=drain, returned=len(returned))
        return returned

    async def _drain(self, actor: Actor, supervisor: Supervisor, inputs: list[Link]) -> None:
        """Detach ``inputs`` and wait for ``actor`` to handle what they hold and end."""
        name = actor.name
        if name in self.stopped:
            await supervisor.restart_child(name)
            self.stopped.discard(name)
            release(supervisor)
        leaving(supervisor, name)  # its end is no auto-shutdown: it was removed
        ended = self.wiring.ended(name)
        for link in inputs:
            self._drop_link(link)
        await ended.wait()

    def _not_restarting(self, name: str, what: str) -> None:
        if restarting(self._supervisor_of(name), name):
            raise ChangeError(
                f"cannot {what} module {name!r}: it is waiting to be restarted after a "
                "failure (its restart backoff); try again once it runs"
            )

    def _drop_link(self, link: Link) -> None:
        """Take ``link`` out of the system as ``System.remove_link`` does."""
        self.wiring.disconnect(link.name)
        if link.spec in self.graph.links:
            unlink(self.graph, link.spec)
        link.close()
        link.retire()

    def _unwire(self, actor: Actor) -> None:
        """The removed actor ended for good: its links and its place go."""
        name = actor.name
        for link in [k for k in self.wiring.links if k.spec.source == name]:
            self._drop_link(link)  # closed at its end: what it holds is still delivered
        for other in self.wiring.actors.values():
            if actor in other.upstream:
                other.upstream.remove(actor)
        del self.wiring.actors[name]
        self.here.discard(name)
        if name in self.wiring.order:
            self.wiring.order.remove(name)
        unadd(self.graph, actor.spec)
        self._rewire()


async def _delete_snapshot(
    store: Store, graph: str, name: str, log: structlog.typing.FilteringBoundLogger
) -> bool:
    """A removed module's snapshot goes (after its end saved it), whether its last
    class kept state or not (an earlier version's may be stored): a module added later
    under its name starts afresh. False if the store failed to delete it."""
    try:
        await store.delete(namespace(graph), name)
    except Exception as exc:  # the module is gone all the same
        log.warning("module.snapshot_kept", module=name, error=describe(exc))
        return False
    return True


async def _bury(store: Store, graph: str, name: str, tombstones: set[str]) -> None:
    """Delete the snapshot a removed module of this name left (its delete failed)
    before a module is added under the name: it must not restore that state."""
    if name not in tombstones:
        return
    try:
        await store.delete(namespace(graph), name)
    except Exception as exc:
        raise ChangeError(
            f"cannot add module {name!r}: the snapshot of the module removed under "
            f"that name is still stored and the store failed to delete it "
            f"({describe(exc)}); try again"
        ) from exc
    tombstones.discard(name)


async def _validate(actor: Actor) -> None:
    """Ask an added module's ``validate()`` (ValidationError), as at start-up."""
    try:
        await validate(actor.name, actor.module.validate, actor.lifecycle, actor.log)
    except BaseException:
        actor.set_state(ActorState.INVALID)
        raise
    actor.set_state(ActorState.VALIDATED)


def _new_actor(self: Changes, spec: ModuleSpec, module: Module) -> Actor:
    """The actor of an added module, bound to the system, not yet linked."""
    wiring = self.wiring
    actor = wiring.add_actor(spec, module, self.stopping)
    actor.system = self.system
    actor.thread_limiter = next(
        (a.thread_limiter for a in wiring.actors.values() if a.thread_limiter), None
    ) or trio.CapacityLimiter(wiring.settings.thread_limit)
    wiring.order.append(spec.name)
    self.here.add(spec.name)
    self.observe(actor)
    return actor


def _forget(self: Changes, name: str, spec: ModuleSpec, links: Sequence[LinkSpec]) -> None:
    """Undo an add that did not start."""
    for link in links:
        if link in self.graph.links:
            unlink(self.graph, link)
        if any(running.spec is link for running in self.wiring.links):
            self.wiring.disconnect(link.name).close()
    if any(declared is spec for declared in self.graph.modules):
        unadd(self.graph, spec)
    actor = self.wiring.actors.get(name)
    if actor is not None and actor.spec is spec:
        actor.terminate(EndReason.NOT_STARTED)
        del self.wiring.actors[name]
        self.here.discard(name)
        if name in self.wiring.order:
            self.wiring.order.remove(name)


def _drainable(graph: Graph, stopped: set[str], name: str) -> None:
    """Refuse to drain ``name`` into a stopped module: it could wait for ever while the
    change holds off the start that would free it."""
    held = sorted({link.target for link in graph.links if link.source == name} & stopped)
    if held:
        raise ChangeError(
            f"cannot remove module {name!r} with drain: it sends to stopped module "
            f"{held[0]!r}, which would hold its drain for ever; start that one first, "
            "or remove with drain=False"
        )


def _refuse_removal(graph: Graph, name: str) -> None:
    """Refuse to remove module ``name`` if it has a remote link or takes the dead letters."""
    if any(spec.remote is not None and name in (spec.source, spec.target) for spec in graph.links):
        raise ChangeError(f"cannot remove module {name!r}: it has a remote link")
    target = graph.dead_letter_target
    if target is not None and target[0] == name:
        raise ChangeError(f"cannot remove module {name!r}: it receives the dead letters")


def _why_not_adopted(failure: Exception | None, seconds: float) -> str:
    """Why a replacement did not take over: its restore failed, or did not end."""
    if failure is not None:
        return _why_not_restored(failure)
    return (
        f"its restore() or the store had not answered {seconds:g} s (stop_timeout) after "
        "the system's stop was asked"
    )


def _why_not_restored(error: Exception) -> str:
    """Why a replacement could not take the old one's state over."""
    if isinstance(error, RunError):
        cause = describe(error.__cause__) if error.__cause__ is not None else str(error)
        return f"its restore() refused the state the old one left ({cause})"
    return f"the store failed to read the state the old one left ({describe(error)})"


def _say_replayed(log: structlog.typing.FilteringBoundLogger, name: str, items: int) -> None:
    """Warn that the new version of ``name`` handles ``items`` again (if any)."""
    if items:
        log.warning(
            "module.replaced_again",
            module=name,
            items=items,
            why="the old one's end snapshot was not saved (killed at its shutdown timeout, "
            "or snapshot() failed): the new one handles again what it handled since its "
            "last snapshot, as after a crash",
        )


async def _delete(supervisor: Supervisor, name: str) -> None:
    """Take the stopped (or ended) child ``name`` out of ``supervisor`` for good."""
    if name in {child.name for child in supervisor.which_children()}:
        await supervisor.delete_child(name)


def partial_add(
    graph: Graph,
    spec: ModuleSpec,
    links: Iterable[LinkRequest],
    supervise: Mapping[str, Any] | None,
    added: list[LinkSpec],
) -> Callable[[], Callable[[], None]]:
    """The change :meth:`Changes.add` makes to the graph, for :meth:`Changes._check`;
    the link specs made are appended to ``added``."""

    def change() -> Callable[[], None]:
        graph.add(spec.name, spec.factory, **spec.config)
        declared = graph.modules[-1]

        def undo() -> None:
            for link in added:
                unlink(graph, link)
            unadd(graph, declared)
            added.clear()

        try:
            if supervise is not None:
                graph.supervise(spec.name, **supervise)
            for request in links:
                source, target, options = _link_request(spec.name, request)
                added.append(graph.link(source, target, **options))
        except BaseException:
            undo()
            raise
        remote = [link for link in added if link.remote is not None]
        if remote:
            undo()
            raise GraphError(
                [
                    GraphProblem(
                        f"link {link.name}: a remote link cannot be added while the system runs",
                        module=spec.name,
                    )
                    for link in remote
                ]
            )
        return undo

    return change


def _link_request(name: str, request: Any) -> tuple[str, str, dict[str, Any]]:
    """``request``'s source, target and options (GraphError if it is none of the
    shapes :data:`LinkRequest` allows)."""
    if isinstance(request, tuple | list) and len(request) in (2, 3):
        options = request[2] if len(request) == 3 else {}
        if isinstance(options, Mapping):
            return request[0], request[1], dict(options)
    problem = (
        f"module {name!r}: link {request!r} is not (source, target) or (source, target, options)"
    )
    raise GraphError([GraphProblem(problem, module=name)])


def partial_replace(
    graph: Graph, spec: ModuleSpec, kind: ModuleKind
) -> Callable[[], Callable[[], None]]:
    """The change :meth:`Changes.replace` makes to the graph, for :meth:`Changes._check`."""

    def change() -> Callable[[], None]:
        old = respec(graph, spec)
        new_kind = getattr(spec.factory, "kind", None)
        if isinstance(new_kind, ModuleKind) and new_kind is not kind:
            respec(graph, old)
            raise GraphError(
                [
                    GraphProblem(
                        f"module {spec.name!r}: a {kind.value} cannot be replaced by a "
                        f"{new_kind.value} ({spec.factory.__qualname__}); the kind must stay",
                        module=spec.name,
                    )
                ]
            )

        def undo() -> None:
            respec(graph, old)

        return undo

    return change


# -- what System takes as its methods (``add = _changes.add`` in its body) -------------------


async def add(
    self: Modules,
    name: str,
    module: type[Module],
    /,
    *,
    config: Mapping[str, Any] | None = None,
    links: Iterable[LinkRequest] = (),
    supervise: Mapping[str, Any] | None = None,
) -> None:
    await self.changes.add(name, module, config=config, links=links, supervise=supervise)


async def remove(self: Modules, name: str, *, drain: bool = True) -> list[Any]:
    return await self.changes.remove(name, drain=drain)


async def stop_module(self: Modules, name: str) -> None:
    await self.changes.stop_module(name)


async def start_module(self: Modules, name: str) -> None:
    await self.changes.start_module(name)


async def replace(
    self: Modules,
    name: str,
    module: type[Module] | None = None,
    /,
    *,
    config: Mapping[str, Any] | None = None,
) -> None:
    await self.changes.replace(name, module, config=config)


async def add_link(self: Modules, source: str, target: str, **options: Any) -> LinkSpec:
    return await self.changes.add_link(source, target, **options)


async def remove_link(self: Modules, name: str, *, return_items: bool = False) -> list[Any]:
    return await self.changes.remove_link(name, return_items=return_items)


for _method in (add, remove, stop_module, start_module, replace, add_link, remove_link):
    _method.__doc__ = getattr(Changes, _method.__name__).__doc__
del _method
