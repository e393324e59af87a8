"""A bare Engine.IO endpoint (no Socket.IO) mounted on /engine.io/ in a Starlette app.

tests/js/reference_server.js sets Node's engine.io up the same way (tests/differential
compares the two): keep them in step.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import rooms
from rooms.engine import Session, State

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


def _session(request: Request) -> Session | None:
    engines = {"fast": engine, "slow": slow_engine}
    chosen = engines.get(request.query_params.get("engine", "fast"), engine)
    return chosen.sessions.get(request.query_params.get("sid", ""))


async def state(request: Request) -> JSONResponse:
    """Whether a session is open and has a poll pending: what a test waits for when the wire
    shows nothing (the session of a client that is not polling), with a deadline."""
    session = _session(request)
    is_open = session is not None and session.state in (State.OPEN, State.UPGRADING)
    return JSONResponse(
        {
            "open": is_open,
            "polling": session is not None and is_open and session.polling,
            "posting": session is not None and session.posting,
            "upgrading": session is not None and session.state is State.UPGRADING,
        }
    )


async def close(request: Request) -> JSONResponse:
    """The server closes a session, as application code does ("forced close")."""
    session = _session(request)
    if session is not None:
        session.close()
    return JSONResponse({"closed": session is not None})


app = rooms.RoomsMiddleware(
    rooms.RoomsMiddleware(
        Starlette(
            routes=[
                Route("/health", health),
                Route("/events", seen),
                Route("/state", state),
                Route("/close", close),
            ]
        ),
        server=slow_engine,
        path="/engine-slow/",
    ),
    server=engine,
    path="/engine.io/",
)
