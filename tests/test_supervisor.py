"""The supervisor, on its own: the behaviours OTP's supervisor test suite checks.

Children are scriptable fake workers; time is virtual (MockClock), so timeouts, restart
windows and backoff are exact.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import actorflow as af
from actorflow._supervisor import ChildSpec, Supervisor, SupervisorSpec


class Fake:
    """A worker whose life the test scripts: it runs until told to end or crash."""

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        failing_starts: int = 0,
        ignores_stop: bool = False,
    ) -> None:
        self.name = name
        self.journal = journal
        self.failing_starts = failing_starts
        self.ignores_stop = ignores_stop
        self.incarnations = 0
        self._end = trio.Event()
        self._error: BaseException | None = None

    async def prepare(self) -> None:
        if self.failing_starts:
            self.failing_starts -= 1
            self.journal.append(f"start-failed:{self.name}")
            raise OSError(f"{self.name} cannot start")
        self._end = trio.Event()
        self._error = None

    async def run(self) -> None:
        self.incarnations += 1
        self.journal.append(f"run:{self.name}")
        await self._end.wait()
        if self._error is not None:
            raise self._error

    async def request_stop(self) -> None:
        self.journal.append(f"stop:{self.name}")
        if not self.ignores_stop:
            self._end.set()

    def terminate(self, reason: str) -> None:
        self.journal.append(f"terminated:{self.name}:{reason}")

    def on_kill(self) -> None:
        self.journal.append(f"kill:{self.name}")

    # test controls
    def crash(self, message: str = "boom") -> None:
        self._error = ValueError(message)
        self._end.set()

    def finish(self) -> None:
        self._end.set()


def make(
    journal: list[str], *names: str, spec: SupervisorSpec | None = None, **child: Any
) -> tuple[Supervisor, dict[str, Fake]]:
    fakes = {name: Fake(name, journal) for name in names}
    sup = Supervisor("sup", spec, [(fake, ChildSpec(**child)) for fake in fakes.values()])
    return sup, fakes


@asynccontextmanager
async def running(sup: Supervisor) -> AsyncIterator[list[BaseException]]:
    """Run ``sup`` in the background; collect what its run() raised."""
    raised: list[BaseException] = []

    async def supervise() -> None:
        try:
            await sup.run()
        except Exception as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervise)
        with trio.move_on_after(1):
            await sup.started.wait()
        yield raised


async def settle() -> None:
    await trio.sleep(0.001)


async def test_children_start_in_order_and_stop_in_reverse(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Children start in their declared order; a stop stops them in reverse order."""
    journal: list[str] = []
    sup, _ = make(journal, "a", "b", "c")
    async with running(sup):
        assert journal == ["run:a", "run:b", "run:c"]
        assert sup.count_children() == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}
        journal.clear()
        await sup.request_stop()
    # Stopped, not ended for good: that is for whoever owns the supervisor to decide.
    assert journal == ["stop:c", "stop:b", "stop:a"]
    sup.terminate("shutdown")
    assert journal[3:] == [
        "terminated:a:shutdown",
        "terminated:b:shutdown",
        "terminated:c:shutdown",
    ]


async def test_a_child_failing_at_the_initial_start_stops_the_started_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """If a child cannot start, the ones already started are stopped in reverse and the
    supervisor fails with that child's error."""
    journal: list[str] = []
    fakes = [Fake("a", journal), Fake("b", journal), Fake("c", journal, failing_starts=1)]
    sup = Supervisor("sup", None, [(f, ChildSpec()) for f in fakes])
    with pytest.raises(OSError, match="c cannot start"):
        await sup.run()
    assert journal == [
        "run:a",
        "run:b",
        "start-failed:c",
        "stop:b",
        "stop:a",
    ]


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        ("permanent", "finish", True),
        ("permanent", "crash", True),
        ("transient", "finish", False),
        ("transient", "crash", True),
        ("temporary", "finish", False),
        ("temporary", "crash", False),
    ],
)
async def test_restart_types(
    autojump_clock: trio.testing.MockClock, restart: str, how: str, restarted: bool
) -> None:
    """permanent: always restarted; transient: only after a crash; temporary: never."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "keep", restart=restart)
    async with running(sup):
        getattr(fakes["a"], how)()
        await settle()
        assert fakes["a"].incarnations == (2 if restarted else 1)
        listed = [c.name for c in sup.which_children()]
        # A temporary child is removed from the list once it ended.
        assert ("a" in listed) is (restart != "temporary")
        await sup.request_stop()


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
async def test_a_child_stopped_by_terminate_child_is_not_restarted(
    autojump_clock: trio.testing.MockClock, restart: str
) -> None:
    """A child ended by shutdown (terminate_child) stays down whatever its restart type."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b", restart=restart)
    async with running(sup):
        await sup.terminate_child("a")
        await settle()
        assert fakes["a"].incarnations == 1
        # A temporary one is forgotten (OTP deletes its spec); the others stay listed.
        listed = [True] if restart == "temporary" else [False, True]
        assert [c.running for c in sup.which_children()] == listed
        await sup.request_stop()


async def test_one_for_one_restarts_only_the_failed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """one_for_one: a crash restarts that child alone."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b", "c", spec=SupervisorSpec(strategy="one_for_one"))
    async with running(sup):
        journal.clear()
        fakes["b"].crash()
        await settle()
        assert journal == ["run:b"]
        assert [c.restarts for c in sup.which_children()] == [0, 1, 0]
        await sup.request_stop()


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """one_for_all: the others are stopped in reverse order, then all start again in order."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b", "c", spec=SupervisorSpec(strategy="one_for_all"))
    async with running(sup):
        journal.clear()
        fakes["b"].crash()
        await settle()
        assert journal == ["stop:c", "stop:a", "run:a", "run:b", "run:c"]
        await sup.request_stop()


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rest_for_one: the failed child and the ones started after it are restarted."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b", "c", "d", spec=SupervisorSpec(strategy="rest_for_one"))
    async with running(sup):
        journal.clear()
        fakes["b"].crash()
        await settle()
        assert journal == ["stop:d", "stop:c", "run:b", "run:c", "run:d"]
        assert fakes["a"].incarnations == 1
        await sup.request_stop()


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
async def test_exceeding_the_intensity_stops_everything_and_escalates(
    autojump_clock: trio.testing.MockClock, strategy: str
) -> None:
    """More than max_restarts within period: all children stop in reverse and the
    supervisor fails with an EscalationError carrying the cause."""
    journal: list[str] = []
    spec = SupervisorSpec(strategy=strategy, max_restarts=2, period=5)
    sup, fakes = make(journal, "a", "b", "c", spec=spec, restart="permanent")
    async with running(sup) as raised:
        for _ in range(3):
            fakes["b"].crash("sensor on fire")
            await settle()
    [error] = raised
    assert isinstance(error, af.EscalationError)
    assert error.supervisor == "sup"
    assert error.child == "b"
    assert error.restarts == 3
    assert isinstance(error.__cause__, ValueError)
    assert "gave up after 2 restart(s) in 5 s (max_restarts=2)" in str(error)
    assert "sensor on fire" in str(error)
    # b is down; the others are stopped in reverse order. None is ended for good: the
    # parent may restart this supervisor, and with it every child.
    assert journal[-2:] == ["stop:c", "stop:a"]
    assert not any(entry.startswith("terminated") for entry in journal)


async def test_with_the_default_intensity_one_restart_is_allowed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """OTP's default intensity (1 restart in 5 s): the second quick crash escalates."""
    journal: list[str] = []
    sup, fakes = make(journal, "a")
    async with running(sup) as raised:
        fakes["a"].crash()
        await settle()
        assert fakes["a"].incarnations == 2
        assert not raised
        fakes["a"].crash()
        await settle()
    assert isinstance(raised[0], af.EscalationError)


async def test_crashes_spaced_further_apart_than_period_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Restarts older than the window do not count: slow crashes are restarted forever."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", spec=SupervisorSpec(max_restarts=1, period=5))
    async with running(sup) as raised:
        for _ in range(10):
            fakes["a"].crash()
            await trio.sleep(5.5)
        assert not raised
        assert fakes["a"].incarnations == 11
        await sup.request_stop()


@pytest.mark.parametrize("strategy", ["one_for_all"])
async def test_a_sibling_failing_to_restart_is_retried_within_the_intensity(
    autojump_clock: trio.testing.MockClock, strategy: str
) -> None:
    """During a group restart, a sibling that fails to start makes the restarted ones stop
    again and the restart is retried; each try counts against the intensity."""
    journal: list[str] = []
    sup, fakes = make(
        journal, "a", "b", "c", spec=SupervisorSpec(strategy=strategy, max_restarts=5)
    )
    async with running(sup) as raised:
        fakes["c"].failing_starts = 2
        journal.clear()
        fakes["b"].crash()
        await settle()
        assert not raised
        assert journal.count("start-failed:c") == 2
        assert [c.running for c in sup.which_children()] == [True, True, True]
        assert fakes["b"].incarnations == 4  # first run + 3 restart rounds
        await sup.request_stop()


async def test_a_child_that_keeps_failing_to_start_escalates_instead_of_spinning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A restart loop whose child never starts stops at the intensity limit."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", spec=SupervisorSpec(max_restarts=3, period=60))
    async with running(sup) as raised:
        fakes["a"].failing_starts = 10**6
        fakes["a"].crash()
        await settle()
    assert isinstance(raised[0], af.EscalationError)
    assert isinstance(raised[0].__cause__, OSError)
    assert journal.count("start-failed:a") == 3  # the 4th restart exceeded the limit


async def test_a_temporary_bystander_of_a_group_restart_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In one_for_all, a temporary sibling is stopped and removed, not restarted."""
    journal: list[str] = []
    a, b, t = Fake("a", journal), Fake("b", journal), Fake("t", journal)
    sup = Supervisor(
        "sup",
        SupervisorSpec(strategy="one_for_all"),
        [(a, ChildSpec()), (t, ChildSpec(restart="temporary")), (b, ChildSpec())],
    )
    async with running(sup):
        b.crash()
        await settle()
        assert t.incarnations == 1
        assert [c.name for c in sup.which_children()] == ["a", "b"]
        assert "terminated:t:shutdown" in journal
        await sup.request_stop()


async def test_shutdown_timeout_cancels_a_child_that_ignores_stop(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """A child that does not end within its shutdown timeout is cancelled and reported."""
    journal: list[str] = []
    stubborn = Fake("s", journal, ignores_stop=True)
    sup = Supervisor("sup", None, [(stubborn, ChildSpec(shutdown=3))])
    async with running(sup):
        began = trio.current_time()
        await sup.terminate_child("s")
        assert trio.current_time() - began == pytest.approx(3)
    killed = [e for e in logs if e["event"] == "supervisor.child_killed"]
    assert killed[0]["child"] == "s"
    assert killed[0]["timeout"] == 3


async def test_brutal_kill_cancels_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """shutdown='brutal_kill' does not ask: it cancels immediately."""
    journal: list[str] = []
    stubborn = Fake("s", journal, ignores_stop=True)
    sup = Supervisor("sup", None, [(stubborn, ChildSpec(shutdown="brutal_kill"))])
    async with running(sup):
        began = trio.current_time()
        await sup.terminate_child("s")
        assert trio.current_time() == began
    assert "stop:s" not in journal


async def test_infinity_waits_for_the_child_however_long_it_takes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """shutdown='infinity' waits until the child ends by itself."""
    journal: list[str] = []
    stubborn = Fake("s", journal, ignores_stop=True)
    sup = Supervisor("sup", None, [(stubborn, ChildSpec(shutdown="infinity"))])

    async def release_later() -> None:
        await trio.sleep(1000)
        stubborn.finish()

    async with running(sup), trio.open_nursery() as nursery:
        nursery.start_soon(release_later)
        began = trio.current_time()
        await sup.terminate_child("s")
        assert trio.current_time() - began == pytest.approx(1000)


async def test_escalation_climbs_a_nested_tree_to_the_root(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An inner supervisor that gives up fails as a child of its parent, and so on up."""
    journal: list[str] = []
    leaf = Fake("leaf", journal)
    inner = Supervisor("inner", SupervisorSpec(max_restarts=0), [(leaf, ChildSpec())])
    middle = Supervisor("middle", SupervisorSpec(max_restarts=0), [(inner, ChildSpec())])
    root = Supervisor("root", SupervisorSpec(max_restarts=0), [(middle, ChildSpec())])
    async with running(root) as raised:
        await settle()
        leaf.crash("disk full")
        await settle()
    [error] = raised
    assert isinstance(error, af.EscalationError)
    chain = error.chain
    assert [getattr(e, "supervisor", None) for e in chain[:3]] == ["root", "middle", "inner"]
    assert isinstance(chain[-1], ValueError)
    assert str(chain[-1]) == "disk full"
    assert error.module == "leaf"


async def test_an_inner_supervisor_is_restarted_by_its_parent_within_intensity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The parent restarts a failed inner supervisor (and with it the inner children)."""
    journal: list[str] = []
    leaf = Fake("leaf", journal)
    inner = Supervisor("inner", SupervisorSpec(max_restarts=0), [(leaf, ChildSpec())])
    root = Supervisor("root", SupervisorSpec(max_restarts=3), [(inner, ChildSpec())])
    async with running(root) as raised:
        await settle()
        leaf.crash()
        await settle()
        assert not raised
        assert leaf.incarnations == 2
        assert root.which_children()[0].restarts == 1
        assert root.which_children()[0].is_supervisor
        await root.request_stop()


async def test_dynamic_children_can_be_added_stopped_restarted_and_removed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start_child, terminate_child, restart_child and delete_child on a running supervisor."""
    journal: list[str] = []
    sup, _ = make(journal, "a")
    async with running(sup):
        extra = Fake("extra", journal)
        await sup.start_child(extra, ChildSpec(restart="permanent"))
        assert [c.name for c in sup.which_children()] == ["a", "extra"]
        assert sup.count_children()["active"] == 2
        with pytest.raises(ValueError, match="already has a child 'extra'"):
            await sup.start_child(Fake("extra", journal))
        with pytest.raises(RuntimeError, match=r"'extra'.*running; terminate it first"):
            await sup.delete_child("extra")
        with pytest.raises(RuntimeError, match="'a' of supervisor 'sup' is running"):
            await sup.restart_child("a")
        await sup.terminate_child("extra")
        assert sup.count_children()["active"] == 1
        await sup.restart_child("extra")
        assert extra.incarnations == 2
        await sup.terminate_child("extra")
        await sup.delete_child("extra")
        assert [c.name for c in sup.which_children()] == ["a"]
        with pytest.raises(KeyError, match=r"no child 'ghost' \(children: 'a'\)"):
            await sup.terminate_child("ghost")
        failing = Fake("bad", journal, failing_starts=1)
        with pytest.raises(OSError, match="bad cannot start"):
            await sup.start_child(failing)
        assert [c.name for c in sup.which_children()] == ["a"]
        await sup.request_stop()


async def test_a_supervisor_ends_when_no_child_is_left_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """When every child ended for good, the supervisor ends normally by itself."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b")
    with trio.fail_after(10):
        async with running(sup) as raised:
            fakes["a"].finish()
            fakes["b"].finish()
    assert not raised


@pytest.mark.parametrize(("mode", "ends_after"), [("any_significant", 1), ("all_significant", 2)])
async def test_auto_shutdown_on_significant_children(
    autojump_clock: trio.testing.MockClock, mode: str, ends_after: int
) -> None:
    """With auto_shutdown, the supervisor ends (stopping the rest) when any / all
    significant children ended normally."""
    journal: list[str] = []
    s1, s2, other = Fake("s1", journal), Fake("s2", journal), Fake("other", journal)
    sup = Supervisor(
        "sup",
        SupervisorSpec(auto_shutdown=mode),
        [
            (s1, ChildSpec(significant=True)),
            (s2, ChildSpec(significant=True)),
            (other, ChildSpec(restart="permanent")),
        ],
    )
    async with running(sup) as raised:
        s1.finish()
        await settle()
        assert ("stop:other" in journal) is (ends_after == 1)
        s2.finish()
        await settle()
        assert "stop:other" in journal
    assert not raised


async def test_auto_shutdown_never_keeps_running_after_significant_children_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """auto_shutdown='never' (the default) ignores significant children ending."""
    journal: list[str] = []
    s1, other = Fake("s1", journal), Fake("other", journal)
    sup = Supervisor("sup", None, [(s1, ChildSpec(significant=True)), (other, ChildSpec())])
    async with running(sup):
        s1.finish()
        await settle()
        assert "stop:other" not in journal
        await sup.request_stop()


async def test_backoff_delays_restarts_exponentially(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With a backoff, each quick restart waits twice as long as the previous one."""
    journal: list[str] = []
    spec = SupervisorSpec(max_restarts=10, period=1000, backoff=af.Backoff(min=1, max=5, jitter=0))
    sup, fakes = make(journal, "a", spec=spec)
    async with running(sup):
        starts = []
        for _ in range(5):
            fakes["a"].crash()
            began = trio.current_time()
            while fakes["a"].incarnations == len(starts) + 1:
                await trio.sleep(0.01)
            starts.append(round(trio.current_time() - began))
        assert starts == [1, 2, 4, 5, 5]
        await sup.request_stop()


async def test_a_restart_is_one_event_with_its_reason_error_and_backoff(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """A child restarted is said once, by supervisor.restarting (why it ended, its
    error, the backoff slept, who takes part); one that is not restarted is
    supervisor.child_exited."""
    journal: list[str] = []
    spec = SupervisorSpec(max_restarts=10, period=1000, backoff=af.Backoff(min=1, max=5, jitter=0))
    sup, fakes = make(journal, "a", spec=spec, restart=af.RestartType.TRANSIENT)
    async with running(sup):
        fakes["a"].crash("bad input")
        while fakes["a"].incarnations < 2:
            await trio.sleep(0.01)
        fakes["a"].finish()
    supervisor_events = [e for e in logs if e["event"].startswith("supervisor.")]
    restarting = [e for e in supervisor_events if e["event"] == "supervisor.restarting"]
    assert len(restarting) == 1
    assert {key: restarting[0][key] for key in ("child", "reason", "error", "backoff")} == {
        "child": "a",
        "reason": "failed",
        "error": "ValueError: bad input",
        "backoff": 1.0,
    }
    assert restarting[0]["group"] == ["a"]
    exited = [e for e in supervisor_events if e["event"] == "supervisor.child_exited"]
    assert [(e["child"], e["reason"]) for e in exited] == [("a", "normal")]


def test_backoff_jitter_spreads_delays_within_bounds() -> None:
    """Jitter moves each delay by at most the given fraction."""
    import random

    backoff = af.Backoff(min=1, max=8, jitter=0.25)
    rng = random.Random(1)
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(3 <= d <= 5 for d in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ChildSpec(restart="sometimes"), "restart must be one of"),
        (lambda: ChildSpec(shutdown=-1), "shutdown must be seconds from 0 to"),
        (
            lambda: ChildSpec(restart="permanent", significant=True),
            "significant child cannot be permanent",
        ),
        (lambda: SupervisorSpec(strategy="all_for_none"), "strategy must be one of"),
        (lambda: SupervisorSpec(max_restarts=-1), "max_restarts must be"),
        (lambda: SupervisorSpec(period=0), "period must be seconds from 1e-06"),
        (lambda: SupervisorSpec(auto_shutdown="sometimes"), "auto_shutdown must be one of"),
        (lambda: af.Backoff(min=-1), "min must be seconds from 0 to"),
        # Huge or tiny but "valid" numbers: a typo must not make a run that never ends.
        (lambda: SupervisorSpec(period=1e-320), "period must be seconds from 1e-06"),
        (lambda: SupervisorSpec(period=math.inf), "period must be seconds"),
        (lambda: af.Backoff(min=math.inf), "min must be seconds from 0 to 31536000"),
        (lambda: af.Backoff(max=1e300), "max must be seconds"),
        (lambda: af.Backoff(jitter=5), "jitter must be a number from 0 to 1"),
        (lambda: ChildSpec(shutdown=1e300), "shutdown must be seconds .* or inf"),
        (lambda: SupervisorSpec(max_restarts=10**5000), "an integer of 16,610 bits"),
    ],
)
def test_bad_supervision_options_are_refused_by_name(build: Any, message: str) -> None:
    """Invalid supervision options fail at construction, naming the option."""
    with pytest.raises(ValueError, match=message):
        build()


async def test_children_keep_their_order_when_one_is_deleted_and_added_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child deleted and started again goes to the end of the order, where
    rest_for_one and the reverse-order stop find it."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b", "c", spec=SupervisorSpec(strategy="rest_for_one"))
    async with running(sup):
        await sup.terminate_child("b")
        await sup.delete_child("b")
        again = Fake("b", journal)
        await sup.start_child(again)
        assert [c.name for c in sup.which_children()] == ["a", "c", "b"]
        journal.clear()
        fakes["c"].crash()
        await settle()
        assert journal == ["stop:b", "run:c", "run:b"]
        journal.clear()
        await sup.request_stop()
        await settle()
        assert journal[:3] == ["stop:b", "stop:c", "stop:a"]


def test_two_children_with_one_name_are_refused() -> None:
    """Children are found by name, so a supervisor refuses two children with one name."""
    journal: list[str] = []
    with pytest.raises(ValueError, match="two children named 'a'"):
        Supervisor("sup", None, [(Fake("a", journal), ChildSpec()) for _ in range(2)])


async def test_many_children_each_end_once_and_the_supervisor_ends_after_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With thousands of children, every exit is handled once, and the supervisor
    ends by itself after the last one."""
    journal: list[str] = []
    names = [f"w{i}" for i in range(2000)]
    sup, fakes = make(journal, *names)
    with trio.fail_after(10):
        async with running(sup) as raised:
            assert sup.count_children()["active"] == 2000
            for name in reversed(names):
                fakes[name].finish()
                if name == "w1000":
                    await settle()
                    assert sup.count_children()["active"] == 1000
    assert not raised
    ended = [entry for entry in journal if entry.startswith("terminated:")]
    assert sorted(ended) == sorted(f"terminated:{name}:normal" for name in names)


async def test_all_significant_counts_only_the_children_still_listed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A significant child deleted no longer holds up an all_significant shutdown."""
    journal: list[str] = []
    s1, s2, other = Fake("s1", journal), Fake("s2", journal), Fake("other", journal)
    sup = Supervisor(
        "sup",
        SupervisorSpec(auto_shutdown="all_significant"),
        [
            (s1, ChildSpec(significant=True)),
            (s2, ChildSpec(significant=True)),
            (other, ChildSpec(restart="permanent")),
        ],
    )
    async with running(sup) as raised:
        await sup.terminate_child("s2")
        await sup.delete_child("s2")
        s1.finish()
        await settle()
        assert "stop:other" in journal
    assert not raised


# -- Ctrl-C inside a starting child ------------------------------------------------------

_CTRL_C_IN_A_STARTING_CHILD = """
import sys
import trio
import actorflow._supervisor as S
from actorflow._supervisor import ChildSpec, Supervisor, SupervisorSpec

class Idle:
    def __init__(self, name): self.name = name
    async def prepare(self): pass
    async def run(self): await trio.sleep_forever()
    async def request_stop(self): pass
    def terminate(self, reason): pass
    def on_kill(self): pass

code = S.Supervisor._child_task.__code__
lines = open(code.co_filename).read().splitlines()
fired = []

def tracer(frame, event, arg):
    if frame.f_code is not code:
        return None
    def local(frame, event, arg):
        if event == "line" and not fired and "child.scope = scope" in lines[frame.f_lineno - 1]:
            fired.append(1)
            raise KeyboardInterrupt  # where trio would deliver a Ctrl-C
        return local
    return local

async def main():
    children = [(Idle("a"), ChildSpec()), (Idle("b"), ChildSpec())]
    supervisor = Supervisor("s", SupervisorSpec(), children)
    sys.settrace(tracer)
    try:
        await supervisor.run()
    finally:
        sys.settrace(None)

try:
    trio.run(main)
except BaseException as error:
    print("ended with", type(error).__name__, repr(error))
"""


def test_ctrl_c_in_a_child_before_it_answers_its_start_ends_the_program() -> None:
    """A KeyboardInterrupt that lands in a starting child before it told the supervisor
    it runs still ends the program (the supervisor waited for an answer for ever)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_IN_A_STARTING_CHILD],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert "KeyboardInterrupt" in done.stdout, done.stdout + done.stderr


async def test_rest_for_one_resumes_a_failed_restart_from_the_child_that_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rest_for_one: when a later child fails to start during a restart, the retry
    starts from that child; the ones already restarted keep running (OTP)."""
    journal: list[str] = []
    spec = SupervisorSpec(strategy="rest_for_one", max_restarts=5)
    sup, fakes = make(journal, "a", "b", "c", "d", spec=spec)
    async with running(sup) as raised:
        fakes["c"].failing_starts = 1
        journal.clear()
        fakes["b"].crash()
        await settle()
        assert not raised
        assert journal == ["stop:d", "stop:c", "run:b", "start-failed:c", "run:c", "run:d"]
        assert fakes["b"].incarnations == 2
        assert [c.running for c in sup.which_children()] == [True] * 4
        await sup.request_stop()


async def test_terminate_child_forgets_a_temporary_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """OTP deletes a temporary child's spec when it is terminated: it is not listed
    any more and ended for good, with reason shutdown."""
    journal: list[str] = []
    a, t = Fake("a", journal), Fake("t", journal)
    sup = Supervisor("sup", None, [(a, ChildSpec()), (t, ChildSpec(restart="temporary"))])
    async with running(sup):
        await sup.terminate_child("t")
        assert [c.name for c in sup.which_children()] == ["a"]
        assert "terminated:t:shutdown" in journal
        with pytest.raises(KeyError):
            await sup.restart_child("t")
        await sup.request_stop()


@pytest.mark.parametrize(("mode", "warned"), [("never", True), ("any_significant", False)])
def test_a_significant_child_under_auto_shutdown_never_is_warned_about(
    logs: list[dict[str, Any]], mode: str, warned: bool
) -> None:
    """OTP refuses a significant child when auto_shutdown is never; actorflow warns
    (refusing would break programs that worked), naming the child."""
    Supervisor(
        "sup",
        SupervisorSpec(auto_shutdown=mode),
        [(Fake("s", []), ChildSpec(significant=True))],
    )
    ignored = [e for e in logs if e["event"] == "supervisor.significant_ignored"]
    assert [e["child"] for e in ignored] == (["s"] if warned else [])


async def test_a_significant_inner_supervisor_shuts_its_parent_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A nested supervisor can be significant: its normal end counts for the parent's
    auto-shutdown like a worker's."""
    journal: list[str] = []
    leaf, other = Fake("leaf", journal), Fake("other", journal)
    inner = Supervisor("inner", None, [(leaf, ChildSpec())])
    root = Supervisor(
        "root",
        SupervisorSpec(auto_shutdown="any_significant"),
        [(inner, ChildSpec(significant=True)), (other, ChildSpec())],
    )
    async with running(root) as raised:
        leaf.finish()
        await settle()
        assert "stop:other" in journal
    assert not raised


async def test_shutdown_child_ends_one_child_for_good_with_reason_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """shutdown_child stops one child with its policy, ends it with reason shutdown,
    removes it and restarts nothing; the others run on."""
    journal: list[str] = []
    sup, fakes = make(journal, "a", "b", restart="permanent")
    async with running(sup) as raised:
        journal.clear()
        await sup.shutdown_child("a")
        await settle()
        assert journal == ["stop:a", "terminated:a:shutdown"]
        assert [c.name for c in sup.which_children()] == ["b"]
        assert fakes["a"].incarnations == 1
        await sup.request_stop()
    assert not raised


class DiesAtOnce(Fake):
    """Its first incarnation raises before its first checkpoint."""

    async def run(self) -> None:
        if not self.incarnations:
            self.incarnations += 1
            raise ValueError(f"{self.name} died at once")
        await super().run()


async def test_a_child_added_that_fails_before_its_first_checkpoint_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start_child lists the child before it starts it: an exit handled before
    start_child returns finds it and restarts it (it was ignored half of the time)."""
    journal: list[str] = []
    sup = Supervisor("sup", SupervisorSpec(max_restarts=100), [(Fake("a", journal), ChildSpec())])
    doomed = [DiesAtOnce(f"d{i}", journal) for i in range(20)]
    async with running(sup) as raised:
        for worker in doomed:
            await sup.start_child(worker, ChildSpec(restart="permanent"))
            await settle()
        assert [w.incarnations for w in doomed] == [2] * 20
        assert all(c.running for c in sup.which_children())
        await sup.request_stop()
    assert not raised


async def test_a_child_whose_start_fails_is_not_listed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start_child that fails in prepare() raises and leaves no trace."""
    journal: list[str] = []
    sup, _ = make(journal, "a")
    async with running(sup):
        with pytest.raises(OSError, match="x cannot start"):
            await sup.start_child(Fake("x", journal, failing_starts=1))
        assert [c.name for c in sup.which_children()] == ["a"]
        await sup.request_stop()
