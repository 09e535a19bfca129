"""Every rule a graph must follow, one small function each, in one list.

:meth:`Graph.problems` (and so graph files, which build a :class:`Graph`) asks
:func:`graph_problems`; a system started with ``only=`` (``actorflow run --only``) also asks
:func:`placement_problems`. A rule takes the :class:`_Facts` worked out once from the
declarations and yields a :class:`GraphProblem` for each thing it finds wrong, in a
sentence that names the module, port or link at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

from ._checks import clip, did_you_mean, short
from ._exceptions import GraphProblem
from ._hooks import HookStyle, hook_style
from ._module import Module, ModuleKind, kind_problem, missing_hook, settings_problems
from ._ports import Port, describe_type, is_compatible
from ._specs import GroupSpec, LinkSpec, ModuleSpec, Overflow

__all__ = [
    "GRAPH_RULES",
    "PLACEMENT_RULES",
    "Declarations",
    "PlacedGraph",
    "graph_problems",
    "graph_warnings",
    "placement_problems",
]


@attrs.frozen
class Declarations:
    """What a graph declares, as the rules read it (a snapshot, not the builder)."""

    modules: Sequence[ModuleSpec]
    links: Sequence[LinkSpec]
    dead_letter_target: tuple[str, str] | None = None
    supervised: Collection[str] = ()
    """Modules named by ``Graph.supervise``."""
    dependencies: Sequence[tuple[str, str, float]] = ()
    shared: Collection[str] = ()
    groups: Sequence[GroupSpec] = ()


def _module_class(spec: ModuleSpec) -> type[Module] | None:
    """The spec's factory if it is a module class (a rule reports it otherwise)."""
    factory: Any = spec.factory
    return factory if isinstance(factory, type) and issubclass(factory, Module) else None


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and "." not in name and name == name.strip()


@attrs.frozen
class _Facts:
    """What every rule needs, worked out once from the declarations.

    Attributes:
        declared: Every declared module by name (the last declaration wins).
        specs: The first declaration of each validly named module.
        classes: Those of ``specs`` whose factory is a module class.
        inputs: Input ports of the modules whose ports could be read.
        outputs: Output ports of the modules whose ports could be read.
        bad_ports: Why the ports of a module could not be read.
        links: Each link once, as first declared.
        fed: ``(module, port)`` pairs that a link or the dead letters feed.
    """

    decl: Declarations
    declared: dict[str, ModuleSpec]
    specs: dict[str, ModuleSpec]
    classes: dict[str, type[Module]]
    inputs: dict[str, dict[str, Port]]
    outputs: dict[str, dict[str, Port]]
    bad_ports: dict[str, TypeError]
    links: list[LinkSpec]
    fed: set[tuple[str, str]]


def _facts(decl: Declarations) -> _Facts:
    specs: dict[str, ModuleSpec] = {}
    for spec in decl.modules:
        if _valid_name(spec.name) and spec.name not in specs:
            specs[spec.name] = spec
    classes = {
        name: cls
        for name, spec in specs.items()
        if (cls := _module_class(spec)) and kind_problem(cls) is None
    }
    inputs: dict[str, dict[str, Port]] = {}
    outputs: dict[str, dict[str, Port]] = {}
    bad_ports: dict[str, TypeError] = {}
    for name in classes:
        try:
            inputs[name] = specs[name].input_ports()
            outputs[name] = specs[name].output_ports()
        except TypeError as exc:
            bad_ports[name] = exc
    unique: dict[tuple[str, str, str, str], LinkSpec] = {}
    for link in decl.links:
        unique.setdefault(_link_key(link), link)
    links = list(unique.values())
    fed = {
        (link.target, link.target_port)
        for link in links
        if _port(link, inputs, "target") is not None
    }
    target = decl.dead_letter_target
    if target is not None and _dead_letter_problem(target, specs, inputs) is None:
        fed.add(target)
    declared = {spec.name: spec for spec in decl.modules}
    return _Facts(decl, declared, specs, classes, inputs, outputs, bad_ports, links, fed)


def _link_key(link: LinkSpec) -> tuple[str, str, str, str]:
    return (link.source, link.source_port, link.target, link.target_port)


def _port(
    link: LinkSpec, ports: Mapping[str, Mapping[str, Port]], end: str = "source"
) -> Port | None:
    module, port = (
        (link.source, link.source_port) if end == "source" else (link.target, link.target_port)
    )
    return ports.get(module, {}).get(port)


Rule = Callable[[_Facts], Iterable[GraphProblem]]


# -- modules -----------------------------------------------------------------------------


def _module_names(facts: _Facts) -> Iterator[GraphProblem]:
    """A module name is non-empty, without '.' and without surrounding spaces."""
    for spec in facts.decl.modules:
        if not _valid_name(spec.name):
            yield GraphProblem(
                f"module name {short(spec.name)} is invalid: use a non-empty name without '.' "
                "or surrounding spaces",
                module=str(spec.name),
            )


def _modules_declared_once(facts: _Facts) -> Iterator[GraphProblem]:
    seen: set[str] = set()
    for spec in facts.decl.modules:
        if not _valid_name(spec.name):
            continue
        if spec.name in seen:
            yield GraphProblem(f"module {short(spec.name)} is declared twice", module=spec.name)
        seen.add(spec.name)


def _module_classes(facts: _Facts) -> Iterator[GraphProblem]:
    for name, spec in facts.specs.items():
        if name in facts.classes:
            continue
        cls = _module_class(spec)
        problem = kind_problem(cls) if cls is not None else None
        if problem is not None:
            yield GraphProblem(f"module {name!r}: {problem}", module=name)
        else:
            yield GraphProblem(
                f"module {short(name)}: {short(spec.factory)} is not a subclass of "
                "actorflow.Source, Processor or Sink",
                module=name,
            )


def _required_hooks(facts: _Facts) -> Iterator[GraphProblem]:
    for name, cls in facts.classes.items():
        missing = missing_hook(cls)
        if missing is None:
            continue
        hook, close = missing
        hint = f"; did you mean to name {close}() {hook}()?" if close else ""
        yield GraphProblem(
            f"module {short(name)}: {cls.__qualname__} does not define {hook}(), which a "
            f"{cls.kind.value} must{hint}",
            module=name,
        )


def _module_settings(facts: _Facts) -> Iterator[GraphProblem]:
    """A hook the runtime calls is callable; each setting is within its bounds."""
    for name, cls in facts.classes.items():
        for problem in settings_problems(cls):
            yield GraphProblem(f"module {name!r}: {problem}", module=name)


_PRODUCING_HOOKS = {ModuleKind.SOURCE: "start", ModuleKind.PROCESSOR: "process"}


def _main_ports(facts: _Facts) -> Iterator[GraphProblem]:
    """What a generator hook yields goes to the main output port (``out``, or the only
    output port): a module whose generator has no such port could send nothing."""
    for name, cls in facts.classes.items():
        outputs = facts.outputs.get(name)
        hook = _PRODUCING_HOOKS.get(cls.kind)
        if outputs is None or hook is None or "out" in outputs or len(outputs) == 1:
            continue
        fn = getattr(cls, hook, None)
        if not callable(fn) or hook_style(fn) not in (HookStyle.SYNC_GEN, HookStyle.ASYNC_GEN):
            continue
        known = ", ".join(repr(port) for port in outputs) or "none"
        yield GraphProblem(
            f"module {name!r}: {cls.__qualname__}.{hook}() is a generator, and what it "
            f"yields goes to the main output port, 'out' or the only one, but "
            f"{cls.__qualname__} has none (output ports: {known}): name a port 'out', "
            "or send with `await self.emit(item, port)`",
            module=name,
        )


def _port_names(facts: _Facts) -> Iterator[GraphProblem]:
    for name, exc in facts.bad_ports.items():
        yield GraphProblem(str(exc), module=name)


# -- links -------------------------------------------------------------------------------


def _links_declared_once(facts: _Facts) -> Iterator[GraphProblem]:
    seen: set[tuple[str, str, str, str]] = set()
    for link in facts.decl.links:
        if _link_key(link) in seen:
            yield GraphProblem(
                f"link {clip(link.name)} is declared twice",
                module=link.target,
                port=link.target_port,
            )
        seen.add(_link_key(link))


def _unknown(where: str, module: str, known: Iterable[str]) -> GraphProblem:
    """``module`` names no declared module: say so, with the closest declared name."""
    return GraphProblem(
        f"{where}: unknown module {short(module)}{did_you_mean(module, known)}", module=module
    )


def _link_ends(facts: _Facts) -> Iterator[GraphProblem]:
    """Both ends of a link name a declared module and one of its ports."""
    for link in facts.links:
        yield from _end_problem(facts, link, link.source, link.source_port, "output")
        yield from _end_problem(facts, link, link.target, link.target_port, "input")


def _end_problem(
    facts: _Facts, link: LinkSpec, module: str, port: str, direction: str
) -> Iterator[GraphProblem]:
    if module not in facts.specs:
        yield _unknown(f"link {clip(link.name)}", module, facts.specs)
        return
    ports = (facts.outputs if direction == "output" else facts.inputs).get(module)
    if ports is not None and port not in ports:  # None: the module is broken, reported
        known = ", ".join(repr(p) for p in ports) or "none"
        yield GraphProblem(
            f"link {clip(link.name)}: module {short(module)} has no {direction} port "
            f"{short(port)} "
            f"({direction} ports: {known}){did_you_mean(port, ports)}",
            module=module,
            port=port,
        )


def _link_types(facts: _Facts) -> Iterator[GraphProblem]:
    """What the output port produces, the input port accepts."""
    for link in facts.links:
        produced = _port(link, facts.outputs, "source")
        accepted = _port(link, facts.inputs, "target")
        if produced is None or accepted is None:
            continue
        if not is_compatible(produced.type, accepted.type):
            yield GraphProblem(
                f"link {clip(link.name)}: output port "
                f"{clip(link.source + '.' + link.source_port)} "
                f"produces {describe_type(produced.type)}, but input port "
                f"{clip(link.target + '.' + link.target_port)} "
                f"accepts {describe_type(accepted.type)}",
                module=link.target,
                port=link.target_port,
            )


def _dead_letter_problem(
    target: tuple[str, str],
    specs: Mapping[str, ModuleSpec],
    inputs: Mapping[str, Mapping[str, Port]],
) -> GraphProblem | None:
    module, port = target
    if module not in specs:
        return _unknown("dead_letters", module, specs)
    if module in inputs and port not in inputs[module]:
        known = ", ".join(repr(p) for p in inputs[module]) or "none"
        return GraphProblem(
            f"dead_letters: module {short(module)} has no input port {short(port)} "
            f"(input ports: {known}){did_you_mean(port, inputs[module])}",
            module=module,
            port=port,
        )
    return None


def _dead_letters(facts: _Facts) -> Iterator[GraphProblem]:
    target = facts.decl.dead_letter_target
    if target is not None:
        problem = _dead_letter_problem(target, facts.specs, facts.inputs)
        if problem is not None:
            yield problem


def _feedback_only_inputs(facts: _Facts) -> Iterator[GraphProblem]:
    """A module fed only by feedback links would see its end of stream at once."""
    links = facts.decl.links
    real_inputs = {link.target for link in links if not link.feedback}
    feedback = {link.target: link for link in links if link.feedback}
    for target in feedback:
        if target in facts.specs and target not in real_inputs:
            yield GraphProblem(
                f"module {short(target)}: every input link is a feedback link, so its end of "
                "stream would come at once; give it a non-feedback input",
                module=target,
            )


def _workers_into_sequential(facts: _Facts) -> Iterator[GraphProblem]:
    for link in facts.decl.links:
        cls = facts.classes.get(link.target)
        if link.workers != 1 and cls is not None and cls.sequential:
            yield GraphProblem(
                f"link {clip(link.name)}: module {short(link.target)} is sequential "
                "(it never handles "
                f"two items at once), so the link cannot use workers={link.workers}",
                module=link.target,
                port=link.target_port,
            )


def _required_inputs(facts: _Facts) -> Iterator[GraphProblem]:
    for name, ports in facts.inputs.items():
        for port_name, port in ports.items():
            if port.required and (name, port_name) not in facts.fed:
                yield GraphProblem(
                    f"module {short(name)}: required input port {short(port_name)} has no link",
                    module=name,
                    port=port_name,
                )


def _cycles(facts: _Facts) -> Iterator[GraphProblem]:
    """A cycle is allowed only through a feedback link."""
    valid = [
        link
        for link in facts.decl.links
        if _port(link, facts.outputs, "source") is not None
        and _port(link, facts.inputs, "target") is not None
    ]
    for cycle in find_cycles(list(facts.specs), valid):
        yield GraphProblem(
            "cycle " + " -> ".join([*cycle, cycle[0]]) + ": mark one of its links "
            "feedback=True to allow it",
            module=cycle[0],
        )


# -- supervision and readiness -----------------------------------------------------------


def _supervised_modules(facts: _Facts) -> Iterator[GraphProblem]:
    for module in facts.decl.supervised:
        if module not in facts.declared:
            yield _unknown("supervise", module, facts.declared)


def _dependencies(facts: _Facts) -> Iterator[GraphProblem]:
    """``depends_on`` names two declared modules, and the awaited one is a source."""
    declared = facts.declared
    for module, source, _ in facts.decl.dependencies:
        if module not in declared:
            yield _unknown("depends_on", module, declared)
        if source not in declared:
            yield _unknown("depends_on", source, declared)
        elif getattr(_module_class(declared[source]), "kind", None) is not ModuleKind.SOURCE:
            yield GraphProblem(
                f"depends_on: {short(module)} can only wait for a source, and "
                f"{short(source)} is not one",
                module=source,
            )


def _dependency_cycles(facts: _Facts) -> Iterator[GraphProblem]:
    """No module waits, through ``depends_on``, for itself: it would never be ready."""
    waits_for: dict[str, list[str]] = {name: [] for name in facts.declared}
    for module, source, _ in facts.decl.dependencies:
        if module in waits_for and source in waits_for and source not in waits_for[module]:
            waits_for[module].append(source)
    for cycle in cycles_in(waits_for):
        if len(cycle) == 1:
            yield GraphProblem(
                f"depends_on: module {short(cycle[0])} cannot depend on itself: it would "
                "wait for ever for its own readiness",
                module=cycle[0],
            )
            continue
        yield GraphProblem(
            "depends_on cycle "
            + " -> ".join(short(name) for name in [*cycle, cycle[0]])
            + ": each waits for the next to be ready, so none ever is; remove one of them",
            module=cycle[0],
        )


def _groups(facts: _Facts) -> Iterator[GraphProblem]:
    """A group has a fresh name and members, and a module is in one group at most."""
    grouped: dict[str, str] = {}
    seen: set[str] = set()
    for group in facts.decl.groups:
        if group.name in facts.declared or group.name in seen:
            yield GraphProblem(
                f"group {short(group.name)}: the name is already used", module=group.name
            )
        seen.add(group.name)
        if not group.members:
            yield GraphProblem(f"group {short(group.name)} has no members")
        for member in group.members:
            if member not in facts.declared:
                yield _unknown(f"group {short(group.name)}", member, facts.declared)
            elif member in grouped:
                yield GraphProblem(
                    f"module {short(member)} is in groups {short(grouped[member])} and "
                    f"{short(group.name)}; a module has one supervisor",
                    module=member,
                )
            else:
                grouped[member] = group.name


# -- remote links and shared modules -----------------------------------------------------


def _remote_link_options(facts: _Facts) -> Iterator[GraphProblem]:
    """Remote links keep the guarantees of a local link: bounded, ordered, nothing
    dropped; the options that would break them are refused, naming the link."""
    for link in facts.decl.links:
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
                (f"overflow={short(link.overflow.value)}", link.overflow is not Overflow.BLOCK),
                ("latest_only", link.latest_only),
            )
            if present
        ]
        if refused:
            yield GraphProblem(
                f"link {clip(link.name)}: a remote link cannot be {', '.join(refused)}",
                module=link.target,
                port=link.target_port,
            )


def _shared_modules(facts: _Facts) -> Iterator[GraphProblem]:
    """A shared module takes every item from remote links and sends none on one."""
    links = facts.decl.links
    for module in sorted(facts.decl.shared):
        if module not in facts.declared:
            yield _unknown("share", module, facts.declared)
            continue
        sending = [link.name for link in links if link.source == module and link.remote]
        if sending:
            yield GraphProblem(
                f"module {short(module)} is shared and sends on remote link {clip(sending[0])}: "
                "each instance would end that stream for all; link it locally to a "
                "module that runs with it, or do not share it",
                module=module,
            )
        local = [link.name for link in links if link.target == module and link.remote is None]
        if local or not any(link.target == module for link in links):
            why = f"its input link {local[0]} is local" if local else "it has no input link"
            yield GraphProblem(
                f"module {short(module)} is shared, but {why}: a shared module takes its "
                "items from remote links only",
                module=module,
            )


GRAPH_RULES: tuple[Rule, ...] = (
    _module_names,
    _modules_declared_once,
    _module_classes,
    _required_hooks,
    _module_settings,
    _port_names,
    _main_ports,
    _links_declared_once,
    _link_ends,
    _link_types,
    _dead_letters,
    _feedback_only_inputs,
    _workers_into_sequential,
    _required_inputs,
    _cycles,
    _supervised_modules,
    _dependencies,
    _dependency_cycles,
    _remote_link_options,
    _shared_modules,
    _groups,
)
"""Every rule of a graph, in the order their problems are listed."""


def graph_problems(decl: Declarations) -> list[GraphProblem]:
    """Every problem in the declarations, rule by rule; empty when the graph is valid."""
    facts = _facts(decl)
    return [problem for rule in GRAPH_RULES for problem in rule(facts)]


def graph_warnings(decl: Declarations) -> list[str]:
    """Options that are valid but have no effect, in sentences naming the link."""
    return [
        f"link {clip(link.name)}: latest_only has no effect with workers=0 (spawn mode): "
        "every item gets a task at once, so none is ever pending"
        for link in decl.links
        if link.latest_only and link.workers == 0
    ]


# -- placement: a graph split across processes -------------------------------------------


class PlacedGraph(Protocol):
    """What placement reads of a graph (a :class:`Graph` is one)."""

    @property
    def modules(self) -> Sequence[ModuleSpec]: ...

    @property
    def links(self) -> Sequence[LinkSpec]: ...

    @property
    def dependencies(self) -> Sequence[tuple[str, str, float]]: ...


@attrs.frozen
class _Placement:
    graph: PlacedGraph
    only: Collection[str]
    here: frozenset[str]
    remote_url: str | None


PlacementRule = Callable[[_Placement], Iterable[GraphProblem]]


def _only_names(place: _Placement) -> Iterator[GraphProblem]:
    names = {spec.name for spec in place.graph.modules}
    for name in place.only:
        if name not in names:
            yield _unknown("only", name, names)


def _crossing_links(place: _Placement) -> Iterator[GraphProblem]:
    """A link between a module that runs here and one that does not must be remote."""
    here = place.here
    for spec in place.graph.links:
        if (spec.source in here) != (spec.target in here) and spec.remote is None:
            yield GraphProblem(
                f"link {spec.name} joins a module that runs here to one that does "
                "not; make it remote (remote=...) so that it can cross processes",
                module=spec.target,
                port=spec.target_port,
            )


def _remote_urls(place: _Placement) -> Iterator[GraphProblem]:
    """A remote link with an end here needs a Redis URL, its own or the settings'."""
    here = place.here
    for spec in place.graph.links:
        if (
            spec.remote is not None
            and (spec.source in here or spec.target in here)
            and (spec.remote.url or place.remote_url) is None
        ):
            yield GraphProblem(
                f"link {spec.name} is remote but names no Redis URL: give it "
                "remote='redis://...' or set Settings.remote_url",
                module=spec.target,
                port=spec.target_port,
            )


def _local_readiness(place: _Placement) -> Iterator[GraphProblem]:
    for module, source, _ in place.graph.dependencies:
        if module in place.here and source not in place.here:
            yield GraphProblem(
                f"depends_on: {short(module)} waits for {short(source)}, which does not run "
                "here; readiness does not cross processes",
                module=module,
            )


PLACEMENT_RULES: tuple[PlacementRule, ...] = (
    _only_names,
    _crossing_links,
    _remote_urls,
    _local_readiness,
)
"""Every rule of a graph run in part here (``only=``), in the order they are listed."""


def placement_problems(
    graph: PlacedGraph, only: Collection[str] | None, remote_url: str | None
) -> list[GraphProblem]:
    """What makes ``graph`` unable to run split across processes as asked.

    Args:
        graph: The graph (valid as a whole).
        only: The modules that run in this process; ``None`` for all of them.
        remote_url: ``Settings.remote_url``, for remote links that name no URL.
    """
    names = [spec.name for spec in graph.modules]
    here = frozenset(name for name in names if only is None or name in only)
    place = _Placement(graph, tuple(only or ()), here, remote_url)
    return [problem for rule in PLACEMENT_RULES for problem in rule(place)]


# -- graph algorithms the rules and the start order share --------------------------------


def successors(names: Iterable[str], links: Iterable[LinkSpec]) -> dict[str, list[str]]:
    """Each module's consumers through non-feedback links, in declaration order."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for link in links:
        if link.feedback or link.source not in found or link.target not in found:
            continue
        if link.target not in found[link.source]:
            found[link.source].append(link.target)
    return found


def find_cycles(names: list[str], links: Iterable[LinkSpec]) -> list[list[str]]:
    """One representative cycle per strongly connected component of the links."""
    return cycles_in(successors(names, links))


def cycles_in(following: Mapping[str, list[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component (Tarjan's algorithm) of
    the graph ``following`` (each node's successors; every node is a key)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []

    def close(node: str) -> None:
        component: list[str] = []
        while True:
            member = stack.pop()
            on_stack.discard(member)
            component.append(member)
            if member == node:
                break
        if len(component) > 1 or node in following[node]:
            cycles.append(_cycle_through(component, following))

    def visit(root: str) -> None:
        # Iterative DFS so deep pipelines cannot hit the recursion limit.
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = following[node]
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
                close(node)

    for name in following:
        if name not in index:
            visit(name)
    return cycles


def _cycle_through(component: list[str], following: Mapping[str, list[str]]) -> list[str]:
    """A simple cycle inside a strongly connected component, for the error message."""
    members = set(component)
    order = {name: i for i, name in enumerate(following)}
    start = min(component, key=order.__getitem__)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = next(s for s in following[node] if s in members)
        if nxt == start or nxt in seen:
            return path[path.index(nxt) :] if nxt != start else path
        path.append(nxt)
        seen.add(nxt)
        node = nxt
