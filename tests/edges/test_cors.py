"""CORS (issue 10 item 10): headers only for allowed origins; credentials only with an
explicit origin, never with ``*``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import rooms
from rooms.testing import Lifespan

pytestmark = pytest.mark.anyio

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
ALLOWED = "https://app.example"
EVIL = "https://evil.example"


async def request(server: rooms.Server, method: str, origin: str, **headers: str) -> Any:
    transport = httpx.ASGITransport(app=server)
    async with (
        Lifespan(server),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        return await http.request(method, HANDSHAKE, headers={"Origin": origin, **headers})


def cors(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
async def test_an_origin_not_on_the_list_gets_no_cors_headers(method: str) -> None:
    server = rooms.Server(cors_allowed_origins=[ALLOWED])
    response = await request(server, method, EVIL, **{"Access-Control-Request-Method": "POST"})
    assert cors(response) == {}
    if method == "GET":
        assert (response.status_code, response.json()["code"]) == (403, 4)


async def test_a_listed_origin_is_echoed_with_credentials_and_vary() -> None:
    server = rooms.Server(cors_allowed_origins=[ALLOWED])
    response = await request(server, "GET", ALLOWED)
    assert response.status_code == 200
    assert cors(response) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-credentials": "true",
    }
    assert response.headers["vary"] == "Origin"
    preflight = await request(
        server, "OPTIONS", ALLOWED, **{"Access-Control-Request-Headers": "x-token"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert preflight.headers["access-control-allow-headers"] == "x-token"


async def test_any_origin_gets_a_star_and_never_credentials() -> None:
    server = rooms.Server(cors_allowed_origins="*")
    response = await request(server, "GET", EVIL)
    assert response.status_code == 200
    assert cors(response) == {"access-control-allow-origin": "*"}


async def test_same_origin_needs_no_list_and_gets_no_headers() -> None:
    server = rooms.Server()
    response = await request(server, "GET", "http://testserver")
    assert response.status_code == 200
    assert cors(response) == {}
    refused = await request(server, "GET", EVIL)
    assert refused.status_code == 403 and cors(refused) == {}
