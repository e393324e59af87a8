"""Starlette conveniences: reach the rooms server from a request, and a readiness route."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from rooms.exceptions import RoomsError
from rooms.middleware import SCOPE_KEY
from rooms.server import Server


def get_server(conn: HTTPConnection) -> Server:
    """The :class:`~rooms.Server` of the RoomsMiddleware this request passed through."""
    server = conn.scope.get(SCOPE_KEY)
    if not isinstance(server, Server):
        raise RoomsError(
            "expected the request to pass through RoomsMiddleware, got a scope without "
            f"{SCOPE_KEY!r}; add the middleware to the app"
        )
    return server


async def readiness(request: Request) -> JSONResponse:
    """A readiness endpoint: ``Route("/ready", rooms.starlette.readiness)``.

    Answers ``server.status()`` as JSON: 200 when ready (running, and joined to its cluster
    if it has a broker), else 503, so a load balancer keeps traffic away from a process
    whose broker is away (it still serves the clients it has)."""
    status = get_server(request).status()
    return JSONResponse(status.to_json(), status_code=200 if status.ready else 503)
