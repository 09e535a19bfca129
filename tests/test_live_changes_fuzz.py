"""A bounded fuzzer: random schedules of module changes among a stream of items."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_live_changes import Collect, Counter, CounterV2

import actorflow as af

# One step of a schedule: (operation, which tap, a number).
_OPERATIONS = ("send", "add", "remove", "remove_back", "stop", "start", "replace")
steps = st.tuples(
    st.sampled_from(_OPERATIONS), st.integers(0, 2), st.integers(1, 12), st.booleans()
)


class _Run:
    """The schedule's model: what exists and is stopped, what was sent and returned."""

    def __init__(self, system: af.System) -> None:
        self.system = system
        self.sent: list[int] = []
        self.taps: set[str] = set()
        self.got: dict[str, list[Any]] = {}
        """What each tap name handled, over every module added under it."""
        self.returned: dict[str, list[Any]] = {}
        self.stopped: set[str] = set()

    async def step(self, operation: str, tap: int, number: int, flag: bool) -> None:
        name = f"tap{tap}" if flag or operation not in ("stop", "start", "replace") else "count"
        if operation == "send":
            for _ in range(number):
                item = len(self.sent)
                await self.system.send("in", item)
                self.sent.append(item)
        elif operation == "add" and name not in self.taps and name != "count":
            into = self.got.setdefault(name, [])
            await self.system.add(name, Collect, config={"into": into}, links=[("count", name)])
            self.taps.add(name)
        elif operation.startswith("remove") and name in self.taps:
            back = await self.system.remove(name, drain=operation == "remove")
            self.taps.discard(name)
            self.returned.setdefault(name, []).extend(back)
            self.stopped.discard(name)
        elif operation == "stop" and (name == "count" or name in self.taps):
            if name not in self.stopped:
                await self.system.stop_module(name)
                self.stopped.add(name)
        elif operation == "start" and name in self.stopped:
            await self.system.start_module(name)
            self.stopped.discard(name)
        elif operation == "replace" and name == "count":
            await self.system.replace("count", CounterV2 if number % 2 else Counter)
        await trio.sleep(number / 10)


def _graph(out: list[Any]) -> af.Graph:
    graph = af.Graph("fuzzed")
    graph.add("in", af.Inlet)
    graph.add("count", Counter)
    graph.add("out", Collect, into=out)
    graph.chain("in", "count", "out")
    return graph


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(steps, max_size=14), fuse=st.booleans())
def test_random_changes_lose_nothing_and_never_hang(
    schedule: list[tuple[str, int, int, bool]], fuse: bool
) -> None:
    """Whatever modules are added, removed, stopped, started and replaced while items
    flow, every item reaches the sink once and in order, the counter's state carries
    over every change, and every tap's link accounts for each item it was sent."""
    out: list[Any] = []

    async def main() -> _Run:
        with trio.fail_after(3600):  # virtual time: a hang fails at once
            async with af.open_system(_graph(out), fuse=fuse) as system:
                run = _Run(system)
                for operation, tap, number, flag in schedule:
                    await run.step(operation, tap, number, flag)
                for name in sorted(run.stopped):
                    await system.start_module(name)
                await system.close("in")
        return run

    run = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [item for _, _, item in out] == run.sent
    assert [count for _, count, _ in out] == list(range(1, len(run.sent) + 1))
    status = run.system.status()
    assert status.dropped == 0
    for name, got in run.got.items():
        link = status.links[f"count.out -> {name}.in"]  # every link of that name
        returned = [item for _, _, item in run.returned.get(name, [])]
        handled = [item for _, _, item in got]
        assert link.sent == link.delivered + link.returned
        assert link.delivered == len(handled)
        assert link.returned == len(returned)
        assert handled == sorted(handled)
        assert len(set(handled + returned)) == len(handled + returned)
        assert set(handled + returned) <= set(run.sent)
    assert set(status.actors) == {"in", "count", "out", *run.taps}
