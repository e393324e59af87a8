"""The app every multi-process test runs: one member of a cluster on ``ROOMS_BROKER``.

Started in several subprocesses (or ``uvicorn --workers N``) sharing one Redis. Handlers
expose the cluster-wide operations to the JS clients that drive the tests; HTTP routes let
the test wait, server-side and on events, until the cluster has formed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import rooms
from rooms.cluster import Node
from rooms.starlette import get_server

logger = logging.getLogger("tests.cluster")

server = rooms.Server(
    broker=os.environ.get("ROOMS_BROKER", "memory://"),
    ping_interval=1.0,
    ping_timeout=2.0,
    heartbeat_interval=0.2,
    heartbeat_timeout=1.5,
    request_timeout=2.0,
    cors_allowed_origins="*",
)


def node() -> Node:
    assert server.node is not None
    return server.node


@server.on("connect")
async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    socket.data["name"] = auth.get("name", "anon")
    for room in auth.get("rooms", []):
        await socket.join(room)


@server.on("node")
def node_uid(socket: rooms.Socket) -> str:
    return node().uid


@server.on("join")
async def join(socket: rooms.Socket, room: str) -> list[str]:
    await socket.join(room)
    return sorted(socket.rooms - {socket.id})


@server.on("say")
async def say(socket: rooms.Socket, room: str, payload: Any) -> bool:
    await server.to(room).emit("said", payload)
    return True


@server.on("fetch")
async def fetch(socket: rooms.Socket, room: str) -> list[dict[str, Any]]:
    found = await server.in_(room).fetch_sockets()
    return sorted(
        (
            {
                "name": s.data["name"],
                "rooms": sorted(s.rooms - {s.id}),
                "node": s.node if isinstance(s, rooms.RemoteSocket) else node().uid,
            }
            for s in found
        ),
        key=lambda d: str(d["name"]),
    )


@server.on("room_join")
async def room_join(socket: rooms.Socket, room: str, new: str) -> bool:
    await server.in_(room).sockets_join(new)
    return True


@server.on("room_leave")
async def room_leave(socket: rooms.Socket, room: str, old: str) -> bool:
    await server.in_(room).sockets_leave(old)
    return True


@server.on("room_disconnect")
async def room_disconnect(socket: rooms.Socket, room: str) -> bool:
    await server.in_(room).disconnect_sockets()
    return True


@server.on("poll")
async def poll(socket: rooms.Socket, room: str, timeout: float) -> dict[str, Any]:
    """Broadcast "vote" with acks to ``room``; what came back, and whether in time."""
    try:
        answers = await server.to(room).timeout(timeout).emit_with_ack("vote")
        return {"complete": True, "answers": sorted(answers)}
    except rooms.AckTimeout as exc:
        return {"complete": False, "answers": sorted(exc.responses)}


@server.on("servers")
async def servers(socket: rooms.Socket) -> dict[str, Any]:
    """Ask every other process for its uid (server-side emit with acks)."""
    try:
        return {"complete": True, "uids": sorted(await server.server_side_emit_with_ack("uid"))}
    except rooms.AckTimeout as exc:
        return {"complete": False, "uids": sorted(exc.responses)}


@server.on_server_event("uid")
def uid() -> str:
    return node().uid


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def cluster(request: Request) -> JSONResponse:
    """``/cluster?peers=N``: wait (up to 10 s) until N other processes are known."""
    peers = request.query_params.get("peers")
    if peers is not None:
        await node().wait_for_peers(int(peers), timeout=10)
    broker: Any = node().broker
    if request.query_params.get("ready") and hasattr(broker, "wait_ready"):
        with anyio.fail_after(20):
            await broker.wait_ready()
    relay = node().relay
    return JSONResponse(
        {
            "uid": node().uid,
            "peers": sorted(node().peers),
            "sessions": len(get_server(request).engine.sessions),
            "relayed": relay.relayed if relay else 0,
            "served": relay.served if relay else 0,
            "pid": os.getpid(),
        }
    )


async def emit(request: Request) -> JSONResponse:
    """``/emit?room=r&text=t``: a broadcast from an HTTP route."""
    await (
        get_server(request)
        .to(request.query_params["room"])
        .emit("said", request.query_params["text"])
    )
    return JSONResponse({"ok": True})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    # Printed at shutdown, so a test can add up what every worker relayed.
    relay = node().relay
    if relay is not None:
        print(f"RELAY-COUNTS relayed={relay.relayed} served={relay.served}", flush=True)


app = Starlette(
    routes=[Route("/health", health), Route("/cluster", cluster), Route("/emit", emit)],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
    lifespan=lifespan,
)
