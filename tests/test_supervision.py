"""Supervision of a running graph: restarts keep messages, retries, dead letters,
strategies over groups, escalation, auto-shutdown; and the accounting invariant."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from accounting import assert_accounted, one_to_one
from hypothesis import given, settings
from hypothesis import strategies as st
from sample_modules import Collect, Forever, Numbers, Pass

import actorflow as af


class Flaky(af.Processor):
    """Fails on chosen values a chosen number of times (shared across restarts)."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, failures: dict[int, int], births: list[str] | None = None) -> None:
        self.failures = failures
        self.seen = 0
        if births is not None:
            births.append("born")

    def process(self, data: int) -> int:
        self.seen += 1
        if self.failures.get(data, 0) > 0:
            self.failures[data] -= 1
            raise RuntimeError(f"cannot handle {data}")
        return data


class FlakySink(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, failures: dict[int, int], into: list[int]) -> None:
        self.failures = failures
        self.into = into

    def consume(self, data: int) -> None:
        if self.failures.get(data, 0) > 0:
            self.failures[data] -= 1
            raise RuntimeError(f"cannot store {data}")
        self.into.append(data)


def chain(count: int, failures: dict[int, int], out: list[int], **supervise: Any) -> af.Graph:
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    graph.add("flaky", Flaky, failures=failures)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "flaky", "sink", buffer=8)
    if supervise:
        graph.supervise("flaky", **supervise)
    return graph


async def test_a_crash_restarts_the_module_and_loses_no_queued_item() -> None:
    """After a crash the module is rebuilt; everything queued for it is still handled."""
    births: list[str] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=100)
    graph.add("flaky", Flaky, failures={40: 1}, births=births)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "flaky", "sink", buffer=8)
    graph.supervise("flaky", attempts=2)
    async with af.open_system(graph) as system:
        pass
    assert out == list(range(100))  # the failed item was retried, in order
    assert births == ["born", "born"]
    flaky = system.status().actors["flaky"]
    assert flaky.restarts == 1
    assert flaky.dead_lettered == 0
    assert flaky.state is af.ActorState.TERMINATED
    assert system.status().dropped == 0


async def test_an_item_failing_every_attempt_is_dead_lettered_after_the_last() -> None:
    """An item is tried `attempts` times (a restart between tries), then dead-lettered."""
    out: list[int] = []
    graph = chain(20, {7: 99}, out, attempts=3)
    graph.supervisor(max_restarts=10)
    async with af.open_system(graph) as system:
        pass
    assert out == [n for n in range(20) if n != 7]
    [letter] = system.dead_letters
    assert letter.item == 7
    assert letter.attempts == 3
    assert letter.message_id.startswith("flaky#")
    assert "cannot handle 7" in str(letter.error)
    assert system.status().actors["flaky"].restarts == 3


class LetterBox(af.Sink):
    inputs: ClassVar = {"in": af.DeadLetter}

    def __init__(self, into: list[af.DeadLetter]) -> None:
        self.into = into

    def consume(self, data: af.DeadLetter) -> None:
        self.into.append(data)


async def test_dead_letters_are_delivered_to_the_dead_letter_module() -> None:
    """graph.dead_letters() routes every dead letter to a module's input port."""
    out: list[int] = []
    letters: list[af.DeadLetter] = []
    graph = chain(10, {2: 1, 5: 1}, out)
    graph.supervisor(max_restarts=5)
    graph.add("dlq", LetterBox, into=letters)
    graph.dead_letters("dlq")
    async with af.open_system(graph) as system:
        pass
    assert [letter.item for letter in letters] == [2, 5]
    assert all(letter.actor == "flaky" for letter in letters)
    assert out == [0, 1, 3, 4, 6, 7, 8, 9]
    assert system.status().links["<dead letters>.out -> dlq.in"].delivered == 2


async def test_default_intensity_escalates_on_the_second_quick_crash() -> None:
    """OTP's default (1 restart in 5 s): two quick crashes end the system with the chain."""
    graph = chain(10, {1: 1, 2: 1}, [])
    with pytest.raises(af.EscalationError) as caught:
        async with af.open_system(graph):
            pass
    error = caught.value
    assert error.supervisor == "graph"
    assert error.child == "flaky"
    assert error.restarts == 2
    assert "cannot handle 2" in str(error)


async def test_crashes_spread_over_time_do_not_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Restarts further apart than the period never add up to an escalation."""

    class SlowFlaky(Flaky):
        async def process(self, data: int) -> int:  # type: ignore[override]
            await trio.sleep(3)
            return super().process(data)

    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=10)
    graph.add("flaky", SlowFlaky, failures=dict.fromkeys(range(0, 10, 2), 1))
    graph.add("sink", Collect, into=out)
    graph.chain("src", "flaky", "sink")
    async with af.open_system(graph) as system:
        pass
    assert out == [1, 3, 5, 7, 9]
    assert system.status().actors["flaky"].restarts == 5


class Counting(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, births: list[str], label: str) -> None:
        births.append(label)

    def process(self, data: Any) -> Any:
        return data


@pytest.mark.parametrize(
    ("strategy", "reborn"),
    [("one_for_one", ["b"]), ("one_for_all", ["a", "b", "c"]), ("rest_for_one", ["b", "c"])],
)
async def test_group_strategies_restart_the_right_members(
    strategy: str, reborn: list[str]
) -> None:
    """A group restarts its members per its strategy; the other groups are untouched."""
    births: list[str] = []
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=30)
    graph.add("a", Counting, births=births, label="a")
    graph.add("b", Flaky, failures={10: 1}, births=births)
    graph.add("c", Counting, births=births, label="c")
    graph.add("sink", Collect, into=out)
    graph.chain("src", "a", "b", "c", "sink", buffer=4)
    graph.supervise("b", attempts=2)
    graph.group("middle", ["a", "b", "c"], strategy=strategy, max_restarts=3)
    async with af.open_system(graph) as system:
        pass
    first = ["a", "born", "c"]
    assert births[: len(first)] == first
    again = ["born" if name == "b" else name for name in reborn]
    assert sorted(births[len(first) :]) == sorted(again)
    assert sorted(out) == list(range(30))
    assert system.supervisor("middle").which_children()[1].restarts == 1


async def test_an_escalating_group_fails_the_system_with_the_whole_chain() -> None:
    """A group that gives up fails as a child of the root; with no restart left there
    either, the system ends with the chain of causes."""
    graph = af.Graph()
    graph.add("src", Numbers, count=10)
    graph.add("flaky", Flaky, failures={3: 9})
    graph.add("sink", Collect, into=[])
    graph.chain("src", "flaky", "sink")
    graph.group("work", ["flaky"], max_restarts=0)
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.EscalationError) as caught:
        async with af.open_system(graph):
            pass
    chain_ = caught.value.chain
    assert [getattr(e, "supervisor", None) for e in chain_[:2]] == ["graph", "work"]
    assert isinstance(chain_[-1], RuntimeError)
    assert caught.value.module == "flaky"


async def test_auto_shutdown_ends_the_graph_when_significant_children_are_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A never-ending side source does not keep the graph alive once the significant
    source and sink are done."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=5)
    graph.add("sink", Collect, into=out)
    graph.add("ticker", Forever, interval=1)
    graph.add("ticks", Collect, into=[])
    graph.link("src", "sink")
    graph.link("ticker", "ticks")
    graph.supervise("src", significant=True)
    graph.supervise("sink", significant=True)
    graph.supervisor(auto_shutdown="all_significant")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    assert out == [0, 1, 2, 3, 4]
    assert system.status().actors["ticker"].state is af.ActorState.TERMINATED


async def test_a_permanent_source_is_restarted_after_it_ends_normally() -> None:
    """permanent children come back even after a normal end (until the intensity)."""
    out: list[int] = []
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=2, journal=journal)
    graph.add("sink", Collect, into=out)
    graph.link("src", "sink")
    graph.supervise("src", restart="permanent")
    graph.supervisor(max_restarts=2, period=60)
    with pytest.raises(af.EscalationError, match="child 'src'"):
        async with af.open_system(graph) as system:
            pass
    assert [entry for entry in journal if entry.startswith("start")] == ["start:src"] * 3
    assert journal.count("cleanup:src") == 3
    # The last batch may be consumed or cut off by the escalation: either way, counted.
    status = system.status()
    assert len(out) + status.dropped == 6
    assert out == [0, 1] * (len(out) // 2)


class Stubborn(af.Sink):
    """Takes forever on item 0 the first time; fails on item 5."""

    def __init__(self, into: list[int], state: dict[str, int]) -> None:
        self.into = into
        self.state = state

    async def consume(self, data: int) -> None:
        if data == 0 and self.state["slow"]:
            self.state["slow"] -= 1
            await trio.sleep(1000)
        self.into.append(data)


async def test_a_stopped_member_is_killed_after_its_shutdown_timeout_and_keeps_its_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In a one_for_all restart, a member that does not stop within its shutdown timeout
    is cancelled; the item it held goes back to its link and is handled after."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=10)
    graph.add("split", Counting, births=[], label="split")
    graph.add("flaky", Flaky, failures={5: 1})
    graph.add("slow", Stubborn, into=out, state={"slow": 1})
    graph.add("sink", Collect, into=[])
    graph.link("src", "split")
    graph.link("split", "flaky")
    graph.link("split", "slow", copy="none")
    graph.link("flaky", "sink")
    graph.supervise("slow", shutdown=2)
    graph.supervise("flaky", attempts=2)
    graph.group("pair", ["flaky", "slow"], strategy="one_for_all", max_restarts=2)
    began = trio.current_time()
    async with af.open_system(graph) as system:
        pass
    assert trio.current_time() - began < 10
    assert out == list(range(10))
    assert system.status().actors["slow"].restarts == 1


async def test_the_system_exposes_its_supervisors_for_dynamic_control(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Children of a running graph can be listed, stopped and restarted by name."""
    graph = af.Graph()
    graph.add("ticker", Forever, interval=1)
    graph.add("ticks", Collect, into=[])
    graph.link("ticker", "ticks")
    async with af.open_system(graph) as system:
        root = system.supervisor()
        assert [c.name for c in root.which_children()] == ["ticks", "ticker"]
        assert root.count_children()["active"] == 2
        await trio.sleep(3)
        await root.terminate_child("ticker")
        assert root.count_children()["active"] == 1
        # Stopped, not gone: its downstream still waits, and it can come back.
        await root.restart_child("ticker")
        await trio.sleep(3)
        await root.terminate_child("ticker")
        # Deleting it ends it for good: the end of stream reaches "ticks", and the
        # graph ends by itself.
        await root.delete_child("ticker")
        with pytest.raises(KeyError, match="no supervisor 'nope'"):
            system.supervisor("nope")
    assert system.status().actors["ticks"].state is af.ActorState.TERMINATED


@pytest.mark.parametrize(
    ("configure", "message"),
    [
        (lambda g: g.supervise("ghost"), "supervise: unknown module 'ghost'"),
        (lambda g: g.group("g", ["ghost"]), "group 'g': unknown module 'ghost'"),
        (lambda g: g.group("g", []), "group 'g' has no members"),
        (lambda g: g.group("src", ["sink"]), "group 'src': the name is already used"),
        (
            lambda g: (g.group("g1", ["sink"]), g.group("g2", ["sink"])),
            "module 'sink' is in groups 'g1' and 'g2'",
        ),
        (lambda g: g.dead_letters("ghost"), "dead_letters: unknown module 'ghost'"),
        (lambda g: g.dead_letters("sink.nope"), "dead_letters: module 'sink' has no input port"),
    ],
)
def test_bad_supervision_declarations_are_graph_errors(configure: Any, message: str) -> None:
    """Supervision declarations are validated with the graph and name the culprit."""
    graph = af.Graph()
    graph.add("src", Numbers)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    configure(graph)
    with pytest.raises(af.GraphError, match=message):
        graph.validate()


def test_bad_supervise_options_fail_at_once() -> None:
    """Options that can never be valid are refused when declared."""
    graph = af.Graph()
    with pytest.raises(ValueError, match="attempts must be an integer from 1 to "):
        graph.supervise("x", attempts=0)
    with pytest.raises(ValueError, match="significant child cannot be permanent"):
        graph.supervise("x", restart="permanent", significant=True)


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 40),
    stages=st.integers(1, 3),
    buffer=st.integers(1, 6),
    max_batch=st.integers(1, 8),
    data=st.data(),
)
def test_every_item_is_handled_or_dead_lettered_exactly_once(
    count: int, stages: int, buffer: int, max_batch: int, data: st.DataObject
) -> None:
    """Random pipelines with random crash schedules: each item the source produced reaches
    the sink once or is dead-lettered once, never lost and never duplicated."""
    values = st.integers(0, count - 1)
    graph = af.Graph()
    graph.add("src", Numbers, count=count)
    names = ["src"]
    attempts: list[int] = []
    schedules: list[dict[int, int]] = []
    for index in range(stages):
        schedule = data.draw(st.dictionaries(values, st.integers(1, 3), max_size=5))
        tries = data.draw(st.integers(1, 3))
        name = f"p{index}"
        graph.add(name, Flaky, failures=dict(schedule))
        graph.supervise(name, attempts=tries)
        names.append(name)
        attempts.append(tries)
        schedules.append(schedule)
    sink_schedule = data.draw(st.dictionaries(values, st.integers(1, 3), max_size=5))
    sink_tries = data.draw(st.integers(1, 3))
    out: list[int] = []
    graph.add("sink", FlakySink, failures=dict(sink_schedule), into=out)
    graph.supervise("sink", attempts=sink_tries)
    names.append("sink")
    graph.chain(*names, buffer=buffer)
    graph.supervisor(max_restarts=1000)

    status = af.run(graph, max_batch=max_batch)

    expected_out = []
    expected_dead = []
    for value in range(count):
        fate = "out"
        for schedule, tries in [
            *zip(schedules, attempts, strict=True),
            (sink_schedule, sink_tries),
        ]:
            if schedule.get(value, 0) >= tries:
                fate = "dead"
                break
        (expected_out if fate == "out" else expected_dead).append(value)
    assert sorted(out) == expected_out
    letters = sum(actor.dead_lettered for actor in status.actors.values())
    assert letters == len(expected_dead)
    assert status.dropped == 0
    assert status.state is af.SystemState.DONE


class BreaksOnRebuild(af.Processor):
    """Builds once; every later construction fails (a lost device, say)."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, built: list[int]) -> None:
        built.append(1)
        if len(built) > 1:
            raise OSError("device /dev/x vanished")

    def process(self, data: int) -> int:
        if data == 3:
            raise ValueError("bad reading")
        return data


async def test_a_module_that_cannot_be_rebuilt_escalates_with_an_initialization_error() -> None:
    """A restart whose constructor raises is retried within the intensity, then escalates
    with the InitializationError in the chain; cleanup ran for the instance that ran."""
    built: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=10)
    graph.add("dev", BreaksOnRebuild, built=built)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "dev", "sink")
    graph.supervisor(max_restarts=2, period=60)
    with pytest.raises(af.EscalationError) as caught:
        async with af.open_system(graph):
            pass
    assert isinstance(caught.value.__cause__, af.InitializationError)
    assert "module 'dev' failed in init: OSError: device /dev/x vanished" in str(caught.value)
    assert len(built) == 1 + 2  # the first build, then one per allowed restart attempt


# ------------------------------------------------------------------------------------------------
# Dead letters, groups, stops and restarts under way (moved from test_regressions.py)
# ------------------------------------------------------------------------------------------------


class GenFailing(af.Processor):
    def process(self, data: int) -> Iterator[int]:
        yield data * 10
        yield data * 10 + 1
        if data == 2:
            raise ValueError("boom")


class ManyFailing(af.Processor):
    def process(self, data: int) -> af.Many:
        if data == 2:
            raise ValueError("boom")
        return af.Many([data * 10, data * 10 + 1])


@pytest.mark.parametrize("processor", [GenFailing, ManyFailing])
async def test_outputs_of_an_item_that_fails_part_way_are_not_sent(
    processor: type[af.Processor],
) -> None:
    """An item that fails part-way is dead-lettered once, the outputs it made before failing are
    not sent, and the counters add up."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=4)
    graph.add("p", processor)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    async with af.open_system(graph) as system:
        pass
    status = system.status()
    assert out == [0, 1, 10, 11, 30, 31]
    assert [letter.item for letter in system.dead_letters] == [2]
    p = status.actors["p"]
    assert (p.received, p.emitted, p.dead_lettered, p.dropped) == (4, 6, 1, {})
    assert_accounted(status, {"p": 3, "k": len(out)})


class FlakyAnySink(af.Sink):
    """Collects, but raises on the items of ``failures`` as many times as their count says;
    FlakySink for items of any type."""

    def __init__(self, failures: dict[int, int], into: list[int]) -> None:
        self.failures = failures
        self.into = into

    def consume(self, data: int) -> None:
        if self.failures.get(data, 0) > 0:
            self.failures[data] -= 1
            raise RuntimeError(f"cannot store {data}")
        self.into.append(data)


class Ticks(af.Source):
    """Emits ``count`` ints (forever if None) one second apart while active; raises once
    on ``crash["at"]`` while ``crash["left"]`` is positive."""

    def __init__(self, count: int | None = None, crash: dict[str, int] | None = None) -> None:
        self.count = count
        self.crash = crash if crash is not None else {}

    async def start(self) -> None:
        for n in itertools.count() if self.count is None else range(self.count):
            if not self.active:
                return
            if n == self.crash.get("at") and self.crash.get("left", 0) > 0:
                self.crash["left"] -= 1
                raise RuntimeError("source crash")
            await self.emit(n)
            await trio.sleep(1)


async def test_a_group_restarted_after_escalating_loses_no_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group that gave up and was restarted by the root keeps its links open, so every
    item after the failing one still reaches the sink."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=20)
    graph.add("p", Flaky, failures={3: 1})
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k", buffer=4)
    graph.group("grp", ["p"], max_restarts=0)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert out == [n for n in range(20) if n != 3]
    assert [letter.item for letter in system.dead_letters] == [3]
    assert status.actors["p"].restarts == 1
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_a_group_restarted_as_a_bystander_loses_no_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group stopped and restarted by a root one_for_all restart comes back with its links
    open, so the restarted source's items all reach the sink."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=20)
    graph.add("p", Pass)
    graph.add("k", FlakyAnySink, failures={5: 1}, into=out)
    graph.chain("src", "p", "k", buffer=4)
    graph.supervise("k", attempts=2)
    graph.group("grp", ["p"])
    graph.supervisor(strategy="one_for_all")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.actors["p"].restarts == 1
    # The restarted source starts over: its whole second stream is stored.
    assert out[:-20] == list(range(len(out) - 20))
    assert out[-20:] == list(range(20))
    assert not system.dead_letters
    assert all(actor.dropped == {} for actor in status.actors.values())
    assert all(link.dropped == {} for link in status.links.values())
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_a_child_stopped_by_terminate_child_resumes_after_restart_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child stopped by terminate_child handles, after restart_child, what was queued for it
    and what comes next, and its consumer is still there."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Ticks, count=15)
    graph.add("p", Pass)
    graph.add("k", Collect, into=out)
    graph.chain("src", "p", "k")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            root = system.supervisor()
            await trio.sleep(3.5)
            await root.terminate_child("p")
            await trio.sleep(2)
            assert system.status().actors["k"].state is not af.ActorState.TERMINATED
            await root.restart_child("p")
    status = system.status()
    assert out == list(range(15))
    assert status.state is af.SystemState.DONE
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out)})


async def test_the_system_ends_done_after_the_root_recovered_from_a_group_escalation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group escalation the root restarts the group for is not the system's failure, so
    open_system raises nothing and the system ends DONE."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=5)
    graph.add("k", FlakyAnySink, failures={4: 1}, into=out)
    graph.link("src", "k")
    graph.group("grp", ["k"], max_restarts=0)
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.actors["k"].state is af.ActorState.TERMINATED
    assert out == [0, 1, 2, 3]
    assert [letter.item for letter in system.dead_letters] == [4]
    assert_accounted(status, {"k": len(out)})


@pytest.mark.parametrize("case", ["permanent source", "stop during backoff"])
async def test_stop_ends_a_source_that_is_being_restarted(
    autojump_clock: trio.testing.MockClock, case: str
) -> None:
    """System.stop() is not lost while the supervisor restarts a source (a permanent one that
    stopped, or one waiting out a backoff), so the system ends DONE."""
    out: list[int] = []
    graph = af.Graph(name="g")
    if case == "permanent source":
        graph.add("src", Ticks)
        graph.supervise("src", restart="permanent")
    else:
        graph.add("src", Ticks, crash={"at": 3, "left": 1})
        graph.supervisor(backoff=af.Backoff(min=10, max=10, jitter=0))
    graph.add("k", Collect, into=out)
    graph.link("src", "k")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(5.5)  # with a backoff: crashed at 3, restart due at 13
            await system.stop()
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.actors["src"].reason == "stopped"
    assert out == list(range(len(out)))
    assert len(out) >= 3
    assert_accounted(status, {"k": len(out)})


async def test_a_dead_letter_module_feeding_a_consumer_lets_the_graph_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dead-letter module that is a processor forwarding to a sink receives the letters
    and ends with the rest of the graph."""

    class Letters(af.Processor):
        inputs: ClassVar = {"in": af.DeadLetter}
        outputs: ClassVar = {"out": str}

        def process(self, letter: af.DeadLetter) -> str:
            return f"{letter.actor}:{letter.item}"

    out: list[int] = []
    logged: list[str] = []
    graph = af.Graph(name="g")
    graph.add("src", Numbers, count=5)
    graph.add("p", Flaky, failures={2: 1})
    graph.add("k", Collect, into=out)
    graph.add("letters", Letters)
    graph.add("log", Collect, into=logged)
    graph.chain("src", "p", "k")
    graph.link("letters", "log")
    graph.dead_letters("letters")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert out == [0, 1, 3, 4]
    assert logged == ["p:2"]
    # The dead-letter link has no producing actor: account for it here, the rest below.
    letter_link = status.links.pop("<dead letters>.out -> letters.in")
    assert (letter_link.sent, letter_link.delivered, letter_link.dropped) == (1, 1, {})
    assert status.actors["letters"].received == status.actors["letters"].emitted == 1
    assert_accounted(status, {"p": one_to_one(status, "p"), "k": len(out), "log": len(logged)})


async def test_restart_child_during_a_restart_backoff_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """restart_child on a child waiting out its restart backoff raises RuntimeError, and
    only one incarnation ever runs at a time."""
    live = 0
    peak = 0

    class Counted(Ticks):
        async def start(self) -> None:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)
            try:
                await super().start()
            finally:
                live -= 1

    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Counted, count=6, crash={"at": 2, "left": 1})
    graph.add("k", Collect, into=out)
    graph.link("src", "k")
    graph.supervisor(backoff=af.Backoff(min=10, max=10, jitter=0))
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(5)  # crashed at 2, restart due at 12
            with pytest.raises(RuntimeError, match="being restarted already"):
                await system.supervisor().restart_child("src")
    status = system.status()
    assert peak == 1
    assert status.actors["src"].restarts == 1
    assert out == [0, 1, *range(6)]
    assert_accounted(status, {"k": len(out)})


async def test_terminate_child_during_a_restart_backoff_keeps_the_child_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child stopped by terminate_child while waiting out its restart backoff is not restarted
    when the backoff ends, and delete_child then ends it for good."""
    out: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src", Ticks, crash={"at": 3, "left": 1})
    graph.add("k", Collect, into=out)
    graph.link("src", "k")
    graph.supervisor(backoff=af.Backoff(min=10, max=10, jitter=0))
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            root = system.supervisor()
            await trio.sleep(5)  # crashed at 3, restart due at 13
            await root.terminate_child("src")
            await trio.sleep(20)
            assert not {c.name: c.running for c in root.which_children()}["src"]
            await root.delete_child("src")
    status = system.status()
    assert out == [0, 1, 2]
    assert status.actors["src"].restarts == 0
    assert status.state is af.SystemState.DONE
    assert_accounted(status, {"k": len(out)})


async def test_killing_a_group_does_not_wait_for_upstream_cleanups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """terminate_child on a group with shutdown=1 whose member hangs takes about that second,
    not the cleanup timeouts of the still running actors upstream."""

    class Stuck(af.Sink):
        async def consume(self, data: int) -> None:
            await trio.sleep_forever()

    graph = af.Graph(name="g")
    graph.add("src", Ticks)
    graph.add("a", Pass)
    graph.add("b", Pass)
    graph.add("c", Pass)
    graph.add("k", Stuck)
    graph.chain("src", "a", "b", "c", "k")
    graph.group("grp", ["k"], shutdown=1)
    with trio.fail_after(60):
        async with af.open_system(graph, cleanup_timeout=5) as system:
            await trio.sleep(3)
            began = trio.current_time()
            await system.supervisor().terminate_child("grp")
            assert trio.current_time() - began <= 1.5
            assert system.status().actors["k"].reason == "killed"
            system.cancel()
    status = system.status()
    assert_accounted(
        status,
        {name: one_to_one(status, name) for name in "abc"} | {"k": 0},
    )


async def test_a_transient_child_that_ended_during_a_restart_backoff_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A source that finished normally while a one_for_all restart waited out its backoff is not
    started again, which would emit its whole stream twice."""
    out_a: list[int] = []
    out_b: list[int] = []
    graph = af.Graph(name="g")
    graph.add("src_a", Ticks, count=20)
    graph.add("k_a", FlakyAnySink, failures={0: 1}, into=out_a)
    graph.add("src_b", Ticks, count=3)
    graph.add("k_b", Collect, into=out_b)
    graph.link("src_a", "k_a")
    graph.link("src_b", "k_b")
    graph.supervisor(strategy="one_for_all", backoff=af.Backoff(min=10, max=10, jitter=0))
    with trio.fail_after(120):
        async with af.open_system(graph) as system:
            pass
    status = system.status()
    assert out_b == [0, 1, 2]
    assert status.actors["src_b"].restarts == 0
    assert status.actors["src_b"].emitted == 3
    assert [letter.item for letter in system.dead_letters] == [0]
    assert_accounted(status, {"k_a": len(out_a), "k_b": len(out_b)})


async def test_a_significant_group_ends_the_graph_under_auto_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A group can be significant: once its members are done, the root's auto-shutdown
    ends the graph although a never-ending source runs beside it."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=5)
    graph.add("sink", Collect, into=out)
    graph.add("ticker", Forever, interval=1)
    graph.add("ticks", Collect, into=[])
    graph.link("src", "sink")
    graph.link("ticker", "ticks")
    graph.group("work", ["sink", "src"], significant=True)
    graph.supervisor(auto_shutdown="any_significant")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            pass
    assert out == [0, 1, 2, 3, 4]
    assert system.status().actors["ticker"].state is af.ActorState.TERMINATED


async def test_shutdown_child_ends_a_module_with_reason_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One module shut down from the API ends for good with reason shutdown: its end
    of stream reaches its downstream and the graph ends by itself."""
    graph = af.Graph()
    graph.add("ticker", Forever, interval=1)
    graph.add("ticks", Collect, into=[])
    graph.link("ticker", "ticks")
    graph.supervise("ticker", restart="permanent")
    with trio.fail_after(60):
        async with af.open_system(graph) as system:
            await trio.sleep(3)
            await system.supervisor().shutdown_child("ticker")
    ticker = system.status().actors["ticker"]
    assert ticker.state is af.ActorState.TERMINATED
    assert ticker.reason == "shutdown"
    assert ticker.restarts == 0


async def test_a_cancel_while_a_crashed_actor_cleans_up_ends_the_system_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cancel() that lands while a crashed actor's cleanup() runs (before its supervisor
    heard of the crash) ends the system once that cleanup is done: the actors downstream
    do not wait out their ``cleanup_timeout * ancestors`` safety net for it."""
    cleaning = trio.Event()

    class Crashes(af.Processor):
        def process(self, data: int) -> int:
            raise ValueError("broken")

        async def cleanup(self) -> None:
            cleaning.set()
            await trio.sleep(2)

    graph = af.Graph()
    graph.add("src", Forever, interval=1)
    graph.add("mid", Crashes)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "mid", "sink")
    graph.supervisor(max_restarts=100, period=1)
    with trio.fail_after(60):
        async with af.open_system(graph, cleanup_timeout=5) as system:
            await cleaning.wait()
            began = trio.current_time()
            system.cancel()
    assert trio.current_time() - began <= 2.5
    assert system.status().actors["mid"].state is not af.ActorState.ZOMBIE


class Unsteady(af.Processor):
    """Takes a random while per item, fails at random, and cleans up in ``slow`` s."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, seed: int, p: float, slow: float) -> None:
        self.rng, self.p, self.slow = random.Random(seed), p, slow

    async def process(self, data: int) -> int:
        await trio.sleep(self.rng.random() * 0.3)
        if self.rng.random() < self.p:
            raise ValueError("unsteady")
        return data

    async def cleanup(self) -> None:
        await trio.sleep(self.slow)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    slows=st.lists(st.sampled_from([0.0, 0.05, 0.5]), min_size=1, max_size=4),
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    backoff=st.booleans(),
    at=st.floats(0, 5),
)
def test_a_cancel_during_crashes_ends_within_the_cleanups_it_waits_for(
    seed: int, slows: list[float], strategy: str, backoff: bool, at: float
) -> None:
    """Random chains whose processors crash at random, cancelled at a random moment (a
    restart, a backoff, a bystander stop or a cleanup under way): the system ends once
    the cleanups still running are done, never after the cleanup_timeout safety net."""
    graph = af.Graph()
    graph.add("src", Forever, interval=0.1)
    names = ["src"]
    for index, slow in enumerate(slows):
        graph.add(f"p{index}", Unsteady, seed=seed + index, p=0.3, slow=slow)
        names.append(f"p{index}")
    graph.add("sink", Collect, into=[])
    graph.chain(*names, "sink")
    graph.supervisor(
        strategy=strategy,
        max_restarts=1000,
        period=1,
        backoff=af.Backoff(min=0.1, max=1, jitter=0) if backoff else None,
    )

    async def cancelled() -> float:
        async with af.open_system(graph, cleanup_timeout=5) as system:
            await trio.sleep(at)
            began = trio.current_time()
            system.cancel()
        return trio.current_time() - began

    took = trio.run(cancelled, clock=trio.testing.MockClock(autojump_threshold=0))
    assert took <= sum(slows) + 0.1
