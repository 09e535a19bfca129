"""The receiving half of a remote link keeps its books per entry, not per item: whatever
the module takes, gives back or joins out of the middle, an entry is acknowledged once,
exactly when every one of its items has been handled."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow._graph import LinkSpec
from actorflow._link import Mailbox
from actorflow._transport import RemoteInLink

Item = tuple[bytes, int]

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), st.integers(0, 7)),
        st.tuples(st.just("take"), st.integers(1, 9)),
        st.tuples(st.just("requeue"), st.integers(0, 9)),
        st.tuples(st.just("remove"), st.integers(0, 20)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    max_size=60,
)


class Model:
    """What the link should say, kept per item."""

    def __init__(self, link: RemoteInLink) -> None:
        self.link = link
        self.unfed: dict[bytes, list[Item]] = {}
        self.left: dict[bytes, int] = {}
        self.acked: list[bytes] = []
        self.batch: list[Item] = []

    def announce(self, number: int, size: int) -> None:
        entry = b"%d-0" % number
        self.unfed[entry] = [(entry, i) for i in range(size)]
        self.left[entry] = size
        self.link.expect(entry, size)

    def feed(self, size: int) -> None:
        """Feed up to ``size`` items of the oldest entry not fed whole."""
        for entry, items in self.unfed.items():
            if items:
                piece, self.unfed[entry] = items[:size], items[size:]
                self.link.feed(entry, list(piece))
                return

    def settle(self) -> None:
        for entry, _ in self.batch:
            self.left[entry] -= 1
            if not self.left[entry]:
                self.acked.append(entry)
        self.batch = []

    def apply(self, operation: str, number: int) -> None:
        link = self.link
        if operation == "feed":
            self.feed(number)
        elif operation == "take" and link.items:
            self.settle()  # take() settles the batch before
            self.batch = link.take(number)
        elif operation == "requeue":
            back = self.batch[len(self.batch) - min(number, len(self.batch)) :]
            del self.batch[len(self.batch) - len(back) :]
            link.requeue(back)
        elif operation == "remove" and link.items:
            item = link.items[number % len(link.items)]
            link.remove_item(item)
            self.batch.append(item)
        elif operation == "settle":
            link.settle()
            self.settle()

    def check(self) -> None:
        link = self.link
        in_order = [run.entry for run in link.runs for _ in range(run.count)]
        assert in_order == [entry for entry, _ in link.items]
        held = [run.entry for run in link.in_hand for _ in range(run.count)]
        assert sorted(held) == sorted(entry for entry, _ in self.batch)
        assert link.in_hand_count == len(self.batch)
        assert all(run.count > 0 for run in [*link.runs, *link.in_hand])
        assert link.to_ack == self.acked
        assert link.remaining == {entry: n for entry, n in self.left.items() if n}


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=5), operations=OPERATIONS)
def test_entries_are_acknowledged_exactly_when_all_their_items_were_handled(
    sizes: list[int], operations: list[tuple[str, Any]]
) -> None:
    """Random feeds, takes, give-backs, joins out of the middle and settles: the link's
    per-entry books always match a per-item model, and an entry is acknowledged once,
    when its last item is settled."""
    link = RemoteInLink(LinkSpec("a", "out", "b", "in"), 1000, Mailbox())
    model = Model(link)
    for number, size in enumerate(sizes):
        model.announce(number, size)
    for operation, number in operations:
        model.apply(operation, number)
        model.check()
    while any(model.unfed.values()) or link.items:  # drain: everything is acknowledged
        model.apply("feed", 10)
        model.apply("take", 10)
        model.apply("settle", 0)
        model.check()
    model.apply("settle", 0)
    model.check()
    assert sorted(link.to_ack) == sorted(b"%d-0" % n for n in range(len(sizes)))
