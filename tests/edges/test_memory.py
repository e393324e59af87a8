"""Memory follows connections, not history (DESIGN §6, issue 10 items 5 and 6): a slow
consumer is bounded in frames and bytes, releases what it held the moment it is closed, and
is finished at its deadline even if it never reads again; a closed session is freed at once,
whatever timer would have looked at it later."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import rooms
from rooms.testing import Lifespan, ManualClock, TestClient

pytestmark = pytest.mark.anyio

BIG = "x" * 50_000


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.lowlevel.checkpoint()


def make_server(**options: Any) -> rooms.Server:
    server = rooms.Server(stall_after=0.02, **options)

    @server.on("echo")
    async def echo(socket: rooms.Socket, value: Any) -> Any:
        return value

    return server


async def test_an_outbox_is_bounded_in_bytes_and_released_when_it_overflows() -> None:
    server = make_server(max_outbox=10_000, max_outbox_bytes=400_000)
    reasons: list[str] = []
    server.on("disconnect", lambda socket, reason: reasons.append(reason))
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as stuck,
        TestClient(server, lifespan=False) as fine,
    ):
        await stuck.connect()
        await fine.connect()
        session = server.engine.sessions[str(stuck.sid)]
        stuck.stop_reading()
        sent = 0
        while not session.closed:
            await server.emit("big", BIG)
            sent += 1
            assert session.queued_bytes <= 400_000
            assert sent < 100, "the byte bound never closed the slow consumer"
        # Closed as a slow consumer, and what it held is released at once.
        assert reasons == ["transport error"]
        assert (session.queued, session.queued_bytes) == (0, 0)
        assert [await fine.receive() for _ in range(sent)] == [("big", [BIG])] * sent
        stuck.resume_reading()
        await stuck.wait_disconnected()


async def test_a_frame_bigger_than_the_byte_bound_still_reaches_an_idle_client() -> None:
    server = make_server(max_outbox_bytes=1000)
    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        await client.connect()
        assert await client.call("echo", BIG) == BIG  # an empty outbox takes any one frame


async def test_a_closed_slow_consumer_is_finished_at_its_deadline_though_it_never_reads() -> None:
    clock = ManualClock()
    server = make_server(clock=clock, ping_interval=25, ping_timeout=20, max_outbox=20)
    async with Lifespan(server), TestClient(server, lifespan=False) as fine:
        await fine.connect()
        async with TestClient(server, lifespan=False) as stuck:
            await stuck.connect()
            session = server.engine.sessions[str(stuck.sid)]
            stuck.stop_reading()
            while not session.closed:
                await server.emit("big", BIG)
            assert session.queued == 0  # released when it overflowed
            clock.advance(19)
            server.engine.heartbeat.tick()
            assert session.sid in server.engine.sessions  # still given its chance
            clock.advance(2)
            server.engine.heartbeat.tick()  # the close deadline: aborted
            assert session.sid not in server.engine.sessions
            # Its ASGI task returned (the transport is dropped) with the client never reading.
            await stuck.wait_disconnected()
            assert stuck.close_code is None  # dropped, not closed politely: it was not reading
        assert await fine.call("echo", "unaffected") == "unaffected"


async def test_closed_sessions_are_freed_at_once_not_when_their_timers_fall_due() -> None:
    server = make_server(connect_timeout=45, ping_interval=25, ping_timeout=20)
    sessions: list[weakref.ref[Any]] = []

    @server.on("connect")
    def remember(socket: rooms.Socket) -> None:
        sessions.append(weakref.ref(socket.session))

    @server.on("join")
    async def join(socket: rooms.Socket, room: str) -> None:
        await socket.join(room)

    async with Lifespan(server):
        for n in range(200):
            async with TestClient(server, lifespan=False) as client:
                await client.connect()
                await client.call("join", f"room-{n % 7}")
                await client.send_raw('451-["upload",{"_placeholder":true,"num":0}]')
                # Left with an attachment deadline, a connect deadline and a ping pending.
        await until(lambda: not server.engine.sessions)
        gc.collect()
        alive = [ref() for ref in sessions if ref() is not None]
        assert alive == [], f"{len(alive)} of {len(sessions)} closed sessions still held"
        assert server.engine.heartbeat.pending() >= 200  # their timers have not fallen due
        assert server.namespaces["/"].adapter.rooms == {}


async def test_a_handler_that_joins_after_its_client_left_leaves_no_room_behind() -> None:
    server = make_server()
    release, done = anyio.Event(), anyio.Event()

    @server.on("join_later")
    async def join_later(socket: rooms.Socket, room: str) -> None:
        await release.wait()
        await socket.join(room)  # the client is gone by now
        done.set()

    async with Lifespan(server):
        async with TestClient(server, lifespan=False) as client:
            await client.connect()
            await client.emit("join_later", "leaked")
            await client.close()  # the handler is still waiting
            await until(lambda: not server.engine.sessions)
            release.set()
            with anyio.fail_after(5):
                await done.wait()
        adapter = server.namespaces["/"].adapter
        assert adapter.rooms == {} and adapter.sids == {}
