"""Link policies: what a full link does (block, drop newest, drop oldest, latest only)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af


class SlowCollect(af.Sink):
    """Takes one virtual second per item."""

    def __init__(self, into: list[int]) -> None:
        self.into = into

    async def consume(self, data: int) -> None:
        await trio.sleep(1)
        self.into.append(data)


class Burst(af.Source):
    """Emits ``count`` items at once, then a second burst after ``pause`` seconds."""

    def __init__(self, count: int, pause: float = 100) -> None:
        self.count = count
        self.pause = pause

    async def start(self) -> None:
        for n in range(self.count):
            await self.emit(n)
        await trio.sleep(self.pause)
        for n in range(self.count, self.count + 2):
            await self.emit(n)


def slow_graph(out: list[int], count: int, **link: Any) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Burst, count=count)
    graph.add("sink", SlowCollect, into=out)
    graph.link("src", "sink", buffer=3, **link)
    return graph


async def test_block_is_the_default_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """By default a full link makes its producer wait: every item arrives, in order."""
    out: list[int] = []
    async with af.open_system(slow_graph(out, 10)) as system:
        pass
    assert out == list(range(12))
    assert system.status().dropped == 0


async def test_drop_newest_drops_what_does_not_fit_and_counts_it(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """drop_newest: the producer never waits; items that do not fit are counted dropped."""
    out: list[int] = []
    async with af.open_system(slow_graph(out, 10, overflow="drop_newest")) as system:
        pass
    link = system.status().links["src.out -> sink.in"]
    # The burst is emitted without a checkpoint (the quantum is not spent), so three
    # fit and seven are dropped; the second burst, long after, finds room.
    assert out == [0, 1, 2, 10, 11]
    assert link.dropped == {"overflow": 7}
    assert link.sent + link.dropped["overflow"] == 12
    started = [e for e in logs if e["event"] == "link.dropping"]
    stopped = [e for e in logs if e["event"] == "link.dropping_stopped"]
    assert len(started) == 1
    assert started[0]["policy"] == "drop_newest"
    assert len(stopped) == 1
    assert stopped[0]["count"] == 7


async def test_drop_oldest_keeps_the_newest_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """drop_oldest: buffered items make room for new ones; the newest survive."""
    out: list[int] = []
    async with af.open_system(slow_graph(out, 10, overflow="drop_oldest")) as system:
        pass
    assert out == [7, 8, 9, 10, 11]
    assert system.status().links["src.out -> sink.in"].dropped == {"overflow": 7}


async def test_latest_only_replaces_the_pending_item(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """latest_only: a new item replaces the one waiting; replaced items are counted."""
    out: list[int] = []
    async with af.open_system(slow_graph(out, 10, latest_only=True)) as system:
        pass
    # Nine of the first burst are replaced by the tenth. In the second burst the source
    # yields after its first emit (its quantum ran out while it slept); whether the sink
    # takes 10 before 11 replaces it is up to trio's scheduling order.
    assert out[0] == 9
    assert out[-1] == 11
    assert out in ([9, 10, 11], [9, 11])
    link = system.status().links["src.out -> sink.in"]
    assert link.dropped == {"replaced": 12 - len(out)}
    assert link.depth == 0
    # One warning per dropping episode (one or two here, as above), each closed with
    # its count; together they count every replaced item.
    started = [e for e in logs if e["event"] == "link.dropping"]
    stopped = [e for e in logs if e["event"] == "link.dropping_stopped"]
    assert {e["policy"] for e in started} == {"latest_only"}
    assert len(started) == len(stopped) == (1 if out == [9, 10, 11] else 2)
    assert sum(e["count"] for e in stopped) == link.dropped["replaced"]


async def test_a_lossy_link_never_holds_its_producer_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With a dropping policy a fast source runs at its own pace past a stuck consumer."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: int) -> None:
            await release.wait()

    graph = af.Graph()
    graph.add("src", Numbers, count=1000)
    graph.add("sink", Stuck)
    graph.link("src", "sink", buffer=5, overflow="drop_newest")
    async with af.open_system(graph) as system:
        with trio.fail_after(5):
            while system.status().actors["src"].state is not af.ActorState.TERMINATED:
                await trio.sleep(0.1)
        link = system.status().links["src.out -> sink.in"]
        assert link.sent + link.dropped["overflow"] == 1000
        release.set()


def test_overflow_policy_names_are_checked() -> None:
    """An unknown overflow policy is refused when the link is declared, naming it."""
    graph = af.Graph()
    with pytest.raises(ValueError, match="overflow must be one of 'block', 'drop_newest'"):
        graph.link("a", "b", overflow="drop_everything")
    assert (
        graph.link("a", "b", overflow=af.Overflow.DROP_OLDEST).overflow is af.Overflow.DROP_OLDEST
    )


async def test_a_fan_out_policy_applies_per_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each link of a fan-out keeps its own policy: a lossy branch does not slow the other."""
    slow: list[int] = []
    fast: list[int] = []
    graph = af.Graph()
    graph.add("src", Burst, count=10)
    graph.add("slow", SlowCollect, into=slow)
    graph.add("fast", Collect, into=fast)
    graph.link("src", "slow", buffer=2, overflow="drop_newest")
    graph.link("src", "fast", buffer=2)
    async with af.open_system(graph) as system:
        pass
    assert fast == list(range(12))
    assert len(slow) + system.status().links["src.out -> slow.in"].dropped["overflow"] == 12
