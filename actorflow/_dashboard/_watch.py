"""What a running system starts to be watched: the dashboard's server and the board it
shows, and, when the graph has remote links, the publication of this process's view
for a dashboard elsewhere (and the reading of the others' for this one)."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from .._graph import Graph
from ._board import Board
from ._peers import process_name, publish, read_peers
from ._tracker import Tracker, Watched

if TYPE_CHECKING:
    import structlog

__all__ = ["FINAL_GRACE", "watch"]

FINAL_GRACE = 0.3
"""Seconds the pages are given to receive the last snapshot once the system has ended."""

SHARE = 9
"""A refresh that took ``t`` seconds waits at least ``SHARE * t`` for the next."""


async def watch(
    watched: Watched,
    graph: Graph,
    *,
    done: Callable[[], Awaitable[None]],
    listening: socket.socket | None,
    remote_url: str | None,
    log: structlog.typing.FilteringBoundLogger,
    task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Watch the system until ``done()`` returns; reports the dashboard's URL (``None``
    without a dashboard) once it is served."""
    tracker = Tracker(watched)
    board: Board | None = None
    serving = trio.CancelScope(shield=True)
    async with trio.open_nursery() as nursery:
        if remote_url is not None:
            nursery.start_soon(publish, tracker, remote_url, graph.name, log)
        url = None
        if listening is not None:
            board = Board(graph, watched.here, tracker, process_name())
            board.refresh()
            nursery.start_soon(_tick, board)
            if remote_url is not None:
                nursery.start_soon(read_peers, remote_url, graph.name, board.take_peers, log)
            url = await nursery.start(_serve, board, listening, serving)
            log.info("dashboard.serving", url=url)
        task_status.started(url)
        try:
            await done()
        finally:
            # Also when cancelled (a failure that escalated cancels the whole system):
            # the pages are shown how it ended, the server shielded until then.
            await _last(board)
            serving.cancel()
            nursery.cancel_scope.cancel()


async def _last(board: Board | None) -> None:
    """Show the pages the last snapshot, for at most :data:`FINAL_GRACE` seconds."""
    if board is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(FINAL_GRACE):
        board.refresh()
        if board.watchers:
            await trio.sleep(FINAL_GRACE)


async def _serve(
    board: Board,
    listening: socket.socket,
    serving: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[str],
) -> None:
    """Serve the pages in ``serving``, a scope the run's cancellation does not reach
    (it ends when :func:`watch` has shown the last snapshot)."""
    from ._server import serve  # hypercorn and starlette: only for a dashboard

    with serving:
        await serve(board, listening, task_status=task_status)


async def _tick(board: Board) -> None:
    """Refresh the board every ``interval`` seconds, or less often when a refresh takes
    long (a graph of many thousand actors): the page never takes more than about a
    tenth of the loop from the graph it shows."""
    pause = board.interval
    while True:
        await trio.sleep(pause)
        began = time.perf_counter()
        board.refresh()
        pause = max(board.interval, SHARE * (time.perf_counter() - began))
