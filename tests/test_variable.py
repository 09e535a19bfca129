"""Variable modules: values set by the host while the graph runs flow downstream."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from sample_modules import Collect

import actorflow as af


class Scale(af.Processor):
    def process(self, data: float) -> float:
        return data * 10


def variable_graph(out: list[Any], **config: Any) -> af.Graph:
    graph = af.Graph()
    graph.add("threshold", af.Variable, **config)
    graph.add("scale", Scale)
    graph.add("sink", Collect, into=out)
    graph.chain("threshold", "scale", "sink")
    return graph


async def test_each_set_emits_the_new_value_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The initial value and every value set from the host go downstream, in order."""
    out: list[float] = []
    async with af.open_system(variable_graph(out, initial=1.0)) as system:
        await system.set("threshold", 2.5)
        await system.set("threshold", 4.0)
        await trio.sleep(1)
        assert out == [10.0, 25.0, 40.0]
        module = system._actors["threshold"].module
        assert isinstance(module, af.Variable)
        assert module.value == 4.0
        await system.stop()
    assert system.status().actors["threshold"].reason == "stopped"
    assert system.status().state is af.SystemState.DONE


async def test_set_waits_when_too_many_values_are_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With `pending` values queued and a stuck consumer, set() waits (backpressure)."""
    release = trio.Event()

    class Stuck(af.Sink):
        async def consume(self, data: Any) -> None:
            await release.wait()

    graph = af.Graph()
    graph.add("v", af.Variable, pending=2)
    graph.add("sink", Stuck)
    graph.link("v", "sink", buffer=1)
    async with af.open_system(graph) as system:
        accepted = 0
        with trio.move_on_after(5):
            for n in range(100):
                await system.set("v", n)
                accepted += 1
        # One in the sink's hand, one in the link, one in the variable's, two queued.
        assert accepted == 5
        release.set()
        await system.stop()


async def test_setting_a_module_that_is_not_a_variable_names_it() -> None:
    """system.set() on another kind of module, or an unknown one, is a clear error."""
    async with af.open_system(variable_graph([])) as system:
        with pytest.raises(TypeError, match="module 'scale' is a Scale, not a Variable"):
            await system.set("scale", 1)
        with pytest.raises(KeyError, match="no module 'nope'"):
            await system.set("nope", 1)
        await system.stop()
    with pytest.raises(RuntimeError, match="variable 'threshold' has stopped"):
        await system.set("threshold", 1)


class Thermostat(af.Sink):
    """Raises the 'setpoint' variable whenever a reading is too cold."""

    async def consume(self, data: float) -> None:
        if data < 18:
            await self.set_variable("setpoint", 21.0)


async def test_a_module_can_set_a_variable(autojump_clock: trio.testing.MockClock) -> None:
    """Another module sets a variable through the same path as the host."""
    out: list[Any] = []
    graph = af.Graph()
    graph.add("readings", af.Variable)
    graph.add("thermostat", Thermostat)
    graph.add("setpoint", af.Variable, initial=19.0)
    graph.add("heater", Collect, into=out)
    graph.link("readings", "thermostat")
    graph.link("setpoint", "heater")
    async with af.open_system(graph) as system:
        await system.set("readings", 17.0)
        await trio.sleep(1)
        assert out == [19.0, 21.0]
        await system.stop()
