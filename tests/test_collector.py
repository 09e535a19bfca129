"""The collector rests while a graph is built and leaves the built graph alone while
it runs; the application's own collector settings are kept."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

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
