"""A small graph the dashboard tests watch (in this process, in a browser, and split over
processes by ``actorflow run dashboard_graph:build --only ...``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import trio

import actorflow as af

SECRET = "s3cr3t-pw"
"""A password that must never reach the page."""


class Readings(af.Source):
    """Emits ``count`` numbered items, one every ``delay`` seconds, reporting progress."""

    outputs: ClassVar = {"out": af.Data}

    def __init__(self, count: int = 100_000, delay: float = 0.005) -> None:
        self.count = count
        self.delay = delay

    async def start(self) -> AsyncIterator[af.Data]:
        for n in range(self.count):
            await trio.sleep(self.delay)
            self.set_progress(n + 1, self.count)
            yield af.Data(fields={"n": n})


class Calibrate(af.Processor):
    """Passes each item on after ``delay`` seconds."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def process(self, data: af.Data) -> af.Data:
        if self.delay:
            await trio.sleep(self.delay)
        return data


class Parser(af.Processor):
    """Fails on every ``every``-th item, quoting a URL with a password in its error."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, every: int = 10) -> None:
        self.every = every

    def process(self, data: af.Data) -> af.Data:
        n = data.fields["n"]
        if n % self.every == self.every - 1:
            raise ValueError(f"bad reading {n} from redis://:{SECRET}@db.internal/0")
        return data


class Store(af.Sink):
    """Takes every item (after ``delay`` seconds)."""

    inputs: ClassVar = {"in": af.Data}

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def consume(self, data: af.Data) -> None:
        if self.delay:
            await trio.sleep(self.delay)


def build(**readings: Any) -> af.Graph:
    """sensor -> calibrate -> store, and sensor -> parse -> archive (parse keeps failing and is
    restarted each time)."""
    graph = af.Graph(name="dash-demo")
    graph.supervisor(max_restarts=1_000_000, period=1)
    graph.add("sensor", Readings, **readings)
    graph.add("calibrate", Calibrate, delay=0.002)
    graph.add("parse", Parser)
    graph.add("store", Store, delay=0.009)  # slower than the sensor: backpressure
    graph.add("archive", Store)
    graph.link("sensor", "calibrate")
    graph.link("sensor", "parse")
    graph.link("calibrate", "store", buffer=16)
    graph.link("parse", "archive")
    return graph


def build_split() -> af.Graph:
    """sensor | calibrate -> store: the first link remote (the URL comes from remote_url)."""
    graph = af.Graph(name=os.environ.get("DASH_GRAPH", "dash-split"))
    graph.add("sensor", Readings, delay=0.01)
    graph.add("calibrate", Calibrate)
    graph.add("store", Store, delay=0.004)
    graph.link("sensor", "calibrate", remote=True)
    graph.link("calibrate", "store", buffer=16)
    return graph


def build_brief() -> af.Graph:
    """:func:`build` with few items: a run that ends by itself at once."""
    return build(count=40, delay=0.001)
