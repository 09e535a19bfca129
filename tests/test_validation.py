"""Validation: one list of rules for graphs, one for a graph split across processes."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import actorflow as af
from actorflow._validation import GRAPH_RULES, PLACEMENT_RULES, placement_problems


class Numbers(af.Source):
    def start(self) -> Any:
        yield 1


class Ready(af.Processor):
    def process(self, data: Any) -> Any:
        return data


class Collect(af.Sink):
    def consume(self, data: Any) -> None:
        pass


def split_graph(remote: Any = None) -> af.Graph:
    graph = af.Graph("split")
    graph.add("numbers", Numbers)
    graph.add("double", Ready)
    graph.add("sink", Collect)
    graph.link("numbers", "double", remote=remote)
    graph.link("double", "sink")
    return graph


def messages(problems: list[af.GraphProblem]) -> list[str]:
    return [problem.message for problem in problems]


def test_every_rule_is_a_small_named_function() -> None:
    """Each rule is a function of its own, short enough to read at a glance."""
    for rule in (*GRAPH_RULES, *PLACEMENT_RULES):
        assert inspect.isfunction(rule)
        assert len(inspect.getsourcelines(rule)[0]) <= 40, rule.__name__


def test_a_whole_graph_has_no_placement_problem() -> None:
    """Without only=, every module runs here: nothing to place."""
    assert placement_problems(split_graph(), None, None) == []


def test_an_unknown_module_in_only_is_named() -> None:
    """only= naming a module the graph lacks is a problem naming it."""
    found = placement_problems(split_graph(), ["numbers", "ghost"], None)
    assert "only: unknown module 'ghost'" in messages(found)


def test_a_local_link_cannot_cross_processes() -> None:
    """A local link between a module here and one elsewhere must be made remote."""
    found = placement_problems(split_graph(), ["numbers"], None)
    assert messages(found) == [
        "link numbers.out -> double.in joins a module that runs here to one that does "
        "not; make it remote (remote=...) so that it can cross processes"
    ]
    assert (found[0].module, found[0].port) == ("double", "in")


def test_a_remote_link_needs_a_url_from_somewhere() -> None:
    """A remote link with an end here needs its own URL or the settings' remote_url."""
    graph = split_graph(remote=True)
    found = placement_problems(graph, ["numbers"], None)
    assert messages(found) == [
        "link numbers.out -> double.in is remote but names no Redis URL: give it "
        "remote='redis://...' or set Settings.remote_url"
    ]
    assert placement_problems(graph, ["numbers"], "redis://localhost:6379/0") == []


def test_readiness_does_not_cross_processes() -> None:
    """depends_on a source that runs elsewhere is refused."""
    graph = split_graph(remote="redis://localhost:6379/0")
    graph.depends_on("double", "numbers")
    found = placement_problems(graph, ["double", "sink"], None)
    assert messages(found) == [
        "depends_on: 'double' waits for 'numbers', which does not run here; readiness "
        "does not cross processes"
    ]


def test_a_graph_file_asks_the_same_rules(tmp_path: Any) -> None:
    """A graph file's graph problems are Graph.problems, prefixed with 'graph:'."""
    path = tmp_path / "bad.toml"
    path.write_text('[graph]\nname = "bad"\n[modules.sink]\nmodule = "collect"\n')
    entry = af.RegistryEntry("collect", f"{__name__}:Collect", "test")
    with pytest.raises(af.GraphFileError) as caught:
        af.load_graph(path, af.Registry({"collect": entry}))
    problems = caught.value.problems
    graph = af.Graph("bad")
    graph.add("sink", Collect)
    assert problems == tuple(f"graph: {message}" for message in messages(graph.problems()))


# -- module classes ----------------------------------------------------------------------


class Misspelt(af.Processor):
    def proces(self, data: Any) -> Any:
        return data


class NoStart(af.Source):
    pass


class MisspeltTag(af.Tag):
    def tags(self, data: Any) -> Any:
        return {}


class MisspeltStepper(af.Progressive):
    def run_steps(self, run_number: int, step_size: int, quantum: float) -> af.Step:
        return af.Step(af.StepState.TERMINATED)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (
            Misspelt,
            "does not define process(), which a processor must; did you mean to name "
            "proces() process()?",
        ),
        (NoStart, "does not define start(), which a source must"),
        (
            MisspeltTag,
            "does not define tag(), which a processor must; did you mean to name tags() tag()?",
        ),
        (
            MisspeltStepper,
            "does not define run_step(), which a progressive must; did you mean "
            "to name run_steps() run_step()?",
        ),
    ],
)
def test_a_required_hook_not_overridden_is_a_graph_problem(cls: type, expected: str) -> None:
    graph = af.Graph()
    graph.add("m", cls)
    found = [p.message for p in graph.problems() if p.module == "m"]
    assert f"module 'm': {cls.__qualname__} {expected}" in found
    with pytest.raises(af.GraphError, match=r"did you mean|which a source must"):
        graph.validate()


def test_a_misspelt_module_or_port_name_gets_its_close_match_from_python_too() -> None:
    """The hint is part of the problem itself, not added by the graph-file loader."""
    graph = af.Graph()
    graph.add("readings", Numbers)
    graph.add("store", Collect, into=[])
    graph.link("readings", "stor")
    graph.link("readings.outt", "store")
    graph.supervise("reading")
    messages = [problem.message for problem in graph.problems()]
    assert any("unknown module 'stor' (did you mean 'store'?)" in m for m in messages), messages
    assert any("port 'outt'" in m and "(did you mean 'out'?)" in m for m in messages), messages
    assert any("supervise: unknown module 'reading'" in m and "'readings'" in m for m in messages)
