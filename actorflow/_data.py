"""The ``Data`` message and its lossless msgpack encoding.

Modules may pass any Python value along a link; :class:`Data` is the message type for
when a value should carry identity (a unique id that survives every hop, so one message
can be traced through the graph), an origin, a timestamp and tags.

:func:`encode` / :func:`decode` round-trip ``Data`` and the builtin value types through
msgpack *losslessly*: tuples stay tuples, sets stay sets, bytes stay bytes, integers of
up to 4300 digits survive, and ``datetime`` keeps its offset. A value of any other type is refused
with a :class:`SerializationError` naming where in the value it sits, instead of being
silently turned into something else.
"""

from __future__ import annotations

import copy
import datetime as _dt
import itertools
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs
import msgpack

from ._checks import short
from ._exceptions import SerializationError

__all__ = ["Data", "decode", "decode_items", "encode", "encode_items", "new_id"]

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
        trace: The W3C ``traceparent`` of the span that last handled it, when it is
            traced (see ``Settings.trace_ratio``); kept by :meth:`evolve`, so the next
            hop's span is its child, in this process or across a remote link. Not
            part of equality (nor of the hash): tracing an item does not change it.
    """

    fields: dict[str, Any] = attrs.field(factory=dict, converter=_fresh_dict)
    tags: dict[str, Any] = attrs.field(factory=dict, converter=_fresh_dict)
    timestamp: float = attrs.field(factory=time.time)
    id: str = attrs.field(factory=new_id)
    origin: str | None = None
    trace: str | None = attrs.field(default=None, eq=False)

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
            trace=self.trace,
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
            raise _undecodable(f"expected Data, got {type(value).__name__}")
        return value


# Extension type codes. Stable: they are part of the wire format.
_EXT_TUPLE: Final = 1
_EXT_SET: Final = 2
_EXT_FROZENSET: Final = 3
_EXT_DATETIME: Final = 4
_EXT_DATA: Final = 5
_EXT_BIGINT: Final = 6
_EXT_DATE: Final = 7


MAX_DEPTH: Final = 100
"""How many containers (lists, dicts, tuples, sets, frozensets and ``Data``, all kinds
counted together) may nest inside one another in an encoded value; the value itself is the
first. Deeper values are refused on encode and on decode alike, so neither msgpack's
recursive C packer nor hostile bytes can exhaust the C stack."""

_BIGINT: Final = re.compile(rb"-?[0-9]{1,4300}")
_KINDS: Final = frozenset({list, dict, tuple, set, frozenset, Data})


class _Unsupported(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


class _TooDeep(Exception):
    """More than :data:`MAX_DEPTH` containers inside one another."""


def _children(item: Any) -> Any:
    """The parts of a container that may themselves be containers."""
    kind = type(item)
    if kind is Data:
        return (item.fields, item.tags)
    if kind is dict:
        return [*item, *item.values()]
    return item


def _nested_within(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether no container in ``value`` lies more than ``limit`` containers deep.

    Walked depth first without recursion (a cyclic value is simply too deep); a container
    whose items hold no container costs one C-level pass over them, and a ``Data`` whose
    fields and tags hold none (the common item) one check of each, not three walks.
    """
    if type(value) not in _KINDS:
        return True
    stack = [(value, 1)]
    pop, push, disjoint = stack.pop, stack.append, _KINDS.isdisjoint
    while stack:
        item, depth = pop()
        if type(item) is Data and depth < limit:
            fields, tags = item.fields, item.tags
            if (
                disjoint(map(type, fields.values()))
                and disjoint(map(type, tags.values()))
                and disjoint(map(type, fields))
                and disjoint(map(type, tags))
            ):
                continue
        children = _children(item)
        if disjoint(map(type, children)):
            continue
        if depth >= limit:
            return False
        for child in children:
            if type(child) in _KINDS:
                push((child, depth + 1))
    return True


_state = threading.local()


def _default(obj: object) -> msgpack.ExtType:
    kind = type(obj)
    if kind is int:
        # msgpack hands `default` any int outside the 64-bit range.
        return msgpack.ExtType(_EXT_BIGINT, str(obj).encode())
    if kind is _dt.datetime:
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())  # type: ignore[attr-defined]
    if kind is _dt.date:
        return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())  # type: ignore[attr-defined]
    # encode() checked the nesting before packing: these nested packs stay shallow.
    if kind is tuple:
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))  # type: ignore[call-overload]
    if kind is set:
        return msgpack.ExtType(_EXT_SET, _pack(list(obj)))  # type: ignore[call-overload]
    if kind is frozenset:
        return msgpack.ExtType(_EXT_FROZENSET, _pack(list(obj)))  # type: ignore[call-overload]
    if kind is Data:
        assert isinstance(obj, Data)
        body = [obj.fields, obj.tags, obj.timestamp, obj.id, obj.origin]
        if obj.trace is not None:  # written only when traced: untraced entries stay as before
            body.append(obj.trace)
        return msgpack.ExtType(_EXT_DATA, _pack(body))
    raise _Unsupported(obj)


def _items(payload: bytes) -> list[Any]:
    """An extension body (an array), one more level of extension nesting on this thread,
    refused beyond the limit."""
    depth = getattr(_state, "depth", 0)
    if depth >= MAX_DEPTH:
        raise _TooDeep
    _state.depth = depth + 1
    try:
        items = _unpack_shallow(payload) if depth < _SHALLOW else _unpack(payload)
    finally:
        _state.depth = depth
    if not isinstance(items, list):
        raise TypeError(f"extension body is a {type(items).__name__}, not an array")
    return items


def _data(payload: bytes) -> Data:
    body = _items(payload)
    if len(body) not in (5, 6):
        raise ValueError(f"Data body has {len(body)} items, not 5 or 6")
    fields, tags, timestamp, id_, origin = body[:5]
    trace = body[5] if len(body) == 6 else None
    if not (isinstance(fields, dict) and isinstance(tags, dict)):
        raise TypeError("Data fields and tags must be maps")
    if type(timestamp) not in (int, float) or not isinstance(id_, str):
        raise ValueError("Data timestamp must be a number and its id a string")
    if origin is not None and not isinstance(origin, str):
        raise ValueError("Data origin must be a string or nil")
    if trace is not None and not isinstance(trace, str):
        raise ValueError("Data trace must be a string or nil")
    return Data(fields=fields, tags=tags, timestamp=timestamp, id=id_, origin=origin, trace=trace)


def _undecodable(reason: str, where: str = "payload") -> SerializationError:
    """The error for bytes that cannot be decoded: its message says decode, not serialise."""
    return SerializationError(where, reason, doing="decode")


def _ext_hook(code: int, payload: bytes) -> object:
    if code == _EXT_TUPLE:
        return tuple(_items(payload))
    if code == _EXT_SET:
        return set(_items(payload))
    if code == _EXT_FROZENSET:
        return frozenset(_items(payload))
    if code == _EXT_DATETIME:
        return _dt.datetime.fromisoformat(payload.decode())
    if code == _EXT_DATE:
        return _dt.date.fromisoformat(payload.decode())
    if code == _EXT_DATA:
        return _data(payload)
    if code == _EXT_BIGINT:
        if not _BIGINT.fullmatch(payload):
            raise ValueError("big integer is not a decimal of at most 4300 digits")
        return int(payload)
    raise _undecodable(f"unknown msgpack extension type {code}")


def _new_packer() -> msgpack.Packer:
    # strict_types sends tuples (and subclasses of builtins) through _default, which is
    # what makes the round trip lossless; msgpack also hands it ints beyond 64 bits.
    try:
        return msgpack.Packer(
            default=_default, strict_types=True, use_bin_type=True, buf_size=_PACKER_BYTES
        )
    except TypeError:  # pragma: no cover - msgpack < 1.1 has no buf_size
        return msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)


_POOLED: Final = 4
"""Packers kept per thread for reuse: making one per ``Data`` encoded (each nested body
is packed on its own, while the packer of the value around it is still busy, so each
level takes its own from the pool) cost more than the packing."""
_PACKER_BYTES: Final = 16 * 1024
"""A new packer's buffer; one that packed more than this is not kept (nor its buffer)."""


def _pack(value: object) -> bytes:
    try:
        free: list[msgpack.Packer] = _state.packers
    except AttributeError:
        free = _state.packers = []
    packer = free.pop() if free else _new_packer()
    payload: bytes = packer.pack(value)  # a packer that raised is not kept
    if len(free) < _POOLED and len(payload) <= _PACKER_BYTES:
        free.append(packer)
    return payload


def _unpack(payload: bytes) -> Any:
    # An Unpacker keeps its parse stack on the heap; unpackb keeps it on the C stack,
    # where nested extension bodies (each decoded by a nested call) overflowed it.
    unpacker = msgpack.Unpacker(
        ext_hook=_ext_hook,
        raw=False,
        strict_map_key=False,
        max_buffer_size=max(len(payload), 1),
    )
    unpacker.feed(payload)
    value = unpacker.unpack()
    if unpacker.tell() != len(payload):
        raise ValueError("extra data after the value")
    return value


_SHALLOW: Final = 1
"""Extension bodies this shallow (a ``Data`` in a list: the common item) are decoded by
``unpackb``, whose parse stack (~40 KiB) lives on the C stack and is not cleared: a third
of the cost of an ``Unpacker`` per body. Deeper ones use an ``Unpacker`` (see
:func:`_unpack`), so nested bodies never pile those stacks up on the C stack."""


def _unpack_shallow(payload: bytes) -> Any:
    # unpackb's limits (string, array, map lengths) default to the payload's length,
    # as an Unpacker's do to max_buffer_size; extra bytes raise ExtraData (a ValueError).
    return msgpack.unpackb(payload, ext_hook=_ext_hook, raw=False, strict_map_key=False)


_SCALARS: Final = (type(None), bool, int, float, str, bytes)
_DEPTH_MESSAGE: Final = (
    f"nested too deeply (at most {MAX_DEPTH} lists, dicts, tuples, sets or Data "
    "inside one another)"
)
_HUGE: Final = 10**4300


def _parts(value: object, path: str) -> list[tuple[object, str]]:
    """The parts of a container, each with its path; none for anything else."""
    kind = type(value)
    if kind is Data:
        assert isinstance(value, Data)
        return [(value.fields, f"{path}.fields"), (value.tags, f"{path}.tags")]
    if kind is dict:
        assert isinstance(value, dict)
        parts: list[tuple[object, str]] = []
        for key, item in value.items():
            parts += [(key, f"{path} key {short(key)}"), (item, f"{path}[{short(key)}]")]
        return parts
    if kind in (list, tuple, set, frozenset):
        assert isinstance(value, list | tuple | set | frozenset)
        return [(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return []


def _find_unsupported(
    value: object, path: str, *, huge: bool = False
) -> tuple[str, object] | None:
    """The path and value of the first unencodable part of ``value`` (or with ``huge``,
    of the first int too long to write out), walked without recursion, so a deep value
    cannot exhaust the stack."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if huge:
            if isinstance(item, int) and abs(item) >= _HUGE:
                return where, item
            stack.extend(reversed(_parts(item, where)))
            continue
        if kind in _SCALARS or kind in (_dt.datetime, _dt.date):
            continue
        parts = _parts(item, where)
        if not parts and kind not in (Data, dict, list, tuple, set, frozenset):
            return where, item
        stack.extend(reversed(parts))
    return None


def _too_deep(value: object, root: str = "value") -> str:
    """The path of the first part of ``value`` nested deeper than :data:`MAX_DEPTH`."""
    stack = [(value, root, 1)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where if len(where) <= 80 else f"{where[:40]}...{where[-30:]}"
        parts = _parts(item, where)
        stack.extend((part, at, depth + 1) for part, at in reversed(parts) if type(part) in _KINDS)
    return root  # pragma: no cover - only called for a value found too deep


def _checked(value: Any, root: str = "payload") -> Any:
    """``value`` decoded, refused if nested deeper than :func:`encode` allows."""
    if not _nested_within(value):
        raise _undecodable(_DEPTH_MESSAGE, _too_deep(value, root))
    return value


def encode(value: object) -> bytes:
    """Encode ``value`` (a :class:`Data` or builtin value) to msgpack bytes, losslessly.

    Raises:
        SerializationError: Some part of ``value`` has a type that cannot be restored
            exactly, is nested too deeply, or is an integer of more than 4300 digits;
            the message names where it is.
    """
    if not _nested_within(value):
        raise SerializationError(_too_deep(value), _DEPTH_MESSAGE)
    return _encode_shallow(value)


def encode_items(items: list[Any]) -> bytes:
    """Encode ``items`` as one array for :func:`decode_items`: each item may nest as deeply
    as :func:`encode` allows on its own, since each is decoded on its own.

    Raises:
        SerializationError: As :func:`encode`, for the first item that cannot be encoded.
    """
    for index, item in enumerate(items):
        if not _nested_within(item):
            raise SerializationError(_too_deep(item, f"item {index}"), _DEPTH_MESSAGE)
    return _encode_shallow(items)


def _encode_shallow(value: object) -> bytes:
    """Encode a value already known to nest no deeper than the limit."""
    try:
        return _pack(value)
    except _Unsupported:
        found = _find_unsupported(value, "value")
        where, bad = found if found else ("value", value)
        raise SerializationError(
            where, f"type {type(bad).__qualname__} has no lossless msgpack form"
        ) from None
    except RecursionError:  # the caller was already near Python's recursion limit
        raise SerializationError("value", _DEPTH_MESSAGE) from None
    except ValueError as exc:  # str() of a huge int, or a string too long for msgpack
        found = _find_unsupported(value, "value", huge=True)
        if found is None:  # a bytes or str too long for msgpack (4 GiB)
            raise SerializationError("value", short(str(exc))) from None
        raise SerializationError(found[0], "an integer of more than 4300 digits") from None


def decode(payload: bytes) -> Any:
    """Decode bytes made by :func:`encode`.

    Raises:
        SerializationError: ``payload`` is not valid msgpack from :func:`encode`, or
            nests deeper than :func:`encode` allows.
    """
    try:
        return _checked(_unpack(payload))
    except SerializationError:
        raise
    except (_TooDeep, RecursionError, msgpack.StackError):
        raise _undecodable(_DEPTH_MESSAGE) from None
    except Exception as exc:
        raise _undecodable(f"not valid msgpack: {short(str(exc) or type(exc).__name__)}") from None


def _array_header(payload: bytes) -> tuple[int, int] | None:
    """The item count of a msgpack array and where its first item starts, read from its
    header without an ``Unpacker``; ``None`` if ``payload`` does not start with one."""
    size = len(payload)
    if not size:
        return None
    first = payload[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and size >= 3:
        return int.from_bytes(payload[1:3], "big"), 3
    if first == 0xDD and size >= 5:
        return int.from_bytes(payload[1:5], "big"), 5
    return None


def decode_items(payload: bytes) -> tuple[int, Iterator[Any]]:
    """How many items ``payload`` (an array made by :func:`encode`) holds, and the items,
    decoded one at a time: a huge array is never decoded whole. A payload that is not an
    array is one item.

    The count is the array's header, which a damaged payload may inflate: as every item
    takes at least one byte, a header claiming more items than the bytes after it is
    refused at once (the entry counts as one, not the billions a 6-byte payload can claim),
    so the count never exceeds the payload's length. The decoder is made when the first
    item is asked for (a caller that decodes the array whole never pays for it).

    Raises:
        SerializationError: ``payload`` does not start with valid msgpack, or its header
            claims more items than it could hold (at once), or an item is damaged (when
            the iterator reaches it).
    """
    header = _array_header(payload)
    if header is None:  # not an array: decode it whole, as one item
        return 1, iter([decode(payload)])
    count, start = header
    if count > len(payload) - start:
        raise _undecodable(f"not valid msgpack: an array of {count} items in {len(payload)} bytes")
    return count, _items_of(payload, count)


def _items_of(payload: bytes, count: int) -> Iterator[Any]:
    """The ``count`` items of the array in ``payload`` (whose header says so)."""
    unpacker = msgpack.Unpacker(
        ext_hook=_ext_hook, raw=False, strict_map_key=False, max_buffer_size=max(len(payload), 1)
    )
    unpacker.feed(payload)
    unpacker.read_array_header()
    for _ in range(count):
        try:
            yield _checked(unpacker.unpack(), "payload item")
        except (_TooDeep, RecursionError, msgpack.StackError):
            raise _undecodable(_DEPTH_MESSAGE) from None
        except SerializationError:
            raise
        except Exception as exc:
            reason = short(str(exc) or type(exc).__name__)
            raise _undecodable(f"not valid msgpack: {reason}") from None
    if unpacker.tell() != len(payload):
        raise _undecodable("not valid msgpack: extra data after the value")
