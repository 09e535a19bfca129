"""Actor states and the read-only status snapshots of a running system."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "ActorState",
    "ActorStatus",
    "DropReason",
    "EndReason",
    "LinkStatus",
    "SystemState",
    "SystemStatus",
    "Vocabulary",
    "removed_status",
]


class Vocabulary(enum.StrEnum):
    """A word of actorflow's vocabulary (a reason, a state) as a type.

    Each member compares equal to, hashes like, and prints and reprs as the string that
    logs, status snapshots and docs have always shown, so nothing a user reads changes.
    """

    def __repr__(self) -> str:
        return str.__repr__(self.value)


class EndReason(Vocabulary):
    """Why an actor's incarnation (or the actor, for good) ended.

    A ``StrEnum``: each compares equal to the string that logs, status snapshots and
    docs have always shown.
    """

    NORMAL = "normal"
    """Its input (or its source) reached the end of stream."""
    STOPPED = "stopped"
    """It was asked to stop and did."""
    FAILED = "failed"
    """Its module raised."""
    KILLED = "killed"
    """Its supervisor cancelled it (a stop that took too long)."""
    CANCELLED = "cancelled"
    """The whole system was cancelled."""
    SHUTDOWN = "shutdown"
    """The system ended while the actor was still running."""
    NOT_STARTED = "not_started"
    """The system ended before the actor ever ran."""
    DELETED = "deleted"
    """Its supervisor deleted it (``Supervisor.delete_child``)."""


class DropReason(Vocabulary):
    """Why items were counted as dropped (the keys of ``dropped`` counters)."""

    UNCONNECTED = "unconnected"
    """Emitted on an output port that has no link."""
    SHUTDOWN = "shutdown"
    """Still buffered or owed when the system ended."""
    CONSUMER_TERMINATED = "consumer_terminated"
    """Waiting in a link when its consumer ended for good."""
    RECEIVER_CLOSED = "receiver_closed"
    """Offered to a link whose consumer is gone."""
    COPY_FAILED = "copy_failed"
    """The link's copy policy could not copy the item."""
    OVERFLOW = "overflow"
    """A lossy link was full (``drop_newest`` / ``drop_oldest``)."""
    REPLACED = "replaced"
    """A ``latest_only`` link replaced it with a newer item."""
    NO_READER = "no_reader"
    """An outlet whose every reader has closed."""
    UNREAD = "unread"
    """An outlet whose host can read no more."""
    UNDECODABLE = "undecodable"
    """A remote entry that could not be decoded."""
    WRONG_TYPE = "wrong_type"
    """A remote item of a type its input port does not accept."""
    UNDELIVERABLE = "undeliverable"
    """A remote entry delivered ``max_deliveries`` times without being acknowledged."""
    UNMATCHED = "unmatched"
    """Waiting for a partner in ``read_synced`` that an ended input can never send."""
    LINK_REMOVED = "link_removed"
    """Meant for a link that ``remove_link`` took away while its producer was blocked on
    it, or owed it items (the producer's other links still got them)."""


class ActorState(enum.Enum):
    """Where an actor is in its life.

    ``created -> validated -> ready <-> running <-> blocked -> zombie -> terminated``;
    an actor whose module failed ends ``invalid`` instead of ``terminated``.
    """

    CREATED = "created"
    """Its module was constructed."""
    VALIDATED = "validated"
    """Its module's ``validate()`` accepted the configuration."""
    READY = "ready"
    """Started and runnable (listening, or yielding after spending its quantum)."""
    RUNNING = "running"
    """Handling items."""
    BLOCKED = "blocked"
    """Waiting for input or for room downstream (``blocked_on`` in its status says which)."""
    SUSPENDED = "suspended"
    """A progressive module paused by :meth:`System.suspend`, until resumed."""
    STOPPED = "stopped"
    """Stopped by :meth:`System.stop_module` until :meth:`System.start_module`; its
    links keep what is sent to it."""
    ZOMBIE = "zombie"
    """Finished; its outputs are being closed and its module cleaned up."""
    TERMINATED = "terminated"
    """Gone for good; its end of stream has been passed downstream."""
    INVALID = "invalid"
    """Its module raised; the system is stopping because of it."""

    @property
    def is_final(self) -> bool:
        return self in (ActorState.TERMINATED, ActorState.INVALID)


class SystemState(enum.Enum):
    """Where a system is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@attrs.frozen
class LinkStatus:
    """Counters of one link at the time of the snapshot.

    Every item offered to a link is counted once: accepted into the buffer (``sent``) or
    refused with a reason (``dropped``). Every accepted item is later ``delivered`` to the
    consumer, or still waiting (``depth``), or counted in ``dropped["shutdown"]`` when the
    system ended before the consumer took it.

    The counts are those of every link that had the name: a link removed and added again
    adds to its predecessors' counts, so no removed link's drops leave the status
    (``capacity`` and ``closed`` are the newest link's).
    """

    name: str
    capacity: int
    depth: int
    sent: int
    delivered: int
    dropped: Mapping[str, int]
    closed: bool
    returned: int = 0
    """Items handed back to the caller when the link was removed."""
    target: str | None = None
    """The module the link delivers to."""


@attrs.frozen
class ActorStatus:
    """One actor at the time of the snapshot.

    Attributes:
        name: The module's name in the graph.
        kind: ``"source"``, ``"processor"``, ``"sink"`` or ``"progressive"``.
        state: Its current :class:`ActorState`.
        blocked_on: While ``BLOCKED``: ``"input"`` or ``"output:<port>"``; else ``None``.
        received: Items taken from its mailbox.
        emitted: Items it sent on its output ports (before fan-out).
        filtered: Items its ``process()`` dropped on purpose by returning ``None``.
        dropped: Items lost by this actor, by reason (``"unconnected"``: emitted on a port
            with no link; ``"failed"``/``"cancelled"``: in hand when it failed or was
            cancelled).
        mailbox_depth: Items waiting in its incoming links.
        errors: Exceptions its hooks raised.
        reason: Why its last incarnation ended, once it has.
        restarts: How many times its module was rebuilt and restarted.
        dead_lettered: Items given up on after ``attempts`` failures.
    """

    name: str
    kind: str
    state: ActorState
    blocked_on: str | None
    received: int
    emitted: int
    filtered: int
    dropped: Mapping[str, int]
    mailbox_depth: int
    errors: int
    reason: str | None
    restarts: int = 0
    dead_lettered: int = 0
    progress: tuple[float, float | None] | None = None
    """What the module reported with ``set_progress``: (done, total), total ``None`` if
    unknown."""
    step_size: int | None = None
    """A progressive module's current step size."""
    task: str | None = None
    """What it is doing (its module's class name, or what the module set with
    :meth:`Module.set_info`)."""
    info: Mapping[str, Any] = attrs.field(factory=dict)
    """Free-form fields the module reported with :meth:`Module.set_info`."""
    fused_into: str | None = None
    """The actor whose task runs this one's items by call under stage fusion (the head
    of its fused chain), or ``None`` while it runs in its own task only."""
    snapshots: int = 0
    """State snapshots saved (a module that overrides ``snapshot()``; see
    :meth:`Module.snapshot`)."""


@attrs.frozen
class SystemStatus:
    """A consistent snapshot of a whole system, cheap enough to take at any time."""

    graph: str
    state: SystemState
    actors: Mapping[str, ActorStatus]
    links: Mapping[str, LinkStatus]
    removed: Mapping[str, ActorStatus] = attrs.field(factory=dict)
    """The modules removed while the system ran (``System.remove``), by name, as they
    ended; the counts of several removed under one name are added up. Kept so that no
    removed module's drops or errors leave the totals: :attr:`dropped` and
    :meth:`dropped_at` count them, and :meth:`counted` adds them to a module added
    again under the name."""

    def counted(self, name: str, field: str) -> int:
        """Module ``name``'s count ``field`` (``"received"``, ``"errors"``, ...) over
        every module that had the name: the one running now and those removed, so that
        it never goes down."""
        return sum(
            getattr(actor, field)
            for actor in (self.actors.get(name), self.removed.get(name))
            if actor is not None
        )

    def dropped_at(self) -> dict[str, dict[str, int]]:
        """Every item lost, by the actor it was lost at and the reason: an actor's own
        drops and those of the links into it (a link's consumer is where its items were
        headed), so the per-actor counts add up to :attr:`dropped`. Links whose consumer
        runs in another process are counted under their own name."""
        found: dict[str, dict[str, int]] = {}
        for actors in (self.removed, self.actors):
            for name, actor in actors.items():
                into = found.setdefault(name, {})
                for reason, count in actor.dropped.items():
                    into[str(reason)] = into.get(str(reason), 0) + count
        for name, link in self.links.items():
            at = link.target if link.target is not None and link.target in self.actors else name
            into = found.setdefault(at, {})
            for reason, count in link.dropped.items():
                into[str(reason)] = into.get(str(reason), 0) + count
        return found

    @property
    def dropped(self) -> int:
        """Every item lost anywhere, whatever the reason (removed modules included)."""
        actors = [*self.actors.values(), *self.removed.values()]
        return sum(sum(a.dropped.values()) for a in actors) + sum(
            sum(link.dropped.values()) for link in self.links.values()
        )


_SUMMED = ("received", "emitted", "filtered", "errors", "restarts", "dead_lettered", "snapshots")


def removed_status(before: ActorStatus | None, ended: ActorStatus) -> ActorStatus:
    """What :attr:`SystemStatus.removed` keeps of a module removed as ``ended`` says,
    added to ``before`` (an earlier module removed under its name, if any)."""
    if before is None:
        return attrs.evolve(ended, mailbox_depth=0)
    dropped = dict(before.dropped)
    for reason, count in ended.dropped.items():
        dropped[reason] = dropped.get(reason, 0) + count
    sums = {field: getattr(before, field) + getattr(ended, field) for field in _SUMMED}
    return attrs.evolve(ended, mailbox_depth=0, dropped=dropped, **sums)
