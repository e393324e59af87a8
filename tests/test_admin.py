"""The Socket.IO Admin UI's protocol (rooms.admin), in process on asyncio and trio: who may
connect, what an admin client is sent (config, all_sockets, the development-mode events,
server_stats), what its actions do, and the same across two servers of a cluster.
(tests/browser/test_admin_ui.py drives the real UI.)"""

from __future__ import annotations

import logging
import os
import re
import socket as stdlib_socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import rooms
from rooms._types import ASGIApp
from rooms.admin import INVALID_CREDENTIALS, Admin
from rooms.protocol import socketio as sio
from rooms.testing import Lifespan, TestClient
from tests.asgi import RawWebSocket, request

pytestmark = pytest.mark.anyio

ADMIN = "/admin"
CREDENTIALS = {"username": "admin", "password": "s3cret"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JS_DATE = re.compile(
    r"^\w{3} \w{3} \d\d \d{4} \d\d:\d\d:\d\d GMT\+0000 \(Coordinated Universal Time\)$"
)
DEV_EVENTS = {"socket_connected", "socket_updated", "socket_disconnected", "room_joined",
              "room_left", "event_received", "event_sent"}  # fmt: skip
ALL_FEATURES = ["JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT",
                "AGGREGATED_EVENTS", "ALL_EVENTS"]  # fmt: skip


def app_server(broker: str | None = None, **admin_options: Any) -> tuple[rooms.Server, Admin]:
    """A server with a few handlers on "/" and the Admin UI (credentials by default)."""
    server = rooms.Server(broker=broker, heartbeat_interval=0.2)

    @server.on("connect")
    async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name", "anon")
        if auth.get("weird"):
            socket.data["weird"] = object()  # nothing JSON can carry
        await socket.join(auth.get("rooms", []))

    @server.on("echo")
    def echo(socket: rooms.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @server.on("shout")
    async def shout(socket: rooms.Socket, text: str) -> None:
        await socket.emit("shouted", text)

    @server.on("many")
    async def many(socket: rooms.Socket, count: int) -> None:
        await socket.join([f"room-{n}" for n in range(count)])  # one hook call per room

    options: dict[str, Any] = {"auth": CREDENTIALS, "stats_interval": 60.0, **admin_options}
    return server, Admin(server, **options)


New = Callable[..., Awaitable[TestClient]]


@asynccontextmanager
async def running(*servers: rooms.Server) -> AsyncIterator[New]:
    """Run ``servers``; yields ``await new(**options)``: a client (its Engine.IO session
    open) of the first server, or of ``servers[to]``; every one is closed at the end."""
    async with AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(Lifespan(server))

        async def new(to: int = 0, **options: Any) -> TestClient:
            client = TestClient(servers[to], lifespan=False, **options)
            return await stack.enter_async_context(client)

        yield new


async def admin_client(new: New, to: int = 0) -> TestClient:
    client = await new(to)
    await client.connect(ADMIN, auth=CREDENTIALS)
    return client


async def until(
    client: TestClient,
    event: str,
    where: Callable[[list[Any]], bool] | None = None,
    seen: list[tuple[str, list[Any]]] | None = None,
    timeout: float = 5.0,
) -> list[Any]:
    """The arguments of the next ``event`` on the admin namespace (that ``where`` accepts);
    every event received on the way is appended to ``seen``."""
    with anyio.fail_after(timeout):
        while True:
            name, args = await client.receive(ADMIN)
            if seen is not None:
                seen.append((name, args))
            if name == event and (where is None or where(args)):
                return args


def record_packets(client: TestClient) -> list[tuple[str, str, Any]]:
    """Every packet the client gets, in order: (type, namespace, event name or None)."""
    packets: list[tuple[str, str, Any]] = []
    on_packet = client._on_packet

    async def recording(packet: sio.Packet) -> None:
        is_event = packet.type is sio.PacketType.EVENT
        packets.append((packet.type.name, packet.nsp, packet.data[0] if is_event else None))
        await on_packet(packet)

    client._on_packet = recording  # type: ignore[method-assign]
    return packets


# --------------------------------------------------------------------------- who may connect


async def test_an_admin_with_credentials_gets_config_then_all_sockets_after_its_connect() -> None:
    server, _ = app_server()
    async with running(server) as new:
        client = await new()
        packets = record_packets(client)
        await client.connect(ADMIN, auth=CREDENTIALS)
        (config,) = await until(client, "config")
        await until(client, "all_sockets")
    assert config == {"supportedFeatures": ALL_FEATURES}
    admin = [p for p in packets if p[1] == ADMIN]
    # The UI listens only once connected: both must follow the CONNECT reply.
    assert admin[0] == ("CONNECT", ADMIN, None), admin
    assert admin.index(("EVENT", ADMIN, "config")) < admin.index(("EVENT", ADMIN, "all_sockets"))


@pytest.mark.parametrize(
    "auth",
    [
        {"username": "admin", "password": "wrong"},
        {"username": "root", "password": "s3cret"},
        {"username": "admin"},
        {"sessionId": None},  # what the UI sends on a page reload
        {"username": "admin", "password": 123},
        None,
    ],
    ids=["password", "username", "no-password", "session-id", "not-a-str", "nothing"],
)
async def test_bad_credentials_are_refused_with_the_message_the_ui_knows(
    auth: dict[str, Any] | None,
) -> None:
    server, _ = app_server()
    async with running(server) as new:
        client = await new()
        with pytest.raises(rooms.ConnectionRefused) as refused:
            await client.connect(ADMIN, auth=auth)
        assert refused.value.message == INVALID_CREDENTIALS == "invalid credentials"
        assert server.of(ADMIN).sockets == {}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_callable_decides_who_may_connect(kind: str) -> None:
    asked: list[dict[str, Any]] = []

    def check(auth: dict[str, Any]) -> bool:
        asked.append(auth)
        return auth.get("token") == "t0k3n"

    async def check_async(auth: dict[str, Any]) -> bool:
        await anyio.lowlevel.checkpoint()
        return check(auth)

    server = rooms.Server()
    server.instrument(auth=check if kind == "sync" else check_async)
    async with running(server) as new:
        client = await new()
        with pytest.raises(rooms.ConnectionRefused, match=INVALID_CREDENTIALS):
            await client.connect(ADMIN, auth={"token": "nope"})
        await client.connect(ADMIN, auth={"token": "t0k3n"})
    assert asked == [{"token": "nope"}, {"token": "t0k3n"}]


async def test_without_auth_the_namespace_is_open_and_a_warning_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rooms.Server()
    with caplog.at_level(logging.WARNING, logger="rooms.admin"):
        admin = server.instrument()
    assert isinstance(admin, Admin)
    assert (admin.mode, admin.read_only, admin.namespace) == ("development", False, ADMIN)
    assert any("/admin is open" in r.getMessage() for r in caplog.records), caplog.records
    async with running(server) as new:
        client = await new()
        await client.connect(ADMIN)
        await until(client, "config")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"mode": "staging"}, "expected mode 'development' or 'production'"),
        ({"auth": {"username": "admin"}}, "expected auth={'username': str, 'password': str}"),
        ({"auth": {"username": "a", "password": "b", "role": "c"}}, "got a mapping with keys"),
        ({"auth": "secret"}, "expected auth None, False"),
        ({"auth": True}, "expected auth None, False"),
        ({"namespace": "/"}, "expected a namespace of its own"),
        ({"namespace": "admin"}, "expected a namespace of its own"),
        ({"stats_interval": 0}, "expected a positive stats_interval"),
        ({"max_queue": 0}, "expected a positive max_queue"),
    ],
)
def test_a_bad_configuration_is_refused_at_once(options: dict[str, Any], error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape(error)):
        Admin(rooms.Server(), **options)


def test_one_admin_ui_per_namespace() -> None:
    server = rooms.Server()
    server.instrument(auth=CREDENTIALS)
    with pytest.raises(RuntimeError, match="expected one Admin UI per namespace, got a second"):
        server.instrument(auth=CREDENTIALS)
    server.instrument(auth=CREDENTIALS, namespace="/ops")  # another namespace: another UI


# --------------------------------------------------------------------------- what it is sent


@pytest.mark.parametrize(
    ("mode", "read_only", "features"),
    [
        ("development", False, ALL_FEATURES),
        ("development", True, ["AGGREGATED_EVENTS", "ALL_EVENTS"]),
        ("production", False, ALL_FEATURES[:-1]),
        ("production", True, ["AGGREGATED_EVENTS"]),
    ],
)
async def test_config_offers_what_the_mode_allows_and_all_sockets_only_in_development(
    mode: str, read_only: bool, features: list[str]
) -> None:
    server, _ = app_server(mode=mode, read_only=read_only, stats_interval=0.05)
    seen: list[tuple[str, list[Any]]] = []
    async with running(server) as new:
        client = await admin_client(new)
        (config,) = await until(client, "config", seen=seen)
        if mode == "development":
            await until(client, "all_sockets", seen=seen)
        for _ in range(2):  # two reports later, nothing else has come
            await until(client, "server_stats", seen=seen)
    assert config == {"supportedFeatures": features}
    names = {name for name, _ in seen}
    expected = {"config", "server_stats"} | ({"all_sockets"} if mode == "development" else set())
    # Development mode also reports the admin client's own connection (Node's server does).
    assert names - DEV_EVENTS == expected, seen


async def test_all_sockets_lists_every_socket_in_the_shape_the_ui_reads() -> None:
    server, _ = app_server()
    headers = {"User-Agent": "pytest", "Cookie": "session=private", "Origin": "http://testserver"}
    async with running(server) as new:
        before = time.time()
        app = await new(headers=headers, query={"token": "t"})
        sid = await app.connect(auth={"name": "ada", "rooms": ["lobby", "blue"]})
        odd = await new()
        odd_sid = await odd.connect(auth={"name": "odd", "weird": True})
        after = time.time()
        client = await admin_client(new)
        (sockets,) = await until(client, "all_sockets")
    by_id = {s["id"]: s for s in sockets}
    assert set(by_id) == {sid, odd_sid, client.namespaces[ADMIN]}
    ada = by_id[sid]
    shake = ada.pop("handshake")
    assert ada == {
        "id": sid,
        "clientId": app.sid,  # the Engine.IO session's id
        "transport": "websocket",
        "nsp": "/",
        "data": {"name": "ada"},
        "rooms": [sid, "blue", "lobby"],  # its own room first
    }
    issued = shake.pop("issued")
    assert isinstance(issued, int) and before * 1000 - 1 <= issued <= after * 1000 + 1
    assert JS_DATE.match(shake.pop("time")), shake
    assert shake == {
        "address": "127.0.0.1",
        "headers": {
            "host": "testserver",
            "user-agent": "pytest",
            "cookie": "[redacted]",  # credentials are not shown, nor sent across the cluster
            "origin": "http://testserver",
        },
        "query": {"EIO": "4", "transport": "websocket", "token": "t"},
        "secure": False,
        "url": "/socket.io/?EIO=4&transport=websocket&token=t",
        "xdomain": True,
    }  # and never "auth"
    assert by_id[odd_sid]["data"] == {}  # socket.data that JSON cannot carry
    assert by_id[client.namespaces[ADMIN]]["nsp"] == ADMIN


async def test_development_mode_reports_sockets_rooms_and_events_as_they_happen() -> None:
    server, _ = app_server()
    seen: list[tuple[str, list[Any]]] = []
    async with running(server) as new:
        client = await admin_client(new)
        await until(client, "all_sockets")
        app = await new()
        sid = await app.connect(auth={"name": "ada", "rooms": ["lobby"]})

        # Its rooms as it connects (the UI ignores them: it does not know the socket yet),
        # then the socket, with its rooms.
        joined = await until(client, "room_joined", lambda a: a[1] == "lobby", seen)
        assert joined[:3] == ["/", "lobby", sid] and ISO.match(joined[3])
        (view, at) = await until(client, "socket_connected", lambda a: a[0]["id"] == sid, seen)
        assert (view["nsp"], view["clientId"], view["rooms"]) == ("/", app.sid, [sid, "lobby"])
        assert ISO.match(at), at

        assert await app.call("echo", 1, "two", b"\x00\xff") == (1, "two", b"\x00\xff")
        received = await until(client, "event_received", seen=seen)
        assert received[:3] == ["/", sid, ["echo", 1, "two", b"\x00\xff"]]  # binary kept
        await app.emit("nobody-handles-this", 3)  # shown all the same, as Node's onAny does
        received = await until(client, "event_received", seen=seen)
        assert received[:3] == ["/", sid, ["nobody-handles-this", 3]]
        await app.emit("shout", "hi")
        sent = await until(client, "event_sent", seen=seen)
        assert sent[:3] == ["/", sid, ["shouted", "hi"]] and ISO.match(sent[3])
        assert await app.receive() == ("shouted", ["hi"])

        # The admin client's own action is not an application event (and joins a room).
        await client.emit("join", "/", "blue", sid, namespace=ADMIN)
        await until(client, "room_joined", lambda a: a[1] == "blue", seen)

        await app.disconnect()
        gone = await until(client, "socket_disconnected", seen=seen)
        assert gone[:3] == ["/", sid, "client namespace disconnect"]
        left = [await until(client, "room_left", seen=seen) for _ in range(3)]
    # After socket_disconnected, it leaves every room, its own included: the UI lets go.
    assert sorted(args[1] for args in left) == sorted([sid, "lobby", "blue"])
    own = [(name, args) for name, args in seen if name.startswith("event_") and args[0] == ADMIN]
    assert own == []


async def test_production_mode_reports_statistics_only() -> None:
    server, admin = app_server(mode="production", stats_interval=0.05)
    assert admin.events is False  # event_in / event_out are not even called
    seen: list[tuple[str, list[Any]]] = []
    async with running(server) as new:
        client = await admin_client(new)
        app = await new()
        sid = await app.connect(auth={"rooms": ["lobby"]})
        assert await app.call("echo", 1) == 1
        await app.emit("shout", "hi")
        assert await app.receive() == ("shouted", ["hi"])
        await app.disconnect()
        await app.connect()  # answered once the disconnect was handled
        for _ in range(2):  # reports from after all of it
            await until(client, "server_stats", seen=seen)
    assert {name for name, _ in seen} == {"config", "server_stats"}, seen
    assert sid not in str(seen)


async def test_an_upgrade_from_polling_is_reported_as_socket_updated() -> None:
    server, _ = app_server()
    async with running(server) as new:
        client = await admin_client(new)
        await until(client, "all_sockets")
        # A client that connects on long-polling, then upgrades, over bare ASGI.
        opened = await http(server, "GET", "EIO=4&transport=polling")
        eio = re.search(r'"sid":"([^"]+)"', opened)
        assert eio is not None
        query = f"EIO=4&transport=polling&sid={eio[1]}"
        assert await http(server, "POST", query, "40") == "ok"
        reply = await http(server, "GET", query)
        socket_id = re.search(r'^40\{"sid":"([^"]+)"', reply)
        assert socket_id is not None, reply
        (view, _) = await until(client, "socket_connected", lambda a: a[0]["nsp"] == "/")
        assert (view["id"], view["clientId"], view["transport"]) == (
            socket_id[1],
            eio[1],
            "polling",
        )
        async with RawWebSocket(server, f"EIO=4&transport=websocket&sid={eio[1]}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            await ws.send("5")
            (update,) = await until(client, "socket_updated")
    assert update == {"id": socket_id[1], "nsp": "/", "transport": "websocket"}


# --------------------------------------------------------------------------- actions


async def test_join_leave_and_disconnect_act_on_the_sockets_they_name() -> None:
    server, _ = app_server()
    async with running(server) as new:
        client = await admin_client(new)
        await until(client, "all_sockets")
        ada, bob = await new(), await new()
        ada_sid = await ada.connect(auth={"rooms": ["lobby"]})
        bob_sid = await bob.connect(auth={"rooms": ["lobby"]})
        main = server.of("/")

        await client.emit("join", "/", "blue", ada_sid, namespace=ADMIN)  # one socket
        await until(client, "room_joined", lambda a: a[1:3] == ["blue", ada_sid])
        assert "blue" in main.sockets[ada_sid].rooms and "blue" not in main.sockets[bob_sid].rooms
        await client.emit("join", "/", "green", namespace=ADMIN)  # the whole namespace
        await until(client, "room_joined", lambda a: a[1:3] == ["green", bob_sid])
        assert "green" in main.sockets[ada_sid].rooms
        await client.emit("leave", "/", "lobby", namespace=ADMIN)  # "clear room"
        await until(client, "room_left", lambda a: a[1:3] == ["lobby", bob_sid])
        assert "lobby" not in main.sockets[ada_sid].rooms
        await client.emit("leave", "/", "blue", ada_sid, namespace=ADMIN)
        await until(client, "room_left", lambda a: a[1:3] == ["blue", ada_sid])

        await client.emit("_disconnect", "/", False, bob_sid, namespace=ADMIN)
        assert await bob.receive() == ("disconnect", ["io server disconnect"])
        gone = await until(client, "socket_disconnected")
        assert gone[:3] == ["/", bob_sid, "server namespace disconnect"]
        assert set(main.sockets) == {ada_sid}
        assert not bob.disconnected.is_set()  # only the socket: its connection stays

        await client.emit("_disconnect", "/", True, ada_sid, namespace=ADMIN)  # the client
        await ada.wait_disconnected()
        assert main.sockets == {}


async def test_actions_are_ignored_when_read_only(caplog: pytest.LogCaptureFixture) -> None:
    server, _ = app_server(read_only=True)
    async with running(server) as new:
        client = await admin_client(new)
        app = await new()
        sid = await app.connect()
        with caplog.at_level(logging.INFO, logger="rooms.admin"):
            await client.emit("join", "/", "blue", sid, namespace=ADMIN)
            await client.emit("_disconnect", "/", False, sid, namespace=ADMIN)
            await client.connect("/")  # answered once the two before were handled
        assert server.of("/").sockets[sid].rooms == {sid}
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored == [
        f"admin socket {client.namespaces[ADMIN]}: {action} ignored: expected no action "
        "(read_only), got one"
        for action in ("join", "_disconnect")
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "rooms.admin")


@pytest.mark.parametrize(
    ("event", "args", "expected"),
    [
        ("join", [], "expected at least 2 argument(s), got 0"),
        ("join", [42, "blue"], "expected a namespace name (a non-empty str of at most"),
        ("join", ["/nowhere", "blue"], "expected a namespace of this server, got '/nowhere'"),
        ("join", ["/", ""], "expected a room name (a non-empty str of at most"),
        ("join", ["/", "r" * 300], "expected a room name (a non-empty str of at most 256"),
        ("leave", ["/", ["blue"]], "expected a room name (a non-empty str of at most"),
        ("join", ["/", "blue", 7], "expected a room or socket id as filter"),
        ("_disconnect", ["/", "yes"], "expected close as true or false, got 'yes'"),
        ("_disconnect", ["/", 1, "x"], "expected close as true or false, got 1"),
    ],
)
async def test_bad_action_arguments_are_ignored_saying_what_was_expected(
    event: str, args: list[Any], expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = app_server()
    async with running(server) as new:
        client = await admin_client(new)
        app = await new()
        sid = await app.connect()
        with caplog.at_level(logging.INFO, logger="rooms.admin"):
            await client.emit(event, *args, namespace=ADMIN)
            await client.connect("/")  # answered once the action was handled
        assert server.of("/").sockets[sid].rooms == {sid}
        assert not app.disconnected.is_set()
    lines = [r.getMessage() for r in caplog.records if r.name == "rooms.admin"]
    assert len(lines) == 1 and f"{event} ignored: {expected}" in lines[0], lines
    assert server.limits.max_name_length == 256  # what the long room name is measured against


# --------------------------------------------------------------------------- server_stats


def _count(stats: dict[str, Any], kind: str) -> int:
    return sum(e["count"] for e in stats["aggregatedEvents"] if e["type"] == kind)


async def test_server_stats_report_connections_namespaces_and_aggregated_events() -> None:
    server, _ = app_server(stats_interval=0.05)
    reports: list[dict[str, Any]] = []

    def report(stop: Callable[[dict[str, Any]], bool]) -> Callable[[list[Any]], bool]:
        def keep(args: list[Any]) -> bool:
            reports.append(args[0])
            return stop(args[0])

        return keep

    async with running(server) as new:
        client = await admin_client(new)
        app = await new()
        await app.connect()
        assert await app.call("echo", "x" * 100) == "x" * 100
        # The first report once the echo (the only input over 100 bytes) was counted.
        both = await until(
            client,
            "server_stats",
            report(
                lambda s: (
                    s["clientsCount"] == 2 and sum(_count(r, "bytesIn") for r in reports) > 100
                )
            ),
        )
        await app.close()
        await app.wait_disconnected()
        await until(client, "server_stats", report(lambda s: _count(s, "rawDisconnection") > 0))
    (stats,) = both
    assert stats["serverId"] == f"{stdlib_socket.gethostname()}#{os.getpid()}"
    assert (stats["hostname"], stats["pid"]) == (stdlib_socket.gethostname(), os.getpid())
    assert isinstance(stats["uptime"], float) and stats["uptime"] > 0
    assert (stats["clientsCount"], stats["pollingClientsCount"]) == (2, 0)  # on websockets
    assert stats["namespaces"] == [
        {"name": "/", "socketsCount": 1},
        {"name": ADMIN, "socketsCount": 1},
    ]
    events = [e for r in reports for e in r["aggregatedEvents"]]
    assert all(e["timestamp"] % 1000 == 0 and e["count"] > 0 for e in events), events
    # The app's, and the admin client's if its session opened after a report went.
    assert 1 <= sum(e["count"] for e in events if e["type"] == "rawConnection") <= 2
    # Its CONNECT and its event, the latter over 100 bytes; and what was sent back.
    assert sum(e["count"] for e in events if e["type"] == "packetsIn") >= 2
    assert sum(e["count"] for e in events if e["type"] == "bytesIn") > 100
    assert sum(e["count"] for e in events if e["type"] == "bytesOut") > 100
    (closed,) = [e for e in events if e["type"] == "rawDisconnection"]
    assert (closed["subType"], closed["count"]) == ("transport close", 1)
    assert all("subType" not in e for e in events if e["type"] != "rawDisconnection")


async def test_a_server_id_names_the_process() -> None:
    server, _ = app_server(stats_interval=0.05, server_id="eu-1")
    async with running(server) as new:
        client = await admin_client(new)
        (stats,) = await until(client, "server_stats")
    assert stats["serverId"] == "eu-1"


async def test_a_full_queue_drops_events_and_counts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, admin = app_server(max_queue=4)
    async with running(server) as new:
        app = await new()
        await app.connect()
        with caplog.at_level(logging.WARNING, logger="rooms.admin"):
            await app.emit("many", 100)  # 100 room_joined in one go: the feed cannot keep up
            await app.connect("/admin", auth=CREDENTIALS)  # after "many" was handled
    assert admin.dropped >= 90
    warnings = [r.getMessage() for r in caplog.records if r.name == "rooms.admin"]
    assert len(warnings) == 1, warnings  # throttled
    assert "queue of 4 events, got it full: room_joined dropped" in warnings[0]


# --------------------------------------------------------------------------- a cluster


async def test_an_admin_on_one_server_sees_and_disconnects_a_socket_of_the_other() -> None:
    broker = f"memory://{uuid.uuid4()}"
    a, _ = app_server(broker, stats_interval=0.05)
    b, _ = app_server(broker, stats_interval=0.05)
    async with running(a, b) as new:
        for server in (a, b):
            assert server.node is not None
            await server.node.wait_for_peers(1)
        bob = await new(1)
        bob_sid = await bob.connect(auth={"name": "bob", "rooms": ["lobby"]})
        client = await admin_client(new)
        (sockets,) = await until(client, "all_sockets")
        # Every process reports to the admin clients of every process.
        reports: set[str] = set()

        def from_both(args: list[Any]) -> bool:
            reports.add(args[0]["serverId"])
            return len(reports) == 2

        await until(client, "server_stats", from_both)

        ada = await new(1)
        ada_sid = await ada.connect(auth={"name": "ada"})
        (view, _) = await until(client, "socket_connected", lambda s: s[0]["id"] == ada_sid)

        await client.emit("_disconnect", "/", False, bob_sid, namespace=ADMIN)
        assert await bob.receive() == ("disconnect", ["io server disconnect"])
        gone = await until(client, "socket_disconnected", lambda s: s[1] == bob_sid)
    assert a.node is not None and b.node is not None
    base = f"{stdlib_socket.gethostname()}#{os.getpid()}"
    assert reports == {f"{base}#{a.node.uid}", f"{base}#{b.node.uid}"}
    (remote,) = [s for s in sockets if s["id"] == bob_sid]
    remote.pop("handshake")
    assert remote == {
        "id": bob_sid,
        "clientId": bob.sid,  # asked of the process it is on
        "transport": "websocket",
        "nsp": "/",
        "data": {"name": "bob"},
        "rooms": [bob_sid, "lobby"],
    }
    assert (view["clientId"], view["data"]) == (ada.sid, {"name": "ada"})
    assert gone[0] == "/" and gone[2] == "server namespace disconnect"


async def http(app: ASGIApp, method: str, query: str, body: str = "") -> str:
    """One long-polling request to ``app``: the response body as text (status 200)."""
    status, text = await request(app, method, "/socket.io/", query, body)
    assert status == 200, text
    return text
