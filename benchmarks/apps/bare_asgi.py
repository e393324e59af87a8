"""The ceiling: a raw ASGI websocket app that speaks just enough Engine.IO v4 / Socket.IO v5
for ``benchmarks/loadgen.js``, and nothing more.

It decodes each incoming event once (``json.loads``), encodes each outgoing packet once
(``json.dumps``) and then hands ONE pre-encoded frame per recipient straight to the ASGI
server's ``send``: no sessions, no outbox, no writer task, no heartbeat (the benchmark runs
are far shorter than a ping interval), no polling, no binary, no namespaces other than
``/``. Whatever a real Socket.IO server costs above this is its own overhead.

Run by ``benchmarks/run.py`` as ``uvicorn bare_asgi:app --app-dir benchmarks/apps ...``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN = '0{"sid":"%s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
loads = json.loads

# room name -> {sid: that connection's ASGI send}
ROOMS: dict[str, dict[str, Send]] = {}


def new_sid() -> str:
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await websocket(scope, receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)
    else:
        await not_found(send)


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"9")],
        }
    )
    await send({"type": "http.response.body", "body": b"Not Found"})


async def websocket(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if not scope["path"].startswith("/socket.io/"):
        await send({"type": "websocket.close", "code": 1000})
        return
    sid = new_sid()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": OPEN % sid})
    joined: list[str] = []
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text: str | None = message.get("text")
            if not text:
                continue
            if text.startswith("42"):
                await event(sid, text, send, joined)
            elif text == "3":
                continue  # pong
            elif text == "2":
                await send({"type": "websocket.send", "text": "3"})
            elif text.startswith("40"):
                await send({"type": "websocket.send", "text": f'40{{"sid":"{new_sid()}"}}'})
            elif text.startswith("41") or text == "1":
                await send({"type": "websocket.close", "code": 1000})
                return
    finally:
        for room in joined:
            members = ROOMS.get(room)
            if members is not None:
                members.pop(sid, None)
                if not members:
                    del ROOMS[room]


async def event(sid: str, text: str, send: Send, joined: list[str]) -> None:
    """``42<id>["name",...args]``: run the handler, then send ``43<id>[result]``."""
    end = 2
    while end < len(text) and text[end].isdigit():
        end += 1
    ack_id = text[2:end]
    args = loads(text[end:])
    name = args[0]
    result: Any = True
    if name == "fanout":
        frame: Message = {"type": "websocket.send", "text": "42" + dumps(["msg", args[2]])}
        for member in list(ROOMS.get(args[1], {}).values()):
            try:
                await member(frame)
            except Exception:  # the member went away; its own task cleans up
                continue
    elif name == "echo" or name == "echo_sync":
        result = args[1]
    elif name == "join":
        room = args[1]
        ROOMS.setdefault(room, {})[sid] = send
        joined.append(room)
    if ack_id:
        await send({"type": "websocket.send", "text": "43" + ack_id + dumps([result])})
