"""Heartbeats: periodic status snapshots, logged and sent to reporters."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from sample_modules import Collect, Forever

import actorflow as af


def ticking_graph() -> af.Graph:
    graph = af.Graph(name="ticking")
    graph.add("ticks", Forever, interval=0.5)
    graph.add("sink", Collect, into=[])
    graph.link("ticks", "sink")
    return graph


async def test_a_heartbeat_is_logged_every_interval(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """Every heartbeat_interval a system.heartbeat event carries every actor's state."""
    async with af.open_system(ticking_graph(), heartbeat_interval=1.0) as system:
        await trio.sleep(3.2)  # the source then ends at 3.5, before a 4th beat
        await system.stop()
    beats = [e for e in logs if e["event"] == "system.heartbeat"]
    assert len(beats) == 3
    assert beats[-1]["actors"]["sink"]["received"] >= 6
    assert set(beats[0]["actors"]) == {"ticks", "sink"}


class Recording:
    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []

    async def report(self, snapshot: dict[str, Any]) -> None:
        self.snapshots.append(snapshot)


class Hanging:
    async def report(self, snapshot: dict[str, Any]) -> None:
        await trio.sleep_forever()


async def test_reporters_get_snapshots_and_a_slow_one_never_blocks_the_graph(
    autojump_clock: trio.testing.MockClock, logs: list[dict[str, Any]]
) -> None:
    """Each reporter gets JSON-ready snapshots; one that hangs is cut off per interval."""
    recording = Recording()
    async with af.open_system(
        ticking_graph(), heartbeat_interval=1.0, reporters=[recording, Hanging()]
    ) as system:
        await trio.sleep(3.2)  # the source then ends at 3.5, before a 4th beat
        await system.stop()
    assert len(recording.snapshots) == 3
    data = recording.snapshots[-1]
    json.dumps(data)  # plain data
    assert {"graph", "state", "host", "version", "started_at", "actors"} <= data.keys()
    assert data["actors"]["ticks"]["kind"] == "source"
    assert sum(e["event"] == "reporter.slow" for e in logs) >= 2


class Watch:
    """Passes snapshots on to an HttpReporter; says when it has failed often enough."""

    def __init__(self, inner: af.HttpReporter, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.enough = trio.Event()

    async def report(self, snapshot: dict[str, Any]) -> None:
        await self.inner.report(snapshot)
        if self.inner.failures >= self.failures:
            self.enough.set()


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, Any]], threading.Event]]:
    received: list[dict[str, Any]] = []
    two = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            if len(received) >= 2:
                two.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/heartbeat", received, two
    finally:
        server.shutdown()
        server.server_close()


async def test_the_http_reporter_posts_json_snapshots_to_a_real_server(
    http_server: tuple[str, list[dict[str, Any]], threading.Event],
) -> None:
    """HttpReporter POSTs each snapshot as JSON to the URL."""
    url, received, two = http_server
    async with (
        af.HttpReporter(url) as reporter,
        af.open_system(ticking_graph(), heartbeat_interval=0.05, reporters=[reporter]) as system,
    ):
        assert await trio.to_thread.run_sync(two.wait, 20)
        await system.stop()
    assert received[0]["graph"] == "ticking"
    assert set(received[0]["actors"]) == {"ticks", "sink"}
    assert reporter.sent >= 2


async def test_the_http_reporter_warns_once_and_keeps_trying_when_the_server_is_down(
    logs: list[dict[str, Any]],
) -> None:
    """A dead URL gives one warning; every heartbeat still tries; the graph is unaffected."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with af.HttpReporter(f"http://127.0.0.1:{port}/", timeout=0.5) as reporter:
        watch = Watch(reporter, failures=3)
        async with af.open_system(
            ticking_graph(), heartbeat_interval=0.02, reporters=[watch]
        ) as system:
            with trio.fail_after(20):
                await watch.enough.wait()
            await system.stop()
    assert sum(e["event"] == "reporter.failing" for e in logs) == 1
    assert system.status().state is af.SystemState.DONE


class Encoder(af.Processor):
    """Reports which frame it is on, as a task name, progress and free-form info."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, frame: int) -> int:
        self.set_info("encoding", frame=frame, frames=10, codec=Codec())
        self.set_progress(frame + 1, 10)
        return frame


class Codec:
    def __str__(self) -> str:
        return "av1"


async def test_status_and_heartbeats_carry_task_progress_and_info(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What a module says it is doing reaches System.status() and every reporter as
    plain data; a module that says nothing reports its class name as its task."""
    recording = Recording()
    graph = af.Graph(name="encode")
    graph.add("frames", Forever, interval=1.0)
    graph.add("encoder", Encoder)
    graph.add("sink", Collect, into=[])
    graph.chain("frames", "encoder", "sink")
    async with af.open_system(graph, heartbeat_interval=1.25, reporters=[recording]) as system:
        await trio.sleep(3.2)
        status = system.status().actors["encoder"]
        assert status.task == "encoding"
        assert status.info["frame"] == 3
        assert status.progress == (4.0, 10.0)
        await system.stop()
    beat = recording.snapshots[1]["actors"]  # at 2.5 s: frames 0, 1 and 2 were encoded
    json.dumps(beat)
    assert beat["encoder"]["task"] == "encoding"
    assert beat["encoder"]["info"] == {"frame": 2, "frames": 10, "codec": "av1"}
    assert beat["encoder"]["progress"] == [3.0, 10.0]
    assert beat["sink"]["task"] == "Collect"
    assert beat["sink"]["info"] == {}


async def test_reporters_named_in_the_settings_are_built_run_and_closed_by_the_system(
    http_server: tuple[str, list[dict[str, Any]], threading.Event],
) -> None:
    """``Settings.reporters`` (a graph file's ``[settings] reporters = [...]``): the
    system makes an HttpReporter for each URL and closes it when it ends."""
    url, received, two = http_server
    settings = af.Settings(reporters=[url], heartbeat_interval=0.05)
    assert settings.reporters == (url,)
    async with af.open_system(ticking_graph(), settings) as system:
        assert await trio.to_thread.run_sync(two.wait, 20)
        (reporter,) = system.reporters
        assert isinstance(reporter, af.HttpReporter)
        await system.stop()
    assert received[0]["graph"] == "ticking"
    assert reporter._client.is_closed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["ftp://x/"], "is not an http(s):// URL"),
        (["http://user:hunter2@host/x", 5], "5 is not an http(s):// URL"),
        ("http://x/", "must be a list of http(s):// URLs"),
        (["redis://:hunter2@h/0"], "is not an http(s):// URL"),
    ],
)
def test_reporter_urls_are_checked_and_their_secrets_never_shown(value: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        af.Settings(reporters=value)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)
    shown = repr(af.Settings(reporters=["https://me:hunter2@host/beat"]))
    assert "hunter2" not in shown
    assert "host/beat" in shown
