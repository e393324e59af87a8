"""What an async handler may count on, whatever runs it (a task of its own today; inline
in the websocket reader until it suspends, if issue 13 gets there): the connection reads on
while it is suspended, cancel scopes held across a suspension work, each handler sees the
connection's context and not the last handler's, a failure after suspending is logged and
the client goes on. On asyncio and trio."""

from __future__ import annotations

import contextvars
import json
import logging
import random
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import rooms
from rooms.testing import Lifespan, ManualClock, TestClient

pytestmark = pytest.mark.anyio

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


def make_server(release: anyio.Event) -> rooms.Server:
    server = rooms.Server()

    @server.on("plain")
    async def plain(socket: rooms.Socket, value: Any) -> Any:
        return value  # never suspends

    @server.on("wait")
    async def wait(socket: rooms.Socket) -> str:
        await release.wait()  # suspends until another message of this client arrives
        return "released"

    @server.on("release")
    async def release_it(socket: rooms.Socket) -> str:
        release.set()
        return "ok"

    @server.on("ask")
    async def ask(socket: rooms.Socket, value: Any) -> Any:
        # Needs the reader to read this client's ACK while the handler is suspended.
        return await socket.emit_with_ack("question", value, timeout=2)

    @server.on("scoped")
    async def scoped(socket: rooms.Socket) -> str:
        with anyio.fail_after(5):  # a cancel scope held across the suspension
            await anyio.lowlevel.checkpoint()
            await anyio.sleep(0.001)
        return "scoped"

    @server.on("timed_out")
    async def timed_out(socket: rooms.Socket) -> bool:
        with anyio.move_on_after(0.01) as scope:  # its cancellation reaches the handler
            await anyio.sleep_forever()
        return scope.cancelled_caught

    @server.on("set_var")
    async def set_var(socket: rooms.Socket, value: str) -> str:
        before = seen.get()
        seen.set(value)
        await anyio.lowlevel.checkpoint()
        return before

    @server.on("get_var")
    async def get_var(socket: rooms.Socket) -> str:
        return seen.get()

    @server.on("fail_late")
    async def fail_late(socket: rooms.Socket) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("after suspending")

    return server


async def test_a_handler_that_never_suspends_answers_its_ack() -> None:
    server = make_server(anyio.Event())
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        assert [await client.call("plain", n) for n in range(50)] == list(range(50))


async def test_the_connection_reads_on_while_a_handler_is_suspended() -> None:
    server = make_server(anyio.Event())
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        async with anyio.create_task_group() as tg:
            answers: list[Any] = []

            async def call_wait() -> None:
                answers.append(await client.call("wait"))

            tg.start_soon(call_wait)
            await anyio.wait_all_tasks_blocked()
            # The suspended handler does not hold up the reader: this is read and answered.
            assert await client.call("release") == "ok"
        assert answers == ["released"]
        client.on("question", lambda value: value * 2)
        assert await client.call("ask", 21) == 42  # the client's ACK read meanwhile
        assert await client.call("plain", "still reading") == "still reading"


async def test_cancel_scopes_held_across_the_suspension_work() -> None:
    server = make_server(anyio.Event())
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        assert [await client.call("scoped") for _ in range(5)] == ["scoped"] * 5


async def test_a_cancel_scope_that_fires_while_the_handler_waits_cancels_only_that_wait() -> None:
    server = make_server(anyio.Event())
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        assert [await client.call("timed_out") for _ in range(3)] == [True] * 3
        assert await client.call("plain", "reading on") == "reading on"


async def test_each_handler_sees_the_context_of_the_connection_not_of_the_last_handler() -> None:
    server = make_server(anyio.Event())
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        assert await client.call("set_var", "first") == "unset"
        assert await client.call("set_var", "second") == "unset"
        assert await client.call("get_var") == "unset"


async def test_a_handler_that_fails_after_suspending_is_logged_and_the_client_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server(anyio.Event())
    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        with caplog.at_level(logging.ERROR, logger="rooms"), pytest.raises(rooms.AckTimeout):
            await client.call("fail_late", timeout=0.2)
        assert await client.call("plain", 7) == 7
    assert any("fail_late" in r.getMessage() and r.exc_info is not None for r in caplog.records), (
        caplog.records
    )


async def test_many_suspended_handlers_finish_and_the_connection_closes_cleanly() -> None:
    release = anyio.Event()
    server = make_server(release)
    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app), TestClient(app, lifespan=False) as client:
        await client.connect()
        answers: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def call_wait() -> None:
                answers.append(await client.call("wait"))

            for _ in range(20):
                tg.start_soon(call_wait)
            await anyio.wait_all_tasks_blocked()
            await client.call("release")
        assert answers == ["released"] * 20


async def test_a_handler_that_never_suspends_runs_in_the_reader_without_a_task_of_its_own() -> None:
    server = rooms.Server()

    @server.on("whoami")
    async def whoami(socket: rooms.Socket) -> int:
        return anyio.get_current_task().id

    async with TestClient(rooms.RoomsMiddleware(None, server=server)) as client:
        await client.connect()
        ids = {await client.call("whoami") for _ in range(5)}
    assert len(ids) == 1, f"expected every call in the one reading task, got tasks {ids}"


async def test_handlers_that_suspend_one_after_another_each_hand_reading_on() -> None:
    """Each suspending handler keeps the task it started in and reading moves to a new
    task, twenty times over: the connection still answers in order, and closes cleanly
    (the ASGI task returns once the last reader has torn the connection down)."""
    server = rooms.Server()

    @server.on("nap")
    async def nap(socket: rooms.Socket, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app), TestClient(app, lifespan=False) as client:
        await client.connect()
        assert [await client.call("nap", n) for n in range(20)] == list(range(20))
        await client.close()
        with anyio.fail_after(5):
            await client.app_done.wait()
        assert not server.engine.sessions


class Lingering:
    """A handler that waits forever, and whether it was cancelled."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()

    async def cancelled_after_grace(
        self, clock: ManualClock, server: rooms.Server, grace: float
    ) -> None:
        """Its session finished: not cancelled just before ``grace`` passes, then cancelled."""
        clock.advance(grace - 0.1)
        server.engine.heartbeat.tick()
        await anyio.wait_all_tasks_blocked()
        assert not self.cancelled.is_set(), "cancelled before its grace"
        clock.advance(0.2)
        server.engine.heartbeat.tick()
        with anyio.fail_after(5):
            await self.cancelled.wait()

    async def __call__(self, socket: rooms.Socket) -> None:
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise


async def test_a_handler_running_on_after_its_connection_ended_is_cancelled_after_the_grace() -> (
    None
):
    """It started inline in the ASGI server's task for the connection: that task, and so
    the ASGI server's shutdown, waits for it no longer than ``handler_grace``."""
    clock = ManualClock()
    server = rooms.Server(clock=clock, handler_grace=3)
    lingering = Lingering()
    server.on("linger")(lingering)

    @server.on("echo")
    async def echo(socket: rooms.Socket, value: Any) -> Any:
        return value

    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app), TestClient(app, lifespan=False) as client:
        await client.connect()
        await client.emit("linger")
        await lingering.started.wait()
        clock.advance(10)  # while the client is connected, nothing bounds a handler
        server.engine.heartbeat.tick()
        assert await client.call("echo", 1) == 1
        assert not lingering.cancelled.is_set()
        [session] = server.engine.sessions.values()
        await client.close()
        await session.wait_finished()
        await lingering.cancelled_after_grace(clock, server, 3)
        with anyio.fail_after(5):
            await client.app_done.wait()  # the connection's ASGI task returned


async def test_on_long_polling_a_handler_outliving_its_session_is_cancelled_after_the_grace() -> (
    None
):
    clock = ManualClock()
    server = rooms.Server(clock=clock, handler_grace=3)
    lingering = Lingering()
    server.on("linger")(lingering)
    app = rooms.RoomsMiddleware(None, server=server)
    transport = httpx.ASGITransport(app=app)
    async with Lifespan(app), httpx.AsyncClient(transport=transport) as http:
        base = "http://testserver/socket.io/?EIO=4&transport=polling"
        opened = await http.get(base)
        sid = json.loads(opened.text[1:])["sid"]
        url = f"{base}&sid={sid}"
        assert (await http.post(url, content="40")).text == "ok"
        assert (await http.get(url)).text.startswith("40")
        assert (await http.post(url, content='42["linger"]')).text == "ok"
        await lingering.started.wait()
        session = server.engine.sessions[sid]
        assert (await http.post(url, content="1")).text == "ok"  # the client's CLOSE
        await session.wait_finished()
        await lingering.cancelled_after_grace(clock, server, 3)


async def test_a_mix_of_handlers_and_leaving_clients_leaves_nothing_behind() -> None:
    """Bounded churn: clients that send a seeded mix of handlers that finish inline, that
    suspend once, or that outlive the client, then leave mid-way. Every answer is right;
    a lingering handler runs on after its client left, until its grace passes; and once
    the clients are gone no session, socket or handler is left."""
    clock = ManualClock()
    server = rooms.Server(clock=clock, handler_grace=1)
    running: set[object] = set()
    none_running = anyio.Event()

    @server.on("now")
    async def now(socket: rooms.Socket, n: int) -> int:
        return n

    @server.on("later")
    async def later(socket: rooms.Socket, n: int) -> int:
        await anyio.lowlevel.checkpoint()
        return n

    @server.on("linger")
    async def linger(socket: rooms.Socket) -> None:
        token = object()
        running.add(token)
        try:
            await anyio.sleep_forever()
        finally:
            running.discard(token)
            if not running:
                none_running.set()

    rng = random.Random(13)
    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app):
        for _ in range(30):
            async with TestClient(app, lifespan=False) as client:
                await client.connect()
                lingering = 0
                for n in range(rng.randrange(1, 8)):
                    kind = rng.choice(["now", "later", "linger"])
                    if kind == "linger":
                        await client.emit("linger")
                        lingering += 1
                    else:
                        assert await client.call(kind, n) == n
                assert await client.call("now", -1) == -1  # every linger has started
                [session] = server.engine.sessions.values()
                await client.close()
                await session.wait_finished()
                await anyio.wait_all_tasks_blocked()
                assert len(running) == lingering  # its client gone, still running
                none_running = anyio.Event()
                clock.advance(1.1)
                server.engine.heartbeat.tick()
                if lingering:
                    with anyio.fail_after(5):
                        await none_running.wait()  # the grace passed: cancelled
                with anyio.fail_after(5):
                    await client.app_done.wait()  # and the connection's ASGI task returned
        assert not server.engine.sessions
        assert not server.main.sockets
