"""Signals: how SIGINT (Ctrl-C) and SIGTERM reach a running system, and how they end it.

A first signal asks the system to stop gracefully, a second to cancel; each is handed to
the event loop through :meth:`trio.lowlevel.TrioToken.run_sync_soon` (safe from a signal
handler), so it acts between tasks, never in the middle of a module's code. A signal that
arrives while the one before it has waited half a second for the loop (the loop is stuck
in sync code: a ``cleanup()`` that hangs) or a third signal is raised at once, where the
program is, so a stuck program can always be ended.

:func:`trio.open_signal_receiver` is not used here: it merges a signal that repeats
before it is read (a second SIGTERM must cancel), it re-raises unread signals through the
previous handler when it closes (the default SIGTERM action would kill the process after
its cleanups, before the summary), and it cannot act while the loop is stuck.

:func:`run_interruptible` is the older shape, kept for jobs: ``trio.run`` with Ctrl-C
delivered at checkpoints, and a second Ctrl-C raised at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import TypeVar

import attrs
import trio

__all__ = [
    "STOP_SIGNALS",
    "STUCK_AFTER",
    "SignalRequests",
    "Terminated",
    "ending_as_signals",
    "exception_for",
    "exit_status",
    "handling_signals",
    "raising_on_signals",
    "run_interruptible",
    "signal_ended",
    "signal_name",
]

_T = TypeVar("_T")

STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a system: Ctrl-C, and what service managers send."""


STUCK_AFTER = 0.5
"""Seconds a signal may wait for the event loop before the loop counts as stuck."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised at once where the program is (during start-up, or a signal that
    could not wait). A :exc:`KeyboardInterrupt` so that every place that lets Ctrl-C
    through lets it through too; the faces turn it into ``SystemExit(143)``."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15: the name operators know."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The exit status of a program a signal ended: 128 + its number, as shells report
    (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


def exception_for(signum: int) -> BaseException:
    """What a program stopped by ``signum`` raises once the system has ended:
    ``KeyboardInterrupt`` for SIGINT (Python's convention), ``SystemExit(128 + n)`` for
    another signal (ends the program with the status a shell reports for it, and runs
    ``finally`` blocks on the way)."""
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(exit_status(signum))


def signal_ended(exc: BaseException) -> int | None:
    """The signal behind ``exc`` if it is how a signal ends a program, else None."""
    if isinstance(exc, Terminated):
        return exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, SystemExit) and exc.code == exit_status(signal.SIGTERM):
        return signal.SIGTERM
    if isinstance(exc, trio.TrioInternalError) and exc.__cause__ is not None:
        return signal_ended(exc.__cause__)  # raised at once inside trio's own code
    return None


@contextlib.contextmanager
def ending_as_signals() -> Iterator[None]:
    """Let a program stopped by a signal end as that signal asks: a SIGTERM raised at
    once (:class:`Terminated`) leaves as ``SystemExit(143)``, a signal raised inside
    trio's own code (``TrioInternalError``) as what it stands for."""
    try:
        yield
    except BaseException as exc:
        signum = signal_ended(exc)
        if signum is None or isinstance(exc, SystemExit) or type(exc) is KeyboardInterrupt:
            raise
        raise exception_for(signum) from exc


def _raise_now(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _installed(handler: Callable[[int, FrameType | None], object]) -> Iterator[bool]:
    """``handler`` for SIGINT and SIGTERM while the block runs, then the previous ones.

    Only in the main thread (Python allows no other), and a signal the process was told
    to ignore (``SIG_IGN``: a background job's SIGINT, ``nohup``) stays ignored. Yields
    whether anything was installed.
    """
    if not _in_main_thread():
        yield False
        return
    previous: dict[int, object] = {}
    try:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
        yield bool(previous)
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)  # type: ignore[arg-type]


def _in_trio_core() -> bool:
    """Whether the interrupted code is trio's own (KeyboardInterrupt-protected): an
    exception raised there would break the run, not end it."""
    return trio.lowlevel.in_trio_run() and trio.lowlevel.currently_ki_protected()


@attrs.define(eq=False)
class _RaiseOnce:
    """The first signal is raised at once; later ones are ignored while it ends the
    program (one arriving as the first is reported would print a traceback). One that
    comes while trio's own code runs is held for the handler installed next."""

    first: int | None = None
    held: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.first is not None:
            return
        if _in_trio_core():
            self.held = signum
            return
        self.first = signum
        raise _raise_now(signum)


def raising_on_signals() -> contextlib.AbstractContextManager[bool]:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated` at once,
    while the block runs: for start-up, where nothing runs yet that needs stopping."""
    return _installed(_RaiseOnce())


@attrs.define(eq=False)
class SignalRequests:
    """The SIGINT/SIGTERM handler of one trio run: each signal becomes a call of
    ``on_signal(signum, count)`` in the run (``count`` 1 for the first).

    Invariant: ``waiting`` counts signals handed to the run and not yet taken up. One
    that arrives while the oldest of them has waited ``STUCK_AFTER`` seconds, the
    third, or one while ``at_once``, is raised at once, unless it interrupted trio's own
    code (then the loop is not stuck, and the signal is handed over like the others).
    """

    token: trio.lowlevel.TrioToken
    on_signal: Callable[[int, int], object]
    received: list[int] = attrs.field(factory=list)
    """Every signal, in order of arrival."""
    waiting: int = 0
    since: float = 0.0
    """When the oldest signal still waiting was handed over (``time.monotonic()``)."""
    at_once: bool = False
    """Raise every signal at once (see :meth:`raising`)."""
    ticked: float | None = None
    """When the loop last said it is alive (:meth:`tick`); None while nobody ticks."""

    def tick(self) -> None:
        """The loop is alive: a signal now can wait for it."""
        self.ticked = time.monotonic()

    def untick(self) -> None:
        """Nobody says the loop is alive any more (the system has ended)."""
        self.ticked = None

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Raise signals at once while the block runs: for sync start-up code (module
        constructors), where the loop cannot take them up and nothing needs stopping."""
        before, self.at_once = self.at_once, True
        try:
            yield
        finally:
            self.at_once = before

    @property
    def first(self) -> int | None:
        """The signal that started the stop, if any arrived."""
        return self.received[0] if self.received else None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        at_once = self.at_once or self._stuck() or len(self.received) > 2
        if at_once and not _in_trio_core():
            raise _raise_now(self.received[0])  # the first says how the program ends
        if not self.waiting:
            self.since = time.monotonic()
        self.waiting += 1
        try:
            self.token.run_sync_soon(self._deliver, signum, len(self.received))
        except trio.RunFinishedError:
            self.waiting -= 1
            raise _raise_now(self.received[0]) from None

    def _stuck(self) -> bool:
        """A signal has waited for the loop longer than the loop ever takes to look, or
        the loop has not ticked for that long: it is held by sync code (a hung sync
        ``cleanup()``). Two signals sent together are not a stuck loop."""
        now = time.monotonic()
        if self.waiting > 0 and now - self.since >= STUCK_AFTER:
            return True
        return self.ticked is not None and now - self.ticked >= STUCK_AFTER

    def _deliver(self, signum: int, count: int) -> None:
        """In the run: a crash here would be trio's internal error, so none may escape."""
        self.waiting -= 1
        with contextlib.suppress(Exception):
            self.on_signal(signum, count)


@contextlib.contextmanager
def handling_signals(on_signal: Callable[[int, int], object]) -> Iterator[SignalRequests | None]:
    """Send SIGINT and SIGTERM to ``on_signal`` in the current trio run while the block
    runs, and put the previous handlers back after; None outside the main thread."""
    requests = SignalRequests(trio.lowlevel.current_trio_token(), on_signal)
    before = signal.getsignal(signal.SIGTERM)
    with _installed(requests) as installed:
        if isinstance(before, _RaiseOnce) and before.held is not None:
            requests(before.held, None)  # it came just before: it is ours
            before.held = None
        yield requests if installed else None


# -- jobs: Ctrl-C at checkpoints, a second one at once ----------------------------------


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
    if not _in_main_thread():
        return
    current = signal.getsignal(signal.SIGINT)
    if callable(current) and current is not signal.default_int_handler:
        signal.signal(signal.SIGINT, _SecondInterrupt(current))


def run_interruptible(main: Callable[[], Awaitable[_T]]) -> _T:
    """``trio.run(main)`` with Ctrl-C delivered at checkpoints, and a second Ctrl-C
    while the first is handled raised as :class:`KeyboardInterrupt` at once."""
    in_main = _in_main_thread()
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
