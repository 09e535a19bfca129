"""Calling user hooks that may be sync or async, found out at run time."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Any

from ._module import Many

__all__ = ["HookStyle", "accepts_port", "call_hook", "call_item_hook", "hook_style"]


class HookStyle(enum.Enum):
    """How a hook produces its result."""

    SYNC = "sync"
    """A plain function: call it, use what it returns."""
    ASYNC = "async"
    """A coroutine function: await what it returns."""
    SYNC_GEN = "sync_gen"
    """A generator function: every item it yields is a result."""
    ASYNC_GEN = "async_gen"
    """An async generator function: every item it yields is a result."""


def hook_style(fn: Callable[..., Any]) -> HookStyle:
    """Classify a hook by looking at the function itself (bound methods included)."""
    target = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(target):
        return HookStyle.ASYNC_GEN
    if inspect.iscoroutinefunction(target):
        return HookStyle.ASYNC
    if inspect.isgeneratorfunction(target):
        return HookStyle.SYNC_GEN
    return HookStyle.SYNC


async def call_hook(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` and await its result when it is awaitable.

    This is for the rarely called lifecycle hooks (``validate``, ``cleanup``, ``stop``):
    the per-item hooks are classified once with :func:`hook_style` instead, so that the
    hot path never pays for ``inspect``.
    """
    result = fn(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def accepts_port(fn: Callable[..., Any]) -> bool:
    """Whether a per-item hook takes the input port name as a second argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < 2:
        return False
    # `process(self, data, scale=10)` keeps its default: only a second parameter without
    # one, or one named `port`, receives the port name.
    second = positional[1]
    return second.default is inspect.Parameter.empty or second.name == "port"


async def call_item_hook(fn: Callable[[Any], Any], style: HookStyle, item: Any) -> list[Any]:
    """Call a per-item hook of a known ``style``; return its results as a list
    (``None``: none; :class:`Many`: each of its items; anything else: itself)."""
    if style is HookStyle.SYNC_GEN:
        return list(fn(item))
    if style is HookStyle.ASYNC_GEN:
        return [value async for value in fn(item)]
    result = fn(item)
    if style is not HookStyle.SYNC:
        result = await result
    if result is None:
        return []
    if type(result) is Many:
        return list(result.items)
    return [result]
