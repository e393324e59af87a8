"""The soak app on python-socketio: what ``tests/apps/edges.py`` is for rooms.

Run by ``benchmarks/soak.py`` as ``uvicorn psio_soak:app --app-dir benchmarks/apps ...``.
Same events and semantics as the rooms app (``echo``, ``join``, ``flood``), the same Engine.IO
settings as ``psio_app.py`` (ping 25 s / 20 s, 1 MB payloads), and a ``/stats`` route that
says how many Engine.IO sessions and main-namespace sockets the server still holds, so the
soak can tell when a closed connection is really gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import socketio  # type: ignore[import-untyped]
from soak_heap import heap

sio = socketio.AsyncServer(
    async_mode="asgi",
    ping_interval=float(os.environ.get("PSIO_SOAK_PING_INTERVAL", "25")),
    ping_timeout=float(os.environ.get("PSIO_SOAK_PING_TIMEOUT", "20")),
    max_http_buffer_size=1_000_000,
    logger=False,
    engineio_logger=False,
)


@sio.on("echo")  # type: ignore[untyped-decorator]
async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
    return args


@sio.on("join")  # type: ignore[untyped-decorator]
async def join(sid: str, room: str) -> bool:
    await sio.enter_room(sid, room)
    return True


@sio.on("flood")  # type: ignore[untyped-decorator]
async def flood(sid: str, room: str, size: int, count: int) -> int:
    """Broadcast ``count`` messages of ``size`` characters to ``room``; answers ``count``."""
    payload = "x" * min(size, 1_000_000)
    for n in range(count):
        await sio.emit("flood", (n, payload), room=room)
    return count


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def stats(scope: Scope, receive: Receive, send: Send) -> None:
    """Everything that is not Socket.IO: /stats as JSON (with RSS and malloc's bytes in use,
    as the rooms app's /heap), 404 otherwise."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/stats":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    # ?gc=1 collects first (heap() does it), as the rooms app's /stats and /heap do.
    memory = heap(collect=b"gc=1" in scope.get("query_string", b""))
    # The manager's room index: namespace -> room -> sids; room None holds every socket.
    everyone = sio.manager.rooms.get("/", {}).get(None, {})
    body = json.dumps(
        {
            "sessions": len(sio.eio.sockets),
            "sockets": len(everyone),
            "pending_binary": len(sio._binary_packet),
            **memory,
        }
    ).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = socketio.ASGIApp(sio, other_asgi_app=stats)
