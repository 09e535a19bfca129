"""TOML that users write, read with bounds: :mod:`tomllib` takes time and memory quadratic
in the parts of one dotted key (a 20 KB key of 10,000 parts took 1.4 s and 422 MiB, 200 KB
exhausted memory), so keys and nesting are measured by a linear scan before it parses."""

from __future__ import annotations

import itertools
import re
import tomllib
from typing import Any, Final

__all__ = ["MAX_KEY_PARTS", "MAX_NESTING", "TomlTooDeep", "check_bounds", "loads"]

MAX_KEY_PARTS: Final = 100
"""A dotted key (or table header) may have at most this many parts."""

MAX_NESTING: Final = 100
"""Arrays and inline tables may nest at most this deep."""

# Strings and comments, so that what they hold is not taken for structure. A multi-line
# string may end with one or two quotes of its own before the closing three. Each form,
# once its opening quote matches, matches (possessively) up to its end or, unclosed, as far
# as it goes: tomllib refuses an unclosed string where it begins, so what follows one is
# never parsed, and no text is scanned twice (retrying an unclosed quote at each later
# quote made the scan quadratic: 64 KB of quotes and backslashes took 8.5 s).
_OPAQUE: Final = re.compile(
    r'"""(?:[^"\\]|\\[\s\S]|"{1,2}(?!"))*+(?:"{3,5})?'
    r"|'''(?:[^']|'{1,2}(?!'))*+(?:'{3,5})?"
    r'|"(?:[^"\\\n]|\\.)*+"?'
    r"|'[^'\n]*+'?"
    r"|#[^\n]*+"
)
# Blanks around a dot, matched from the first blank of a run only (trying each blank of a
# long run in turn was quadratic too).
_AROUND_DOTS: Final = re.compile(r"(?<![ \t])[ \t]*+\.[ \t]*+")
_LONG_KEY: Final = re.compile(rf"(?<![\w.-])[\w-]++(?:\.[\w-]++){{{MAX_KEY_PARTS}}}")
_BRACKETS: Final = re.compile(r"[\[\]{}]")
_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


class TomlTooDeep(ValueError):
    """A document whose keys or nesting go beyond the bounds; refused unparsed."""


def _placeholder(match: re.Match[str]) -> str:
    """A string becomes one word (its line breaks kept, so lines still count); a comment
    becomes nothing."""
    text = match.group()
    return "" if text.startswith("#") else "s" + "\n" * text.count("\n")


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def check_bounds(text: str) -> None:
    """Refuse ``text`` if a dotted key has too many parts or arrays and inline tables
    nest too deeply, outside strings and comments. Linear in the length of ``text``.

    Raises:
        TomlTooDeep: Naming the line and the bound.
    """
    bare = _AROUND_DOTS.sub(".", _OPAQUE.sub(_placeholder, text))
    if (key := _LONG_KEY.search(bare)) is not None:
        raise TomlTooDeep(
            f"line {_line(bare, key.start())}: a dotted key of more than {MAX_KEY_PARTS} parts"
        )
    brackets = _BRACKETS.findall(bare)
    depths = list(itertools.accumulate(map(_STEP.__getitem__, brackets)))
    if max(depths, default=0) > MAX_NESTING:
        deepest = next(at for at, depth in enumerate(depths) if depth > MAX_NESTING)
        where = list(_BRACKETS.finditer(bare))[deepest].start()
        raise TomlTooDeep(
            f"line {_line(bare, where)}: nested too deeply (arrays or inline tables more than "
            f"{MAX_NESTING} inside one another)"
        )


def loads(text: str) -> dict[str, Any]:
    """Parse ``text`` as :func:`tomllib.loads` does, after :func:`check_bounds`.

    Raises:
        TomlTooDeep: The document goes beyond the bounds.
        tomllib.TOMLDecodeError: It is not valid TOML.
    """
    check_bounds(text)
    return tomllib.loads(text)
