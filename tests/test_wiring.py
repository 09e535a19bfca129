"""Wiring: how a running graph's actors are joined — links and copiers, ancestors, dead
letters and the supervisor tree — before anything starts."""

from __future__ import annotations

import pytest
from sample_modules import Add, Collect, Numbers

import actorflow as af
from actorflow._logging import get_logger
from actorflow._wiring import Wiring


def wired(graph: af.Graph, here: set[str] | None = None) -> Wiring:
    """The wiring of ``graph`` with every module (or those ``here``) constructed."""
    names = {spec.name for spec in graph.modules} if here is None else here
    wiring = Wiring(graph, af.Settings(), frozenset(names), get_logger(graph=graph.name))
    for spec in graph.modules:
        if spec.name in names:
            wiring.add_actor(spec, spec.factory(**spec.config), lambda: False)
    wiring.wire(None)
    return wiring


def test_links_join_producers_to_consumers_and_ancestors_count_everything_upstream() -> None:
    """Every link is in the producer's outputs and feeds the consumer's mailbox; an
    actor's ancestors are every actor upstream of it, however far."""
    graph = af.Graph(name="chain")
    graph.add("src", Numbers, count=3)
    graph.add("a", Add)
    graph.add("b", Add)
    graph.add("k", Collect, into=[])
    graph.chain("src", "a", "b", "k")
    wiring = wired(graph)
    assert [link.name for link in wiring.links] == [spec.name for spec in graph.links]
    for link in wiring.links:
        assert link in wiring.actors[link.spec.source].outputs[link.spec.source_port]
        assert link.mailbox is wiring.actors[link.spec.target].mailbox
    assert {name: actor.ancestors for name, actor in wiring.actors.items()} == {
        "src": 0,
        "a": 1,
        "b": 2,
        "k": 3,
    }


def test_a_port_with_several_links_copies_for_each_and_removal_recomputes() -> None:
    """Fan-out copies an item for every link; when one is disconnected, the one left
    needs no copy any more."""
    graph = af.Graph()
    graph.add("src", Numbers)
    graph.add("k1", Collect, into=[])
    graph.add("k2", Collect, into=[])
    graph.link("src", "k1")
    graph.link("src", "k2")
    wiring = wired(graph)
    outputs = wiring.actors["src"].outputs["out"]
    assert all(link.copier is not None for link in outputs)
    wiring.disconnect("src.out -> k2.in")
    assert [link.copier for link in outputs] == [None]


def test_an_unknown_link_or_the_dead_letter_link_cannot_be_disconnected() -> None:
    """Only links of the graph can be removed; the message names the ones there are."""
    graph = af.Graph()
    graph.add("src", Numbers)
    graph.add("k", Collect, into=[])
    graph.add("dlq", Collect, into=[])
    graph.link("src", "k")
    graph.dead_letters("dlq")
    wiring = wired(graph)
    assert wiring.dead_letter_link is not None
    with pytest.raises(KeyError, match=r"no link '<dead letters>.out -> dlq.in'.*src.out"):
        wiring.disconnect(wiring.dead_letter_link.name)
    assert wiring.dead_letter_waits_for == {"src", "k"}


def test_the_tree_puts_groups_where_their_first_member_starts() -> None:
    """Consumers start before producers; a group is one child, placed by its members."""
    graph = af.Graph(name="tree")
    graph.add("src", Numbers)
    graph.add("a", Add)
    graph.add("k", Collect, into=[])
    graph.chain("src", "a", "k")
    graph.group("middle", ["a"])
    wiring = wired(graph)
    root = wiring.supervisors["tree"]
    assert [child.name for child in root.which_children()] == ["k", "middle", "src"]
    assert set(wiring.supervisors) == {"tree", "middle"}


def test_only_the_modules_here_get_actors() -> None:
    """A split graph wires the modules that run here and nothing else."""
    graph = af.Graph()
    graph.add("src", Numbers)
    graph.add("k", Collect, into=[])
    graph.link("src", "k", remote="redis://127.0.0.1:1/0")
    wiring = wired(graph, {"k"})
    assert list(wiring.actors) == ["k"]
    assert [pump.statistics().sending for pump in wiring.pumps] == [False]
    assert wiring.links == [wiring.pumps[0].link]
