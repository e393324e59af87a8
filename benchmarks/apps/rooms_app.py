"""The benchmark app on rooms: ``join``, ``echo`` and ``fanout``, all acknowledged, all
``async def`` as users write them; ``echo_sync`` is ``echo`` as a plain function.

Run by ``benchmarks/run.py`` as ``uvicorn rooms_app:app --app-dir benchmarks/apps ...``.
With ``ROOMS_BENCH_BROKER`` set (a broker URL such as ``redis://127.0.0.1:6379/0``) the
process joins a cluster: ``fanout`` then reaches the room's members on every process.
"""

from __future__ import annotations

import os
from typing import Any

import rooms

server = rooms.Server(
    ping_interval=25,
    ping_timeout=20,
    max_payload=1_000_000,
    broker=os.environ.get("ROOMS_BENCH_BROKER") or None,
)


@server.on("join")
async def join(socket: rooms.Socket, room: str) -> bool:
    await socket.join(room)
    return True


@server.on("echo")
async def echo(socket: rooms.Socket, data: Any) -> Any:
    return data


@server.on("echo_sync")
def echo_sync(socket: rooms.Socket, data: Any) -> Any:
    return data  # the same, as a plain function: the echo-sync scenario


@server.on("fanout")
async def fanout(socket: rooms.Socket, room: str, payload: Any) -> bool:
    await server.to(room).emit("msg", payload)
    return True


app = rooms.RoomsMiddleware(None, server=server)
