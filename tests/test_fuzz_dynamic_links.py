"""Fuzz links added and removed while items flow (issue 13): random schedules of
``add_link``/``remove_link`` over a small fan-out graph, under the mock clock, must lose
nothing silently, duplicate nothing and leave status() consistent."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import actorflow as af

ITEMS = 12
TICKS = ITEMS + 6  # the consumers outlive the schedule
CONSUMERS = ("a", "b", "c")
SEQUENTIAL = {"a"}  # a sink: its links take workers=1 only


class Numbered(af.Source):
    """Emits ``(name, n)`` every second: items a consumer can tell apart."""

    def __init__(self, name: str, count: int, interval: float = 1) -> None:
        self.name = name
        self.count = count
        self.interval = interval

    async def start(self) -> None:
        for n in range(self.count):
            if not self.active:
                return
            await self.emit((self.name, n))
            await trio.sleep(self.interval)


class RecordSink(af.Sink):
    """Records what it consumes, slowly enough for small buffers to fill."""

    def __init__(self, into: list[Any], delay: float) -> None:
        self.into = into
        self.delay = delay

    async def consume(self, data: Any) -> None:
        await trio.sleep(self.delay)
        self.into.append(data)


class RecordProcessor(af.Processor):
    """A consumer that may take workers: records each item and filters it."""

    outputs: ClassVar = {"out": object}

    def __init__(self, into: list[Any], delay: float) -> None:
        self.into = into
        self.delay = delay

    async def process(self, data: Any) -> Any:
        await trio.sleep(self.delay)
        self.into.append(data)
        return None


def link_name(target: str) -> str:
    return f"src.out -> {target}.in"


@attrs.frozen
class Add:
    at: float
    target: str
    options: dict[str, Any]


@attrs.frozen
class Remove:
    at: float
    target: str
    return_items: bool


@attrs.frozen
class Toggle:
    """Add the link if it is absent, else remove it: most schedules then re-add pairs
    instead of being refused."""

    at: float
    target: str
    options: dict[str, Any]
    return_items: bool


def link_options(target: str) -> st.SearchStrategy[dict[str, Any]]:
    workers = st.just(1) if target in SEQUENTIAL else st.sampled_from([0, 1, 2, 3])
    return st.fixed_dictionaries(
        {},
        optional={
            "buffer": st.integers(1, 3),
            "workers": workers,
            "latest_only": st.booleans(),
            "overflow": st.sampled_from(["block", "drop_newest", "drop_oldest"]),
        },
    )


@st.composite
def operations(draw: st.DrawFn) -> Add | Remove | Toggle:
    # When, as a share of src's life: mostly while it emits, sometimes after it ended.
    at = draw(st.floats(0, 1.15, allow_nan=False).map(lambda t: round(t, 3)))
    target = draw(st.sampled_from(CONSUMERS))
    kind = draw(st.sampled_from(["toggle", "toggle", "toggle", "add", "remove"]))
    options = draw(link_options(target))
    return_items = draw(st.booleans())
    if kind == "add":
        return Add(at, target, options)
    if kind == "remove":
        return Remove(at, target, return_items)
    return Toggle(at, target, options, return_items)


@attrs.define
class Ledger:
    """What the test knows of each incarnation of a ``src -> target`` link."""

    offered: dict[str, int] = attrs.Factory(dict)
    accounted: dict[str, int] = attrs.Factory(dict)
    delivered: dict[str, int] = attrs.Factory(dict)
    returned: dict[str, list[Any]] = attrs.Factory(dict)
    live: set[str] = attrs.Factory(set)
    added_at: dict[str, int] = attrs.Factory(dict)
    closed_at: dict[str, int] = attrs.Factory(dict)
    first: dict[str, int] = attrs.Factory(dict)
    touched: set[str] = attrs.Factory(set)
    ever: set[str] = attrs.Factory(set)
    options: dict[str, dict[str, Any]] = attrs.Factory(dict)
    windows: dict[str, list[range]] = attrs.Factory(dict)
    """Per target, the item numbers ``src`` may have offered to each incarnation."""
    slack: dict[str, int] = attrs.Factory(dict)
    """Adds and removes made while ``src`` was blocked mid-emit: the item it was
    sending is counted as emitted, and may or may not be offered to this link."""
    booked: dict[str, tuple[int, int, int, int]] = attrs.Factory(dict)
    """Per target, the link's counts (delivered, depth, dropped, returned) already
    booked: the status counts every incarnation of a name together."""
    booked_drops: dict[str, dict[str, int]] = attrs.Factory(dict)
    """Per target, the link's drops by reason already booked."""

    def note_blocked(self, target: str, status: af.SystemStatus) -> None:
        if status.actors["src"].blocked_on is not None:
            self.slack[target] = self.slack.get(target, 0) + 1

    def close(self, target: str, link: af.LinkStatus, emitted: int) -> None:
        """Book a removed (or final) incarnation: what it was offered and where it went.
        Items still in it are delivered later (``depth``)."""
        self.offered[target] = self.offered.get(target, 0) + emitted - self.added_at[target]
        counts = (link.delivered, link.depth, sum(link.dropped.values()), link.returned)
        before = self.booked.get(target, (0, 0, 0, 0))
        delivered, depth, lost, returned = (
            now - then for now, then in zip(counts, before, strict=True)
        )
        self.booked[target] = counts
        earlier = self.booked_drops.get(target, {})
        self.booked_drops[target] = dict(link.dropped)
        new_reasons = {r for r, n in link.dropped.items() if n > earlier.get(r, 0)}
        self.accounted[target] = (
            self.accounted.get(target, 0) + delivered + depth + lost + returned
        )
        self.delivered[target] = self.delivered.get(target, 0) + delivered + depth
        self.windows.setdefault(target, []).append(range(self.first[target], emitted))
        options = self.options[target]
        if options.get("latest_only"):
            allowed = {"replaced"}
        elif options.get("overflow", "block") != "block":
            allowed = {"overflow"}
        else:
            allowed = set()
        # A link is also cut by its consumer's end or the system's shutdown.
        allowed |= {"shutdown", "receiver_closed", "link_removed"}
        assert new_reasons <= allowed, (link, options)


def build(records: dict[str, list[Any]], delays: dict[str, float], interval: float) -> af.Graph:
    """``src`` feeds nothing at start; ``tick`` feeds every consumer through untouched
    links of buffer 1 (they keep the consumers alive while ``src`` links come and go)."""
    graph = af.Graph()
    graph.add("src", Numbered, name="src", count=ITEMS, interval=interval)
    graph.add("tick", Numbered, name="tick", count=TICKS)
    graph.add("a", RecordSink, into=records["a"], delay=delays["a"])
    for name in ("b", "c"):
        graph.add(name, RecordProcessor, into=records[name], delay=delays[name])
    graph.add("spare", RecordSink, into=records["spare"], delay=0)
    graph.link("src", "spare", buffer=1)  # src's untouched link
    for name in CONSUMERS:
        graph.link("tick", name, buffer=1)
    return graph


async def apply(system: af.System, op: Add | Remove | Toggle, ledger: Ledger) -> None:
    """Apply one operation, checking the documented refusals."""
    if isinstance(op, Toggle):
        if op.target in ledger.live:
            op = Remove(op.at, op.target, op.return_items)
        else:
            op = Add(op.at, op.target, op.options)
    status = system.status()
    emitted = status.actors["src"].emitted
    name = link_name(op.target)
    if isinstance(op, Add):
        if op.target in ledger.live:
            event("add refused: duplicate")
            with pytest.raises(af.GraphError, match="declared twice"):
                await system.add_link("src", op.target, **op.options)
            return
        if any(status.actors[end].state is af.ActorState.TERMINATED for end in ("src", op.target)):
            event("add refused: a module ended")
            with pytest.raises(RuntimeError, match="has ended"):
                await system.add_link("src", op.target, **op.options)
            return
        before = status.links.get(name)
        if op.target in ledger.ever:
            event("pair re-added")
            ledger.close(op.target, status.links[name], ledger.closed_at[op.target])
        spec = await system.add_link("src", op.target, **op.options)
        assert spec.name == name
        fresh = system.status().links[name]
        assert not fresh.closed
        if before is not None:  # the removed links' counts stay, under the same name
            counts = (before.sent, before.delivered, before.returned, before.depth)
            assert (fresh.sent, fresh.delivered, fresh.returned, fresh.depth) == counts
            assert fresh.dropped == before.dropped
        ledger.options[op.target] = op.options
        blocked = status.actors["src"].blocked_on is not None
        ledger.first[op.target] = emitted - 1 if blocked else emitted
        ledger.live.add(op.target)
        ledger.ever.add(op.target)
        ledger.added_at[op.target] = emitted
        ledger.note_blocked(op.target, status)
        return
    if op.target not in ledger.live:
        event("remove refused: no such link")
        with pytest.raises(KeyError):
            await system.remove_link(name, return_items=op.return_items)
        return
    event(f"removed, blocked={status.actors['src'].blocked_on is not None}")
    items = await system.remove_link(name, return_items=op.return_items)
    if items:
        event("items handed back")
    if not op.return_items:
        assert items == []
    ledger.returned.setdefault(op.target, []).extend(items)
    ledger.live.discard(op.target)
    ledger.touched.add(op.target)
    ledger.closed_at[op.target] = emitted
    ledger.note_blocked(op.target, status)
    assert name not in [link.name for link in system.graph.links]
    gone = system.status().links[name]
    before = status.links[name]
    assert gone.closed, gone
    assert gone.returned == before.returned + len(items), gone
    assert gone.depth == before.depth - len(items), gone


@attrs.frozen
class Stop:
    """``system.stop()`` in the middle of the schedule: the sources stop, the rest drains."""

    at: float


async def run(
    schedule: list[Add | Remove | Toggle | Stop], delays: dict[str, float], interval: float
) -> None:
    records: dict[str, list[Any]] = {name: [] for name in (*CONSUMERS, "spare")}
    ledger = Ledger()
    with trio.fail_after(1000):
        async with af.open_system(build(records, delays, interval)) as system:
            for op in sorted(schedule, key=lambda op: op.at):
                await trio.sleep_until(op.at * ITEMS * interval)
                if isinstance(op, Stop):
                    await system.stop()
                else:
                    await apply(system, op, ledger)
            await trio.sleep_until(ITEMS + 3)
            live_at_end = set(ledger.live)
    status = system.status()
    emitted = status.actors["src"].emitted
    stopped = any(isinstance(op, Stop) for op in schedule)
    assert emitted == ITEMS or stopped
    for target in ledger.ever:
        end = emitted if target in live_at_end else ledger.closed_at[target]
        ledger.close(target, status.links[link_name(target)], end)
    src_links = {spec.name for spec in system.graph.links if spec.source == "src"}
    assert src_links == {"src.out -> spare.in"} | {link_name(t) for t in live_at_end}
    check(status, records, ledger)


def check(status: af.SystemStatus, records: dict[str, list[Any]], ledger: Ledger) -> None:
    """Nothing lost silently, nothing duplicated, untouched links complete and in order."""
    # The untouched links delivered everything, in order (a source killed by stop()
    # while blocked mid-emit counts that item as dropped for "shutdown").
    untouched = [("src", "spare"), *(("tick", name) for name in CONSUMERS)]
    for source, target in untouched:
        link = status.links[f"{source}.out -> {target}.in"]
        lost = sum(link.dropped.values())
        assert status.actors[source].emitted == link.delivered + lost, link
        assert set(link.dropped) <= {"shutdown"}, link
        got = [item for item in records[target] if item[0] == source]
        assert got == [(source, n) for n in range(link.delivered)], link
    for name in CONSUMERS:
        from_src = [item for item in records[name] if item[0] == "src"]
        returned = ledger.returned.get(name, [])
        assert len(set(from_src)) == len(from_src), (name, from_src)
        assert len(set(returned)) == len(returned), (name, returned)
        assert not set(from_src) & set(returned), name
        assert len(from_src) == ledger.delivered.get(name, 0), name
        windows = ledger.windows.get(name, [])
        for item in [*from_src, *returned]:
            assert any(item[1] in window for window in windows), (name, item, windows)
        off = ledger.accounted.get(name, 0) - ledger.offered.get(name, 0)
        assert abs(off) <= ledger.slack.get(name, 0), (name, ledger)
        actor = status.actors[name]
        assert actor.mailbox_depth == 0, name
        assert actor.dropped == {}, (name, actor.dropped)
    for link in status.links.values():
        assert link.depth == 0, link


DELAYS = st.fixed_dictionaries({name: st.sampled_from([0, 0.3, 1.5, 4]) for name in CONSUMERS})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=st.lists(operations(), max_size=20),
    stop=st.none() | st.builds(Stop, st.sampled_from([0.05, 0.2, 0.5, 0.8])),
    delays=DELAYS,
    interval=st.sampled_from([0.25, 1.0]),
)
@example(  # removed while src is blocked mid-emit on it: that item is not offered
    schedule=[Add(0.0, "a", {"buffer": 1}), Remove(2 / ITEMS, "a", return_items=False)],
    stop=None,
    delays={"a": 1.5, "b": 0, "c": 0},
    interval=1.0,
)
@example(  # items handed back, the pair re-added with other options, then stop()
    schedule=[
        Add(0.0, "b", {"workers": 2}),
        Remove(0.3, "b", return_items=True),
        Add(0.31, "b", {"buffer": 1, "overflow": "drop_oldest"}),
        Add(0.32, "b", {}),
        Remove(0.9, "c", return_items=False),
    ],
    stop=Stop(0.5),
    delays={"a": 0, "b": 4, "c": 1.5},
    interval=0.25,
)
def test_random_link_schedules_lose_and_duplicate_nothing(
    schedule: list[Add | Remove | Toggle],
    stop: Stop | None,
    delays: dict[str, float],
    interval: float,
) -> None:
    """Links come and go while items flow (and maybe while the system stops); the
    accounting, the untouched links and status() stay exact."""
    ops: list[Add | Remove | Toggle | Stop] = [*schedule, *([stop] if stop else [])]
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(run, ops, delays, interval, clock=clock)


# -- one link toggled: the system's totals account for every item ------------------------


@attrs.frozen
class Flip:
    """Remove the ``src -> sink`` link (if present) or add it back with ``options``."""

    after: float
    options: dict[str, Any]
    return_items: bool


FLIP_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "buffer": st.integers(1, 8),
        "workers": st.sampled_from([0, 1, 2]),
        "latest_only": st.booleans(),
        "overflow": st.sampled_from(["block", "drop_newest", "drop_oldest"]),
    },
)


async def flip_run(
    count: int, first: dict[str, Any], flips: list[Flip], delay: float
) -> tuple[int, list[Any], int, af.SystemStatus]:
    got: list[Any] = []
    returned = 0
    graph = af.Graph()
    graph.add("src", Numbered, name="src", count=count, interval=0.01)
    graph.add("sink", RecordProcessor, into=got, delay=delay)
    graph.add("keep", Numbered, name="keep", count=30, interval=0.1)  # sink outlives src links
    graph.link("keep", "sink", buffer=1)
    graph.link("src", "sink", **first)
    name = link_name("sink")
    linked = True
    with trio.fail_after(1000):
        async with af.open_system(graph) as system:
            for flip in flips:
                await trio.sleep(flip.after)
                if system.status().actors["sink"].state is af.ActorState.TERMINATED:
                    break
                if linked:
                    items = await system.remove_link(name, return_items=flip.return_items)
                    returned += len(items)
                elif system.status().actors["src"].state is af.ActorState.TERMINATED:
                    break
                else:
                    await system.add_link("src", "sink", **flip.options)
                linked = not linked
    status = system.status()
    return status.actors["src"].emitted, got, returned, status


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(0, 60),
    first=FLIP_OPTIONS,
    flips=st.lists(
        st.builds(
            Flip, st.sampled_from([0, 0.001, 0.005, 0.02, 0.1]), FLIP_OPTIONS, st.booleans()
        ),
        max_size=12,
    ),
    delay=st.sampled_from([0, 0.002, 0.02]),
)
@example(  # the first link overflows, then a link of the same name is added again
    count=15,
    first={"buffer": 2, "overflow": "drop_newest"},
    flips=[
        Flip(0.1, {}, return_items=False),
        Flip(0, {"buffer": 2, "overflow": "drop_newest"}, return_items=False),
    ],
    delay=0.05,
)
def test_status_accounts_for_every_item_whatever_links_come_and_go(
    count: int, first: dict[str, Any], flips: list[Flip], delay: float
) -> None:
    """emitted == handled + handed back + status().dropped on every schedule, with every
    overflow policy and re-added links: a removed link's counts stay in the status
    (under its name, added to its successors')."""
    emitted, got, returned, status = trio.run(
        flip_run, count, first, flips, delay, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    from_src = [item for item in got if item[0] == "src"]
    assert len(set(from_src)) == len(from_src)
    assert emitted == len(from_src) + returned + status.dropped, status
    link = status.links[link_name("sink")]
    assert link.returned == returned
    assert link.depth == 0
