"""Bare ASGI for tests that need what the in-process TestClient does not do: a plain HTTP
request (a long-poll, a scrape) and a websocket that joins an existing polling session (an
upgrade). No network: the app is called directly, every wait bounded."""

from __future__ import annotations

import math

import anyio

from rooms._types import ASGIApp, Message


async def request(
    app: ASGIApp, method: str, path: str, query: str = "", body: str = ""
) -> tuple[int, str]:
    """One HTTP request to ``app``: its status and body, as text. (Not httpx's
    ASGITransport: on trio it leaves its request stream unfinished for an app that reads the
    request once, as prometheus_client's does, and trio warns.)"""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), (b"content-type", b"text/plain;charset=UTF-8")],
        "client": ("127.0.0.1", 50002),
        "server": ("testserver", 80),
    }
    requested = False
    responded = anyio.Event()
    status, answer = 0, b""

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body.encode(), "more_body": False}
        await responded.wait()  # as a client does, it hangs up once it has the response
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, answer
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer += message.get("body", b"")
            if not message.get("more_body", False):
                responded.set()

    with anyio.fail_after(10):
        await app(scope, receive, send)
    return status, answer.decode()


class RawWebSocket:
    """A websocket to ``app``'s ``/socket.io/`` with ``query`` (``sid=`` of a polling
    session, for an upgrade), over bare ASGI messages."""

    def __init__(self, app: ASGIApp, query: str) -> None:
        self.app = app
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": "/socket.io/",
            "raw_path": b"/socket.io/",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50001),
            "server": ("testserver", 80),
            "subprotocols": [],
        }
        self._to_app, self._app_receive = anyio.create_memory_object_stream[Message](math.inf)
        self._app_send, self._from_app = anyio.create_memory_object_stream[Message](math.inf)

    async def __aenter__(self) -> RawWebSocket:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        await self._to_app.send({"type": "websocket.connect"})
        with anyio.fail_after(10):
            accepted = await self._from_app.receive()
        assert accepted["type"] == "websocket.accept", accepted
        return self

    async def _run(self) -> None:
        with self._app_send:
            await self.app(self.scope, self._app_receive.receive, self._app_send.send)

    async def send(self, text: str) -> None:
        await self._to_app.send({"type": "websocket.receive", "text": text})

    async def receive(self) -> str:
        with anyio.fail_after(10):
            message = await self._from_app.receive()
        assert message["type"] == "websocket.send", message
        return str(message["text"])

    async def __aexit__(self, *exc_info: object) -> None:
        # The client goes away; the app returns once the server has closed the session.
        await self._to_app.send({"type": "websocket.disconnect", "code": 1000})
        with anyio.fail_after(10):
            async for _ in self._from_app:
                pass
        await self._tg.__aexit__(None, None, None)
        for stream in (self._to_app, self._app_receive, self._from_app):
            stream.close()
