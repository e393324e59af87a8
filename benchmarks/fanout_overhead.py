"""rooms' own cost per broadcast delivery, without an ASGI server: queue a frame on N
websocket sessions, then let the flusher send it through a send that does nothing.

What the bare-ASGI ceiling does per delivery is one ``await send(frame)``; everything this
script measures is what rooms adds on top (the bounded outbox, scheduling, the flusher's
pass). In process, one core, no network:

    .venv/bin/python benchmarks/fanout_overhead.py --sessions 1000 --rounds 200
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

import rooms
from rooms.engine.session import Session
from rooms.engine.websocket import Pump

FRAME = '42["msg",{"p":"' + "x" * 64 + '"}]'


async def measure(sessions: int, rounds: int) -> float:
    """Microseconds per delivery."""
    server = rooms.Server()
    sent = 0

    async def send(message: Any) -> None:
        nonlocal sent
        sent += 1

    async with server.running():
        engine = server.engine
        members = []
        for i in range(sessions):
            session = Session(engine, f"s{i}", "websocket", {}, 4096, 1 << 24)
            session.attach(Pump(engine, session, send))
            members.append(session)
        started = time.perf_counter()
        for _ in range(rounds):
            for session in members:
                session.send(FRAME)
            await engine.flusher.wait_flushed()  # this round's sends
            await engine.flusher.wait_flushed()
        elapsed = time.perf_counter() - started
    if sent != sessions * rounds:
        raise AssertionError(f"expected {sessions * rounds} sends, got {sent}")
    return elapsed / (sessions * rounds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    per = anyio.run(measure, args.sessions, args.rounds)
    print(f"{args.sessions} sessions: {per:.2f} µs per delivery (queue and flush, no-op send)")


if __name__ == "__main__":
    main()
