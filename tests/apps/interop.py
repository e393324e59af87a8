"""The application every interop test runs: a Starlette app with rooms in front of it.

Started in a subprocess by tests (uvicorn on asyncio, hypercorn on trio) on a free port.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import rooms
from rooms.starlette import get_server

server = rooms.Server(ping_interval=0.5, ping_timeout=1.0, cors_allowed_origins="*")


@server.on("connect")
async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    socket.data["auth"] = auth
    if auth.get("room"):
        await socket.join(auth["room"])


@server.on("echo")
async def echo(socket: rooms.Socket, *args: Any) -> tuple[Any, ...]:
    return args


@server.on("echo_sync")
def echo_sync(socket: rooms.Socket, value: Any) -> Any:
    return value


@server.on("join")
async def join(socket: rooms.Socket, room: str) -> list[str]:
    await socket.join(room)
    return sorted(socket.rooms)


@server.on("leave")
async def leave(socket: rooms.Socket, room: str) -> list[str]:
    await socket.leave(room)
    return sorted(socket.rooms)


@server.on("say")
async def say(socket: rooms.Socket, room: str, text: str) -> int:
    await socket.to(room).emit("said", socket.id, text)
    return len(text)


@server.on("shout")
async def shout(socket: rooms.Socket, text: str) -> None:
    await server.emit("shouted", text)


@server.on("ask")
async def ask(socket: rooms.Socket, question: Any) -> Any:
    """The server asks the client and returns what the client acknowledged."""
    answer = await socket.emit_with_ack("question", question, timeout=5)
    return {"answer": answer}


@server.on("ask_room")
async def ask_room(socket: rooms.Socket, room: str) -> list[Any]:
    return sorted(await server.to(room).timeout(5).emit_with_ack("poll", room))


@server.on("whoami")
def whoami(socket: rooms.Socket) -> dict[str, Any]:
    hs = socket.handshake
    return {
        "sid": socket.id,
        "auth": hs.auth,
        "query": dict(hs.query),
        "address": hs.address,
        "ua": hs.headers.get("x-test-header"),
    }


@server.on("bye")
async def bye(socket: rooms.Socket) -> None:
    await socket.disconnect()


@server.on("*")
async def anything(socket: rooms.Socket, event: str, *args: Any) -> dict[str, Any]:
    return {"unhandled": event, "args": list(args)}


@server.on("emit_back")
async def emit_back(socket: rooms.Socket, event: str, *args: Any) -> None:
    """The server emits ``event`` with ``args`` to the sender (server-to-client payloads)."""
    await socket.emit(event, *args)


@server.on("burst")
async def burst(socket: rooms.Socket, event: str, start: int, count: int) -> int:
    """The server emits ``event`` with ``start``, ``start + 1``, ... ``count`` times."""
    for i in range(start, start + count):
        await socket.emit(event, i)
    return count


@server.on("disconnect")
async def disconnect(socket: rooms.Socket, reason: str) -> None:
    """Members of the "disconnect-watchers" room hear who left and why."""
    await server.to("disconnect-watchers").emit("gone", socket.id, reason)


admin = server.of("/admin")


@admin.use
async def require_token(socket: rooms.Socket) -> None:
    if socket.handshake.auth.get("token") != "s3cret":
        raise rooms.ConnectionRefused("unauthorized", {"hint": "send auth.token"})


@admin.on("echo")
async def admin_echo(socket: rooms.Socket, value: Any) -> Any:
    return {"admin": value}


dynamic = server.of(re.compile(r"/dyn-\d+"))


@dynamic.on("where")
def where(socket: rooms.Socket) -> str:
    return socket.nsp.name


async def emit_route(request: Request) -> JSONResponse:
    sio = get_server(request)
    room = request.query_params.get("room")
    text = request.query_params.get("text", "")
    if room:
        await sio.to(room).emit("from_http", text)
    else:
        await sio.emit("from_http", text)
    return JSONResponse({"ok": True})


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[Route("/health", health), Route("/emit", emit_route)],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
