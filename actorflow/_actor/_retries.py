"""Items a module failed on: tried again up to ``attempts`` times, then dead-lettered.

The *suspect* is the item the last incarnation failed on; it is put back at the front of
its link, so the next incarnation tries it first. When it fails ``attempts`` times it is
given up on: a :class:`DeadLetter` goes to the graph's dead-letter port, if any.

Another item may fail before the suspect is tried again: a module with a snapshot
journal hands items it handled before a crash to the next incarnation ahead of it, and a
module with several inputs may fail on an item of another link first. That failure must
not reset the suspect's count (two such items would take turns for ever, neither ever
dead-lettered), so it displaces the suspect into :attr:`Retries.earlier`, where its
count waits for it.
"""

from __future__ import annotations

import time
import traceback as _traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from .._data import Data
from .._exceptions import RunError, describe
from .._logging import Tracebacks

if TYPE_CHECKING:
    import structlog

__all__ = ["EARLIER_BOUND", "DeadLetter", "Retries", "Verdict"]

EARLIER_BOUND = 64
"""The most displaced suspects whose counts are remembered (the oldest is forgotten
first)."""


@attrs.frozen
class DeadLetter:
    """An item given up on: its handler failed on it ``attempts`` times.

    Attributes:
        item: The item, as it was handed to the module.
        actor: The actor that failed on it.
        error: The last exception raised while handling it.
        message_id: The item's ``Data.id``, or ``<actor>#<n>``.
        attempts: How many times it was tried.
        timestamp: When it was dead-lettered (seconds since the epoch).
        traceback: The error's traceback, formatted. The frames of ``error`` keep no
            local variables: they would keep the failed item's whole batch alive.
    """

    item: Any
    actor: str
    error: BaseException
    message_id: str
    attempts: int
    timestamp: float = attrs.field(factory=time.time)
    _traceback: str | None = attrs.field(default=None, alias="traceback", eq=False, repr=False)

    @property
    def traceback(self) -> str:
        """The error's traceback, formatted when first read.

        Formatting it (Python parses each frame's line to place its carets) cost more
        than the rest of a restart, and most dead letters are counted, not read.
        """
        text = self._traceback
        if text is None:
            text = "".join(_traceback.format_exception(self.error))
            object.__setattr__(self, "_traceback", text)
        return text


def _detach_tracebacks(exc: BaseException) -> None:
    """Clear the local variables of the frames of ``exc`` and of every exception it
    chains: they hold the batch it failed in, which must not outlive it. The frames
    themselves stay, so the failure still shows where the module's code raised (file,
    line, function, and the line's text)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        _traceback.clear_frames(current.__traceback__)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


@attrs.frozen
class Verdict:
    """What a failure did with the item it was on: tried ``attempts`` times, and given
    up on (dead-lettered) or put back to be tried again."""

    error: RunError
    attempts: int
    dead_lettered: bool
    described: str
    """The item's error, described (see ``describe``): made once per failure."""

    def fields(self, error: BaseException) -> dict[str, Any]:
        """The fields of ``error``'s failure event, if this is its verdict."""
        if error is not self.error:
            return {}
        return {"attempts": self.attempts, "dead_lettered": self.dead_lettered}


@attrs.define(slots=True, eq=False)
class Retries:
    """The suspect item and how often it failed; it outlives incarnations.

    Invariant: ``suspect_attempts`` counts the failures of ``suspect`` (0 when none).
    """

    name: str
    attempts: int
    log: structlog.typing.FilteringBoundLogger
    dead_letter: Callable[[DeadLetter], None] | None
    suspect: Any = None
    suspect_attempts: int = 0
    dead_lettered: int = 0
    last: Verdict | None = None
    """What became of the item the last failure was on, until the failure is logged."""
    tracebacks: Tracebacks = attrs.field(factory=Tracebacks)
    """The failures logged with their traceback in full (once per kind of failure)."""
    earlier: dict[int, tuple[Any, int]] = attrs.field(factory=dict)
    """Earlier suspects and their failures, by identity (the item is held, so its id
    stays its own); at most :data:`EARLIER_BOUND`."""
    isolated: dict[int, Any] = attrs.field(factory=dict)
    """Items of a batch a batch hook failed on, by identity (held): taken one at a time
    until each was handled or given up on, so the one at fault is found and named."""

    def message_id(self, item: Any, sequence: int) -> str:
        return item.id if isinstance(item, Data) else f"{self.name}#{sequence}"

    def failed(
        self,
        exc: Exception,
        hook: str,
        item: Any,
        sequence: int,
        give_back: Callable[[list[Any]], None],
        rest: list[Any],
    ) -> RunError:
        """The module's ``hook`` raised on ``item``: put it back to be retried, or
        dead-letter it; ``rest`` (taken after it) goes back either way. Earlier suspects
        keep their counts (another item may fail before one is tried again).

        Returns the RunError that ends this incarnation.
        """
        message_id = self.message_id(item, sequence)
        described = describe(exc)
        error = RunError(self.name, f"{hook} raised {described}", message_id=message_id)
        error.__cause__ = exc
        attempts = self._failures(item) + 1
        if self.suspect is not None and self.suspect is not item:
            self._remember(self.suspect, self.suspect_attempts)
        if attempts < self.attempts:
            self.suspect, self.suspect_attempts = item, attempts
            give_back([item, *rest])
            self.last = Verdict(error, attempts, False, described)
            return error
        self.suspect, self.suspect_attempts = None, 0
        give_back(rest)
        self.dead_lettered += 1
        # Said by the failure's own event (actor.failed, dead_lettered=true): one event
        # per failure, with the item's fate and the error's traceback.
        self.last = Verdict(error, attempts, True, described)
        _detach_tracebacks(exc)
        if self.dead_letter is not None:
            self.dead_letter(DeadLetter(item, self.name, exc, message_id, attempts))
        return error

    def _failures(self, item: Any) -> int:
        """How often ``item`` failed before (taken out of :attr:`earlier`)."""
        if item is self.suspect:
            return self.suspect_attempts
        found = self.earlier.pop(id(item), None)
        return found[1] if found is not None and found[0] is item else 0

    def _remember(self, item: Any, attempts: int) -> None:
        """Keep a displaced suspect's count, forgetting the oldest beyond the bound."""
        self.earlier[id(item)] = (item, attempts)
        while len(self.earlier) > EARLIER_BOUND:
            del self.earlier[next(iter(self.earlier))]
