"""Every error actorflow raises on purpose.

All of them derive from :class:`ActorflowError`, so ``except actorflow.ActorflowError``
catches anything the runtime reports; each one also derives from the builtin it refines
where there is one, so ordinary ``except ValueError`` code keeps working. Every message
names the module, port, link or key at fault.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import attrs
import trio

from ._checks import MAX_LINE, clip
from ._urls import redact_text

__all__ = [
    "ActorflowError",
    "CleanupError",
    "EscalationError",
    "GraphError",
    "GraphFileError",
    "GraphProblem",
    "InitializationError",
    "LifecycleError",
    "RegistryError",
    "RunError",
    "SerializationError",
    "ServeError",
    "StoreError",
    "ValidationError",
    "reraise",
    "single_errors",
]


class ActorflowError(Exception):
    """Base class of every error raised by actorflow."""


@attrs.frozen
class GraphProblem:
    """One thing wrong with a graph, as found by validation.

    Attributes:
        message: What is wrong, in a sentence that names the culprit.
        module: The module at fault, when there is one.
        port: The port at fault, when there is one.
    """

    message: str
    module: str | None = None
    port: str | None = None

    def __str__(self) -> str:
        return self.message


class GraphError(ActorflowError, ValueError):
    """A graph is not valid; nothing was started.

    Validation collects *every* problem before raising, so one run shows them all.

    Attributes:
        problems: Each problem found, in the order validation found them.
    """

    def __init__(self, problems: Sequence[GraphProblem]) -> None:
        self.problems: tuple[GraphProblem, ...] = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {clip(p.message, MAX_LINE)}" for p in self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid graph ({count} {noun}):\n{lines}")


class ChangeError(ActorflowError, RuntimeError):
    """A change to the running graph (``System.add``, ``remove``, ``stop_module``,
    ``start_module``, ``replace``, ``add_link``, ``remove_link``) was refused because
    of the system's or the module's state (the system is stopping, the module is
    stopped already, waits to be restarted, ...); nothing was changed."""


class RegistryError(ActorflowError, LookupError):
    """A module cannot be found by name: not enabled, or its import path is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(clip(message, MAX_LINE))


class GraphFileError(ActorflowError, ValueError):
    """A graph file is missing, not TOML, or describes something invalid.

    Attributes:
        path: The file.
        problems: Every problem found, each naming the table and key at fault.
    """

    def __init__(self, path: object, problems: list[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {clip(problem, MAX_LINE)}" for problem in self.problems)
        super().__init__(f"{clip(str(path), MAX_LINE)}: invalid graph file:\n{lines}")


class LifecycleError(ActorflowError):
    """A module hook failed; the subclass says which phase.

    Attributes:
        module: The name of the module whose hook failed.
        phase: ``"init"``, ``"validate"``, ``"run"`` or ``"cleanup"``.
    """

    phase: str = "lifecycle"

    def __init__(self, module: str, message: str) -> None:
        self.module = module
        super().__init__(f"module {clip(repr(module))} failed in {self.phase}: {message}")


class InitializationError(LifecycleError):
    """Constructing a module raised; no module was started."""

    phase = "init"


class ValidationError(LifecycleError, ValueError):
    """A module's ``validate()`` hook rejected its configuration; no module was started."""

    phase = "validate"


class RunError(LifecycleError):
    """A module raised while it ran; the system was stopped.

    Attributes:
        message_id: The id of the item being handled when it failed, or ``None`` when the
            failure was not tied to an item (a source's ``start()``, say).
    """

    phase = "run"

    def __init__(self, module: str, message: str, *, message_id: str | None = None) -> None:
        self.message_id = message_id
        if message_id is not None:
            message = f"{message} (while handling message {message_id})"
        super().__init__(module, message)


class CleanupError(LifecycleError):
    """A module's ``cleanup()`` hook raised.

    Raised only when nothing else failed: a cleanup failure never hides the error that
    stopped the system; it is attached to that error as a note instead.
    """

    phase = "cleanup"


class SerializationError(ActorflowError, TypeError):
    """A value cannot be encoded to, or decoded from, msgpack.

    Attributes:
        path: Where in the value the problem is, such as ``fields['pos'][2]``.
    """

    def __init__(self, path: str, message: str, *, doing: str = "serialise") -> None:
        self.path = path
        super().__init__(f"cannot {doing} {path}: {message}")


class StoreError(ActorflowError, OSError):
    """A shared data store cannot be opened: its file is a directory, lies in a missing
    directory, is not an SQLite database, or cannot be written.

    Attributes:
        path: The path as given.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        super().__init__(f"{clip(str(path), MAX_LINE)!r}: cannot open it as a store: {reason}")


class ServeError(ActorflowError, OSError):
    """A server of the system (its metrics endpoint) cannot listen where it was asked
    to: the port is in use, or the host is no address of this machine.

    Attributes:
        server: What would have been served (``"metrics"``).
        address: Where, as ``HOST:PORT``.
    """

    def __init__(self, server: str, address: str, reason: str) -> None:
        self.server = server
        self.address = address
        super().__init__(f"cannot serve {server} on {address}: {reason}")


class EscalationError(RunError):
    """A supervisor gave up: its children failed more often than its restart intensity
    allows. It stopped them all and failed itself, and so on up the tree.

    Attributes:
        supervisor: The supervisor that gave up.
        child: The child whose failure exceeded the intensity.
        restarts: How many restarts were asked for within ``period`` when it gave up,
            the refused one included (one more than were made).
        period: The intensity window, in seconds.
        max_restarts: The intensity limit.
    """

    def __init__(
        self,
        supervisor: str,
        child: str,
        cause: BaseException,
        *,
        restarts: int,
        max_restarts: int,
        period: float,
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.restarts = restarts
        self.max_restarts = max_restarts
        self.period = period
        self.__cause__ = cause
        origin = cause.module if isinstance(cause, LifecycleError) else child
        message_id = cause.message_id if isinstance(cause, RunError) else None
        self.phase = "run"
        detail = str(cause) if isinstance(cause, ActorflowError) else describe(cause)
        super().__init__(
            origin,
            # ``restarts`` counts the refused one too: it was asked for, not made.
            f"supervisor {supervisor!r} gave up after {max(restarts - 1, 0)} restart(s) in "
            f"{period:g} s (max_restarts={max_restarts}); last failure of child "
            f"{child!r}: {detail}",
        )
        self.message_id = message_id

    @property
    def chain(self) -> tuple[BaseException, ...]:
        """Every error from this one down to the original failure, outermost first."""
        links: list[BaseException] = [self]
        cause = self.__cause__
        while cause is not None and all(cause is not link for link in links):
            links.append(cause)
            cause = cause.__cause__
        return tuple(links)


def describe(exc: BaseException) -> str:
    """``Type: message``, with any credentials the message quotes hidden (a module's
    error naming its database URL reaches logs, summaries and the dashboard)."""
    try:
        text = redact_text(str(exc))
    except Exception as broken:  # a user's __str__ that raises must not lose the item
        text = f"<str() raised {type(broken).__name__}>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one non-cancellation exception inside ``group``, if that is all it holds."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


def _edges(exc: BaseException) -> list[tuple[str, BaseException]]:
    """What ``exc`` leads to, and how: its cause, its context and a group's members."""
    edges = [("__cause__", exc.__cause__), ("__context__", exc.__context__)]
    if isinstance(exc, BaseExceptionGroup):
        edges.extend(("member", member) for member in exc.exceptions)
    return [(how, other) for how, other in edges if other is not None]


def _break_cycles(error: BaseException) -> None:
    """Cut the cause or context link that closes a loop, anywhere below ``error``, so that
    no error is its own cause (or context), not even through a group that holds it.

    A depth-first walk: a link back to an error on the current path closes a loop. It is
    cut there; when it is a group's member (which cannot be cut), the last cause or
    context link on the path into that loop is cut instead.
    """
    done: set[int] = set()
    path: list[tuple[BaseException, list[tuple[str, BaseException]]]] = []
    position: dict[int, int] = {}
    taken: list[str] = []  # how each error on the path was reached from the one before

    def enter(exc: BaseException) -> None:
        position[id(exc)] = len(path)
        path.append((exc, _edges(exc)))

    enter(error)
    while path:
        exc, edges = path[-1]
        if not edges:
            path.pop()
            del position[id(exc)]
            done.add(id(exc))
            if taken:
                taken.pop()
            continue
        how, other = edges.pop(0)
        if id(other) in done:
            continue
        if id(other) not in position:
            taken.append(how)
            enter(other)
        elif how != "member":
            setattr(exc, how, None)
        else:
            start = position[id(other)]
            for index in range(len(path) - 1, start, -1):
                if taken[index - 1] != "member":
                    setattr(path[index - 1][0], taken[index - 1], None)
                    break


def reraise(error: BaseException) -> NoReturn:
    """Raise ``error`` as it is, from inside an ``except`` block that handles another.

    Its ``__cause__``, ``__context__`` and ``__suppress_context__`` are kept, as trio
    keeps them when a nursery lets one error out: ``raise error from None`` would drop
    its cause, and a bare ``raise error`` would make the handled error its context.
    A cause or context that leads back to ``error`` is cut, so it is never its own cause.
    """
    context, suppress = error.__context__, error.__suppress_context__
    try:
        raise error
    finally:
        error.__context__ = context
        error.__suppress_context__ = suppress
        _break_cycles(error)
        del error, context  # the traceback holds this frame: no reference cycle


@contextmanager
def single_errors() -> Iterator[None]:
    """Let an exception group that holds one real error out as that error.

    Nurseries (trio's, and the ones inside libraries such as coredis) wrap what they
    raise in groups; a user who made one mistake should see that mistake, not a group.
    The error keeps its own cause and context (see :func:`reraise`). A group with several
    errors is left as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        single = _single(group)
        if single is None:
            raise
        reraise(single)
