"""Declaring a graph of modules and links, and validating it as a whole."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._checks import coerce_enum, non_negative_int, positive_int, positive_int_or_none
from ._copying import CopyPolicy
from ._exceptions import GraphError, GraphProblem
from ._link import Overflow
from ._module import Module, ModuleKind
from ._ports import Port, describe_type, is_compatible, normalize_ports
from ._remote import Remote, to_remote
from ._supervisor import ChildSpec, SupervisorSpec

__all__ = ["Graph", "GroupSpec", "LinkSpec", "ModuleSpec", "Supervision"]


def _to_copy_policy(value: CopyPolicy | str) -> CopyPolicy:
    return coerce_enum(CopyPolicy, value, "copy")


def _to_overflow(value: Overflow | str) -> Overflow:
    return coerce_enum(Overflow, value, "overflow")


@attrs.frozen
class ModuleSpec:
    """A module declared in a graph: its name, its class and its configuration."""

    name: str
    factory: type[Module]
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)

    def input_ports(self) -> dict[str, Port]:
        return normalize_ports(self.factory.inputs, f"module {self.name!r}")

    def output_ports(self) -> dict[str, Port]:
        return normalize_ports(self.factory.outputs, f"module {self.name!r}")


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
    buffer: int | None = attrs.field(default=None, validator=positive_int_or_none)
    copy: CopyPolicy = attrs.field(default=CopyPolicy.DEEP, converter=_to_copy_policy)
    feedback: bool = False
    overflow: Overflow = attrs.field(default=Overflow.BLOCK, converter=_to_overflow)
    latest_only: bool = False
    workers: int = attrs.field(default=1, validator=non_negative_int)
    spawn_limit: int = attrs.field(default=100, validator=positive_int)
    remote: Remote | None = attrs.field(default=None, converter=to_remote)

    @property
    def name(self) -> str:
        """``"source.port -> target.port"``, the name used in logs and errors."""
        return f"{self.source}.{self.source_port} -> {self.target}.{self.target_port}"


@attrs.frozen
class Supervision:
    """How one module is supervised: its :class:`ChildSpec` and how many times an item
    that makes it fail is tried before it is dead-lettered."""

    child: ChildSpec = attrs.field(factory=ChildSpec)
    attempts: int = attrs.field(default=1, validator=positive_int)


@attrs.frozen
class GroupSpec:
    """Modules supervised together by a supervisor of their own, in this order."""

    name: str
    members: tuple[str, ...]
    spec: SupervisorSpec
    child: ChildSpec


def _module_class(spec: ModuleSpec) -> type[Module] | None:
    """The spec's factory if it is a module class (validation reports it otherwise)."""
    factory: Any = spec.factory
    return factory if isinstance(factory, type) and issubclass(factory, Module) else None


def _split_endpoint(endpoint: str, default_port: str) -> tuple[str, str]:
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

    name: str = "graph"
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
        src, src_port = _split_endpoint(source, "out")
        dst, dst_port = _split_endpoint(target, "in")
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
            significant: Its normal end counts for its supervisor's auto-shutdown.
            attempts: How many times an item that makes it fail is tried (a restart
                between tries) before it is dead-lettered.

        Raises:
            ValueError: An option can never be valid.
        """
        child = ChildSpec(restart=restart, shutdown=shutdown, significant=significant)
        self._supervision[module] = Supervision(child, attempts)

    def supervision_of(self, module: str) -> Supervision:
        """How ``module`` is supervised (the defaults unless :meth:`supervise` said)."""
        return self._supervision.get(module) or Supervision()

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
        **options: Any,
    ) -> None:
        """Supervise ``members`` together under a supervisor named ``name``, started in
        the order given. ``options`` are its :class:`SupervisorSpec`; ``restart`` and
        ``shutdown`` say how its parent treats the group as a child: by default it is
        restarted only when it gives up (escalates), and it may take as long as its
        members need to stop."""
        child = ChildSpec(restart=restart, shutdown=shutdown)
        self._groups.append(GroupSpec(name, tuple(members), SupervisorSpec(**options), child))

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        return tuple(self._groups)

    def depends_on(self, module: str, source: str, *, timeout: float = 30.0) -> None:
        """Make ``module`` wait, before it handles anything, until ``source`` is ready.

        A source is ready when it calls ``self.ready()``, sends its first item, or its
        ``start()`` returns normally. Waiting longer than ``timeout`` seconds fails
        ``module`` with a :class:`RunError` naming both (its supervisor decides what next).

        Raises:
            ValueError: ``timeout`` is not a positive number.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._depends.append((module, source, float(timeout)))

    @property
    def dependencies(self) -> tuple[tuple[str, str, float], ...]:
        """``(module, source, timeout)`` for every :meth:`depends_on`."""
        return tuple(self._depends)

    def dead_letters(self, target: str) -> None:
        """Deliver dead letters to ``target`` (``"module"`` or ``"module.port"``), as
        :class:`DeadLetter` records. That port needs no other link."""
        self.dead_letter_target = _split_endpoint(target, "in")

    def chain(self, *endpoints: str, **options: Any) -> list[LinkSpec]:
        """Link each endpoint to the next one, with the same options for every link."""
        return [self.link(a, b, **options) for a, b in itertools.pairwise(endpoints)]

    def problems(self) -> list[GraphProblem]:
        """Every problem in the graph; empty when it is valid."""
        problems = _find_problems(self._modules, self._links, self.dead_letter_target)
        names = {spec.name for spec in self._modules}
        problems.extend(
            GraphProblem(f"supervise: unknown module {module!r}", module=module)
            for module in self._supervision
            if module not in names
        )
        specs = {spec.name: spec for spec in self._modules}
        for module, source, _ in self._depends:
            if module not in specs:
                problems.append(
                    GraphProblem(f"depends_on: unknown module {module!r}", module=module)
                )
            if source not in specs:
                problems.append(
                    GraphProblem(f"depends_on: unknown module {source!r}", module=source)
                )
            elif (
                cls := _module_class(specs[source])
            ) is None or cls.kind is not ModuleKind.SOURCE:
                problems.append(
                    GraphProblem(
                        f"depends_on: {module!r} can only wait for a source, and {source!r} "
                        "is not one",
                        module=source,
                    )
                )
        problems.extend(_remote_problems(self._links, specs, self.shared))
        grouped: dict[str, str] = {}
        for group in self._groups:
            if group.name in names or group.name in {
                g.name for g in self._groups[: self._groups.index(group)]
            }:
                problems.append(
                    GraphProblem(
                        f"group {group.name!r}: the name is already used", module=group.name
                    )
                )
            if not group.members:
                problems.append(GraphProblem(f"group {group.name!r} has no members"))
            for member in group.members:
                if member not in names:
                    problems.append(
                        GraphProblem(
                            f"group {group.name!r}: unknown module {member!r}", module=member
                        )
                    )
                elif member in grouped:
                    problems.append(
                        GraphProblem(
                            f"module {member!r} is in groups {grouped[member]!r} and "
                            f"{group.name!r}; a module has one supervisor",
                            module=member,
                        )
                    )
                else:
                    grouped[member] = group.name
        return problems

    def warnings(self) -> list[str]:
        """Options that are valid but have no effect, in sentences naming the link."""
        return [
            f"link {link.name}: latest_only has no effect with workers=0 (spawn mode): "
            "every item gets a task at once, so none is ever pending"
            for link in self._links
            if link.latest_only and link.workers == 0
        ]

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


def _remote_problems(
    links: Iterable[LinkSpec], specs: Mapping[str, ModuleSpec], shared: set[str]
) -> list[GraphProblem]:
    """Remote links keep the guarantees of a local link: bounded, ordered, nothing
    dropped; the options that would break them are refused, naming the link."""
    problems = []
    for link in links:
        if link.remote is None:
            continue
        refused = [
            reason
            for reason, present in (
                ("feedback", link.feedback),
                (
                    f"workers={link.workers} (scale out with Graph.share instead)",
                    link.workers != 1,
                ),
                (f"overflow={link.overflow.value!r}", link.overflow is not Overflow.BLOCK),
                ("latest_only", link.latest_only),
            )
            if present
        ]
        if refused:
            problems.append(
                GraphProblem(
                    f"link {link.name}: a remote link cannot be {', '.join(refused)}",
                    module=link.target,
                    port=link.target_port,
                )
            )
    for module in sorted(shared):
        if module not in specs:
            problems.append(GraphProblem(f"share: unknown module {module!r}", module=module))
            continue
        sending = [link.name for link in links if link.source == module and link.remote]
        if sending:
            problems.append(
                GraphProblem(
                    f"module {module!r} is shared and sends on remote link {sending[0]}: "
                    "each instance would end that stream for all; link it locally to a "
                    "module that runs with it, or do not share it",
                    module=module,
                )
            )
        local = [link.name for link in links if link.target == module and link.remote is None]
        fed = any(link.target == module for link in links)
        if local or not fed:
            why = f"its input link {local[0]} is local" if local else "it has no input link"
            problems.append(
                GraphProblem(
                    f"module {module!r} is shared, but {why}: a shared module takes its "
                    "items from remote links only",
                    module=module,
                )
            )
    return problems


def _find_problems(
    modules: Iterable[ModuleSpec],
    links: Iterable[LinkSpec],
    dead_letter_target: tuple[str, str] | None = None,
) -> list[GraphProblem]:
    problems: list[GraphProblem] = []
    specs: dict[str, ModuleSpec] = {}
    inputs: dict[str, dict[str, Port]] = {}
    outputs: dict[str, dict[str, Port]] = {}

    for spec in modules:
        name = spec.name
        if not isinstance(name, str) or not name or "." in name or name != name.strip():
            problems.append(
                GraphProblem(
                    f"module name {name!r} is invalid: use a non-empty name without '.' "
                    "or surrounding spaces",
                    module=str(name),
                )
            )
            continue
        if name in specs:
            problems.append(GraphProblem(f"module {name!r} is declared twice", module=name))
            continue
        specs[name] = spec
        if _module_class(spec) is None:
            problems.append(
                GraphProblem(
                    f"module {name!r}: {spec.factory!r} is not a subclass of "
                    "actorflow.Source, Processor or Sink",
                    module=name,
                )
            )
            continue
        try:
            inputs[name] = spec.input_ports()
            outputs[name] = spec.output_ports()
        except TypeError as exc:
            problems.append(GraphProblem(str(exc), module=name))

    seen_links: set[tuple[str, str, str, str]] = set()
    fed: set[tuple[str, str]] = set()
    for link in links:
        key = (link.source, link.source_port, link.target, link.target_port)
        if key in seen_links:
            problems.append(
                GraphProblem(
                    f"link {link.name} is declared twice",
                    module=link.target,
                    port=link.target_port,
                )
            )
            continue
        seen_links.add(key)
        src_port = _resolve_port(
            link.source, link.source_port, "output", specs, outputs, link, problems
        )
        dst_port = _resolve_port(
            link.target, link.target_port, "input", specs, inputs, link, problems
        )
        if dst_port is not None:
            fed.add((link.target, link.target_port))
        if (
            src_port is not None
            and dst_port is not None
            and not is_compatible(src_port.type, dst_port.type)
        ):
            problems.append(
                GraphProblem(
                    f"link {link.name}: output port {link.source}.{link.source_port} "
                    f"produces {describe_type(src_port.type)}, but input port "
                    f"{link.target}.{link.target_port} accepts "
                    f"{describe_type(dst_port.type)}",
                    module=link.target,
                    port=link.target_port,
                )
            )

    if dead_letter_target is not None:
        dl_module, dl_port = dead_letter_target
        if dl_module not in specs:
            problems.append(
                GraphProblem(f"dead_letters: unknown module {dl_module!r}", module=dl_module)
            )
        elif dl_module in inputs and dl_port not in inputs[dl_module]:
            known = ", ".join(repr(p) for p in inputs[dl_module]) or "none"
            problems.append(
                GraphProblem(
                    f"dead_letters: module {dl_module!r} has no input port {dl_port!r} "
                    f"(input ports: {known})",
                    module=dl_module,
                    port=dl_port,
                )
            )
        else:
            fed.add(dead_letter_target)

    real_inputs = {link.target for link in links if not link.feedback}
    problems.extend(
        GraphProblem(
            f"module {link.target!r}: every input link is a feedback link, so its end of "
            "stream would come at once; give it a non-feedback input",
            module=link.target,
        )
        for link in {link.target: link for link in links if link.feedback}.values()
        if link.target in specs and link.target not in real_inputs
    )

    problems.extend(
        GraphProblem(
            f"link {link.name}: module {link.target!r} is sequential (it never handles two "
            f"items at once), so the link cannot use workers={link.workers}",
            module=link.target,
            port=link.target_port,
        )
        for link in links
        if link.workers != 1
        and link.target in specs
        and (cls := _module_class(specs[link.target])) is not None
        and cls.sequential
    )

    for name, ports in inputs.items():
        for port_name, port in ports.items():
            if port.required and (name, port_name) not in fed:
                problems.append(
                    GraphProblem(
                        f"module {name!r}: required input port {port_name!r} has no link",
                        module=name,
                        port=port_name,
                    )
                )

    valid_links = [
        link
        for link in links
        if link.source_port in outputs.get(link.source, {})
        and link.target_port in inputs.get(link.target, {})
    ]
    problems.extend(
        GraphProblem(
            "cycle " + " -> ".join([*cycle, cycle[0]]) + ": mark one of its links "
            "feedback=True to allow it",
            module=cycle[0],
        )
        for cycle in _find_cycles(list(specs), valid_links)
    )
    return problems


def _resolve_port(
    module: str,
    port: str,
    direction: str,
    specs: Mapping[str, ModuleSpec],
    ports: Mapping[str, Mapping[str, Port]],
    link: LinkSpec,
    problems: list[GraphProblem],
) -> Port | None:
    if module not in specs:
        problems.append(
            GraphProblem(f"link {link.name}: unknown module {module!r}", module=module)
        )
        return None
    if module not in ports:
        return None  # the module itself is broken; already reported
    found = ports[module].get(port)
    if found is None:
        known = ", ".join(repr(p) for p in ports[module]) or "none"
        problems.append(
            GraphProblem(
                f"link {link.name}: module {module!r} has no {direction} port {port!r} "
                f"({direction} ports: {known})",
                module=module,
                port=port,
            )
        )
    return found


def _edges(names: Iterable[str], links: Iterable[LinkSpec]) -> dict[str, list[str]]:
    successors: dict[str, list[str]] = {name: [] for name in names}
    for link in links:
        if link.feedback or link.source not in successors or link.target not in successors:
            continue
        if link.target not in successors[link.source]:
            successors[link.source].append(link.target)
    return successors


def _find_cycles(names: list[str], links: Iterable[LinkSpec]) -> list[list[str]]:
    """One representative cycle per strongly connected component (Tarjan's algorithm)."""
    successors = _edges(names, links)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        # Iterative DFS so deep pipelines cannot hit the recursion limit.
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = successors[node]
            if child_index < len(children):
                work.append((node, child_index + 1))
                child = children[child_index]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors[node]:
                    cycles.append(_cycle_through(component, successors))

    for name in names:
        if name not in index:
            visit(name)
    return cycles


def _cycle_through(component: list[str], successors: Mapping[str, list[str]]) -> list[str]:
    """A simple cycle inside a strongly connected component, for the error message."""
    members = set(component)
    order = {name: i for i, name in enumerate(successors)}
    start = min(component, key=order.__getitem__)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = next(s for s in successors[node] if s in members)
        if nxt == start or nxt in seen:
            return path[path.index(nxt) :] if nxt != start else path
        path.append(nxt)
        seen.add(nxt)
        node = nxt


def _consumers_first(modules: Iterable[ModuleSpec], links: Iterable[LinkSpec]) -> list[str]:
    """Kahn's algorithm on the reversed edges, so ties keep declaration order."""
    names = [spec.name for spec in modules]
    position = {name: i for i, name in enumerate(names)}
    successors = _edges(names, links)
    predecessors: dict[str, list[str]] = {name: [] for name in names}
    for source, targets in successors.items():
        for target in targets:
            predecessors[target].append(source)
    pending = {name: len(targets) for name, targets in successors.items()}
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
