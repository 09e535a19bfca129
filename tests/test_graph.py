"""Building a graph and validating it as a whole."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow import CopyPolicy, Graph, GraphError, GraphProblem, LinkSpec, Port


class Shape(Protocol):
    """A protocol that is not runtime-checkable."""

    sides: int


class Ints(af.Source):
    """Produces ints on ``out``."""

    outputs: ClassVar = {"out": int}

    def start(self) -> Iterable[int]:
        return range(3)


class Strs(af.Source):
    """Produces strs on ``out``."""

    outputs: ClassVar = {"out": str}

    def start(self) -> Iterable[str]:
        return ["a"]


class Double(af.Processor):
    """Turns ints into ints."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data * 2


class Split(af.Processor):
    """Sends ints to ``even`` or ``odd``."""

    inputs: ClassVar = {"in": int}
    outputs: ClassVar = {"even": int, "odd": int}

    def process(self, data: int) -> None:
        return None


class Merge(af.Processor):
    """Takes ints on ``left`` (required) and ``right`` (optional)."""

    inputs: ClassVar = {"left": int, "right": Port(int, required=False)}
    outputs: ClassVar = {"out": int}

    def process(self, data: int) -> int:
        return data


class IntSink(af.Sink):
    """Consumes ints."""

    inputs: ClassVar = {"in": int}

    def consume(self, data: int) -> None:
        pass


class StrSink(af.Sink):
    """Consumes strs."""

    inputs: ClassVar = {"in": str}

    def consume(self, data: str) -> None:
        pass


class AnySink(af.Sink):
    """Consumes anything (the default ``object`` port)."""

    def consume(self, data: Any) -> None:
        pass


class OptionalSink(af.Sink):
    """Has only an optional input port."""

    inputs: ClassVar = {"in": Port(int, required=False)}

    def consume(self, data: int) -> None:
        pass


class ShapeSink(af.Sink):
    """Accepts a non-runtime-checkable protocol."""

    inputs: ClassVar = {"in": Shape}

    def consume(self, data: Shape) -> None:
        pass


class BadPortName(af.Sink):
    """Declares an input port whose name contains a dot."""

    inputs: ClassVar = {"in.x": int}

    def consume(self, data: int) -> None:
        pass


class NotAModule:
    """A class that is not an actorflow module."""


def problems_of(graph: Graph) -> tuple[GraphProblem, ...]:
    """The problems ``graph.validate()`` raised, asserting that it did raise."""
    with pytest.raises(GraphError) as caught:
        graph.validate()
    assert caught.value.problems == tuple(graph.problems())
    return caught.value.problems


def only_problem(graph: Graph) -> tuple[GraphProblem, str]:
    """The single problem of ``graph`` and the full GraphError message."""
    with pytest.raises(GraphError) as caught:
        graph.validate()
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0], str(caught.value)


def chain_graph() -> Graph:
    """``numbers -> double -> sink``, a valid graph."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("double", Double)
    graph.add("sink", IntSink)
    return graph


# -- building ----------------------------------------------------------------------------


def test_valid_chain_validates_without_problems() -> None:
    """A chain whose port types match has no problems and validates."""
    graph = chain_graph()
    graph.chain("numbers", "double", "sink")
    assert graph.problems() == []
    graph.validate()


def test_add_returns_the_name_and_records_the_config() -> None:
    """``add`` returns the module name and keeps its class and config in order."""
    graph = Graph()
    assert graph.add("numbers", Ints, count=3) == "numbers"
    graph.add("sink", IntSink)
    assert [m.name for m in graph.modules] == ["numbers", "sink"]
    assert graph.modules[0].factory is Ints
    assert graph.modules[0].config == {"count": 3}
    assert graph.modules[1].config == {}


def test_bare_link_defaults_to_out_and_in_ports() -> None:
    """``link("a", "b")`` links the ``out`` port of a to the ``in`` port of b."""
    graph = chain_graph()
    spec = graph.link("numbers", "double")
    assert (spec.source, spec.source_port, spec.target, spec.target_port) == (
        "numbers",
        "out",
        "double",
        "in",
    )
    assert graph.links == (spec,)


def test_dotted_endpoint_addresses_a_named_port() -> None:
    """``"module.port"`` names a port on either side of a link."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("split", Split)
    graph.add("merge", Merge)
    graph.add("sink", IntSink)
    graph.link("numbers", "split")
    even = graph.link("split.even", "merge.left")
    odd = graph.link("split.odd", "merge.right")
    graph.link("merge", "sink")
    assert (even.source_port, even.target_port) == ("even", "left")
    assert (odd.source_port, odd.target_port) == ("odd", "right")
    graph.validate()


def test_chain_links_each_endpoint_to_the_next_with_shared_options() -> None:
    """``chain`` makes one link per consecutive pair, all with the given options."""
    graph = chain_graph()
    specs = graph.chain("numbers", "double", "sink", buffer=4, copy="none")
    assert [s.name for s in specs] == ["numbers.out -> double.in", "double.out -> sink.in"]
    assert all(s.buffer == 4 and s.copy is CopyPolicy.NONE for s in specs)
    assert graph.links == tuple(specs)


def test_chain_of_one_endpoint_makes_no_links() -> None:
    """``chain`` with a single endpoint declares nothing."""
    graph = chain_graph()
    assert graph.chain("numbers") == []
    assert graph.links == ()


def test_link_name_is_source_port_arrow_target_port() -> None:
    """``LinkSpec.name`` reads ``"source.port -> target.port"``."""
    assert LinkSpec("a", "even", "b", "left").name == "a.even -> b.left"


def test_link_options_default_to_system_buffer_deep_copy_no_feedback() -> None:
    """A link without options uses the default buffer, deep copies and is not feedback."""
    spec = LinkSpec("a", "out", "b", "in")
    assert spec.buffer is None
    assert spec.copy is CopyPolicy.DEEP
    assert spec.feedback is False


@pytest.mark.parametrize("buffer", [0, -1, True, 1.5, "3"])
def test_invalid_buffer_is_refused_when_the_link_is_declared(buffer: Any) -> None:
    """A buffer that is not a positive int raises ValueError naming ``buffer``."""
    graph = chain_graph()
    with pytest.raises(ValueError, match=r"buffer must be an integer from 1 to ") as caught:
        graph.link("numbers", "double", buffer=buffer)
    assert repr(buffer) in str(caught.value)
    assert graph.links == ()


@pytest.mark.parametrize("buffer", [1, 64, None])
def test_positive_or_none_buffer_is_accepted(buffer: int | None) -> None:
    """A positive int or ``None`` is a valid buffer."""
    assert chain_graph().link("numbers", "double", buffer=buffer).buffer == buffer


def test_unknown_copy_policy_is_refused_listing_the_choices() -> None:
    """An unknown copy policy raises ValueError listing every valid choice."""
    with pytest.raises(ValueError, match=r"copy must be one of") as caught:
        chain_graph().link("numbers", "double", copy="bogus")
    message = str(caught.value)
    assert "'bogus'" in message
    for policy in CopyPolicy:
        assert repr(policy.value) in message


@pytest.mark.parametrize("copy", [*CopyPolicy, *(p.value for p in CopyPolicy)])
def test_copy_accepts_policy_or_its_string_value(copy: CopyPolicy | str) -> None:
    """``copy`` takes a CopyPolicy or its string value and stores the CopyPolicy."""
    spec = chain_graph().link("numbers", "double", copy=copy)
    assert spec.copy is CopyPolicy(copy)


# -- problems, one at a time -------------------------------------------------------------


def test_graph_error_is_a_value_error_and_an_actorflow_error() -> None:
    """GraphError can be caught as ValueError or as ActorflowError."""
    graph = Graph()
    graph.add("sink", IntSink)
    with pytest.raises(GraphError) as caught:
        graph.validate()
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, af.ActorflowError)
    assert str(caught.value).startswith("invalid graph (1 problem):")


def test_unknown_module_in_a_link_is_reported() -> None:
    """Linking to a module that was never added names that module and the link."""
    graph = chain_graph()
    graph.chain("numbers", "double", "sink")
    graph.link("double", "ghost")
    problem, message = only_problem(graph)
    assert problem.module == "ghost"
    assert "unknown module 'ghost'" in problem.message
    assert "double.out -> ghost.in" in message


def test_unknown_source_module_is_reported() -> None:
    """An unknown producing module is reported by its name."""
    graph = Graph()
    graph.add("sink", IntSink)
    graph.link("ghost", "sink")
    problem, _ = only_problem(graph)
    assert problem.module == "ghost"
    assert "unknown module 'ghost'" in problem.message


def test_unknown_output_port_is_reported_listing_known_ports() -> None:
    """A missing output port names module and port and lists the real output ports."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("split", Split)
    graph.add("sink", IntSink)
    graph.link("numbers", "split")
    graph.link("split.evn", "sink")
    problem, message = only_problem(graph)
    assert (problem.module, problem.port) == ("split", "evn")
    assert "module 'split' has no output port 'evn'" in message
    assert "(output ports: 'even', 'odd')" in message


def test_unknown_input_port_is_reported_listing_known_ports() -> None:
    """A missing input port names module and port and lists the real input ports."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("merge", Merge)
    graph.add("sink", IntSink)
    graph.link("numbers", "merge.left")
    graph.link("numbers", "merge.middle")
    graph.link("merge", "sink")
    problem, message = only_problem(graph)
    assert (problem.module, problem.port) == ("merge", "middle")
    assert "module 'merge' has no input port 'middle'" in message
    assert "(input ports: 'left', 'right')" in message


def test_linking_into_a_source_reports_it_has_no_input_ports() -> None:
    """A source has no input ports, and the message says so."""
    graph = Graph()
    graph.add("a", Ints)
    graph.add("b", Ints)
    graph.link("a", "b")
    problem, _ = only_problem(graph)
    assert (problem.module, problem.port) == ("b", "in")
    assert "(input ports: none)" in problem.message


def test_incompatible_port_types_name_both_ports_and_both_types() -> None:
    """A str output into an int input names both ports and both types."""
    graph = Graph()
    graph.add("words", Strs)
    graph.add("sink", IntSink)
    graph.link("words", "sink")
    problem, _ = only_problem(graph)
    assert (problem.module, problem.port) == ("sink", "in")
    assert "output port words.out produces str" in problem.message
    assert "input port sink.in accepts int" in problem.message


def test_port_typed_object_accepts_any_producer() -> None:
    """A sink with the default ``object`` input accepts ints and strs."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("words", Strs)
    graph.add("sink", AnySink)
    graph.link("numbers", "sink")
    graph.link("words", "sink")
    graph.validate()


def test_non_checkable_protocol_port_is_reported_not_raised() -> None:
    """A Protocol input that refuses issubclass gives a GraphError, not a raw TypeError."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("sink", ShapeSink)
    graph.link("numbers", "sink")
    problem, _ = only_problem(graph)
    assert (problem.module, problem.port) == ("sink", "in")
    assert "accepts Shape" in problem.message


def test_required_input_without_a_link_is_reported() -> None:
    """A required input that nothing feeds names its module and port."""
    graph = Graph()
    graph.add("sink", IntSink)
    problem, _ = only_problem(graph)
    assert (problem.module, problem.port) == ("sink", "in")
    assert "module 'sink': required input port 'in' has no link" in problem.message


def test_optional_input_without_a_link_is_fine() -> None:
    """An input declared ``Port(int, required=False)`` may stay unlinked."""
    graph = Graph()
    graph.add("sink", OptionalSink)
    graph.validate()
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("merge", Merge)
    graph.add("sink", IntSink)
    graph.chain("numbers", "merge.left")
    graph.chain("merge", "sink")
    graph.validate()


def test_unlinked_output_port_is_fine() -> None:
    """An output port nothing listens to is allowed."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.validate()


def test_duplicate_module_name_is_reported() -> None:
    """Declaring two modules with one name names that module."""
    graph = chain_graph()
    graph.add("double", Double)
    graph.chain("numbers", "double", "sink")
    problem, _ = only_problem(graph)
    assert problem.module == "double"
    assert "module 'double' is declared twice" in problem.message


def test_duplicate_identical_link_is_reported() -> None:
    """The same link declared twice names the link, its target module and port."""
    graph = chain_graph()
    graph.chain("numbers", "double", "sink")
    graph.link("double", "sink", buffer=3)
    problem, _ = only_problem(graph)
    assert (problem.module, problem.port) == ("sink", "in")
    assert "link double.out -> sink.in is declared twice" in problem.message


def test_two_links_into_one_input_port_from_different_sources_are_fine() -> None:
    """Fan-in from two producers into one port is not a duplicate."""
    graph = Graph()
    graph.add("a", Ints)
    graph.add("b", Ints)
    graph.add("sink", IntSink)
    graph.link("a", "sink")
    graph.link("b", "sink")
    graph.validate()


@pytest.mark.parametrize("name", ["a.b", "", " x", "x "])
def test_invalid_module_name_is_reported(name: str) -> None:
    """A name that is empty, dotted or padded with spaces is reported by that name."""
    graph = Graph()
    graph.add(name, Ints)
    problem, _ = only_problem(graph)
    assert problem.module == name
    assert f"module name {name!r} is invalid" in problem.message


def test_factory_that_is_not_a_module_subclass_is_reported() -> None:
    """A module class that does not derive from Module is reported by module name."""
    graph = Graph()
    graph.add("thing", NotAModule)  # type: ignore[arg-type]
    problem, _ = only_problem(graph)
    assert problem.module == "thing"
    assert "module 'thing'" in problem.message
    assert "NotAModule" in problem.message
    assert "is not a subclass of actorflow.Source, Processor or Sink" in problem.message


def test_factory_that_is_an_instance_is_reported() -> None:
    """Passing a module instance instead of its class is reported, not raised."""
    graph = Graph()
    graph.add("numbers", Ints())  # type: ignore[arg-type]
    problem, _ = only_problem(graph)
    assert problem.module == "numbers"
    assert "is not a subclass" in problem.message


def test_module_with_a_bad_port_name_is_reported() -> None:
    """A module class declaring a dotted port name is reported by module name."""
    graph = Graph()
    graph.add("sink", BadPortName)
    problem, _ = only_problem(graph)
    assert problem.module == "sink"
    assert "module 'sink'" in problem.message
    assert "'in.x'" in problem.message


def test_cycle_is_reported_with_its_path_and_the_feedback_hint() -> None:
    """A two-module cycle shows ``a -> b -> a`` and suggests ``feedback=True``."""
    graph = Graph()
    graph.add("a", Double)
    graph.add("b", Double)
    graph.link("a", "b")
    graph.link("b", "a")
    problem, message = only_problem(graph)
    assert problem.module == "a"
    assert "cycle a -> b -> a" in message
    assert "feedback=True" in message


def test_longer_cycle_path_lists_every_module_in_order() -> None:
    """A three-module cycle is shown in link order, closing on its first module."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("a", Merge)
    graph.add("b", Double)
    graph.add("c", Double)
    graph.link("numbers", "a.left")
    graph.chain("a", "b", "c", "a.right")
    problem, _ = only_problem(graph)
    assert "cycle a -> b -> c -> a" in problem.message


def test_self_loop_is_a_cycle() -> None:
    """A module linked to itself is reported as ``a -> a``."""
    graph = Graph()
    graph.add("a", Double)
    graph.link("a", "a")
    problem, _ = only_problem(graph)
    assert problem.module == "a"
    assert "cycle a -> a" in problem.message


def test_feedback_link_makes_a_cycle_legal() -> None:
    """A cycle closed by a ``feedback=True`` link validates."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("merge", Merge)
    graph.add("double", Double)
    graph.add("sink", IntSink)
    graph.link("numbers", "merge.left")
    graph.link("merge", "double")
    graph.link("double", "merge.right", feedback=True)
    graph.link("double", "sink")
    graph.validate()


def test_feedback_self_loop_is_legal() -> None:
    """A self-loop marked feedback validates."""
    graph = Graph()
    graph.add("src", Ints)
    graph.add("a", Double)
    graph.link("src", "a")
    graph.link("a", "a", feedback=True)
    graph.validate()


def test_a_module_fed_only_by_feedback_links_is_refused() -> None:
    """A module whose every input is a feedback link would see its end of stream at once."""
    graph = Graph()
    graph.add("a", Double)
    graph.link("a", "a", feedback=True)
    problem, _ = only_problem(graph)
    assert problem.module == "a"
    assert "every input link is a feedback link" in problem.message


def test_feedback_on_one_cycle_does_not_excuse_another() -> None:
    """A feedback link breaks only the cycles it is on."""
    graph = Graph()
    graph.add("src", Ints)
    graph.add("a", Double)
    graph.add("b", Merge)
    graph.add("c", Double)
    graph.link("src", "a")
    graph.link("a", "b.left")
    graph.link("b", "a", feedback=True)
    graph.link("b", "c")
    graph.link("c", "b.right")
    problem, _ = only_problem(graph)
    assert "cycle b -> c -> b" in problem.message


def test_two_independent_cycles_are_both_reported() -> None:
    """Disjoint cycles each produce their own problem."""
    graph = Graph()
    for name in ("a", "b", "x", "y"):
        graph.add(name, Double)
    graph.link("a", "b")
    graph.link("b", "a")
    graph.link("x", "y")
    graph.link("y", "x")
    found = problems_of(graph)
    assert len(found) == 2
    messages = sorted(p.message for p in found)
    assert "cycle a -> b -> a" in messages[0]
    assert "cycle x -> y -> x" in messages[1]
    assert {p.module for p in found} == {"a", "x"}


# -- problems, all at once ---------------------------------------------------------------


def test_several_problems_are_collected_into_one_error() -> None:
    """Validation reports every problem of every kind in one GraphError."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("words", Strs)
    graph.add("numbers", Ints)  # duplicate module
    graph.add("bad.name", Ints)  # invalid name
    graph.add("thing", NotAModule)  # type: ignore[arg-type]
    graph.add("split", Split)
    graph.add("merge", Merge)  # 'left' stays unlinked
    graph.add("sink", IntSink)
    graph.add("loop", Double)
    graph.link("numbers", "split")
    graph.link("numbers", "split")  # duplicate link
    graph.link("words", "sink")  # incompatible types
    graph.link("split.nope", "merge.right")  # unknown output port
    graph.link("split.even", "merge.nope")  # unknown input port
    graph.link("split.odd", "ghost")  # unknown module
    graph.link("loop", "loop")  # self-loop

    with pytest.raises(GraphError) as caught:
        graph.validate()
    error = caught.value
    found = {(p.module, p.port): p.message for p in error.problems}
    assert len(error.problems) == 10, [p.message for p in error.problems]
    assert str(error).startswith("invalid graph (10 problems):")
    assert "declared twice" in found["numbers", None]
    assert "is invalid" in found["bad.name", None]
    assert "is not a subclass" in found["thing", None]
    assert "declared twice" in found["split", "in"]
    assert "produces str" in found["sink", "in"]
    assert "no output port 'nope'" in found["split", "nope"]
    assert "no input port 'nope'" in found["merge", "nope"]
    assert "unknown module 'ghost'" in found["ghost", None]
    assert "required input port 'left'" in found["merge", "left"]
    assert "cycle loop -> loop" in found["loop", None]
    for problem in error.problems:
        assert f"  - {problem.message}" in str(error)


def test_problems_is_empty_for_an_empty_graph() -> None:
    """A graph with no modules has nothing wrong with it."""
    assert Graph().problems() == []
    Graph().validate()


# -- start order -------------------------------------------------------------------------


def assert_consumers_first(graph: Graph, order: list[str]) -> None:
    """Every module appears once, after every module it feeds (feedback links aside)."""
    assert sorted(order) == sorted(m.name for m in graph.modules)
    where = {name: i for i, name in enumerate(order)}
    for link in graph.links:
        if not link.feedback and link.source != link.target:
            assert where[link.target] < where[link.source], link.name


def test_start_order_of_a_chain_is_reversed() -> None:
    """In a chain the sink starts first and the source last."""
    graph = chain_graph()
    graph.chain("numbers", "double", "sink")
    assert graph.start_order() == ["sink", "double", "numbers"]


def test_start_order_of_a_diamond_starts_consumers_first_in_declaration_order() -> None:
    """A diamond starts the sink, then its two feeders as declared, then the source."""
    graph = Graph()
    graph.add("src", Ints)
    graph.add("left", Double)
    graph.add("right", Double)
    graph.add("sink", IntSink)
    graph.link("src", "left")
    graph.link("src", "right")
    graph.link("left", "sink")
    graph.link("right", "sink")
    order = graph.start_order()
    assert_consumers_first(graph, order)
    assert order == ["sink", "left", "right", "src"]


def test_start_order_of_a_fan_in_keeps_producers_in_declaration_order() -> None:
    """Producers feeding one sink start after it, in the order they were declared."""
    graph = Graph()
    graph.add("b", Ints)
    graph.add("a", Ints)
    graph.add("c", Ints)
    graph.add("sink", IntSink)
    for name in ("c", "a", "b"):
        graph.link(name, "sink")
    order = graph.start_order()
    assert_consumers_first(graph, order)
    assert order == ["sink", "b", "a", "c"]


def test_start_order_of_unrelated_modules_is_declaration_order() -> None:
    """Modules without links between them start in declaration order."""
    graph = Graph()
    for name in ("z", "y", "x"):
        graph.add(name, Ints)
    assert graph.start_order() == ["z", "y", "x"]


def test_start_order_ignores_feedback_links() -> None:
    """A feedback link does not constrain the order, so a legal cycle still has one."""
    graph = Graph()
    graph.add("numbers", Ints)
    graph.add("merge", Merge)
    graph.add("double", Double)
    graph.add("sink", IntSink)
    graph.link("numbers", "merge.left")
    graph.link("merge", "double")
    graph.link("double", "merge.right", feedback=True)
    graph.link("double", "sink")
    order = graph.start_order()
    assert_consumers_first(graph, order)
    assert order == ["sink", "double", "merge", "numbers"]


def test_start_order_handles_parallel_links_between_two_modules() -> None:
    """Two links between the same pair of modules count as one dependency."""
    graph = Graph()
    graph.add("split", Split)
    graph.add("merge", Merge)
    graph.link("split.even", "merge.left")
    graph.link("split.odd", "merge.right")
    assert graph.start_order() == ["merge", "split"]


@given(
    st.integers(min_value=1, max_value=12).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).map(sorted),
                max_size=30,
            ),
            st.permutations(range(n)),
        )
    )
)
def test_start_order_puts_consumers_first_for_any_dag(
    case: tuple[list[list[int]], list[int]],
) -> None:
    """For any acyclic graph, every consumer starts before each of its producers."""
    edges, declared = case
    graph = Graph()
    for i in declared:
        graph.add(f"m{i}", Double)
    for a, b in dict.fromkeys((a, b) for a, b in edges if a < b):
        graph.link(f"m{a}", f"m{b}")
    assert not any("cycle" in p.message for p in graph.problems())
    assert_consumers_first(graph, graph.start_order())


# -- scale -------------------------------------------------------------------------------


def test_long_linear_chain_validates_without_recursion_error() -> None:
    """A chain far deeper than the recursion limit validates and orders correctly."""
    length = 5000
    assert length > sys.getrecursionlimit()
    graph = Graph()
    graph.add("m0", Ints)
    for i in range(1, length - 1):
        graph.add(f"m{i}", Double)
    graph.add(f"m{length - 1}", IntSink)
    graph.chain(*(f"m{i}" for i in range(length)))
    graph.validate()
    assert graph.start_order() == [f"m{i}" for i in reversed(range(length))]


def test_long_cycle_is_reported_without_recursion_error() -> None:
    """A cycle through thousands of modules is found iteratively and reported once."""
    length = 5000
    graph = Graph()
    for i in range(length):
        graph.add(f"m{i}", Double)
    graph.chain(*(f"m{i}" for i in range(length)), "m0")
    problem, _ = only_problem(graph)
    assert problem.message.startswith("cycle m0 -> m1 -> m2")
    assert f"m{length - 1} -> m0:" in problem.message


# ------------------------------------------------------------------------------------------------
# Feedback-only inputs inside a larger cycle (moved from test_regressions.py)
# ------------------------------------------------------------------------------------------------


def test_a_module_fed_only_by_feedback_links_inside_a_larger_cycle_is_refused() -> None:
    """A module inside a cycle whose only inputs are feedback links would see its end of stream
    at once and drop what the cycle sends, so validate() refuses the graph."""

    class Router(af.Processor):
        inputs: ClassVar = {"in": object, "back": object}
        outputs: ClassVar = {"out": object, "x": object}

        def process(self, data: Any, port: str) -> Any:
            return data

    class Times(af.Processor):
        def process(self, data: int) -> int:
            return data * 100

    graph = af.Graph()
    graph.add("src", Numbers, count=3)
    graph.add("b", Router)
    graph.add("a", Times)
    graph.add("k", Collect, into=[])
    graph.link("src", "b.in")
    graph.link("b.x", "a", feedback=True)
    graph.link("a", "b.back")
    graph.link("b.out", "k")
    with pytest.raises(af.GraphError, match="module 'a': every input link is a feedback link"):
        graph.validate()


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sensor_pipeline.toml"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda g: g.link(5, "b"),
            TypeError,
            "source must be a module name or 'module.port', got int 5",
        ),
        (lambda g: g.link("a", 6), TypeError, "target must be a module name .*got int 6"),
        (lambda g: g.dead_letters(5), TypeError, "target must be a module name .*got int 5"),
        (lambda g: g.chain("a", 2), TypeError, "endpoint 1 must be a module name .*got int 2"),
        (lambda g: g.group("x", "ab"), TypeError, "group 'x': members must be module names"),
        (lambda g: g.group("x", ["a", 1]), TypeError, "group 'x': members must be module names"),
        (lambda g: g.group("plant", ["a"]), ValueError, "the graph's own name"),
        (lambda g: g.depends_on("b", "a", timeout=float("nan")), ValueError, "timeout.*nan"),
        (lambda g: g.link("a", "b", copy="dep"), ValueError, "did you mean 'deep'"),
        (lambda g: af.run(g, {"quantum": 1}), TypeError, "settings must be an actorflow.Settings"),
        (lambda g: af.run("g.toml"), TypeError, "graph must be an actorflow.Graph.*load_graph"),
        (lambda g: af.run(g, reporters=5), TypeError, "reporters must be a list of reporters"),
        (lambda g: af.run(g, store=5), TypeError, "store must be an actorflow store"),
        (lambda g: af.run(g, store="x.db"), TypeError, "a file is SQLiteStore"),
        (lambda g: af.Backoff(min=5, max=1), ValueError, "min .5 s. is above its max"),
        (lambda g: Graph(name=5), TypeError, "name must be a string"),
        (lambda g: af.Registry(5), TypeError, "entries must map names to RegistryEntry"),
        (
            lambda g: af.load_graph(EXAMPLE, registry=5),
            TypeError,
            "registry must be an actorflow.Registry",
        ),
        (
            lambda g: af.load_graph(EXAMPLE, overrides=["x"]),
            TypeError,
            "overrides must be a mapping",
        ),
    ],
)
def test_api_misuse_is_a_clear_error_naming_the_argument(
    call: Any, error: type[Exception], message: str
) -> None:
    """Wrong argument types and values are refused at the call, naming the argument,
    instead of an AttributeError from deep inside (or, for a group, silently taken)."""
    graph = Graph("plant")
    graph.add("a", Numbers)
    graph.add("b", Collect)
    with pytest.raises(error, match=message):
        call(graph)
    assert graph.links == ()
    assert graph.groups == ()


def test_group_members_may_be_any_iterable_of_names() -> None:
    graph = Graph("plant")
    graph.add("a", Numbers)
    graph.group("g", (name for name in ["a"]))
    assert graph.groups[0].members == ("a",)
