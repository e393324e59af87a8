"""Socket.IO behaviour, driven in process by rooms.testing on asyncio and trio."""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import pytest

import rooms
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio


def make_server() -> rooms.Server:
    server = rooms.Server()

    @server.on("connect")
    async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        if auth.get("refuse"):
            raise rooms.ConnectionRefused("go away", {"code": 42})
        if auth.get("falsy"):
            return False  # type: ignore[return-value]
        socket.data["name"] = auth.get("name", "anon")
        await socket.emit("welcome", socket.data["name"])

    @server.on("echo")
    async def echo(socket: rooms.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @server.on("sync_add")
    def sync_add(socket: rooms.Socket, a: int, b: int) -> int:
        return a + b

    @server.on("join")
    async def join(socket: rooms.Socket, room: str) -> list[str]:
        await socket.join(room)
        return sorted(socket.rooms)

    @server.on("say")
    async def say(socket: rooms.Socket, room: str, text: str) -> None:
        await socket.to(room).emit("said", text)

    @server.on("ask")
    async def ask(socket: rooms.Socket, value: Any) -> Any:
        return await socket.emit_with_ack("question", value, timeout=2)

    @server.on("ask_timeout")
    async def ask_timeout(socket: rooms.Socket) -> str:
        try:
            await socket.emit_with_ack("unanswered", timeout=0.05)
        except rooms.AckTimeout as exc:
            return f"timeout: {exc}"
        return "answered"

    @server.on("boom")
    async def boom(socket: rooms.Socket) -> None:
        raise RuntimeError("handler bug")

    @server.on("bye")
    async def bye(socket: rooms.Socket) -> None:
        await socket.disconnect()

    admin = server.of("/admin")

    @admin.use
    def only_admins(socket: rooms.Socket) -> None:
        if socket.handshake.auth.get("role") != "admin":
            raise rooms.ConnectionRefused("admins only")

    @admin.on("whoami")
    def whoami(socket: rooms.Socket) -> str:
        return socket.nsp.name

    dynamic = server.of(re.compile(r"/team-\d+"))

    @dynamic.on("where")
    def where(socket: rooms.Socket) -> str:
        return socket.nsp.name

    return server


async def test_connect_returns_a_sid_and_the_connect_handler_may_emit_first() -> None:
    server = make_server()
    async with TestClient(server) as client:
        sid = await client.connect(auth={"name": "ada"})
        assert re.fullmatch(r"[A-Za-z0-9_-]{20}", sid)
        assert await client.receive() == ("welcome", ["ada"])
        assert [s.id for s in await server.fetch_sockets()] == [sid]


async def test_the_return_value_of_a_handler_is_the_ack() -> None:
    async with TestClient(make_server()) as client:
        await client.connect()
        assert await client.call("echo", 1, "two", {"three": [3]}) == (1, "two", {"three": [3]})
        assert await client.call("sync_add", 2, 3) == 5


async def test_too_few_arguments_are_refused_without_calling_the_handler() -> None:
    async with TestClient(make_server()) as client:
        await client.connect()
        with pytest.raises(rooms.AckTimeout):
            await client.call("sync_add", 2, timeout=0.2)
        assert await client.call("sync_add", 2, 3, 99) == 5  # extras are dropped


async def test_binary_travels_both_ways_nested() -> None:
    async with TestClient(make_server()) as client:
        await client.connect()
        payload = {"blob": b"\x00\xff", "list": [b"a", {"b": b"b"}]}
        assert await client.call("echo", payload, b"top") == (payload, b"top")


async def test_the_server_can_wait_for_a_client_ack() -> None:
    async with TestClient(make_server()) as client:
        client.on("question", lambda value: value * 2)
        await client.connect()
        assert await client.call("ask", 21) == 42


async def test_an_unanswered_server_ack_times_out_with_a_clear_error() -> None:
    async with TestClient(make_server()) as client:
        await client.connect()
        answer = await client.call("ask_timeout")
        assert answer.startswith("timeout: expected an ack for 'unanswered'")


async def test_a_refused_connection_carries_message_and_data() -> None:
    async with TestClient(make_server()) as client:
        with pytest.raises(rooms.ConnectionRefused) as refused:
            await client.connect(auth={"refuse": True})
        assert (refused.value.message, refused.value.data) == ("go away", {"code": 42})
        with pytest.raises(rooms.ConnectionRefused, match="Connection refused"):
            await client.connect(auth={"falsy": True})
        # The engine connection survives a refusal; a later CONNECT works.
        assert await client.connect(auth={"name": "second try"})


async def test_a_middleware_refuses_and_an_unknown_namespace_is_invalid() -> None:
    async with TestClient(make_server()) as client:
        with pytest.raises(rooms.ConnectionRefused, match="admins only"):
            await client.connect("/admin")
        await client.connect("/admin", auth={"role": "admin"})
        assert await client.call("whoami", namespace="/admin") == "/admin"
        with pytest.raises(rooms.ConnectionRefused, match="Invalid namespace"):
            await client.connect("/nowhere")


async def test_dynamic_namespaces_are_created_by_the_matcher() -> None:
    server = make_server()
    async with TestClient(server) as client:
        await client.connect("/team-7")
        assert await client.call("where", namespace="/team-7") == "/team-7"
        assert "/team-7" in server.namespaces
        with pytest.raises(rooms.ConnectionRefused, match="Invalid namespace"):
            await client.connect("/team-x")


async def test_rooms_reach_members_except_the_sender() -> None:
    server = make_server()
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as a,
        TestClient(server, lifespan=False) as b,
        TestClient(server, lifespan=False) as c,
    ):
        for client in (a, b, c):
            await client.connect()
            await client.receive()  # welcome
        sid_a = a.namespaces["/"]
        assert await a.call("join", "r") == sorted([sid_a, "r"])
        await b.call("join", "r")
        await a.call("say", "r", "hi")
        assert await b.receive() == ("said", ["hi"])
        # c is not in the room and a is the sender: neither hears anything; a later
        # broadcast to everyone is the next thing they see.
        await server.emit("all", 1)
        assert await a.receive() == ("all", [1])
        assert await c.receive() == ("all", [1])
        assert await b.receive() == ("all", [1])


async def test_broadcast_acks_are_aggregated() -> None:
    server = make_server()
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as a,
        TestClient(server, lifespan=False) as b,
    ):
        a.on("poll", lambda: "a")
        b.on("poll", lambda: "b")
        await a.connect()
        await b.connect()
        answers = await server.timeout(2).emit_with_ack("poll")
        assert sorted(answers) == ["a", "b"]


async def test_a_broadcast_ack_timeout_keeps_the_answers_that_came() -> None:
    server = make_server()
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as a,
        TestClient(server, lifespan=False) as b,
    ):
        a.on("poll", lambda: "a")
        await a.connect()
        await b.connect()  # b never answers "poll"
        with pytest.raises(rooms.AckTimeout) as timeout:
            await server.timeout(0.2).emit_with_ack("poll")
        assert timeout.value.responses == ["a"]


async def test_a_failing_handler_is_logged_and_the_connection_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with TestClient(make_server()) as client:
        await client.connect()
        await client.emit("boom")
        assert await client.call("echo", "still here") == "still here"
    assert "handler" in caplog.text and "handler bug" in caplog.text


async def test_server_disconnect_sends_disconnect_and_runs_the_handler() -> None:
    server = make_server()
    reasons: list[str] = []
    done = anyio.Event()

    @server.on("disconnect")
    def gone(socket: rooms.Socket, reason: str) -> None:
        reasons.append(reason)
        done.set()

    async with TestClient(server) as client:
        await client.connect()
        await client.receive()
        await client.emit("bye")
        assert await client.receive() == ("disconnect", ["io server disconnect"])
        with anyio.fail_after(2):
            await done.wait()
        assert reasons == ["server namespace disconnect"]
        assert await server.fetch_sockets() == []


async def test_client_disconnect_reason_and_rooms_still_visible_in_handler() -> None:
    server = make_server()
    seen: list[tuple[str, set[str]]] = []
    done = anyio.Event()

    @server.on("disconnect")
    async def gone(socket: rooms.Socket, reason: str) -> None:
        seen.append((reason, socket.rooms))
        done.set()

    async with TestClient(server) as client:
        sid = await client.connect()
        await client.call("join", "r")
        await client.disconnect()
        with anyio.fail_after(2):
            await done.wait()
    assert seen == [("client namespace disconnect", {sid, "r"})]


async def test_transport_close_and_shutdown_reasons() -> None:
    server = make_server()
    reasons: list[str] = []

    @server.on("disconnect")
    def gone(socket: rooms.Socket, reason: str) -> None:
        reasons.append(reason)

    async with Lifespan(server):
        async with TestClient(server, lifespan=False) as client:
            await client.connect()
        async with TestClient(server, lifespan=False) as client:
            await client.connect()
            await server.shutdown()
            await client.wait_disconnected()
    assert reasons == ["transport close", "server shutting down"]


async def test_handshake_exposes_headers_query_auth_and_address() -> None:
    server = make_server()
    got: dict[str, Any] = {}

    @server.on("inspect")
    def inspect(socket: rooms.Socket) -> None:
        hs = socket.handshake
        got.update(
            header=hs.headers.get("x-token"),
            query=hs.query.get("v"),
            auth=hs.auth,
            address=hs.address,
            scope_type=hs.scope["type"],
            user=hs.user,
        )

    async with TestClient(server, headers={"X-Token": "t"}, query={"v": "1"}) as client:
        await client.connect(auth={"name": "x"})
        await client.call("inspect")
    assert got == {
        "header": "t",
        "query": "1",
        "auth": {"name": "x"},
        "address": "127.0.0.1",
        "scope_type": "websocket",
        "user": None,
    }


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        (['42["echo",1]'], "an EVENT before CONNECT"),
        (["40", '4/admin,2["x"]'], "an EVENT on a namespace it never joined"),
        (["40", "42[oops"], "invalid JSON"),
        (["40", "49"], "an unknown Socket.IO packet type"),
        (["40", b"\x00\x01"], "binary nobody announced"),
        (
            ["40", '451-["echo",{"_placeholder":true,"num":0}]', '42["x"]'],
            "text where an attachment was announced",
        ),
        (
            ["40", '451-["echo",{"_placeholder":true,"num":5}]', b"x"],
            "a placeholder past the attachments",
        ),
        (["40", "40"], "a second CONNECT to the same namespace"),
    ],
)
async def test_bad_input_closes_only_the_offending_connection(
    frames: list[str | bytes], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rooms")
    server = make_server()
    async with Lifespan(server), TestClient(server, lifespan=False) as bystander:
        await bystander.connect()
        async with TestClient(server, lifespan=False) as offender:
            for frame in frames:
                await offender.send_raw(frame)
            await offender.wait_disconnected()
        assert "expected" in caplog.text  # the log says what was expected and what came
        assert await bystander.call("echo", reason) == reason


async def test_an_ack_for_an_unknown_id_is_ignored_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rooms")
    async with TestClient(make_server()) as client:
        await client.connect()
        await client.send_raw('43999["late"]')
        assert await client.call("echo", "alive") == "alive"
    assert "expected an ACK for a pending id, got id 999" in caplog.text


class FakeClock:
    """Injected time: tests move it and tick the heartbeat instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_session_that_never_connects_a_namespace_is_closed() -> None:
    clock = FakeClock()
    server = rooms.Server(connect_timeout=45, clock=clock)
    async with TestClient(server) as client:
        clock.now += 44
        server.engine.heartbeat.tick()
        assert not client.disconnected.is_set()
        clock.now += 2
        server.engine.heartbeat.tick()
        await client.wait_disconnected()  # no CONNECT sent: dropped by the server
        assert client.close_code == 1000


async def test_a_connected_session_outlives_the_connect_timeout() -> None:
    clock = FakeClock()
    server = rooms.Server(connect_timeout=45, clock=clock)
    server.on("echo", lambda socket, value: value)
    async with TestClient(server) as client:
        await client.connect()
        clock.now += 46
        server.engine.heartbeat.tick()
        assert await client.call("echo", "still") == "still"


async def test_a_client_that_answers_pings_stays_and_a_silent_one_is_dropped() -> None:
    clock = FakeClock()
    server = rooms.Server(ping_interval=25, ping_timeout=20, clock=clock)
    reasons: list[str] = []
    server.on("disconnect", lambda socket, reason: reasons.append(reason))
    server.on("echo", lambda socket, value: value)
    async with (
        Lifespan(server),
        TestClient(server, lifespan=False) as polite,
        TestClient(server, lifespan=False, auto_pong=False) as silent,
    ):
        await polite.connect()
        await silent.connect()
        clock.now += 25
        server.engine.heartbeat.tick()
        await polite.wait_for_pings(1)
        await silent.wait_for_pings(1)
        # The pong travels before this event, so once it is acked the pong was handled.
        assert await polite.call("echo", "after pong") == "after pong"
        clock.now += 21
        server.engine.heartbeat.tick()
        await silent.wait_disconnected()
        assert reasons == ["ping timeout"]
        assert await polite.call("echo", "alive") == "alive"


async def test_a_dynamic_namespace_may_be_approved_by_an_async_callable() -> None:
    server = rooms.Server()

    async def tenant_exists(name: str, auth: dict[str, Any]) -> bool:
        return name.startswith("/tenant-") and auth.get("key") == name[len("/tenant-") :]

    tenants = server.of(tenant_exists)
    tenants.on("where", lambda socket: socket.nsp.name)
    async with TestClient(server) as client:
        await client.connect("/tenant-acme", auth={"key": "acme"})
        assert await client.call("where", namespace="/tenant-acme") == "/tenant-acme"
        with pytest.raises(rooms.ConnectionRefused, match="Invalid namespace"):
            await client.connect("/tenant-other", auth={"key": "wrong"})
        await client.disconnect("/tenant-acme")
        # An emptied child namespace is dropped; the parent keeps its handlers for the next.
        await client.connect("/", auth={})  # a round trip: the disconnect was handled
        assert "/tenant-acme" not in server.namespaces
        await client.connect("/tenant-acme", auth={"key": "acme"})
        assert await client.call("where", namespace="/tenant-acme") == "/tenant-acme"
