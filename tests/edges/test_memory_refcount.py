"""A closed session must be freed by reference counting alone, not by the next run of the
cyclic garbage collector (DESIGN §6: "a closed session frees its frames at once").

An idle server may not run a full collection for a long time, and what a closed connection
still holds waits for it: tests/edges/test_memory.py collects before it looks, so it cannot
see this. Found by benchmarks/soak.py: after an attachment flood, 20 MB stayed allocated
with every connection closed, until gc.collect().
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import rooms
from rooms.testing import Lifespan, TestClient
from tests.rawclient import placeholders

pytestmark = pytest.mark.anyio

ANNOUNCE_10 = f'4510-["upload",{placeholders(10)}]'


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects while the test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_closed_session_and_its_pending_attachments_need_no_cyclic_gc(
    no_cyclic_gc: None,
) -> None:
    server = rooms.Server()
    sessions: list[weakref.ref[Any]] = []

    @server.on("connect")
    def remember(socket: rooms.Socket) -> None:
        sessions.append(weakref.ref(socket.session))

    async with Lifespan(server):
        for _ in range(5):
            async with TestClient(server, lifespan=False) as client:
                await client.connect()
                await client.send_raw(ANNOUNCE_10)
                for _ in range(9):  # 900 KB held, one short of the packet
                    await client.send_raw(b"a" * 100_000)
        with anyio.fail_after(5):
            while server.engine.sessions:
                await anyio.lowlevel.checkpoint()
        alive = [session for ref in sessions if (session := ref()) is not None]
        held = sum(len(buffer) for session in alive for buffer in session.upper.decoder._buffers)
        assert not alive, f"{len(alive)} closed sessions alive, holding {held:,} attachment bytes"
