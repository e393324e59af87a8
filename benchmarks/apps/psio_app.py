"""The benchmark app on python-socketio: the same events and semantics as ``rooms_app``.

Run by ``benchmarks/run.py`` as ``uvicorn psio_app:app --app-dir benchmarks/apps ...``.
With ``PSIO_BENCH_REDIS`` set (a Redis URL) the processes share rooms through
``socketio.AsyncRedisManager``, python-socketio's own cross-process story.
"""

from __future__ import annotations

import os
from typing import Any

import socketio  # type: ignore[import-untyped]

REDIS = os.environ.get("PSIO_BENCH_REDIS")

sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(REDIS) if REDIS else None,
    ping_interval=25,
    ping_timeout=20,
    max_http_buffer_size=1_000_000,
    logger=False,
    engineio_logger=False,
)


@sio.on("join")  # type: ignore[untyped-decorator]
async def join(sid: str, room: str) -> bool:
    await sio.enter_room(sid, room)
    return True


@sio.on("echo")  # type: ignore[untyped-decorator]
async def echo(sid: str, data: Any) -> Any:
    return data


@sio.on("echo_sync")  # type: ignore[untyped-decorator]
def echo_sync(sid: str, data: Any) -> Any:
    return data


@sio.on("fanout")  # type: ignore[untyped-decorator]
async def fanout(sid: str, room: str, payload: Any) -> bool:
    await sio.emit("msg", payload, room=room)
    return True


app = socketio.ASGIApp(sio)
