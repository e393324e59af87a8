"""RoomsMiddleware: pure ASGI. Owns one path, passes everything else on, runs lifespan."""

from __future__ import annotations

import logging
from typing import Any

from rooms._types import AnyASGIApp, Message, Receive, Scope, Send
from rooms.engine.server import EngineServer, serve_lifespan
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
    shutdown runs. Other scopes get ``scope["rooms.server"]`` so routes can reach the
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

    def owns(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return path == self.path or path.startswith(self._prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.owns(scope):
            await self.server(scope, receive, send)
            return
        if self.app is None:
            await _not_found(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.server
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            await serve_lifespan(self.server, receive, send)
            return
        async with self.server.running():
            state: dict[str, Any] = {"startup": False, "complete": False}

            async def app_receive() -> Message:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["startup"] = True
                elif message["type"] == "lifespan.shutdown":
                    await self.server.shutdown()
                return message

            async def app_send(message: Message) -> None:
                if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed"):
                    state["complete"] = True
                await send(message)

            try:
                await self.app(scope, app_receive, app_send)
            except Exception:
                if state["complete"]:
                    raise
                # The wrapped app does not speak lifespan; answer for it.
                logger.debug("wrapped app does not support lifespan", exc_info=True)
                if not state["startup"]:
                    await receive()
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
                await self.server.shutdown()
                if message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})
        return
    body = b"Not Found"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
