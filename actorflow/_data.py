"""The ``Data`` message and its lossless msgpack encoding.

Modules may pass any Python value along a link; :class:`Data` is the message type for
when a value should carry identity (a unique id that survives every hop, so one message
can be traced through the graph), an origin, a timestamp and tags.

:func:`encode` / :func:`decode` round-trip ``Data`` and the builtin value types through
msgpack *losslessly*: tuples stay tuples, sets stay sets, bytes stay bytes, integers of
any size survive, and ``datetime`` keeps its offset. A value of any other type is refused
with a :class:`SerializationError` naming where in the value it sits, instead of being
silently turned into something else.
"""

from __future__ import annotations

import copy
import datetime as _dt
import itertools
import os
import time
from collections.abc import Mapping
from typing import Any, Final

import attrs
import msgpack

from ._exceptions import SerializationError

__all__ = ["Data", "decode", "encode", "new_id"]

_ID_PREFIX: Final = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_id() -> str:
    """Return a new message id, unique across processes.

    A random per-process prefix joined to a counter: as unique as a UUID for this purpose,
    and several times cheaper to make on the hot path.
    """
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


def _fresh_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return {} if value is None else dict(value)


@attrs.frozen(slots=True)
class Data:
    """A message with identity.

    Attributes:
        fields: The payload, by name.
        tags: Labels for routing or grouping, by name.
        timestamp: When the data was produced, in seconds since the epoch.
        id: A unique id; kept when the message is copied or evolved, so one item can be
            followed through every actor it passes.
        origin: The name of the module that produced it, if known.
    """

    fields: dict[str, Any] = attrs.field(factory=dict, converter=_fresh_dict)
    tags: dict[str, Any] = attrs.field(factory=dict, converter=_fresh_dict)
    timestamp: float = attrs.field(factory=time.time)
    id: str = attrs.field(factory=new_id)
    origin: str | None = None

    def evolve(self, **changes: Any) -> Data:
        """Return a copy with some attributes replaced; the id is kept unless given."""
        return attrs.evolve(self, **changes)

    def with_fields(self, **fields: Any) -> Data:
        """Return a copy whose fields are updated with ``fields``."""
        return attrs.evolve(self, fields={**self.fields, **fields})

    def __deepcopy__(self, memo: dict[int, Any]) -> Data:
        # attrs' generic path goes through __reduce_ex__; this is ~3x faster and keeps
        # the identity fields shared (they are immutable).
        return Data(
            fields=copy.deepcopy(self.fields, memo),
            tags=copy.deepcopy(self.tags, memo),
            timestamp=self.timestamp,
            id=self.id,
            origin=self.origin,
        )

    def to_msgpack(self) -> bytes:
        """Encode this message; :meth:`from_msgpack` gives back an equal one."""
        return encode(self)

    @classmethod
    def from_msgpack(cls, payload: bytes) -> Data:
        """Decode a message encoded by :meth:`to_msgpack`.

        Raises:
            SerializationError: ``payload`` does not hold a ``Data``.
        """
        value = decode(payload)
        if not isinstance(value, cls):
            raise SerializationError("payload", f"expected Data, got {type(value).__name__}")
        return value


# Extension type codes. Stable: they are part of the wire format.
_EXT_TUPLE: Final = 1
_EXT_SET: Final = 2
_EXT_FROZENSET: Final = 3
_EXT_DATETIME: Final = 4
_EXT_DATA: Final = 5
_EXT_BIGINT: Final = 6
_EXT_DATE: Final = 7


class _Unsupported(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


def _default(obj: object) -> msgpack.ExtType:
    kind = type(obj)
    if kind is int:
        # msgpack hands `default` any int outside the 64-bit range.
        return msgpack.ExtType(_EXT_BIGINT, str(obj).encode())
    if kind is tuple:
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))  # type: ignore[call-overload]
    if kind is set:
        return msgpack.ExtType(_EXT_SET, _pack(list(obj)))  # type: ignore[call-overload]
    if kind is frozenset:
        return msgpack.ExtType(_EXT_FROZENSET, _pack(list(obj)))  # type: ignore[call-overload]
    if kind is _dt.datetime:
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())  # type: ignore[attr-defined]
    if kind is _dt.date:
        return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())  # type: ignore[attr-defined]
    if kind is Data:
        assert isinstance(obj, Data)
        body = [obj.fields, obj.tags, obj.timestamp, obj.id, obj.origin]
        return msgpack.ExtType(_EXT_DATA, _pack(body))
    raise _Unsupported(obj)


def _ext_hook(code: int, payload: bytes) -> object:
    if code == _EXT_TUPLE:
        return tuple(_unpack(payload))
    if code == _EXT_SET:
        return set(_unpack(payload))
    if code == _EXT_FROZENSET:
        return frozenset(_unpack(payload))
    if code == _EXT_DATETIME:
        return _dt.datetime.fromisoformat(payload.decode())
    if code == _EXT_DATE:
        return _dt.date.fromisoformat(payload.decode())
    if code == _EXT_DATA:
        fields, tags, timestamp, id_, origin = _unpack(payload)
        return Data(fields=fields, tags=tags, timestamp=timestamp, id=id_, origin=origin)
    if code == _EXT_BIGINT:
        return int(payload.decode())
    raise SerializationError("payload", f"unknown msgpack extension type {code}")


def _pack(value: object) -> bytes:
    # strict_types sends tuples (and subclasses of builtins) through _default, which is
    # what makes the round trip lossless; msgpack also hands it ints beyond 64 bits.
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, ext_hook=_ext_hook, raw=False, strict_map_key=False)


_SCALARS: Final = (type(None), bool, int, float, str, bytes)


def _find_unsupported(value: object, path: str) -> tuple[str, object] | None:
    """Walk ``value`` and return the path and value of the first unencodable part."""
    kind = type(value)
    if kind in _SCALARS or kind in (_dt.datetime, _dt.date):
        return None
    if kind is Data:
        assert isinstance(value, Data)
        return _find_unsupported(value.fields, f"{path}.fields") or _find_unsupported(
            value.tags, f"{path}.tags"
        )
    if kind is dict:
        assert isinstance(value, dict)
        for key, item in value.items():
            found = _find_unsupported(key, f"{path} key {key!r}") or _find_unsupported(
                item, f"{path}[{key!r}]"
            )
            if found:
                return found
        return None
    if kind in (list, tuple, set, frozenset):
        assert isinstance(value, list | tuple | set | frozenset)
        for index, item in enumerate(value):
            found = _find_unsupported(item, f"{path}[{index}]")
            if found:
                return found
        return None
    return path, value


def encode(value: object) -> bytes:
    """Encode ``value`` (a :class:`Data` or builtin value) to msgpack bytes, losslessly.

    Raises:
        SerializationError: Some part of ``value`` has a type that cannot be restored
            exactly; the message names where it is.
    """
    try:
        return _pack(value)
    except _Unsupported:
        found = _find_unsupported(value, "value")
        where, bad = found if found else ("value", value)
        raise SerializationError(
            where, f"type {type(bad).__qualname__} has no lossless msgpack form"
        ) from None


def decode(payload: bytes) -> Any:
    """Decode bytes made by :func:`encode`.

    Raises:
        SerializationError: ``payload`` is not valid msgpack from :func:`encode`.
    """
    try:
        return _unpack(payload)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError("payload", f"not valid msgpack ({exc})") from exc
