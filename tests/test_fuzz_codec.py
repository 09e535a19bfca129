"""Fuzz the codec: any value round-trips or is a SerializationError; any bytes decode
or are a SerializationError; nothing crashes the process."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actorflow as af
from actorflow._data import decode, encode

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


def test_naive_datetimes_and_dates_round_trip() -> None:
    assert decode(encode(dt.date(2020, 1, 2))) == dt.date(2020, 1, 2)
