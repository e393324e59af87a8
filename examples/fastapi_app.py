"""rooms in front of a FastAPI app.

Run from the repository root (after ``make deps``)::

    .venv/bin/python -m uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000

FastAPI keeps its routes (``GET /``, ``POST /broadcast?text=...``, ``/docs``); Socket.IO
clients connect to the same origin, e.g. ``io("http://127.0.0.1:8000", {auth: {user:
"ada"}})``, then ``socket.emitWithAck("echo", "hi")`` and ``socket.on("news", ...)``.
Try ``curl -X POST 'http://127.0.0.1:8000/broadcast?text=hello'`` while one is connected.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

import rooms
from rooms.starlette import get_server

server = rooms.Server()


@server.on("connect")
async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    socket.data["user"] = str(auth.get("user", "anonymous"))


@server.on("echo")
async def echo(socket: rooms.Socket, value: Any) -> dict[str, Any]:
    return {"user": socket.data["user"], "echo": value}


app = FastAPI(title="rooms + FastAPI")


@app.get("/")
async def index() -> dict[str, Any]:
    sockets = await server.fetch_sockets()
    return {"hello": "from FastAPI", "connected": sorted(s.data["user"] for s in sockets)}


@app.post("/broadcast")
async def broadcast(text: str, request: Request) -> dict[str, str]:
    # The server is also reachable through the request, without a module global.
    await get_server(request).emit("news", text)
    return {"sent": text}


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


app.add_middleware(rooms.RoomsMiddleware, server=server)
