"""Hosting under asyncio (trio guest mode), checked against the trio host case by case."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
import trio
from sample_modules import Collect, Forever, Numbers

import actorflow as af
from actorflow import aio


class Double(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = journal if journal is not None else []

    def process(self, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return 2 * n

    def cleanup(self) -> None:
        self.journal.append(f"cleanup:{self.name}")


def pipe(journal: list[str] | None = None, outlet_buffer: int = 64) -> af.Graph:
    graph = af.Graph(name="pipe")
    graph.add("numbers", af.Inlet, buffer=64)
    graph.add("double", Double, journal=journal)
    graph.add("results", af.Outlet, buffer=outlet_buffer)
    graph.chain("numbers", "double", "results")
    graph.supervisor(max_restarts=0)
    return graph


# -- one scenario, two hosts ---------------------------------------------------------


class Handle(Protocol):
    """What a scenario may use: the common surface of System and AioSystem."""

    async def send(self, name: str, item: Any) -> None: ...
    async def close(self, name: str) -> None: ...
    async def set(self, name: str, value: Any) -> None: ...
    async def stop(self) -> None: ...
    async def wait(self) -> None: ...
    async def status(self) -> af.SystemStatus: ...
    def receive(self, name: str) -> Any: ...


class TrioHandle:
    def __init__(self, system: af.System) -> None:
        self.system = system
        self.send = system.send
        self.close = system.close
        self.set = system.set
        self.stop = system.stop
        self.wait = system.wait
        self.receive = system.receive
        self.add, self.remove, self.replace = system.add, system.remove, system.replace
        self.stop_module, self.start_module = system.stop_module, system.start_module
        self.add_link, self.remove_link = system.add_link, system.remove_link

    async def status(self) -> af.SystemStatus:
        await trio.lowlevel.checkpoint()  # as the asyncio host's call does, let others run
        return self.system.status()


Scenario = Callable[[Any], Awaitable[Any]]


def run_on_trio(graph: af.Graph, scenario: Scenario) -> tuple[Any, af.SystemStatus]:
    async def main() -> tuple[Any, af.SystemStatus]:
        async with af.open_system(graph) as system:
            result = await scenario(TrioHandle(system))
        return result, system.status()

    return trio.run(main)


def run_on_asyncio(graph: af.Graph, scenario: Scenario) -> tuple[Any, af.SystemStatus]:
    async def main() -> tuple[Any, af.SystemStatus]:
        async with aio.open_system(graph) as system:
            result = await scenario(system)
        return result, await system.status()

    return asyncio.run(main())


@pytest.fixture(params=["trio", "asyncio"])
def host(request: pytest.FixtureRequest) -> Callable[[af.Graph, Scenario], Any]:
    return run_on_trio if request.param == "trio" else run_on_asyncio


async def send_all_then_read(system: Handle) -> list[int]:
    for n in range(50):
        await system.send("numbers", n)
    await system.close("numbers")
    await system.wait()
    return [n async for n in system.receive("results")]


def test_items_go_in_and_come_out_in_order(host: Any) -> None:
    """Items sent into the inlet come out of the outlet in order; closing the inlet
    ends the graph; what the outlet holds is read after the end, inside the block."""
    results, status = host(pipe(), send_all_then_read)
    assert results == [2 * n for n in range(50)]
    assert status.state is af.SystemState.DONE
    assert status.dropped == 0


def test_a_failing_graph_raises_its_error_in_the_host(host: Any) -> None:
    """A module that keeps failing reaches the host as the same EscalationError, and
    every cleanup still ran."""
    journal: list[str] = []

    async def send_a_bad_one(system: Handle) -> None:
        await system.send("numbers", -1)
        await system.wait()

    with pytest.raises(af.EscalationError, match="ValueError: negative"):
        host(pipe(journal), send_a_bad_one)
    assert journal == ["cleanup:double"]


class Enough(Exception):
    pass


def test_an_error_in_the_host_block_cancels_the_graph_with_cleanup(host: Any) -> None:
    """An exception in the host's block cancels the system, cleanups run, the host's
    exception comes out unchanged."""
    journal: list[str] = []
    graph = af.Graph(name="endless")
    graph.add("ticks", Forever, interval=0.001, journal=journal)
    graph.add("sink", Collect, into=[], journal=journal)
    graph.link("ticks", "sink")

    async def give_up(system: Handle) -> None:
        while (await system.status()).actors["sink"].received < 3:
            pass
        raise Enough

    with pytest.raises(Enough):
        host(graph, give_up)
    assert [entry for entry in journal if entry.startswith("cleanup")] == [
        "cleanup:ticks",
        "cleanup:sink",
    ]


def test_stop_ends_an_open_inlet_and_delivers_what_was_sent(host: Any) -> None:
    async def send_and_stop(system: Handle) -> list[int]:
        await system.send("numbers", 21)
        await system.stop()
        await system.wait()
        return [n async for n in system.receive("results")]

    results, status = host(pipe(), send_and_stop)
    assert results == [42]
    assert status.state is af.SystemState.DONE


def test_status_while_running_shows_every_actor(host: Any) -> None:
    async def look(system: Handle) -> af.SystemStatus:
        status = await system.status()
        await system.close("numbers")
        return status

    status, _ = host(pipe(), look)
    assert set(status.actors) == {"numbers", "double", "results"}
    assert status.state is af.SystemState.RUNNING


def test_an_invalid_graph_is_refused_before_anything_runs(host: Any) -> None:
    graph = af.Graph(name="broken")
    graph.add("results", af.Outlet)

    async def never(system: Handle) -> None:
        raise AssertionError("the block must not run")

    with pytest.raises(af.GraphError):
        host(graph, never)


def test_a_mistake_in_a_call_reaches_the_caller(host: Any) -> None:
    async def wrong(system: Handle) -> str:
        try:
            await system.send("double", 1)
        except TypeError as exc:
            await system.close("numbers")
            return str(exc)
        raise AssertionError("send() into a processor must fail")

    message, _ = host(pipe(), wrong)
    assert message == "module 'double' is a Double, not an Inlet"


# -- asyncio only --------------------------------------------------------------------


def test_only_one_system_per_loop() -> None:
    """trio allows one guest run per host loop: a second open_system says so."""

    async def main() -> str:
        async with aio.open_system(pipe()) as system:
            try:
                async with aio.open_system(pipe()):
                    pass
            except RuntimeError as exc:
                return str(exc)
            finally:
                await system.close("numbers")
        raise AssertionError("unreachable")

    assert "already hosts an actorflow system" in asyncio.run(main())


def test_one_system_after_another_on_the_same_loop() -> None:
    async def main() -> list[af.SystemState]:
        states = []
        for _ in range(3):
            async with aio.open_system(pipe()) as system:
                await system.close("numbers")
            states.append((await system.status()).state)
        return states

    assert asyncio.run(main()) == [af.SystemState.DONE] * 3


def test_cancelling_the_asyncio_task_cancels_the_graph_with_cleanup() -> None:
    journal: list[str] = []
    graph = af.Graph(name="endless")
    graph.add("ticks", Forever, interval=0.001, journal=journal)
    graph.add("sink", Collect, into=[], journal=journal)
    graph.link("ticks", "sink")
    seen: list[af.SystemState] = []

    async def host_task(running: asyncio.Event) -> None:
        async with aio.open_system(graph) as system:
            try:
                running.set()
                await asyncio.sleep(3600)
            finally:
                seen.append((await asyncio.shield(system.status())).state)

    async def main() -> None:
        running = asyncio.Event()
        task = asyncio.create_task(host_task(running))
        await running.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == [af.SystemState.RUNNING]
    assert [entry for entry in journal if entry.startswith("cleanup")] == [
        "cleanup:ticks",
        "cleanup:sink",
    ]


def test_stopping_early_counts_what_was_fetched_but_not_read() -> None:
    """Items cross to asyncio in batches; those fetched but never read are counted."""

    async def main() -> af.SystemStatus:
        async with aio.open_system(pipe()) as system:
            for n in range(10):
                await system.send("numbers", n)
            await system.close("numbers")
            await system.wait()
            async for n in system.receive("results"):
                assert n == 0
                break
        return await system.status()

    status = asyncio.run(main())
    assert status.actors["results"].dropped == {"no_reader": 9}


def test_items_never_read_by_the_end_of_the_block_are_counted() -> None:
    async def main() -> af.SystemStatus:
        async with aio.open_system(pipe()) as system:
            for n in range(4):
                await system.send("numbers", n)
            await system.close("numbers")
        return await system.status()

    status = asyncio.run(main())
    assert status.actors["results"].dropped == {"unread": 4}
    assert status.dropped == 4


def test_aio_run_runs_a_closed_graph_to_its_end() -> None:
    into: list[int] = []
    graph = af.Graph(name="closed")
    graph.add("numbers", Numbers, count=5)
    graph.add("sink", Collect, into=into)
    graph.link("numbers", "sink")
    status = asyncio.run(aio.run(graph))
    assert into == [0, 1, 2, 3, 4]
    assert status.state is af.SystemState.DONE


def test_calls_after_the_end_are_refused() -> None:
    async def main() -> None:
        async with aio.open_system(pipe()) as system:
            await system.close("numbers")
        with pytest.raises(aio.SystemEndedError):
            await system.send("numbers", 1)

    asyncio.run(main())


CTRL_C = """
import asyncio, sys
import actorflow as af
from actorflow import aio
sys.path.insert(0, {tests!r})
from sample_modules import Collect, Forever

async def main():
    journal = []
    graph = af.Graph(name="endless")
    graph.add("ticks", Forever, interval=0.01, journal=journal)
    graph.add("sink", Collect, into=[], journal=journal)
    graph.link("ticks", "sink")
    try:
        async with aio.open_system(graph) as system:
            print("running", flush=True)
            await asyncio.sleep(3600)
    finally:
        print(" ".join(e for e in journal if e.startswith("cleanup")), flush=True)

try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_under_asyncio_run_stops_the_graph_in_order(tmp_path: Path) -> None:
    """asyncio.run takes SIGINT and cancels its main task: the graph is cancelled with
    every cleanup, then KeyboardInterrupt reaches the program."""
    script = tmp_path / "service.py"
    script.write_text(CTRL_C.format(tests=str(Path(__file__).parent)))
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert out.splitlines() == ["cleanup:ticks cleanup:sink", "interrupted"]
    assert "Traceback" not in err


# -- regressions from the adversarial review of the asyncio host ----------------------


def run_with_timeout(coro: Any, seconds: float = 10) -> Any:
    """A hang is a failure, not a stuck test run."""
    return asyncio.run(asyncio.wait_for(coro, seconds))


def test_cancelled_while_starting_aborts_the_start_and_ends() -> None:
    async def host() -> None:
        async with aio.open_system(pipe()) as system:
            await system.close("numbers")

    async def main() -> None:
        task = asyncio.create_task(host())
        await asyncio.sleep(0)  # the guest run began; the system has not started
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_with_timeout(main())


def test_leaving_the_block_with_a_full_outlet_nobody_reads_does_not_hang() -> None:
    async def main() -> af.SystemStatus:
        async with aio.open_system(pipe(outlet_buffer=4)) as system:
            for n in range(20):
                await system.send("numbers", n)
            await system.close("numbers")
        return await system.status()

    status = run_with_timeout(main())
    assert status.actors["results"].dropped == {"unread": 20}
    assert status.state is af.SystemState.DONE


def test_what_outlets_hold_when_the_block_raises_is_counted() -> None:
    system_status: list[af.SystemStatus] = []

    async def wrapper() -> None:
        try:
            async with aio.open_system(pipe()) as system:
                for n in range(10):
                    await system.send("numbers", n)
                while (await system.status()).actors["results"].received < 10:
                    await asyncio.sleep(0)
                raise Enough
        except Enough:
            system_status.append(await system.status())

    run_with_timeout(wrapper())
    assert system_status[0].actors["results"].dropped == {"unread": 10}


def test_after_a_cancel_inside_the_block_the_outlet_is_read_then_says_it_was_cut() -> None:
    async def main() -> list[int]:
        got: list[int] = []
        async with aio.open_system(pipe()) as system:
            for n in range(5):
                await system.send("numbers", n)
            while (await system.status()).actors["results"].received < 5:
                await asyncio.sleep(0)
            system.cancel()
            await system.wait()
            with pytest.raises(aio.SystemEndedError, match="ended early: the system was"):
                async for n in system.receive("results"):
                    got.append(n)
        return got

    assert run_with_timeout(main()) == [0, 2, 4, 6, 8]


def test_a_batch_that_arrives_as_its_reader_is_cancelled_is_not_lost() -> None:
    """Readers cancelled at random moments (timeouts) never make items vanish: every
    item is read or counted."""

    async def main() -> tuple[int, af.SystemStatus]:
        got = 0
        async with aio.open_system(pipe(outlet_buffer=8)) as system:

            async def feed() -> None:
                for n in range(500):
                    await system.send("numbers", n)
                await system.close("numbers")

            feeder = asyncio.create_task(feed())
            finished = False
            delays = iter([0.0, 0.0005, 0.001, 0.0] * 1000)
            while not finished:
                try:
                    async with asyncio.timeout(next(delays)):
                        async for _ in system.receive("results", batch=4):
                            got += 1
                        finished = True
                except TimeoutError:
                    pass
                except RuntimeError:  # every reader closed: the outlet drops from now on
                    finished = True
            await feeder
        return got, await system.status()

    got, status = run_with_timeout(main(), 30)
    assert got + status.dropped == 500


def test_a_receive_cancelled_before_its_first_batch_does_not_hold_the_outlet() -> None:
    async def main() -> dict[str, int]:
        async with aio.open_system(pipe(outlet_buffer=4)) as system:

            async def first_item() -> None:
                async for _ in system.receive("results"):
                    return

            doomed = asyncio.create_task(first_item())
            await asyncio.sleep(0)
            doomed.cancel()

            async def take_one() -> None:
                async for _ in system.receive("results"):
                    break

            reader = asyncio.create_task(take_one())
            for n in range(50):
                await system.send("numbers", n)
            await system.close("numbers")
            await reader
        return dict((await system.status()).actors["results"].dropped)

    assert run_with_timeout(main()) == {"no_reader": 49}


def test_an_iteration_never_closed_is_counted_at_the_end_of_the_block() -> None:
    async def main() -> af.SystemStatus:
        async with aio.open_system(pipe()) as system:
            for n in range(10):
                await system.send("numbers", n)
            await system.close("numbers")
            await system.wait()
            items = system.receive("results")
            assert await anext(items) == 0
        return await system.status()

    assert run_with_timeout(main()).actors["results"].dropped == {"no_reader": 9}


def test_callers_only_ever_see_system_ended_never_trio_cancelled() -> None:
    async def main() -> set[str]:
        seen: set[str] = set()
        async with aio.open_system(pipe()) as system:
            await system.close("numbers")

            async def hammer() -> None:
                while True:
                    try:
                        await system.close("numbers")
                    except aio.SystemEndedError:
                        return
                    except BaseException as exc:
                        seen.add(type(exc).__qualname__)
                        return

            tasks = [asyncio.create_task(hammer()) for _ in range(20)]
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        return seen

    for _ in range(10):
        assert run_with_timeout(main()) == set()


def test_a_failure_interrupts_the_block_and_is_raised_from_it() -> None:
    """As a trio host's block is cancelled when its system fails, the asyncio block is
    interrupted and the failure comes out of the ``async with``."""
    reached: list[str] = []

    async def main() -> None:
        async with aio.open_system(pipe()) as system:
            await system.send("numbers", -1)
            await asyncio.sleep(3600)  # a service serving forever
            reached.append("after sleep")

    with pytest.raises(af.EscalationError):
        run_with_timeout(main())
    assert reached == []


def test_wait_raises_a_cleanup_error_and_status_after_the_block_is_final() -> None:
    class Leaky(af.Sink):
        inputs: ClassVar = {"in": int}

        def consume(self, n: int) -> None:
            pass

        def cleanup(self) -> None:
            raise OSError("disk gone")

    graph = af.Graph(name="leaky")
    graph.add("numbers", af.Inlet)
    graph.add("sink", Leaky)
    graph.link("numbers", "sink")
    statuses: list[af.SystemStatus] = []

    async def main() -> None:
        try:
            async with aio.open_system(graph) as system:
                await system.close("numbers")
                with pytest.raises(af.CleanupError, match="disk gone"):
                    await system.wait()
        except af.CleanupError:
            statuses.append(await system.status())

    run_with_timeout(main())
    assert statuses[0].state is af.SystemState.DONE


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_without_asyncio_run_interrupts_the_block_at_once(tmp_path: Path) -> None:
    """Under loop.run_until_complete trio handles SIGINT itself: the graph is cancelled
    and KeyboardInterrupt ends the asyncio block right away."""
    script = tmp_path / "service.py"
    script.write_text(
        CTRL_C.format(tests=str(Path(__file__).parent)).replace(
            "asyncio.run(main())",
            "loop = asyncio.new_event_loop(); loop.run_until_complete(main())",
        )
    )
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert out.splitlines() == ["cleanup:ticks cleanup:sink", "interrupted"]


def test_the_asyncio_host_refuses_what_is_not_a_graph_naming_it() -> None:
    async def host() -> None:
        async with aio.open_system("g.toml"):  # type: ignore[arg-type]
            pass

    with pytest.raises(TypeError, match=r"graph must be an actorflow\.Graph.*load_graph"):
        asyncio.run(host())


class Triple(Double):
    def process(self, n: int) -> int:
        return 3 * n


def test_a_graph_is_changed_while_it_runs_from_either_host(host: Any) -> None:
    """The live changes (replace, stop and start, add and remove a module, remove and
    add a link) work the same from asyncio as from trio: nothing lost, the new
    version's results after the swap."""
    spare: list[int] = []

    async def scenario(system: Any) -> list[int]:
        await system.send("numbers", 1)
        await system.replace("double", Triple)
        await system.stop_module("double")
        await system.send("numbers", 2)  # queues in the link while it is stopped
        await system.start_module("double")
        await system.add("spare", Collect, config={"into": spare}, links=[("double", "spare")])
        direct = await system.add_link("numbers", "spare")
        await system.send("numbers", 3)
        for _ in range(10_000):  # each status() lets the graph run
            if (await system.status()).actors["spare"].received == 2:
                break
        assert await system.remove_link(direct.name) == []
        assert await system.remove("spare") == []
        await system.send("numbers", 4)
        await system.close("numbers")
        await system.wait()
        return [n async for n in system.receive("results")]

    results, status = host(pipe(), scenario)
    assert results[1:] == [6, 9, 12]
    assert results[0] in (2, 3)  # the first item may be handled before the swap
    assert sorted(spare) == [3, 9]
    assert "spare" not in status.actors
    assert status.dropped == 0
