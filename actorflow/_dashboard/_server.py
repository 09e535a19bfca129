"""The dashboard's web server: starlette routes, served by hypercorn on the run's own loop.

``/`` is the page, ``/static/*`` its script and style (shipped in the package: nothing
is fetched from elsewhere, and the page's content security policy says so),
``/api/layout`` the laid-out graph, ``/api/status`` the current snapshot and
``/events`` the snapshots as server-sent events, one per refresh of the board.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ._board import Board

__all__ = ["make_app", "serve"]

STATIC = Path(__file__).parent / "static"

_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""What every answer carries: nothing from elsewhere runs in the page."""


def make_app(board: Board) -> Starlette:
    """The dashboard's ASGI application, showing ``board``."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_HEADERS)

    async def layout(request: Request) -> Response:
        return JSONResponse(board.layout, headers=_HEADERS)

    async def status(request: Request) -> Response:
        return Response(board.encoded(), media_type="application/json", headers=_HEADERS)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _stream(board),
            media_type="text/event-stream",
            headers={**_HEADERS, "X-Accel-Buffering": "no"},
        )

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/layout", layout),
            Route("/api/status", status),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


async def _stream(board: Board) -> AsyncIterator[str]:
    """Each snapshot of the board from now on, as a server-sent event (the current one
    first, so a page that connects shows the graph at once)."""
    seen = board.version - 1
    board.watchers += 1
    try:
        while True:
            seen, _ = await board.newer(seen)
            yield f"event: status\ndata: {board.encoded()}\n\n"
    finally:
        board.watchers -= 1


async def serve(
    board: Board, listening: socket.socket, *, task_status: trio.TaskStatus[str]
) -> None:
    """Serve the dashboard of ``board`` on the bound socket ``listening`` until cancelled;
    reports the page's URL once it is served."""
    config = Config()
    config.accesslog = None
    # Its own logger: a warning (a broken connection) reaches stderr, nothing else does.
    config.errorlog = logging.getLogger("actorflow.dashboard")
    config.graceful_timeout = 0.5
    host, port = listening.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    sockets = Sockets(secure_sockets=[], insecure_sockets=[listening], quic_sockets=[])
    # starlette's app is an ASGI app; hypercorn's types spell ASGI more narrowly.
    app = wrap_app(make_app(board), config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: worker_serve(app, config, sockets=sockets, task_status=task_status)
        )
        task_status.started(f"http://{shown}:{port}/")
