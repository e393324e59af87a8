"""Slow consumers: a stalled client neither holds up others nor grows memory without bound."""

from __future__ import annotations

import anyio
import pytest

import rooms
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio


def make_server(max_outbox: int = 1000) -> rooms.Server:
    server = rooms.Server(max_outbox=max_outbox, stall_after=0.05)
    server.on("join", lambda socket, room: socket.nsp.adapter.add_all(socket.id, [room]))
    return server


async def test_a_client_that_stops_reading_does_not_delay_the_others() -> None:
    server = make_server()
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as stuck,
        TestClient(server, lifespan=False) as fine,
    ):
        await stuck.connect()
        await fine.connect()
        stuck.stop_reading()
        for n in range(5):
            await server.emit("tick", n)
        # The flusher blocks on the stuck client; the watchdog hands it its own writer and
        # the others get everything, in order.
        assert [await fine.receive() for _ in range(5)] == [("tick", [n]) for n in range(5)]
        assert server.engine.flusher.stalls >= 1
        stuck.resume_reading()
        assert [await stuck.receive() for _ in range(5)] == [("tick", [n]) for n in range(5)]
        # Once it has caught up it is served like everyone else again.
        await server.emit("tick", 5)
        assert await stuck.receive() == ("tick", [5])
        assert await fine.receive() == ("tick", [5])


async def test_an_outbox_past_its_bound_closes_only_that_connection() -> None:
    server = make_server(max_outbox=10)
    reasons: list[str] = []
    server.on("disconnect", lambda socket, reason: reasons.append(reason))
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as stuck,
        TestClient(server, lifespan=False) as fine,
    ):
        await stuck.connect()
        await fine.connect()
        stuck.stop_reading()
        for n in range(30):
            await server.emit("tick", n)
        assert [await fine.receive() for _ in range(30)] == [("tick", [n]) for n in range(30)]
        assert reasons == ["transport error"]
        stuck.resume_reading()
        await stuck.wait_disconnected()


async def test_volatile_packets_are_dropped_for_a_full_outbox_not_the_connection() -> None:
    server = make_server(max_outbox=10)
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as stuck,
        TestClient(server, lifespan=False) as fine,
    ):
        await stuck.connect()
        await fine.connect()
        stuck.stop_reading()
        for n in range(30):
            await server.volatile.emit("tick", n)
        assert [await fine.receive() for _ in range(30)] == [("tick", [n]) for n in range(30)]
        session = server.engine.sessions[str(stuck.sid)]
        kept = 30 - session.dropped
        # Bounded by max_outbox, plus what the blocked send had already taken from the
        # outbox (one batch: at most max_outbox, here the first broadcast or two); the rest
        # were dropped and counted.
        assert session.dropped > 0
        assert 0 < kept <= 10 + 10
        stuck.resume_reading()
        got = [await stuck.receive() for _ in range(kept)]
        assert got == [("tick", [n]) for n in range(kept)]  # the oldest kept, in order
        await server.emit("last")  # the outbox has drained: a normal emit goes through
        assert await stuck.receive() == ("last", [])
        assert not stuck.disconnected.is_set()


async def test_a_parked_writer_comes_back_when_frames_arrive() -> None:
    """After writer_linger of idleness a connection's writer task ends; sending again works."""
    server = make_server()
    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        await client.connect()
        for round_ in range(3):
            await server.emit("ping", round_)
            assert await client.receive() == ("ping", [round_])
            server.engine.heartbeat.tick()
        with anyio.fail_after(2):
            assert await client.call("join", "r") is None
