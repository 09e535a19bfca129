"""Running trio from synchronous code so that a second Ctrl-C always ends the program.

The first Ctrl-C is trio's: with ``restrict_keyboard_interrupt_to_checkpoints`` it reaches
the main task at its next checkpoint, so the system stops in order. Code that never
reaches a checkpoint (a sync ``cleanup()`` that hangs on the event loop) would then keep
the program alive until SIGKILL; the second Ctrl-C is raised where the program is, at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TypeVar

import trio

__all__ = ["run_interruptible"]

_T = TypeVar("_T")


class _SecondInterrupt:
    """SIGINT handler around trio's: the first goes to trio, any later one is raised."""

    def __init__(self, first: Callable[[int, FrameType | None], object]) -> None:
        self.first = first
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.first(signum, frame)


def _arm() -> None:
    """Wrap the SIGINT handler trio installed (if it did: main thread, default before)."""
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if callable(current) and current is not signal.default_int_handler:
        signal.signal(signal.SIGINT, _SecondInterrupt(current))


def run_interruptible(main: Callable[[], Awaitable[_T]]) -> _T:
    """``trio.run(main)`` with Ctrl-C delivered at checkpoints, and a second Ctrl-C
    while the first is handled raised as :class:`KeyboardInterrupt` at once."""
    in_main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if in_main else None

    async def armed() -> _T:
        _arm()
        return await main()

    try:
        return trio.run(armed, restrict_keyboard_interrupt_to_checkpoints=True)
    finally:
        # Trio restores the handler only if it is still its own: put back the first.
        if in_main and isinstance(signal.getsignal(signal.SIGINT), _SecondInterrupt):
            signal.signal(signal.SIGINT, before)
