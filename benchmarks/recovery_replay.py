"""How long a recovery takes to replay N missed packets, memory and Redis stores; and what
logging costs live broadcasts (recovery off, memory store, Redis store).

    .venv/bin/python benchmarks/recovery_replay.py [--packets 10000] [--rounds 3] [--redis URL]

In process (rooms.testing.TestClient over the ASGI websocket), so it measures the server:
the store's lookup, building the frames and sending them, from the reconnecting client's
CONNECT until it has received the last missed event. Without ``--redis`` it starts a
redis-server of its own on a free 127.0.0.1 port. python-socketio has no connection state
recovery, so there is nothing to compare side by side.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rooms
from rooms.brokers.redis import RedisBroker
from rooms.testing import Lifespan, TestClient


async def replay_once(packets: int, broker: str | None) -> float:
    server = rooms.Server(
        broker=RedisBroker(broker) if broker else None,
        recovery=rooms.Recovery(max_packets=packets * 2),
        cluster_prefix=f"bench-{time.time_ns()}",
    )
    app = rooms.RoomsMiddleware(None, server=server)
    gone = anyio.Event()

    @server.on("connect")
    async def connect(sock: rooms.Socket, auth: dict[str, Any]) -> None:
        if not sock.recovered:
            await sock.join("news")

    @server.on("disconnect")
    def disconnect(sock: rooms.Socket, reason: str) -> None:
        gone.set()

    async with Lifespan(app):
        async with TestClient(app, lifespan=False, timeout=60) as first:
            await first.connect()
            await server.to("news").emit("tick", -1, {"pad": "x" * 64})
            _, args = await first.receive()
            pid, offset = first.pids["/"], args[-1]
        await gone.wait()
        await server.wait_sessions_saved()
        for n in range(packets):
            await server.to("news").emit("tick", n, {"pad": "x" * 64})
        async with TestClient(app, lifespan=False, timeout=60) as again:
            started = time.perf_counter()
            await again.connect(auth={"pid": pid, "offset": offset})
            for n in range(packets):
                _, args = await again.receive()
                assert args[0] == n, (args, n)
            return time.perf_counter() - started


async def broadcast_once(
    messages: int, members: int, store: str | None, broker: str | None
) -> float:
    """Seconds until ``members`` in-process clients each received ``messages`` broadcasts."""
    recovery = rooms.Recovery(store=store) if store else None  # type: ignore[arg-type]
    server = rooms.Server(
        broker=RedisBroker(broker) if broker else None,
        recovery=recovery,
        cluster_prefix=f"bench-{time.time_ns()}",
    )
    app = rooms.RoomsMiddleware(None, server=server)

    @server.on("connect")
    async def connect(sock: rooms.Socket, auth: dict[str, Any]) -> None:
        await sock.join("news")

    async with Lifespan(app), AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(TestClient(app, lifespan=False, timeout=60))
            for _ in range(members)
        ]
        for client in clients:
            await client.connect()

        async def drain(client: TestClient) -> None:
            for _ in range(messages):
                await client.receive()

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(drain, client)
            for n in range(messages):
                await server.to("news").emit("tick", n, {"pad": "x" * 64})
        return time.perf_counter() - started


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is missing (make deps redis-server), or pass --redis URL")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                sys.exit("redis-server did not start")
            time.sleep(0.05)  # a starting process: poll its port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", help="a Redis URL to use instead of starting one")
    options = parser.parse_args()
    process = None
    url = options.redis
    with tempfile.TemporaryDirectory() as workdir:
        if url is None:
            process, url = start_redis(workdir)
        try:
            for store, broker in (("memory", None), ("redis", url)):
                times = [
                    anyio.run(replay_once, options.packets, broker) for _ in range(options.rounds)
                ]
                median = statistics.median(times)
                print(
                    f"{store:>6}: {options.packets} missed packets replayed in "
                    f"{median * 1000:.0f} ms (median of {options.rounds}; "
                    f"{options.packets / median:,.0f} packets/s)",
                    flush=True,
                )
            messages, members = 1000, 100
            for label, kind, broker in (
                ("off", None, url),
                ("memory", "memory", url),
                ("redis", "redis", url),
            ):
                times = [
                    anyio.run(broadcast_once, messages, members, kind, broker)
                    for _ in range(options.rounds)
                ]
                median = statistics.median(times)
                print(
                    f"live broadcasts, recovery {label:>6} (Redis broker): "
                    f"{messages * members / median:,.0f} deliveries/s "
                    f"({messages} x {members} members, median of {options.rounds})",
                    flush=True,
                )
        finally:
            if process is not None:
                process.kill()
                process.wait(timeout=10)


if __name__ == "__main__":
    main()
