"""actorflow's pytest plugin: fixtures for tests of modules and graphs.

pytest loads it through the ``pytest11`` entry point of the installed package, so a
project that depends on actorflow has the fixtures without any configuration. It
imports nothing of actorflow's runtime until a fixture is used: plugins are loaded
before coverage measurement starts.

Fixtures:
    actorflow_clock: a ``trio.testing.MockClock(autojump_threshold=0)``. A trio test
        that takes it (pytest-trio hands the clock among a test's arguments to its
        loop) runs on virtual time: whenever every task waits, time jumps to the next
        timer, so an hour of timed behaviour takes milliseconds.
    actorflow_system: a :class:`actorflow.testing.SystemStarter`:
        ``system = await actorflow_system(graph)`` starts a graph that runs until the
        test ends, is then stopped gracefully, and whose failure fails the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import trio.testing

    from .testing import SystemStarter


@pytest.fixture
def actorflow_clock(request: pytest.FixtureRequest) -> trio.testing.MockClock:
    """A virtual clock that jumps to the next timer whenever every task waits (an async
    test must be run by pytest-trio, which runs its loop on the clock; a sync test may
    give it to its own ``trio.run(..., clock=actorflow_clock)``)."""
    import inspect

    import trio.testing

    test = getattr(request.node, "obj", None)
    if inspect.iscoroutinefunction(test) and request.node.get_closest_marker("trio") is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: actorflow_clock needs pytest-trio to run the test "
            "(mark it @pytest.mark.trio, or set trio_mode = true): another runner "
            "(anyio, asyncio) would not use the clock, and the test would run on real time"
        )
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
async def actorflow_system() -> AsyncIterator[SystemStarter]:
    """Starts graphs that run in the background of the test (needs pytest-trio)."""
    import trio

    from ._exceptions import single_errors
    from .testing import SystemStarter

    with single_errors():  # a failed system fails the test with its own error
        async with trio.open_nursery() as nursery:
            starter = SystemStarter(nursery)
            yield starter
            starter.close()
