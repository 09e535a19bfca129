"""The lifecycle: construct all, validate all, start consumers first, always clean up."""

from __future__ import annotations

import itertools
import signal
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from sample_modules import Add, Collect, Forever, Numbers

import actorflow as af


class Recorder(af.Processor):
    """Records each lifecycle hook into a shared journal; can be told to fail in one."""

    def __init__(self, journal: list[str], fail_in: str = "", label: str = "") -> None:
        self.journal = journal
        self.fail_in = fail_in
        self.label = label
        journal.append(f"init:{label}")
        if fail_in == "init":
            raise OSError("no such device /dev/sensor0")

    async def validate(self) -> None:
        self.journal.append(f"validate:{self.name}")
        if self.fail_in == "validate":
            raise ValueError("threshold must be positive")

    def process(self, data: Any) -> Any:
        if self.fail_in == "run":
            raise ZeroDivisionError("division by zero")
        return data

    async def cleanup(self) -> None:
        await trio.lowlevel.checkpoint()
        self.journal.append(f"cleanup:{self.name}")
        if self.fail_in == "cleanup":
            raise RuntimeError("socket already closed")


def three_stage(journal: list[str], fail: str, where: str = "b") -> af.Graph:
    graph = af.Graph()
    graph.add("src", Numbers, count=5, journal=journal)
    graph.add("a", Recorder, journal=journal, label="a", fail_in=fail if where == "a" else "")
    graph.add("b", Recorder, journal=journal, label="b", fail_in=fail if where == "b" else "")
    graph.add("sink", Collect, into=[], journal=journal)
    graph.chain("src", "a", "b", "sink")
    return graph


async def test_every_module_is_built_and_validated_before_any_starts() -> None:
    """All constructors run, then all validate() hooks, and only then does anything start."""
    journal: list[str] = []
    async with af.open_system(three_stage(journal, "")):
        pass
    first_start = journal.index("start:src")
    assert journal[:first_start] == ["init:a", "init:b", "validate:a", "validate:b"]


async def test_a_constructor_error_is_an_initialization_error_and_nothing_starts() -> None:
    """A failing constructor raises InitializationError naming the module; nothing runs."""
    journal: list[str] = []
    with pytest.raises(af.InitializationError) as caught:
        async with af.open_system(three_stage(journal, "init")):
            pytest.fail("the block must not run")
    assert caught.value.module == "b"
    assert "module 'b' failed in init: OSError: no such device /dev/sensor0" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert journal == ["init:a", "init:b"]


async def test_an_unknown_config_key_names_the_module_and_key() -> None:
    """A config key the module does not take fails construction with both names."""
    graph = af.Graph()
    graph.add("src", Numbers, cuont=3)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    with pytest.raises(af.InitializationError, match=r"module 'src'.*'cuont'"):
        async with af.open_system(graph):
            pass


async def test_a_validate_error_is_a_validation_error_and_nothing_starts(
    logs: list[dict[str, Any]],
) -> None:
    """validate() raising gives ValidationError naming the module; no module starts."""
    journal: list[str] = []
    with pytest.raises(af.ValidationError, match=r"module 'a' failed in validate: .*positive"):
        async with af.open_system(three_stage(journal, "validate", where="a")):
            pass
    assert "start:src" not in journal
    assert not any(entry.startswith("cleanup") for entry in journal)
    assert any(e["event"] == "actor.failed" and e["phase"] == "validate" for e in logs)


async def test_a_process_error_beyond_the_restart_limit_fails_the_system(
    logs: list[dict[str, Any]],
) -> None:
    """With no restarts allowed, an exception in process() ends that actor invalid and the
    system with a RunError naming the actor and the message; every module is cleaned up."""
    journal: list[str] = []
    graph = three_stage(journal, "run")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError) as caught:
        async with af.open_system(graph) as system:
            pass
    error = caught.value
    assert isinstance(error, af.EscalationError)
    assert error.module == "b"
    assert error.message_id == "b#1"
    assert "supervisor 'graph' gave up after 0 restart(s) in 5 s (max_restarts=0)" in str(error)
    assert (
        "module 'b' failed in run: process() raised ZeroDivisionError: division by zero "
        "(while handling message b#1)" in str(error)
    )
    assert isinstance(error.chain[-1], ZeroDivisionError)
    status = system.status()
    assert status.state is af.SystemState.FAILED
    assert status.actors["b"].state is af.ActorState.INVALID
    assert status.actors["b"].errors == 1
    # Each module is cleaned up exactly once. src and a may reach their end of stream
    # (and clean up) before b fails; the sink is still running then, and is stopped by
    # the supervisor when it gives up, so it is always last.
    cleanups = [entry for entry in journal if entry.startswith("cleanup")]
    assert sorted(cleanups) == ["cleanup:a", "cleanup:b", "cleanup:sink", "cleanup:src"]
    assert cleanups[-1] == "cleanup:sink"
    failed = [e for e in logs if e["event"] == "actor.failed"]
    assert failed[0]["actor"] == "b"
    assert failed[0]["message_id"] == "b#1"


class FailOnData(af.Processor):
    def process(self, data: af.Data) -> af.Data:
        if data.fields["n"] == 2:
            raise KeyError("missing calibration")
        return data


async def test_a_failing_data_item_is_dead_lettered_under_its_id() -> None:
    """An item that makes a module fail is dead-lettered under its Data id; the module is
    restarted and the other items flow on."""
    items = [af.Data(fields={"n": n}) for n in range(4)]
    out: list[af.Data] = []

    class Src(af.Source):
        def start(self) -> list[af.Data]:
            return items

    graph = af.Graph()
    graph.add("src", Src)
    graph.add("check", FailOnData)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "check", "sink")
    async with af.open_system(graph) as system:
        pass
    assert [d.fields["n"] for d in out] == [0, 1, 3]
    [letter] = system.dead_letters
    assert letter.message_id == items[2].id
    assert letter.item is items[2]
    assert letter.actor == "check"
    assert letter.attempts == 1
    assert isinstance(letter.error, KeyError)
    check = system.status().actors["check"]
    assert check.restarts == 1
    assert check.dead_lettered == 1
    assert system.status().state is af.SystemState.DONE


class AsyncFail(af.Sink):
    def __init__(self, into: list[int]) -> None:
        self.into = into

    async def consume(self, data: int) -> None:
        await trio.lowlevel.checkpoint()
        if data == 3:
            raise ValueError("bad reading")
        self.into.append(data)


async def test_an_async_sink_error_keeps_the_rest_of_its_batch() -> None:
    """When an async consume() fails, the rest of its batch goes back to the link and is
    handled by the restarted module: nothing is lost."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=10)
    graph.add("sink", AsyncFail, into=out)
    graph.link("src", "sink", buffer=100)
    async with af.open_system(graph) as system:
        pass
    assert out == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    sink = system.status().actors["sink"]
    assert sink.received == 10
    assert sink.dead_lettered == 1
    assert sink.dropped == {}
    assert system.dead_letters[0].message_id == "sink#4"


class FailingStart(af.Source):
    def start(self) -> Any:
        yield 1
        raise ConnectionError("broker unreachable")


async def test_a_source_error_is_a_run_error_without_message_id() -> None:
    """start() raising fails the system with a RunError naming the source."""
    graph = af.Graph()
    graph.add("src", FailingStart)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    with pytest.raises(af.RunError, match=r"'src'.*start\(\) raised ConnectionError") as caught:
        async with af.open_system(graph):
            pass
    assert caught.value.message_id is None


async def test_a_cleanup_error_alone_is_raised_as_cleanup_error() -> None:
    """When everything ran, a failing cleanup() is raised as CleanupError naming the module."""
    journal: list[str] = []
    with pytest.raises(
        af.CleanupError, match=r"module 'a' failed in cleanup: .*socket already"
    ) as caught:
        async with af.open_system(three_stage(journal, "cleanup", where="a")) as system:
            pass
    assert caught.value.module == "a"
    # The other modules were still cleaned up.
    assert "cleanup:sink" in journal
    assert "cleanup:b" in journal
    assert system.status().actors["a"].errors == 1


async def test_a_cleanup_error_never_hides_the_run_error() -> None:
    """If the run failed too, the RunError is raised and the cleanup error is attached."""
    journal: list[str] = []

    class Both(Recorder):
        def process(self, data: Any) -> Any:
            raise ZeroDivisionError("division by zero")

        async def cleanup(self) -> None:
            raise RuntimeError("socket already closed")

    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("both", Both, journal=journal)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "both", "sink")
    with pytest.raises(af.RunError) as caught:
        async with af.open_system(graph):
            pass
    assert caught.value.module == "both"
    notes = getattr(caught.value, "__notes__", [])
    assert any("failed in cleanup" in note and "socket already closed" in note for note in notes)


class SlowCleanup(af.Sink):
    async def consume(self, data: Any) -> None:
        pass

    async def cleanup(self) -> None:
        await trio.sleep(60)


async def test_a_cleanup_that_overruns_its_timeout_is_abandoned_and_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """cleanup() longer than cleanup_timeout is cut off and raised as CleanupError."""
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("sink", SlowCleanup)
    graph.link("src", "sink")
    start = trio.current_time()
    with pytest.raises(af.CleanupError, match=r"'sink'.*did not finish within 2 s"):
        async with af.open_system(graph, cleanup_timeout=2):
            pass
    assert trio.current_time() - start == pytest.approx(2)


async def test_cleanup_runs_under_cancellation_even_when_async(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Async cleanup() completes although the system was cancelled (it runs shielded)."""
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", Forever, interval=0.1)
    graph.add("rec", Recorder, journal=journal)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "rec", "sink")
    with trio.move_on_after(1):
        async with af.open_system(graph):
            await trio.sleep_forever()
    assert "cleanup:rec" in journal


async def test_consumers_start_before_their_producers(logs: list[dict[str, Any]]) -> None:
    """Actors become ready in reverse data-flow order, so nothing is sent to a deaf actor."""
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("a", Add)
    graph.add("b", Add)
    graph.add("sink", Collect, into=[])
    graph.chain("src", "a", "b", "sink")
    async with af.open_system(graph):
        pass
    ready = [
        e["actor"]
        for e in logs
        if e["event"] == "actor.state"
        and e["state"] == "ready"
        and e.get("previous") == "validated"
    ]
    assert ready == ["sink", "b", "a", "src"]


async def test_every_state_transition_is_logged_in_order(logs: list[dict[str, Any]]) -> None:
    """Each actor goes created -> validated -> ready -> ... -> zombie -> terminated, logged."""
    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("sink", Collect, into=[])
    graph.link("src", "sink")
    async with af.open_system(graph):
        pass
    for actor in ("src", "sink"):
        states = [e["state"] for e in logs if e["event"] == "actor.state" and e["actor"] == actor]
        assert states[:3] == ["created", "validated", "ready"]
        assert states[-2:] == ["zombie", "terminated"]
        assert "running" in states
        for before, after in itertools.pairwise(states):
            assert before != after
    sink_states = [
        e["state"] for e in logs if e["event"] == "actor.state" and e["actor"] == "sink"
    ]
    assert "blocked" in sink_states


async def test_a_graph_error_starts_nothing() -> None:
    """An invalid graph is refused before any module is even constructed."""
    journal: list[str] = []
    graph = af.Graph()
    graph.add("a", Recorder, journal=journal)
    graph.add("sink", Collect, into=[])
    graph.link("a", "sink")
    graph.link("ghost", "sink")
    with pytest.raises(af.GraphError) as caught:
        async with af.open_system(graph):
            pass
    assert journal == []
    messages = [p.message for p in caught.value.problems]
    assert any("unknown module 'ghost'" in m for m in messages)
    assert any("module 'a': required input port 'in' has no link" in m for m in messages)


class Typed(af.Sink):
    inputs: ClassVar = {"in": str}

    def consume(self, data: str) -> None:
        pass


class SlowTidy(af.Processor):
    def __init__(self, journal: list[str], seconds: float) -> None:
        self.journal = journal
        self.seconds = seconds

    def process(self, data: Any) -> Any:
        return data

    async def cleanup(self) -> None:
        self.journal.append(f"begin:{self.name}:{trio.current_time():g}")
        await trio.sleep(self.seconds)
        self.journal.append(f"end:{self.name}:{trio.current_time():g}")


async def test_producers_first_cleanup_holds_when_upstream_cleanups_add_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On cancellation each cleanup starts after its upstream's ended, even when the
    upstream cleanups together take longer than one cleanup_timeout."""
    journal: list[str] = []
    graph = af.Graph()
    graph.add("src", Forever, interval=0.1)
    graph.add("a", SlowTidy, journal=journal, seconds=4)
    graph.add("b", SlowTidy, journal=journal, seconds=4)
    graph.add("sink", Collect, into=[], journal=journal)
    graph.chain("src", "a", "b", "sink")
    with trio.move_on_after(1):
        async with af.open_system(graph, cleanup_timeout=5):
            await trio.sleep_forever()
    assert journal == ["begin:a:1", "end:a:5", "begin:b:5", "end:b:9", "cleanup:sink"]


async def test_the_state_is_done_as_soon_as_wait_returns() -> None:
    """wait() returns once every actor has ended; the status says so at once, not only
    when the block ends."""
    graph = af.Graph(name="quick")
    graph.add("numbers", Numbers, count=3)
    graph.add("sink", Collect, into=[])
    graph.link("numbers", "sink")
    async with af.open_system(graph) as system:
        await system.wait()
        assert system.status().state is af.SystemState.DONE
    assert system.status().state is af.SystemState.DONE


# ------------------------------------------------------------------------------------------------
# Failures, signals and cleanup order at the edges (moved from test_regressions.py)
# ------------------------------------------------------------------------------------------------


async def test_a_source_failing_at_start_does_not_stall_cleanup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """When a source fails in start(), every started module is cleaned up at once, none waiting
    ``cleanup_timeout`` for an upstream actor that never ran."""
    journal: list[str] = []

    class Bad(af.Source):
        def start(self) -> Any:
            raise ConnectionError("down")

        def cleanup(self) -> None:
            journal.append("cleanup:bad")

    class Good(af.Source):
        def start(self) -> list[int]:
            return [1]

        def cleanup(self) -> None:
            journal.append("cleanup:good")

    class Pass(af.Processor):
        def process(self, data: int) -> int:
            return data

        def cleanup(self) -> None:
            journal.append("cleanup:p2")

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append(f"cleanup:{self.name}")

    graph = af.Graph()
    graph.add("bad", Bad)
    graph.add("k1", Sink)
    graph.link("bad", "k1")
    graph.add("good", Good)
    graph.add("p2", Pass)
    graph.add("k2", Sink)
    graph.chain("good", "p2", "k2")
    graph.supervisor(max_restarts=0)
    began = trio.current_time()
    with pytest.raises(af.RunError, match="ConnectionError: down"):
        async with af.open_system(graph, cleanup_timeout=5):
            pass
    assert trio.current_time() - began < 1
    assert {"cleanup:bad", "cleanup:k1", "cleanup:k2"} <= set(journal)


async def test_a_module_raising_system_exit_propagates_it_unwrapped() -> None:
    """SystemExit from process() leaves open_system as itself, after every cleanup."""
    journal: list[str] = []

    class Exit(af.Processor):
        def process(self, data: int) -> int:
            if data == 2:
                raise SystemExit(3)
            return data

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append("cleanup:k")

    graph = af.Graph()
    graph.add("src", Numbers, count=4)
    graph.add("p", Exit)
    graph.add("k", Sink)
    graph.chain("src", "p", "k")
    with pytest.raises(SystemExit) as caught:
        async with af.open_system(graph):
            pass
    assert caught.value.code == 3
    assert journal == ["cleanup:k"]


def test_ctrl_c_while_the_system_runs_raises_keyboard_interrupt_unwrapped() -> None:
    """A SIGINT delivered while the system runs ends it with cleanup and raises a bare
    KeyboardInterrupt, not an ExceptionGroup."""
    journal: list[str] = []

    class Interrupted(af.Source):
        async def start(self) -> None:
            # The signal arrives from another thread, as a real Ctrl-C does.
            await trio.to_thread.run_sync(signal.raise_signal, signal.SIGINT)
            while self.active:
                await trio.sleep(1)
                await self.emit(1)

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append("cleanup:k")

    graph = af.Graph()
    graph.add("src", Interrupted)
    graph.add("k", Sink)
    graph.link("src", "k")

    async def main() -> None:
        async with af.open_system(graph):
            pass

    with pytest.raises(KeyboardInterrupt):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert journal == ["cleanup:k"]


class FailsEveryItem(af.Processor):
    def process(self, data: int) -> int:
        raise ValueError("real bug")


class FlushingSink(af.Sink):
    def consume(self, data: int) -> None:
        pass

    async def cleanup(self) -> None:
        await trio.sleep(2)  # flushing a file, say


async def test_a_failure_is_raised_even_if_an_outer_scope_cancels_during_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A system that failed before an outer deadline fired raises that failure; the cancelled
    shutdown must not make it vanish."""
    graph = af.Graph()
    graph.add("src", Numbers, count=2)
    graph.add("p", FailsEveryItem)
    graph.add("k", FlushingSink)
    graph.chain("src", "p", "k")
    graph.supervisor(max_restarts=0)
    with pytest.raises(af.RunError, match="real bug"), trio.move_on_after(1):
        async with af.open_system(graph):
            await trio.sleep_forever()


def ordered_cleanup_graph(journal: list[tuple[str, float]], *, forever: bool) -> af.Graph:
    class Src(af.Source):
        async def start(self) -> Any:
            if forever:
                await trio.sleep_forever()
            return [1]

        async def cleanup(self) -> None:
            journal.append(("src begin", trio.current_time()))
            await trio.sleep(4)
            journal.append(("src end", trio.current_time()))

    class Pass(af.Processor):
        def process(self, data: int) -> int:
            return data

        async def cleanup(self) -> None:
            journal.append(("p begin", trio.current_time()))
            await trio.sleep(4)
            journal.append(("p end", trio.current_time()))

    class Sink(af.Sink):
        def consume(self, data: int) -> None:
            pass

        def cleanup(self) -> None:
            journal.append(("k begin", trio.current_time()))

    graph = af.Graph()
    graph.add("src", Src)
    graph.add("p", Pass)
    graph.add("k", Sink)
    graph.chain("src", "p", "k")
    return graph


def events_in_time_order(journal: list[tuple[str, float]]) -> list[str]:
    return [event for event, _ in sorted(journal, key=lambda entry: entry[1])]


async def test_a_normal_end_cleans_up_producers_first_however_long_the_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At a normal end producers are cleaned up first, even when each cleanup fits
    cleanup_timeout but the whole chain does not."""
    journal: list[tuple[str, float]] = []
    async with af.open_system(
        ordered_cleanup_graph(journal, forever=False), cleanup_timeout=5
    ) as system:
        pass
    assert events_in_time_order(journal) == ["src begin", "src end", "p begin", "p end", "k begin"]
    assert all(actor.errors == 0 for actor in system.status().actors.values())


async def test_a_cancellation_cleans_up_producers_first_however_long_the_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On cancellation too, a consumer waits for its whole upstream chain's cleanups."""
    journal: list[tuple[str, float]] = []
    async with af.open_system(
        ordered_cleanup_graph(journal, forever=True), cleanup_timeout=5
    ) as system:
        await trio.sleep(1)
        system.cancel()
    assert events_in_time_order(journal) == ["src begin", "src end", "p begin", "p end", "k begin"]


class Blob:
    """A weakly referenceable item, to see which items outlive the run."""

    def __init__(self, n: int) -> None:
        self.n = n


class BlobSource(af.Source):
    def __init__(self, blobs: list[Blob]) -> None:
        self.blobs = blobs

    def start(self) -> Any:
        while self.blobs:
            yield self.blobs.pop(0)


class FailOnTens(af.Sink):
    def consume(self, data: Blob) -> None:
        if data.n % 10 == 0:
            raise ValueError(f"bad blob {data.n}")


async def test_dead_letters_do_not_keep_the_rest_of_their_batch_alive() -> None:
    """A dead letter keeps its item and error, but not the frames that held the batch:
    the other items of the batch are freed."""
    import gc
    import weakref

    blobs = [Blob(n) for n in range(30)]
    refs = [weakref.ref(blob) for blob in blobs]
    graph = af.Graph()
    graph.add("src", BlobSource, blobs=blobs)
    graph.add("sink", FailOnTens)
    graph.link("src", "sink", buffer=100)
    graph.supervisor(max_restarts=10)
    del blobs
    async with af.open_system(graph) as system:
        pass
    gc.collect()
    letters = system.dead_letters
    assert sorted(letter.item.n for letter in letters) == [0, 10, 20]
    alive = sorted(ref().n for ref in refs if ref() is not None)  # type: ignore[union-attr]
    assert alive == [0, 10, 20]
    # The frames stay (where the module raised), their locals (the batch) do not.
    assert all(letter.error.__traceback__ is not None for letter in letters)
    assert all("ValueError: bad blob" in letter.traceback for letter in letters)


class HangingSyncCleanup(af.Sink):
    """A sync cleanup() on the event loop that hangs for ``hang`` seconds: the test's
    MockClock jumps, as the real clock would move while the loop is stuck."""

    def __init__(self, clock: trio.testing.MockClock, hang: float) -> None:
        self.clock = clock
        self.hang = hang

    def consume(self, data: Any) -> None:
        pass

    def cleanup(self) -> None:
        self.clock.jump(self.hang)


async def test_a_sync_cleanup_that_overruns_on_the_event_loop_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Trio cannot interrupt a sync cleanup() on the event loop; when it returns past
    cleanup_timeout it is reported as the CleanupError an async overrun gets."""
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("sink", HangingSyncCleanup, clock=autojump_clock, hang=30)
    graph.link("src", "sink")
    with pytest.raises(af.CleanupError, match=r"'sink'.*did not finish within 2 s.*blocking"):
        async with af.open_system(graph, cleanup_timeout=2):
            pass


async def test_a_sync_cleanup_within_its_timeout_is_fine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    graph = af.Graph()
    graph.add("src", Numbers, count=1)
    graph.add("sink", HangingSyncCleanup, clock=autojump_clock, hang=1)
    graph.link("src", "sink")
    async with af.open_system(graph, cleanup_timeout=2) as system:
        pass
    assert system.status().actors["sink"].errors == 0
