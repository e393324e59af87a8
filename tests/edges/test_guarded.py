"""User code never reaches the server's task group (DESIGN §6, issue 10 item 4): whatever a
handler, a middleware, a callback or a store raises, or a return value that cannot be sent,
is logged at ERROR naming the handler and the event, and the server keeps serving. One test
per place the server runs user code."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import rooms
from rooms.brokers import Hub, MemoryBroker
from rooms.engine import Session
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio


def make_server(**options: Any) -> rooms.Server:
    server = rooms.Server(**options)

    @server.on("echo")
    async def echo(socket: rooms.Socket, value: Any) -> Any:
        return value

    return server


async def still_serving(server: rooms.Server) -> None:
    """A new client connects and an async handler answers: nothing was cancelled."""
    async with TestClient(server, lifespan=False) as fresh:
        await fresh.connect()
        assert await fresh.call("echo", "still serving") == "still serving"


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (object(), "is not JSON serializable"),
        (float("nan"), "Out of range float values"),
        ({"self": None}, "Circular reference"),
    ],
)
async def test_a_return_value_that_cannot_be_sent_is_logged_and_the_server_serves_on(
    kind: str, value: Any, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    if isinstance(value, dict):
        value["self"] = value
    server = make_server()

    if kind == "async":

        async def unsendable(socket: rooms.Socket) -> Any:
            return value

    else:

        def unsendable(socket: rooms.Socket) -> Any:
            return value

    server.on("unsendable", unsendable)
    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        await client.connect()
        with pytest.raises(rooms.AckTimeout):
            await client.call("unsendable", timeout=0.3)
        assert await client.call("echo", "after") == "after"
        await still_serving(server)
    [line] = errors(caplog)
    assert "unsendable" in line and "'unsendable'" in line  # the handler and the event
    assert "cannot be sent as its ack" in line and why in line


async def test_a_handler_that_raises_is_logged_with_its_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()

    @server.on("boom")
    async def boom(socket: rooms.Socket) -> None:
        raise RuntimeError("handler bug")

    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        await client.connect()
        await client.emit("boom")
        assert await client.call("echo", 1) == 1
        await still_serving(server)
    [line] = errors(caplog)
    assert "boom" in line and "'boom'" in line
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_disconnect_handler_that_raises_is_logged(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    ran = anyio.Event()

    async def async_gone(socket: rooms.Socket, reason: str) -> None:
        ran.set()
        raise RuntimeError("disconnect bug")

    def sync_gone(socket: rooms.Socket, reason: str) -> None:
        ran.set()
        raise RuntimeError("disconnect bug")

    server.on("disconnect", async_gone if kind == "async" else sync_gone)
    async with Lifespan(server):
        async with TestClient(server, lifespan=False) as client:
            await client.connect()
        with anyio.fail_after(5):
            await ran.wait()
        await still_serving(server)
        assert server.namespaces["/"].sockets == {}  # forgotten all the same
    assert any("disconnect handler" in line for line in errors(caplog))


async def test_a_failing_middleware_or_connect_handler_refuses_that_socket_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()
    admin = server.of("/admin")

    @admin.use
    async def middleware(socket: rooms.Socket) -> None:
        raise RuntimeError("middleware bug")

    lobby = server.of("/lobby")

    @lobby.on("connect")
    async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        raise RuntimeError("connect bug")

    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        for name in ("/admin", "/lobby"):
            with pytest.raises(rooms.ConnectionRefused, match="Internal server error"):
                await client.connect(name)
        await client.connect()
        assert await client.call("echo", "fine") == "fine"
    assert len(errors(caplog)) == 2


async def test_a_failing_namespace_matcher_is_logged_and_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()

    def matcher(name: str, auth: dict[str, Any]) -> bool:
        raise RuntimeError("matcher bug")

    server.of(matcher)
    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        with pytest.raises(rooms.ConnectionRefused, match="Invalid namespace"):
            await client.connect("/whatever")
        await client.connect()
        assert await client.call("echo", 2) == 2
    assert any("namespace matcher" in line for line in errors(caplog))


async def test_an_engine_callback_that_raises_closes_its_session_as_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = rooms.EngineServer()
    seen: list[str] = []

    @engine.on("message")
    def on_message(session: Session, data: str | bytes) -> None:
        if data == "bug":
            raise RuntimeError("callback bug")
        seen.append(str(data))

    async with Lifespan(engine):
        async with TestClient(engine, lifespan=False) as client:
            await client.send_raw("4bug")
            await client.wait_disconnected()
            assert client.close_code == 1011  # internal error: not a vanished peer
        async with TestClient(engine, lifespan=False) as other:
            await other.send_raw("4fine")
            with anyio.fail_after(5):
                while "fine" not in seen:
                    await anyio.lowlevel.checkpoint()
    assert any("handling its input failed" in line for line in errors(caplog))
    assert any("callback bug" in (r.exc_text or "") for r in caplog.records)


@asynccontextmanager
async def two_servers(setup: Any) -> AsyncIterator[tuple[rooms.Server, rooms.Server]]:
    hub = Hub()
    servers = (
        make_server(broker=MemoryBroker(hub=hub), heartbeat_interval=0.2),
        make_server(broker=MemoryBroker(hub=hub), heartbeat_interval=0.2),
    )
    for server in servers:
        setup(server)
    async with Lifespan(servers[0]), Lifespan(servers[1]):
        for server in servers:
            assert server.node is not None
            await server.node.wait_for_peers(1)
        yield servers


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_server_event_handler_that_raises_is_logged_and_answers_none(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    def setup(server: rooms.Server) -> None:
        async def async_bug(who: str) -> str:
            raise RuntimeError("server event bug")

        def sync_bug(who: str) -> str:
            raise RuntimeError("server event bug")

        server.on_server_event("bug")(async_bug if kind == "async" else sync_bug)

    async with two_servers(setup) as (a, b):
        assert await a.server_side_emit_with_ack("bug", "a") == [None]
        await still_serving(b)
    assert any("server event handler" in line for line in errors(caplog))


async def test_a_server_event_answer_that_cannot_be_sent_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def setup(server: rooms.Server) -> None:
        server.on_server_event("nan")(lambda: float("nan"))

    async with two_servers(setup) as (a, b):
        assert await a.server_side_emit_with_ack("nan") == [None]
        await still_serving(b)
    assert any("not JSON-serialisable" in r.getMessage() for r in caplog.records)


async def test_a_failing_recovery_save_is_logged_and_the_server_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server(recovery=rooms.Recovery())
    failed = anyio.Event()

    class Broken(rooms.recovery.MemoryStore):
        async def save(self, nsp: str, session: rooms.recovery.SavedSession) -> None:
            failed.set()
            raise RuntimeError("store bug")

    async with Lifespan(server):
        assert server.resume is not None
        server.resume.store = Broken(server.engine.clock, 60, 100)
        async with TestClient(server, lifespan=False) as client:
            await client.connect()
        with anyio.fail_after(5):
            await failed.wait()
            await server.wait_sessions_saved()
        await still_serving(server)
    assert any("recovery" in line for line in errors(caplog))


async def test_a_failing_mailbox_identify_is_logged_and_the_socket_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def identify(socket: rooms.Socket) -> str:
        raise RuntimeError("identify bug")

    server = make_server(mailbox=rooms.Mailbox(identify))
    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        await client.connect()
        assert await client.call("echo", "mail-less") == "mail-less"
        await still_serving(server)
    assert any("identify" in line for line in errors(caplog))


async def test_a_timer_callback_that_raises_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = rooms.testing.ManualClock()
    server = make_server(clock=clock, ping_interval=10, ping_timeout=5)
    fired: list[str] = []

    class Owner:
        def bug(self) -> None:
            raise RuntimeError("timer bug")

        def fine(self) -> None:
            fired.append("fine")

    owner = Owner()
    lane = server.engine.heartbeat.lane(3)
    lane.add(owner.bug)
    lane.add(owner.fine)
    async with Lifespan(server), TestClient(server, lifespan=False) as client:
        await client.connect()
        clock.advance(4)
        server.engine.heartbeat.tick()
        assert fired == ["fine"]
        clock.advance(7)  # the heartbeat still pings
        server.engine.heartbeat.tick()
        await client.wait_for_pings(1)
    assert any("timer callback" in line for line in errors(caplog))


async def test_an_async_engine_disconnect_callback_that_raises_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = rooms.EngineServer()
    ran = anyio.Event()

    @engine.on("disconnect")
    async def on_disconnect(session: Session, reason: str) -> None:
        ran.set()
        raise RuntimeError("disconnect callback bug")

    async with Lifespan(engine):
        async with TestClient(engine, lifespan=False):
            pass
        with anyio.fail_after(5):
            await ran.wait()
        async with TestClient(engine, lifespan=False) as again:  # the engine still serves
            assert again.sid is not None
    assert any("on_disconnect callback failed" in line for line in errors(caplog))
