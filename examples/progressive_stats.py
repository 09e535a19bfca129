"""A progressive computation: running mean and histogram over a million generated rows.

    stats (Progressive) -> report

The stats module works in steps sized to a 20 ms quantum, posting a partial result (the
mean and histogram so far, with its progress) after each step; the report prints one
line per 10% and the final histogram. Other actors would keep running meanwhile.

Run it with ``python examples/progressive_stats.py`` (``--rows N`` for another size).
"""

from __future__ import annotations

import random
import sys
from typing import Any, ClassVar

import actorflow as af

BINS = 12
LOW, HIGH = -3.0, 3.0


class Stats(af.Progressive):
    """Generates rows of a noisy sensor and keeps a running mean and histogram."""

    outputs: ClassVar = {"out": dict}
    quantum = 0.02

    def __init__(self, rows: int, seed: int = 1) -> None:
        self.rows = rows
        self.random = random.Random(seed)
        self.count = 0
        self.total = 0.0
        self.histogram = [0] * BINS

    def run_step(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        todo = min(step_size, self.rows - self.count)
        gauss = self.random.gauss
        width = (HIGH - LOW) / BINS
        for _ in range(todo):
            value = gauss(0.25, 1.0)
            self.total += value
            index = int((value - LOW) / width)
            self.histogram[min(max(index, 0), BINS - 1)] += 1
        self.count += todo
        self.set_progress(self.count, self.rows)
        self.post(
            {
                "progress": self.count / self.rows,
                "rows": self.count,
                "mean": self.total / self.count,
                "histogram": list(self.histogram),
                "step_size": step_size,
            }
        )
        done = self.count >= self.rows
        return af.Step(af.StepState.TERMINATED if done else af.StepState.READY, todo)


class Report(af.Sink):
    inputs: ClassVar = {"in": dict}

    def __init__(self) -> None:
        self.next_mark = 0.1
        self.last: dict[str, Any] = {}
        self.partials = 0

    def consume(self, data: dict[str, Any]) -> None:
        self.partials += 1
        self.last = data
        if data["progress"] >= self.next_mark - 1e-9:
            print(
                f"{data['progress']:4.0%}  rows={data['rows']:>9,}  mean={data['mean']:+.4f}  "
                f"step={data['step_size']:,}"
            )
            while self.next_mark <= data["progress"] + 1e-9:
                self.next_mark += 0.1

    def cleanup(self) -> None:
        if not self.last:
            return
        peak = max(self.last["histogram"])
        width = (HIGH - LOW) / BINS
        for index, count in enumerate(self.last["histogram"]):
            low = LOW + index * width
            print(f"{low:+5.1f} {'#' * round(40 * count / peak)}")
        print(f"{self.partials} partial results, final mean {self.last['mean']:+.4f}")


def main(argv: list[str]) -> int:
    rows = int(argv[argv.index("--rows") + 1]) if "--rows" in argv else 1_000_000
    graph = af.Graph(name="progressive-stats")
    graph.add("stats", Stats, rows=rows)
    graph.add("report", Report)
    graph.link("stats", "report", buffer=10_000)
    status = af.run(graph)
    return 0 if status.state is af.SystemState.DONE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
