"""What a removed module counted stays counted: the system's totals, /metrics and the
dashboard never go down when a module is removed, and never show a removed module's
numbers for one added under its name."""

from __future__ import annotations

from typing import Any, ClassVar

import trio
import trio.testing

import actorflow as af
from actorflow._dashboard._tracker import Tracker, Watched
from actorflow._metrics import StatusCollector
from actorflow._rates import Rates, StatusRates
from tests.test_live_changes import Collect, Counter, counting_graph, send_all


class Leaky(Counter):
    """Emits a copy of each item on a port nothing is linked to (a drop), and raises on
    ``"boom"`` (an error)."""

    outputs: ClassVar = {"out": Any, "side": Any}

    async def process(self, data: Any) -> tuple[str, int, Any]:
        if data == "boom":
            raise ValueError("boom")
        await self.emit(data, "side")
        return super().process(data)


def leaky_graph(out: list[Any]) -> af.Graph:
    graph = af.Graph("leaky")
    graph.add("in", af.Inlet)
    graph.add("count", Leaky)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    return graph


async def leak(system: af.System, out: list[Any], items: list[Any], handled: int) -> None:
    """Send ``items``; return once ``handled`` more results came out."""
    until = len(out) + handled
    for item in items:
        await system.send("in", item)
    while len(out) < until:
        await trio.sleep(0.01)


async def test_a_removed_modules_drops_and_errors_stay_in_the_totals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """status().removed keeps what it counted as it ended; dropped and dropped_at
    count its drops; a module added again under its name adds to them."""
    out: list[Any] = []
    async with af.open_system(leaky_graph(out)) as system:
        await leak(system, out, [1, "boom", 2], 2)
        before = system.status()
        await system.remove("count")
        after = system.status()
        await system.add("count", Leaky, links=[("in", "count")])
        await system.add("tap", Collect, config={"into": out}, links=[("count", "tap")])
        await leak(system, out, [3], 1)
        again = system.status()
        await system.close("in")
    lost = before.dropped_at()["count"]
    assert lost["unconnected"] >= 2  # 1 (twice: replayed after the crash) and 2
    assert after.dropped == before.dropped
    assert after.dropped_at()["count"] == lost
    removed = after.removed["count"]
    assert removed.errors == 1
    assert removed.received == before.actors["count"].received
    assert again.dropped == before.dropped + 1
    assert again.dropped_at()["count"] == {**lost, "unconnected": lost["unconnected"] + 1}
    assert again.counted("count", "errors") == 1
    assert again.counted("count", "received") == removed.received + 1


async def test_metrics_counters_of_a_name_never_go_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A module removed and added again under its name: its counters go on from the
    removed one's (the new one's added to them), so rate() sees no reset."""
    out: list[Any] = []
    async with af.open_system(leaky_graph(out)) as system:
        await leak(system, out, [1, 2], 2)
        await system.remove("count")
        await system.add("count", Leaky, links=[("in", "count")])
        await system.add("tap", Collect, config={"into": out}, links=[("count", "tap")])
        await leak(system, out, [3], 1)
        collector = StatusCollector(system.status, system.started_at, dict)
        metrics = {m.name: m for m in collector.take().collect()}
        await system.close("in")

    def value(name: str, **labels: str) -> float:
        return next(
            s.value
            for s in metrics[name].samples
            if s.name.endswith("_total") and labels.items() <= s.labels.items()
        )

    assert value("actorflow_actor_received", actor="count") == 3
    assert value("actorflow_actor_dropped", actor="count", reason="unconnected") == 3


async def test_the_dashboard_shows_a_module_added_under_a_removed_ones_name_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Its events and rate are its own, not the removed one's, even when the removal
    and the add happen between two updates of the view."""
    out: list[Any] = []
    async with af.open_system(counting_graph(out)) as system:
        watched = Watched(system.status, dict, lambda: (), system.here, 0.0)
        tracker = Tracker(watched)
        tracker.update(0.0)
        for step in range(1, 4):
            await send_all(system, range(step * 10, step * 10 + 10))
            while len(out) < step * 10:
                await trio.sleep(0.01)
            tracker.update(float(step))
        await system.stop_module("count")
        await system.start_module("count")
        old = tracker.update(4.0)["actors"]["count"]
        await system.remove("count")
        await system.add("count", Counter, links=[("in", "count")])
        new = tracker.update(5.0)["actors"]["count"]
        await system.close("in")
    assert old["rate"] is not None
    assert len(old["events"]) > 1
    assert new["rate"] is None
    assert [event["text"] for event in new["events"]] in (["state ready"], ["state running"])


async def test_the_counts_of_modules_removed_under_one_name_add_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A name removed twice: status().removed holds both modules' counts."""
    out: list[Any] = []
    async with af.open_system(leaky_graph(out)) as system:
        await leak(system, out, [1], 1)
        await system.remove("count")
        await system.add("count", Leaky, links=[("in", "count")])
        await system.add("tap", Collect, config={"into": out}, links=[("count", "tap")])
        await leak(system, out, [2, 3], 2)
        await system.remove("count")
        status = system.status()
        await system.close("in")
    removed = status.removed["count"]
    assert (removed.received, removed.mailbox_depth) == (3, 0)
    assert removed.dropped == {"unconnected": 3}
    assert status.counted("count", "received") == 3


async def test_the_live_view_measures_a_module_added_under_a_removed_ones_name_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The terminal's rates, as the dashboard's: the new module has no rate until it is
    measured itself, even when the removal and the add fall between two refreshes."""
    out: list[Any] = []
    rates = StatusRates(Rates(window=1.0))
    async with af.open_system(counting_graph(out)) as system:
        for step in range(4):
            await send_all(system, range(step * 10, step * 10 + 10))
            while len(out) < (step + 1) * 10:
                await trio.sleep(0.01)
            rates.forget_removed(system.status())
            old = rates.update(system.status(), float(step))
        await system.remove("count")
        await system.add("count", Counter, links=[("in", "count")])
        gone = rates.forget_removed(system.status())
        new = rates.update(system.status(), 4.0)
        await system.close("in")
    assert old["count"] > 0
    assert gone == ["count"]
    assert "count" not in new
