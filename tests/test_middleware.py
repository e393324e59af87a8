"""RoomsMiddleware in front of Starlette, FastAPI and a bare ASGI callable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import rooms
from rooms._types import Receive, Scope, Send
from rooms.starlette import get_server
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio


def echo_server() -> rooms.Server:
    server = rooms.Server()

    @server.on("echo")
    def echo(socket: rooms.Socket, value: Any) -> Any:
        return value

    @server.on("user")
    def user(socket: rooms.Socket) -> str | None:
        u = socket.handshake.user
        return u.display_name if u is not None else None

    return server


async def http_get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get(path)


async def test_starlette_add_middleware_keeps_its_routes_and_lifespan() -> None:
    server = echo_server()
    log: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.append("startup")
        yield
        log.append("shutdown")

    async def hello(request: Request) -> PlainTextResponse:
        assert get_server(request) is server
        await get_server(request).emit("from_route", "hi")
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)], lifespan=lifespan)
    app.add_middleware(rooms.RoomsMiddleware, server=server)

    async with Lifespan(app), TestClient(app, lifespan=False) as client:
        await client.connect()
        assert await client.call("echo", 1) == 1
        response = await http_get(app, "/hello")
        assert (response.status_code, response.text) == (200, "hello")
        assert await client.receive() == ("from_route", ["hi"])
        assert (await http_get(app, "/missing")).status_code == 404
    assert log == ["startup", "shutdown"]


async def test_fastapi_add_middleware_keeps_its_routes() -> None:
    server = echo_server()
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: int) -> dict[str, int]:
        return {"item": item}

    app.add_middleware(rooms.RoomsMiddleware, server=server)
    async with Lifespan(app), TestClient(app, lifespan=False) as client:
        await client.connect()
        assert await client.call("echo", "fastapi") == "fastapi"
        response = await http_get(app, "/items/3")
        assert response.json() == {"item": 3}


async def test_a_bare_asgi_callable_without_lifespan_is_wrapped() -> None:
    async def bare(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("this app only speaks http")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"bare"})

    app = rooms.RoomsMiddleware(bare, server=echo_server(), path="/ws/")
    async with TestClient(app, path="/ws/") as client:
        await client.connect()
        assert await client.call("echo", [1, 2]) == [1, 2]
        assert (await http_get(app, "/anything")).text == "bare"


async def test_scope_user_from_authentication_middleware_outside_ours() -> None:
    class TokenBackend(AuthenticationBackend):
        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, SimpleUser] | None:
            token = conn.headers.get("authorization")
            return (AuthCredentials(["authenticated"]), SimpleUser(token)) if token else None

    app = Starlette(
        middleware=[
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),
            Middleware(rooms.RoomsMiddleware, server=echo_server()),
        ]
    )
    async with TestClient(app, headers={"Authorization": "alice"}) as client:
        await client.connect()
        assert await client.call("user") == "alice"


async def test_paths_outside_ours_never_reach_the_server() -> None:
    app = rooms.RoomsMiddleware(None, server=echo_server())
    async with Lifespan(app):
        assert (await http_get(app, "/socket.iox/")).status_code == 404
        assert (await http_get(app, "/other")).status_code == 404
        assert (await http_get(app, "/socket.io/?EIO=4&transport=bogus")).json()["code"] == 0
