"""Never half alive (DESIGN §6, issue 10 item 8): rooms' lifecycle does not depend on the
wrapped app answering lifespan; a startup failure is reported as lifespan.startup.failed;
a broker that is away is retried while the process serves its own clients, and readiness
says so until the cluster is joined."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

import rooms
import rooms.starlette
from rooms._types import Receive, Scope, Send
from rooms.brokers.redis import RedisBroker
from rooms.testing import Lifespan, TestClient
from tests.redisserver import RedisServer

pytestmark = pytest.mark.anyio


def make_server(**options: Any) -> rooms.Server:
    server = rooms.Server(**options)

    @server.on("echo")
    async def echo(socket: rooms.Socket, value: Any) -> Any:
        return value

    return server


async def serves(app: Any) -> None:
    async with TestClient(app, lifespan=False) as client:
        await client.connect()
        assert await client.call("echo", "async handlers run") == "async handlers run"


async def returns_at_once(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that ignores lifespan: it returns without answering."""


async def raises_on_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError("http only")


@pytest.mark.parametrize("app", [returns_at_once, raises_on_lifespan])
async def test_an_app_that_does_not_speak_lifespan_leaves_rooms_running(app: Any) -> None:
    server = make_server()
    wrapped = rooms.RoomsMiddleware(app, server=server)
    async with Lifespan(wrapped):
        assert server.is_running
        await serves(wrapped)
    assert not server.is_running


async def test_the_apps_startup_failure_is_passed_on_and_rooms_stops() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

    server = make_server()
    with pytest.raises(RuntimeError, match="database unreachable"):
        async with Lifespan(rooms.RoomsMiddleware(failing, server=server)):
            pass
    assert not server.is_running


async def test_rooms_startup_failure_is_reported_as_startup_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A Redis recovery store needs a Redis broker: a configuration error, not an outage.
    server = make_server(recovery=rooms.Recovery(store="redis"))
    with pytest.raises(RuntimeError, match=r"startup\.failed.*expected a Redis broker"):
        async with Lifespan(rooms.RoomsMiddleware(Starlette(), server=server)):
            pass
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_shutdown_closes_rooms_connections_before_the_apps_shutdown_runs() -> None:
    server = make_server()
    order: list[str] = []
    server.on("disconnect", lambda socket, reason: order.append(f"socket: {reason}"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        order.append("app startup")
        yield
        order.append("app shutdown")

    app = rooms.RoomsMiddleware(Starlette(lifespan=lifespan), server=server)
    connected = anyio.Event()

    async def hold_a_connection() -> None:
        async with TestClient(app, lifespan=False) as client:
            await client.connect()
            connected.set()
            await client.wait_disconnected()

    async with anyio.create_task_group() as tg, Lifespan(app):
        tg.start_soon(hold_a_connection)
        await connected.wait()
        # Lifespan shut down while the client was still connected.
    assert order == ["app startup", "socket: server shutting down", "app shutdown"]


async def test_without_lifespan_requests_get_503_not_a_zombie(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = rooms.RoomsMiddleware(None, server=make_server())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for _ in range(3):
            response = await http.get("/socket.io/?EIO=4&transport=polling")
            assert response.status_code == 503
    lines = [r for r in caplog.records if "lifespan" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR


async def ready(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get("/ready")


async def test_a_broker_that_is_away_at_startup_is_retried_while_the_process_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path / "redis")  # its port is chosen; nothing listens there yet
    server = make_server(broker=RedisBroker(redis.url, connect_timeout=0.5))
    app = rooms.RoomsMiddleware(
        Starlette(routes=[Route("/ready", rooms.starlette.readiness)]), server=server
    )
    caplog.set_level(logging.WARNING, logger="rooms.cluster")
    try:
        async with Lifespan(app):
            status = server.status()
            assert (status.running, status.ready, status.broker) == (True, False, "away")
            response = await ready(app)
            assert response.status_code == 503 and response.json()["broker"] == "away"
            await serves(app)  # handlers run while the broker is away
            await server.emit("nobody else", 1)  # the cluster part is dropped, not an error
            warnings = [r.getMessage() for r in caplog.records if r.name == "rooms.cluster"]
            assert any(redis.url in line and "is away" in line for line in warnings)
            redis.start()
            assert server.node is not None
            with anyio.fail_after(30):
                await server.node.joined.wait()
            assert server.status().ready
            assert (await ready(app)).status_code == 200
            await serves(app)
    finally:
        redis.stop()
