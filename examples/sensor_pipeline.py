"""A sensor pipeline: readings flow through calibration and a threshold check, fan out to
an alert sink and a statistics sink, and the graph ends by itself when the sensors stop.

    sensors -> calibrate -> check --> alerts
                                 \\-> stats

Run it with ``python examples/sensor_pipeline.py``; add ``--json`` for JSON-lines logs.
"""

from __future__ import annotations

import random
import sys
from collections.abc import AsyncIterator
from typing import ClassVar

import trio

import actorflow as af


class Sensors(af.Source):
    """Simulated temperature readings from a few sensors, as Data messages."""

    outputs: ClassVar = {"out": af.Data}

    def __init__(
        self, sensors: int = 4, readings: int = 2500, seed: int = 7, interval: float = 0.0
    ) -> None:
        self.sensors = sensors
        self.readings = readings
        self.interval = interval  # seconds between two readings, as real sensors tick
        self.random = random.Random(seed)

    async def start(self) -> AsyncIterator[af.Data]:
        for n in range(self.readings):
            sensor = f"t{n % self.sensors}"
            celsius = 20 + self.random.gauss(0, 4)
            yield af.Data(
                fields={"raw": celsius, "seq": n}, tags={"sensor": sensor}, origin=self.name
            )
            if self.interval:
                await trio.sleep(self.interval)


class Calibrate(af.Processor):
    """Applies a per-sensor offset (the kind of thing a real deployment configures)."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}

    def __init__(self, offsets: dict[str, float]) -> None:
        self.offsets = offsets

    def validate(self) -> None:
        if any(abs(offset) > 5 for offset in self.offsets.values()):
            raise ValueError("an offset above 5 degrees means the sensor is broken")

    def process(self, data: af.Data) -> af.Data:
        offset = self.offsets.get(data.tags["sensor"], 0.0)
        return data.with_fields(celsius=round(data.fields["raw"] + offset, 2))


class Check(af.Processor):
    """Marks readings above a limit; everything flows on, alerts are a separate port."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data, "alert": af.Data}

    def __init__(self, limit: float) -> None:
        self.limit = limit

    async def process(self, data: af.Data) -> af.Data:
        if data.fields["celsius"] > self.limit:
            await self.emit(data, "alert")
        return data


class Alerts(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self) -> None:
        self.count = 0

    def consume(self, data: af.Data) -> None:
        self.count += 1
        if self.count <= 3:
            print(
                f"ALERT {data.tags['sensor']} seq={data.fields['seq']} {data.fields['celsius']} C"
            )

    def cleanup(self) -> None:
        print(f"alerts: {self.count}")


class Stats(af.Sink):
    inputs: ClassVar = {"in": af.Data}

    def __init__(self) -> None:
        self.sums: dict[str, tuple[int, float]] = {}

    def consume(self, data: af.Data) -> None:
        count, total = self.sums.get(data.tags["sensor"], (0, 0.0))
        self.sums[data.tags["sensor"]] = (count + 1, total + data.fields["celsius"])

    def cleanup(self) -> None:
        for sensor, (count, total) in sorted(self.sums.items()):
            print(f"{sensor}: {count} readings, mean {total / count:.2f} C")


def build() -> af.Graph:
    graph = af.Graph(name="sensor-pipeline")
    graph.add("sensors", Sensors, sensors=4, readings=2500)
    graph.add("calibrate", Calibrate, offsets={"t0": 0.5, "t1": -0.25})
    graph.add("check", Check, limit=28.0)
    graph.add("alerts", Alerts)
    graph.add("stats", Stats)
    graph.chain("sensors", "calibrate", "check", buffer=64)
    graph.link("check.alert", "alerts")
    graph.link("check", "stats")
    return graph


def main(argv: list[str]) -> int:
    af.configure_logging(format="json" if "--json" in argv else "console", level="warning")
    status = af.run(build())
    for actor in status.actors.values():
        print(
            f"{actor.name:>10}  {actor.state.value:<10} in={actor.received:<5} out={actor.emitted}"
        )
    print(f"graph {status.graph!r} {status.state.value}, dropped={status.dropped}")
    return 0 if status.state is af.SystemState.DONE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
