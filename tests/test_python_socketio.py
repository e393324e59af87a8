"""The python-socketio client against a real server (uvicorn/asyncio, hypercorn/trio)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import socketio

from tests.conftest import LiveServer

TRANSPORTS = {
    "polling+upgrade": ["polling", "websocket"],
    "websocket": ["websocket"],
    "polling": ["polling"],
}


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[str(request.param)]


@pytest.fixture
def client() -> Iterator[socketio.Client]:
    sio = socketio.Client(reconnection=False)
    yield sio
    if sio.connected:
        sio.disconnect()


def test_connect_emit_and_ack_on_every_transport(
    interop_server: LiveServer, client: socketio.Client, transports: list[str]
) -> None:
    client.connect(interop_server.url, transports=transports, auth={"who": "py"}, wait_timeout=5)
    assert client.call("echo", "one", timeout=5) == "one"
    # python-socketio sends a tuple as several arguments.
    assert client.call("echo", (["a", {"b": 2}], 3), timeout=5) == (["a", {"b": 2}], 3)
    assert client.call("echo_sync", {"sync": True}, timeout=5) == {"sync": True}
    assert client.call("whoami", timeout=5)["auth"] == {"who": "py"}
    if transports == ["polling", "websocket"]:
        assert client.eio.transport() in ("polling", "websocket")
    else:
        assert client.eio.transport() == transports[0]


def test_binary_round_trips(
    interop_server: LiveServer, client: socketio.Client, transports: list[str]
) -> None:
    client.connect(interop_server.url, transports=transports, wait_timeout=5)
    payload = {"blob": b"\x00\x01\xff", "nested": [b"x", {"y": b"z"}]}
    assert client.call("echo", payload, timeout=5) == payload


def test_the_server_waits_for_the_client_ack(
    interop_server: LiveServer, client: socketio.Client
) -> None:
    client.on("question", lambda q: f"{q}?!")
    client.connect(interop_server.url, wait_timeout=5)
    assert client.call("ask", "why", timeout=5) == {"answer": "why?!"}


def test_rooms_between_two_python_clients(interop_server: LiveServer) -> None:
    a, b = socketio.Client(reconnection=False), socketio.Client(reconnection=False)
    heard = threading.Event()
    said: list[Any] = []

    @b.on("said")
    def on_said(sid: str, text: str) -> None:
        said.append((sid, text))
        heard.set()

    try:
        a.connect(interop_server.url, wait_timeout=5)
        b.connect(interop_server.url, wait_timeout=5)
        b.call("join", "py-room", timeout=5)
        a.call("say", ("py-room", "hello"), timeout=5)
        assert heard.wait(5)
        assert said == [(a.get_sid(), "hello")]
    finally:
        a.disconnect()
        b.disconnect()


def test_namespaces_refusal_and_unknown(interop_server: LiveServer) -> None:
    refused = socketio.Client(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError, match="failed to connect"):
        refused.connect(interop_server.url, namespaces=["/admin"], wait_timeout=5)
    assert errors == [{"message": "unauthorized", "data": {"hint": "send auth.token"}}]
    admin = socketio.Client(reconnection=False)
    try:
        admin.connect(
            interop_server.url, namespaces=["/admin"], auth={"token": "s3cret"}, wait_timeout=5
        )
        assert admin.call("echo", 7, namespace="/admin", timeout=5) == {"admin": 7}
    finally:
        admin.disconnect()


def test_server_initiated_disconnect(interop_server: LiveServer, client: socketio.Client) -> None:
    gone = threading.Event()
    client.on("disconnect", lambda *reason: gone.set())
    client.connect(interop_server.url, wait_timeout=5)
    client.emit("bye")
    assert gone.wait(5)
    assert not client.connected
