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
from rooms._types import ASGIApp, Message
from rooms.metrics import Metrics
from rooms.testing import Lifespan, TestClient


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
        status, text = await get(app, "/metrics")
    assert status == 200, text
    return text


async def get(app: ASGIApp, path: str, query: str = "") -> tuple[int, str]:
    """GET ``path`` from ``app`` over bare ASGI: the status and the body, as text. (Not
    httpx's ASGITransport: on trio it leaves its request stream unfinished for an app that
    reads the request once, as prometheus_client's does, and trio warns.)"""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50002),
        "server": ("testserver", 80),
    }
    requested = False
    responded = anyio.Event()
    status, body = 0, b""

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await responded.wait()  # as a client does, it hangs up once it has the response
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
            if not message.get("more_body", False):
                responded.set()

    with anyio.fail_after(10):
        await app(scope, receive, send)
    return status, body.decode()


def main() -> None:
    print(anyio.run(session, backend=sys.argv[1]), end="")


if __name__ == "__main__":
    main()
