"""Copy policies: how a link gives its consumer data that no other consumer can mutate."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

from ._data import decode, encode
from ._specs import CopyPolicy as CopyPolicy

__all__ = ["CopyPolicy", "copier_for"]


# Immutable builtins: a deep copy of one is the object itself, so skip deepcopy's dispatch.
_ATOMIC: Final = frozenset({type(None), bool, int, float, complex, str, bytes, range})


def _deep(item: Any) -> Any:
    if type(item) in _ATOMIC:
        return item
    return copy.deepcopy(item)


def _msgpack(item: Any) -> Any:
    return decode(encode(item))


def copier_for(policy: CopyPolicy, fan_out: int) -> Callable[[Any], Any] | None:
    """The function that copies one item for a link, or ``None`` to pass it as is.

    Args:
        policy: The link's copy policy.
        fan_out: How many links leave the producing port.
    """
    if policy is CopyPolicy.MSGPACK:
        return _msgpack
    if policy is CopyPolicy.DEEP and fan_out > 1:
        return _deep
    return None
