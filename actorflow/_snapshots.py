"""State snapshots: a module's own state, saved to the system's store and restored into
every new incarnation, in this process or in a new one started on the same store.

A module declares its state with two hooks, ``snapshot()`` (a value actorflow's msgpack
codec stores losslessly) and ``restore(value)``. The runtime saves the snapshot when an
incarnation starts (after its restore, so that a state that cannot be stored fails at
once), every ``snapshot_interval`` seconds while it runs, and when it ends, however it
ends (a clean stop, the end of its input, a planned restart, a crash). Snapshots are
keyed by graph name and module, so two graphs of different names on one store never
share one (graphs left with the default name do).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ._data import encode
from ._exceptions import RunError, SerializationError, describe, reraise
from ._lifecycle import is_default

if TYPE_CHECKING:
    import structlog

    from ._module import Module, RunningSystem
    from ._settings import Settings
    from ._store import Store

__all__ = [
    "Actor",
    "Snapshots",
    "namespace",
    "run_snapshotted",
    "saved",
    "snapshots_of",
]

_ABSENT: Any = object()

KEY = "actorflow.snapshots"
"""Where an actor keeps its :class:`Snapshots` (in ``Actor.keep``: they outlive an
incarnation)."""

NAMESPACE = "actorflow.snapshot"
"""The store namespace of every snapshot: ``actorflow.snapshot/<graph>``."""


def namespace(graph: str) -> str:
    """The store namespace the snapshots of ``graph``'s modules are kept under (the key
    within it is the module's name)."""
    return f"{NAMESPACE}/{graph}"


class Actor(Protocol):
    """What snapshots ask of the actor whose module they save (it satisfies this
    structurally: the engine room imports this module, never the other way)."""

    name: str
    module: Module
    settings: Settings
    log: structlog.typing.FilteringBoundLogger
    debug: bool
    incarnations: int
    errors: int

    @property
    def system(self) -> RunningSystem | None: ...

    @property
    def keep(self) -> dict[str, Any]: ...

    async def lifecycle(self, fn: Callable[[], Any], *, blocking: bool | None = None) -> Any: ...


@attrs.define(slots=True, eq=False)
class Snapshots:
    """Where one actor's snapshots go, and how many were saved (outlives incarnations).

    Invariant: ``saved`` only grows.
    """

    store: Store
    namespace: str
    interval: float
    """Seconds between saves while an incarnation runs (``math.inf``: never)."""
    saved: int = 0
    live: int = 0
    """The incarnation whose module was restored (or found no snapshot) and saved its
    first snapshot: only its state may replace the stored one when it ends (a module
    whose restore() raised holds no state worth keeping)."""

    async def load(self, name: str) -> Any:
        """The last snapshot of module ``name``, or ``_ABSENT``."""
        return await self.store.get(self.namespace, name, _ABSENT)

    async def save(self, actor: Actor, at: str) -> None:
        """Ask the module for its snapshot and store it.

        Raises:
            RunError: ``snapshot()`` raised, its value cannot be stored (its cause a
                :class:`SerializationError` naming the module and where in the value),
                or the store failed to write it.
        """
        name = actor.name
        try:
            value = await actor.lifecycle(actor.module.snapshot)
        except Exception as exc:
            raise _failed(actor, at, f"snapshot() raised {describe(exc)}", exc) from exc
        try:
            encode(value)
        except SerializationError as error:
            reason = str(error).split(": ", 1)[-1]
            named = SerializationError(f"the snapshot of module {name!r} at {error.path}", reason)
            raise _failed(actor, at, str(named), named) from named
        try:
            await self.store.put(self.namespace, name, value)
        except Exception as exc:
            raise _failed(actor, at, f"the store failed: {describe(exc)}", exc) from exc
        self.saved += 1
        if actor.debug:
            actor.log.debug("actor.snapshot_saved", at=at, snapshots=self.saved)


def _failed(actor: Actor, at: str, message: str, cause: Exception) -> RunError:
    """The module's failure to give a snapshot that can be stored, logged once here."""
    actor.log.warning("actor.snapshot_failed", at=at, error=message)
    error = RunError(actor.name, message)
    error.__cause__ = cause
    return error


def snapshots_of(actor: Actor) -> Snapshots | None:
    """Where ``actor``'s snapshots go: ``None`` unless its module overrides
    ``snapshot()`` and it runs in a system (with a store and a graph name)."""
    found: Snapshots | None = actor.keep.get(KEY)
    if found is not None or is_default(actor.module.snapshot):
        return found
    system = actor.system
    store: Store | None = getattr(system, "store", None)
    if store is None:
        return None
    graph = getattr(getattr(system, "graph", None), "name", "graph")
    own = actor.module.snapshot_interval
    interval = actor.settings.snapshot_interval if own is None else own
    found = actor.keep[KEY] = Snapshots(store, namespace(graph), interval)
    return found


def saved(keep: dict[str, Any] | None) -> int:
    """How many snapshots an actor (whose ``keep`` this is) saved."""
    found: Snapshots | None = None if keep is None else keep.get(KEY)
    return 0 if found is None else found.saved


async def _restore(actor: Actor, snapshots: Snapshots) -> None:
    """Give the new incarnation's module the last snapshot, if there is one.

    Raises:
        RunError: ``restore()`` raised: the module's failure, supervised like a crash.
    """
    value = await snapshots.load(actor.name)
    if value is _ABSENT:
        return
    try:
        await actor.lifecycle(partial(actor.module.restore, value))
    except Exception as exc:
        error = RunError(actor.name, f"restore() raised {describe(exc)}")
        raise error from exc
    actor.log.info("actor.snapshot_restored", incarnation=actor.incarnations)


async def _every(actor: Actor, snapshots: Snapshots) -> None:
    """Save every ``interval`` seconds while the incarnation runs."""
    while True:
        await trio.sleep(snapshots.interval)
        await snapshots.save(actor, "interval")


async def run_snapshotted(actor: Actor, run: Callable[[], Awaitable[None]]) -> None:
    """Run an incarnation's driver, restored from the last snapshot and saved at the
    interval; a module without state just runs."""
    snapshots = snapshots_of(actor)
    if snapshots is None:
        await run()
        return
    await _restore(actor, snapshots)
    await snapshots.save(actor, "start")
    snapshots.live = actor.incarnations
    try:
        if math.isinf(snapshots.interval):
            await run()
        else:
            await _run_saving(actor, snapshots, run)
    finally:
        with trio.CancelScope(shield=True):
            await _save_at_end(actor, snapshots)


async def _run_saving(
    actor: Actor, snapshots: Snapshots, run: Callable[[], Awaitable[None]]
) -> None:
    """Run the driver beside a task that saves every interval; either one's error ends
    both and is what comes out."""
    try:
        async with trio.open_nursery() as saver:
            saver.start_soon(_every, actor, snapshots)
            await run()
            saver.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        reraise(_one(group))


def _one(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What the driver and the saver raised, as one error: the first that is not a
    cancellation (a module failure, a stop), else the cancellation itself."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    real = [exc for exc in leaves if not isinstance(exc, trio.Cancelled)]
    return (real or leaves)[0]


async def _save_at_end(actor: Actor, snapshots: Snapshots) -> None:
    """Save the state of an incarnation that ended, however it ended; a failure then is
    logged and counted (the error that ended the run, if any, stands), and the last
    snapshot saved stays the one restored."""
    if snapshots.live != actor.incarnations:
        return
    limit = actor.settings.cleanup_timeout
    with trio.move_on_after(limit) as scope:
        try:
            await snapshots.save(actor, "end")
        except RunError:
            actor.errors += 1
    if scope.cancelled_caught:  # a store that is down or slow: said, not silent
        actor.errors += 1
        actor.log.warning(
            "actor.snapshot_failed", at="end", error=f"not stored within {limit:g} s"
        )
