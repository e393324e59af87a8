"""What an async handler may count on, whatever runs it (a task of its own today; inline
in the websocket reader until it suspends, if issue 13 gets there): the connection reads on
while it is suspended, cancel scopes held across a suspension work, each handler sees the
connection's context and not the last handler's, a failure after suspending is logged and
the client goes on. On asyncio and trio."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import rooms
from rooms.testing import Lifespan, TestClient

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
