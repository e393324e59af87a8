"""No sticky sessions: a request for a session another process owns is served by that
process through the broker, for long-polling and for the websocket upgrade alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import rooms
from rooms.protocol.engineio import RECORD_SEPARATOR
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.anyio


def base_scope(kind: str, query: dict[str, str]) -> dict[str, Any]:
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": "/socket.io/",
        "raw_path": b"/socket.io/",
        "query_string": urlencode({"EIO": "4", **query}).encode(),
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 4321),
        "server": ("testserver", 80),
    }


async def http(app: Any, method: str, query: dict[str, str], body: str = "") -> tuple[int, str]:
    """One long-polling request, driven as an ASGI server would."""
    scope = {**base_scope("http", {"transport": "polling", **query}), "method": method}
    requested = False
    answered = anyio.Event()
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body.encode(), "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                answered.set()

    with anyio.fail_after(10):
        await app(scope, receive, send)
    return status, b"".join(chunks).decode()


class RawWebsocket:
    """The ASGI side of a websocket, driven by the test."""

    def __init__(self, app: Any, query: dict[str, str]) -> None:
        self.app = app
        self.scope = {**base_scope("websocket", {"transport": "websocket", **query})}
        self.scope["extensions"] = {"websocket.http.response": {}}
        self.to_app: MemoryObjectSendStream[dict[str, Any]]
        self.app_rx: MemoryObjectReceiveStream[dict[str, Any]]
        self.app_tx: MemoryObjectSendStream[dict[str, Any]]
        self.from_app: MemoryObjectReceiveStream[dict[str, Any]]
        self.to_app, self.app_rx = anyio.create_memory_object_stream[dict[str, Any]](100)
        self.app_tx, self.from_app = anyio.create_memory_object_stream[dict[str, Any]](100)

    async def run(self) -> None:
        with self.to_app, self.app_rx, self.app_tx, self.from_app:
            await self.app(self.scope, self.app_rx.receive, self.app_tx.send)

    async def send(self, text: str) -> None:
        await self.to_app.send({"type": "websocket.receive", "text": text})

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(10):
            return await self.from_app.receive()

    async def text(self) -> str:
        """The next text frame, skipping pings (answered) and noops."""
        while True:
            message = await self.receive()
            text = message.get("text")
            if text == "2":
                await self.send("3")
            elif isinstance(text, str):
                return text


def payload(body: str) -> list[str]:
    return body.split(RECORD_SEPARATOR)


def echo(server: rooms.Server) -> None:
    @server.on("echo")
    def echo_(socket: rooms.Socket, value: Any) -> Any:
        return value


async def handshake(c: Cluster, index: int) -> str:
    status, body = await http(c.apps[index], "GET", {})
    assert status == 200
    opened = json.loads(body[1:])
    assert opened["sid"].startswith(c.node(index).uid)  # the sid names its owner
    return str(opened["sid"])


async def test_long_polling_works_whichever_process_each_request_reaches(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=echo) as c:
        sid = await handshake(c, 0)

        assert await http(c.apps[1], "POST", {"sid": sid}, "40") == (200, "ok")
        status, body = await http(c.apps[2], "GET", {"sid": sid})
        assert status == 200
        assert body.startswith('40{"sid":')

        assert await http(c.apps[2], "POST", {"sid": sid}, '421["echo","hi"]') == (200, "ok")
        assert await http(c.apps[1], "GET", {"sid": sid}) == (200, '431["hi"]')

        await c.servers[0].emit("news", {"n": 1})
        assert await http(c.apps[2], "GET", {"sid": sid}) == (200, '42["news",{"n":1}]')

        assert c.node(1).relay is not None and c.node(1).relay.relayed == 2
        assert c.node(2).relay is not None and c.node(2).relay.relayed == 3
        assert c.node(0).relay is not None and c.node(0).relay.served == 5


async def test_the_websocket_upgrade_works_on_another_process(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=echo) as c:
        sid = await handshake(c, 0)
        assert await http(c.apps[0], "POST", {"sid": sid}, "40") == (200, "ok")
        assert (await http(c.apps[0], "GET", {"sid": sid}))[1].startswith("40")

        ws = RawWebsocket(c.apps[1], {"sid": sid})
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run)
            await ws.to_app.send({"type": "websocket.connect"})
            assert (await ws.receive())["type"] == "websocket.accept"
            await ws.send("2probe")
            assert await ws.text() == "3probe"
            await ws.send("5")
            await ws.send('427["echo",[1,2]]')
            assert await ws.text() == "437[[1,2]]"
            await c.servers[0].emit("news", "over the relay")
            assert await ws.text() == '42["news","over the relay"]'
            # The client closes the websocket (a CLOSE packet is for long-polling: the
            # reference server ignores one on a websocket, and so does rooms).
            await ws.send("1")
            await ws.to_app.send({"type": "websocket.disconnect", "code": 1000})

        # The front returned only after the owner ended the exchange, which it does once the
        # session is finished: nothing is left behind on either side.
        assert c.servers[0].engine.sessions == {}


async def test_a_session_of_a_process_that_is_gone_is_unknown_at_once(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=echo) as c:
        sid = await handshake(c, 0)
        await c.stop(0)
        await c.node(1).wait_for_peers(0)
        status, body = await http(c.apps[1], "GET", {"sid": sid})
        assert (status, json.loads(body)) == (400, {"code": 1, "message": "Session ID unknown"})


async def test_a_relayed_poll_ends_when_its_owner_dies(cluster: Callable[..., Any]) -> None:
    async with cluster(2, setup=echo, heartbeat_interval=0.05, heartbeat_timeout=0.5) as c:
        sid = await handshake(c, 0)
        assert await http(c.apps[1], "POST", {"sid": sid}, "40") == (200, "ok")
        assert (await http(c.apps[1], "GET", {"sid": sid}))[1].startswith("40")
        c.sever(0)
        # The poll waits at the owner; once the owner is declared dead, the client hears
        # that its session is unknown (and reconnects) instead of hanging.
        status, body = await http(c.apps[1], "GET", {"sid": sid})
        assert (status, json.loads(body)["code"]) == (400, 1)


async def test_forged_sids_are_unknown_sessions(cluster: Callable[..., Any]) -> None:
    async with cluster(2, setup=echo) as c:
        for sid in ["short", c.node(1).uid + "x" * 20, "0" * 12 + "y" * 20]:
            status, body = await http(c.apps[0], "GET", {"sid": sid})
            assert (status, json.loads(body)["code"]) == (400, 1)
