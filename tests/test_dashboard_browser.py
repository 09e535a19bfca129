"""The dashboard end to end, in a real headless Chromium driven through selenium: what a
person opening the page sees while the graph runs.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without
them these tests skip, saying so, unless ``ACTORFLOW_REQUIRE_BROWSER`` is set (CI), where
they fail instead. With ``ACTORFLOW_SCREENSHOTS=DIR`` they save what they saw there (the
docs' pictures are taken this way).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import trio
from dashboard_graph import SECRET, Calibrate, Readings, Store, build
from test_dashboard_processes import split  # noqa: F401 - a fixture

import actorflow as af
from actorflow._dashboard._layout import NODE_WIDTH

if os.environ.get("ACTORFLOW_REQUIRE_BROWSER"):
    from selenium import webdriver  # CI: a missing selenium fails, never skips
else:
    webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _missing() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium chromium-driver)"
    if CHROMEDRIVER is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's tests, its console kept."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("ACTORFLOW_REQUIRE_BROWSER"):
            pytest.fail(f"ACTORFLOW_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,840",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Callable[[Any], T], seconds: float = 20) -> T:
    """Poll the page until ``condition`` holds (a deadline, never a fixed sleep)."""
    waiting = WebDriverWait(
        driver, seconds, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    result: T = waiting.until(condition)
    return result


def texts(driver: Any, selector: str) -> list[str]:
    """The text of every element ``selector`` finds, read at one instant (the page
    rebuilds its side panel and header at every snapshot: an element found a moment
    ago may be gone)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector
    )
    return found


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def node(driver: Any, name: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'g.node[data-actor="{name}"]')


def first_line(driver: Any, name: str) -> str:
    """The first line of numbers on ``name``'s box: rate, in, out."""
    text: str = node(driver, name).find_elements(By.CSS_SELECTOR, "text.line")[0].text
    return text


def received(driver: Any, name: str) -> int:
    """The ``in N`` count on ``name``'s box."""
    line = first_line(driver, name)
    found = re.search(r"in ([\d,]+)", line)
    assert found is not None, line
    return int(found.group(1).replace(",", ""))


def screenshot(driver: Any, name: str) -> None:
    where = os.environ.get("ACTORFLOW_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(where) / name))


def open_page(driver: Any, url: str) -> None:
    """Open ``url`` with a clean console (what an earlier page logged is dropped)."""
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get(url)


def look(driver: Any, url: str, actors: tuple[str, ...]) -> dict[str, Any]:
    """Open the page and check what a person would: every actor drawn with a state,
    numbers that move, parse red with its error, its events on a click, no console
    error, no password; what was seen."""
    driver.set_window_size(1440, 840)
    open_page(driver, url)
    wait_for(driver, lambda d: d.find_element(By.ID, "connection").text == "live")
    drawn = {
        g.get_attribute("data-actor") for g in driver.find_elements(By.CSS_SELECTOR, "g.node")
    }
    assert drawn == set(actors)
    wait_for(
        driver, lambda d: all(node(d, a).get_attribute("data-state") != "unknown" for a in actors)
    )
    first = received(driver, "calibrate")
    wait_for(driver, lambda d: received(d, "calibrate") > first + 20)
    parse = wait_for(
        driver,
        lambda d: "failed" in (node(d, "parse").get_attribute("class") or "") and node(d, "parse"),
    )
    error = parse.find_element(By.CSS_SELECTOR, "text.error").text
    stroke = parse.find_element(By.CSS_SELECTOR, "rect.card").value_of_css_property("stroke")
    parse.click()
    events = wait_for(driver, lambda d: texts(d, "#events li.error"))
    title = texts(driver, "#detail h2")[0]
    screenshot(driver, "dashboard.png")
    return {
        "error": error,
        "stroke": stroke,
        "events": events,
        "title": title,
        "console": console_errors(driver),
        "source": driver.page_source,
        "state": driver.find_element(By.ID, "system-state").text,
    }


async def test_the_page_shows_the_running_graph_live(browser: Any) -> None:
    """Every actor, numbers that move without a reload, a failing module in red with its
    error, its recent events on a click, a link added while it runs, and not one
    console error."""
    settings = af.Settings(remote_url=f"redis://:{SECRET}@db.internal/0")
    async with af.open_system(build(count=2000), settings, dashboard=0) as system:
        assert system.dashboard_url is not None
        try:
            seen = await trio.to_thread.run_sync(
                look, browser, system.dashboard_url, system.actors
            )
            await system.add_link("calibrate", "archive")
            added = await trio.to_thread.run_sync(
                drawn_link, browser, "calibrate.out -> archive.in"
            )
        finally:
            system.cancel()
    assert added == []  # a link added while it runs is drawn, without a console error
    assert seen["console"] == []
    assert seen["error"].startswith("ValueError: bad reading")
    assert seen["stroke"] == "rgb(214, 51, 108)"  # the page's red
    assert seen["title"] == "parse"
    said = re.compile(r"errors?(, the last)?: ValueError: bad reading")
    assert any(said.search(event) for event in seen["events"]), seen["events"]
    assert seen["state"] == "running"
    assert SECRET not in seen["source"]


def drawn_link(driver: Any, name: str) -> list[dict[str, Any]]:
    """Wait for the link ``name`` to be drawn (no reload); the console errors since."""
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'g.edge[data-link="{name}"]'))
    return console_errors(driver)


def watch_end(driver: Any, url: str) -> tuple[str, list[dict[str, Any]]]:
    open_page(driver, url)
    wait_for(driver, lambda d: d.find_element(By.ID, "connection").text == "live")
    state = wait_for(
        driver,
        lambda d: (t := d.find_element(By.ID, "system-state").text) in ("done", "failed") and t,
    )
    return state, console_errors(driver)


async def test_the_page_shows_how_the_run_ended(browser: Any) -> None:
    """A graph that ends by itself: its last snapshot (done, every actor terminated)
    reaches the page before the server goes."""
    graph = build(count=400, delay=0.004)
    async with af.open_system(graph, dashboard=0) as system:
        assert system.dashboard_url is not None
        with trio.fail_after(40):
            state, console = await trio.to_thread.run_sync(
                watch_end, browser, system.dashboard_url
            )
    assert state == "done"
    assert console == []
    try:
        states = {
            browser.execute_script("return arguments[0].dataset.state", node(browser, name))
            for name in system.actors
        }
    except WebDriverException as exc:  # pragma: no cover - the page went with the server
        pytest.fail(f"the page could not be read after the end: {exc}")
    assert states == {"terminated"}


def look_at_split(driver: Any, url: str) -> dict[str, Any]:
    driver.set_window_size(1440, 640)
    open_page(driver, url)
    wait_for(driver, lambda d: len(texts(d, "#processes .process")) == 2)
    # The other process's numbers arrive, its rate (two reports apart) too.
    wait_for(driver, lambda d: re.match(r"[\d.]+k?/s", first_line(d, "sensor")))
    first = received(driver, "calibrate")
    wait_for(driver, lambda d: received(d, "calibrate") > first)
    node(driver, "calibrate").click()
    wait_for(driver, lambda d: texts(d, "#events li"))
    screenshot(driver, "dashboard-processes.png")
    return {
        "where": {
            name: node(driver, name).find_element(By.CSS_SELECTOR, "text.where").text
            for name in ("sensor", "calibrate", "store")
        },
        "remote": [
            g.get_attribute("data-link")
            for g in driver.find_elements(By.CSS_SELECTOR, "g.edge.remote")
        ],
        "chips": texts(driver, "#processes .process"),
        "console": console_errors(driver),
    }


def test_one_page_shows_a_graph_split_over_two_processes(
    browser: Any,
    split: dict[str, Any],  # noqa: F811 - the fixture imported above
) -> None:
    """The dashboard of the consumers' process draws the producer's actor too, says which
    process runs each, and draws the remote link as one."""
    seen = look_at_split(browser, split["url"])
    producer, consumer = split["producer"].pid, split["consumer"].pid
    assert seen["where"]["sensor"].startswith("process ")
    assert seen["where"]["sensor"].endswith(f":{producer}")
    assert seen["where"]["calibrate"].startswith("here ")
    assert seen["where"]["calibrate"].endswith(f":{consumer}")
    assert seen["remote"] == ["sensor.out -> calibrate.in"]
    assert len(seen["chips"]) == 2
    assert seen["console"] == []


def look_at_odd_names(driver: Any, url: str, names: tuple[str, ...]) -> dict[str, Any]:
    open_page(driver, url)
    wait_for(driver, lambda d: d.find_element(By.ID, "connection").text == "live")
    wait_for(driver, lambda d: node(d, "store").get_attribute("data-state") != "unknown")
    for name in names:
        node(driver, name).click()
    return {
        "states": {n: node(driver, n).get_attribute("data-state") for n in names},
        "where": {
            n: node(driver, n).find_element(By.CSS_SELECTOR, "text.where").text for n in names
        },
        "title": texts(driver, "#detail h2"),
        "console": console_errors(driver),
    }


async def test_modules_named_like_what_every_object_has_are_drawn_as_any_other(
    browser: Any, redis_server: Any
) -> None:
    """``constructor``, ``__proto__``, ``toString``, ``hasOwnProperty`` running elsewhere
    (not reported here): shown as such, not as Object.prototype's members."""
    odd = ("constructor", "__proto__", "toString", "hasOwnProperty")
    graph = af.Graph(name=f"odd-{os.getpid()}")
    graph.add("hasOwnProperty", Readings)
    graph.add("constructor", Calibrate)
    graph.add("__proto__", Calibrate)
    graph.add("toString", Calibrate)
    graph.add("store", Store)
    graph.link("hasOwnProperty", "constructor")
    graph.link("constructor", "__proto__")
    graph.link("__proto__", "toString")
    graph.link("toString", "store", remote=True)
    settings = af.Settings(remote_url=redis_server.url)
    async with af.open_system(graph, settings, dashboard=0, only=["store"]) as system:
        assert system.dashboard_url is not None
        try:
            seen = await trio.to_thread.run_sync(
                look_at_odd_names, browser, system.dashboard_url, odd
            )
        finally:
            system.cancel()
    assert seen["console"] == []
    assert seen["states"] == dict.fromkeys(odd, "unknown")
    assert set(seen["where"].values()) == {"not reported here"}
    assert seen["title"] == ["hasOwnProperty"]


class Looping(af.Processor):
    """Fed back by itself: its ``loop`` output feeds its ``back`` input."""

    inputs: ClassVar = {"in": af.Data, "back": af.Data}
    outputs: ClassVar = {"out": af.Data, "loop": af.Data}

    def process(self, data: af.Data) -> af.Data:
        return data


def build_large(length: int = 200) -> af.Graph:
    """A chain of ``length`` modules, and a module fed back by itself."""
    graph = af.Graph(name="large")
    graph.add("m0", Readings, count=50)
    for n in range(1, length):
        graph.add(f"m{n}", Calibrate)
        graph.link(f"m{n - 1}", f"m{n}")
    graph.add("loop", Looping)
    graph.link("m0", "loop")
    graph.link("loop.loop", "loop.back", feedback=True)
    graph.add("end", Store)
    graph.link("loop", "end")
    return graph


def look_at_large(driver: Any, url: str) -> dict[str, Any]:
    driver.set_window_size(1440, 840)
    open_page(driver, url)
    wait_for(
        driver, lambda d: d.find_element(By.ID, "connection").text in ("live", "the run has ended")
    )
    size = "return arguments[0].getBoundingClientRect()"
    width = driver.execute_script(size + ".width", node(driver, "m1"))
    loop = driver.find_element(By.CSS_SELECTOR, 'g.edge[data-link="loop.loop -> loop.back"] path')
    arc = driver.execute_script("return arguments[0].getBBox()", loop)
    level = driver.find_element(By.ID, "zoom-level").text
    canvas = driver.find_element(By.ID, "canvas")
    driver.execute_script(
        "const c = arguments[0], r = c.getBoundingClientRect();"
        "c.dispatchEvent(new WheelEvent('wheel', {deltaY: -300, clientX: r.left + 200,"
        " clientY: r.top + 200, cancelable: true, bubbles: true}))",
        canvas,
    )
    zoomed = driver.find_element(By.ID, "zoom-level").text
    world = driver.find_element(By.ID, "world")
    before = world.get_attribute("transform")
    ActionChains(driver).move_to_element_with_offset(canvas, 0, 0).click_and_hold().move_by_offset(
        -150, -40
    ).release().perform()
    panned = world.get_attribute("transform")
    driver.find_element(By.ID, "zoom-fit").click()
    screenshot(driver, "dashboard-large.png")
    return {
        "width": width,
        "arc": arc,
        "level": level,
        "zoomed": zoomed,
        "moved": before != panned,
        "fitted": driver.find_element(By.ID, "zoom-level").text,
        "console": console_errors(driver),
    }


async def test_a_large_graph_stays_readable_and_can_be_panned_and_zoomed(browser: Any) -> None:
    """200 modules in a chain: fitted no smaller than a readable scale (the rest is
    reached by panning); the wheel zooms, a drag pans, "fit" goes back; a module fed back
    by itself is drawn as an arc, not a line."""
    async with af.open_system(build_large(), dashboard=0) as system:
        assert system.dashboard_url is not None
        try:
            seen = await trio.to_thread.run_sync(look_at_large, browser, system.dashboard_url)
        finally:
            system.cancel()
    assert seen["console"] == []
    assert seen["width"] >= 0.6 * NODE_WIDTH - 1, seen["width"]
    assert seen["arc"]["width"] > 30, seen["arc"]
    assert seen["arc"]["height"] > 30, seen["arc"]
    assert seen["level"] == "60%"
    assert int(seen["zoomed"].rstrip("%")) > 60
    assert seen["moved"]
    assert seen["fitted"] == "60%"


_SERVE = """
import sys, trio, actorflow as af
graph = af.Graph(name=sys.argv[1])
graph.add(sys.argv[2] + "_in", af.Inlet)
graph.add(sys.argv[2] + "_out", af.Outlet)
graph.link(sys.argv[2] + "_in", sys.argv[2] + "_out")
async def main():
    async with af.open_system(graph, dashboard=int(sys.argv[3])) as system:
        print(system.dashboard_url, flush=True)
        await trio.sleep_forever()
trio.run(main)
"""


def serve_until_killed(name: str, prefix: str, port: int) -> subprocess.Popen[str]:
    """A process serving a dashboard of ``inlet -> outlet`` on ``port``, until killed
    (so no last snapshot tells the page the run has ended)."""
    served = subprocess.Popen(
        [sys.executable, "-c", _SERVE, name, prefix, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(af.__file__).parent.parent)},
    )
    assert served.stdout is not None
    assert served.stdout.readline().startswith("http://")  # serving (or failed: empty)
    return served


def drawn_actors(driver: Any) -> set[str]:
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('g.node')].map(g => g.dataset.actor)"
    )
    return set(found)


def free_port() -> int:
    """A port nothing listens on now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def page_of_a_killed_run(browser: Any, prefix: str) -> int:
    """Open the page of a run (``prefix``_in -> ``prefix``_out) on a free port, wait
    until it is drawn, then kill its server; the port."""
    port = free_port()
    with serve_until_killed("first", prefix, port) as first:
        try:
            open_page(browser, f"http://127.0.0.1:{port}/")
            wait_for(browser, lambda d: drawn_actors(d) == {f"{prefix}_in", f"{prefix}_out"})
        finally:
            first.kill()
            first.wait()
    return port


def test_a_page_that_outlives_its_server_draws_the_next_run_on_its_port(browser: Any) -> None:
    """The server is killed and another graph served on the same port: the open page
    reconnects and draws the new graph (both are drawing 1 of their run), not the old
    one as if it were live."""
    port = page_of_a_killed_run(browser, "a")
    wait_for(browser, lambda d: d.find_element(By.ID, "connection").text != "live")
    with serve_until_killed("second", "b", port) as second:
        try:
            wait_for(browser, lambda d: drawn_actors(d) == {"b_in", "b_out"}, seconds=40)
            name = browser.find_element(By.ID, "graph-name").text
            live = browser.find_element(By.ID, "connection").text
        finally:
            second.kill()
    assert name == "second"
    assert live == "live"


def build_fan(sinks: int) -> af.Graph:
    """One source fanning out to ``sinks`` sinks, two of them with long, wide names."""
    graph = af.Graph(name="fan")
    graph.add("src", af.Inlet)
    names = ["W" * 60, "日本語モジュール" * 6] + [f"s{i}" for i in range(sinks - 2)]
    for name in names:
        graph.add(name, af.Outlet)
        graph.link("src", name)
    return graph


def look_at_fan(driver: Any, url: str) -> dict[str, Any]:
    driver.set_window_size(1440, 840)
    open_page(driver, url)
    wait_for(driver, lambda d: d.find_element(By.ID, "connection").text == "live")
    seen: dict[str, Any] = driver.execute_script(
        """
        const canvas = document.getElementById("canvas").getBoundingClientRect();
        const source = document.querySelector('g.node[data-actor="src"] rect.card')
          .getBoundingClientRect();
        const overlaps = [...document.querySelectorAll("g.node")].slice(0, 3).map((g) => {
          const name = g.querySelector("text.name").getBoundingClientRect();
          const pill = g.querySelector("rect.pill").getBoundingClientRect();
          return name.right > pill.left;
        });
        return {
          sourceShown: source.top >= canvas.top && source.bottom <= canvas.bottom
            && source.left >= canvas.left && source.right <= canvas.right,
          overlaps,
          names: [...document.querySelectorAll("g.node text.name")].slice(0, 3)
            .map((t) => t.textContent),
        };
        """
    )
    seen["console"] = console_errors(driver)
    screenshot(driver, "dashboard-fan.png")
    return seen


async def test_a_wide_fan_opens_on_its_source_and_long_names_stop_before_the_badge(
    browser: Any,
) -> None:
    """300 sinks stacked in one layer: the first view shows the source (halfway down
    its column), not just the top of the drawing; a long name of wide letters is cut
    with an ellipsis before the state badge, not drawn under it."""
    async with af.open_system(build_fan(300), dashboard=0) as system:
        assert system.dashboard_url is not None
        try:
            seen = await trio.to_thread.run_sync(look_at_fan, browser, system.dashboard_url)
        finally:
            system.cancel()
    assert seen["console"] == []
    assert seen["sourceShown"]
    assert seen["overlaps"] == [False, False, False]
    assert seen["names"][0] == "src"
    assert all(name.endswith("…") for name in seen["names"][1:]), seen["names"]


class _NotAStream:
    """A server on a port that answers every request with a 503 page (a server still
    starting, another program's), counting the requests for ``/events``; with
    ``page=True`` it serves the dashboard's page and its script (what a server that
    went, or is only starting, leaves a page with) but nothing else; with
    ``silent=True`` it never answers the page's questions (``/api/...``) until closed."""

    def __init__(self, port: int, page: bool = False, silent: bool = False) -> None:
        import http.server
        import threading

        from actorflow._dashboard._server import STATIC

        asked = self.asked = threading.Event()
        closed = self.closed = threading.Event()

        class Refuse(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/events"):
                    asked.set()
                served = {"/": "index.html", "/static/dashboard.js": "dashboard.js"}
                if page and self.path in served:
                    body = (STATIC / served[self.path]).read_bytes()
                    kind = "text/html" if self.path == "/" else "text/javascript"
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if silent and self.path.startswith("/api/"):
                    closed.wait(60)  # holds the question unanswered
                self.send_response(503)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"starting")

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Refuse)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_a_page_whose_stream_was_refused_once_draws_the_next_run(browser: Any) -> None:
    """The browser gives up on an event stream for good when an answer is not one (a
    503 from something else on the port meanwhile): the page listens again by itself
    and draws the run served there next."""
    port = page_of_a_killed_run(browser, "c")
    refusing = _NotAStream(port)
    try:
        assert refusing.asked.wait(30), "the page never asked for its stream again"
    finally:
        refusing.close()
    assert connection_once_drawn(browser, port, "d") == "live"


def connection_once_drawn(browser: Any, port: int, prefix: str) -> str:
    """Serve a run (``prefix``_in -> ``prefix``_out) on ``port`` until the open page has
    drawn it; what the page then says of its connection."""
    with serve_until_killed("next", prefix, port) as served:
        try:
            wanted = {f"{prefix}_in", f"{prefix}_out"}
            wait_for(browser, lambda d: drawn_actors(d) == wanted, seconds=40)
            return str(browser.find_element(By.ID, "connection").text)
        finally:
            served.kill()


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "unanswered"])
def test_a_page_whose_first_questions_failed_listens_and_draws_the_run_that_comes(
    browser: Any, silent: bool
) -> None:
    """The page loads but its layout and first status are refused (its server went
    right after the page, or is only starting), or never answered (a server stopped,
    or stuck starting: given up after a few seconds): it listens all the same, and
    draws the run served on the port next (it waited for ever; the refused case found
    by CI)."""
    port = free_port()
    refusing = _NotAStream(port, page=True, silent=silent)
    try:
        open_page(browser, f"http://127.0.0.1:{port}/")
        assert refusing.asked.wait(30), "the page never asked for its stream"
    finally:
        refusing.close()
    assert connection_once_drawn(browser, port, "e") == "live"
