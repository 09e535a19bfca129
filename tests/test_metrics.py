"""Prometheus metrics: scraped over real HTTP while a graph runs, parsed as Prometheus does."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import actorflow as af
from actorflow import _metrics
from actorflow._actor._pacing import Pacing
from actorflow._address import Address, loopback_names, parse_address
from actorflow._metrics import StatusCollector, connection, negotiate, registry_for
from actorflow._system import handling_times
from actorflow._timings import BOUNDS, HandlingTimes

CHECKOUT = Path(__file__).resolve().parent.parent


class Double(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, item: int) -> int | None:
        if item < 0:
            raise ValueError("negative")
        return None if item == 0 else item * 2


def build(name: str = "metered") -> af.Graph:
    """inlet -> double -> outlet: runs until the test closes the inlet."""
    graph = af.Graph(name=name)
    graph.add("inlet", af.Inlet)
    graph.add("double", Double)
    graph.add("outlet", af.Outlet, buffer=1000)
    graph.link("inlet", "double")
    graph.link("double", "outlet", buffer=1000)
    return graph


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(address: str | None, path: str = "/metrics", **options: Any) -> httpx.Response:
    assert address is not None
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://{address}{path}", **options)


async def drain(system: af.System) -> None:
    await system.close("inlet")
    async with system.receive("outlet") as items:
        async for _ in items:
            pass


async def test_a_scrape_shows_every_actor_and_link_of_the_running_graph() -> None:
    """Counters, gauges, states and the handling-time histogram reach Prometheus with
    the values the status holds, labelled by graph, actor and link."""
    async with af.open_system(build(), metrics=0) as system:
        for item in range(1, 301):
            await system.send("inlet", item)
        await system.send("inlet", 0)  # filtered
        while system.status().actors["double"].received < 301:
            await trio.sleep(0.001)
        response = await scrape(system.metrics_address)
        await drain(system)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    actor = {"graph": "metered", "actor": "double"}
    assert value(samples, "actorflow_actor_received_total", **actor) == 301
    assert value(samples, "actorflow_actor_emitted_total", **actor) == 300
    assert value(samples, "actorflow_actor_filtered_total", **actor) == 1
    assert value(samples, "actorflow_actor_errors_total", **actor) == 0
    assert value(samples, "actorflow_actor_restarts_total", **actor) == 0
    assert value(samples, "actorflow_actor_dead_letters_total", **actor) == 0
    assert value(samples, "actorflow_actor_mailbox_depth", **actor) == 0
    # Every item but the first (which learns how the hook is called) is timed.
    timed = value(samples, "actorflow_actor_handling_seconds_count", **actor)
    assert timed in (300, 301)
    assert value(samples, "actorflow_actor_handling_seconds_bucket", **actor, le="+Inf") == timed
    assert value(samples, "actorflow_actor_handling_seconds_sum", **actor) > 0
    link = {"graph": "metered", "link": "inlet.out -> double.in", "target": "double"}
    assert value(samples, "actorflow_link_sent_total", **link) == 301
    assert value(samples, "actorflow_link_delivered_total", **link) == 301
    assert value(samples, "actorflow_link_depth", **link) == 0
    assert value(samples, "actorflow_link_capacity", **link) == 100
    out = {"graph": "metered", "link": "double.out -> outlet.in", "target": "outlet"}
    assert value(samples, "actorflow_link_capacity", **out) == 1000
    states = {
        dict(labels)["actorflow_system_state"]: v
        for (name, labels), v in samples.items()
        if name == "actorflow_system_state"
    }
    assert states["running"] == 1
    assert sum(states.values()) == 1
    assert value(samples, "actorflow_system_uptime_seconds", graph="metered") >= 0


async def test_drops_and_actor_states_are_labelled_by_reason_and_state() -> None:
    """What an actor lost shows by reason; each actor is in exactly one state."""
    graph = af.Graph(name="lossy")
    graph.add("inlet", af.Inlet)
    graph.add("double", Double)  # its output has no link: what it emits is lost
    graph.link("inlet", "double")
    async with af.open_system(graph, metrics="127.0.0.1:0") as system:
        for item in range(1, 50):
            await system.send("inlet", item)
        while system.status().actors["double"].received < 49:
            await trio.sleep(0.001)
        samples = parse((await scrape(system.metrics_address)).text)
        await system.close("inlet")
    labels = {"graph": "lossy", "actor": "double", "reason": "unconnected"}
    assert value(samples, "actorflow_actor_dropped_total", **labels) == 49
    for actor in ("inlet", "double"):
        on = [
            dict(labels)["actorflow_actor_state"]
            for (name, labels), v in samples.items()
            if name == "actorflow_actor_state" and dict(labels)["actor"] == actor and v == 1
        ]
        assert len(on) == 1, (actor, on)


async def test_progress_and_link_drops_are_served() -> None:
    """What a module reports with ``set_progress`` is served as done and total; what a
    lossy link refuses (as many as the outlet did not take in time) is counted on the
    link, by reason."""

    class Counting(af.Processor):
        inputs: ClassVar = {"in": int}
        outputs: ClassVar = {"out": int}

        def process(self, item: int) -> int:
            self.set_progress(item, 10)
            return item

    graph = af.Graph(name="progress")
    graph.add("inlet", af.Inlet)
    graph.add("count", Counting)
    graph.add("outlet", af.Outlet)
    graph.link("inlet", "count")
    graph.link("count", "outlet", buffer=1, overflow="drop_newest")
    async with af.open_system(graph, metrics=0) as system:
        for item in range(1, 5):
            await system.send("inlet", item)
        while system.status().actors["count"].received < 4:
            await trio.sleep(0.001)
        samples = parse((await scrape(system.metrics_address)).text)
        await drain_all(system)
    labels = {"graph": "progress", "actor": "count"}
    assert value(samples, "actorflow_actor_progress_done", **labels) == 4
    assert value(samples, "actorflow_actor_progress_total", **labels) == 10
    link = {"graph": "progress", "link": "count.out -> outlet.in", "target": "outlet"}
    dropped = samples.get(
        ("actorflow_link_dropped_total", frozenset({**link, "reason": "overflow"}.items())), 0
    )
    # Every item offered to the link is counted once: accepted, or dropped for overflow.
    assert value(samples, "actorflow_link_sent_total", **link) + dropped == 4


async def drain_all(system: af.System) -> None:
    await system.close("inlet")
    async with system.receive("outlet") as items:
        async for _ in items:
            pass


async def test_two_systems_in_one_process_serve_their_own_metrics() -> None:
    """Each system has a registry of its own: neither shows the other's series."""
    async with (
        af.open_system(build("first"), metrics=0) as first,
        af.open_system(build("second"), metrics=0) as second,
    ):
        assert first.metrics_address != second.metrics_address
        await first.send("inlet", 1)
        one = (await scrape(first.metrics_address)).text
        two = (await scrape(second.metrics_address)).text
        await drain(first)
        await drain(second)
    assert 'graph="first"' in one
    assert 'graph="second"' not in one
    assert 'graph="second"' in two
    assert 'graph="first"' not in two


async def test_the_endpoint_answers_head_openmetrics_and_refuses_other_paths() -> None:
    """HEAD has no body, OpenMetrics is given to who asks for it, other paths are 404,
    other methods 405, and a connection carries several scrapes."""
    async with af.open_system(build(), metrics=0) as system:
        address = system.metrics_address
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            head = await client.head("/metrics")
            open_metrics = await client.get(
                "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            missing = await client.get("/")
            posted = await client.post("/metrics", content=b"x")
            again = await client.get("/metrics?x=1")
        await drain(system)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")
    assert missing.status_code == 404
    assert posted.status_code == 405
    assert again.status_code == 200


async def test_a_garbled_request_gets_400_and_the_server_keeps_serving() -> None:
    """A client that does not speak HTTP is answered 400 and closed; others still scrape."""
    async with af.open_system(build(), metrics=0) as system:
        address = parse_address(system.metrics_address)
        stream = await trio.open_tcp_stream(address.host, address.port)
        async with stream:
            await stream.send_all(b"\x00\x01 nonsense\r\n\r\n")
            answer = await stream.receive_some(1000)
        response = await scrape(system.metrics_address)
        await drain(system)
    assert answer.startswith(b"HTTP/1.1 400")
    assert response.status_code == 200


async def test_the_endpoint_closes_with_the_system() -> None:
    """Once the graph has ended nothing listens on its address any more."""
    async with af.open_system(build(), metrics=0) as system:
        address = parse_address(system.metrics_address)
        await drain(system)
    with pytest.raises(OSError, match="nnect"):  # "Connection refused", "all attempts to connect"
        await trio.open_tcp_stream(address.host, address.port)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_port_in_use_is_a_serve_error_before_anything_is_built(busy_port: int) -> None:
    """The address is bound first: in use, the system fails at once, with a message that
    names the address, and no module was constructed."""
    built: list[str] = []

    class Counting(Double):
        def __init__(self) -> None:
            built.append("double")

    graph = af.Graph(name="busy")
    graph.add("inlet", af.Inlet)
    graph.add("double", Counting)
    graph.link("inlet", "double")
    with pytest.raises(af.ServeError, match=f"127.0.0.1:{busy_port}: address already in use"):
        async with af.open_system(graph, metrics=busy_port):
            pass  # pragma: no cover
    assert built == []


def test_the_settings_take_a_port_or_host_and_port() -> None:
    """``metrics`` is ``[HOST:]PORT`` (a number is a port on 127.0.0.1), else refused
    with a message naming the setting."""
    assert af.Settings(metrics=9464).metrics == "9464"
    assert parse_address("9464") == Address("127.0.0.1", 9464)
    assert parse_address("0.0.0.0:80") == Address("0.0.0.0", 80)
    assert parse_address("[::1]:9464") == Address("::1", 9464)
    assert str(Address("::1", 1)) == "[::1]:1"
    for bad in ("", "host:", ":80", "99999", "::1:80", "a b:1", "-1", "1.5"):
        with pytest.raises(ValueError, match="metrics must be"):
            af.Settings(metrics=bad)
    with pytest.raises(TypeError, match="metrics must be"):
        af.Settings(metrics=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trace_ratio must be a number from 0 to 1"):
        af.Settings(trace_ratio=1.5)


@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.none(), st.binary()))
def test_any_address_is_parsed_or_refused_with_a_value_or_type_error(value: object) -> None:
    """Whatever a user writes, the answer is an address or a one-line error."""
    error: Exception | None = None
    try:
        address = parse_address(value, "metrics")
    except (ValueError, TypeError) as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("metrics must be")
        assert "\n" not in str(error)
    else:
        assert 0 <= address.port <= 65535
        assert parse_address(str(address)) == address


def test_handling_times_count_each_item_of_a_batch_at_its_mean() -> None:
    """A batch of n items in t seconds adds n items of t/n to one bucket, t to the sum."""
    times = HandlingTimes()
    times.observe(0.004, 4)  # 1 ms each
    times.observe(1e-7, 2)
    times.observe(100.0, 1)
    times.observe(1.0, 0)  # nothing handled: nothing counted
    buckets = dict(times.cumulative())
    assert buckets["1e-06"] == 2
    assert buckets["0.001"] == 6
    assert buckets[repr(BOUNDS[-1])] == 6
    assert buckets["+Inf"] == times.count == 7
    assert times.total == pytest.approx(100.0040001)


class AsyncCount(af.Source):
    outputs: ClassVar = {"out": int}

    async def start(self) -> Any:
        for item in range(30):
            yield item
        await trio.sleep_forever()


class SyncCount(af.Source):
    outputs: ClassVar = {"out": int}

    def start(self) -> Any:
        yield from range(30)


class BlockingCount(SyncCount):
    blocking = True


@pytest.mark.parametrize("source", [AsyncCount, SyncCount, BlockingCount])
@pytest.mark.parametrize("links", [1, 3])
def test_a_source_observes_each_item_once_whatever_its_out_links(
    source: type[af.Source], links: int
) -> None:
    """Seconds per item its hook took: 30 items are 30 observations, with one out-link
    (an async source observed none) or three (it observed each copy: 90)."""
    graph = af.Graph(name="fanned")
    graph.add("src", source)
    for index in range(links):
        graph.add(f"out{index}", af.Outlet, buffer=100)
        graph.link("src", f"out{index}")

    async def main() -> int:
        async with af.open_system(graph, metrics=0) as system:
            with trio.fail_after(30):
                while any(system.status().actors[f"out{i}"].received < 30 for i in range(links)):
                    await trio.sleep(0.01)
            count = handling_times(system)["src"].count
            system.cancel()
        return count

    assert trio.run(main) == 30


def test_without_metrics_no_actor_pays_for_handling_times() -> None:
    """The per-batch timing is switched on only while metrics are served."""
    graph = af.Graph(name="unmetered")
    graph.add("numbers", af.Variable, initial=1)
    graph.add("double", Double)
    graph.add("outlet", af.Outlet)
    graph.chain("numbers", "double", "outlet")

    async def main() -> dict[str, HandlingTimes]:
        async with af.open_system(graph) as system:
            timings = handling_times(system)
            system.cancel()
        return timings

    assert trio.run(main) == {}


def test_actorflow_run_serves_metrics_while_the_graph_runs(tmp_path: Path) -> None:
    """``actorflow run --metrics 0``: it says on stderr which port it took (as the
    dashboard does), and Prometheus can scrape the running graph there."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "actorflow",
            "run",
            "examples/sensor_pipeline.toml",
            "--no-view",
            "--metrics",
            "0",
        ],
        cwd=CHECKOUT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:  # ends at EOF: the run ended without saying
            if line.startswith("metrics: "):
                url = line.removeprefix("metrics: ").strip()
                break
        else:
            pytest.fail("actorflow run never said where its metrics are")
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/metrics")
        assert not url.startswith("http://127.0.0.1:0/")
        response = httpx.get(url, timeout=5)
        samples = parse(response.text)
        labels = {"graph": "sensor-pipeline", "actor": "calibrate"}
        assert ("actorflow_actor_received_total", frozenset(labels.items())) in samples
    finally:
        process.terminate()
        process.communicate(timeout=60)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--metrics", "localhost:http", "--metrics localhost:http: metrics must be [HOST:]PORT"),
        ("--trace-ratio", "-0.5", "--trace-ratio -0.5: trace_ratio must be a number from 0"),
        ("--trace-ratio", "abc", "--trace-ratio abc: trace_ratio must be a number from 0"),
        ("--metrics", "..:1", "--metrics ..:1: cannot serve metrics on ..:1: not a host name"),
        (
            "--metrics",
            "\u00fc..:1",
            "--metrics \u00fc..:1: cannot serve metrics on \u00fc..:1: not",
        ),
        (
            "--metrics",
            "a" * 64 + ":1",
            f"--metrics {'a' * 64}:1: cannot serve metrics on {'a' * 64}",
        ),
        ("--dashboard", "..:1", "--dashboard ..:1: cannot serve dashboard on ..:1: not a host"),
        ("--dashboard", "..", "--dashboard ..: dashboard must be [HOST:]PORT, got '..'"),
    ],
)
def test_bad_observing_options_are_one_line_errors(option: str, value: str, message: str) -> None:
    """A bad ``--metrics`` or ``--trace-ratio`` ends the command with exit 2 and one line."""
    result = subprocess.run(
        [sys.executable, "-m", "actorflow", "run", "examples/sensor_pipeline.toml", option, value],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1


def test_a_port_in_use_ends_actorflow_run_with_one_line(busy_port: int) -> None:
    """``--metrics`` on a port in use: exit 2, one line naming the address, nothing ran."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actorflow",
            "run",
            "examples/sensor_pipeline.toml",
            "--metrics",
            str(busy_port),
        ],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: --metrics {busy_port}: cannot serve metrics on 127.0.0.1:{busy_port}: "
        "address already in use (another program listens there)\n"
    )


# -- nothing a client sends ends the system ----------------------------------------------


async def raw(address: str | None, request: bytes) -> bytes:
    """What the endpoint answers ``request`` with, read until it closes or answers."""
    where = parse_address(address)
    stream = await trio.open_tcp_stream(where.host, where.port)
    async with stream:
        await stream.send_all(request)
        answer = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in answer:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                answer += chunk
    return answer


@pytest.mark.parametrize(
    "accept",
    [
        b"application/openmetrics-text; version=abc",
        b"application/openmetrics-text; version=1.0.0 \x7f",
        b"\xff\xfe application/openmetrics-text",
        b"application/openmetrics-text; version=7.0",
        b"application/json",
    ],
)
async def test_a_bad_accept_header_is_answered_and_the_system_runs_on(accept: bytes) -> None:
    """An Accept header that names no format served (or is not even UTF-8) gets 406 or
    the text format, never a crash; the graph and the endpoint go on."""
    async with af.open_system(build(), metrics=0) as system:
        answer = await raw(
            system.metrics_address,
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: " + accept + b"\r\n\r\n",
        )
        response = await scrape(system.metrics_address)
        await drain(system)
    status, _, _ = answer.partition(b"\r\n")
    assert status in (b"HTTP/1.1 406 Not Acceptable", b"HTTP/1.1 200 OK")
    assert b"version=7" not in answer  # never echoed
    assert b"abc" not in answer
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("", "text/plain; version=0.0.4; charset=utf-8"),
        ("*/*", "text/plain; version=0.0.4; charset=utf-8"),
        (
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
            "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
            "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (
            "text/plain;q=0.9, application/openmetrics-text;q=0.1",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (
            "application/openmetrics-text;q=0, text/plain",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
    ],
)
def test_the_format_is_negotiated_by_preference(accept: str, content_type: str) -> None:
    """Prometheus' own Accept header gets OpenMetrics 1.0.0; ``q`` orders the choice."""
    chosen = negotiate(accept)
    assert chosen is not None
    assert chosen[1] == content_type


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_accept_header_is_negotiated_without_raising(accept: str) -> None:
    chosen = negotiate(accept)
    assert chosen is None or chosen[1] in {
        "text/plain; version=0.0.4; charset=utf-8",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    }


async def test_absolute_targets_are_served_with_reason_phrases() -> None:
    """``GET http://host/metrics`` (absolute form) is a scrape; every status line has its
    reason phrase; a 405 says what is allowed."""
    async with af.open_system(build(), metrics=0) as system:
        address = system.metrics_address
        absolute = await raw(
            address, b"GET http://localhost/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        missing = await raw(address, b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
        put = await raw(
            address, b"PUT /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        )
        await drain(system)
    assert absolute.startswith(b"HTTP/1.1 200 OK\r\n")
    assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert put.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nallow: get, head\r\n" in put.lower()


async def test_a_large_body_is_refused_without_being_read() -> None:
    """A request announcing (or streaming) a body larger than a scrape's is answered 413
    and closed: the endpoint does not read it."""
    async with af.open_system(build(), metrics=0) as system:
        address = system.metrics_address
        declared = await raw(
            address, b"POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (40000, b"x" * 40000)
        streamed = await raw(
            address,
            b"POST /metrics HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk,
        )
        await drain(system)
    assert declared.startswith(b"HTTP/1.1 413 ")
    assert streamed.startswith(b"HTTP/1.1 413 ")


async def test_a_slow_client_is_closed_at_its_deadline_and_one_too_many_gets_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that sends a byte now and then is closed when its connection's time is
    up, however often it sends; a client over the cap of connections gets 503."""
    registry = registry_for(StatusCollector(build_status, 0.0, dict))
    slots = trio.CapacityLimiter(1)
    client, server = trio.testing.memory_stream_pair()
    other_client, other_server = trio.testing.memory_stream_pair()

    async def trickle() -> None:
        for byte in b"GET /metrics HTTP/1.1\r\n":
            await client.send_all(bytes([byte]))
            await trio.sleep(30)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection, registry, slots, server)
        nursery.start_soon(trickle)
        await trio.sleep(1)
        await connection(registry, slots, other_server)  # over the cap: answered, closed
        busy = await other_client.receive_some(1000)
        with trio.fail_after(120):
            closed = await client.receive_some(1000)  # at the deadline (60 s), not later
        nursery.cancel_scope.cancel()
    assert busy.startswith(b"HTTP/1.1 503 ")
    assert closed == b""
    assert trio.current_time() < 100


async def test_metrics_on_loopback_answer_only_to_their_own_names() -> None:
    """DNS rebinding, as for the dashboard (one check for both): a page at evil.example,
    its name pointed at 127.0.0.1, is refused; localhost and the address are served."""
    async with af.open_system(build(), metrics=0) as system:
        address = system.metrics_address
        port = address.rpartition(":")[2]
        url = f"http://{address}/metrics"
        async with httpx.AsyncClient(timeout=10) as client:
            answers = {
                host: (await client.get(url, headers={"Host": host})).status_code
                for host in ("evil.example", f"evil.example:{port}", "localhost:1")
            }
            answers["own"] = (await client.get(url)).status_code
        system.cancel()
    assert answers == {
        "evil.example": 400,
        f"evil.example:{port}": 400,
        "localhost:1": 200,
        "own": 200,
    }


@pytest.mark.parametrize(
    ("host", "names"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_only_a_loopback_server_knows_all_its_names(host: str, names: bool) -> None:
    found = loopback_names(host)
    assert (found is not None) is names
    if found is not None:
        assert {"localhost", "127.0.0.1", "::1", host.lower()} <= found


def build_status() -> af.SystemStatus:
    raise AssertionError("not scraped")


STATUS = af.SystemStatus("fuzzed", af.SystemState.RUNNING, {}, {})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"GET /metrics HTTP/1.1\r\n",
                    b"GET http://h/metrics HTTP/1.1\r\n",
                    b"HEAD /metrics HTTP/1.0\r\n",
                    b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                    b"Host: h\r\n",
                    b"Accept: application/openmetrics-text; version=abc\r\n",
                    b"Accept: \xff\xfe;q=x\r\n",
                    b"Transfer-Encoding: chunked\r\n\r\nffffff\r\n",
                    b"Expect: 100-continue\r\n",
                    b"\r\n",
                ]
            ),
        ),
        max_size=12,
    )
)
def test_nothing_a_client_sends_makes_the_endpoint_raise(parts: list[bytes]) -> None:
    """Any bytes, split anyhow: the connection's handler answers or closes, never raises
    (it runs in the system's nursery: what it raised would end every actor)."""
    registry = registry_for(StatusCollector(lambda: STATUS, 0.0, dict))

    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection, registry, trio.CapacityLimiter(2), server)
            try:  # the server may close first: the client's errors are not the point
                for part in parts:
                    await client.send_all(part)
                await client.send_eof()
            except trio.BrokenResourceError:
                pass
            while await client.receive_some(65536):
                pass

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_scrape_renders_its_text_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the snapshot is taken on the loop; the text (1.5 MB, a fifth of a second for
    500 actors) is made in a thread, so the actors run meanwhile. Proof: rendering
    waits for something only the loop can do while it renders."""
    loop_ran = threading.Event()
    render_links = _metrics._link_metrics

    def waiting(status: af.SystemStatus) -> Iterator[Any]:
        assert loop_ran.wait(10), "the loop did not run while the text was rendered"
        return render_links(status)

    monkeypatch.setattr(_metrics, "_link_metrics", waiting)
    registry = registry_for(StatusCollector(lambda: STATUS, 0.0, dict))
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection, registry, trio.CapacityLimiter(1), server)
        await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()
        loop_ran.set()
        answer = b""
        while chunk := await client.receive_some(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"# TYPE actorflow_link_depth gauge" in answer


# -- what the handling-time histogram times -----------------------------------------


class Sleepy(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    async def process(self, item: int) -> int:
        await trio.sleep(0.01)
        return item


class Blocking(af.Processor):
    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}
    blocking = True

    def process(self, item: int) -> int:
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            pass
        return item


class Tens(af.Source):
    outputs: ClassVar = {"out": int}

    def start(self) -> range:
        return range(10)


@pytest.mark.parametrize(("module", "least"), [(Sleepy, 0.01), (Blocking, 0.001), (Double, 0.0)])
@pytest.mark.parametrize("workers", [1, 3])
def test_every_kind_of_hook_is_timed(module: type[af.Module], least: float, workers: int) -> None:
    """Async hooks (their awaits included), blocking hooks (in their thread) and sync
    hooks each have every item in the histogram, at no less than they took."""
    graph = af.Graph(name="timed")
    graph.add("src", Tens)
    graph.add("hook", module)
    graph.add("sink", af.Outlet, buffer=100)
    graph.link("src", "hook", workers=workers)
    graph.link("hook", "sink")

    async def main() -> HandlingTimes:
        async with af.open_system(graph, metrics=0) as system:
            async with system.receive("sink") as items:
                async for _ in items:
                    pass
            return handling_times(system)["hook"]

    times = trio.run(main)
    # Double's 0 too (filtered, but handled); the first item a sync hook ever gets in a
    # process probes its style (does it return an awaitable?), the one item not timed.
    probed = module is Double and workers == 1
    assert times.count in ((9, 10) if probed else (10,))
    assert times.total >= least * times.count


def test_the_runs_of_a_batch_that_fails_are_timed() -> None:
    """A sync hook raising in the middle of a batch: the runs of items before the one
    it raised in are in the histogram (the strides are observed however they end)."""
    clock = iter(float(n) for n in range(100))
    pacing = Pacing(quantum=1000.0, set_state=lambda state: None, now=lambda: next(clock))
    pacing.timings = HandlingTimes()
    pacing.deadline = 1e9
    runs = pacing.strides(100)
    given = [next(runs), next(runs), next(runs)]  # the third run raises: closed
    runs.close()
    assert pacing.timings.count == sum(given[:2])
