"""The app the mailbox tests drive with the real socket.io-client: a socket's identity is
its ``auth.user``; HTTP routes send mail and report what waits and what was acked."""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rooms
from tests.apps.common import cluster_route

mailbox = rooms.Mailbox(lambda socket: socket.data.get("user"), ack_timeout=5)
server = rooms.Server(
    broker=os.environ.get("ROOMS_BROKER") or None,
    mailbox=mailbox,
    heartbeat_interval=0.2,
    heartbeat_timeout=1.5,
)


@server.on("connect")
def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    socket.data["user"] = auth.get("user")


async def send(request: Request) -> JSONResponse:
    """``/send?user=u&start=a&stop=b``: mail "note" n for n in a..b-1, from an HTTP route."""
    q = request.query_params
    ids = [
        await mailbox.send(q["user"], "note", {"n": n})
        for n in range(int(q["start"]), int(q["stop"]))
    ]
    return JSONResponse(ids)


async def status(request: Request) -> JSONResponse:
    """``/status?user=u&acked=N``: once N acks were seen here, what still waits for u."""
    q = request.query_params
    if "acked" in q:
        await mailbox.wait_acked(int(q["acked"]))
    return JSONResponse({"waiting": await mailbox.count(q["user"]), "acked": mailbox.acked})


async def health(request: Request) -> JSONResponse:
    return JSONResponse("ok")


app = Starlette(
    routes=[
        Route("/send", send),
        Route("/status", status),
        cluster_route(server),
        Route("/health", health),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
