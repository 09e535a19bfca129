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
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._address import host_named, loopback_names
from ._board import Board

__all__ = ["SEND_WITHIN", "make_app", "serve"]

SEND_WITHIN = 5.0
"""Seconds a page is given to take one write; one that reads no more is dropped."""

STATIC = Path(__file__).parent / "static"

_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""What every answer carries: nothing from elsewhere runs in the page."""


def make_app(board: Board, hosts: frozenset[str] | None = None) -> Any:
    """The dashboard's ASGI application, showing ``board``; with ``hosts``, only to a
    request that names one of them in its ``Host`` header."""

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

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/layout", layout),
            Route("/api/status", status),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    return app if hosts is None else _only_for(app, hosts)


def _host(scope: Any) -> str:
    """The host a request names in its ``Host`` header, without its port, lowercase."""
    return host_named(next((v for k, v in scope.get("headers", ()) if k == b"host"), b""))


def _only_for(app: Starlette, hosts: frozenset[str]) -> Any:
    """``app``, answering 400 to a request for a host it is not (DNS rebinding: a page
    elsewhere whose name is made to point at 127.0.0.1 must not read the dashboard)."""

    async def checked(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _host(scope) not in hosts:
            refused = PlainTextResponse("unknown host", status_code=400, headers=_HEADERS)
            await refused(scope, receive, send)
            return
        await app(scope, receive, send)

    return checked


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


class _Guarded:
    """A client's stream for hypercorn, whose writes give up after :data:`SEND_WITHIN`.

    hypercorn shields each write from cancellation, so a page that stops reading
    would hold its write, and the run, for ever once the socket's buffers are full: a
    write that waits too long closes the socket instead, as does the end of the run.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = stream.socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.move_on_after(SEND_WITHIN):
            await self.stream.send_all(data)
            return
        self.socket.close()  # a reader that fell behind: dropped
        raise trio.BrokenResourceError("the page stopped reading")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def serve(
    board: Board, listening: socket.socket, *, task_status: trio.TaskStatus[str]
) -> None:
    """Serve the dashboard of ``board`` on the bound socket ``listening`` until cancelled;
    reports the page's URL once it is served. Cancelled, it closes every client's
    socket at once, so no page, however slow, keeps the run alive."""
    config = Config()
    config.accesslog = None
    # Its own logger: a warning (a broken connection) reaches stderr, nothing else does.
    config.errorlog = logging.getLogger("actorflow.dashboard")
    host, port = listening.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    # starlette's app is an ASGI app; hypercorn's types spell ASGI more narrowly.
    named = make_app(board, loopback_names(host))
    app = wrap_app(named, config.wsgi_max_body_size, "asgi")
    context = WorkerContext(None)
    clients: set[trio.SocketStream] = set()

    async def handle(stream: trio.SocketStream) -> None:
        clients.add(stream)
        try:
            await TCPServer(app, config, context, {}, _Guarded(stream))  # type: ignore[arg-type]
        finally:
            clients.discard(stream)

    listener = trio.SocketListener(trio.socket.from_stdlib_socket(listening))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, [listener])
        task_status.started(f"http://{shown}:{port}/")
        try:
            await trio.sleep_forever()
        finally:
            for stream in list(clients):
                stream.socket.close()  # wakes a write hypercorn shields from the cancel
