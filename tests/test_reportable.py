"""What modules report for people watching (set_info, set_progress) can never take a
run, a heartbeat, a reporter or the live view down."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings
from rich.console import Console
from sample_modules import Collect, Numbers

import actorflow as af
from actorflow._heartbeat import snapshot
from actorflow._reportable import MAX_DEPTH, MAX_ITEMS, MAX_NODES, finite, json_ready, text
from actorflow._view import Header, render, rows_from_status


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__


def test_a_100k_deep_value_is_cut_without_recursion() -> None:
    ready = json_ready({"x": deep(100_000)})
    json.dumps(ready)
    level, current = 0, ready["x"]
    while isinstance(current, list):
        level, current = level + 1, current[0]
    assert level == MAX_DEPTH - 1
    assert isinstance(current, str)


def test_wide_long_and_odd_values_are_bounded_and_json_ready() -> None:
    ready = json_ready(
        {
            "wide": list(range(10_000)),
            "long": "x" * 100_000,
            "nan": math.nan,
            "big": 10**400,
            "set": {2},
            "bytes": b"\xff",
            "object": Unprintable(),
            7: "key not a string",
        }
    )
    text_ = json.dumps(ready, allow_nan=False)
    assert len(text_) < 20_000
    assert ready["wide"][:3] == [0, 1, 2]
    assert ready["wide"][-1] == f"... ({10_000 - MAX_ITEMS} more)"
    assert ready["nan"] == "nan"
    assert ready["set"] == [2]
    assert ready["object"] == "<Unprintable object>"
    assert ready["7"] == "key not a string"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.builds(Unprintable),
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.dictionaries(st.text() | st.integers(), children)
        | st.frozensets(st.integers())
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_value_becomes_strict_json_within_the_node_budget(value: Any) -> None:
    ready = json_ready(value)
    json.dumps(ready, allow_nan=False)
    assert isinstance(text(value), str)


def test_finite_never_raises() -> None:
    assert [finite(v) for v in (1, 2.5, math.nan, math.inf, 10**400, "3", None, True)] == [
        1.0,
        2.5,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    assert MAX_NODES >= MAX_ITEMS


class Odd(af.Processor):
    """Reports everything a careless module might."""

    def process(self, data: int) -> int:
        self.set_info(task=5, x=deep(100_000), y="x" * 100_000, z=math.nan, o=Unprintable())  # type: ignore[arg-type]
        self.set_progress(10**400, math.nan)
        return data


async def test_odd_set_info_and_progress_reach_status_heartbeat_and_view_safely() -> None:
    """task=5, a 100k-deep list, an unprintable object, 10**400 progress: the run
    goes on, and status, heartbeat snapshot and live-view rows all show it."""
    out: list[int] = []
    graph = af.Graph()
    graph.add("src", Numbers, count=2)
    graph.add("odd", Odd)
    graph.add("sink", Collect, into=out)
    graph.chain("src", "odd", "sink")
    async with af.open_system(graph) as system:
        pass
    assert out == [0, 1]
    status = system.status()
    odd = status.actors["odd"]
    assert odd.task == "5"
    assert odd.progress == (0.0, None)
    data = snapshot(status, started_at=0.0, version="x")
    json.dumps(data, allow_nan=False)
    console = Console(file=io.StringIO(), width=100)
    console.print(render(Header("g", "done", 1.0), rows_from_status(status)))
