"""The module kinds users subclass: :class:`Source`, :class:`Processor`, :class:`Sink`.

A module is plain user code. The runtime constructs it, binds it to the actor that drives
it, and calls its hooks; every hook may be a plain function or ``async def`` (found out at
run time), and ``process``/``start`` may also be generators that yield several items.
"""

from __future__ import annotations

import dis
import enum
import inspect
import types
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol, TypeVar

import attrs

from ._checks import MAX_COUNT, check_flag, check_seconds, check_whole, short
from ._data import Data
from ._exceptions import ValidationError
from ._lifecycle import does_nothing
from ._ports import Port
from ._store import ModuleData, Store

if TYPE_CHECKING:
    import structlog

__all__ = [
    "BATCH_HOOKS",
    "Many",
    "Module",
    "ModuleContext",
    "ModuleKind",
    "Processor",
    "RunningSystem",
    "Sink",
    "Source",
    "Tag",
    "attach",
    "batch_hook",
    "kind_problem",
    "missing_hook",
    "required",
    "settings_problems",
]


class ModuleKind(enum.Enum):
    """What role a module plays in a graph."""

    SOURCE = "source"
    PROCESSOR = "processor"
    SINK = "sink"
    PROGRESSIVE = "progressive"


@attrs.frozen(slots=True)
class Many:
    """Several items returned by one call of ``process()``.

    A processor that returns a list forwards *the list* as one item; wrap it in ``Many``
    (or make ``process`` a generator) to forward each element as its own item.
    """

    items: tuple[Any, ...] = attrs.field(converter=tuple)


class RunningSystem(Protocol):
    """What a module may ask of the running system: its store, and changes to links."""

    store: Store

    async def add_link(self, source: str, target: str, **options: Any) -> Any: ...

    async def remove_link(self, name: str, *, return_items: bool = False) -> list[Any]: ...

    async def set(self, name: str, value: Any) -> None: ...


class ModuleContext(Protocol):
    """All a module may ask of its runtime (the actor that drives it).

    The module talks to the runtime only through this, so that a module kind can be
    read, tested and changed without the engine room.
    """

    @property
    def name(self) -> str: ...

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger: ...

    @property
    def active(self) -> bool: ...

    @property
    def retired(self) -> bool: ...

    @property
    def system(self) -> RunningSystem | None: ...

    @property
    def terminated(self) -> bool:
        """The actor has ended for good (no incarnation will follow)."""
        ...

    @property
    def keep(self) -> dict[str, Any]: ...

    @property
    def at_end(self) -> list[Callable[[], None]]: ...

    async def emit(self, item: Any, port: str = "out") -> None: ...

    def mark_ready(self) -> None: ...

    def set_progress(self, done: float, total: float | None) -> None: ...

    def set_info(self, task: str | None, info: dict[str, Any]) -> None: ...

    def count_drop(self, count: int, reason: str) -> None: ...

    def read_port(self, port: str, limit: int | None) -> list[Any]: ...

    def read_synced(
        self, ports: Sequence[str], key: Callable[[Any], Hashable] | None, limit: int | None
    ) -> list[tuple[Any, ...]]: ...

    def post(self, item: Any, port: str) -> None: ...

    def waiting(self, port: str) -> int: ...

    def input_ports(self) -> tuple[str, ...]: ...

    def inputs_done(self) -> bool: ...


_UNIMPLEMENTED: set[Callable[..., Any]] = set()
"""The base classes' required hooks, which only raise ``NotImplementedError``."""

_F = TypeVar("_F", bound=Callable[..., Any])


def required(fn: _F) -> _F:
    """Mark a base class's hook that every concrete subclass must override (a module
    kind's ``process``, a task's ``run``): validation names the one left out."""
    _UNIMPLEMENTED.add(fn)
    return fn


def missing_hook(cls: type, hook: str | None = None) -> tuple[str, str | None] | None:
    """The required hook ``cls`` does not override (``hook``, or the module kind's),
    with the close match it does define (``proces`` for ``process``), or ``None`` when
    it overrides every one. A module kind's batch hook (``process_batch``) stands in
    for its per-item hook."""
    batch = getattr(cls, "_batch_hook", None) if hook is None else None
    hook = hook if hook is not None else getattr(cls, "_required_hook", None)
    if hook is None or getattr(cls, hook, None) not in _UNIMPLEMENTED:
        return None
    if batch is not None and getattr(cls, batch, None) is not None:
        return None
    users = [
        k for k in cls.__mro__ if not k.__module__.startswith("actorflow.") and k is not object
    ]
    given = {hook} if batch is None else {hook, batch}
    if any(
        given.intersection(_stored(value)) for klass in users for value in vars(klass).values()
    ):
        return None  # the hook is given per instance (``self.process = ...`` in __init__)
    own = sorted(
        name
        for klass in users
        for name, value in vars(klass).items()
        if not name.startswith("__") and name not in given and value is not None
    )
    import difflib  # only for a mistake: not every run pays for it

    # The closest of the names it defines to either hook it could have meant
    # (``process_batches`` meant ``process_batch``, not ``process``).
    best: tuple[float, str, str | None] = (0.0, hook, None)
    for wanted in sorted(given, key=len):
        for name in difflib.get_close_matches(wanted, own, n=1, cutoff=0.6):
            score = difflib.SequenceMatcher(None, wanted, name).ratio()
            if score > best[0]:
                best = (score, wanted, name)
    return best[1], best[2]


def _stored(value: Any) -> list[str]:
    """The attributes the function ``value`` (a method, say) sets on an object
    (``self.<name> = ...``), in the order its code sets them; none if not a function."""
    code = getattr(getattr(value, "__func__", value), "__code__", None)
    if code is None:
        return []
    return [op.argval for op in dis.get_instructions(code) if op.opname == "STORE_ATTR"]


_RUNTIME_OWNED = frozenset({"active", "retired", "shared"})
"""What a module may read but not set: the runtime's answers, not the module's state."""

_PRIVATE = frozenset({"_actor", "_required_hook", "_batch_hook"})
"""What only actorflow's own classes set: the runtime a module is bound to, and the
hook its kind requires."""


def _refuse_runtime_attributes(cls: type) -> None:
    """A module class that sets ``self.active`` (say) would read its own value, not
    the runtime's: refuse it when the class is made, naming the attribute. (``kind`` is
    a graph problem instead, see :func:`kind_problem`, and ``self.kind`` the module's
    own: the runtime reads its class's.)"""
    ours = cls.__module__.startswith("actorflow.")
    for attr, value in vars(cls).items():
        if attr in _RUNTIME_OWNED or (attr in _PRIVATE and not ours):
            raise TypeError(
                f"{cls.__qualname__} defines {attr!r}, which the runtime owns "
                f"(Module.{attr} is read-only); give yours another name"
            )
        for stored in _stored(value):
            if stored in _RUNTIME_OWNED or (stored in _PRIVATE and not ours):
                raise TypeError(
                    f"{cls.__qualname__}.{attr} sets self.{stored}, which the runtime "
                    f"owns (Module.{stored} is read-only); give yours another name"
                )


Check = Callable[[str, Any], None]
"""Raises ``ValueError`` (or ``TypeError``) naming the setting (its first argument)
if the value is wrong."""


def optional_seconds(name: str, value: Any) -> None:
    """A duration setting that may be ``None`` (the default behaviour)."""
    if value is not None:
        check_seconds(name, value)


def optional_flag(name: str, value: Any) -> None:
    """A yes/no setting that may be ``None`` (decided by the runtime)."""
    if value is not None:
        check_flag(name, value)


def optional_interval(name: str, value: Any) -> None:
    """A period that may be ``None`` (the system's) or ``math.inf`` (never)."""
    if value is not None:
        check_seconds(name, value, infinite=True)


def units(name: str, value: Any) -> None:
    """A count of work units, at least one."""
    check_whole(name, value, 1, MAX_COUNT)


def _into(name: str, value: Any) -> None:
    if value not in ("fields", "tags"):
        raise ValueError(f"{name} must be 'fields' or 'tags', got {short(value)}")


_MISSING: Any = object()


def kind_problem(cls: type) -> str | None:
    """What is wrong with the ``kind`` a module class says it is, or ``None``: the
    runtime drives a module by its kind, which only actorflow's base classes set."""
    kind = getattr(cls, "kind", _MISSING)
    if isinstance(kind, ModuleKind):
        return None
    if kind is _MISSING:
        return (
            f"{cls.__qualname__} subclasses Module itself; subclass Source, Processor, "
            "Sink or Progressive"
        )
    return (
        f"{cls.__qualname__}.kind is {short(kind)}, but kind is the runtime's: it says "
        "whether the class is a Source, Processor, Sink or Progressive, and comes from "
        "the base class; give your attribute another name"
    )


def settings_problems(target: object) -> list[str]:
    """What is wrong with the settings and hooks of a module class or instance, each in
    a sentence naming the attribute: a hook the runtime calls that is not callable
    (``self.stop = threading.Event()``), or a setting out of its bounds
    (``retry_interval = "5"``). Each kind lists its own in ``_runtime_hooks`` and
    ``_setting_checks``.

    An instance that sets none of those names itself has its class's answer, worked out
    once per class: every restart asks (see :func:`attach`)."""
    if not isinstance(target, type):
        names, verdict = _class_verdict(type(target))
        if verdict is not None and not _sets_own(target, names):
            return list(verdict)
    return _problems(target)


def _sets_own(target: object, names: Mapping[str, object]) -> bool:
    """Whether ``target`` sets one of ``names`` itself, asked name by name (its class is
    plain: see :func:`_class_verdict`). Reading its ``__dict__`` would make CPython
    (3.11+) build a dict for the instance, which slows every attribute its hooks read
    or write from then on (``self.total += x``: half again as many instructions)."""
    for name, static in names.items():
        try:
            value = object.__getattribute__(target, name)
        except AttributeError:
            continue
        if inspect.isfunction(static):
            if not (
                isinstance(value, types.MethodType)
                and value.__func__ is static
                and value.__self__ is target
            ):
                return True
        elif value is not static:
            return True
    return False


_verdicts: weakref.WeakKeyDictionary[type, tuple[dict[str, object], tuple[str, ...] | None]] = (
    weakref.WeakKeyDictionary()
)
"""Per module class: the names its hooks and settings are read by (with their values
on the class), and its problems
(``None`` when an instance's answer may differ from its class's: a name is a
descriptor, such as a property or a slot, read on the instance)."""


def _class_verdict(cls: type) -> tuple[dict[str, object], tuple[str, ...] | None]:
    found = _verdicts.get(cls)
    if found is None:
        names = {
            name: inspect.getattr_static(cls, name, _NOTHING)
            for klass in cls.__mro__
            for name in (
                *vars(klass).get("_runtime_hooks", ()),
                *vars(klass).get("_setting_checks", {}),
            )
        }
        plain = "__getattribute__" not in _defined_below_object(cls) and not any(
            hasattr(type(value), "__get__") and not inspect.isfunction(value)
            for value in names.values()
        )
        found = _verdicts[cls] = (names, tuple(_problems(cls)) if plain else None)
    return found


def _defined_below_object(cls: type) -> set[str]:
    """The names the classes of ``cls``'s MRO define, ``object`` aside."""
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}


BATCH_HOOKS: Mapping[str, str] = {"process_batch": "process", "consume_batch": "consume"}
"""Each batch hook the runtime calls, with the per-item hook it stands in for."""


def batch_hook(module: object) -> str | None:
    """The name of the batch hook ``module`` (an instance or class) defines for its
    kind (``process_batch``, ``consume_batch``), or ``None``: it handles item by item."""
    name: str | None = getattr(module, "_batch_hook", None)
    if name is None or getattr(module, name, None) is None:
        return None
    return name


def _batch_problems(target: object, owner: str) -> list[str]:
    """A batch hook its kind does not call, or beside the per-item hook it replaces."""
    problems: list[str] = []
    own = getattr(target, "_batch_hook", None)
    for name, single in BATCH_HOOKS.items():
        if getattr(target, name, None) is None:
            continue
        if name != own:
            what = f"{own}()" if own is not None else "none"
            problems.append(
                f"{owner} defines {name}(), which the runtime never calls on this kind of "
                f"module (its batch hook: {what}); rename it, or subclass "
                f"{'Processor' if single == 'process' else 'Sink'}"
            )
        elif _given(target, single):
            problems.append(
                f"{owner} defines both {single}() and {name}(): it handles items one at a "
                f"time or a batch at a time, not both; remove one"
            )
    return problems


def _given(target: object, hook: str) -> bool:
    """Whether ``target`` overrides the required ``hook`` (or sets it per instance)."""
    fn = getattr(target, hook, None)
    return fn is not None and getattr(fn, "__func__", fn) not in _UNIMPLEMENTED


def _problems(target: object) -> list[str]:
    cls = target if isinstance(target, type) else type(target)
    owner = cls.__qualname__
    problems: list[str] = _batch_problems(target, owner)
    for klass in reversed(cls.__mro__):
        for hook in vars(klass).get("_runtime_hooks", ()):
            value = getattr(target, hook, _MISSING)
            # ``process_batch = None``: a subclass handles item by item again.
            if (
                value is not _MISSING
                and not callable(value)
                and not (value is None and hook in BATCH_HOOKS)
            ):
                problems.append(
                    f"{owner}.{hook} is {short(value)}, not a method: {hook}() is a hook "
                    f"the runtime calls, so give your attribute another name"
                )
        checks: Mapping[str, Check] = vars(klass).get("_setting_checks", {})
        for setting, check in checks.items():
            try:
                check(f"{owner}.{setting}", getattr(target, setting, None))
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
    return problems


class Module:
    """Base class of every module kind.

    Subclasses declare their ports as class attributes mapping a port name to a
    :class:`Port` or just a type, and may override the lifecycle hooks. Construction
    takes the module's configuration as keyword arguments.

    Attributes:
        inputs: Input ports, by name.
        outputs: Output ports, by name.
    """

    kind: ClassVar[ModuleKind]
    inputs: ClassVar[Mapping[str, Port | Any]] = {}
    outputs: ClassVar[Mapping[str, Port | Any]] = {}

    sequential: ClassVar[bool] = False
    """True for a module that must never handle two items at once, so links into it may
    not use several workers. Sinks are always sequential."""

    blocking: ClassVar[bool] = False
    """True for a module whose sync hooks block (file or network I/O, a C library):
    they then run in worker threads (at most ``Settings.thread_limit`` at once), so
    other actors keep running. Async hooks always run on the event loop."""

    latency_sensitive: ClassVar[bool | None] = None
    """True for a module on an interaction's path (a host's request and its answer):
    while it has input waiting, progressive steps elsewhere do not resume. ``None``
    infers it: inlets, variables and every module they reach downstream are; ``False``
    opts out (see "Interaction priority" in the design)."""

    _actor: ModuleContext | None = None
    _required_hook: ClassVar[str | None] = None
    """The hook every concrete module of this kind overrides (checked by validation)."""
    _batch_hook: ClassVar[str | None] = None
    """The hook of this kind that takes a list of items instead (none for most kinds)."""
    _runtime_hooks: ClassVar[tuple[str, ...]] = ("validate", "cleanup", "snapshot", "restore")
    """The hooks of this kind the runtime calls (besides those of its bases)."""
    _setting_checks: ClassVar[Mapping[str, Check]] = {
        "blocking": check_flag,
        "sequential": check_flag,
        "latency_sensitive": optional_flag,
        "snapshot_interval": optional_interval,
    }
    """The settings of this kind (besides those of its bases), each with its check."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_runtime_attributes(cls)

    @does_nothing
    def validate(self) -> Any:
        """Check the configuration; raise to refuse it.

        Called for every module after *all* modules were constructed and before *any*
        runs. May be async. An exception becomes a :class:`ValidationError`.
        """
        return None

    @does_nothing
    def cleanup(self) -> Any:
        """Release what the module holds.

        Runs exactly once for every module that was started, whether the system ended
        normally, failed or was cancelled. May be async; it runs shielded from
        cancellation, within the system's ``cleanup_timeout``.
        """
        return None

    snapshot_interval: float | None = None
    """Seconds between saves of this module's snapshot while it runs; ``None`` (the
    default) takes ``Settings.snapshot_interval``, ``math.inf`` saves only when an
    incarnation starts and ends cleanly (and when the replay journal is full)."""

    @does_nothing
    def snapshot(self) -> Any:
        """Override to give the module's state, which the runtime saves to the system's
        store and hands to :meth:`restore` in every new incarnation (after a restart, or
        in a new process on the same store).

        Return a value actorflow's msgpack codec stores (numbers, strings, bytes, lists,
        dicts, :class:`Data`...): one it cannot store fails the module, naming it and
        where in the value. Saved when an incarnation starts, every
        ``snapshot_interval`` seconds (earlier when the replay journal is full) and when
        it ends cleanly; after a crash a processor or sink restores the last snapshot and
        handles again what it handled since. May be async; see ``docs/howto/state.md``.
        """
        return None

    @does_nothing
    def restore(self, value: Any) -> Any:
        """Take back the state :meth:`snapshot` gave (an equal value, never the same
        object), before the incarnation handles anything. May be async; if it raises,
        the module has failed, like a ``start()`` that raises."""
        return None

    # The runtime-facing helpers below are only usable while the module is bound.

    @property
    def name(self) -> str:
        """The module's name in the graph, unless the module set its own ``self.name``
        (then it is the module's: the runtime never reads it)."""
        own: str = self.__dict__.get("name", _NOTHING)
        return self._bound().name if own is _NOTHING else own

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["name"] = value

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """A structlog logger bound with ``actor=<name>``, unless the module set its own
        ``self.log``."""
        own: structlog.typing.FilteringBoundLogger = self.__dict__.get("log", _NOTHING)
        return self._bound().log if own is _NOTHING else own

    @log.setter
    def log(self, value: structlog.typing.FilteringBoundLogger) -> None:
        self.__dict__["log"] = value

    @property
    def active(self) -> bool:
        """True until the runtime asks the module to stop."""
        actor = self._actor
        return actor is not None and actor.active

    @active.setter
    def active(self, value: bool) -> None:
        _read_only(self, "active", "true until the runtime asks the module to stop")

    async def emit(self, item: Any, port: str = "out") -> None:
        """Send ``item`` on the output ``port`` now.

        Waits only while a downstream buffer is full (backpressure). Use it from async
        ``start()`` of a source, or to emit on several ports from ``process()``.

        Raises:
            KeyError: ``port`` is not an output port of this module.
        """
        await self._bound().emit(item, port)

    def set_progress(self, done: float, total: float | None = None) -> None:
        """Report progress: ``done`` of ``total`` units (``total=None``: unknown).

        Shown in :meth:`System.status`, in every heartbeat and in the live view of
        ``actorflow run``; a progressive module's is also logged as ``actor.progress``.
        """
        self._bound().set_progress(done, total)

    def set_info(self, task: str | None = None, **info: Any) -> None:
        """Say what the module is doing, for people watching: an optional task name
        ("encoding") and free-form fields (``frame=3, frames=10``) that replace the
        previous ones. Shown in :meth:`System.status` and every heartbeat; values should
        be JSON-ready (others are reported as their ``str()``)."""
        self._bound().set_info(task, info)

    shared_namespace: ClassVar[str | None] = None
    """The shared-data namespace; ``None`` means the class name, so every module of a
    kind shares its data."""

    @property
    def shared(self) -> ModuleData:
        """This module's view of the system's shared data store."""
        namespace = self.shared_namespace or type(self).__qualname__
        return ModuleData(self._system().store, namespace)

    @shared.setter
    def shared(self, value: ModuleData) -> None:
        _read_only(
            self,
            "shared",
            "the shared data store, written with await self.shared.put(name, value)",
        )

    async def add_link(self, source: str, target: str, **options: Any) -> Any:
        """Add a link to the running system; see :meth:`System.add_link`."""
        return await self._system().add_link(source, target, **options)

    async def set_variable(self, name: str, value: Any) -> None:
        """Set the :class:`Variable` module ``name``; see :meth:`System.set`."""
        await self._system().set(name, value)

    async def remove_link(self, name: str, *, return_items: bool = False) -> list[Any]:
        """Remove a link from the running system; see :meth:`System.remove_link`."""
        return await self._system().remove_link(name, return_items=return_items)

    def _system(self) -> RunningSystem:
        system = self._bound().system
        if system is None:
            raise RuntimeError(
                f"{type(self).__qualname__} is not running in a system; "
                "the shared store and link changes are only available in one"
            )
        return system

    def _bound(self) -> ModuleContext:
        actor = self._actor
        if actor is None:
            raise RuntimeError(
                f"{type(self).__qualname__} is not running in a system; "
                "name, log, emit and active are only available once the runtime binds it"
            )
        return actor


_NOTHING: Any = object()


def _read_only(module: Module, attribute: str, what: str) -> NoReturn:
    """Refuse setting a runtime-owned attribute by a path the class check cannot see
    (``setattr(self, "active", True)``), with a message naming it."""
    raise AttributeError(
        f"{type(module).__qualname__}: self.{attribute} is the runtime's and read-only "
        f"(Module.{attribute}: {what}); give your attribute another name",
        name=attribute,
        obj=module,
    )


class Source(Module):
    """A module that produces data.

    Override :meth:`start`. It may be:

    * a generator (sync or async) that yields items: the runtime pulls from it while the
      source is active;
    * an ``async def`` that calls ``await self.emit(item)`` and loops
      ``while self.active``;
    * a plain function returning an iterable of items.

    When ``start`` is exhausted or returns, the source ends and the end of stream flows
    downstream.
    """

    kind = ModuleKind.SOURCE
    outputs: ClassVar[Mapping[str, Port | Any]] = {"out": Port(object)}
    retry_interval: float | None = None
    """Seconds between tries when ``start()`` raises; ``None`` (the default) lets the
    failure go to the supervisor instead. Set it on the class or in ``__init__``."""

    _required_hook = "start"
    _runtime_hooks = ("start", "stop")
    _setting_checks: ClassVar[Mapping[str, Check]] = {"retry_interval": optional_seconds}

    @required
    def start(self) -> Any:
        """Produce items; see the class docstring for the accepted shapes."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement start()")

    def ready(self) -> None:
        """Tell the modules that :meth:`Graph.depends_on` this source that it is ready
        (connected, say), before it sends anything."""
        self._bound().mark_ready()

    @does_nothing
    def stop(self) -> Any:
        """Called once when the runtime asks an active source to stop; may be async.

        Use it to unblock a ``start()`` that waits on something external. The default
        does nothing: ``self.active`` already turns false.
        """
        return None


class Processor(Module):
    """A module that turns each input item into zero, one or several output items.

    Override ``process(self, data)`` (or ``process(self, data, port)`` to learn which
    input port the item came in on). Return the item to forward on ``out``, ``None`` to
    drop it, or :class:`Many`; or make it a generator and yield each item. It may be
    ``async``.

    Or override ``process_batch(self, batch)`` instead (never both): it takes a list of
    the items waiting and returns an iterable of the items to forward on the main
    output port, as many or as few as it likes (``None``: none). It may be ``async``;
    see "Batch hooks" in ``docs/concepts/modules.md``.
    """

    kind = ModuleKind.PROCESSOR
    inputs: ClassVar[Mapping[str, Port | Any]] = {"in": Port(object)}
    outputs: ClassVar[Mapping[str, Port | Any]] = {"out": Port(object)}

    _required_hook = "process"
    _batch_hook: ClassVar[str | None] = "process_batch"
    """The hook that may replace the per-item one, taking a list of items."""
    _runtime_hooks: ClassVar[tuple[str, ...]] = ("process", "process_batch")

    @required
    def process(self, data: Any) -> Any:
        """Handle one item; see the class docstring for what to return."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement process()")


class Tag(Processor):
    """A processor that labels items: override ``tag(self, data)`` to return key/value
    pairs, and the runtime merges them into the item and forwards it.

    Attributes:
        into: ``"fields"`` (default) or ``"tags"``: where the pairs go in a :class:`Data`
            item. A plain ``dict`` item is itself the fields.
        overwrite: Whether a pair replaces a key the item already has (default ``True``).

    ``tag`` may be ``async``; returning ``None`` or ``{}`` forwards the item unchanged.
    Set ``into``/``overwrite`` on the class or in ``__init__``.
    """

    into: str = "fields"
    overwrite: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The runtime classifies process() once; give it the shape of tag().
        if inspect.iscoroutinefunction(cls.tag):
            cls.process = cls._process_async  # type: ignore[method-assign,assignment]
        else:
            cls.process = cls._process_sync  # type: ignore[method-assign,assignment]

    _required_hook = "tag"
    _batch_hook = None  # it labels item by item
    _runtime_hooks = ("tag",)
    _setting_checks: ClassVar[Mapping[str, Check]] = {"into": _into, "overwrite": check_flag}

    @required
    def tag(self, data: Any) -> Mapping[str, Any] | None:
        """Return the pairs to merge into ``data``."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement tag()")

    def _process_sync(self, data: Any) -> Any:
        pairs = self.tag(data)
        if pairs is not None and type(pairs) is not dict and inspect.isawaitable(pairs):
            return self._merge_later(data, pairs)  # a decorator hid an async tag()
        return self._merge(data, pairs)

    async def _merge_later(self, data: Any, pairs: Awaitable[Mapping[str, Any] | None]) -> Any:
        return self._merge(data, await pairs)

    async def _process_async(self, data: Any) -> Any:
        return self._merge(data, await self.tag(data))  # type: ignore[misc]

    def _merge(self, data: Any, pairs: Mapping[str, Any] | None) -> Any:
        if not pairs:
            return data
        if self.into not in ("fields", "tags"):
            raise ValueError(f"into must be 'fields' or 'tags', got {self.into!r}")
        if isinstance(data, Data):
            current = data.fields if self.into == "fields" else data.tags
            merged = {**current, **pairs} if self.overwrite else {**pairs, **current}
            return data.evolve(**{self.into: merged})
        if isinstance(data, dict) and self.into == "fields":
            return {**data, **pairs} if self.overwrite else {**pairs, **data}
        raise TypeError(
            f"a Tag module merges into Data (fields or tags) or into a dict's keys; got "
            f"{type(data).__name__} with into={self.into!r}"
        )


class Sink(Module):
    """A module that consumes items, strictly one at a time and in arrival order.

    Override ``consume(self, data)`` (or ``consume(self, data, port)``); it may be
    ``async``. Or override ``consume_batch(self, batch)`` instead (never both): it takes
    a list of the items waiting, in arrival order.
    """

    kind = ModuleKind.SINK
    sequential: ClassVar[bool] = True
    inputs: ClassVar[Mapping[str, Port | Any]] = {"in": Port(object)}
    outputs: ClassVar[Mapping[str, Port | Any]] = {}

    _required_hook = "consume"
    _batch_hook: ClassVar[str | None] = "consume_batch"
    """The hook that may replace the per-item one, taking a list of items."""
    _runtime_hooks = ("consume", "consume_batch")

    @required
    def consume(self, data: Any) -> Any:
        """Handle one item."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement consume()")


def attach(module: Module, context: ModuleContext) -> None:
    """Give ``module`` the runtime it asks for what it may do (its actor, for each
    incarnation): the one way another room sets what a module talks to.

    Raises:
        ValidationError: What the module set in ``__init__`` breaks a hook or a setting
            (``self.stop = threading.Event()``, ``self.retry_interval = -1``); graph
            validation only sees what the class says.
    """
    problems = settings_problems(module)
    if problems:
        message = "; ".join(problems)
        context.log.error("actor.failed", phase="validate", error=message)
        raise ValidationError(context.name, message)
    # The one attribute the runtime sets on a module, set past any __setattr__ of its
    # class, so that frozen classes (``@attrs.frozen``) are modules like any other.
    object.__setattr__(module, "_actor", context)
