"""A graph inside a small asyncio web service (standard library only).

    POST /readings  --> readings (Inlet) -> check --> stats
                                               \\-> alerts (Outlet) --> GET /alerts
    GET /status      every actor's state, counters and what it reports (set_info)
    POST /shutdown   closes the inlet; the graph drains and ends; the service exits

The graph runs in trio guest mode inside asyncio's loop (``actorflow.aio``); asyncio
owns the thread, the sockets and Ctrl-C. Run it with
``python examples/aio_service.py --port 8080`` and try::

    curl -X POST localhost:8080/readings -d '{"sensor": "t1", "celsius": 31.5}'
    curl 'localhost:8080/alerts?wait=1'
    curl localhost:8080/status
    curl -X POST localhost:8080/shutdown
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import actorflow as af
from actorflow import aio


class Check(af.Processor):
    """Passes every reading on; readings above ``limit`` also go out on ``alert``."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data, "alert": af.Data}

    def __init__(self, limit: float) -> None:
        self.limit = limit

    async def process(self, data: af.Data) -> af.Data:
        if data.fields["celsius"] > self.limit:
            await self.emit(data, "alert")
        return data


class Stats(af.Sink):
    """A running mean per sensor, reported through the actor's status."""

    inputs: ClassVar = {"in": af.Data}

    def __init__(self) -> None:
        self.sums: dict[str, tuple[int, float]] = {}

    def consume(self, data: af.Data) -> None:
        count, total = self.sums.get(data.tags["sensor"], (0, 0.0))
        self.sums[data.tags["sensor"]] = (count + 1, total + data.fields["celsius"])
        self.set_info(
            "averaging",
            **{sensor: round(total / count, 2) for sensor, (count, total) in self.sums.items()},
        )


def build(limit: float) -> af.Graph:
    graph = af.Graph(name="readings-service")
    graph.add("readings", af.Inlet, buffer=64)
    graph.add("check", Check, limit=limit)
    graph.add("stats", Stats)
    graph.add("alerts", af.Outlet, buffer=64)
    graph.link("readings", "check")
    graph.link("check", "stats")
    graph.link("check.alert", "alerts")
    return graph


class Service:
    """The HTTP side: a few routes over the running system."""

    def __init__(self, system: aio.AioSystem) -> None:
        self.system = system
        self.alerts: list[dict[str, Any]] = []
        self.new_alert = asyncio.Condition()
        self.done = asyncio.Event()

    async def collect_alerts(self) -> None:
        async for data in self.system.receive("alerts"):
            async with self.new_alert:
                self.alerts.append({**data.tags, **data.fields, "id": data.id})
                self.new_alert.notify_all()

    async def route(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        if (method, url.path) == ("POST", "/readings"):
            try:
                reading = json.loads(body)
                data = af.Data(
                    fields={"celsius": float(reading["celsius"])},
                    tags={"sensor": str(reading["sensor"])},
                )
            except (ValueError, KeyError, TypeError) as exc:
                return 400, {"error": f"expected {{'sensor': str, 'celsius': number}}: {exc}"}
            await self.system.send("readings", data)  # waits if the graph is behind
            return 202, {"id": data.id}
        if (method, url.path) == ("GET", "/alerts"):
            wanted = int(parse_qs(url.query).get("wait", ["0"])[0])
            async with self.new_alert:  # long poll: until `wait` alerts have arrived
                await asyncio.wait_for(
                    self.new_alert.wait_for(lambda: len(self.alerts) >= wanted), 10
                )
            return 200, self.alerts
        if (method, url.path) == ("GET", "/status"):
            return 200, describe(await self.system.status())
        if (method, url.path) == ("POST", "/shutdown"):
            await self.system.close("readings")
            await self.system.wait()
            self.done.set()
            return 200, describe(await self.system.status())
        return 404, {"error": f"no route {method} {url.path}"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, _ = (await reader.readline()).decode("latin-1").split(" ", 2)
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            status, payload = await self.route(method, target, await reader.readexactly(length))
        except (ValueError, asyncio.IncompleteReadError):
            status, payload = 400, {"error": "malformed request"}
        except TimeoutError:
            status, payload = 504, {"error": "timed out waiting"}
        body = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


def describe(status: af.SystemStatus) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "dropped": status.dropped,
        "actors": {
            name: {
                "state": actor.state.value,
                "received": actor.received,
                "task": actor.task,
                "info": dict(actor.info),
            }
            for name, actor in status.actors.items()
        },
    }


async def main(port: int, limit: float) -> None:
    async with aio.open_system(build(limit)) as system:
        service = Service(system)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(service.collect_alerts())
            server = await asyncio.start_server(service.handle, "127.0.0.1", port)
            async with server:
                print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
                sys.stdout.flush()
                await service.done.wait()
    print(f"done: {len(service.alerts)} alerts")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--limit", type=float, default=30.0, help="alert above (Celsius)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.port, args.limit))
    except KeyboardInterrupt:
        print("interrupted: the graph was cancelled and cleaned up")
        sys.exit(130)
