"""The quantum: how long an actor may run before it lets the others run.

An actor handles items without yielding until its quantum is spent. Reading the clock
costs as much as handling a cheap item, so it is read only once every *stride* items,
and the stride adapts: it doubles while a stride of items costs under 1/16 of the
quantum and halves when it costs more, up to :data:`_MAX_STRIDE`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
import trio

from .._status import ActorState
from .._timings import HandlingTimes

__all__ = ["Pacing"]

# The most items handled between two reads of the clock: a whole batch of cheap items
# (``max_batch`` is 256 by default), so the clock is read about once per batch.
_MAX_STRIDE = 256


@attrs.define(slots=True, eq=False)
class Pacing:
    """One actor's quantum, its deadline and its clock stride.

    Invariant: ``deadline`` is when the current quantum ends; ``stride`` items are
    handled between two reads of the clock.
    """

    quantum: float
    set_state: Callable[[ActorState], None]
    now: Callable[[], float] = trio.current_time
    deadline: float = 0.0
    stride: int = 1
    last_check: float = 0.0
    partial: int = 0
    """How many items of the current run a caller leaving :meth:`strides` mid-run
    handled (set just before it leaves)."""
    timings: HandlingTimes | None = None
    """Fed the time of each call of :meth:`strides` when metrics are served."""

    def start(self) -> None:
        """Begin a fresh quantum now (bind the running clock first)."""
        self.now = trio.lowlevel.current_clock().current_time
        self.deadline = self.now() + self.quantum

    def restart(self) -> None:
        """Begin a fresh quantum (after a wait: the time waiting was not spent)."""
        self.deadline = self.now() + self.quantum

    def over(self) -> bool:
        """Whether the quantum is spent (reads the clock)."""
        return self.now() >= self.deadline

    async def yield_(self) -> None:
        """Spend a checkpoint so other actors run; then start a fresh quantum."""
        self.set_state(ActorState.READY)
        await trio.lowlevel.checkpoint()
        self.deadline = self.now() + self.quantum
        self.set_state(ActorState.RUNNING)

    def spent(self, deadline: float) -> bool:
        """Read the clock: True once ``deadline`` has passed; otherwise adapt the stride."""
        checked = self.now()
        took, self.last_check = checked - self.last_check, checked
        budget = self.quantum / 16
        if took < budget:
            self.stride = min(self.stride * 2, _MAX_STRIDE)
        elif self.stride > 1:
            # Costly items: at once down to what fits the budget at the cost just seen
            # (a wide stride halved step by step would overrun many quanta).
            self.stride = max(1, min(self.stride // 2, int(self.stride * budget / took)))
        return checked >= deadline

    def strides(
        self, limit: int, began: float | None = None, *, timed: bool = True
    ) -> Iterator[int]:
        """The sizes of the next runs of items, one stride each, until ``limit`` items
        were given out or the quantum is spent (the clock is read between two runs;
        ``began``: the caller read it just now).

        This is the one stride countdown: callers handle each run with a plain loop
        (or ``list.extend``), so the per-item path holds no counter. ``timed=False``:
        the runs are not the module's hook (copies made for each out-link), so they do
        not feed the handling times.
        """
        deadline = self.deadline
        if began is None:
            began = self.now()
        self.last_check = began
        left, size, at_deadline = limit, 0, False
        try:
            while left > 0:
                size = self.stride if self.stride < left else left
                yield size
                left -= size  # after: a run an item raised in is not timed (nor counted)
                if left and self.spent(deadline):
                    at_deadline = True
                    break
        except GeneratorExit:
            # The caller left mid-run: what it handled of that run is ``partial`` (a
            # source that found its end says how many it got; a raising item, none).
            left -= self.partial
            size = self.partial
            raise
        finally:  # the runs ended: all given out, the deadline, or left early
            self.partial = 0
            if self.timings is not None and timed:
                self._timed(began, limit - left, 0 if at_deadline else size)

    def _timed(self, began: float, handled: int, last_run: int) -> None:
        """Feed the handling times from the clock reads made anyway: the items before
        the last one took ``last_check - began``; the last run (``last_run`` items
        handled after it) counts at their mean. Only a batch of one run reads the clock."""
        assert self.timings is not None
        timed = handled - last_run
        if timed > 0:
            self.timings.observe((self.last_check - began) * handled / timed, handled)
        elif handled:
            self.timings.observe(self.now() - began, handled)
