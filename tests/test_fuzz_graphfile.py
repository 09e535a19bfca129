"""Fuzz the graph-file loader: any TOML document gives a Graph or a GraphFileError
naming the file, never another exception."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._specs import LINK_OPTIONS
from actorflow._toml import MAX_KEY_PARTS, MAX_NESTING, TomlTooDeep
from actorflow._toml import loads as bounded_toml
from tests.test_bad_input import REGISTRY

KEYS = [
    "graph",
    "settings",
    "modules",
    "links",
    "supervisor",
    "job",
    "tasks",
    "name",
    "module",
    "config",
    "supervise",
    "shared",
    "from",
    "to",
    "count",
    "quantum",
    "readings",
    "store",
    "restart",
    "strategy",
    *sorted(LINK_OPTIONS),
    "x",
]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["readings", "store", "readings.out", "store.in", "permanent", "x" * 5000]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=20,
)
module = st.fixed_dictionaries(
    {"module": st.sampled_from(["readings", "store", "stor"])},
    optional={"config": values, "shared": values, "supervise": values, "x": values},
)
link = st.fixed_dictionaries(
    {},
    optional={
        "from": st.sampled_from(["readings", "store", "readings.out", "nowhere", "a.b.c", "."])
        | values,
        "to": st.sampled_from(["store", "store.in", "readings", "store.", ".in"]) | values,
        **dict.fromkeys(sorted(LINK_OPTIONS), values),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "graph": st.fixed_dictionaries({}, optional={"name": values}) | values,
        "settings": st.dictionaries(st.sampled_from(KEYS), values, max_size=3) | values,
        "modules": st.dictionaries(
            st.sampled_from(["readings", "store"]) | st.text(max_size=6), module | values
        ),
        "links": st.lists(link | values, max_size=3) | values,
        "supervisor": values,
        "job": values,
        "tasks": st.dictionaries(st.sampled_from(["a", "b"]), module | values, max_size=2),
        "extra": values,
    },
)


def dump(value: Any) -> str:
    """TOML text for ``value`` (a table), using only inline forms."""
    lines = [f"{_key(key)} = {_inline(item)}" for key, item in value.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return _inline(key)


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + "}"


def _error_of(load: Callable[..., object], path: Path) -> str | None:
    """The GraphFileError's message, or ``None`` if the file loaded; anything else fails."""
    try:
        load(path, REGISTRY)
    except af.GraphFileError as exc:
        return str(exc)
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents)
def test_any_toml_document_loads_or_is_one_graph_file_error(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "plant.toml"
    text = dump(document)
    assert tomllib.loads(text) == document
    path.write_text(text)
    for load in (af.load_graph, af.load_job):
        message = _error_of(load, path)
        if message is not None:
            assert str(path) in message
            assert len(message) < 20_000


@settings(max_examples=200, deadline=None)
@given(text=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_load_or_are_one_graph_file_error(
    tmp_path_factory: pytest.TempPathFactory, text: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "plant.toml"
    path.write_bytes(text)
    message = _error_of(af.load_graph, path)
    if message is not None:
        assert str(path) in message


parts = st.text(alphabet="ab.[]{}#='\" ", max_size=6).map(
    lambda text: '"' + text.replace("\\", "").replace('"', "'") + '"'
) | st.sampled_from(["a", "b-c", "d_1", "9"])
statements = st.tuples(
    st.booleans(),  # a table header, or a key = value
    st.integers(min_value=1, max_value=3000),  # parts in the key
    st.integers(min_value=0, max_value=300),  # arrays and inline tables around the value
    parts,
    st.text(alphabet="a.[]{}#\"'\\=\n", max_size=30),  # a string value holding lookalikes
)


def _statement(index: int, header: bool, count: int, nesting: int, part: str, text: str) -> str:
    key = ".".join([f"k{index}", *[part] * (count - 1)])
    if header:
        return f"[{key}]"
    value = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    for level in range(nesting):
        value = f"[{value}]" if level % 2 else "{x = " + value + "}"
    return f"{key} = {value}  # {part}.{part}.[[{{"


@settings(max_examples=150, deadline=None)
@given(document=st.lists(statements, min_size=1, max_size=6))
def test_keys_and_nesting_are_bounded_before_tomllib_parses(
    document: list[tuple[bool, int, int, str, str]],
) -> None:
    """A dotted key of more than MAX_KEY_PARTS parts, or values nested more than
    MAX_NESTING deep, are refused by a linear scan that strings and comments cannot
    fool; anything within the bounds parses as tomllib parses it."""
    text = "\n".join(_statement(index, *item) for index, item in enumerate(document)) + "\n"
    too_long = any(count > MAX_KEY_PARTS for _, count, _, _, _ in document)
    too_deep = any(nesting > MAX_NESTING and not header for header, _, nesting, _, _ in document)
    if too_long or too_deep:
        with pytest.raises(TomlTooDeep, match="dotted key" if too_long else "nested too deeply"):
            bounded_toml(text)
    else:
        assert bounded_toml(text) == tomllib.loads(text)


@pytest.mark.parametrize("form", ["{key} = 1\n", "[{key}]\n", "x = {{{key} = 1}}\n"])
def test_a_key_of_100_000_parts_is_one_graph_file_error_at_once(tmp_path: Path, form: str) -> None:
    """A 200 KB dotted key took tomllib minutes and gigabytes; now it is refused unread."""
    path = tmp_path / "plant.toml"
    path.write_text(form.format(key=".".join(["a"] * 100_000)))
    started = time.perf_counter()
    with pytest.raises(af.GraphFileError, match=r"line 1: a dotted key of more than 100 parts"):
        af.load_graph(path, REGISTRY)
    assert time.perf_counter() - started < 2


RICH: dict[str, Any] = {
    "graph": {"name": "plant"},
    "settings": {"quantum": 0.01},
    "modules": {
        "readings": {
            "module": "readings",
            "config": {"count": 2},
            "supervise": {"restart": "permanent"},
        },
        "store": {"module": "store"},
    },
    "links": [
        {"from": "readings.out", "to": "store.in", "copy": "deep", "overflow": "block"},
        {"from": "readings", "to": "store", "remote": "redis://localhost/0"},
    ],
}
BIG = "x" * 1_000_000


def _with_big(value: Any) -> list[Any]:
    """Every variant of ``value`` with one of its strings or keys made huge (alone, or
    after a dot, as a port)."""
    if isinstance(value, str):
        return [BIG, f"{value}.{BIG}"]
    if isinstance(value, list):
        return [
            [*value[:at], variant, *value[at + 1 :]]
            for at, item in enumerate(value)
            for variant in _with_big(item)
        ]
    if isinstance(value, dict):
        variants: list[Any] = []
        for key, item in value.items():
            variants.append({(BIG if k == key else k): v for k, v in value.items()})
            variants += [{**value, key: variant} for variant in _with_big(item)]
        return variants
    return []


@pytest.mark.parametrize("document", _with_big(RICH), ids=lambda _: "")
def test_a_huge_string_anywhere_is_quoted_in_short(tmp_path: Path, document: Any) -> None:
    """A 1 MB string in any key or value of a graph file gives an error of a few KB."""
    path = tmp_path / "plant.toml"
    path.write_text(dump(document))
    for load in (af.load_graph, af.load_job):
        message = _error_of(load, path)
        assert message is None or len(message) < 4000, message[:3000]
