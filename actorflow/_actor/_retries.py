"""Items a module failed on: tried again up to ``attempts`` times, then dead-lettered.

The *suspect* is the item the last incarnation failed on; it is put back at the front of
its link, so the next incarnation tries it first. When it fails ``attempts`` times it is
given up on: a :class:`DeadLetter` goes to the graph's dead-letter port, if any.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import structlog

from .._data import Data
from .._exceptions import RunError, _describe

__all__ = ["DeadLetter", "Retries"]


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
    """

    item: Any
    actor: str
    error: BaseException
    message_id: str
    attempts: int
    timestamp: float = attrs.field(factory=time.time)


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
        dead-letter it; ``rest`` (taken after it) goes back either way.

        Returns the RunError that ends this incarnation.
        """
        message_id = self.message_id(item, sequence)
        error = RunError(self.name, f"{hook} raised {_describe(exc)}", message_id=message_id)
        error.__cause__ = exc
        attempts = self.suspect_attempts + 1 if item is self.suspect else 1
        if attempts < self.attempts:
            self.suspect, self.suspect_attempts = item, attempts
            give_back([item, *rest])
            return error
        self.suspect, self.suspect_attempts = None, 0
        give_back(rest)
        self.dead_lettered += 1
        self.log.error(
            "actor.dead_letter", message_id=message_id, attempts=attempts, error=_describe(exc)
        )
        if self.dead_letter is not None:
            self.dead_letter(DeadLetter(item, self.name, exc, message_id, attempts))
        return error
