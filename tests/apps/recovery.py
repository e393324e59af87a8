"""The app the connection state recovery tests drive with the real socket.io-client.

Recovery on, with the store ``auto`` picks: memory alone, Redis when ``ROOMS_BROKER`` names
one (then several processes share sessions and the packet log). HTTP routes send streams of
room broadcasts and private emits, cut a client's transport from the server side, and wait,
server-side and on events, until a dropped socket's session is saved.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import rooms
from tests.apps.common import cluster_route

server = rooms.Server(
    broker=os.environ.get("ROOMS_BROKER") or None,
    recovery=rooms.Recovery(max_disconnection_duration=30, max_packets=20_000),
    heartbeat_interval=0.2,
    heartbeat_timeout=1.5,
    cors_allowed_origins="*",
)
gone: dict[str, anyio.Event] = {}
through_middleware: list[str] = []


@server.main.use
def middleware(socket: rooms.Socket) -> None:
    # Skipped for recovered sockets (skip_middlewares defaults to True).
    through_middleware.append(socket.id)


@server.on("connect")
def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    gone[socket.id] = anyio.Event()
    if not socket.recovered:
        socket.data["name"] = auth.get("name")
        rooms_ = auth.get("rooms") or []
        socket.nsp.adapter.add_all(socket.id, [str(room) for room in rooms_])


@server.on("disconnect")
def disconnect(socket: rooms.Socket, reason: str) -> None:
    gone.setdefault(socket.id, anyio.Event()).set()


@server.on("whoami")
def whoami(socket: rooms.Socket) -> dict[str, Any]:
    return {
        "id": socket.id,
        "recovered": socket.recovered,
        "rooms": sorted(socket.rooms - {socket.id}),
        "data": socket.data,
        "node": server.node.uid if server.node else None,
    }


@server.on("private_burst")
async def private_burst(socket: rooms.Socket, start: int, stop: int) -> bool:
    for n in range(start, stop):
        await socket.emit("own", n)  # socket.emit: stored too, with an offset
    return True


@server.on("feed")
async def feed(socket: rooms.Socket, room: str, n: int) -> bool:
    """One tick of tests/js/cut_soak.js's feeder, acknowledged once it is broadcast."""
    await server.to(room).emit("tick", n)
    return True


async def burst(request: Request) -> JSONResponse:
    """``/burst?room=r&sid=s&start=a&stop=b``: ticks a..b-1 to room r, each followed by a
    private message to socket s (``server.to(sid)``), so order can be checked across both."""
    q = request.query_params
    room, sid = q["room"], q["sid"]
    for n in range(int(q["start"]), int(q["stop"])):
        await server.to(room).emit("tick", n)
        await server.to(sid).emit("private", n, b"\x00\x01")  # binary too
    return JSONResponse({"sent": int(q["stop"]) - int(q["start"])})


async def stream(request: Request) -> JSONResponse:
    """``/stream?room=r&sid=s&count=n&every=ms``: like /burst, but in the background, one
    pair every ``every`` ms (load, not synchronisation), so a cut lands mid-stream."""
    q = request.query_params
    room, sid, count, every = q["room"], q["sid"], int(q["count"]), float(q["every"]) / 1000

    async def run() -> None:
        for n in range(count):
            await server.to(room).emit("tick", n)
            await server.to(sid).emit("private", n, b"\x00\x01")
            await anyio.sleep(every)

    server.spawn(run)
    return JSONResponse({"streaming": count})


async def cut(request: Request) -> PlainTextResponse:
    """``/cut?sid=s``: the server cuts the client's transport (reason "forced close")."""
    server.main.sockets[request.query_params["sid"]].cut()
    return await wait_gone(request)


async def wait_gone(request: Request) -> PlainTextResponse:
    """``/gone?sid=s``: answers once socket s is gone and its session saved."""
    sid = request.query_params["sid"]
    with anyio.fail_after(10):
        await gone.setdefault(sid, anyio.Event()).wait()
        await server.wait_sessions_saved()
    return PlainTextResponse("gone")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def middleware_log(request: Request) -> JSONResponse:
    return JSONResponse(through_middleware)


app = Starlette(
    routes=[
        Route("/burst", burst),
        Route("/cut", cut),
        Route("/stream", stream),
        Route("/gone", wait_gone),
        Route("/health", health),
        cluster_route(server),
        Route("/middleware", middleware_log),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
