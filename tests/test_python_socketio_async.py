"""python-socketio's AsyncClient against a real server (uvicorn/asyncio, hypercorn/trio), on
every transport: the dev extra carries what it needs (aiohttp, for polling and websocket).

The client is asyncio's alone (it is built on aiohttp), so these tests run it on asyncio
whatever the server runs on; the servers cover both backends.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import socketio

from tests.conftest import LiveServer
from tests.test_python_socketio import TRANSPORTS


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[str(request.param)]


def run_client(script: Any) -> None:
    """Run ``script(client)`` with a fresh AsyncClient on asyncio, disconnecting after."""

    async def main() -> None:
        client = socketio.AsyncClient(reconnection=False)
        try:
            with anyio.fail_after(30):
                await script(client)
        finally:
            if client.connected:
                await client.disconnect()

    anyio.run(main, backend="asyncio")


def test_connect_emit_ack_and_binary_on_every_transport(
    interop_server: LiveServer, transports: list[str]
) -> None:
    async def script(client: socketio.AsyncClient) -> None:
        await client.connect(
            interop_server.url, transports=transports, auth={"who": "py"}, wait_timeout=5
        )
        assert await client.call("echo", "one", timeout=5) == "one"
        payload = {"blob": b"\x00\x01\xff", "nested": [b"x", {"y": b"z"}]}
        assert await client.call("echo", payload, timeout=5) == payload
        assert (await client.call("whoami", timeout=5))["auth"] == {"who": "py"}
        if transports != ["polling", "websocket"]:
            assert client.eio.transport() == transports[0]

    run_client(script)


def test_the_server_waits_for_the_async_client_ack(interop_server: LiveServer) -> None:
    async def script(client: socketio.AsyncClient) -> None:
        client.on("question", lambda q: f"{q}?!")
        await client.connect(interop_server.url, wait_timeout=5)
        assert await client.call("ask", "why", timeout=5) == {"answer": "why?!"}

    run_client(script)
