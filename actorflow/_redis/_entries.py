"""What the consumer does with an entry at the boundary, before its module sees it.

An entry is admitted (decoding only its length), then fed into the receiving link
piece by piece as the link has room: an entry of any size never holds more than the
link's capacity in decoded items, and is acknowledged once every item is handled.
Entries that cannot be handled are dead-lettered here, counted on the link, logged
with the reason and acknowledged, so the stream goes on and nothing is retried for ever:

* ``undecodable``: not actorflow's, or damaged (the decoder's every failure is caught).
  An entry that cannot be opened counts as one, whatever its header claims (a 6-byte
  entry may claim 4 billion items; one claiming more items than it has bytes is refused
  whole); one damaged part way counts the items its header gives that were not fed,
  never more than its length in bytes;
* ``wrong_type``: an item whose type the receiving port does not accept;
* ``undeliverable``: delivered ``max_deliveries`` times without being acknowledged
  (a poison entry that kills every consumer that takes it).
"""

from __future__ import annotations

import typing
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import attrs

from .._data import decode, decode_items
from .._exceptions import describe
from .._ports import describe_type
from .._status import DropReason
from .._transport import RemoteInLink
from ._scripts import END_FIELD

__all__ = ["Intake", "is_marker", "type_check"]


def type_check(accepted: Any) -> Callable[[Any], bool] | None:
    """A check that a value fits a port of type ``accepted``, made once per link; ``None``
    when the port takes anything (or a type that cannot be checked at run time).

    The rule of :func:`actorflow._ports.is_compatible`, for a value: an instance of the
    class, of a subclass, or of a member of a union; a generic compares by its origin.
    """
    members = typing.get_args(accepted) if _is_union(accepted) else (accepted,)
    classes = tuple(typing.get_origin(member) or member for member in members)
    if any(cls is object or cls is Any or not isinstance(cls, type) for cls in classes):
        return None
    try:
        isinstance(None, classes)
    except TypeError:  # a Protocol that is not runtime-checkable
        return None
    return lambda value: isinstance(value, classes)


def exact_types(accepted: Any) -> frozenset[type]:
    """The classes a port of type ``accepted`` names (its union's members, generics by
    their origin): a piece whose items are all of exactly these fits without a check per
    item."""
    members = typing.get_args(accepted) if _is_union(accepted) else (accepted,)
    return frozenset(
        cls
        for cls in (typing.get_origin(member) or member for member in members)
        if isinstance(cls, type)
    )


def is_marker(entry: Any) -> bool:
    """Whether a stream entry is a producer's end marker, not items."""
    return END_FIELD in entry.field_values


def _whole(payload: bytes, count: int) -> list[Any] | None:
    """The ``count`` items of an entry that fits the link whole, decoded at once (one
    depth check for them all, not one per item: the common case, and cheaper); ``None``
    if that fails (then they are decoded one by one, which keeps the items before a
    damaged one, and takes an item nested as deep as the limit allows)."""
    try:
        items = decode(payload)
    except Exception:
        return None
    return items if type(items) is list and len(items) == count else None


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is type(int | str)


@attrs.define
class _Entry:
    """An admitted entry whose items are being fed into the link."""

    id: bytes
    count: int
    items: Iterator[Any]
    payload: bytes
    fed: int = 0


@attrs.define(eq=False)
class Intake:
    """Admits entries read from the stream and feeds them into the link as it has room.

    Invariant: every admitted entry is in ``link.remaining`` (or acknowledged) until all
    its items have been handled or dead-lettered.
    """

    link: RemoteInLink
    log: Any
    accepts: Any = object
    max_deliveries: int = 5
    backlog: deque[_Entry] = attrs.field(factory=deque)
    markers: set[bytes] = attrs.field(factory=set)
    """End markers admitted and not yet acknowledged (they are not counted as entries)."""
    end_seen: bool = False
    """An end marker came: the producer has closed (this run, or an earlier one)."""
    _check: Callable[[Any], bool] | None = attrs.field(init=False)
    _exact: frozenset[type] = attrs.field(init=False)
    _port: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._check = type_check(self.accepts)
        self._exact = exact_types(self.accepts)
        self._port = describe_type(self.accepts)

    def admit(self, entries: list[Any], deliveries: dict[bytes, int] | None = None) -> int:
        """Take in entries read from the stream (those not here already); how many items
        (those to be fed)."""
        link = self.link
        admitted = 0
        for entry in entries:
            entry_id = entry.identifier
            if entry_id in link.remaining or entry_id in link.to_ack:
                continue
            if is_marker(entry):
                self.end_seen = True
                self.markers.add(entry_id)
                link.expect(entry_id, 0)
                continue
            count, items = self._open(entry)
            delivered = (deliveries or {}).get(entry_id, 1)
            if items is not None and delivered > self.max_deliveries:
                link.drop(count, DropReason.UNDELIVERABLE)
                self.log.error(
                    "remote.undeliverable",
                    entry=entry_id.decode(),
                    deliveries=delivered,
                    items=count,
                    hint="delivered max_deliveries times without being acknowledged",
                )
                items, count = None, 0
            link.expect(entry_id, count)
            if items is not None and count:
                payload = entry.field_values[b"p"]
                self.backlog.append(_Entry(entry_id, count, items, payload))
                admitted += count
        return admitted

    def _open(self, entry: Any) -> tuple[int, Iterator[Any] | None]:
        """The item count and items of an entry, or ``(0, None)`` if it is undecodable."""
        try:
            return decode_items(entry.field_values[b"p"])
        except Exception as exc:  # whatever the decoder raises, go on
            self.link.drop(1, DropReason.UNDECODABLE)
            self.log.error(
                "remote.undecodable",
                entry=entry.identifier.decode(),
                error=describe(exc),
                fields=sorted(key.decode(errors="replace") for key in entry.field_values),
            )
            return 0, None

    def need(self, batch: int) -> int:
        """The room worth feeding into: a batch, or what is left of the head entry."""
        head = self.backlog[0]
        return min(batch, head.count - head.fed)

    def feed(self, room: int) -> None:
        """Feed up to ``room`` items of the entries admitted, oldest first."""
        while room > 0 and self.backlog:
            head = self.backlog[0]
            took = self._feed_piece(head, min(room, head.count - head.fed))
            room -= took
            if head.fed >= head.count:
                self.backlog.popleft()

    def _feed_piece(self, entry: _Entry, want: int) -> int:
        """Feed ``want`` items of ``entry``: those decoded, if it turns out damaged (the
        rest of it is then dead-lettered); how many were consumed from it."""
        piece = _whole(entry.payload, want) if want == entry.count else None
        if piece is None:
            piece = []
            try:
                piece.extend(islice(entry.items, want))
            except Exception as exc:  # a damaged item: the rest of the entry is lost
                return self._damaged(entry, piece, exc)
        entry.fed += len(piece)
        skipped = 0
        if self._check is not None and not self._exact.issuperset(map(type, piece)):
            fitting = [item for item in piece if self._check(item)]
            skipped = len(piece) - len(fitting)
            if skipped:
                self._wrong_type(entry, piece, skipped)
                piece = fitting
        self.link.feed(entry.id, piece, skipped)
        return want

    def _damaged(self, entry: _Entry, piece: list[Any], exc: Exception) -> int:
        """Feed what was decoded before the damage and dead-letter the rest of the
        entry; how many were consumed from it."""
        rest = entry.count - entry.fed - len(piece)
        self.link.drop(rest, DropReason.UNDECODABLE)
        self.log.error(
            "remote.undecodable", entry=entry.id.decode(), error=describe(exc), items=rest
        )
        consumed = entry.count - entry.fed
        entry.fed = entry.count
        self.link.feed(entry.id, piece, rest)
        return consumed

    def _wrong_type(self, entry: _Entry, piece: list[Any], skipped: int) -> None:
        check = self._check
        assert check is not None
        first = next(item for item in piece if not check(item))
        self.link.drop(skipped, DropReason.WRONG_TYPE)
        self.log.error(
            "remote.wrong_type",
            entry=entry.id.decode(),
            count=skipped,
            got=type(first).__qualname__,
            port=self.link.spec.target_port,
            accepts=self._port,
        )

    def clear(self) -> None:
        """The consumer has gone: what was not fed stays pending in the stream."""
        self.backlog.clear()
