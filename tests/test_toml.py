"""The bounds check before tomllib: linear in the document, whatever it holds."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorflow._toml import TomlTooDeep, check_bounds

SIZE = 1_000_000
BOUND = 5.0
"""CPU seconds for 1 MB: a linear scan takes 0.005-0.1 s; a quadratic one, hours."""


def _timed_check(text: str) -> float:
    """CPU seconds of the check: a shared machine's load stretches wall time, not this."""
    started = time.process_time()
    with contextlib.suppress(TomlTooDeep):
        check_bounds(text)
    return time.process_time() - started


@pytest.mark.parametrize(
    "text",
    [
        "x = " + '"\\' * (SIZE // 2),  # unclosed strings ending in a backslash, 8.5 s per 64 KB
        "x" + " " * SIZE,  # a run of blanks, no dot after it
        '"""' * (SIZE // 3),
        "'" * SIZE,
        "'''" * (SIZE // 3),
        ("a" * 99 + ".") * (SIZE // 100),
    ],
    ids=["quote-backslash", "blanks", "multi-line", "literal", "multi-literal", "dotted"],
)
def test_known_slow_forms_are_scanned_in_linear_time(text: str) -> None:
    assert _timed_check(text) < BOUND


@settings(max_examples=40, deadline=None)
@given(
    head=st.text(alphabet="x =\"'\\#[]{}.\t\na-", max_size=20),
    unit=st.text(alphabet="x =\"'\\#[]{}.\t\na-", min_size=1, max_size=12),
)
def test_any_repeated_text_is_scanned_in_linear_time(head: str, unit: str) -> None:
    """1 MB of any short piece repeated (unclosed quotes, backslashes, one long line or
    many) is scanned well within the bound, refused or not."""
    assert _timed_check(head + unit * (SIZE // len(unit))) < BOUND


def test_an_unclosed_string_hides_only_its_own_line() -> None:
    """tomllib refuses an unclosed basic string at its line's end; the next line is
    still measured."""
    with pytest.raises(TomlTooDeep, match="line 2: a dotted key"):
        check_bounds('x = "open \\\n' + ".".join(["a"] * 101) + " = 1\n")
    with pytest.raises(TomlTooDeep, match="line 2: nested too deeply"):
        check_bounds("x = 'open\ny = " + "[" * 101 + "]" * 101 + "\n")
