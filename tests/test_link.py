"""Links and mailboxes: bounded FIFOs that cost little until they are used."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actorflow._link import Link, Mailbox, RemovedLinks
from actorflow._specs import LinkSpec


def link(capacity: int = 4) -> Link:
    return Link(LinkSpec("a", "out", "b", "in"), capacity, Mailbox(), None)


def test_an_unused_link_holds_no_buffer_of_its_own_until_its_first_item() -> None:
    """Idle links share one empty buffer; the first offer gives a link its own, and
    what it holds comes out in order."""
    first, second = link(), link()
    assert first.items is second.items
    assert len(first.items) == 0
    assert first.offer([1, 2, 3, 4, 5]) == 4
    assert first.items is not second.items
    assert first.take(10) == [1, 2, 3, 4]
    assert len(second.items) == 0


def test_the_shared_empty_buffer_refuses_items_added_around_the_link() -> None:
    """Adding to an unused link's buffer directly fails loudly instead of losing items
    (or handing them to every other unused link)."""
    unused = link()
    with pytest.raises(TypeError, match="shared empty buffer"):
        unused.items.append(1)
    with pytest.raises(TypeError, match="shared empty buffer"):
        unused.items.extend([1])
    buffer = unused.items
    with pytest.raises(TypeError, match="shared empty buffer"):
        buffer += [1]
    assert len(link().items) == 0


def test_requeued_items_go_back_to_the_front_even_on_an_unused_link() -> None:
    """Items put back come first, in order, whether or not the link had a buffer."""
    unused = link()
    unused.requeue([7, 8])
    assert unused.take(10) == [7, 8]
    assert unused.delivered == 0


def test_a_link_is_named_after_its_spec_unless_told_otherwise() -> None:
    named = link()
    assert named.name == "a.out -> b.in"
    named.name = "a.out -> b.in (to the stream)"
    assert named.status().name == "a.out -> b.in (to the stream)"


async def test_a_producer_waiting_for_room_wakes_when_items_are_taken() -> None:
    """The first producer to wait makes the link's parking lot; taking wakes it."""
    full = link(capacity=1)
    full.offer([1])
    woke = trio.Event()

    async def produce() -> None:
        await full.wait_for_space()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        assert full.take(1) == [1]
        await woke.wait()


async def test_every_task_waiting_on_a_mailbox_wakes_on_notify() -> None:
    """The first waiter parks on its own, later ones (a link's workers) in a lot; one
    notification wakes them all, and the mailbox can be waited on again."""
    mailbox = Mailbox()
    woken: list[int] = []

    async def wait(n: int) -> None:
        await mailbox.wait()
        woken.append(n)

    for _ in range(2):
        woken.clear()
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(wait, n)
            await trio.testing.wait_all_tasks_blocked()
            assert woken == []
            mailbox.notify()
        assert sorted(woken) == [0, 1, 2]


async def test_a_cancelled_waiter_leaves_the_mailbox_to_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling the task parked first frees its place: a later waiter is woken."""
    mailbox = Mailbox()
    with trio.move_on_after(0.01):
        await mailbox.wait()
    woke = trio.Event()

    async def wait() -> None:
        await mailbox.wait()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.notify()
    assert woke.is_set()


def test_removed_links_are_let_go_of_once_drained_and_their_counts_kept() -> None:
    """A removed link is counted live while it holds items (or its consumer holds it),
    then folded into its name's tally and let go of; given items back, it is live
    again: its counts are never lost nor counted twice."""
    mailbox = Mailbox()
    history = RemovedLinks()
    for _ in range(3):
        old = Link(LinkSpec("a", "out", "b", "in"), 2, mailbox, None)
        assert old.offer([1, 2]) == 2
        taken = old.take(2)
        history.add(old)
        old.close()
        old.retire()  # empty: let go of at once, not at the consumer's next read
        assert mailbox.links == []
    assert not history.draining
    assert history.status(None).delivered == 6
    assert history.status(None).sent == 6
    old.requeue(taken)  # its consumer failed mid-batch
    assert mailbox.links == [old]
    assert list(history.draining) == [old]
    status = history.status(None)
    # Given back, not yet retaken: delivered as reported holds still (never goes down).
    assert (status.delivered, status.depth, status.sent) == (6, 2, 6)
    old.drop(1, "overflow")
    assert history.status(None).dropped == {"overflow": 1}
    got = mailbox.take(5)
    assert got is not None
    assert got[1] == taken
    assert mailbox.take(5) is None  # the read lets go of it, drained again
    assert mailbox.links == []
    assert not history.draining
    old.drop(2, "link_removed")  # its producer gave up on it after it was let go of
    status = history.status(None)
    assert (status.delivered, status.depth, status.sent) == (6, 0, 6)
    assert status.dropped == {"overflow": 1, "link_removed": 2}


def test_items_offered_to_a_removed_link_are_counted_lost_to_the_removal() -> None:
    """A producer that offers owed items to a link after its removal (as it ends) loses
    them to the removal, counted in the name's tally; they are not stranded in a link
    its consumer no longer reads."""
    mailbox = Mailbox()
    history = RemovedLinks()
    link = Link(LinkSpec("a", "out", "b", "in"), 2, mailbox, None)
    history.add(link)
    link.close()
    link.retire()
    assert link.offer([1, 2, 3]) == 3
    assert not link.items
    assert mailbox.links == []
    assert history.status(None).dropped == {"link_removed": 3}


def test_a_link_let_go_of_keeps_the_round_robin_on_the_next_link() -> None:
    """Letting go of a link before the one read next does not skip a link."""
    mailbox = Mailbox()
    links = [Link(LinkSpec(name, "out", "b", "in"), 4, mailbox, None) for name in "pqr"]
    for link in links:
        link.offer([link.spec.source])
    first = mailbox.take(1)
    assert first is not None
    assert first[0] is links[0]
    links[0].close()
    links[0].retire()
    order = []
    while (got := mailbox.take(1)) is not None:
        order.extend(got[1])
    assert order == ["q", "r"]
