"""Starlette conveniences: reach the rooms server from a request or websocket."""

from __future__ import annotations

from starlette.requests import HTTPConnection

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
