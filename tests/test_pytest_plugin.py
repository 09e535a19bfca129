"""The pytest plugin, loaded as users get it: through the ``pytest11`` entry point of the
installed package, in a pytest run of its own."""

from __future__ import annotations

import importlib.metadata
import os
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def declared_plugin() -> tuple[str, str]:
    """The pytest11 entry point pyproject.toml declares, as (name, module)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    ((name, module),) = project["entry-points"]["pytest11"].items()
    return name, module


@pytest.fixture
def installed(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> pytest.Pytester:
    """A pytester whose runs find the plugin by its entry point. The package is installed
    in development mode, whose metadata may predate the entry point: then the metadata
    an installation writes (an ``entry_points.txt``) is put on the path, as pip would."""
    name, module = declared_plugin()
    found = importlib.metadata.entry_points(group="pytest11", name=name)
    if not any(entry.value == module for entry in found):
        site = tmp_path_factory.mktemp("site")
        info = site / "actorflow_plugin-0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: actorflow-plugin\nVersion: 0\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(f"[pytest11]\n{name} = {module}\n", "utf-8")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    pytester.makeini("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    return pytester


TESTS = """
from typing import ClassVar

import trio
import actorflow as af
from actorflow.testing import Feed, Recorder, wait_until


class Poll(af.Source):
    outputs: ClassVar = {"out": int}

    def __init__(self, interval):
        self.interval = interval
        self.stopping = trio.Event()

    async def start(self):
        n = 0
        while self.active:
            await self.emit(n)
            n += 1
            with trio.move_on_after(self.interval):
                await self.stopping.wait()

    def stop(self):
        self.stopping.set()


class Crash(af.Processor):
    def process(self, data):
        raise RuntimeError("crashed on " + str(data))


def polling():
    graph = af.Graph(name="polling")
    graph.add("poll", Poll, interval=60)
    graph.add("seen", Recorder)
    graph.link("poll", "seen")
    return graph


async def test_the_clock_is_virtual(actorflow_clock):
    start = trio.current_time()
    await trio.sleep(3600)
    assert trio.current_time() - start == 3600
    assert trio.lowlevel.current_clock() is actorflow_clock


async def test_a_system_runs_for_the_test(actorflow_clock, actorflow_system):
    system = await actorflow_system(polling())
    await wait_until(lambda: len(actorflow_system.recorded("seen").items) == 3, timeout=600)
    assert actorflow_system.recorded("seen").items == [0, 1, 2]
    assert actorflow_system.recorded("seen").times == [0, 60, 120]
    assert system.status().state is af.SystemState.RUNNING


async def test_a_failing_system_fails_the_test(actorflow_clock, actorflow_system):
    graph = af.Graph(name="crashing")
    graph.add("numbers", Feed, items=[0, 1, 2])
    graph.add("crash", Crash)
    graph.link("numbers", "crash")
    await actorflow_system(graph)
    await trio.sleep(3600)
"""


def test_the_fixtures_work_in_a_users_test_run(installed: pytest.Pytester) -> None:
    """A virtual clock, a system that runs for the test, and a failing system that
    fails the test with its error, all from the plugin's entry point alone."""
    installed.makepyfile(test_user=TESTS)
    result = installed.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_a_failing_system_fails_the_test FAILED*"])
    result.stdout.fnmatch_lines(
        [
            "*EscalationError: module 'crash' failed in run: supervisor *crashed on 1*",
            "FAILED test_user.py::test_a_failing_system_fails_the_test - EscalationError*",
        ]
    )


def test_the_fixtures_are_listed_with_their_docstrings(installed: pytest.Pytester) -> None:
    """``pytest --fixtures`` shows both, with what they are for."""
    installed.makepyfile(test_empty="def test_nothing():\n    pass\n")
    result = installed.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*actorflow_clock -- *_pytest_plugin.py*",
            "*virtual clock*",
            "*actorflow_system -- *_pytest_plugin.py*",
            "*Starts graphs*",
        ]
    )


def test_the_plugin_can_be_turned_off(installed: pytest.Pytester) -> None:
    """``-p no:actorflow`` leaves the fixtures out, under the entry point's name."""
    installed.makepyfile(test_off="def test_uses(actorflow_clock):\n    pass\n")
    result = installed.runpytest_subprocess("-p", "no:actorflow", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'actorflow_clock' not found*"])


def test_the_clock_refuses_a_test_pytest_trio_does_not_run(installed: pytest.Pytester) -> None:
    """An async test run by another runner (anyio here) would ignore the clock and run
    on real time: the fixture says so instead."""
    installed.makeini("[pytest]\nfilterwarnings = error\n")
    installed.makepyfile(
        test_other="""
import pytest
import trio

@pytest.fixture
def anyio_backend():
    return "trio"

@pytest.mark.anyio
async def test_elsewhere(actorflow_clock):
    await trio.sleep(3600)

@pytest.mark.trio
async def test_marked(actorflow_clock):
    await trio.sleep(3600)

def test_sync(actorflow_clock):
    async def main():
        await trio.sleep(3600)
    trio.run(main, clock=actorflow_clock)
"""
    )
    result = installed.runpytest_subprocess("-p", "no:cacheprovider", "--timeout", "60")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*actorflow_clock needs pytest-trio to run the test*"])
