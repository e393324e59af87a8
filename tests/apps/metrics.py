"""One "worker" of a multi-process deployment with Prometheus metrics, for
tests/test_metrics.py: run as ``python -m tests.apps.metrics BACKEND`` with
``PROMETHEUS_MULTIPROC_DIR`` set (before prometheus_client is imported: it picks how values
are kept at import). It serves one scripted session in process (a client connects, sends one
event with an ack, leaves), then prints what its ``/metrics`` answers: the sum of every
worker that wrote to that directory so far, itself included.
"""

from __future__ import annotations

import sys

import anyio
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

import rooms
from rooms.metrics import Metrics
from rooms.testing import Lifespan, TestClient
from tests.asgi import request


async def session() -> str:
    server = rooms.Server()
    server.on("echo", lambda socket, value: value)
    metrics = Metrics(server, registry=CollectorRegistry())
    app = Starlette(
        routes=[Route("/metrics", metrics.app())],
        middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
    )
    with anyio.fail_after(30):
        return await _serve_one_session(app)


async def _serve_one_session(app: Starlette) -> str:
    async with Lifespan(app):
        async with TestClient(app, lifespan=False) as client:
            await client.connect()
            assert await client.call("echo", 1) == 1
            await client.close()
            await client.wait_disconnected()
        status, text = await request(app, "GET", "/metrics")
    assert status == 200, text
    return text


def main() -> None:
    print(anyio.run(session, backend=sys.argv[1]), end="")


if __name__ == "__main__":
    main()
