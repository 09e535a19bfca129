"""How a supervised graph ends: a cancel that lands in any step of a restart, modules
that reach their end of stream under any restart type, auto-shutdown by OTP's rules,
and escalation messages that count the restarts made."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any, ClassVar

import attrs
import pytest
import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Forever, Numbers, Pass

import actorflow as af

# -- a cancel that lands in the middle of a restart ---------------------------------------


@attrs.define
class CancelPoint:
    """Cancels the system the ``occurrence``-th time ``module`` runs ``hook`` (counted
    once the system runs), and remembers when the cancel was asked for."""

    module: str = ""
    hook: str = ""
    occurrence: int = 0
    system: af.System | None = None
    counts: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    cancelled_at: float | None = None

    def reached(self, module: str, hook: str) -> None:
        if self.system is None:
            return  # the graph is still being built: nothing to cancel yet
        self.counts[module, hook] += 1
        if (module, hook, self.counts[module, hook]) == (self.module, self.hook, self.occurrence):
            self.cancel()

    def cancel(self) -> None:
        if self.cancelled_at is None and self.system is not None:
            self.cancelled_at = trio.current_time()
            self.system.cancel()


class Ticking(af.Source):
    """Emits an int every ``interval`` while active; reports its hooks."""

    outputs: ClassVar = {"out": int}

    def __init__(self, point: CancelPoint, interval: float = 0.01, slow: float = 0) -> None:
        self.point, self.interval, self.slow = point, interval, slow

    async def validate(self) -> None:
        self.point.reached(self.name, "validate")
        await trio.sleep(self.slow)

    async def start(self) -> None:
        count = 0
        while self.active:
            await self.emit(count)
            count += 1
            if self.interval or count % 5 == 0:
                await trio.sleep(self.interval)

    async def stop(self) -> None:
        self.point.reached(self.name, "stop")

    async def cleanup(self) -> None:
        self.point.reached(self.name, "cleanup")
        await trio.sleep(self.slow)


class Crashing(af.Processor):
    """Passes items on and crashes on every ``every``-th; reports its hooks."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, point: CancelPoint, every: int, slow: float = 0) -> None:
        self.point, self.every, self.slow, self.seen = point, every, slow, 0

    async def validate(self) -> None:
        self.point.reached(self.name, "validate")
        await trio.sleep(self.slow)

    def process(self, data: int) -> int:
        self.seen += 1
        self.point.reached(self.name, "process")
        if self.every and self.seen % self.every == 0:
            raise ValueError(f"item {data}")
        return data

    async def cleanup(self) -> None:
        self.point.reached(self.name, "cleanup")
        await trio.sleep(self.slow)


class Sinking(af.Sink):
    """Takes every item; reports its hooks (a sync validate: no checkpoint in it)."""

    inputs: ClassVar = {"in": int}

    def __init__(self, point: CancelPoint, slow: float = 0) -> None:
        self.point, self.slow = point, slow

    def validate(self) -> None:
        self.point.reached(self.name, "validate")

    def consume(self, data: int) -> None:
        self.point.reached(self.name, "consume")

    async def cleanup(self) -> None:
        self.point.reached(self.name, "cleanup")
        await trio.sleep(self.slow)


def crashing_chain(
    point: CancelPoint,
    strategy: str,
    *,
    every: int = 7,
    interval: float = 0.01,
    slow: float = 0,
    middle: int = 1,
    backoff: bool = False,
    shutdown: float | str = 5.0,
    grouped: bool = False,
) -> af.Graph:
    """src -> p0 -> ... -> k, the processors crashing on every ``every``-th item (under
    a group of their own with the same strategy if ``grouped``)."""
    graph = af.Graph()
    graph.add("src", Ticking, point=point, interval=interval, slow=slow)
    names = ["src"]
    for index in range(middle):
        graph.add(f"p{index}", Crashing, point=point, every=every, slow=slow)
        graph.supervise(f"p{index}", shutdown=shutdown)
        names.append(f"p{index}")
    graph.add("k", Sinking, point=point, slow=slow)
    graph.chain(*names, "k")
    options: dict[str, Any] = {
        "strategy": strategy,
        "max_restarts": 1000,
        "period": 1,
        "backoff": af.Backoff(min=0.02, max=0.1, jitter=0) if backoff else None,
    }
    graph.supervisor(**options)
    if grouped:
        graph.group("grp", names[1:], **options)
    return graph


async def time_to_end(graph: af.Graph, point: CancelPoint, fallback: float) -> float:
    """Run ``graph`` until ``point`` cancels it (or, failing that, ``fallback`` s); return
    how long the system took to end after the cancel."""
    async with af.open_system(graph, cleanup_timeout=5) as system:
        point.system = system
        await trio.sleep(fallback)
        point.cancel()
    assert point.cancelled_at is not None
    return trio.current_time() - point.cancelled_at


async def test_a_cancel_between_the_members_of_a_one_for_all_restart_ends_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cancel() that lands once a one_for_all restart has started the sink again but not
    yet its producers ends the system at once: the sink does not wait out its
    ``cleanup_timeout * ancestors`` for the cleanup of a producer that will never start."""
    point = CancelPoint("k", "validate", 1)
    graph = crashing_chain(point, "one_for_all")
    took = await time_to_end(graph, point, fallback=10)
    assert point.counts["k", "validate"] == 1  # it landed where meant
    assert took < 0.1


# Where a cancel can land, by the hook running then: validates (a member being
# restarted) are listed three times, as most restart steps lie between them.
HOOKS = [
    *[("src", "validate"), ("p0", "validate"), ("p1", "validate"), ("k", "validate")] * 3,
    ("src", "stop"),
    ("src", "cleanup"),
    ("p0", "process"),
    ("p0", "cleanup"),
    ("p1", "cleanup"),
    ("k", "consume"),
    ("k", "cleanup"),
]


@settings(max_examples=150, deadline=None)
@given(
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    hook=st.none() | st.sampled_from(HOOKS),
    occurrence=st.integers(1, 6),
    every=st.sampled_from([2, 3, 7]),
    slow=st.sampled_from([0.0, 0.01]),
    middle=st.integers(1, 2),
    backoff=st.booleans(),
    shutdown=st.sampled_from([5.0, 0.005, "brutal_kill"]),
    grouped=st.booleans(),
    at=st.floats(0.001, 0.5),
)
def test_a_cancel_in_any_step_of_a_restart_ends_the_system_at_once(
    strategy: str,
    hook: tuple[str, str] | None,
    occurrence: int,
    every: int,
    slow: float,
    middle: int,
    backoff: bool,
    shutdown: float | str,
    grouped: bool,
    at: float,
) -> None:
    """Crashing chains under every strategy, cancelled from inside a hook (a validate of a
    member being restarted, the cleanup of a crashed or stopped one, a source's stop(),
    an item) or at a random moment (a backoff, a restart in flight): the system ends
    within the cleanups still owed, never after a ``cleanup_timeout`` safety net."""
    point = CancelPoint(*hook, occurrence) if hook is not None else CancelPoint()
    graph = crashing_chain(
        point,
        strategy,
        every=every,
        slow=slow,
        middle=middle,
        backoff=backoff,
        shutdown=shutdown,
        grouped=grouped,
    )
    fallback = at if hook is None else 5
    took = trio.run(
        time_to_end, graph, point, fallback, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    reached = hook is None or point.counts[hook] >= occurrence
    event(f"cancelled {'where meant' if reached else 'at the fallback'}")
    assert took <= (middle + 2) * slow + 0.05


def test_cancels_at_random_real_moments_during_one_for_all_restarts_end_at_once() -> None:
    """The reviewer's repro in real time: a chain whose processor crashes on every 7th
    item under one_for_all, cancelled at random moments within its first 50 ms, ends
    within a fraction of a second each time (it took 10 s in 3 runs of 100)."""
    rng = random.Random(13)
    slowest = 0.0
    for _ in range(60):
        began = time.monotonic()
        trio.run(cancel_a_crashing_chain_after, rng.random() * 0.05)
        slowest = max(slowest, time.monotonic() - began)
    assert slowest < 1.0


async def cancel_a_crashing_chain_after(wait: float) -> None:
    point = CancelPoint()
    graph = crashing_chain(point, "one_for_all", every=7, interval=0)
    async with af.open_system(graph, cleanup_timeout=5) as system:
        point.system = system
        await trio.sleep(wait)
        point.cancel()


# -- the end of stream under any restart type ------------------------------------------


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
@pytest.mark.parametrize("module", ["mid", "sink"])
async def test_a_module_at_its_end_of_stream_ends_for_good_whatever_its_restart_type(
    autojump_clock: trio.testing.MockClock, restart: str, module: str
) -> None:
    """A processor or sink ends when every input has ended: a restart would find the same
    end at once, so it is not restarted, not even when permanent, and the graph is done."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=5)
    graph.add("mid", Pass)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "mid", "sink")
    graph.supervise(module, restart=restart)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert out == [0, 1, 2, 3, 4]
    assert status.actors[module].restarts == 0
    assert status.actors[module].reason == "normal"


@pytest.mark.parametrize("grouped", [False, True])
async def test_a_permanent_module_ends_cleanly_after_a_graceful_stop(
    autojump_clock: trio.testing.MockClock, grouped: bool
) -> None:
    """After System.stop() a permanent sink (or a permanent group holding the whole
    chain) ends with its end of stream: the system is done, no EscalationError."""
    graph = af.Graph()
    graph.add("src", Forever, interval=0.1)
    graph.add("mid", Pass)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "mid", "sink")
    graph.supervise("sink", restart="permanent")
    graph.supervise("mid", restart="permanent")
    if grouped:
        graph.group("work", ["sink", "mid", "src"], restart="permanent")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(1)
            await system.stop()
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert {name: actor.restarts for name, actor in status.actors.items()} == {
        "src": 0,
        "mid": 0,
        "sink": 0,
    }


async def test_a_permanent_module_that_crashed_at_its_end_of_stream_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only a normal end at the end of stream is final: a permanent sink that crashed on
    its last item is restarted (the item is tried again), then ends for good."""
    out: list[int] = []

    class Fussy(af.Sink):
        inputs: ClassVar = {"in": int}

        def __init__(self, failures: dict[int, int]) -> None:
            self.failures = failures

        def consume(self, data: int) -> None:
            if self.failures.get(data, 0):
                self.failures[data] -= 1
                raise ValueError("not yet")
            out.append(data)

    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("sink", Fussy, failures={2: 1})
    graph.link("src", "sink")
    graph.supervise("sink", restart="permanent", attempts=2)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    assert out == [0, 1, 2]
    assert system.status().actors["sink"].restarts == 1
    assert system.status().state is af.SystemState.DONE


async def test_a_permanent_progressive_module_without_inputs_is_restarted_like_a_source(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A progressive module with no inputs ends when it says so, like a source: a
    permanent one is started again (here until its restart intensity gives up)."""

    class Once(af.Progressive):
        outputs: ClassVar = {"out": int}

        def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
            return af.Step(af.StepState.TERMINATED)

    graph = af.Graph()
    graph.add("once", Once)
    graph.add("sink", Collect, into=[])
    graph.link("once", "sink")
    graph.supervise("once", restart="permanent")
    graph.supervisor(max_restarts=3, period=100)
    with trio.fail_after(60), pytest.raises(af.EscalationError, match="gave up after 3"):
        async with af.open_system(graph):
            pass


# -- auto-shutdown by OTP's rules ------------------------------------------------------


class Done(af.Source):
    """Ends normally after ``after`` seconds (at once when asked to stop)."""

    def __init__(self, after: float = 1) -> None:
        self.after = after

    async def start(self) -> None:
        with trio.move_on_after(self.after):
            while self.active:
                await trio.sleep(0.1)


class Crash(Done):
    """Raises after ``after`` seconds, unless asked to stop before."""

    async def start(self) -> None:
        await super().start()
        if self.active:
            raise ValueError("crash")


def significant_graph(mode: str, trans: type[af.Source]) -> af.Graph:
    """A never-ending source beside a temporary significant source that crashes at 1 s
    and a transient significant one (``trans``) that ends at 3 s."""
    graph = af.Graph()
    graph.add("idle", Forever, interval=0.1)
    graph.add("ticks", Collect, into=[])
    graph.link("idle", "ticks")
    graph.add("temp", Crash, after=1)
    graph.supervise("temp", restart="temporary", significant=True)
    graph.add("trans", trans, after=3)
    graph.supervise("trans", restart="transient", significant=True)
    graph.supervisor(auto_shutdown=mode, max_restarts=10, period=100)
    return graph


async def test_any_significant_ends_the_graph_when_a_temporary_significant_child_crashes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """OTP: a temporary significant child's end counts for auto-shutdown whether it was
    normal or a crash, so any_significant ends the graph when it crashes."""
    with trio.fail_after(60):
        async with af.open_system(significant_graph("any_significant", Crash)) as system:
            pass
    assert trio.current_time() <= 1.5
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.actors["temp"].reason == "failed"
    assert status.actors["idle"].state is af.ActorState.TERMINATED


async def test_a_crashing_transient_significant_child_does_not_count_for_auto_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """OTP: a transient significant child counts only when it ends normally; crashing, it
    is restarted. all_significant waits for it after the temporary one crashed, and a
    child shut down from the API never counts."""
    with trio.fail_after(60):
        async with af.open_system(significant_graph("all_significant", Crash)) as system:
            await trio.sleep(10)
            assert system.status().state is af.SystemState.RUNNING
            assert system.status().actors["trans"].restarts >= 3
            await system.supervisor().shutdown_child("trans")
            await trio.sleep(1)
            assert system.status().state is af.SystemState.RUNNING
            system.cancel()
    assert system.status().actors["temp"].reason == "failed"


async def test_all_significant_ends_when_the_last_significant_child_ends_normally(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """all_significant: a temporary significant child that crashed and a transient one
    that ended normally end the graph together, the never-ending source included."""
    with trio.fail_after(60):
        async with af.open_system(significant_graph("all_significant", Done)) as system:
            pass
    assert 3 <= trio.current_time() <= 3.5
    assert system.status().state is af.SystemState.DONE


async def test_all_significant_ends_when_the_last_active_significant_child_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """OTP: all_significant shuts down when the last *active* significant child ends; one
    stopped with terminate_child (still listed, could be restarted) is not active, so it
    does not hold the graph up."""
    graph = af.Graph()
    graph.add("idle", Forever, interval=0.1)
    graph.add("ticks", Collect, into=[])
    graph.link("idle", "ticks")
    graph.add("slow", Done, after=100)
    graph.add("quick", Done, after=3)
    for name in ("slow", "quick"):
        graph.supervise(name, restart="transient", significant=True)
    graph.supervisor(auto_shutdown="all_significant")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(0.5)
            await system.supervisor().terminate_child("slow")
            assert "slow" in [child.name for child in system.supervisor().which_children()]
    assert 3 <= trio.current_time() <= 3.5
    assert system.status().state is af.SystemState.DONE


@pytest.mark.parametrize("where", ["module", "group", "start_child"])
async def test_a_significant_child_under_auto_shutdown_never_is_warned_about_and_ignored(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]], where: str
) -> None:
    """OTP refuses a significant child when auto_shutdown is never; actorflow warns
    (supervisor.significant_ignored, naming the child) and ignores the flag: its end
    does not end the graph."""
    graph = af.Graph()
    graph.add("idle", Forever, interval=1)
    graph.add("ticks", Collect, into=[])
    graph.link("idle", "ticks")
    graph.add("done", Done, after=1)
    if where == "module":
        graph.supervise("done", restart="temporary", significant=True)
    elif where == "group":
        graph.group("grp", ["done"], significant=True)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            if where == "start_child":
                await system.supervisor().start_child(
                    _Idle("extra"), af.ChildSpec(restart="temporary", significant=True)
                )
            await trio.sleep(3)
            assert system.status().state is af.SystemState.RUNNING
            system.cancel()
    expected = {"module": "done", "group": "grp", "start_child": "extra"}[where]
    warned = [e["child"] for e in logs if e["event"] == "supervisor.significant_ignored"]
    assert warned == [expected]


@attrs.define
class _Idle:
    """A bare worker that ends at once (for start_child)."""

    name: str

    async def prepare(self) -> None:
        pass

    async def run(self) -> None:
        pass

    async def request_stop(self) -> None:
        pass

    def terminate(self, reason: str) -> None:
        pass

    def on_kill(self) -> None:
        pass


# -- escalation counts -------------------------------------------------------------------


async def test_an_escalation_counts_the_restarts_made_by_a_restarted_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group with max_restarts=1, restarted by the root after it gave up, gives up again
    after the one restart it made: the refused restart of its last incarnation is not
    kept in its history, so no message counts a restart never made."""

    class Fails(af.Source):
        async def start(self) -> None:
            await trio.sleep(0.01)
            raise ValueError("crash")

    graph = af.Graph()
    graph.add("c", Fails)
    graph.supervise("c", restart="permanent")
    graph.group("grp", ["c"], max_restarts=1, period=100)
    graph.supervisor(max_restarts=1, period=100)
    with trio.fail_after(60), pytest.raises(af.EscalationError) as caught:
        async with af.open_system(graph):
            pass
    root, group = caught.value.chain[:2]
    assert isinstance(root, af.EscalationError)
    assert isinstance(group, af.EscalationError)
    assert (root.supervisor, root.restarts) == (graph.name, 2)
    assert (group.supervisor, group.restarts) == ("grp", 2)
    assert "gave up after 1 restart(s)" in str(root)
    assert "supervisor 'grp' gave up after 1 restart(s)" in str(group)
    assert "gave up after 2" not in str(root)


# -- a cancel while a restart waits for an abandoned blocking call --------------------


async def test_a_cancel_while_a_restart_waits_for_an_abandoned_blocking_call_ends_at_once() -> (
    None
):
    """A restart first waits (up to cleanup_timeout) for a blocking call that the last
    incarnation abandoned in its thread; a cancel that lands then ends the system at
    once, as the new incarnation will never start (real threads, real time)."""
    entered, release = threading.Event(), threading.Event()

    class Hangs(af.Sink):
        blocking = True

        def consume(self, data: int) -> None:
            entered.set()
            release.wait(10)

    graph = af.Graph()
    graph.add("src", Forever, interval=0.05)
    graph.add("sink", Hangs)
    graph.link("src", "sink")
    graph.supervise("sink", shutdown="brutal_kill")
    try:
        with trio.fail_after(30):
            async with af.open_system(graph, cleanup_timeout=0.2) as system:
                await trio.to_thread.run_sync(entered.wait, 10)
                supervisor = system.supervisor()
                await supervisor.terminate_child("sink")  # its consume() hangs on

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(supervisor.restart_child, "sink")
                    await trio.sleep(0.05)  # the restart waits for the thread (0.2 s)
                    began = trio.current_time()
                    system.cancel()
        took = trio.current_time() - began
    finally:
        release.set()
    assert took < 0.1
