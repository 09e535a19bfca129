"""Stage fusion (actorflow/_actor/_fusion.py): a private chain runs in its head's task,
while each module keeps its own counters, status, supervision and restarts."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from accounting import assert_accounted, one_to_one
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Numbers

import actorflow as af

Task = trio.lowlevel.Task


class Seen:
    """Where (in which trio task) each module handled its items, and the status seen
    when the sink took its last item."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.tasks: dict[str, list[Task]] = {}
        self.first: dict[tuple[str, int], Task] = {}
        """The task each module first saw each item in."""
        self.system: af.System | None = None
        self.status: af.SystemStatus | None = None

    def note(self, name: str, data: int) -> None:
        task = trio.lowlevel.current_task()
        self.tasks.setdefault(name, []).append(task)
        self.first.setdefault((name, data), task)
        if name == "sink" and data == self.last and self.system is not None:
            self.status = self.system.status()


class Noting(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, seen: Seen, fail: dict[int, int] | None = None) -> None:
        self.seen = seen
        self.fail = fail if fail is not None else {}

    def process(self, data: int) -> int:
        self.seen.note(self.name, data)
        if self.fail.get(data, 0) > 0:
            self.fail[data] -= 1
            raise RuntimeError(f"{self.name} cannot handle {data}")
        return data


class NotingSink(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, seen: Seen, into: list[int]) -> None:
        self.seen = seen
        self.into = into

    def consume(self, data: int) -> None:
        self.seen.note("sink", data)
        self.into.append(data)


class TaskSource(Numbers):
    """Numbers, noting the task it runs in."""

    def __init__(self, count: int, seen: Seen) -> None:
        super().__init__(count)
        self.seen = seen

    def start(self) -> Any:
        self.seen.tasks["src"] = [trio.lowlevel.current_task()]
        return super().start()


def noted_chain(count: int, seen: Seen, out: list[int], **fail: dict[int, int]) -> af.Graph:
    graph = af.Graph()
    graph.add("src", TaskSource, count=count, seen=seen)
    graph.add("a", Noting, seen=seen, fail=fail.get("a"))
    graph.add("b", Noting, seen=seen, fail=fail.get("b"))
    graph.add("sink", NotingSink, seen=seen, into=out)
    graph.chain("src", "a", "b", "sink", buffer=4)
    return graph


async def run_noted(graph: af.Graph, seen: Seen, **options: Any) -> af.System:
    async with af.open_system(graph, **options) as system:
        seen.system = system
    return system


async def test_a_private_chain_runs_in_its_heads_task_and_status_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With default settings each stage of a 1:1 chain ends up handling its items in the
    source's task, and ActorStatus.fused_into names the source for each."""
    seen, out = Seen(last=199), []
    system = await run_noted(noted_chain(200, seen, out), seen)
    assert out == list(range(200))
    head = seen.tasks["src"][0]
    assert {seen.tasks[name][-1] for name in ("a", "b", "sink")} == {head}
    assert seen.status is not None
    assert {name: seen.status.actors[name].fused_into for name in seen.status.actors} == {
        "src": None,
        "a": "src",
        "b": "src",
        "sink": "src",
    }
    # Once ended, nothing is fused any more.
    assert all(actor.fused_into is None for actor in system.status().actors.values())


async def test_fuse_false_runs_every_module_in_its_own_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Settings(fuse=False) switches fusion off: four tasks, nothing fused."""
    seen, out = Seen(last=199), []
    await run_noted(noted_chain(200, seen, out), seen, fuse=False)
    assert out == list(range(200))
    tasks = [set(seen.tasks[name]) for name in ("src", "a", "b", "sink")]
    assert all(len(one) == 1 for one in tasks)
    assert len(set.union(*tasks)) == 4
    assert seen.status is not None
    assert all(actor.fused_into is None for actor in seen.status.actors.values())


def test_fuse_is_a_graph_file_setting(tmp_path: Path) -> None:
    """``fuse = false`` in a graph file's [settings] (or ``--set fuse=false``) switches it off."""
    body = """
        [settings]
        fuse = false

        [modules.src]
        module = "numbers"

        [modules.sink]
        module = "pass"

        [[links]]
        from = "src"
        to = "sink"
    """
    path = tmp_path / "g.toml"
    path.write_text(textwrap.dedent(body))
    registry = af.Registry(
        {
            "numbers": af.RegistryEntry("numbers", "sample_modules:Numbers", "test"),
            "pass": af.RegistryEntry("pass", "sample_modules:Pass", "test"),
        }
    )
    assert af.load_graph(path, registry)[1].fuse is False
    turned_on = af.load_graph(path, registry, overrides={"settings.fuse": True})
    assert turned_on[1].fuse is True
    with pytest.raises(TypeError):
        af.Settings(fuse="no")  # type: ignore[arg-type]


async def test_a_crash_in_a_fused_stage_restarts_that_module_only_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """b raises in the source's task: b alone restarts, the item is tried again, every
    item arrives once and in order, and the counters add up."""
    seen, out = Seen(last=299), []
    graph = noted_chain(300, seen, out, b={150: 1, 220: 1})
    graph.supervise("b", attempts=2)
    graph.supervisor(max_restarts=10)
    system = await run_noted(graph, seen)
    assert out == list(range(300))
    status = system.status()
    assert {name: actor.restarts for name, actor in status.actors.items()} == {
        "src": 0,
        "a": 0,
        "b": 2,
        "sink": 0,
    }
    head = seen.tasks["src"][0]
    assert seen.first["b", 150] is head  # it crashed while fused
    assert_accounted(
        status, {"a": one_to_one(status, "a"), "b": one_to_one(status, "b"), "sink": 300}
    )


async def test_a_dead_lettered_item_in_a_fused_stage_is_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With one attempt the failing item is dead-lettered: the rest all arrive, and
    emitted == handled + dead-lettered + dropped on every link."""
    seen, out = Seen(last=99), []
    system = await run_noted(noted_chain(100, seen, out, a={40: 1}), seen)
    assert out == [n for n in range(100) if n != 40]
    status = system.status()
    assert status.actors["a"].dead_lettered == 1
    assert status.actors["a"].restarts == 1
    assert_accounted(
        status, {"a": one_to_one(status, "a"), "b": one_to_one(status, "b"), "sink": 99}
    )


class Counting(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, births: list[str], label: str, fail: dict[int, int] | None = None):
        births.append(label)
        self.label = label
        self.fail = fail if fail is not None else {}

    def process(self, data: int) -> int:
        if self.fail.get(data, 0) > 0:
            self.fail[data] -= 1
            raise RuntimeError(f"{self.label} cannot handle {data}")
        return data


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("shutdown", [5.0, "brutal_kill"])
@pytest.mark.parametrize(
    ("strategy", "reborn"),
    [("one_for_one", ["b"]), ("one_for_all", ["a", "b", "c"]), ("rest_for_one", ["b", "c"])],
)
async def test_supervision_strategies_behave_the_same_fused_or_not(
    strategy: str, reborn: list[str], shutdown: float | str, fuse: bool
) -> None:
    """A crash in the middle of a fused group restarts the members its strategy says,
    stopped or killed while they run in another's task, and loses nothing."""
    births: list[str] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    graph.add("a", Counting, births=births, label="a")
    graph.add("b", Counting, births=births, label="b", fail={150: 1})
    graph.add("c", Counting, births=births, label="c")
    graph.add("sink", Collect, into=out)
    graph.chain("src", "a", "b", "c", "sink", buffer=4)
    for name in ("a", "b", "c"):
        graph.supervise(name, attempts=2, shutdown=shutdown)
    graph.group("middle", ["a", "b", "c"], strategy=strategy, max_restarts=3)
    with trio.fail_after(30):
        async with af.open_system(graph, fuse=fuse) as system:
            pass
    assert births[:3] == ["a", "b", "c"]
    assert sorted(births[3:]) == sorted(reborn)
    assert sorted(out) == list(range(300))
    if strategy == "one_for_one":
        assert out == list(range(300))  # the others never stopped: order is kept
    assert system.supervisor("middle").which_children()[1].restarts == 1


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 60),
    stages=st.integers(1, 4),
    crashes=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 59), st.integers(1, 2))),
    attempts=st.integers(1, 2),
    buffer=st.integers(1, 5),
    max_batch=st.integers(1, 8),
    fuse=st.booleans(),
)
def test_any_chain_and_crash_schedule_loses_nothing_and_restarts_only_the_crashed(
    count: int,
    stages: int,
    crashes: list[tuple[int, int, int]],
    attempts: int,
    buffer: int,
    max_batch: int,
    fuse: bool,
) -> None:
    """Chains of 1-4 processors, crashes at any stage and item: every item arrives once,
    in order, unless dead-lettered; each stage restarts once per crash it saw, the others
    never; the counters add up."""
    fail: list[dict[int, int]] = [{} for _ in range(stages)]
    for stage, item, times in crashes:
        if stage < stages:
            fail[stage][item] = fail[stage].get(item, 0) + times
    births: list[str] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    names = [f"p{i}" for i in range(stages)]
    for name, schedule in zip(names, fail, strict=True):
        graph.add(name, Counting, births=births, label=name, fail=dict(schedule))
        graph.supervise(name, attempts=attempts)
    graph.add("sink", Collect, into=out)
    graph.chain("src", *names, "sink", buffer=buffer)
    graph.supervisor(max_restarts=1000)
    systems: list[af.System] = []

    async def main() -> None:
        async with af.open_system(graph, fuse=fuse, max_batch=max_batch) as system:
            systems.append(system)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    status = systems[0].status()
    expected, restarts = list(range(count)), dict.fromkeys(names, 0)
    for name, schedule in zip(names, fail, strict=True):
        for item in list(expected):
            tries = min(schedule.get(item, 0), attempts)
            restarts[name] += tries
            if tries == attempts:
                expected.remove(item)
    assert out == expected
    assert {name: status.actors[name].restarts for name in names} == restarts
    assert status.actors["src"].restarts == status.actors["sink"].restarts == 0
    handled = {name: one_to_one(status, name) for name in names} | {"sink": len(out)}
    assert_accounted(status, handled)


class Slow(af.Sink):
    """Takes a second per item from item 10 on (so that its producer fuses first)."""

    def __init__(self, into: list[int]) -> None:
        self.into = into

    async def consume(self, data: int) -> None:
        if data >= 10:
            await trio.sleep(1)
        self.into.append(data)


@pytest.mark.parametrize("shutdown", [5.0, "brutal_kill"])
async def test_a_stage_stopped_or_killed_inside_a_call_leaves_its_caller_and_items_intact(
    autojump_clock: trio.testing.MockClock, shutdown: float | str
) -> None:
    """``a`` ran in the source's task until its slow consumer blocked it; stopping or
    killing it then leaves the source alone, and once restarted ``a`` delivers every
    item, in order."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=50)
    graph.add("a", Counting, births=[], label="a")
    graph.add("slow", Slow, into=out)
    graph.link("src", "a", buffer=4)
    graph.link("a", "slow", buffer=16)
    graph.supervise("a", shutdown=shutdown)
    async with af.open_system(graph) as system:
        await trio.sleep(5.5)
        before = system.status().actors["a"]
        # Blocked on its consumer, a fused stage does not wait in its producer's task:
        # the call ended, what it owes waits in its own task.
        assert before.fused_into is None
        assert before.blocked_on == "output:pending"
        assert system.status().actors["src"].state is af.ActorState.BLOCKED
        await system.supervisor("g").terminate_child("a")
        assert system.status().actors["a"].fused_into is None
        await trio.sleep(5)
        await system.supervisor("g").restart_child("a")
    assert out == list(range(50))
    status = system.status()
    assert status.actors["src"].restarts == 0
    assert status.actors["src"].errors == status.actors["a"].errors == 0
    assert_accounted(status, {"a": one_to_one(status, "a"), "slow": 50})


def test_the_live_view_says_whose_task_runs_a_fused_actor() -> None:
    """A fused actor's row says whose task runs it, after what it waits on, if anything."""
    from actorflow._view import rows_from_status

    def actor(
        name: str, state: af.ActorState, blocked_on: str | None, fused: str | None
    ) -> af.ActorStatus:
        return af.ActorStatus(
            name=name,
            kind="processor",
            state=state,
            blocked_on=blocked_on,
            received=0,
            emitted=0,
            filtered=0,
            dropped={},
            mailbox_depth=0,
            errors=0,
            reason=None,
            fused_into=fused,
        )

    actors = [
        actor("a", af.ActorState.BLOCKED, "input", "src"),
        actor("b", af.ActorState.RUNNING, None, "src"),
        actor("c", af.ActorState.BLOCKED, "input", None),
    ]
    status = af.SystemStatus("g", af.SystemState.RUNNING, {a.name: a for a in actors}, {})
    details = [row.detail for row in rows_from_status(status)]
    assert details == ["on input, in src's task", "in src's task", "on input"]
