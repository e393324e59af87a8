"""A bare Engine.IO endpoint (no Socket.IO) mounted on /engine.io/ in a Starlette app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import rooms
from rooms.engine import Session

events: list[str] = []


def on_connect(session: Session) -> bool:
    events.append(f"connect {session.transport}")
    # A client may ask to be refused, to test the refusal path.
    return b"refuse=1" not in session.scope.get("query_string", b"")


async def on_message(session: Session, data: str | bytes) -> None:
    # Echo: text back as text, binary back as binary.
    session.send_message(data)


def on_disconnect(session: Session, reason: str) -> None:
    events.append(f"disconnect {reason}")


engine = rooms.EngineServer(
    on_connect=on_connect,
    on_message=on_message,
    on_disconnect=on_disconnect,
    ping_interval=0.25,
    ping_timeout=0.4,
    max_payload=1000,
    cors_allowed_origins=["http://allowed.example"],
)


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


# The same endpoint with a heartbeat too slow to interfere with request-ordering tests.
slow_engine = rooms.EngineServer(on_message=on_message, ping_interval=30, ping_timeout=30)


async def seen(request: Request) -> JSONResponse:
    sid = request.query_params.get("sid", "")
    session = slow_engine.sessions.get(sid)
    return JSONResponse(
        {
            "events": events,
            "polling": session is not None and session.polling,
        }
    )


app = rooms.RoomsMiddleware(
    rooms.RoomsMiddleware(
        Starlette(routes=[Route("/health", health), Route("/events", seen)]),
        server=slow_engine,
        path="/engine-slow/",
    ),
    server=engine,
    path="/engine.io/",
)
