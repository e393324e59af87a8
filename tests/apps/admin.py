"""The app tests/browser/test_admin_ui.py runs in three processes: one member of a cluster
on ``ROOMS_BROKER``, instrumented for the Socket.IO Admin UI (development mode, the
credentials in ``ROOMS_ADMIN_USERNAME`` and ``ROOMS_ADMIN_PASSWORD``), serving the UI
itself (npm ``@socket.io/admin-ui``'s ``ui/dist``) at ``/admin-ui/``: same origin, no CORS.

Clients name themselves and their rooms in their CONNECT payload; ``say`` broadcasts to a
room (traffic for the Dashboard and the Events page).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import rooms
from tests.apps.common import cluster_route

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"

server = rooms.Server(
    broker=os.environ.get("ROOMS_BROKER", "memory://"),
    heartbeat_interval=0.5,
    heartbeat_timeout=3.0,
    request_timeout=3.0,
)
admin = server.instrument(
    auth={
        "username": os.environ.get("ROOMS_ADMIN_USERNAME", "admin"),
        "password": os.environ.get("ROOMS_ADMIN_PASSWORD", "admin"),
    },
    mode="development",
)


@server.on("connect")
async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    socket.data["name"] = str(auth.get("name", "anon"))
    rooms_wanted = auth.get("rooms", [])
    if isinstance(rooms_wanted, list):
        await socket.join([str(room) for room in rooms_wanted])


@server.on("say")
async def say(socket: rooms.Socket, room: str, text: str) -> bool:
    await server.to(room).emit("said", socket.data["name"], text)
    return True


news = server.of("/news")  # a second namespace, for the UI to list


@news.on("connect")
async def news_connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    await socket.join("headlines")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/health", health),
        cluster_route(server),
        Mount("/admin-ui", StaticFiles(directory=UI, html=True), name="admin-ui"),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
