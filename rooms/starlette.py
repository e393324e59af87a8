"""Starlette conveniences: reach the rooms server from a request, and the routes a deploy
needs: readiness and a graceful drain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from rooms.exceptions import RoomsError
from rooms.middleware import SCOPE_KEY
from rooms.server import Server

PEERS_WAIT = 10.0  # the most ``?peers=N`` waits, in seconds


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

    Answers ``server.status()`` as JSON (running, ready, broker ``"joined"`` or ``"away"``,
    peers, sessions, draining): 200 when ready, else 503. Not ready: before startup, while
    the broker is away (the process still serves the clients it has), and once a drain
    started; so a load balancer sends new clients elsewhere.

    ``?peers=N`` also waits (up to 10 s) until N other processes are known: a deploy that
    starts processes one by one can wait for each to see the others.
    """
    server = get_server(request)
    peers = request.query_params.get("peers")
    if peers is not None:
        try:
            wanted = int(peers)
        except ValueError:
            return JSONResponse({"error": f"expected ?peers=<int>, got {peers!r}"}, 400)
        if server.node is None and wanted:
            return JSONResponse({"error": f"expected {wanted} peers, got no broker"}, 503)
        if server.node is not None:
            try:
                await server.node.wait_for_peers(wanted, timeout=PEERS_WAIT)
            except TimeoutError:
                status = server.status()
                body = {**status.to_json(), "error": f"expected {wanted} peers"}
                return JSONResponse(body, status_code=503)
    status = server.status()
    return JSONResponse(status.to_json(), status_code=200 if status.ready else 503)


def drain(window: float = 10.0, interval: float = 0.5) -> Callable[[Request], Awaitable[Response]]:
    """A drain endpoint: ``Route("/drain", rooms.starlette.drain(window=20), methods=["POST"])``.

    A request runs ``server.drain(window, interval)`` and answers once every connection is
    closed and saved (``{"closed": n}``): call it from a ``preStop`` hook, before the ASGI
    server is told to stop. Protect it as you would any admin route (it takes the process
    out of service).
    """

    async def endpoint(request: Request) -> Response:
        closed = await get_server(request).drain(window, interval)
        return JSONResponse({"closed": closed})

    return endpoint
