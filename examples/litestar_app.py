"""rooms in front of a Litestar app.

Litestar is not a dependency of rooms; install it first, then run from the repository
root::

    .venv/bin/pip install litestar
    .venv/bin/python -m uvicorn examples.litestar_app:app --host 127.0.0.1 --port 8000

``app`` is the Litestar app wrapped by :class:`rooms.RoomsMiddleware`: Socket.IO is served
on ``/socket.io/``, everything else (``GET /``, ``POST /broadcast?text=...``) goes to
Litestar, and ASGI lifespan starts and stops both. Connect with any Socket.IO client, e.g.
``io("http://127.0.0.1:8000", {auth: {user: "ada"}})``, then
``socket.emitWithAck("echo", "hi")`` and ``socket.on("news", ...)``.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, MediaType, get, post

import rooms

server = rooms.Server()


@server.on("connect")
async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    socket.data["user"] = str(auth.get("user", "anonymous"))


@server.on("echo")
async def echo(socket: rooms.Socket, value: Any) -> dict[str, Any]:
    return {"user": socket.data["user"], "echo": value}


@get("/")
async def index() -> dict[str, Any]:
    sockets = await server.fetch_sockets()
    return {"hello": "from Litestar", "connected": sorted(s.data["user"] for s in sockets)}


@post("/broadcast")
async def broadcast(text: str) -> dict[str, str]:
    await server.emit("news", text)
    return {"sent": text}


@get("/health", media_type=MediaType.TEXT)
async def health() -> str:
    return "ok"


litestar_app = Litestar(route_handlers=[index, broadcast, health])
app = rooms.RoomsMiddleware(litestar_app, server=server)
