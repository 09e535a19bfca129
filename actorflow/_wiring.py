"""How a running graph's parts are joined: actors, links and their copiers, the pumps of
remote links, upstream counts, dead letters, and the supervisor tree.

A :class:`Wiring` is owned by one :class:`~actorflow.System`; every join between actors
is made (and unmade) here, so the system itself only starts, watches and stops them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Set
from typing import TYPE_CHECKING

import attrs
import trio

from ._actor import Actor, DeadLetter
from ._actor._priority import interactions_of
from ._copying import copier_for
from ._graph import Graph
from ._link import Link, NamedLink, RemovedLinks
from ._module import Module, RunningSystem
from ._settings import Settings
from ._specs import LinkSpec, ModuleSpec
from ._status import DropReason, EndReason
from ._supervisor import ChildSpec, Supervisor, Worker
from ._transport import Pump, backend_for

if TYPE_CHECKING:
    import structlog

__all__ = ["Wiring"]

_DEAD_LETTER_HISTORY = 1000


@attrs.define(slots=True, eq=False)
class Wiring:
    """The actors of the modules that run here and every join between them.

    Invariant: every running link is in :attr:`links` and in its producer's outputs (a
    remote link's receiving half has no producer here); a port's copiers always match
    how many links leave it.
    """

    graph: Graph
    settings: Settings
    here: Set[str]
    """The modules that run in this process."""
    log: structlog.typing.FilteringBoundLogger
    """The system's logger."""
    actors: dict[str, Actor] = attrs.field(factory=dict)
    links: list[Link] = attrs.field(factory=list)
    """The links not removed (open, or closed by their producer's end)."""
    retired: dict[str, RemovedLinks] = attrs.field(factory=dict)
    """The links removed under each name: those still draining, and a tally of the
    others, so their counts stay in the status (see :meth:`by_name`)."""
    pumps: list[Pump] = attrs.field(factory=list)
    """What carries remote links to and from their streams."""
    supervisors: dict[str, Supervisor] = attrs.field(factory=dict)
    dead_letters: deque[DeadLetter] = attrs.field(
        factory=lambda: deque(maxlen=_DEAD_LETTER_HISTORY)
    )
    """The most recent dead letters, oldest first."""
    dead_letter_link: Link | None = None
    dead_letter_waits_for: set[str] = attrs.field(factory=set)
    """The actors that could still send a dead letter: the link closes once they end."""
    order: list[str] = attrs.field(factory=list)
    """The actors here in start order (consumers before producers), once wired."""
    _not_yet_ended: list[str] = attrs.field(factory=list)
    """Of :attr:`dead_letter_waits_for`, those not yet seen ended; popped from the end
    as they are, so each termination costs constant time on average, not a scan of all."""
    _ending: dict[str, trio.Event] = attrs.field(factory=dict)
    """Set when the actor of that name ends for good (see :meth:`ended`)."""
    _report_dead_letter: Callable[[DeadLetter], None] = attrs.field(init=False)
    _report_terminated: Callable[[Actor], None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # Bound once, shared by every actor (a bound method made per actor costs 64 bytes).
        self._report_dead_letter = self.dead_letter
        self._report_terminated = self.actor_terminated

    # -- actors --------------------------------------------------------------------------

    def add_actor(self, spec: ModuleSpec, module: Module, stopping: Callable[[], bool]) -> Actor:
        """The actor that runs ``module``, its dead letters and its end reported here."""
        actor = Actor(
            spec,
            module,
            self.settings,
            attempts=self.graph.supervision_of(spec.name).attempts,
            dead_letter=self._report_dead_letter,
            on_terminated=self._report_terminated,
            system_stopping=stopping,
        )
        self.actors[spec.name] = actor
        return actor

    def actor(self, name: str) -> Actor:
        """The actor of module ``name``.

        Raises:
            KeyError: No module of that name runs here.
        """
        actor = self.actors.get(name)
        if actor is None:
            known = ", ".join(repr(n) for n in self.actors) or "none"
            raise KeyError(f"no module {name!r} (modules: {known})")
        return actor

    def wire(self, system: RunningSystem) -> Supervisor:
        """Join the validated actors (dependencies, links, dead letters) and return the
        root of their supervisor tree."""
        for actor in self.actors.values():
            actor.system = system
        for module, source, timeout in self.graph.dependencies:
            if module in self.here:
                self.actors[module].waits_for.append((self.actors[source], timeout))
        feeding: set[tuple[str, str]] = set()
        for spec in self.graph.links:
            if spec.remote is not None:
                self.connect_remote(spec)
            elif spec.source in self.here:
                self.connect(spec, feeding)
        self.count_ancestors()
        interactions_of(system).resolve(self.actors.values())
        self.wire_dead_letters()
        return self.build_tree()

    # -- links ---------------------------------------------------------------------------

    def connect(self, spec: LinkSpec, feeding: set[tuple[str, str]] | None = None) -> Link:
        """Create the running link for ``spec`` and attach it to both actors.

        ``feeding`` holds the ``(producer, consumer)`` pairs already joined while a whole
        graph is wired, so a wide fan-in is not searched once per link.
        """
        producer = self.actors[spec.source]
        consumer = self.actors[spec.target]
        link = Link(spec, spec.buffer or self.settings.default_buffer, consumer.mailbox, None)
        producer.outputs[spec.source_port].append(link)
        self.links.append(link)
        if not spec.feedback:
            if feeding is None:
                new = producer not in consumer.upstream
            else:
                new = (spec.source, spec.target) not in feeding
                feeding.add((spec.source, spec.target))
            if new:
                consumer.upstream.append(producer)
        self.set_copiers(producer, spec.source_port)
        return link

    def disconnect(self, name: str) -> Link:
        """Detach the link called ``name`` from its producer (if that still runs) and
        from the system; it still holds what was sent on it.

        Raises:
            KeyError: There is no such link (the dead-letter link cannot be removed).
        """
        found = [index for index, link in enumerate(self.links) if link.name == name]
        if not found or self.links[found[-1]] is self.dead_letter_link:
            known = ", ".join(repr(k.name) for k in self.links if k is not self.dead_letter_link)
            raise KeyError(f"no link {name!r} (links: {known or 'none'})")
        link = self.links.pop(found[-1])
        self.retired.setdefault(name, RemovedLinks()).add(link)
        producer = self.actors.get(link.spec.source)
        if producer is not None:
            outputs = producer.outputs[link.spec.source_port]
            if link in outputs:
                outputs.remove(link)
                self.set_copiers(producer, link.spec.source_port)
        return link

    def by_name(self) -> dict[str, Link | NamedLink]:
        """Every link as the status lists them, by name: a link removed and added again
        is one entry whose counts add up every link of that name (a removed link's
        counts never leave the status, so ``SystemStatus.dropped`` keeps its drops)."""
        retired = self.retired
        named: dict[str, Link | NamedLink] = {
            name: NamedLink(None, removed) for name, removed in retired.items()
        }
        for link in self.links:
            history = retired.get(link.name)
            named[link.name] = link if history is None else NamedLink(link, history)
        return named

    def set_copiers(self, producer: Actor, port: str) -> None:
        """Copying depends on how many links leave a port: recompute for all of them."""
        links = producer.outputs[port]
        for link in links:
            # A remote link serialises what it carries: that is its copy.
            remote = link.spec.remote is not None
            link.copier = None if remote else copier_for(link.spec.copy, len(links))

    def connect_remote(self, spec: LinkSpec) -> None:
        """The halves of a remote link that run here, and the pumps that carry them."""
        remote = spec.remote
        assert remote is not None
        url = remote.url or self.settings.remote_url
        assert url is not None
        transport = backend_for(url)
        graph = self.graph.name
        if spec.source in self.here:
            producer = self.actors[spec.source]
            bound = spec.buffer or self.settings.default_buffer
            pump = transport.sender(spec, url=url, graph=graph, bound=bound)
            producer.outputs[spec.source_port].append(pump.link)
            self.links.append(pump.link)
            self.set_copiers(producer, spec.source_port)
            self.pumps.append(pump)
        if spec.target in self.here:
            consumer = self.actors[spec.target]
            shared = spec.target in self.graph.shared
            port = consumer.spec.input_ports().get(spec.target_port)
            accepts = object if port is None else port.type
            pump = transport.receiver(
                spec, consumer.mailbox, url=url, graph=graph, shared=shared, accepts=accepts
            )
            self.links.append(pump.link)
            self.pumps.append(pump)

    def count_ancestors(self) -> None:
        """Count each actor's distinct ancestors in one pass, producers first.

        An actor fed by one actor has that actor's ancestors plus it; only where links
        join are ancestor sets united, as bit masks kept until their last reader used
        them. Walking the graph again for every actor made a chain's start quadratic.
        """
        actors = list(self.actors.values())
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

    # -- dead letters --------------------------------------------------------------------

    def wire_dead_letters(self) -> None:
        target = self.graph.dead_letter_target
        if target is not None and target[0] in self.here:
            module, port = target
            spec = LinkSpec("<dead letters>", "out", module, port, copy="none")
            link = Link(spec, self.settings.default_buffer, self.actors[module].mailbox, None)
            self.dead_letter_link = link
            self.links.append(link)
            # The link closes once everything that could still send a dead letter ended:
            # every actor but the receiver and what it feeds (they wait for its end).
            self.dead_letter_waits_for = set(self.actors) - self._downstream_of(module)
            self._not_yet_ended = list(self.dead_letter_waits_for)

    def _downstream_of(self, module: str) -> set[str]:
        """``module`` and every actor here that it feeds, directly or not."""
        downstream = {module}
        to_visit = [module]
        while to_visit:
            for out_links in self.actors[to_visit.pop()].outputs.values():
                for out in out_links:
                    if out.spec.target in self.actors and out.spec.target not in downstream:
                        downstream.add(out.spec.target)
                        to_visit.append(out.spec.target)
        return downstream

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep ``letter`` and send it to the dead-letter module, if there is one."""
        self.dead_letters.append(letter)
        link = self.dead_letter_link
        if link is not None and link.offer([letter]) == 0:
            link.drop(1, DropReason.OVERFLOW)
            self.log.error("link.dropped", link=link.name, reason=DropReason.OVERFLOW, count=1)

    def ended(self, name: str) -> trio.Event:
        """Set once the actor ``name`` has ended for good (at once if it has)."""
        event = self._ending.setdefault(name, trio.Event())
        if self.actor(name).terminated:
            event.set()
        return event

    def actor_terminated(self, actor: Actor) -> None:
        """Close the dead-letter link once nothing else can produce dead letters."""
        ending = self._ending.pop(actor.name, None)
        if ending is not None:
            ending.set()
        link = self.dead_letter_link
        if link is None or link.closed:
            return
        waiting, actors = self._not_yet_ended, self.actors
        while waiting and (waiting[-1] not in actors or actors[waiting[-1]].terminated):
            waiting.pop()
        if not waiting:
            link.close()

    # -- supervision ---------------------------------------------------------------------

    def build_tree(self) -> Supervisor:
        """The root supervisor: groups and ungrouped actors, consumers before producers."""
        graph = self.graph
        order = self.order = [name for name in graph.start_order() if name in self.here]
        position = {name: index for index, name in enumerate(order)}
        grouped = {member for group in graph.groups for member in group.members}
        entries: list[tuple[int, Worker, ChildSpec]] = []
        for group in graph.groups:
            local = [m for m in group.members if m in self.here]
            if not local:
                continue
            members = [(self.actors[m], graph.supervision_of(m).child) for m in local]
            supervisor = Supervisor(group.name, group.spec, members)
            self.supervisors[group.name] = supervisor
            first = min(position[m] for m in local)
            entries.append((first, supervisor, group.child))
        entries.extend(
            (position[name], self.actors[name], graph.supervision_of(name).child)
            for name in order
            if name not in grouped
        )
        entries.sort(key=lambda entry: entry[0])
        root = Supervisor(graph.name, graph.root, [(w, c) for _, w, c in entries])
        self.supervisors[graph.name] = root
        return root

    # -- the end -------------------------------------------------------------------------

    def dropped(self) -> int:
        """Every item lost anywhere, as :attr:`SystemStatus.dropped` counts it, without
        taking a status snapshot of every actor and link."""
        links = self.by_name()  # as the status lists them
        return sum(sum(actor.dropped.values()) for actor in self.actors.values()) + sum(
            sum(link.status().dropped.values()) for link in links.values()
        )

    def finish(self, cancelled: bool) -> None:
        """Terminate what has not ended and count what links still hold as dropped."""
        for actor in self.actors.values():
            if not actor.terminated:
                if not actor.incarnations:
                    actor.terminate(EndReason.NOT_STARTED)
                else:
                    actor.terminate(EndReason.CANCELLED if cancelled else EndReason.SHUTDOWN)
        draining = [link for removed in self.retired.values() for link in removed.draining]
        held = {id(link): link for link in [*self.links, *draining]}
        for actor in self.actors.values():  # removed links still being drained too
            held.update((id(link), link) for link in actor.mailbox.links)
        for link in held.values():
            link.finish_dropping()
            count = link.discard(DropReason.SHUTDOWN)
            if count:
                self.log.warning(
                    "link.dropped", link=link.name, reason=DropReason.SHUTDOWN, count=count
                )
