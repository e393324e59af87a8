"""RoomsMiddleware: pure ASGI. Owns one path, passes everything else on, runs lifespan."""

from __future__ import annotations

import logging

from rooms._types import AnyASGIApp, Receive, Scope, Send
from rooms.engine.polling import TEXT_PLAIN, respond
from rooms.engine.server import EngineServer
from rooms.lifespan import serve_lifespan
from rooms.server import Server

logger = logging.getLogger("rooms")

SCOPE_KEY = "rooms.server"


class RoomsMiddleware:
    """Serve Socket.IO on ``path`` in front of ``app``.

    Works as ``Starlette(middleware=[Middleware(RoomsMiddleware, server=server)])``,
    ``app.add_middleware(RoomsMiddleware, server=server)`` or
    ``RoomsMiddleware(app, server=server)``; ``app`` may be None to serve Socket.IO alone.

    On ASGI lifespan startup it starts the server (then the app's own startup runs); on
    shutdown it closes every connection with "server shutting down" before the app's
    shutdown runs (see :mod:`rooms.lifespan`). A startup failure is reported as
    ``lifespan.startup.failed``. Other scopes get ``scope["rooms.server"]`` so routes can reach the
    server (see :func:`rooms.starlette.get_server`).
    """

    def __init__(
        self,
        app: AnyASGIApp | None = None,
        *,
        server: Server | EngineServer | None = None,
        path: str = "/socket.io/",
    ) -> None:
        self.app = app
        self.server: Server | EngineServer = server if server is not None else Server()
        self.path = "/" + path.strip("/")
        self._prefix = self.path + "/"
        self._warned = False

    def owns(self, scope: Scope) -> bool:
        """Whether ``scope`` is for our path (Socket.IO), not the wrapped app."""
        path: str = scope.get("path", "")
        return path == self.path or path.startswith(self._prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await serve_lifespan(self.server, self.app, scope, receive, send)
            return
        if self.owns(scope):
            if not self.server.is_running:
                await self._not_running(scope, send)
                return
            await self.server.serve(scope, receive, send)
            return
        if self.app is None:
            await _not_found(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.server
        await self.app(scope, receive, send)

    async def _not_running(self, scope: Scope, send: Send) -> None:
        """Never half alive: with no lifespan (``--lifespan off``) nothing would time out,
        drain or run async handlers, so refuse clearly instead of serving a zombie."""
        if not self._warned:
            self._warned = True
            logger.error(
                "expected the rooms server to be running, got a request before ASGI lifespan "
                "startup: run your ASGI server with lifespan on (uvicorn and hypercorn do by "
                "default); answering 503"
            )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        await respond(send, 503, b"rooms is not running", [TEXT_PLAIN])


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})
        return
    await respond(send, 404, b"Not Found", [TEXT_PLAIN])
