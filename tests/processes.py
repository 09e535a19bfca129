"""Waiting on other processes: what tests that start real processes share."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], seconds: float = 30) -> None:
    """Poll until ``condition`` holds (it reads what other processes left: a file, a
    key), failing after ``seconds``: never a fixed sleep."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the other processes")
        time.sleep(0.02)
