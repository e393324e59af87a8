"""Routes the multi-process test apps share."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rooms


def cluster_route(server: rooms.Server) -> Route:
    """``/cluster?peers=N``: this process's node uid, once N other processes are known
    (waited for server-side, on events, as tests/apps/cluster.py does)."""

    async def cluster(request: Request) -> JSONResponse:
        assert server.node is not None, "a cluster route on a server without a broker"
        peers = request.query_params.get("peers")
        if peers is not None:
            await server.node.wait_for_peers(int(peers), timeout=10)
        return JSONResponse({"uid": server.node.uid})

    return Route("/cluster", cluster)
