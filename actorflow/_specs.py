"""Declarations: what a graph says about its modules, links and supervision, as plain data.

Everything here is frozen and checked when it is built, so a bad option fails where it is
written. This module imports nothing from the runtime (only the leaf helpers
:mod:`actorflow._checks` and :mod:`actorflow._ports`): the graph, the validation rules, the
actors and the supervisors all read these declarations, and none of them is needed to
write one.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from typing import Any

import attrs

from ._checks import (
    MAX_BATCH,
    MAX_BUFFER,
    MAX_COUNT,
    MAX_WORKERS,
    check_seconds,
    clip,
    coerce_enum,
    did_you_mean,
    flag,
    fraction,
    name_or_none,
    redis_url,
    seconds,
    short,
    whole,
)
from ._ports import Port, normalize_ports
from ._urls import url_repr

__all__ = [
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "CopyPolicy",
    "GroupSpec",
    "LinkSpec",
    "ModuleSpec",
    "Overflow",
    "Remote",
    "RestartType",
    "Strategy",
    "Supervision",
    "SupervisorSpec",
    "to_remote",
]


# -- links -------------------------------------------------------------------------------


class CopyPolicy(enum.Enum):
    """How items are copied on their way into a link.

    ``DEEP`` is the safe default: a consumer may mutate what it receives. The original is
    handed over without copying when the link is its producer port's only consumer, since
    nobody else can observe the mutation.
    """

    DEEP = "deep"
    """``copy.deepcopy`` for each link when a port fans out; the original otherwise."""
    MSGPACK = "msgpack"
    """Round-trip every item through msgpack, which also proves it could cross a process."""
    NONE = "none"
    """Share the same object with every consumer; for immutable data."""


class Overflow(enum.Enum):
    """What a link does with items offered while its buffer is full."""

    BLOCK = "block"
    """The producer waits until there is room (backpressure). The default."""
    DROP_NEWEST = "drop_newest"
    """The items that do not fit are dropped; the producer never waits."""
    DROP_OLDEST = "drop_oldest"
    """The oldest buffered items make room; the producer never waits."""


@attrs.frozen
class Remote:
    """How a link crosses processes: over a Redis stream, with a consumer group.

    Pass it (or just a URL, or ``True`` for the system's ``remote_url``) as the
    ``remote`` option of :meth:`Graph.link`.

    Attributes:
        url: The Redis server (``redis://host:6379/0``); ``None`` uses
            ``Settings.remote_url``.
        stream: The stream's key; ``None`` derives it from the graph and the link
            (``actorflow:<graph>:<source>.<port>><target>.<port>``).
        claim_idle: Seconds an item may stay unacknowledged with a consumer that has
            gone silent before another consumer of the group takes it over.
        batch: The most items written in one pipeline or read in one call.
        poll: Seconds between checks while waiting: a producer for room in the stream,
            a consumer for new items or the end of the stream.
        timeout: Seconds to wait for Redis to answer a call before taking it as
            unreachable (a ``remote.unreachable`` warning; the call is retried): a paused
            server keeps its connections open and would otherwise be waited for in
            silence.
        max_deliveries: How many times an entry may be delivered without being
            acknowledged (its consumers died with it, or were cut off) before it is
            dead-lettered: counted on the link as dropped (``undeliverable``), logged
            and acknowledged, never retried for ever.
        ttl: Seconds the keys of a link (its empty stream, run counter, producer state,
            end mark) stay in Redis after its consumers saw the end of the stream; a new
            run of the producer keeps them again.
    """

    url: str | None = attrs.field(default=None, validator=redis_url, repr=url_repr)
    stream: str | None = attrs.field(default=None, validator=name_or_none)
    claim_idle: float = attrs.field(default=30.0, validator=seconds())
    batch: int = attrs.field(default=100, validator=whole(1, MAX_BATCH))
    poll: float = attrs.field(default=0.05, validator=seconds())
    timeout: float = attrs.field(default=10.0, validator=seconds())
    max_deliveries: int = attrs.field(default=5, validator=whole(1, MAX_COUNT))
    ttl: float = attrs.field(default=86400.0, validator=seconds())


def to_remote(value: Remote | str | bool | Mapping[str, Any] | None) -> Remote | None:
    """The ``remote`` option as given to :meth:`Graph.link` or in a graph file."""
    if value is None or value is False:
        return None
    if value is True:
        return Remote()
    if isinstance(value, Remote):
        return value
    if isinstance(value, str):
        return Remote(url=value)
    if isinstance(value, Mapping):
        try:
            return Remote(**value)
        except TypeError:
            names = [f.name for f in attrs.fields(Remote)]
            unknown = ", ".join(short(k) for k in value if k not in names)
            raise ValueError(
                f"remote: unknown option {unknown} (options: {', '.join(names)})"
            ) from None
    raise ValueError(
        f"remote must be a redis:// URL, true, a table of options or actorflow.Remote, "
        f"got {short(value)}"
    )


def _to_copy_policy(value: CopyPolicy | str) -> CopyPolicy:
    return coerce_enum(CopyPolicy, value, "copy")


def _to_overflow(value: Overflow | str) -> Overflow:
    return coerce_enum(Overflow, value, "overflow")


@attrs.frozen
class LinkSpec:
    """A link from an output port to an input port, with its options.

    Attributes:
        source: Producing module.
        source_port: Its output port.
        target: Consuming module.
        target_port: Its input port.
        buffer: How many items the link holds before its producer waits; ``None`` uses
            the system's ``default_buffer``.
        copy: The :class:`CopyPolicy` for items entering this link.
        feedback: Marks the link that closes a cycle. Validation allows a cycle only
            through a feedback link, and the end of stream does not wait for it.
        overflow: What happens when the buffer is full: ``"block"`` (the producer
            waits), ``"drop_newest"`` or ``"drop_oldest"`` (it never waits; drops are
            counted as ``overflow``, with one warning when dropping starts and one, with
            the count, when it stops).
        latest_only: Keep only the newest pending item: a new item replaces the one
            waiting (counted as ``replaced``); the producer never waits.
        workers: How many of the consumer's tasks take items from this link: ``1`` (the
            default) strict FIFO; ``N > 1`` N tasks taking items in turn; ``0`` a fresh
            task per item, at most ``spawn_limit`` at once. Not allowed into a
            sequential module (sinks are).
        spawn_limit: With ``workers=0``, the most items handled at once.
        remote: Carry the link over a Redis stream (see :class:`Remote`), so that its
            two ends may run in different processes; ``None`` for a local link.
    """

    source: str
    source_port: str
    target: str
    target_port: str
    buffer: int | None = attrs.field(default=None, validator=whole(1, MAX_BUFFER, none=True))
    copy: CopyPolicy = attrs.field(default=CopyPolicy.DEEP, converter=_to_copy_policy)
    feedback: bool = attrs.field(default=False, validator=flag)
    overflow: Overflow = attrs.field(default=Overflow.BLOCK, converter=_to_overflow)
    latest_only: bool = attrs.field(default=False, validator=flag)
    workers: int = attrs.field(default=1, validator=whole(0, MAX_WORKERS))
    spawn_limit: int = attrs.field(default=100, validator=whole(1, MAX_WORKERS))
    remote: Remote | None = attrs.field(default=None, converter=to_remote)

    @property
    def name(self) -> str:
        """``"source.port -> target.port"``, the name used in logs and errors."""
        return f"{self.source}.{self.source_port} -> {self.target}.{self.target_port}"


LINK_OPTIONS = frozenset(
    field.name
    for field in attrs.fields(LinkSpec)
    if field.name not in {"source", "source_port", "target", "target_port"}
)
"""The options of a link (what :meth:`Graph.link` and a graph file's ``[[links]]`` take
beside its two ends)."""


# -- modules -----------------------------------------------------------------------------


@attrs.frozen
class ModuleSpec:
    """A module declared in a graph: its name, its class and its configuration.

    ``factory`` is meant to be a subclass of :class:`actorflow.Module`; it is typed
    loosely so that declaring one needs no runtime, and validation reports any other
    class by name.
    """

    name: str
    factory: type[Any]
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)

    def input_ports(self) -> dict[str, Port]:
        inputs = getattr(self.factory, "inputs", {})
        return normalize_ports(inputs, f"module {short(self.name)}", f"{self._owner()}.inputs")

    def output_ports(self) -> dict[str, Port]:
        outputs = getattr(self.factory, "outputs", {})
        return normalize_ports(outputs, f"module {short(self.name)}", f"{self._owner()}.outputs")

    def _owner(self) -> str:
        return clip(str(getattr(self.factory, "__qualname__", self.factory)))


# -- supervision -------------------------------------------------------------------------


class Strategy(enum.Enum):
    """What a supervisor restarts when a child fails."""

    ONE_FOR_ONE = "one_for_one"
    """Only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child. The others are stopped in reverse order, then all are restarted."""
    REST_FOR_ONE = "rest_for_one"
    """The failed child and every child started after it."""


class RestartType(enum.Enum):
    """When a child that ended is started again."""

    PERMANENT = "permanent"
    """Always, whatever the reason it ended."""
    TRANSIENT = "transient"
    """Only after an abnormal end (an exception)."""
    TEMPORARY = "temporary"
    """Never; it is also not restarted as a bystander of a group restart."""


class AutoShutdown(enum.Enum):
    """When a supervisor ends by itself because significant children ended (OTP's
    rules: a transient one's normal end counts, a temporary one's whatever its end)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


def _to_restart(value: RestartType | str) -> RestartType:
    return coerce_enum(RestartType, value, "restart")


def _to_strategy(value: Strategy | str) -> Strategy:
    return coerce_enum(Strategy, value, "strategy")


def _to_auto_shutdown(value: AutoShutdown | str) -> AutoShutdown:
    return coerce_enum(AutoShutdown, value, "auto_shutdown")


def _shutdown(value: float | str) -> float:
    if value == "brutal_kill":
        return 0.0
    if value == "infinity":
        return math.inf
    try:
        check_seconds("shutdown", value, zero=True, infinite=True)
    except ValueError as exc:
        raise ValueError(f"{exc} (or 'brutal_kill', 'infinity')") from None
    return float(value)


@attrs.frozen(kw_only=True)
class Backoff:
    """Delay before each restart: ``min * 2**(n-1)`` for the n-th restart in a row,
    capped at ``max``, then spread by ``±jitter`` (a fraction) so that many restarting
    children do not all retry in step."""

    min: float = attrs.field(default=0.1, validator=seconds(zero=True))
    max: float = attrs.field(default=10.0, validator=seconds(zero=True))
    jitter: float = attrs.field(default=0.1, validator=fraction)

    def __attrs_post_init__(self) -> None:
        if self.min > self.max:
            raise ValueError(f"backoff min ({self.min:g} s) is above its max ({self.max:g} s)")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before restart number ``attempt`` (1-based) of a burst."""
        base: float = min(self.max, self.min * 2.0 ** max(attempt - 1, 0))
        if self.jitter:
            base *= 1 + rng.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor treats one child.

    Attributes:
        restart: ``"permanent"``, ``"transient"`` or ``"temporary"``.
        shutdown: Seconds the child gets to finish its current item and clean up when
            stopped, before it is cancelled; ``"brutal_kill"`` (or 0) cancels it at once;
            ``"infinity"`` waits for as long as it takes.
        significant: Whether its end counts for the supervisor's auto-shutdown (a
            transient child's normal end; a temporary child's, whatever its end).
    """

    restart: RestartType = attrs.field(default=RestartType.TRANSIENT, converter=_to_restart)
    shutdown: float = attrs.field(default=5.0, converter=_shutdown)
    significant: bool = attrs.field(default=False, validator=flag)

    def __attrs_post_init__(self) -> None:
        if self.significant and self.restart is RestartType.PERMANENT:
            raise ValueError("a significant child cannot be permanent (OTP rule)")


def _to_backoff(value: Backoff | Mapping[str, Any] | None) -> Backoff | None:
    """The ``backoff`` option: a :class:`Backoff`, or its fields as a table (graph files)."""
    if value is None or isinstance(value, Backoff):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"backoff must be af.Backoff(...) or a table (min, max, jitter), got {short(value)}"
        )
    known = {field.name for field in attrs.fields(Backoff)}
    for key in value:
        if key not in known:
            raise ValueError(
                f"backoff has no option {short(key)}{did_you_mean(key, known)}; "
                "it takes min, max and jitter"
            )
    return Backoff(**value)


@attrs.frozen(kw_only=True)
class SupervisorSpec:
    """How a supervisor restarts its children.

    Attributes:
        strategy: ``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``.
        max_restarts: The most restarts allowed within ``period`` seconds; one more and
            the supervisor stops every child and fails (OTP's default: 1 in 5 s).
        period: The intensity window, in seconds.
        backoff: Optional delay before restarts.
        auto_shutdown: End the supervisor when any significant child ended by itself,
            or the last active one did (``"any_significant"``, ``"all_significant"``).
    """

    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, converter=_to_strategy)
    max_restarts: int = attrs.field(default=1, validator=whole(0, MAX_COUNT))
    period: float = attrs.field(default=5.0, validator=seconds())
    backoff: Backoff | None = attrs.field(default=None, converter=_to_backoff)
    auto_shutdown: AutoShutdown = attrs.field(
        default=AutoShutdown.NEVER, converter=_to_auto_shutdown
    )


@attrs.frozen
class Supervision:
    """How one module is supervised: its :class:`ChildSpec` and how many times an item
    that makes it fail is tried before it is dead-lettered."""

    child: ChildSpec = attrs.field(factory=ChildSpec)
    attempts: int = attrs.field(default=1, validator=whole(1, MAX_COUNT))


@attrs.frozen
class GroupSpec:
    """Modules supervised together by a supervisor of their own, in this order."""

    name: str
    members: tuple[str, ...]
    spec: SupervisorSpec
    child: ChildSpec
