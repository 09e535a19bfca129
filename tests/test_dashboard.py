"""The dashboard's server, as a client sees it over HTTP (httpx), and its parts: the
address it takes, the layout it computes, the events it finds, the views it merges."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import attrs
import httpx
import pytest
import trio
from dashboard_graph import SECRET, Calibrate, Readings, Store, build
from hypothesis import given
from hypothesis import strategies as st

import actorflow as af
from actorflow._actor import DeadLetter
from actorflow._dashboard import DashboardError, bind, parse_address
from actorflow._dashboard._board import Board, merge
from actorflow._dashboard._layout import layers, layout, order_layers
from actorflow._dashboard._tracker import KEEP, MAX_SHOWN, Tracker, Watched
from actorflow._status import ActorState, ActorStatus, SystemState, SystemStatus
from actorflow._urls import redact_text

TESTS = Path(__file__).resolve().parent
CHECKOUT = TESTS.parent


# -- the address -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("8080", ("127.0.0.1", 8080)),
        (8080, ("127.0.0.1", 8080)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:0", ("localhost", 0)),
        (("10.0.0.1", 80), ("10.0.0.1", 80)),
    ],
)
def test_an_address_is_a_port_with_an_optional_host_that_defaults_to_loopback(
    given_: Any, expected: tuple[str, int]
) -> None:
    """Only a port: 127.0.0.1, never every interface unless asked."""
    assert parse_address(given_) == expected


@pytest.mark.parametrize("bad", ["", "abc", "host:", ":80", "80000", "-1", "1.5", "a b:80"])
def test_a_bad_address_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="dashboard") as caught:
        parse_address(bad)
    assert repr(bad) in str(caught.value)


@given(st.text(max_size=30))
def test_any_text_is_an_address_or_a_value_error(text: str) -> None:
    """Whatever is typed after --dashboard: a host and a port in range, or ValueError."""
    try:
        host, port = parse_address(text)
    except ValueError:
        return
    assert host
    assert 0 <= port <= 65535


@given(st.integers(0, 65535), st.sampled_from(["127.0.0.1", "localhost", "0.0.0.0", "::1"]))
def test_a_written_address_reads_back(port: int, host: str) -> None:
    written = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_address(written) == (host, port)


def test_a_port_in_use_is_one_clear_error() -> None:
    with bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match=f"127.0.0.1:{port}: address already in use"):
            bind("127.0.0.1", port)


# -- the layout ---------------------------------------------------------------------------


def test_layers_follow_the_longest_path_and_leave_feedback_out() -> None:
    """a -> b -> d and a -> d: d is two layers down; a feedback link d -> a changes nothing."""
    names = ["a", "b", "c", "d"]
    edges = [("a", "b"), ("b", "d"), ("a", "d"), ("c", "d")]
    assert layers(names, edges) == {"a": 0, "b": 1, "c": 0, "d": 2}


def test_ordering_uncrosses_two_crossed_pairs() -> None:
    """a1 -> b2 and a2 -> b1, declared crossed, are drawn side by side."""
    layer = {"a1": 0, "a2": 0, "b2": 1, "b1": 1}
    rows = order_layers(layer, [("a1", "b1"), ("a2", "b2")])
    assert rows == [["a1", "a2"], ["b1", "b2"]]


@given(st.integers(1, 12), st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11))))
def test_every_module_gets_a_box_of_its_own_and_links_point_down_the_layers(
    size: int, pairs: list[tuple[int, int]]
) -> None:
    """Any acyclic graph: boxes never overlap and every link goes to a later layer."""
    graph = af.Graph(name="g")
    for index in range(size):
        graph.add(f"m{index}", Calibrate)
    for a, b in {(a, b) for a, b in pairs if a < b < size}:
        graph.link(f"m{a}", f"m{b}")
    drawn = layout(graph, {f"m{i}" for i in range(size)})
    boxes = {m["name"]: m for m in drawn["modules"]}
    corners = {(m["x"], m["y"]) for m in boxes.values()}
    assert len(corners) == size
    for link in drawn["links"]:
        assert boxes[link["source"]]["x"] < boxes[link["target"]]["x"]
    for box in boxes.values():
        assert box["x"] + box["w"] <= drawn["width"]
        assert box["y"] + box["h"] <= drawn["height"]


def test_the_layout_marks_remote_links_and_where_modules_run_and_hides_passwords() -> None:
    graph = af.Graph(name="g")
    graph.add("src", Readings)
    graph.add("out", Store)
    graph.link("src", "out", remote=f"redis://:{SECRET}@db.internal/0")
    drawn = layout(graph, {"out"})
    assert SECRET not in json.dumps(drawn)
    (link,) = drawn["links"]
    assert link["remote"]
    assert link["crosses"]
    assert link["url"] == "redis://:***@db.internal/0"
    assert {m["name"]: m["here"] for m in drawn["modules"]} == {"src": False, "out": True}


# -- the events found between snapshots ----------------------------------------------------


def actor(state: ActorState = ActorState.RUNNING, **fields: Any) -> ActorStatus:
    values: dict[str, Any] = {
        "name": "a",
        "kind": "processor",
        "state": state,
        "blocked_on": None,
        "received": 0,
        "emitted": 0,
        "filtered": 0,
        "dropped": {},
        "mailbox_depth": 0,
        "errors": 0,
        "reason": None,
    }
    values.update(fields)
    return ActorStatus(**values)


class Scripted:
    """Snapshots of a one-actor system, handed out in turn."""

    def __init__(self, *actors: ActorStatus) -> None:
        self.actors = list(actors)
        self.letters: list[DeadLetter] = []
        self.errors: dict[str, str] = {}

    def status(self) -> SystemStatus:
        return SystemStatus("g", SystemState.RUNNING, {"a": self.actors.pop(0)}, {})

    def watched(self) -> Watched:
        return Watched(
            status=self.status,
            errors=lambda: self.errors,
            dead_letters=lambda: self.letters,
            here=frozenset({"a"}),
            started_at=0.0,
            secrets=(f"redis://:{SECRET}@db.internal/0",),
        )


def texts(view: dict[str, Any]) -> list[str]:
    return [event["text"] for event in view["actors"]["a"]["events"]]


def test_events_say_what_changed_and_leave_out_running_and_blocked() -> None:
    """A failure with its (password-free) message, a restart, a dead letter and drops;
    running <-> blocked is not an event."""
    script = Scripted(
        actor(ActorState.RUNNING),
        actor(ActorState.BLOCKED, blocked_on="input"),
        actor(ActorState.RUNNING, errors=1, restarts=1, dead_lettered=1, dropped={"x": 2}),
        actor(ActorState.TERMINATED, errors=1, restarts=1, dead_lettered=1, reason="normal"),
    )
    tracker = Tracker(script.watched())
    tracker.update()
    tracker.update()
    script.errors = {"a": f"ValueError: no redis://:{SECRET}@db.internal/0"}
    script.letters.append(DeadLetter(1, "a", ValueError(f"bad {SECRET}"), "m1", 1))
    tracker.update()
    view = tracker.update()
    assert texts(view) == [
        "state running",
        "error: ValueError: no redis://:***@db.internal/0",
        "restarted (1 in all)",
        "dead letter m1 after 1 attempts: ValueError: bad ***",
        "dropped 2 (x)",
        "state terminated (normal)",
    ]
    assert view["actors"]["a"]["error"] == "ValueError: no redis://:***@db.internal/0"


def test_an_actor_keeps_only_its_recent_events() -> None:
    many = [actor(ActorState.RUNNING, errors=n) for n in range(KEEP + 10)]
    script = Scripted(*many)
    tracker = Tracker(script.watched())
    for _ in many:
        view = tracker.update()
    assert len(view["actors"]["a"]["events"]) == KEEP
    assert texts(view)[-1] == "error: (no message)"


def test_merge_shows_each_actor_as_the_process_that_runs_it_reports_it() -> None:
    """Another process's actors are tagged with it; a remote link's fill is the consumer's
    half; a process silent for long is shown gone."""
    own = {
        "state": "running",
        "started_at": 0.0,
        "dropped": 1,
        "here": ["b"],
        "actors": {"b": {"state": "running"}},
        "links": {"a.out -> b.in (from the stream)": {"depth": 3, "target": "b"}},
    }
    other = {
        "process": "h:2",
        "time": 100.0,
        "state": "running",
        "dropped": 2,
        "here": ["a"],
        "actors": {"a": {"state": "blocked"}, "b": {"state": "stale"}},
        "links": {"a.out -> b.in (to the stream)": {"depth": 9, "target": "b"}},
    }
    merged = merge("h:1", own, {"h:2": other}, {"graph": "g"}, now=101.0)
    assert {name: (a["state"], a["process"]) for name, a in merged["actors"].items()} == {
        "a": ("blocked", "h:2"),
        "b": ("running", "h:1"),
    }
    assert merged["links"] == {"a.out -> b.in": {"depth": 3, "target": "b"}}
    assert merged["dropped"] == 3
    assert not merged["processes"]["h:2"]["gone"]
    later = merge("h:1", own, {"h:2": other}, {"graph": "g"}, now=200.0)
    assert later["processes"]["h:2"]["gone"]


def peer(process: str, time: float, state: str = "running", **actors: Any) -> dict[str, Any]:
    """What process ``process`` published at ``time``: its actors, by name."""
    return {
        "process": process,
        "time": time,
        "state": state,
        "dropped": 0,
        "here": sorted(actors),
        "actors": actors,
        "links": {},
    }


OWN = {"state": "running", "started_at": 0.0, "here": [], "actors": {}, "links": {}}


def test_a_shared_module_shows_the_sum_of_its_instances_and_lists_them() -> None:
    """graph.share: the same module in two processes is one node with both counted."""
    one = {"state": "running", "received": 10, "emitted": 9, "rate": 2.0, "events": []}
    two = {"state": "blocked", "received": 5, "emitted": 5, "rate": 1.5, "events": []}
    peers = {"h:2": peer("h:2", 100.0, s=one), "h:3": peer("h:3", 100.0, s=two)}
    shown = merge("h:1", OWN, peers, {"graph": "g"}, now=101.0)["actors"]["s"]
    assert (shown["received"], shown["emitted"], shown["rate"]) == (15, 14, 3.5)
    assert shown["state"] == "running"
    assert sorted(i["process"] for i in shown["instances"]) == ["h:2", "h:3"]


def test_a_dead_process_never_overrides_a_live_one_and_is_shown_stale() -> None:
    """A process killed a minute ago (its view not yet expired) and its restart: the
    live one is shown, whatever their names sort as; alone, the dead one is stale."""
    dead = peer("vm:9999", 40.0, s={"state": "running", "emitted": 377, "rate": 90.0})
    live = peer("vm:10000", 100.0, s={"state": "running", "emitted": 5000, "rate": 80.0})
    both = merge("vm:1", OWN, {"vm:9999": dead, "vm:10000": live}, {"graph": "g"}, 101.0)
    assert both["actors"]["s"]["process"] == "vm:10000"
    assert both["actors"]["s"]["emitted"] == 5000
    assert not both["actors"]["s"]["stale"]
    assert both["processes"]["vm:9999"]["gone"]
    alone = merge("vm:1", OWN, {"vm:9999": dead}, {"graph": "g"}, 101.0)["actors"]["s"]
    assert alone["stale"]
    assert alone["rate"] is None


def test_a_process_whose_view_expired_is_no_longer_shown() -> None:
    """Views come and go with their keys: chips do not pile up across restarts."""
    board = Board(build(), frozenset({"sensor"}), Tracker(Scripted().watched()), "h:1")
    board.take_peers({"h:2": peer("h:2", 1.0), "h:1": peer("h:1", 1.0)})
    assert set(board.peers) == {"h:2"}
    board.take_peers({"h:3": peer("h:3", 2.0)})
    assert set(board.peers) == {"h:3"}


async def test_a_page_waits_for_the_next_snapshot() -> None:
    script = Scripted(actor(), actor(received=5))
    graph = af.Graph(name="g")
    graph.add("a", Calibrate)
    board = Board(graph, frozenset({"a"}), Tracker(script.watched()), "h:1")
    board.refresh()
    async with trio.open_nursery() as nursery:
        got: list[int] = []

        async def wait() -> None:
            _, snapshot = await board.newer(1)
            got.append(snapshot["actors"]["a"]["received"])

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert not got
        board.refresh()
    assert got == [5]


# -- over HTTP ------------------------------------------------------------------------------


def sse(url: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` snapshots of the event stream at ``url`` (a blocking client,
    run in a thread: httpx's async streams leave generators to the collector on trio)."""
    found: list[dict[str, Any]] = []
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert event == "status"
                found.append(json.loads(line.removeprefix("data: ")))
                if len(found) == count:
                    return found
    raise AssertionError(f"the stream ended after {len(found)} snapshots")


async def test_the_page_its_assets_and_its_data_are_served_from_the_run() -> None:
    """The page and its script come from the package under a policy that allows nothing
    from elsewhere; the layout has every module; the status every actor."""
    graph = build()
    async with af.open_system(graph, dashboard=0) as system:
        url = system.dashboard_url
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            page = await client.get("/")
            assert page.status_code == 200
            assert "default-src 'self'" in page.headers["content-security-policy"]
            assert 'src="static/dashboard.js"' in page.text
            assert "http" not in page.text.replace('charset="utf-8"', "")
            script = await client.get("/static/dashboard.js")
            assert script.status_code == 200
            assert "javascript" in script.headers["content-type"]
            style = await client.get("/static/dashboard.css")
            assert style.status_code == 200
            drawn = (await client.get("/api/layout")).json()
            assert [m["name"] for m in drawn["modules"]] == list(system.actors)
            status = (await client.get("/api/status")).json()
            assert set(status["actors"]) == set(system.actors)
            assert (await client.get("/nothing")).status_code == 404
        system.cancel()


async def test_the_event_stream_sends_snapshots_whose_numbers_move() -> None:
    async with af.open_system(build(), dashboard=0) as system:
        assert system.dashboard_url is not None
        seen = await trio.to_thread.run_sync(sse, system.dashboard_url + "events", 4)
        system.cancel()
    received = [snapshot["actors"]["calibrate"]["received"] for snapshot in seen]
    assert received[-1] > received[0]
    last = seen[-1]
    assert last["graph"] == "dash-demo"
    assert set(last["actors"]) == {"sensor", "calibrate", "parse", "store", "archive"}
    assert last["actors"]["sensor"]["progress"][1] == 100_000
    assert {"depth", "capacity", "fill"} <= set(last["links"]["calibrate.out -> store.in"])


async def test_a_failing_module_has_its_error_on_the_page_but_no_password() -> None:
    """parse keeps failing: its errors, restarts and message reach the page; the password
    in its message (and in the settings' URL) never does."""
    settings = af.Settings(remote_url=f"redis://:{SECRET}@db.internal/0")
    async with af.open_system(build(), settings, dashboard=0) as system:
        assert system.dashboard_url is not None
        async with httpx.AsyncClient(base_url=system.dashboard_url, timeout=10) as client:
            with trio.fail_after(20):
                while True:
                    status = (await client.get("/api/status")).json()
                    if (
                        status["actors"]["parse"]["events"][-1:]
                        and status["actors"]["parse"]["restarts"]
                    ):
                        break
                    await trio.sleep(0.05)
            pages = [status, (await client.get("/api/layout")).json()]
        system.cancel()
    parse = status["actors"]["parse"]
    assert parse["errors"] >= 1
    assert parse["error"].startswith("ValueError: bad reading")
    assert "***" in parse["error"]
    assert any(event["level"] == "error" for event in parse["events"])
    assert SECRET not in json.dumps(pages)


async def test_a_link_added_while_the_graph_runs_is_drawn() -> None:
    """The layout is made again, and snapshots say which drawing they go with, so the
    page knows to fetch it."""
    async with af.open_system(build(), dashboard=0) as system:
        assert system.dashboard_url is not None
        async with httpx.AsyncClient(base_url=system.dashboard_url, timeout=10) as client:
            before = (await client.get("/api/layout")).json()
            await system.add_link("calibrate", "archive")
            with trio.fail_after(10):
                while (await client.get("/api/status")).json()["drawing"] == before["drawing"]:
                    await trio.sleep(0.05)
            after = (await client.get("/api/layout")).json()
        system.cancel()
    assert after["drawing"] == before["drawing"] + 1
    added = {link["name"] for link in after["links"]} - {link["name"] for link in before["links"]}
    assert added == {"calibrate.out -> archive.in"}


async def test_the_dashboard_stops_with_the_system() -> None:
    """Once the block has ended nothing listens any more."""
    async with af.open_system(build(count=20, delay=0.001), dashboard=0) as system:
        url = system.dashboard_url
    assert url is not None
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_without_a_dashboard_there_is_no_url() -> None:
    async with af.open_system(build(count=5, delay=0.001)) as system:
        assert system.dashboard_url is None


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hypercorn: an ImportError that says what to install, before anything runs."""
    monkeypatch.setitem(sys.modules, "hypercorn.trio", None)
    with pytest.raises(ImportError, match=r"actorflow\[dashboard\]"):
        af.run(build(count=5), dashboard=0)


def test_run_serves_one_too() -> None:
    """af.run(..., dashboard=...) from sync code: the run ends as without one."""
    status = af.run(build(count=30, delay=0.0), dashboard="127.0.0.1:0")
    assert status.actors["calibrate"].received == 30


# -- the command line ----------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{CHECKOUT}:{TESTS}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "actorflow", "run", *args, "--no-view"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("web", "error: --dashboard web: dashboard must be [HOST:]PORT, got 'web'"),
        (
            "70000",
            "error: --dashboard 70000: dashboard must be [HOST:]PORT with a port from 0 to 65535,"
            " got '70000'",
        ),
        ("", "error: --dashboard '': dashboard must be [HOST:]PORT, got ''"),
    ],
)
def test_a_bad_dashboard_option_is_one_line_and_exit_2(address: str, said: str) -> None:
    done = cli("dashboard_graph:build", "--dashboard", address)
    assert done.returncode == 2
    assert done.stderr.strip() == said


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        done = cli("dashboard_graph:build", "--dashboard", str(port))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: --dashboard {port}: cannot serve dashboard on 127.0.0.1:{port}: "
        "address already in use (another program listens there)"
    )


def test_the_command_says_where_the_dashboard_is() -> None:
    done = cli("dashboard_graph:build_brief", "--dashboard", "0")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith("dashboard: http://127.0.0.1:")


class Breaking(af.Processor):
    """Passes items on until ``Breaking.broken`` is set, then fails on each."""

    inputs: ClassVar = {"in": af.Data}
    outputs: ClassVar = {"out": af.Data}
    broken = False

    def process(self, data: af.Data) -> af.Data:
        if Breaking.broken:
            raise RuntimeError(f"broken at {data.fields['n']}")
        return data


def sse_to_the_end(url: str, first: threading.Event) -> list[dict[str, Any]]:
    """Every snapshot of the event stream at ``url`` until it ends (``first`` set once
    one has come)."""
    found: list[dict[str, Any]] = []
    with httpx.Client(timeout=20) as client, client.stream("GET", url) as response:
        try:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    found.append(json.loads(line.removeprefix("data: ")))
                    first.set()
        except httpx.RemoteProtocolError:  # closed at the end of the run
            pass
    return found


async def test_a_run_that_fails_by_escalation_shows_it_failed_with_the_error() -> None:
    """The system's nursery is cancelled when a failure escalates: the last snapshot
    still reaches the page, saying ``failed`` with the module's error."""
    graph = af.Graph(name="escalating")
    graph.supervisor(max_restarts=1, period=60)
    graph.add("sensor", Readings, delay=0.005)
    graph.add("bad", Breaking)
    graph.add("store", Store)
    graph.link("sensor", "bad")
    graph.link("bad", "store")
    Breaking.broken = False
    first = threading.Event()
    seen: list[dict[str, Any]] = []
    with pytest.raises(Exception, match="broken at"):
        async with af.open_system(graph, dashboard=0) as system:
            assert system.dashboard_url is not None
            url = system.dashboard_url + "events"

            async def read() -> None:
                seen.extend(await trio.to_thread.run_sync(sse_to_the_end, url, first))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await trio.to_thread.run_sync(first.wait, 20)
                Breaking.broken = True
                await system.wait()
    Breaking.broken = False
    last = seen[-1]
    assert last["state"] == "failed", last["state"]
    bad = last["actors"]["bad"]
    assert bad["errors"] >= 1  # the page draws it red
    assert "broken at" in bad["error"]


async def test_the_view_is_published_to_redis_even_with_a_reporter_named_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No remote_url, a reporter's http URL, the Redis URL on the link: the processes
    meet at the Redis URL, never the reporter's."""
    from actorflow import _observing
    from actorflow._dashboard import _watch

    given: list[str | None] = []

    async def watch(*args: Any, remote_url: str | None, **kwargs: Any) -> None:
        given.append(remote_url)
        kwargs["task_status"].started(None)

    monkeypatch.setattr(_watch, "watch", watch)
    graph = af.Graph(name="meet")
    graph.add("sensor", Readings)
    graph.add("store", Store)
    graph.link("sensor", "store", remote="rediss://db.internal:6380/0")
    system = SimpleNamespace(
        settings=af.Settings(reporters=("http://collector.internal/status",)),
        graph=graph,
        _wiring=SimpleNamespace(pumps=[object()]),
        here=frozenset({"sensor"}),
        started_at=0.0,
        log=None,
        status=None,
        dead_letters=(),
        wait=trio.sleep_forever,  # the watcher is loaded at its first look
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(_observing.watch_system, system, None, trio.Event())
    assert given == ["rediss://db.internal:6380/0"]


_PASSWORDS = st.text(
    st.characters(codec="ascii", categories=("L", "N"), include_characters="-_.~!$*+,"),
    min_size=4,
    max_size=30,
)


@given(password=_PASSWORDS, user=st.sampled_from(["", "u", "admin"]))
def test_an_error_quoting_any_url_shows_no_password(password: str, user: str) -> None:
    """Whatever URL a module's error quotes (nobody told us of it), its password and
    its secret query values are hidden, the rest kept."""
    said = (
        f"cannot reach redis://{user}:{password}@db/0, nor http://{user}:{password}@h:80/x, "
        f"nor https://h/api?token={password}&page=2 (api_key={password}): giving up"
    )
    shown = redact_text(said)
    assert password not in shown
    assert "redis://" in shown
    assert "db/0" in shown
    assert "page=2" in shown
    assert "giving up" in shown


def test_an_error_of_a_megabyte_is_cut_and_its_secrets_hidden() -> None:
    """A huge error (and an event quoting it) reaches the page cut to MAX_SHOWN, with no
    password of a URL it quotes, known or not."""
    script = Scripted(actor(), actor(errors=1), actor(errors=1))
    watched = script.watched()
    tracker = Tracker(watched)
    huge = "x" * 1_000_000 + " from http://admin:hunter22@h/ ?token=abc123xyz"
    script.errors["a"] = huge
    tracker.update(now=1.0)
    view = tracker.update(now=2.0)
    encoded = json.dumps(view)
    assert len(encoded) < 3 * MAX_SHOWN + 5_000
    assert "hunter22" not in encoded
    assert "abc123xyz" not in encoded
    assert view["actors"]["a"]["error"].endswith("?token=***")


@pytest.mark.parametrize("port", ["\uff18\uff10\uff18\uff10", "127.0.0.1:\u0668\u0660", "\u00b9"])
def test_a_port_of_other_digits_than_ascii_is_refused(port: str) -> None:
    with pytest.raises(ValueError, match="dashboard must be"):
        parse_address(port)


async def test_a_dashboard_on_loopback_answers_only_to_its_own_names() -> None:
    """DNS rebinding: a page at evil.example, its name pointed at 127.0.0.1, is refused;
    localhost and the address itself are served."""
    async with af.open_system(build(count=5, delay=0.01), dashboard=0) as system:
        url = system.dashboard_url
        assert url is not None
        port = url.rsplit(":", 1)[1].strip("/")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            answers = {
                host: (await client.get("/api/status", headers={"Host": host})).status_code
                for host in ("evil.example", f"evil.example:{port}", f"localhost:{port}")
            }
            answers["own"] = (await client.get("/api/status")).status_code
        system.cancel()
    assert answers == {
        "evil.example": 400,
        f"evil.example:{port}": 400,
        f"localhost:{port}": 200,
        "own": 200,
    }


def test_once_the_run_has_ended_no_actor_has_a_rate() -> None:
    """A failed run's actors may still be zombies: they no longer move, so no rate."""
    script = Scripted(actor(received=0), actor(received=50), actor(received=90))
    ending = iter([SystemState.RUNNING, SystemState.RUNNING, SystemState.FAILED])
    status = script.status
    script.status = lambda: attrs.evolve(status(), state=next(ending))  # type: ignore[method-assign]
    tracker = Tracker(script.watched())
    tracker.update(now=1.0)
    assert tracker.update(now=2.0)["actors"]["a"]["rate"] is not None
    assert tracker.update(now=3.0)["actors"]["a"]["rate"] is None


class Informs(af.Source):
    """Says what it does with secrets in it, every way set_info takes text."""

    outputs: ClassVar = {"out": int}

    async def start(self) -> Any:
        self.set_info(
            "connect redis://bob:INFOPW1@db/0",
            dsn="postgres://bob:INFOPW2@db/x",
            api_key="INFOPW3",
            note="token=INFOPW4",
        )
        yield 1
        await trio.sleep_forever()


async def test_set_info_secrets_reach_no_page_nor_stream() -> None:
    """The task and fields a module sets are shown with every secret hidden, in the
    status (which the event stream sends too), the layout and the page (they were
    shown verbatim)."""
    graph = af.Graph(name="informs")
    graph.add("src", Informs)
    graph.add("out", af.Outlet)
    graph.link("src", "out")
    async with af.open_system(graph, dashboard=0) as system:
        url = system.dashboard_url
        assert url is not None
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            with trio.fail_after(20):
                while (status := (await client.get("/api/status")).json())["actors"]["src"][
                    "info"
                ] in (None, {}):
                    await trio.sleep(0.05)
            said = json.dumps(status)
            said += (await client.get("/api/layout")).text + (await client.get("/")).text
        system.cancel()
    assert "INFOPW" not in said
    shown = status["actors"]["src"]
    assert shown["task"] == "connect redis://bob:***@db/0"
    assert shown["info"] == {
        "dsn": "postgres://bob:***@db/x",
        "api_key": "***",
        "note": "token=***",
    }
