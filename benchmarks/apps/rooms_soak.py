"""The soak app on rooms: tests/apps/edges.py, the app the hard-edge tests attack, unchanged,
plus ``/heap`` (RSS and malloc's bytes in use; ``?gc=1`` collects garbage first).

``benchmarks/soak.py`` copies tests/apps/edges.py into its snapshot of benchmarks/apps/ as
``rooms_edges`` and runs ``uvicorn rooms_soak:app --app-dir <snapshot>/apps ...``.
"""

from __future__ import annotations

from rooms_edges import app  # type: ignore[import-not-found]
from soak_heap import heap
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["app"]


async def heap_route(request: Request) -> JSONResponse:
    return JSONResponse(heap(collect=bool(request.query_params.get("gc"))))


# The Starlette app's router sits inside RoomsMiddleware, so a route added here is served
# like the app's own /stats.
app.router.routes.append(Route("/heap", heap_route))
