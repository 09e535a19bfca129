"""The accounting invariant, checked after a run: nothing an actor emitted is lost.

Every item a producer emitted is handled downstream, dead-lettered, or counted in exactly
one ``dropped`` dict with a reason.
"""

from __future__ import annotations

import actorflow as af


def assert_accounted(status: af.SystemStatus, handled: dict[str, int]) -> None:
    """Every emitted item is delivered or dropped on each link; every received item is
    handled, dead-lettered or dropped by its consumer; nothing is left in a link.

    ``handled`` gives, per consumer, how many received items it handled to completion.
    """
    received_from_links: dict[str, int] = {}
    for name, link in status.links.items():
        producer = status.actors[name.split(".")[0]]
        consumer = name.split(" -> ")[1].split(".")[0]
        assert link.depth == 0, name
        assert producer.emitted == link.delivered + sum(link.dropped.values()), (name, link)
        received_from_links[consumer] = received_from_links.get(consumer, 0) + link.delivered
    for name, count in handled.items():
        actor = status.actors[name]
        assert actor.received == received_from_links[name], (name, actor)
        assert actor.received == count + actor.dead_lettered + sum(actor.dropped.values()), (
            name,
            actor,
            count,
        )


def one_to_one(status: af.SystemStatus, name: str) -> int:
    """Items a processor that maps each input to at most one output handled."""
    actor = status.actors[name]
    return actor.emitted + actor.filtered
