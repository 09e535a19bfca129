"""Errors: a lone error let out of a group keeps its chain, and no chain loops."""

from __future__ import annotations

import pytest
import trio

import actorflow as af
from actorflow._exceptions import reraise, single_errors


def chain_of(error: BaseException) -> list[BaseException]:
    """The error and every cause and context below it, failing on a loop."""
    seen: list[BaseException] = []
    stack = [error]
    while stack:
        exc = stack.pop()
        assert all(exc is not other for other in seen), f"{exc!r} is in its own chain"
        seen.append(exc)
        stack.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
    return seen


def test_a_lone_error_keeps_its_cause() -> None:
    """Unwrapping a one-error group gives the error with its own __cause__."""
    cause = KeyError("key")
    error = ValueError("value")
    error.__cause__ = cause
    with pytest.raises(ValueError, match="value") as caught, single_errors():
        raise ExceptionGroup("group", [error])
    assert caught.value is error
    assert caught.value.__cause__ is cause


async def test_a_lone_error_from_a_nursery_keeps_its_context() -> None:
    """An error raised while handling another keeps that one as its __context__, not
    the group it travelled in."""

    async def fail() -> None:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("second")  # noqa: B904 - the implicit context is the point

    with pytest.raises(ValueError, match="second") as caught, single_errors():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
    assert isinstance(caught.value.__context__, KeyError)
    assert not isinstance(caught.value.__context__, BaseExceptionGroup)


def test_a_lone_error_is_never_its_own_cause() -> None:
    """An error whose cause is the group that holds it comes out without that loop."""
    error = ValueError("value")
    group = ExceptionGroup("group", [error])
    error.__cause__ = group
    with pytest.raises(ValueError, match="value") as caught, single_errors():
        raise group
    assert caught.value.__cause__ is None
    chain_of(caught.value)


def test_a_cause_loop_is_cut_where_it_closes() -> None:
    """Two errors that are each other's cause: the loop is cut, the outer link kept."""
    outer = RuntimeError("outer")
    inner = ValueError("inner")
    outer.__cause__ = inner
    inner.__cause__ = outer
    with pytest.raises(RuntimeError) as caught:
        reraise(outer)
    assert caught.value.__cause__ is inner
    assert inner.__cause__ is None
    chain_of(caught.value)


def test_a_cause_shared_with_the_context_is_kept() -> None:
    """``raise X from exc`` inside ``except exc`` makes exc both cause and context: that is
    no loop, and both stay."""
    try:
        try:
            raise KeyError("key")
        except KeyError as exc:
            raise ValueError("value") from exc
    except ValueError as error:
        caught = error
    with pytest.raises(ValueError, match="value") as raised:
        reraise(caught)
    assert isinstance(raised.value.__cause__, KeyError)
    assert raised.value.__context__ is raised.value.__cause__


def test_several_errors_stay_a_group() -> None:
    """A group with two real errors is left as it is."""
    with pytest.raises(ExceptionGroup), single_errors():
        raise ExceptionGroup("group", [ValueError("a"), KeyError("b")])


def test_escalation_chain_stops_at_a_loop() -> None:
    """EscalationError.chain lists each error once even if a cause points back."""
    cause = af.RunError("b", "boom")
    error = af.EscalationError("root", "b", cause, restarts=1, max_restarts=0, period=5.0)
    cause.__cause__ = error
    assert error.chain == (error, cause)
