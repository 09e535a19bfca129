"""Declaring a graph of modules and links, and validating it as a whole."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._checks import check_seconds, short
from ._checks import name as _name_check
from ._exceptions import GraphError, GraphProblem
from ._module import Module
from ._specs import (
    ChildSpec,
    CopyPolicy,
    GroupSpec,
    LinkSpec,
    ModuleSpec,
    Overflow,
    Remote,
    Supervision,
    SupervisorSpec,
)
from ._validation import Declarations, graph_problems, graph_warnings, successors

__all__ = ["Graph", "GroupSpec", "LinkSpec", "ModuleSpec", "Supervision"]

_DEFAULT_SUPERVISION = Supervision()
"""How a module is supervised unless :meth:`Graph.supervise` said: one frozen value for
all, not a fresh one per question (100,000 modules asked it twice each)."""


def _split_endpoint(endpoint: str, default_port: str, argument: str) -> tuple[str, str]:
    if not isinstance(endpoint, str):
        raise TypeError(
            f"{argument} must be a module name or 'module.port', got "
            f"{type(endpoint).__name__} {short(endpoint)}"
        )
    module, dot, port = endpoint.partition(".")
    return module, (port if dot else default_port)


@attrs.define
class Graph:
    """A set of modules and the links between them.

    Build it in Python, then hand it to :func:`actorflow.open_system` or
    :func:`actorflow.run`, which validate it as a whole before anything is constructed.

    Example::

        graph = Graph()
        graph.add("numbers", Numbers, count=10)
        graph.add("double", Double)
        graph.add("show", Print)
        graph.chain("numbers", "double", "show")
    """

    name: str = attrs.field(default="graph", validator=_name_check)
    _modules: list[ModuleSpec] = attrs.field(factory=list, alias="_modules")
    _links: list[LinkSpec] = attrs.field(factory=list, alias="_links")
    _supervision: dict[str, Supervision] = attrs.field(factory=dict, alias="_supervision")
    _groups: list[GroupSpec] = attrs.field(factory=list, alias="_groups")
    root: SupervisorSpec = attrs.field(factory=SupervisorSpec)
    """How the root supervisor restarts its children."""
    dead_letter_target: tuple[str, str] | None = None
    """The ``(module, port)`` that receives :class:`DeadLetter` records, if any."""
    _depends: list[tuple[str, str, float]] = attrs.field(factory=list, alias="_depends")
    shared: set[str] = attrs.field(factory=set)
    """Modules marked with :meth:`share`."""

    @property
    def modules(self) -> tuple[ModuleSpec, ...]:
        """Declared modules, in declaration order."""
        return tuple(self._modules)

    @property
    def links(self) -> tuple[LinkSpec, ...]:
        """Declared links, in declaration order."""
        return tuple(self._links)

    def add(self, name: str, module: type[Module], /, **config: Any) -> str:
        """Declare a module named ``name``, built as ``module(**config)`` when the system starts.

        Returns:
            ``name``, so that declarations can be chained into :meth:`link`.
        """
        self._modules.append(ModuleSpec(name, module, config))
        return name

    def link(
        self,
        source: str,
        target: str,
        *,
        buffer: int | None = None,
        copy: CopyPolicy | str = CopyPolicy.DEEP,
        feedback: bool = False,
        overflow: Overflow | str = Overflow.BLOCK,
        latest_only: bool = False,
        workers: int = 1,
        spawn_limit: int = 100,
        remote: Remote | str | bool | Mapping[str, Any] | None = None,
    ) -> LinkSpec:
        """Link ``source`` (``"module"`` or ``"module.port"``) to ``target``.

        A bare module name means its ``out`` port on the source side and its ``in`` port
        on the target side.

        Raises:
            ValueError: An option has a value that can never be valid.
        """
        src, src_port = _split_endpoint(source, "out", "source")
        dst, dst_port = _split_endpoint(target, "in", "target")
        spec = LinkSpec(
            src,
            src_port,
            dst,
            dst_port,
            buffer=buffer,
            copy=copy,
            feedback=feedback,
            overflow=overflow,
            latest_only=latest_only,
            workers=workers,
            spawn_limit=spawn_limit,
            remote=remote,
        )
        self._links.append(spec)
        return spec

    def share(self, module: str) -> None:
        """Mark ``module`` as shared: the same graph started in several processes runs
        one instance of it in each, and they split its items (competing consumers of its
        remote input links). A module that is not shared consumes a remote link alone;
        another instance waits to take over when it stops.
        """
        self.shared.add(module)

    def supervise(
        self,
        module: str,
        *,
        restart: str = "transient",
        shutdown: float | str = 5.0,
        significant: bool = False,
        attempts: int = 1,
    ) -> None:
        """Set how ``module`` is supervised.

        Args:
            restart: ``"permanent"``, ``"transient"`` (default: restarted only after a
                crash) or ``"temporary"``.
            shutdown: Seconds to finish the current item and clean up when stopped, then
                it is cancelled; ``"brutal_kill"`` or ``"infinity"``.
            significant: Its end counts for its supervisor's auto-shutdown (transient:
                a normal end; temporary: any end).
            attempts: How many times an item that makes it fail is tried (a restart
                between tries) before it is dead-lettered.

        Raises:
            ValueError: An option can never be valid.
        """
        child = ChildSpec(restart=restart, shutdown=shutdown, significant=significant)
        self._supervision[module] = Supervision(child, attempts)

    def supervision_of(self, module: str) -> Supervision:
        """How ``module`` is supervised (the defaults unless :meth:`supervise` said)."""
        return self._supervision.get(module) or _DEFAULT_SUPERVISION

    def supervisor(self, **options: Any) -> None:
        """Set the root supervisor's options (see :class:`SupervisorSpec`):
        ``strategy``, ``max_restarts``, ``period``, ``backoff``, ``auto_shutdown``."""
        self.root = SupervisorSpec(**options)

    def group(
        self,
        name: str,
        members: Iterable[str],
        *,
        restart: str = "transient",
        shutdown: float | str = "infinity",
        significant: bool = False,
        **options: Any,
    ) -> None:
        """Supervise ``members`` together under a supervisor named ``name``, started in
        the order given. ``options`` are its :class:`SupervisorSpec`; ``restart``,
        ``shutdown`` and ``significant`` say how its parent treats the group as a child:
        by default it is restarted only when it gives up (escalates), it may take as
        long as its members need to stop, and its end does not count for the parent's
        auto-shutdown.

        Raises:
            TypeError: ``members`` is one string rather than names, or holds a non-string.
            ValueError: ``name`` is the graph's own: the root supervisor's name.
        """
        names = () if isinstance(members, str) else tuple(members)
        if isinstance(members, str) or not all(isinstance(m, str) for m in names):
            raise TypeError(
                f"group {short(name)}: members must be module names (a list of strings), "
                f"got {short(members)}"
            )
        if name == self.name:
            raise ValueError(
                f"group {short(name)}: the graph's own name, which its root supervisor has"
            )
        child = ChildSpec(restart=restart, shutdown=shutdown, significant=significant)
        self._groups.append(GroupSpec(name, names, SupervisorSpec(**options), child))

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        return tuple(self._groups)

    def depends_on(self, module: str, source: str, *, timeout: float = 30.0) -> None:
        """Make ``module`` wait, before it handles anything, until ``source`` is ready.

        A source is ready when it calls ``self.ready()``, sends its first item, or its
        ``start()`` returns normally. Waiting longer than ``timeout`` seconds fails
        ``module`` with a :class:`RunError` naming both (its supervisor decides what next).

        Raises:
            ValueError: ``timeout`` is not a duration from a microsecond to a year.
        """
        check_seconds("timeout", timeout)
        self._depends.append((module, source, float(timeout)))

    @property
    def dependencies(self) -> tuple[tuple[str, str, float], ...]:
        """``(module, source, timeout)`` for every :meth:`depends_on`."""
        return tuple(self._depends)

    def dead_letters(self, target: str) -> None:
        """Deliver dead letters to ``target`` (``"module"`` or ``"module.port"``), as
        :class:`DeadLetter` records. That port needs no other link."""
        self.dead_letter_target = _split_endpoint(target, "in", "target")

    def chain(self, *endpoints: str, **options: Any) -> list[LinkSpec]:
        """Link each endpoint to the next one, with the same options for every link.

        Raises:
            TypeError: An endpoint is not a string.
        """
        for index, endpoint in enumerate(endpoints):
            _split_endpoint(endpoint, "in", f"endpoint {index}")
        return [self.link(a, b, **options) for a, b in itertools.pairwise(endpoints)]

    def problems(self) -> list[GraphProblem]:
        """Every problem in the graph; empty when it is valid."""
        return graph_problems(self._declarations())

    def warnings(self) -> list[str]:
        """Options that are valid but have no effect, in sentences naming the link."""
        return graph_warnings(self._declarations())

    def _declarations(self) -> Declarations:
        return Declarations(
            modules=self.modules,
            links=self.links,
            dead_letter_target=self.dead_letter_target,
            supervised=tuple(self._supervision),
            dependencies=self.dependencies,
            shared=frozenset(self.shared),
            groups=self.groups,
        )

    def validate(self) -> None:
        """Raise :class:`GraphError` listing every problem, if there is any."""
        found = self.problems()
        if found:
            raise GraphError(found)

    def start_order(self) -> list[str]:
        """Module names with every consumer before its producers (feedback links ignored).

        Ties keep declaration order, so the order is deterministic. Requires a valid graph.
        """
        return _consumers_first(self._modules, self._links)


def _consumers_first(modules: Iterable[ModuleSpec], links: Iterable[LinkSpec]) -> list[str]:
    """Kahn's algorithm on the reversed edges, so ties keep declaration order."""
    names = [spec.name for spec in modules]
    position = {name: i for i, name in enumerate(names)}
    following = successors(names, links)
    predecessors: dict[str, list[str]] = {name: [] for name in names}
    for source, targets in following.items():
        for target in targets:
            predecessors[target].append(source)
    pending = {name: len(targets) for name, targets in following.items()}
    ready = [(position[n], n) for n in names if pending[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for source in predecessors[node]:
            pending[source] -= 1
            if pending[source] == 0:
                heapq.heappush(ready, (position[source], source))
    return order


def unlink(graph: Graph, spec: LinkSpec) -> None:
    """Take ``spec`` out of ``graph`` (a running system removed it, or refused to add it).

    Not a method: a graph being declared only grows; only the system that runs it takes
    links away.
    """
    graph._links.remove(spec)


def respec(graph: Graph, spec: ModuleSpec) -> ModuleSpec:
    """Put ``spec`` in place of the module of its name (a running system replaced its
    class or config); return the spec it replaced.

    Raises:
        KeyError: No module of that name is declared.
    """
    for index, old in enumerate(graph._modules):
        if old.name == spec.name:
            graph._modules[index] = spec
            return old
    raise KeyError(f"no module {spec.name!r}")


def copied(graph: Graph) -> Graph:
    """A copy of ``graph`` that a running system may change (its lists are its own, the
    immutable specs are shared): the caller's graph stays as declared, to run again."""
    return attrs.evolve(
        graph,
        _modules=list(graph._modules),
        _links=list(graph._links),
        _supervision=dict(graph._supervision),
        _groups=list(graph._groups),
        _depends=list(graph._depends),
        shared=set(graph.shared),
    )


def unadd(graph: Graph, spec: ModuleSpec) -> None:
    """Take the module ``spec`` and how it is supervised out of ``graph`` (a running
    system removed it, or refused to add it); its links are taken out with :func:`unlink`."""
    graph._modules[:] = [other for other in graph._modules if other is not spec]
    if all(other.name != spec.name for other in graph._modules):
        graph._supervision.pop(spec.name, None)
        graph._groups[:] = [  # a module added later under its name is in no group
            attrs.evolve(group, members=tuple(m for m in group.members if m != spec.name))
            for group in graph._groups
        ]
