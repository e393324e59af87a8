"""The app hard-edge tests attack: a real server process, its structure visible on /stats.

Settings come from the environment so one app serves every scenario:
``ROOMS_MAX_OUTBOX_BYTES``, ``ROOMS_PING_INTERVAL``, ``ROOMS_PING_TIMEOUT`` (seconds),
``ROOMS_BROKER`` (a broker URL; none by default).
"""

from __future__ import annotations

import gc
import os
import re
import resource
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import rooms
import rooms.starlette

server = rooms.Server(
    ping_interval=float(os.environ.get("ROOMS_PING_INTERVAL", "1")),
    ping_timeout=float(os.environ.get("ROOMS_PING_TIMEOUT", "2")),
    max_outbox_bytes=int(os.environ.get("ROOMS_MAX_OUTBOX_BYTES", str(16 * 1024 * 1024))),
    broker=os.environ.get("ROOMS_BROKER") or None,
    cors_allowed_origins="*",
)


@server.on("hang")
async def hang(socket: rooms.Socket) -> None:
    await anyio.sleep_forever()  # a handler that never ends: shutdown must not wait for it


@server.on("echo")
async def echo(socket: rooms.Socket, *args: Any) -> tuple[Any, ...]:
    return args


def room_of(value: Any) -> str | None:
    """A room name from a client, as a careful handler checks it (rooms bounds its length
    too: ``join`` raises ValueError past ``limits.max_name_length``)."""
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


@server.on("join")
async def join(socket: rooms.Socket, room: Any) -> list[str] | str:
    name = room_of(room)
    if name is None:
        return "expected a room name"
    await socket.join(name)
    return sorted(socket.rooms)


@server.on("bcast")
async def bcast(socket: rooms.Socket, room: Any, *args: Any) -> None:
    """Re-broadcast to a room: what a hostile payload would be relayed by."""
    name = room_of(room)
    if name is not None:
        await socket.to(name).emit("bcast", *args)


@server.on("flood")
async def flood(socket: rooms.Socket, room: str, size: int, count: int) -> int:
    """Broadcast ``count`` messages of ``size`` characters to ``room`` (a slow member
    overflows, not this handler); answers ``count``."""
    payload = "x" * min(size, 1_000_000)
    for n in range(count):
        await server.to(room).emit("flood", n, payload)
    return count


teams = server.of(re.compile(r"/dyn-\d+"))


@teams.use
def members_only(socket: rooms.Socket) -> None:
    if socket.handshake.auth.get("member") is not True:
        raise rooms.ConnectionRefused("members only")


def rss_kib() -> int:
    """Resident memory now, from /proc (Linux); the peak from getrusage elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def stats(request: Request) -> JSONResponse:
    """What a closed connection must not leave behind, and the process's RSS.
    ``?gc=1`` collects garbage first."""
    if request.query_params.get("gc"):
        gc.collect()
    engine = server.engine
    sessions = list(engine.sessions.values())
    return JSONResponse(
        {
            "sessions": len(sessions),
            "queued_frames": sum(s.queued for s in sessions),
            "queued_bytes": sum(s.queued_bytes for s in sessions),
            "namespaces": sorted(server.namespaces),
            "sockets": sum(len(nsp.sockets) for nsp in server.namespaces.values()),
            "rooms": sum(len(nsp.adapter.rooms) for nsp in server.namespaces.values()),
            "timers": engine.heartbeat.pending(),
            "writers": len(engine.writers),
            "rss_kib": rss_kib(),
        }
    )


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/ready", rooms.starlette.readiness),
        Route("/stats", stats),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
