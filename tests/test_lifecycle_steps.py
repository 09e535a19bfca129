"""The lifecycle steps shared by System, Actor and Job: each error wrapped and logged once."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

import actorflow as af
from actorflow._hooks import call_hook
from actorflow._lifecycle import TASK_EVENTS, cleanup, construct, validate
from actorflow._logging import get_logger


class Built:
    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size

    def validate(self) -> None:
        if self.size == 0:
            raise ValueError("size must not be 0")

    async def cleanup(self) -> None:
        if self.size == 13:
            raise OSError("cannot close")
        if self.size == 99:
            await trio.sleep_forever()


def failures(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["log_level"] == "error"]


def test_construct_builds_from_the_config() -> None:
    """A constructor that accepts its config gives the object."""
    assert construct("m", Built, {"size": 3}, get_logger(actor="m")).size == 3


def test_construct_failure_is_an_initialization_error_logged_once(
    logs: list[dict[str, Any]],
) -> None:
    """The constructor's error becomes the cause of an InitializationError naming the
    module, and one actor.failed event says so."""
    with pytest.raises(af.InitializationError, match=r"module 'm' failed in init") as caught:
        construct("m", Built, {"size": -1}, get_logger(actor="m"))
    assert isinstance(caught.value.__cause__, ValueError)
    (failure,) = failures(logs)
    assert failure.pop("exc_info") is caught.value.__cause__  # the traceback travels too
    assert failure == {
        "event": "actor.failed",
        "log_level": "error",
        "actor": "m",
        "phase": "init",
        "error": "ValueError: size must be >= 0",
    }


async def test_validate_failure_is_a_validation_error_logged_once(
    logs: list[dict[str, Any]],
) -> None:
    """validate() raising becomes a ValidationError, its cause the hook's error."""
    built = Built(0)
    with pytest.raises(af.ValidationError, match="size must not be 0") as caught:
        await validate("t", built.validate, call_hook, get_logger(task="t"), TASK_EVENTS)
    assert isinstance(caught.value.__cause__, ValueError)
    assert [(e["event"], e["phase"]) for e in failures(logs)] == [("task.failed", "validate")]


async def test_cleanup_returns_its_error_instead_of_raising(
    logs: list[dict[str, Any]],
) -> None:
    """A failed cleanup is given back (the caller decides where it goes), logged once."""
    log = get_logger(actor="m")
    assert await cleanup("m", Built(1).cleanup, call_hook, math.inf, log) is None
    error = await cleanup("m", Built(13).cleanup, call_hook, math.inf, log)
    assert isinstance(error, af.CleanupError)
    assert isinstance(error.__cause__, OSError)
    assert [(e["event"], e["error"]) for e in failures(logs)] == [
        ("actor.cleanup_failed", "OSError: cannot close")
    ]


async def test_cleanup_that_overruns_its_limit_is_a_cleanup_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A cleanup still running after its limit is cancelled and reported with the limit."""
    error = await cleanup("m", Built(99).cleanup, call_hook, 2.0, get_logger(actor="m"))
    assert isinstance(error, af.CleanupError)
    assert error.__cause__ is None
    assert str(error) == "module 'm' failed in cleanup: cleanup() did not finish within 2 s"
