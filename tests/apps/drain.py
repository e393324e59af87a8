"""A process to drain: ``/drain`` closes its connections in batches (a 2 s window, a batch
every 0.25 s), ``/ready`` says whether it takes new clients."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import rooms
from rooms.starlette import drain, readiness

WINDOW, INTERVAL = 2.0, 0.25

server = rooms.Server()


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/ready", readiness),
        Route("/drain", drain(window=WINDOW, interval=INTERVAL), methods=["POST"]),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
