"""What the review of stage fusion and the lean hot loop found (#16): each test holds
fused and unfused runs to the same outcome."""

from __future__ import annotations

from typing import ClassVar

import pytest
import trio
import trio.testing
from sample_modules import Collect, Numbers

import actorflow as af


class StopsOnFive(af.Processor):
    """A user bug: ``next()`` on an empty iterator raises StopIteration for item 5."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        if data == 5:
            next(iter([]))
        return data


class StopsOnFiveSink(af.Sink):
    inputs: ClassVar = {"in": int}

    def __init__(self, into: list[int]) -> None:
        self.into = into

    def consume(self, data: int) -> None:
        if data == 5:
            next(iter([]))
        self.into.append(data)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("where", ["processor", "sink"])
async def test_a_hook_raising_stopiteration_fails_that_item_and_loses_none(
    fuse: bool, where: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A StopIteration from a hook is not the end of a stride: the item is dead-lettered
    like any failure and every other item arrives."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=300)
    if where == "processor":
        graph.add("p", StopsOnFive)
        graph.add("sink", Collect, into=out)
        graph.chain("src", "p", "sink")
        failing = "p"
    else:
        graph.add("sink", StopsOnFiveSink, into=out)
        graph.chain("src", "sink")
        failing = "sink"
    async with af.open_system(graph, fuse=fuse) as system:
        pass
    assert out == [n for n in range(300) if n != 5]
    status = system.status().actors[failing]
    assert (status.received, status.errors, status.dead_lettered) == (300, 1, 1)
