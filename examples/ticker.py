"""A graph that runs until you press Ctrl-C, then stops in order with every cleanup run.

    ticks -> square -> show

Run it with ``python examples/ticker.py`` and press Ctrl-C. With ``--count N`` it stops
by itself after N ticks.
"""

from __future__ import annotations

import sys
from typing import ClassVar

import trio

import actorflow as af


class Ticks(af.Source):
    outputs: ClassVar = {"out": int}

    def __init__(self, interval: float, count: int | None = None) -> None:
        self.interval = interval
        self.count = count

    async def start(self) -> None:
        n = 0
        while self.active and (self.count is None or n < self.count):
            await self.emit(n)
            n += 1
            await trio.sleep(self.interval)

    def cleanup(self) -> None:
        print(f"cleanup: {self.name}", flush=True)


class Square(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data * data

    def cleanup(self) -> None:
        print(f"cleanup: {self.name}", flush=True)


class Show(af.Sink):
    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        print(f"tick {data}", flush=True)

    def cleanup(self) -> None:
        print(f"cleanup: {self.name}", flush=True)


def main(argv: list[str]) -> int:
    count = int(argv[argv.index("--count") + 1]) if "--count" in argv else None
    graph = af.Graph(name="ticker")
    graph.add("ticks", Ticks, interval=0.05, count=count)
    graph.add("square", Square)
    graph.add("show", Show)
    graph.chain("ticks", "square", "show")
    try:
        af.run(graph)
    except KeyboardInterrupt:
        print("interrupted: stopped in order", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
