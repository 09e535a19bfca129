"""Remote links over Redis Streams: the same guarantees as a local link, across
processes. These tests run against a real redis-server (see redis_server.py)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any, ClassVar

import pytest
import trio
from redis_server import RedisServer

import actorflow as af
from actorflow._redis import connect

# -- options and validation (no server needed) ---------------------------------------


def test_the_remote_option_takes_a_url_true_a_table_or_a_remote() -> None:
    graph = af.Graph(name="g")
    assert graph.link("a", "b", remote="redis://h:1/0").remote == af.Remote(url="redis://h:1/0")
    assert graph.link("a", "c", remote=True).remote == af.Remote()
    table = graph.link("a", "d", remote={"claim_idle": 2, "batch": 10}).remote
    assert table == af.Remote(claim_idle=2, batch=10)
    assert graph.link("a", "e").remote is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://h/", r"url must be a redis:// \(or rediss://, unix://\) URL"),
        ({"claim": 1}, "unknown option 'claim'"),
        ({"batch": 0}, "batch"),
        (3, "remote must be a redis:// URL, true, a table of options"),
    ],
)
def test_a_bad_remote_option_is_refused_naming_it(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        af.Graph().link("a", "b", remote=value)


class Numbers(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int) -> None:
        self.count = count

    def start(self) -> Any:
        return (af.Data(fields={"n": n}, tags={"from": "numbers"}) for n in range(self.count))


class Keep(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self, into: list[af.Data]) -> None:
        self.into = into

    def consume(self, data: af.Data) -> None:
        self.into.append(data)


def pair(name: str, count: int, url: str | None, into: list[af.Data], **options: Any) -> af.Graph:
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=count)
    graph.add("keep", Keep, into=into)
    graph.link("numbers", "keep", remote=url if url is not None else True, **options)
    return graph


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        ({"workers": 4}, "workers=4"),
        ({"overflow": "drop_oldest"}, "overflow='drop_oldest'"),
        ({"latest_only": True}, "latest_only"),
    ],
)
def test_options_that_would_lose_order_or_items_are_refused(
    options: dict[str, Any], refused: str
) -> None:
    graph = pair("refused", 1, "redis://127.0.0.1:1/0", [], **options)
    problems = [problem.message for problem in graph.problems()]
    assert any("a remote link cannot be" in p and refused in p for p in problems), problems


def test_a_shared_module_must_take_its_items_from_remote_links() -> None:
    graph = af.Graph(name="g")
    graph.add("numbers", Numbers, count=1)
    graph.add("keep", Keep, into=[])
    graph.link("numbers", "keep")
    graph.share("keep")
    graph.share("ghost")
    messages = [problem.message for problem in graph.problems()]
    assert "share: unknown module 'ghost'" in messages
    assert any("module 'keep' is shared, but its input link" in m for m in messages)


def test_splitting_a_graph_across_a_local_link_is_refused() -> None:
    graph = af.Graph(name="g")
    graph.add("numbers", Numbers, count=1)
    graph.add("keep", Keep, into=[])
    graph.link("numbers", "keep")
    with pytest.raises(af.GraphError, match="joins a module that runs here to one that does not"):
        af.run(graph, only={"numbers"})
    with pytest.raises(af.GraphError, match="only: unknown module 'nobody'"):
        af.run(graph, only={"numbers", "keep", "nobody"})


def test_a_remote_link_without_a_server_says_where_to_name_one() -> None:
    graph = pair("nourl", 1, None, [])
    with pytest.raises(af.GraphError, match="names no Redis URL"):
        af.run(graph)


# -- against a real server -------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def stream_length(url: str, stream: str) -> int:
    async with connect(url) as client:
        return int(await client.xlen(stream))


async def test_items_cross_in_order_and_the_end_of_stream_follows(
    redis_server: RedisServer,
) -> None:
    """Both halves in one process: every item arrives once, in order, as it was sent
    (Data ids and all); the consumer ends when the producer has; the stream is left
    empty (acknowledged entries are deleted)."""
    got: list[af.Data] = []
    name = unique("order")
    async with af.open_system(pair(name, 1000, redis_server.url, got, buffer=300)) as system:
        pass
    assert [d.fields["n"] for d in got] == list(range(1000))
    assert all(d.tags == {"from": "numbers"} for d in got)
    assert len({d.id for d in got}) == 1000
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.dropped == 0
    links = list(status.links.values())
    assert [link.sent for link in links] == [1000, 1000]
    stream = f"actorflow:{name}:numbers.out>keep.in"
    assert await stream_length(redis_server.url, stream) == 0


class Gate(af.Sink):
    """Holds every item until the test opens it."""

    inputs: ClassVar = {"in": af.Data}
    opened: ClassVar[trio.Event]

    def __init__(self, into: list[af.Data]) -> None:
        self.into = into

    async def consume(self, data: af.Data) -> None:
        await Gate.opened.wait()
        self.into.append(data)


async def wait_until(condition: Any, seconds: float = 20) -> None:
    """Poll a condition of the outside world (Redis, another system) until it holds; it
    may be async. Nothing to wait on but the condition itself: Redis sends no events."""
    with trio.fail_after(seconds):
        while True:
            holds = condition()
            if not isinstance(holds, bool):
                holds = await holds
            if holds:
                return
            await trio.sleep(0.01)


async def test_a_slow_consumer_slows_its_producer_instead_of_filling_redis(
    redis_server: RedisServer,
) -> None:
    """With the consumer stuck, the producer stops once the stream holds `buffer` items
    (in entries of `batch`); when the consumer moves again, everything arrives."""
    Gate.opened = trio.Event()
    got: list[af.Data] = []
    name = unique("pressure")
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=2000)
    graph.add("keep", Gate, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=10), buffer=50)
    stream = f"actorflow:{name}:numbers.out>keep.in"
    async with af.open_system(graph) as system:

        async def stream_full() -> bool:
            return await stream_length(redis_server.url, stream) >= 5

        await wait_until(stream_full)
        source = system.status().actors["numbers"]
        assert source.state is af.ActorState.BLOCKED
        # It stays full: the producer waits, having sent no more than the stream (50 in
        # 5 entries), its own link (one batch) and the consumer's prefetch (two) hold.
        bound = 50 + 10 + 2 * 10 + 1
        with trio.move_on_after(0.3):
            await wait_until(lambda: system.status().actors["numbers"].emitted > bound)
            raise AssertionError("the producer went on past the bound")
        assert await stream_length(redis_server.url, stream) == 5
        Gate.opened.set()
    assert [d.fields["n"] for d in got] == list(range(2000))


async def test_a_consumer_that_dies_leaves_its_items_to_the_next_one(
    redis_server: RedisServer,
) -> None:
    """The first consumer is cut off while it holds unacknowledged items; the next one
    (a standby until the first's lease lapses) takes them over after claim_idle: every
    item is handled at least once."""
    name = unique("takeover")
    remote = af.Remote(url=redis_server.url, claim_idle=0.5)
    first: list[af.Data] = []
    second: list[af.Data] = []

    def graph(into: list[af.Data]) -> af.Graph:
        built = af.Graph(name=name)
        built.add("numbers", Numbers, count=500)
        built.add("keep", Keep, into=into)
        built.link("numbers", "keep", remote=remote, buffer=100)
        return built

    async with af.open_system(graph([]), only={"numbers"}) as producer:
        async with af.open_system(graph(first), only={"keep"}) as consumer:
            await wait_until(lambda: len(first) >= 150)
            consumer.cancel()  # as if the process died: what it held is not acknowledged
        async with af.open_system(graph(second), only={"keep"}) as replacement:
            pass
    assert producer.status().state is af.SystemState.DONE
    assert replacement.status().state is af.SystemState.DONE
    handled = {d.fields["n"] for d in itertools.chain(first, second)}
    assert handled == set(range(500))
    # At least once: the items the first had not acknowledged may come twice, no more.
    assert len(first) + len(second) >= 500


async def test_a_redis_restart_mid_stream_loses_nothing(own_redis_server: RedisServer) -> None:
    """Redis is killed and restarted while items flow: producer and consumer wait for
    it, say so once, and every item arrives at least once, in order of first arrival."""
    got: list[af.Data] = []
    name = unique("restart")
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=3000)
    graph.add("keep", Keep, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=own_redis_server.url), buffer=200)
    # Well within claim_idle (30 s): what a lost read delivered comes back at once, not
    # by a takeover after claim_idle.
    with trio.fail_after(15):
        async with af.open_system(graph):
            await wait_until(lambda: len(got) >= 500)
            assert len(got) < 3000  # mid-stream
            await trio.to_thread.run_sync(own_redis_server.restart)
    numbers = [d.fields["n"] for d in got]
    assert set(numbers) == set(range(3000))
    firsts = list(dict.fromkeys(numbers))
    assert firsts == sorted(firsts)  # per producer order holds


async def test_a_stream_the_producer_closed_ends_at_once_for_a_late_consumer(
    redis_server: RedisServer,
) -> None:
    """A consumer that starts after its producer finished still gets everything and ends."""
    name = unique("late")
    got: list[af.Data] = []
    async with af.open_system(pair(name, 30, redis_server.url, []), only={"numbers"}):
        pass
    async with af.open_system(pair(name, 30, redis_server.url, got), only={"keep"}):
        pass
    assert [d.fields["n"] for d in got] == list(range(30))


class Slow(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self, into: list[af.Data]) -> None:
        self.into = into

    async def consume(self, data: af.Data) -> None:
        await trio.sleep(0.001)
        self.into.append(data)


async def test_a_consumer_slower_than_its_prefetch_keeps_going(redis_server: RedisServer) -> None:
    """Regression: with every prefetched item in the consumer's hands, the pump waited
    for room that only acknowledging made, and nothing woke it: a deadlock."""
    got: list[af.Data] = []
    graph = af.Graph(name=unique("prefetch"))
    graph.add("numbers", Numbers, count=60)
    graph.add("keep", Slow, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=5), buffer=20)
    with trio.fail_after(20):
        async with af.open_system(graph):
            pass
    assert [d.fields["n"] for d in got] == list(range(60))


def test_the_core_never_imports_the_redis_client() -> None:
    """coredis is an optional extra: importing actorflow (and running local graphs)
    does not need it."""
    import subprocess
    import sys

    code = (
        "import sys, actorflow as af\n"
        "g = af.Graph(); g.add('n', af.Inlet); g.add('o', af.Outlet); g.link('n', 'o')\n"
        "assert 'coredis' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class Fussy(af.Sink):
    """Fails on every reading of 7; the rest are kept."""

    inputs: ClassVar = {"in": af.Data}

    def __init__(self, into: list[af.Data]) -> None:
        self.into = into

    def consume(self, data: af.Data) -> None:
        if data.fields["n"] == 7:
            raise ValueError("seven")
        self.into.append(data)


async def test_a_dead_lettered_item_is_acknowledged_and_the_stream_drains(
    redis_server: RedisServer,
) -> None:
    """An item that keeps failing is dead-lettered, which settles it: its entry is
    acknowledged once the rest of it is handled, the stream empties, the graph ends."""
    got: list[af.Data] = []
    name = unique("dead")
    graph = af.Graph(name=name)
    graph.add("numbers", Numbers, count=30)
    graph.add("keep", Fussy, into=got)
    graph.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=4))
    graph.supervise("keep", attempts=2)
    graph.supervisor(max_restarts=5)
    with trio.fail_after(20):
        async with af.open_system(graph) as system:
            pass
    assert [d.fields["n"] for d in got] == [n for n in range(30) if n != 7]
    assert [letter.item.fields["n"] for letter in system.dead_letters] == [7]
    assert system.status().actors["keep"].restarts == 2
    stream = f"actorflow:{name}:numbers.out>keep.in"
    assert await stream_length(redis_server.url, stream) == 0


def test_a_graph_file_describes_remote_links_and_shared_modules(tmp_path: Any) -> None:
    registry = af.Registry(
        {
            "numbers": af.RegistryEntry("numbers", f"{__name__}:Numbers", "test"),
            "keep": af.RegistryEntry("keep", f"{__name__}:Keep", "test"),
        }
    )
    path = tmp_path / "g.toml"
    path.write_text(
        "[modules.numbers]\nmodule = 'numbers'\nconfig = { count = 3 }\n"
        "[modules.keep]\nmodule = 'keep'\nconfig = { into = [] }\nshared = true\n"
        "[[links]]\nfrom = 'numbers'\nto = 'keep'\n"
        "remote = { url = 'redis://h:1/0', claim_idle = 2 }\n"
    )
    graph, _ = af.load_graph(path, registry)
    assert graph.links[0].remote == af.Remote(url="redis://h:1/0", claim_idle=2)
    assert graph.shared == {"keep"}
    path.write_text(
        path.read_text().replace("shared = true", "shared = 'yes'").replace("claim_idle", "idle")
    )
    with pytest.raises(af.GraphFileError) as caught:
        af.load_graph(path, registry)
    problems = "\n".join(caught.value.problems)
    assert "[modules.keep] key 'shared': expected true or false, got 'yes'" in problems
    assert "[[links]] #1 (numbers -> keep): remote: unknown option 'idle'" in problems


# -- regressions from the adversarial review of remote links -------------------------


class Join(af.Progressive):
    inputs: ClassVar = {"a": af.Data, "b": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, into: list[tuple[int, int]]) -> None:
        self.into = into

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        rows = self.read_synced(["a", "b"], key=lambda d: d.fields["n"] // 2 * 2 + 0)
        self.into.extend((a.fields["n"], b.fields["n"]) for a, b in rows)
        state = af.StepState.TERMINATED if self.inputs_done() else af.StepState.BLOCKED
        return af.Step(state, len(rows))


class Pairs(af.Source):
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def start(self) -> Any:
        return (af.Data(fields={"n": n}) for n in self.order)


async def test_a_join_by_key_on_remote_links_acknowledges_what_it_joined(
    redis_server: RedisServer,
) -> None:
    """read_synced(key=...) takes items from the middle of a remote link: they are
    acknowledged like any other, the streams drain and the graph ends."""
    got: list[tuple[int, int]] = []
    graph = af.Graph(name=unique("join"))
    graph.add("a", Pairs, order=[2 * n for n in range(40)])
    graph.add("b", Pairs, order=[2 * (n ^ 1) for n in range(40)])
    graph.add("join", Join, into=got)
    remote = af.Remote(url=redis_server.url, batch=2)
    graph.link("a", "join.a", remote=remote, buffer=10)
    graph.link("b", "join.b", remote=remote, buffer=10)
    with trio.fail_after(20):
        async with af.open_system(graph):
            pass
    assert sorted(got) == [(2 * n, 2 * n) for n in range(40)]


async def test_a_standby_takes_over_in_order_after_a_graceful_stop(
    redis_server: RedisServer,
) -> None:
    """The first consumer stops (stop() ends a consumer-only system); the standby takes
    over what it left pending first, so first arrivals stay in order, nothing waits for
    claim_idle (30 s), and nothing is lost."""
    name = unique("handover")
    first: list[af.Data] = []
    second: list[af.Data] = []

    def graph(into: list[af.Data], sink: type[af.Sink] = Keep) -> af.Graph:
        built = af.Graph(name=name)
        built.add("numbers", Numbers, count=400)
        built.add("keep", sink, into=into)
        built.link("numbers", "keep", remote=af.Remote(url=redis_server.url, batch=10))
        return built

    with trio.fail_after(20):
        async with af.open_system(graph([]), only={"numbers"}) as producer:
            async with af.open_system(graph(first, Slow), only={"keep"}) as consumer:
                await wait_until(lambda: len(first) >= 50)
                await consumer.stop()
            async with af.open_system(graph(second), only={"keep"}):
                pass
    assert producer.status().state is af.SystemState.DONE
    firsts = list(dict.fromkeys(d.fields["n"] for d in [*first, *second]))
    assert firsts == list(range(400))


async def test_a_rerun_soon_after_a_finished_run_is_consumed_whole(
    redis_server: RedisServer,
) -> None:
    """A consumer started right after an earlier run of the same graph ended waits for
    the new run instead of ending on the old run's end."""
    name = unique("rerun")
    async with af.open_system(pair(name, 20, redis_server.url, [])):
        pass
    got: list[af.Data] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def producer() -> None:
                async with af.open_system(pair(name, 30, redis_server.url, []), only={"numbers"}):
                    pass

            async def consumer() -> None:
                async with af.open_system(pair(name, 30, redis_server.url, got), only={"keep"}):
                    pass

            nursery.start_soon(consumer)
            # Let the consumer come up and see the old run's end before the rerun starts
            # (if it were slower, the test would only be weaker, never wrong).
            await trio.sleep(0.2)
            nursery.start_soon(producer)
    assert [d.fields["n"] for d in got] == list(range(30))


async def test_an_entry_that_cannot_be_decoded_is_counted_and_the_stream_goes_on(
    redis_server: RedisServer,
) -> None:
    name = unique("poison")
    stream = f"actorflow:{name}:numbers.out>keep.in"
    async with connect(redis_server.url) as client:
        await client.xadd(stream, {b"x": b"not ours"})
        await client.xadd(stream, {b"p": b"\xc1garbage"})
    got: list[af.Data] = []
    with trio.fail_after(20):
        async with af.open_system(pair(name, 5, redis_server.url, got)) as system:
            pass
    assert [d.fields["n"] for d in got] == list(range(5))
    inbound = system.status().links["numbers.out -> keep.in (from the stream)"]
    assert inbound.dropped == {"undecodable": 2}
    assert await stream_length(redis_server.url, stream) == 0


def test_a_shared_module_cannot_send_on_a_remote_link() -> None:
    graph = af.Graph(name="g")
    graph.add("numbers", Numbers, count=1)
    graph.add("work", Keep, into=[])
    graph.link("numbers", "work", remote="redis://h:1/0")
    graph.share("numbers")
    messages = [problem.message for problem in graph.problems()]
    assert any("is shared and sends on remote link" in m for m in messages), messages


class Laborious(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self, into: list[af.Data]) -> None:
        self.into = into

    async def consume(self, data: af.Data) -> None:
        await trio.sleep(0.05)
        self.into.append(data)


async def test_shared_instances_slower_than_claim_idle_never_take_each_others_items(
    redis_server: RedisServer,
) -> None:
    """Each instance holds two entries at a time, longer than claim_idle: it keeps them
    marked busy, so no item is handled twice when nothing failed."""
    name = unique("busy")
    got: list[af.Data] = []

    def graph(into: list[af.Data]) -> af.Graph:
        built = af.Graph(name=name)
        built.add("numbers", Numbers, count=40)
        built.add("work", Laborious, into=into)
        built.share("work")
        remote = af.Remote(url=redis_server.url, batch=5, claim_idle=0.1)
        built.link("numbers", "work", remote=remote, buffer=40)
        return built

    async def instance() -> None:
        async with af.open_system(graph(got), only={"work"}):
            pass

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(instance)
            nursery.start_soon(instance)
            async with af.open_system(graph([]), only={"numbers"}):
                pass
    numbers = [d.fields["n"] for d in got]
    assert sorted(numbers) == list(range(40))


class Expand(af.Processor):
    """Each item becomes ``width`` items: a producer faster than its stream drains."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, width: int) -> None:
        self.width = width

    def process(self, data: af.Data) -> af.Many:
        start = data.fields["n"] * self.width
        return af.Many(af.Data(fields={"n": n}) for n in range(start, start + self.width))


async def test_a_stop_without_deadline_drains_a_link_whose_both_halves_run_here(
    redis_server: RedisServer,
) -> None:
    """Both halves of a remote link in one process, its stream at its bound: a graceful
    stop without a drain deadline reads on to the end the producer writes once
    drained, so everything sent arrives once, in order (it waited for room for ever)."""
    got: list[af.Data] = []
    graph = af.Graph(name=unique("drain_here"))
    graph.add("numbers", Numbers, count=2000)
    graph.add("expand", Expand, width=30)
    graph.add("keep", Keep, into=got)
    graph.link("numbers", "expand")
    graph.link("expand", "keep", remote=af.Remote(url=redis_server.url, batch=10), buffer=50)
    with trio.fail_after(20):
        async with af.open_system(graph) as system:
            await wait_until(lambda: len(got) >= 500)
            await system.stop()
    status = system.status()
    assert status.state is af.SystemState.DONE
    assert status.actors["expand"].emitted == len(got)
    assert [d.fields["n"] for d in got] == list(range(len(got)))
