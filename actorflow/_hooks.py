"""Calling user hooks that may be sync or async, found out at run time.

A hook's shape is found with :mod:`inspect` once per function, not once per call: a
restart builds a new module instance whose bound methods wrap the same functions, so
the answers are cached on the function (``__func__`` of a bound method) in weak maps
that forget a function when it goes away.
"""

from __future__ import annotations

import enum
import inspect
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ._module import Many

__all__ = [
    "HookStyle",
    "accepts_port",
    "call_hook",
    "call_item_hook",
    "hook_style",
    "learned_sync",
    "learn_style",
    "result_style",
    "results_of",
]


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


_T = TypeVar("_T")

_styles: weakref.WeakKeyDictionary[Any, HookStyle] = weakref.WeakKeyDictionary()
"""The style of each function seen; a bound method is classified as its function."""
_ports_bound: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Whether a bound method takes the port, by its ``__func__`` (``self`` is not counted)."""
_ports_plain: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Whether a plain callable takes the port, by itself."""


def _cached(cache: weakref.WeakKeyDictionary[Any, _T], key: Any, find: Callable[[], _T]) -> _T:
    """``cache[key]``, found and remembered on first use (a key that cannot be weakly
    referenced or hashed, a builtin say, is found every time)."""
    try:
        return cache[key]
    except KeyError:
        pass
    except TypeError:
        return find()
    # The lookup took a weak reference and hashed it: storing it can no longer fail.
    value = cache[key] = find()
    return value


def hook_style(fn: Callable[..., Any]) -> HookStyle:
    """Classify a hook by looking at the function itself (bound methods included)."""
    return _cached(_styles, getattr(fn, "__func__", fn), lambda: _find_style(fn))


def _find_style(fn: Callable[..., Any]) -> HookStyle:
    """The outermost shape that says something wins: an ``async def`` wrapper of a sync
    function is async; a sync ``functools.wraps`` wrapper of an ``async def`` returns
    what it wraps returns, a coroutine."""
    for target in _wrapper_chain(fn):
        if inspect.isasyncgenfunction(target):
            return HookStyle.ASYNC_GEN
        if inspect.iscoroutinefunction(target):
            return HookStyle.ASYNC
        if inspect.isgeneratorfunction(target):
            return HookStyle.SYNC_GEN
    return HookStyle.SYNC


def _wrapper_chain(fn: Callable[..., Any]) -> list[Callable[..., Any]]:
    """``fn``, then what it wraps (``__wrapped__``), and so on; bound methods as their
    functions."""
    chain: list[Callable[..., Any]] = []
    current: Any = fn
    while current is not None and len(chain) < 100 and all(current is not c for c in chain):
        chain.append(current)
        current = getattr(getattr(current, "__func__", current), "__wrapped__", None)
    return chain


_verified: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
"""Sync hooks whose first call returned no awaitable."""


def learned_sync(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``, classified sync, was seen to return something not awaitable
    (until then the runtime awaits what it returns, if awaitable: a decorator without
    ``functools.wraps`` can hide an ``async def``)."""
    return _cached(_verified, getattr(fn, "__func__", fn), lambda: False)


def learn_style(fn: Callable[..., Any], result: Any) -> HookStyle:
    """Remember what a sync-looking ``fn`` returned when first called: an awaitable, a
    generator or an async generator (a decorator without ``functools.wraps`` hid an
    ``async def`` or a generator function) makes it that style from now on; anything
    else confirms it sync. Returns the style learnt."""
    style = result_style(result)
    key = getattr(fn, "__func__", fn)
    try:
        if style is HookStyle.SYNC:
            _verified[key] = True
        else:
            _styles[key] = style
            _verified.pop(key, None)
    except TypeError:  # pragma: no cover - not weakly referenceable: learnt every time
        pass
    return style


def result_style(result: Any) -> HookStyle:
    """The style of hook that returns ``result`` (a generator object: a generator
    function's)."""
    if inspect.isgenerator(result):
        return HookStyle.SYNC_GEN
    if inspect.isasyncgen(result):
        return HookStyle.ASYNC_GEN
    if inspect.isawaitable(result):
        return HookStyle.ASYNC
    return HookStyle.SYNC


async def results_of(result: Any, style: HookStyle) -> Any:
    """What a sync-looking hook's ``result`` of ``style`` (see :func:`result_style`)
    stands for: awaited, or its items gathered in :class:`Many`."""
    if style is HookStyle.ASYNC:
        return await result
    if style is HookStyle.SYNC_GEN:
        return Many(list(result))
    if style is HookStyle.ASYNC_GEN:
        return Many([value async for value in result])
    return result


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
    func = getattr(fn, "__func__", None)
    if func is not None and getattr(fn, "__self__", None) is not None:
        return _cached(_ports_bound, func, lambda: _find_accepts_port(fn))
    return _cached(_ports_plain, fn, lambda: _find_accepts_port(fn))


def _find_accepts_port(fn: Callable[..., Any]) -> bool:
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
    if style is not HookStyle.SYNC or inspect.isawaitable(result):
        result = await result
    if result is None:
        return []
    if type(result) is Many:
        return list(result.items)
    return [result]
