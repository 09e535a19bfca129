"""How user hooks are classified: once per function, whatever the instance."""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import actorflow as af
from actorflow._hooks import HookStyle, accepts_port, call_hook, hook_style
from actorflow._lifecycle import cleanup, is_default, validate
from actorflow._logging import get_logger


class Shapes:
    def plain(self, data: Any) -> Any:
        return data

    def with_port(self, data: Any, port: str) -> Any:
        return data

    def with_default(self, data: Any, scale: int = 10) -> Any:
        return data

    async def coroutine(self, data: Any) -> Any:
        return data

    def generator(self, data: Any) -> Iterator[Any]:
        yield data

    async def async_generator(self, data: Any) -> AsyncIterator[Any]:
        yield data


def test_hook_style_tells_each_shape_apart() -> None:
    """Sync, async, generator and async generator hooks are told apart."""
    shapes = Shapes()
    assert hook_style(shapes.plain) is HookStyle.SYNC
    assert hook_style(shapes.coroutine) is HookStyle.ASYNC
    assert hook_style(shapes.generator) is HookStyle.SYNC_GEN
    assert hook_style(shapes.async_generator) is HookStyle.ASYNC_GEN


def test_accepts_port_does_not_count_self() -> None:
    """A bound method's ``self`` is not its first argument; a default keeps its value."""
    shapes = Shapes()
    assert not accepts_port(shapes.plain)
    assert accepts_port(shapes.with_port)
    assert not accepts_port(shapes.with_default)
    # The plain function does count its first parameter.
    assert accepts_port(Shapes.plain)
    assert accepts_port(lambda data, port: data)


def test_hooks_are_inspected_once_per_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart's fresh instance reuses what was found for the first one."""

    class Fresh:
        def process(self, data: Any, port: str) -> Any:
            return data

    calls: list[Any] = []
    signature = inspect.signature

    def counting(fn: Any) -> inspect.Signature:
        calls.append(fn)
        return signature(fn)

    monkeypatch.setattr(inspect, "signature", counting)
    answers = {accepts_port(Fresh().process) for _ in range(3)}
    assert answers == {True}
    assert len(calls) == 1
    assert {hook_style(Fresh().process) for _ in range(3)} == {HookStyle.SYNC}


def test_unhashable_callables_are_classified_every_time() -> None:
    """A callable that cannot be cached is still classified."""

    class Callable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, data: Any, port: str) -> Any:
            return data

    hook = Callable()
    assert hook_style(hook) is HookStyle.SYNC
    assert accepts_port(hook)


async def test_base_class_hooks_that_do_nothing_are_not_called() -> None:
    """Module's own validate() and cleanup() are skipped; an override runs."""

    class Quiet(af.Sink):
        def consume(self, data: Any) -> None:
            pass

    class Loud(Quiet):
        def cleanup(self) -> None:
            raise OSError("cannot close")

    async def refuse(hook: Any) -> Any:
        raise AssertionError("a do-nothing hook was called")

    log = get_logger(actor="m")
    assert is_default(Quiet().validate)
    assert is_default(Quiet().cleanup)
    assert not is_default(Loud().cleanup)
    await validate("m", Quiet().validate, refuse, log)
    assert await cleanup("m", Quiet().cleanup, refuse, math.inf, log) is None
    error = await cleanup("m", Loud().cleanup, call_hook, math.inf, log)
    assert isinstance(error, af.CleanupError)
