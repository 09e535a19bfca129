"""State snapshots: a module's own state, saved to the system's store and restored into
every new incarnation, in this process or in a new one started on the same store.

A module declares its state with two hooks, ``snapshot()`` (a value actorflow's msgpack
codec stores losslessly) and ``restore(value)``. The runtime saves the snapshot when an
incarnation starts (after its restore, so that a state that cannot be stored fails at
once), every ``snapshot_interval`` seconds while it runs, and when it ends cleanly (the
end of its input, a stop, a planned restart).

After a crash a processor or sink goes back to its last snapshot and handles again
every item it handled since (its :class:`Journal` keeps them, and puts them back at the
front of their links), so its state is always that of a whole prefix of its input: with
the position reached in the snapshot, exactly once in effect. Its remote links hold the
acknowledgements of what it handled until a snapshot covers it (:class:`Hold`), so that
after its process died Redis delivers again what the last snapshot does not hold; the
marks stored with each snapshot say what of the entries not yet acknowledged it does
hold, to be left out then. Sources, progressive modules and modules on a cycle of the
graph (their outputs reach their input) keep no journal: their state is saved as the
incarnation ends, however it ends (docs/howto/state.md says what that gives).

Snapshots are keyed by graph name and module, so two graphs of different names on one
store never share one (graphs left with the default name do: a warning says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ._data import Data, decode, encode
from ._exceptions import RunError, SerializationError, describe, reraise
from ._lifecycle import is_default
from ._module import ModuleKind
from ._store import Encoded
from ._transport import Hold, RemoteInLink

if TYPE_CHECKING:
    import structlog

    from ._link import Link, Mailbox
    from ._module import Module, RunningSystem
    from ._settings import Settings
    from ._specs import LinkSpec
    from ._store import Store

__all__ = [
    "Actor",
    "Journal",
    "Snapshots",
    "journal_of",
    "namespace",
    "on_cycle",
    "run_snapshotted",
    "saved",
    "snapshots_of",
]

_ABSENT: Any = object()

KEY = "actorflow.snapshots"
_EARLIER = "actorflow.snapshots_earlier"
"""Where ``keep`` holds the count of saves of a module replaced by one without state."""
"""Where an actor keeps its :class:`Snapshots` (in ``Actor.keep``: they outlive an
incarnation)."""

NAMESPACE = "actorflow.snapshot"
"""The store namespace of every snapshot: ``actorflow.snapshot/<graph>``."""

HELD = "actorflow.snapshot.held"
"""The store namespace of what the snapshot of a module fed by remote links holds of
the entries not yet acknowledged: ``actorflow.snapshot.held/<graph>``, keyed by module."""

DEFAULT_GRAPH = "graph"
"""The name of a graph not given one: its snapshots are shared with every such graph."""

JOURNAL_BOUND = 65_536
"""The most items a journal holds before it asks for a snapshot, whatever the links hold."""

_POLL = 0.1
"""Seconds between looks for a stop while a new incarnation restores (no event tells)."""

_Handler = Callable[["Link", list[Any]], Awaitable[None]]


def namespace(graph: str) -> str:
    """The store namespace the snapshots of ``graph``'s modules are kept under (the key
    within it is the module's name)."""
    return f"{NAMESPACE}/{graph}"


class _Alone(Protocol):
    def alone(self) -> contextlib.AbstractAsyncContextManager[None]: ...


class _Run(Protocol):
    @property
    def stopping(self) -> bool: ...

    @property
    def journal(self) -> Journal | None: ...


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
    received: int
    kind: ModuleKind

    @property
    def incarnation(self) -> _Run | None: ...

    @property
    def mailbox(self) -> Mailbox: ...

    @property
    def threads(self) -> _Alone: ...

    @property
    def system(self) -> RunningSystem | None: ...

    @property
    def keep(self) -> dict[str, Any]: ...

    def system_stopping(self) -> bool: ...

    async def lifecycle(self, fn: Callable[[], Any], *, blocking: bool | None = None) -> Any: ...


@attrs.define(slots=True, eq=False)
class _Entry:
    """One batch taken from ``link``; its first ``kept`` items were (or are being)
    handled."""

    link: Link
    batch: list[Any]
    kept: int
    entries: list[bytes] | None = None
    """For a remote link, the stream entry of each item (acknowledged once a snapshot
    covers it)."""


@attrs.define(slots=True, eq=False)
class Journal:
    """What a processor or sink handled since its last snapshot (it outlives
    incarnations): after a crash, handled again from the front of its links.

    Invariants: ``entries`` hold, in the order taken, the batches taken since the last
    snapshot, each with how many of its first items are handled or being handled (what
    went back to its link or failed is not kept); ``count`` sums those; ``busy`` counts
    the batches being handled; while ``held`` (a save), no batch starts.
    """

    bound: int
    """At this many items, a snapshot is taken (memory and replay stay bounded)."""
    keeps: bool = True
    """Batches are kept, to be handled again after a crash (not on a cycle: then only
    whole batches are waited for, and the state is saved as a crashed incarnation
    ends)."""
    entries: list[_Entry] = attrs.field(factory=list)
    count: int = 0
    busy: int = 0
    held: bool = False
    broken: bool = False
    """A batch failed or was cancelled: until the next restore, nothing is saved."""
    stop: type[BaseException] = Exception
    """What the driver raises to stop between items (set by each incarnation)."""
    checkpoint: Callable[[str], Awaitable[None]] | None = None
    """Takes a snapshot (set by each incarnation that runs)."""
    remote: tuple[Link, ...] = ()
    """The remote links it journals: their batches keep each item's entry."""
    _changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)
    """Woken when a save ends or, while one waits, the last batch being handled ends."""

    def wrap(self, handle: _Handler, requeue: Callable[[Link, list[Any]], None]) -> _Handler:
        """``handle`` that journals each batch (``requeue`` puts one back that a save
        held up until a cancellation)."""

        async def journaled(link: Link, batch: list[Any]) -> None:
            if self.held:
                try:
                    while self.held:
                        await self._changed.park()
                except BaseException:
                    requeue(link, batch)
                    raise
            if self.keeps:
                ids = _entries_of(link, len(batch)) if link in self.remote else None
                self.entries.append(_Entry(link, batch, len(batch), ids))
                self.count += len(batch)
            self.busy += 1
            try:
                await handle(link, batch)
            except BaseException:
                # A failure, a cancellation: the state may be half-changed, and no
                # snapshot may be taken of it (a stop raised between items aside).
                self.broken = self.broken or not isinstance(sys.exception(), self.stop)
                raise
            finally:
                self._handled()
            if self.count >= self.bound and not self.held and self.checkpoint is not None:
                await self.checkpoint("bound")

        return journaled

    def _handled(self) -> None:
        """A batch is no longer being handled: the last one lets a waiting save go."""
        self.busy -= 1
        if self.held and not self.busy:
            self._changed.unpark_all()

    def given_back(self, link: Link, items: list[Any]) -> None:
        """``items``, the end of a batch being handled, were not handled (they went back
        to ``link``, or the first one failed): not to be handled again from here.

        Found by identity from the newest entry: identical objects are interchangeable,
        so whichever of two such entries loses them, the same items are handled again.
        """
        size = len(items)
        first, last = items[0], items[-1]
        for entry in reversed(self.entries):
            kept = entry.kept
            if (
                entry.link is link
                and kept >= size
                and entry.batch[kept - 1] is last
                and entry.batch[kept - size] is first
            ):
                entry.kept = kept - size
                self.count -= size
                return

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Within it, no batch is being handled: it waits for those being handled and
        holds new ones back."""
        while self.held:
            await self._changed.park()
        self.held = True
        try:
            while self.busy:
                await self._changed.park()
            yield
        finally:
            self.held = False
            self._changed.unpark_all()

    def clear(self) -> None:
        """A snapshot holds the effect of everything journaled."""
        self.entries.clear()
        self.count = 0

    def drop(self, covered: int) -> None:
        """The first ``covered`` entries are held by the snapshot restored."""
        del self.entries[:covered]
        self.count = sum(entry.kept for entry in self.entries)

    def replay(self, actor: Actor) -> int:
        """Put every item handled since the last snapshot back at the front of its link
        (before what the crash gave back), to be taken again in the order handled
        across links; returns how many."""
        handled: dict[Link, list[Any]] = {}
        entries: dict[Link, list[bytes]] = {}
        order = actor.mailbox.order
        order.clear()
        for entry in self.entries:
            if entry.kept:
                handled.setdefault(entry.link, []).extend(entry.batch[: entry.kept])
                if entry.entries is not None:
                    entries.setdefault(entry.link, []).extend(entry.entries[: entry.kept])
                if order and order[-1][0] is entry.link:
                    order[-1][1] += entry.kept
                else:
                    order.append([entry.link, entry.kept])
        self.clear()
        count = 0
        for link, items in handled.items():
            ids = entries.get(link)
            if isinstance(link, RemoteInLink) and ids is not None:
                link.replay(items, ids)
            else:
                link.requeue(items)
            count += len(items)
        actor.received -= count  # counted again when taken again, as requeued items are
        return count


def _entries_of(link: Any, size: int) -> list[bytes]:
    """The stream entry of each item of the batch just taken from remote ``link`` (its
    items in hand)."""
    ids = [run.entry for run in link.in_hand for _ in range(run.count)]
    return ids[-size:]


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
    journal: Journal | None = None
    encoded: bool = False
    """The store takes a payload encoded here (:class:`Encoded`): encoded once."""
    hung: int = 0
    """The incarnation whose save was given up as it stopped (the store did not
    answer)."""
    unsure: _Unsure | None = None
    """A save whose write raised or was given up: it may have been applied."""
    cyclic: bool | None = None
    """The module is on a cycle of the graph (decided once, when it first runs): it
    keeps no journal."""
    restored: tuple[Any, Any] | None = None
    """A replacement's module given the last snapshot already (:func:`restore_early`),
    and that snapshot (``_ABSENT`` if none): its incarnation does not restore it again."""
    remote: tuple[RemoteInLink, ...] = ()
    """The remote links feeding a journaled module: they hold their acknowledgements
    until a snapshot covers the entries (:class:`Hold`)."""
    marks: list[Any] | None = None
    """What the last snapshot stored holds of the remote entries not yet acknowledged
    (see :func:`_marks`)."""
    marked: bool = False
    """The first incarnation in this process has left out what its snapshot held of
    the entries Redis delivers again."""
    loaded: bytes | None = None
    """The digest of the snapshot loaded, taken before ``restore()`` could change it:
    what finds the marks stored with it."""
    wanted: trio.Event | None = None
    """Set when a remote link holds enough entries, or must end: save now."""

    def ask(self) -> None:
        """A remote link asks for a snapshot (to acknowledge what it holds)."""
        if self.wanted is None:
            self.wanted = trio.Event()
        self.wanted.set()

    async def load(self, name: str) -> Any:
        """The last snapshot of module ``name``, or ``_ABSENT``."""
        return await self.store.get(self.namespace, name, _ABSENT)

    async def save(self, actor: Actor, at: str) -> None:
        """Ask the module for its snapshot and store it. A blocking module's runs while
        none of its hooks runs in a thread (abandoned ones included).

        Raises:
            RunError: ``snapshot()`` raised, its value cannot be stored (its cause a
                :class:`SerializationError` naming the module and where in the value),
                or the store failed to write it.
        """
        name, module = actor.name, actor.module
        try:
            if module.blocking:
                async with actor.threads.alone():
                    value = await actor.lifecycle(module.snapshot)
            else:
                value = await actor.lifecycle(module.snapshot)
        except Exception as exc:
            raise _failed(actor, at, f"snapshot() raised {describe(exc)}", exc) from exc
        try:
            payload = encode(value)
        except SerializationError as error:
            reason = str(error).split(": ", 1)[-1]
            named = SerializationError(f"the snapshot of module {name!r} at {error.path}", reason)
            raise _failed(actor, at, str(named), named) from named
        covered = 0 if self.journal is None else len(self.journal.entries)
        self.unsure = _Unsure(payload, covered)  # until the store says it is written
        releasing = [link.covering() for link in self.remote]
        try:
            if self.remote:  # first: a crash between the two leaves it unmatched
                marks = [
                    _stable_digest(value),
                    [[link.spec.name, link.covered()] for link in self.remote],
                ]
                await self.store.put(_held(self.namespace), name, [marks, self.marks])
            await self.store.put(self.namespace, name, Encoded(payload) if self.encoded else value)
        except Exception as exc:
            raise _failed(actor, at, f"the store failed: {describe(exc)}", exc) from exc
        self.unsure = None
        if covered:
            # At once, with no checkpoint between: a cancellation delivered after the
            # write (the incarnation failing meanwhile) must not leave the entries it
            # holds in the journal, to be handled again on top of it.
            assert self.journal is not None
            self.journal.drop(covered)
        if self.remote:
            self.marks = marks
            for link, entries in zip(self.remote, releasing, strict=True):
                link.release(entries)
        self.saved += 1
        if actor.debug:
            actor.log.debug("actor.snapshot_saved", at=at, snapshots=self.saved)

    async def checkpoint(self, actor: Actor, at: str) -> None:
        """Save while no batch is being handled: the snapshot holds every journaled
        item, which need not be handled again. A store that does not answer holds up
        a stop ``stop_timeout`` seconds at most: the save is given up then (logged and
        counted), and the journal kept."""
        if self.hung == actor.incarnations:  # the rest of its stop is not held up again
            return
        journal = self.journal
        if journal is None:
            await self._bounded(actor, at)
            return
        async with journal.quiet():
            if journal.broken:  # the incarnation is ending in a crash
                return
            if await self._bounded(actor, at):
                journal.clear()

    async def _bounded(self, actor: Actor, at: str) -> bool:
        """:meth:`save`, given up ``stop_timeout`` seconds after a stop began: False
        then (and no later save of the incarnation is tried but its end save)."""
        if await _within_stop(actor, partial(self.save, actor, at)):
            return True
        self.hung = actor.incarnations
        _given_up(actor, at, "not stored")
        return False


@attrs.frozen
class _Unsure:
    """A snapshot whose write raised (a reply lost) or was given up: the store may hold
    it or the one before. It holds the effect of the first ``covered`` journal entries."""

    payload: bytes
    covered: int

    def stored(self, value: Any) -> bool:
        """Whether ``value``, loaded from the store, is this snapshot (if it equals
        the one before too, either holds the same state)."""
        return bool(decode(self.payload) == value)


def _stable_digest(value: Any) -> bytes:
    """What tells one stored snapshot from another, the same in every process: the hash
    of its encoding with each set's members in a fixed order (a set is encoded in its
    iteration order, which string hashing makes differ from process to process)."""
    return hashlib.blake2b(encode(_canonical(value)), digest_size=16).digest()


def _canonical(value: Any) -> Any:
    """``value`` with every set (at any depth in lists, tuples, dicts, their keys too,
    and ``Data``) replaced by its members' encodings, sorted."""
    if isinstance(value, set | frozenset):
        return {"\x00set": sorted(encode(_canonical(member)) for member in value)}
    if isinstance(value, dict):
        return {"\x00dict": [[_canonical(k), _canonical(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return type(value)(_canonical(member) for member in value)
    if isinstance(value, Data):
        parts = (value.fields, value.tags, value.timestamp, value.id, value.origin)
        return {"\x00data": _canonical(parts)}
    return value


def _held(namespace: str) -> str:
    """The namespace of the remote marks beside the snapshot namespace ``namespace``."""
    return HELD + namespace[len(NAMESPACE) :]


async def _skip_covered(actor: Actor, snapshots: Snapshots, value: Any) -> None:
    """A new process restored ``value``: of the entries Redis delivers again, leave out
    what it holds (the marks stored with it, matched by its encoding's hash: a crash
    between the marks and the snapshot leaves the newer marks unmatched, and the older
    ones, kept beside them, apply)."""
    if value is _ABSENT:
        return
    digest, snapshots.loaded = snapshots.loaded, None
    if digest is None:
        return
    stored = await snapshots.store.get(_held(snapshots.namespace), actor.name, None)
    if not stored:
        return
    for marks in stored:
        if marks is not None and marks[0] == digest:
            by_link = dict(marks[1])
            for link in snapshots.remote:
                pairs = by_link.get(link.spec.name)
                if pairs:
                    link.skip_covered(dict(pairs))
            snapshots.marks = marks
            actor.log.info(
                "actor.snapshot_entries_covered", entries=sum(map(len, by_link.values()))
            )
            return


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
    graph = getattr(getattr(system, "graph", None), "name", DEFAULT_GRAPH)
    if graph == DEFAULT_GRAPH:
        actor.log.warning(
            "actor.snapshot_shared",
            graph=graph,
            error="the graph has the default name: every graph so named on this store "
            "shares this module's snapshot; give it a name of its own",
        )
    own = actor.module.snapshot_interval
    interval = actor.settings.snapshot_interval if own is None else own
    encoded = bool(getattr(store, "takes_encoded", False))
    found = actor.keep[KEY] = Snapshots(store, namespace(graph), interval, encoded=encoded)
    return found


def journal_of(actor: Actor) -> Journal | None:
    """The journal of the incarnation about to run: a processor's or sink's whose module
    overrides ``snapshot()`` (its remote links then hold their acknowledgements);
    ``None`` for every other (they pay nothing for it).

    A module on a cycle of the graph (decided when it first runs) would get its own
    outputs again from the replay *and* from handling again the items that made them:
    its journal keeps no items (saves still wait for whole batches), and it saves as
    each incarnation ends instead.
    """
    if actor.kind not in (ModuleKind.PROCESSOR, ModuleKind.SINK):
        return None
    snapshots = snapshots_of(actor)
    if snapshots is None:
        return None
    if snapshots.cyclic is None:
        links = getattr(getattr(actor.system, "graph", None), "links", ())
        snapshots.cyclic = on_cycle(actor.name, links)
    if snapshots.journal is None:
        held = sum(link.capacity for link in actor.mailbox.links)
        bound = min(max(actor.settings.max_batch, held), JOURNAL_BOUND)
        keeps = not snapshots.cyclic
        remote = tuple(actor.mailbox.remote) if keeps else ()
        snapshots.journal = Journal(bound, keeps=keeps, remote=remote)
        _hold(snapshots, remote)
    return snapshots.journal


def _hold(snapshots: Snapshots, remote: tuple[RemoteInLink, ...]) -> None:
    """The remote links of a journaled module hold their acknowledgements until a
    snapshot covers the entries (an acknowledged entry is never delivered again)."""
    snapshots.remote = remote
    for link in remote:
        if link.hold is None:
            link.hold = Hold(limit=link.hold_after)
        link.hold.ask = snapshots.ask


def on_cycle(name: str, links: Iterable[LinkSpec]) -> bool:
    """Whether module ``name``'s outputs reach its own input, through any links."""
    return name in reached(name, links)


def reached(name: str, links: Iterable[LinkSpec]) -> set[str]:
    """The modules module ``name``'s outputs reach, through any links (``name`` too if
    it is on a cycle)."""
    following: dict[str, set[str]] = {}
    for link in links:
        following.setdefault(link.source, set()).add(link.target)
    seen: set[str] = set()
    pending = list(following.get(name, ()))
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(following.get(current, ()))
    return seen


def saved(keep: dict[str, Any] | None) -> int:
    """How many snapshots an actor (whose ``keep`` this is) saved."""
    if keep is None:
        return 0
    found: Snapshots | None = keep.get(KEY)
    earlier: int = keep.get(_EARLIER, 0)
    return earlier if found is None else found.saved


def renew(actor: Actor) -> None:
    """``actor`` adopted a replacement's module: its snapshot settings are decided
    afresh from it (whether it keeps state at all, its own ``snapshot_interval``);
    the count of saves goes on, and so do the journal and a save whose write may have
    been applied (``unsure``), if both keep state: the new module's restore settles
    them as a restart's would."""
    old: Snapshots | None = actor.keep.pop(KEY, None)
    count = saved(actor.keep) if old is None else old.saved
    new = snapshots_of(actor)
    if new is None:
        actor.keep[_EARLIER] = count
        if old is not None:
            _unhold(old.remote)
        return
    new.saved = count
    if old is not None:
        new.journal, new.unsure = old.journal, old.unsure
        new.marks, new.marked = old.marks, old.marked
        _hold(new, old.remote)


def _unhold(remote: tuple[RemoteInLink, ...]) -> None:
    """A module without state took over: what its remote links held is acknowledged
    (no snapshot will cover it), and they hold nothing more."""
    for link in remote:
        if link.hold is not None:
            entries = link.covering()
            link.release(entries)
            link.hold = None


async def restore_early(actor: Actor) -> int:
    """Give the replacement's module ``actor`` adopted (not yet run) the last snapshot
    now, while the replacement can still be undone; its incarnation then does not
    restore it again. Returns how many items it will handle again (the old one's end
    snapshot was not stored: the journal holds what it handled since its last one).

    Raises:
        RunError: ``restore()`` raised.
        Exception: The store failed to read the snapshot.
    """
    snapshots = snapshots_of(actor)
    if snapshots is None:
        return 0
    snapshots.restored = None
    value = await _restore(actor, snapshots)
    snapshots.restored = (actor.module, value)
    _settle(snapshots, value)
    journal = snapshots.journal
    return 0 if journal is None else journal.count


async def _restore(actor: Actor, snapshots: Snapshots) -> Any:
    """Give the new incarnation's module the last snapshot, if there is one; returns it
    (``_ABSENT`` if none).

    Raises:
        RunError: ``restore()`` raised: the module's failure, supervised like a crash.
    """
    early, snapshots.restored = snapshots.restored, None
    if early is not None and early[0] is actor.module:  # by restore_early
        return early[1]
    unsure, journal = snapshots.unsure, snapshots.journal
    if unsure is not None and (journal is None or not journal.keeps):
        value = decode(unsure.payload)  # the newest state: nothing else holds it
    else:
        value = await snapshots.load(actor.name)
    if value is _ABSENT:
        return value
    if snapshots.remote and not snapshots.marked:
        try:
            snapshots.loaded = _stable_digest(value)
        except SerializationError:
            snapshots.loaded = None
    try:
        await actor.lifecycle(partial(actor.module.restore, value))
    except Exception as exc:
        error = RunError(actor.name, f"restore() raised {describe(exc)}")
        raise error from exc
    actor.log.info("actor.snapshot_restored", incarnation=actor.incarnations)
    return value


def _stopping(actor: Actor) -> bool:
    run = actor.incarnation
    return (run is not None and run.stopping) or actor.system_stopping()


async def _bound_by_stop(actor: Actor, scope: trio.CancelScope) -> None:
    """Once a stop has begun, give ``scope`` at most ``stop_timeout`` more seconds."""
    while not _stopping(actor):  # noqa: ASYNC110 (no event says a stop began)
        await trio.sleep(_POLL)
    scope.deadline = min(scope.deadline, trio.current_time() + actor.settings.stop_timeout)


async def _begin(actor: Actor, snapshots: Snapshots) -> None:
    """Restore the last snapshot, put back what was handled since, save at once."""
    value = await _restore(actor, snapshots)
    if snapshots.remote and not snapshots.marked:
        snapshots.marked = True
        await _skip_covered(actor, snapshots, value)
    _settle(snapshots, value)
    journal = snapshots.journal
    if journal is not None:
        journal.broken = False
        if journal.entries:
            count = journal.replay(actor)
            actor.log.info("actor.snapshot_replay", items=count, incarnation=actor.incarnations)
    await snapshots.save(actor, "start")


def _settle(snapshots: Snapshots, value: Any) -> None:
    """A save whose write may have been applied is settled by ``value``, the snapshot
    restored: if it is that save's, the journal entries it holds are not handled
    again."""
    unsure, snapshots.unsure = snapshots.unsure, None
    journal = snapshots.journal
    if unsure is None or journal is None or value is _ABSENT:
        return
    if unsure.stored(value):
        journal.drop(unsure.covered)  # its write was applied after all


async def _within_stop(actor: Actor, fn: Callable[[], Awaitable[None]]) -> bool:
    """Run ``fn``, given up ``stop_timeout`` seconds after a stop began (a store that
    does not answer, a restore that blocks): False then."""
    with trio.CancelScope() as scope:
        try:
            async with trio.open_nursery() as watch:
                watch.start_soon(_bound_by_stop, actor, scope)
                await fn()
                watch.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            reraise(_one(group))
    return not scope.cancelled_caught


def _given_up(actor: Actor, at: str, what: str) -> None:
    """A save or restore given up as a stop went on: counted and said, not silent."""
    actor.errors += 1
    actor.log.warning(
        "actor.snapshot_failed",
        at=at,
        error=f"{what} {actor.settings.stop_timeout:g} s after the stop began",
    )


async def _leased(actor: Actor, snapshots: Snapshots) -> bool:
    """Wait until every remote link feeding ``actor`` may be read (a standby: until it
    takes the lease over); False if a stop came first."""
    for link in snapshots.remote:
        while not link.leased.is_set():
            if _stopping(actor):
                return False
            with trio.move_on_after(_POLL):
                await link.leased.wait()
    return True


async def _started(actor: Actor, snapshots: Snapshots) -> bool:
    """:func:`_begin`, once its remote links may be read, given up ``stop_timeout``
    seconds after a stop began: False then, and the incarnation ends without handling
    anything (nor saving: a standby's state must not overwrite the holder's)."""
    if not await _leased(actor, snapshots):
        actor.log.info("actor.standby_stopped", reason="stopped before taking the lease over")
        return False
    if not await _within_stop(actor, partial(_begin, actor, snapshots)):
        _given_up(actor, at="start", what="restore not done")
        return False
    snapshots.live = actor.incarnations
    return True


async def _every(snapshots: Snapshots, actor: Actor) -> None:
    """Save every ``interval`` seconds while the incarnation runs, and when a remote
    link asks (it holds enough entries, or must end)."""
    while True:
        wanted = snapshots.wanted
        if wanted is None:
            wanted = snapshots.wanted = trio.Event()
        with trio.move_on_after(snapshots.interval):
            await wanted.wait()
        snapshots.wanted = None  # an ask while this save runs asks for the next
        await snapshots.checkpoint(actor, "held" if wanted.is_set() else "interval")


async def run_snapshotted(
    actor: Actor, run: Callable[[], Awaitable[None]], stop: type[BaseException]
) -> None:
    """Run an incarnation's driver, restored from the last snapshot and saved at the
    interval; a module without state just runs.

    The end save comes after a clean end (the driver returned or raised ``stop``); a
    journaled module's crash or kill keeps the last snapshot and the journal instead.
    """
    snapshots = snapshots_of(actor)
    if snapshots is None:
        await run()
        return
    if not await _started(actor, snapshots):
        return
    run_ = actor.incarnation
    journal = None if run_ is None else run_.journal
    if journal is not None:
        journal.checkpoint, journal.stop = partial(snapshots.checkpoint, actor), stop
    clean = False
    try:
        if math.isinf(snapshots.interval) and not snapshots.remote:
            await run()
        else:
            await _run_saving(actor, snapshots, run)
        clean = True
    except stop:
        clean = True
        raise
    finally:
        if journal is not None:
            journal.checkpoint = None
        if clean or journal is None or not journal.keeps:
            with trio.CancelScope(shield=True):
                await _save_at_end(actor, snapshots)


async def _run_saving(
    actor: Actor, snapshots: Snapshots, run: Callable[[], Awaitable[None]]
) -> None:
    """Run the driver beside a task that saves every interval; either one's error ends
    both and is what comes out."""
    try:
        async with trio.open_nursery() as saver:
            saver.start_soon(_every, snapshots, actor)
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
    """Save the state of an incarnation that ended; a failure then is logged and
    counted (the error that ended the run, if any, stands), and the last snapshot saved
    stays the one restored (with the journal, if any, still to be handled again)."""
    if snapshots.live != actor.incarnations:
        return
    limit = actor.settings.cleanup_timeout
    with trio.move_on_after(limit) as scope:
        try:
            await snapshots.save(actor, "end")
        except RunError:
            actor.errors += 1
        else:
            if snapshots.journal is not None:
                snapshots.journal.clear()
    if scope.cancelled_caught:  # a store that is down or slow: said, not silent
        actor.errors += 1
        actor.log.warning(
            "actor.snapshot_failed", at="end", error=f"not stored within {limit:g} s"
        )
