"""Progressive modules: long computations in steps that fit a time quantum.

A :class:`Progressive` module does its work in calls of ``run_step(run_number,
step_size, quantum)``: each call handles up to ``step_size`` units, posts partial
results, and says whether to call it again (``READY``), to wait for input
(``BLOCKED``) or that it is done (``TERMINATED``). The runtime measures how long units
take and picks the next ``step_size`` so a step fits the quantum; between steps it
checkpoints, so a CPU-heavy progressive module never starves the other actors.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ._checks import check_flag
from ._module import Check, Module, ModuleKind, optional_seconds, required, units
from ._ports import Port

__all__ = ["Progressive", "Step", "StepState"]


class StepState(enum.Enum):
    """What a progressive module wants after a step."""

    READY = "ready"
    """Call run_step again."""
    BLOCKED = "blocked"
    """Wait until new input arrives (or every input has ended)."""
    TERMINATED = "terminated"
    """Done. The module ends and its end of stream flows downstream."""


@attrs.frozen
class Step:
    """The result of one ``run_step``: the next state and how many units were done."""

    state: StepState
    done: int = 0


class Progressive(Module):
    """A module that computes progressively. Override :meth:`run_step`.

    Attributes:
        step_size: Units for the first step, before any speed was measured.
        max_step_size: The most units one step may be given.
        quantum: The time a step should take, in seconds; ``None`` uses the system's.
        interactive: Whether new input resurrects it after it terminated.
    """

    kind = ModuleKind.PROGRESSIVE
    inputs: ClassVar[Any] = {}
    outputs: ClassVar[Any] = {"out": Port(object)}
    step_size: int = 100
    max_step_size: int = 1_000_000
    quantum: float | None = None
    interactive: bool = False
    """When True, returning ``TERMINATED`` does not end the module: it stays
    *terminated* until new input arrives, which resurrects it (``run_step`` is called
    again). It ends for good when every input has ended."""

    _required_hook = "run_step"
    _runtime_hooks = ("run_step",)
    _setting_checks: ClassVar[Mapping[str, Check]] = {
        "step_size": units,
        "max_step_size": units,
        "quantum": optional_seconds,
        "interactive": check_flag,
    }

    @required
    def run_step(self, run_number: int, step_size: int, quantum: float) -> Step:
        """Do up to ``step_size`` units of work; may be async."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement run_step()")

    # Helpers for run_step -----------------------------------------------------------

    def read(self, port: str = "in", limit: int | None = None) -> list[Any]:
        """Take what arrived on input ``port`` since the last read (at most ``limit``)."""
        taken: list[Any] = self._bound().read_port(port, limit)
        return taken

    def read_synced(
        self,
        ports: Sequence[str],
        *,
        key: Callable[[Any], Hashable] | None = None,
        limit: int | None = None,
    ) -> list[tuple[Any, ...]]:
        """Take only what *every* port in ``ports`` has produced, joined into tuples.

        With ``key=None`` the join is by sequence: the n-th item of each port together.
        With a ``key`` (``lambda item: item.id`` for :class:`Data` derived from the same
        upstream item), items are matched by key, in the first port's order; items with
        the same key pair up in arrival order. Items that have no partner yet stay in
        their links, so a faster input is held back within its buffer (and its producer
        waits when the buffer is full). Items that can never be joined are dropped and
        counted ``unmatched``: those waiting for an input that has ended, and, when every
        input is full and nothing waiting can be matched, the oldest of each input.
        """
        taken: list[tuple[Any, ...]] = self._bound().read_synced(ports, key, limit)
        return taken

    def has_new(self, *ports: str) -> bool:
        """Whether any of ``ports`` (every input port if none given) has unread items."""
        return any(self._waiting(port) for port in ports or self._input_ports())

    def all_have_new(self, *ports: str) -> bool:
        """Whether every one of ``ports`` (every input port if none given) has unread
        items: the usual condition for a step that combines its inputs."""
        return all(self._waiting(port) for port in ports or self._input_ports())

    def _input_ports(self) -> tuple[str, ...]:
        return self._bound().input_ports()

    def _waiting(self, port: str) -> int:
        return self._bound().waiting(port)

    def inputs_done(self) -> bool:
        """Whether every input has ended and been read to the end."""
        return self._bound().inputs_done()

    def post(self, item: Any, port: str = "out") -> None:
        """Post a (partial) result; it is sent when the step returns."""
        self._bound().post(item, port)
