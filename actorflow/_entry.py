"""The ``actorflow`` command's entry point, kept apart from everything heavy.

A signal that arrives while the command starts (Python importing trio, structlog, the
runtime and the user's modules) must be one line and the signal's exit status, like one
during the rest of start-up, never a traceback: this module takes SIGINT and SIGTERM
before it imports the command line, and imports nothing but ``signal`` and ``sys``.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["main"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _EarlySignal(BaseException):
    """A signal while the command line itself was being imported."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _early(signum: int, frame: FrameType | None) -> None:
    raise _EarlySignal(signum)


def main() -> int:
    """Import the command line with SIGINT and SIGTERM taken, then run it."""
    before = {signum: signal.signal(signum, _early) for signum in _SIGNALS}
    try:
        from ._cli import main as command
    except _EarlySignal as exc:
        name = signal.Signals(exc.signum).name
        said = "interrupted" if exc.signum == signal.SIGINT else f"terminated ({name})"
        print(f"{said}: stopped while starting, no module ran", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    code = command()
    # The outcome is decided and said: a signal while the interpreter shuts down (which
    # takes a while) must not turn it into a death by signal with nothing said.
    for signum in _SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    return code
