"""The collector rests while a graph is built and leaves the built graph alone while
it runs; the application's own collector settings are kept."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

import actorflow as af


class Refuses(af.Sink):
    def validate(self) -> None:
        raise ValueError("no")

    def consume(self, data: Any) -> None:
        pass


class Idle(af.Sink):
    def consume(self, data: Any) -> None:
        pass


def graph(sink: type[af.Sink] = Idle) -> af.Graph:
    built = af.Graph()
    built.add("in", af.Inlet)
    built.add("out", sink)
    built.link("in", "out")
    return built


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    """Every test leaves the collector as it found it, whatever it asserted."""
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()
    assert frozen == 0, "the test run froze objects before this test"


async def test_the_built_graph_is_frozen_while_it_runs_and_released_after() -> None:
    """While the system runs, what was built sits in the permanent generation; after the
    block the collector runs as before, with nothing frozen."""
    assert gc.isenabled()
    async with af.open_system(graph()) as system:
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        await system.stop()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_a_failed_start_leaves_the_collector_running() -> None:
    """A graph refused while it is built turns the collector back on."""
    with pytest.raises(af.ValidationError):
        async with af.open_system(graph(Refuses)):
            pass
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_an_application_that_disabled_the_collector_keeps_it_disabled() -> None:
    """Nothing is frozen or enabled when the application turned the collector off."""
    gc.disable()
    async with af.open_system(graph()) as system:
        assert gc.get_freeze_count() == 0
        await system.stop()
    assert not gc.isenabled()


async def test_what_the_application_froze_stays_frozen() -> None:
    """An application that froze objects itself (before a fork, say) keeps them frozen."""
    gc.freeze()
    async with af.open_system(graph()) as system:
        await system.stop()
    assert gc.get_freeze_count() > 0  # gc.unfreeze() would have emptied it
    assert gc.isenabled()


async def test_a_slow_validate_does_not_keep_the_collector_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The collector rests only around synchronous steps: while a module's async
    validate() waits, the rest of the process collects as usual."""
    seen: list[bool] = []

    class SlowToValidate(af.Sink):
        async def validate(self) -> None:
            await trio.sleep(100)
            seen.append(gc.isenabled())

        def consume(self, data: Any) -> None:
            pass

    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            await trio.sleep(50)
            seen.append(gc.isenabled())

        nursery.start_soon(watch)
        async with af.open_system(graph(SlowToValidate)) as system:
            await system.stop()
    assert seen == [True, True]


async def test_of_two_overlapping_systems_only_the_first_freezes() -> None:
    """A second system started while the first runs freezes nothing, and the collector
    is on and nothing frozen once both have ended."""
    async with af.open_system(graph()) as first:
        assert gc.get_freeze_count() > 0
        async with af.open_system(graph()) as second:
            assert gc.isenabled()
            await second.stop()
        assert gc.get_freeze_count() > 0  # the first still holds its graph frozen
        await first.stop()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_the_collector_rests_only_while_the_tree_starts() -> None:
    """While children start the young generation is collected seldom; once the system
    runs, the application's thresholds are back."""
    thresholds = gc.get_threshold()
    async with af.open_system(graph()) as system:
        assert gc.get_threshold() == thresholds
        assert gc.isenabled()
        await system.stop()
    assert gc.get_threshold() == thresholds
