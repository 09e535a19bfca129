"""An interactive progressive computation: change its parameter while it runs.

    threshold (Variable) -> explorer (Progressive, interactive) -> report

The explorer measures which fraction of a million generated readings lies above a
threshold, posting partial results as it goes. Half-way through, the host changes the
threshold: the partial results start over for the new value. Once the explorer has
finished (it is *terminated*, but interactive), a third threshold resurrects it.

Run it with ``python examples/interactive_threshold.py`` (``--rows N`` for another size).
"""

from __future__ import annotations

import math
import random
import sys
from typing import ClassVar

import trio

import actorflow as af


class Threshold(af.Variable):
    outputs: ClassVar = {"out": float}


class Explorer(af.Progressive):
    inputs: ClassVar = {"threshold": float}
    outputs: ClassVar = {"out": tuple}
    interactive = True
    quantum = 0.02

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.threshold: float | None = None
        self.random = random.Random(3)
        self.done = 0
        self.above = 0

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        changed = self.read("threshold")
        if changed:  # a new parameter: start over
            self.threshold, self.done, self.above = changed[-1], 0, 0
            self.random.seed(3)
        if self.threshold is None:
            return af.Step(af.StepState.BLOCKED, 0)
        todo = min(step_size, self.rows - self.done)
        gauss, threshold = self.random.gauss, self.threshold
        self.above += sum(1 for _ in range(todo) if gauss(0, 1) > threshold)
        self.done += todo
        self.set_progress(self.done, self.rows)
        self.post((threshold, self.done / self.rows, self.above / self.done))
        state = af.StepState.TERMINATED if self.done == self.rows else af.StepState.READY
        return af.Step(state, todo)


class Report(af.Sink):
    """Prints every quarter of progress; tells the host how far each threshold got."""

    inputs: ClassVar = {"in": tuple}

    def __init__(self, updates: trio.MemorySendChannel[tuple[float, float]]) -> None:
        self.updates = updates
        self.marks: dict[float, float] = {}

    def consume(self, data: tuple[float, float, float]) -> None:
        threshold, progress, fraction = data
        mark = self.marks.get(threshold, 0.25)
        if progress >= mark - 1e-9:
            print(f"threshold {threshold:+.1f}: {progress:4.0%} done, {fraction:6.2%} above")
            self.marks[threshold] = mark + 0.25 * (1 + int((progress - mark) / 0.25))
        self.updates.send_nowait((threshold, progress))


async def main_async(rows: int) -> None:
    updates, progress = trio.open_memory_channel[tuple[float, float]](math.inf)
    graph = af.Graph(name="interactive-threshold")
    graph.add("threshold", Threshold, initial=1.0)
    graph.add("explorer", Explorer, rows=rows)
    graph.add("report", Report, updates=updates)
    graph.link("threshold", "explorer.threshold")
    graph.link("explorer", "report", buffer=1000)

    async def until(wanted: float, fraction: float) -> None:
        async for threshold, done in progress:
            if threshold == wanted and done >= fraction:
                return

    async with af.open_system(graph) as system:
        await until(1.0, 0.5)
        print("-> the user changes the threshold to 2.0 while it runs")
        await system.set("threshold", 2.0)
        await until(2.0, 1.0)
        state = system.status().actors["explorer"].state.value
        print(f"-> explorer is {state}; the user asks for threshold 0.0")
        await system.set("threshold", 0.0)
        await until(0.0, 1.0)
        await system.stop()
    print(f"explorer ended: {system.status().actors['explorer'].state.value}")


def main(argv: list[str]) -> int:
    rows = int(argv[argv.index("--rows") + 1]) if "--rows" in argv else 1_000_000
    trio.run(main_async, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
