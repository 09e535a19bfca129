"""Fuzz the codec: any value round-trips or is a SerializationError; any bytes decode
or are a SerializationError; nothing crashes the process."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import resource
import subprocess
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._data import MAX_DEPTH, decode, encode

# The codec keeps a datetime's offset, not its zone (documented): a named zone comes back as
# its fixed offset, which PEP 495 makes unequal to the original at an ambiguous time.
offsets = st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
hashables = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.dates()
    | st.datetimes(timezones=st.none() | offsets),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
values = st.recursive(
    hashables | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.tuples(inner)
        | st.sets(hashables, max_size=3)
        | st.builds(af.Data, fields=st.dictionaries(st.text(max_size=5), inner, max_size=3))
    ),
    max_leaves=25,
)


def deep(kinds: list[str]) -> Any:
    value: Any = 1
    for kind in kinds:
        if kind == "s":
            try:
                value = frozenset([value])
            except TypeError:  # a list inside: not hashable
                value = af.Data(fields={"v": value})
        else:
            value = {"t": (value,), "l": [value], "d": {"k": value}}[kind]
    return value


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_any_value_round_trips(value: Any) -> None:
    assert decode(encode(value)) == value


@settings(max_examples=100, deadline=None)
@given(kinds=st.lists(st.sampled_from(["t", "l", "d", "s"]), max_size=400))
def test_any_nesting_round_trips_or_is_refused(kinds: list[str]) -> None:
    value = deep(kinds)
    try:
        payload = encode(value)
    except af.SerializationError as exc:
        message = str(exc)
    else:
        assert decode(payload) == value
        return
    assert "nested too deeply" in message


@settings(max_examples=100, deadline=None)
@given(value=st.integers(min_value=-(10**5000), max_value=10**5000))
def test_big_integers_round_trip_or_are_refused(value: int) -> None:
    if abs(value) < 10**4300:
        assert decode(encode(value)) == value
    else:
        with pytest.raises(af.SerializationError, match="4300 digits"):
            encode(value)


ext = st.builds(
    lambda code, body: msgpack.packb(msgpack.ExtType(code, body)),
    st.integers(min_value=0, max_value=10),
    st.binary(max_size=30),
)


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=64) | ext)
def test_any_bytes_decode_or_are_a_serialization_error(payload: bytes) -> None:
    with contextlib.suppress(af.SerializationError):
        decode(payload)


def test_hostile_bytes_never_crash_the_process() -> None:
    """Nested extension bodies of every kind, in a separate process: a crash is a signal."""
    code = """
import msgpack, random
from actorflow._data import decode
from actorflow import SerializationError
random.seed(7)
for _ in range(200):
    body = b"\\x01"
    for _ in range(random.randrange(50, 3000)):
        kind = random.choice([1, 2, 3, 5, 0x91, 0x81])
        if kind == 0x91:
            body = b"\\x91" + body
        elif kind == 0x81:
            body = b"\\x81\\x01" + body
        elif kind == 5:
            body = msgpack.packb(msgpack.ExtType(5, b"\\x95\\x80" + body + b"\\x00\\xa0\\xc0"))
        else:
            body = msgpack.packb(msgpack.ExtType(kind, b"\\x91" + body))
    try:
        decode(body)
    except SerializationError:
        pass
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


# Builds the same nesting as a value and, independently, as msgpack bytes, one container
# kind per step (``D``, a Data holding a dict, is two containers); run in a child process
# with a small C stack, so a crash is a failed test rather than a dead pytest.
_NESTING_CHILD = """
import json, sys
import msgpack
import actorflow as af
from actorflow._data import MAX_DEPTH, decode, encode

def ext(code, body):
    return msgpack.packb(msgpack.ExtType(code, body))

def hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True

def build(recipe):
    value, payload, depth = 1, b"\\x01", 0
    for kind, times in recipe:
        for _ in range(times):
            if kind in "sfk" and not hashable(value):
                kind = "l"
            if kind == "t":
                value, payload = (value,), ext(1, b"\\x91" + payload)
            elif kind == "s":
                value, payload = {value}, ext(2, b"\\x91" + payload)
            elif kind == "f":
                value, payload = frozenset([value]), ext(3, b"\\x91" + payload)
            elif kind == "k":
                value, payload = {value: 1}, b"\\x81" + payload + b"\\x01"
            elif kind == "d":
                value, payload = {"k": value}, b"\\x81\\xa1k" + payload
            elif kind == "D":
                value = af.Data(fields={"v": value}, timestamp=0, id="x")
                payload = ext(5, b"\\x95\\x81\\xa1v" + payload + b"\\x80\\x00\\xa1x\\xc0")
                depth += 1
            else:
                value, payload = [value], b"\\x91" + payload
            depth += 1
    return value, payload, depth

for recipe in json.load(sys.stdin):
    value, payload, depth = build(recipe)
    if depth <= MAX_DEPTH:
        assert encode(value) == payload, recipe
        assert decode(payload) == value, recipe
        continue
    for attempt in (lambda: encode(value), lambda: decode(payload)):
        try:
            attempt()
        except af.SerializationError as exc:
            assert "nested too deeply" in str(exc), (recipe, str(exc))
        else:
            raise AssertionError(f"depth {depth} accepted: {recipe}")
print("ok")
"""

recipes = st.lists(
    st.lists(
        st.tuples(st.sampled_from("tlsfkdD"), st.integers(min_value=1, max_value=400)),
        min_size=1,
        max_size=60,
    ),
    min_size=1,
    max_size=8,
)


def _small_stack() -> None:
    resource.setrlimit(resource.RLIMIT_STACK, (512 * 1024, resource.RLIM_INFINITY))


@settings(max_examples=12, deadline=None)
@given(batch=recipes)
def test_mixed_nesting_of_every_container_kind_is_refused_past_the_limit(
    batch: list[list[tuple[str, int]]],
) -> None:
    """Every mix of lists, dicts, tuples, sets, frozensets and Data, up to ~24,000 deep,
    counts towards one limit, the same for encode and decode; on a 512 KiB C stack."""
    result = subprocess.run(
        [sys.executable, "-c", _NESTING_CHILD],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        check=False,
        timeout=50,
        preexec_fn=_small_stack,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_exactly_max_depth_mixed_containers_round_trip() -> None:
    """The limit counts every kind: a mix exactly :data:`MAX_DEPTH` deep passes, one more
    does not."""
    value: Any = 1
    for step in range(MAX_DEPTH):
        value = ((value,), [value], {"k": value})[step % 3]
    assert decode(encode(value)) == value
    with pytest.raises(af.SerializationError, match="nested too deeply"):
        encode([value])
    with pytest.raises(af.SerializationError, match=r"payload\[0\].*nested too deeply"):
        decode(b"\x91" + encode(value))


def test_naive_datetimes_and_dates_round_trip() -> None:
    assert decode(encode(dt.date(2020, 1, 2))) == dt.date(2020, 1, 2)
