"""A cluster behaves as one server: broadcasts, room operations, fetch_sockets,
server-side emits and broadcast acks reach every process, on every broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import rooms
from rooms.protocol import cluster as wire
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.anyio


def chat(server: rooms.Server) -> None:
    @server.on("connect")
    def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name", "anon")

    @server.on("join")
    async def join(socket: rooms.Socket, room: str) -> bool:
        await socket.join(room)
        return True

    @server.on("say")
    async def say(socket: rooms.Socket, room: str, text: str) -> bool:
        await socket.to(room).emit("said", socket.data["name"], text)
        return True


async def clients_in(c: Cluster, room: str, names: list[str], on: list[int]) -> list[Any]:
    clients = []
    for name, index in zip(names, on, strict=True):
        client = await c.client(index, auth={"name": name})
        assert await client.call("join", room) is True
        clients.append(client)
    return clients


async def receive_until_end(client: Any, ends: int) -> list[Any]:
    """Events received before ``ends`` ("end", []) markers, sorted."""
    seen = []
    while ends:
        event = await client.receive()
        if event == ("end", []):
            ends -= 1
        else:
            seen.append(event)
    return sorted(seen)


async def test_a_room_broadcast_reaches_every_member_on_every_process_exactly_once(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=chat) as c:
        members = await clients_in(c, "lobby", ["ada", "bob", "cy", "di"], on=[0, 1, 2, 2])
        outsider = await c.client(1)

        await c.servers[0].to("lobby").emit("news", 1)
        await c.servers[0].emit("everyone", "end")  # one process's broadcasts keep their order

        for client in members:
            assert await client.receive() == ("news", [1])
            # The next event is the later one: the broadcast came exactly once.
            assert await client.receive() == ("everyone", ["end"])
        assert await outsider.receive() == ("everyone", ["end"])


async def test_socket_to_room_excludes_the_sender_and_except_excludes_a_room(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=chat) as c:
        ada, bob, cy = await clients_in(c, "lobby", ["ada", "bob", "cy"], on=[0, 1, 1])
        assert await cy.call("join", "quiet") is True

        assert await ada.call("say", "lobby", "hello") is True
        await c.servers[1].to("lobby").except_("quiet").emit("ping")
        for server in c.servers:
            await server.to("lobby").emit("end")

        # Broadcasts from different processes have no order between them: compare what
        # arrived before both "end" markers (each process's comes after its own events).
        said = ("said", ["ada", "hello"])
        assert await receive_until_end(bob, 2) == sorted([said, ("ping", [])])
        assert await receive_until_end(cy, 2) == [said]  # in "quiet": no ping
        assert await receive_until_end(ada, 2) == [("ping", [])]  # not its own "said"


async def test_binary_travels_between_processes(cluster: Callable[..., Any]) -> None:
    async with cluster(2, setup=chat) as c:
        (bob,) = await clients_in(c, "files", ["bob"], on=[1])
        await c.servers[0].to("files").emit("file", {"name": "a.bin", "body": b"\x00\xff\x10"})
        assert await bob.receive() == ("file", [{"name": "a.bin", "body": b"\x00\xff\x10"}])


async def test_local_broadcasts_stay_on_their_process(cluster: Callable[..., Any]) -> None:
    async with cluster(2, setup=chat) as c:
        ada, bob = await clients_in(c, "lobby", ["ada", "bob"], on=[0, 1])
        await c.servers[0].local.to("lobby").emit("here only")
        await c.servers[0].to("lobby").emit("everywhere")
        assert await ada.receive() == ("here only", [])
        assert await bob.receive() == ("everywhere", [])


async def test_fetch_sockets_returns_remote_handles_that_act_on_the_live_socket(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=chat) as c:
        ada, bob = await clients_in(c, "blue", ["ada", "bob"], on=[0, 1])
        bob.on("double", lambda n: n * 2)

        found = {s.data["name"]: s for s in await c.servers[0].in_("blue").fetch_sockets()}

        assert isinstance(found["ada"], rooms.Socket)
        remote = found["bob"]
        assert isinstance(remote, rooms.RemoteSocket)
        assert remote.id == bob.namespaces["/"]
        assert remote.rooms == {remote.id, "blue"}
        assert remote.node == c.node(1).uid
        assert remote.handshake.address == "127.0.0.1"
        assert remote.handshake.auth == {"name": "bob"}
        assert remote.handshake.headers["host"] == "testserver"

        await remote.emit("hi", 1, b"\x01")
        assert await bob.receive() == ("hi", [1, b"\x01"])
        assert await remote.emit_with_ack("double", 21, timeout=5) == 42

        await remote.join("red")
        await remote.leave("blue")
        (moved,) = await c.servers[0].in_("red").fetch_sockets()
        assert moved.id == remote.id
        assert moved.rooms == {remote.id, "red"}

        await remote.disconnect()
        assert await bob.receive() == ("disconnect", ["io server disconnect"])
        assert [s.id for s in await c.servers[0].fetch_sockets()] == [ada.namespaces["/"]]


async def test_room_operations_select_by_room_on_every_process(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=chat) as c:
        blue = await clients_in(c, "blue", ["a", "b", "c"], on=[0, 1, 2])
        red = await clients_in(c, "red", ["d", "e"], on=[1, 2])

        # A process's requests reach every other process after its earlier operations.
        await c.servers[2].in_("blue").sockets_join("green")
        green = await c.servers[2].in_("green").fetch_sockets()
        assert sorted(s.data["name"] for s in green) == ["a", "b", "c"]

        await c.servers[0].in_("blue").except_("red").sockets_leave("green")
        assert await c.servers[0].in_("green").fetch_sockets() == []

        await c.servers[1].in_("red").disconnect_sockets()
        for client in red:
            assert await client.receive() == ("disconnect", ["io server disconnect"])
        remaining = await c.servers[2].fetch_sockets()
        assert sorted(s.data["name"] for s in remaining) == ["a", "b", "c"]
        assert all(client.namespaces for client in blue)


async def test_room_operations_are_done_on_every_process_when_they_return(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=chat) as c:
        names = [f"n{i}" for i in range(9)]
        await clients_in(c, "blue", names, on=[i % 3 for i in range(9)])

        # Each asked from one process, then checked at once from another: nothing between.
        await c.servers[0].in_("blue").sockets_join("green")
        green = await c.servers[1].in_("green").fetch_sockets()
        assert sorted(s.data["name"] for s in green) == names

        await c.servers[2].in_("green").sockets_leave("blue")
        assert await c.servers[1].in_("blue").fetch_sockets() == []

        await c.servers[0].in_("green").disconnect_sockets()
        assert await c.servers[1].fetch_sockets() == []
        assert await c.servers[2].fetch_sockets() == []


async def test_a_room_operation_that_not_every_process_answers_says_who_applied_it(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=chat, request_timeout=1.0) as c:
        await clients_in(c, "blue", ["a", "b", "c"], on=[0, 1, 2])
        c.sever(2)  # as if killed: it never answers

        with pytest.raises(rooms.ClusterTimeout) as info:
            await c.servers[0].in_("blue").sockets_join("green")

        assert info.value.responses == [c.node(0).uid, c.node(1).uid]
        for index, name in [(0, "a"), (1, "b")]:
            (here,) = await c.servers[index].local.in_("green").fetch_sockets()
            assert here.data["name"] == name


async def test_a_fetch_that_times_out_carries_the_sockets_found(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=chat, request_timeout=1.0) as c:
        ada, bob, _ = await clients_in(c, "blue", ["ada", "bob", "cy"], on=[0, 1, 2])
        c.sever(2)

        with pytest.raises(rooms.ClusterTimeout) as info:
            await c.servers[0].in_("blue").fetch_sockets()

        found = {s.data["name"]: s for s in info.value.responses}
        assert sorted(found) == ["ada", "bob"]  # the caller's own, and who answered
        assert isinstance(found["ada"], rooms.Socket)
        assert found["ada"].id == ada.namespaces["/"]
        remote = found["bob"]
        assert isinstance(remote, rooms.RemoteSocket)
        assert (remote.id, remote.node) == (bob.namespaces["/"], c.node(1).uid)
        await remote.emit("still", "usable")
        assert await bob.receive() == ("still", ["usable"])


async def test_a_silent_process_is_forgotten_within_heartbeat_timeout_however_rare_heartbeats(
    cluster: Callable[..., Any],
) -> None:
    clock = rooms.testing.ManualClock()
    # Heartbeats far apart (never, within this test): only the expiry check can notice.
    options = {"heartbeat_interval": 600, "heartbeat_timeout": 10, "request_timeout": 1.0}
    async with cluster(3, setup=chat, clock=clock, **options) as c:
        await clients_in(c, "blue", ["a", "b", "c"], on=[0, 1, 2])
        c.sever(2)
        clock.advance(9.5)
        # Process 1 answers (so is heard of at 9.5); process 2, silent, is still waited for.
        with pytest.raises(rooms.ClusterTimeout) as info:
            await c.servers[0].fetch_sockets()
        assert sorted(s.data["name"] for s in info.value.responses) == ["a", "b"]

        clock.advance(1.0)  # 10.5 s since process 2 was last heard of; 1 s since process 1
        await c.node(0).wait_for_peers(1, timeout=5)  # checked within 1 s, not after 600
        assert list(c.node(0).peers) == [c.node(1).uid]


async def test_server_side_emit_reaches_every_other_process_and_collects_answers(
    cluster: Callable[..., Any],
) -> None:
    heard: dict[int, anyio.Event] = {}

    def setup(server: rooms.Server) -> None:
        index = len(heard)
        heard[index] = anyio.Event()

        @server.on_server_event("hello")
        def hello(who: str) -> str:
            heard[index].set()
            return f"{index} greets {who}"

        @server.on_server_event("slow")
        async def slow(who: str) -> dict[str, Any]:
            await anyio.lowlevel.checkpoint()
            return {"from": index, "bytes": b"\x07"}

    async with cluster(3, setup=setup) as c:
        await c.servers[0].server_side_emit("hello", "ada")
        with anyio.fail_after(5):
            await heard[1].wait()
            await heard[2].wait()
        assert not heard[0].is_set()  # never to the sender itself

        answers = await c.servers[1].server_side_emit_with_ack("hello", "bob")
        assert sorted(answers) == ["0 greets bob", "2 greets bob"]
        answers = await c.servers[2].server_side_emit_with_ack("slow", "cy")
        assert sorted(a["from"] for a in answers) == [0, 1]
        assert all(a["bytes"] == b"\x07" for a in answers)


async def test_broadcast_acks_aggregate_across_processes(cluster: Callable[..., Any]) -> None:
    async with cluster(3, setup=chat) as c:
        clients = await clients_in(c, "poll", ["a", "b", "c", "d"], on=[0, 1, 2, 2])
        for index, client in enumerate(clients):
            client.on("vote", lambda question, i=index: f"{question}:{i}")

        answers = await c.servers[1].to("poll").timeout(5).emit_with_ack("vote", "q")

        assert sorted(answers) == ["q:0", "q:1", "q:2", "q:3"]


async def test_broadcast_acks_time_out_with_the_answers_that_came(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=chat) as c:
        answering, silent = await clients_in(c, "poll", ["a", "b"], on=[0, 1])
        answering.on("vote", lambda: "yes")  # the other one never answers

        with pytest.raises(rooms.AckTimeout) as info:
            await c.servers[0].to("poll").timeout(0.3).emit_with_ack("vote")

        assert info.value.responses == ["yes"]
        assert await silent.receive() == ("vote", [])


async def test_a_remote_recipient_that_disconnects_is_not_waited_for(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=chat) as c:
        answering, leaving = await clients_in(c, "poll", ["a", "b"], on=[0, 1])
        answering.on("vote", lambda: "yes")

        async with anyio.create_task_group() as tg:
            result: list[Any] = []

            async def ask() -> None:
                result.extend(await c.servers[0].to("poll").timeout(60).emit_with_ack("vote"))

            tg.start_soon(ask)
            assert await leaving.receive() == ("vote", [])
            await leaving.disconnect()
        assert result == ["yes"]


async def test_a_process_that_dies_makes_requests_end_by_timeout_then_is_forgotten(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(
        3, setup=chat, heartbeat_interval=0.05, heartbeat_timeout=1.0, request_timeout=0.3
    ) as c:
        await clients_in(c, "room", ["a", "b", "c"], on=[0, 1, 2])
        c.sever(2)  # as if killed: no goodbye

        # Still believed alive: the request ends by its timeout, with the sockets found.
        with pytest.raises(rooms.ClusterTimeout) as info:
            await c.servers[0].fetch_sockets()
        assert sorted(s.data["name"] for s in info.value.responses) == ["a", "b"]

        # Its heartbeats stop, so it is forgotten; requests no longer wait for it.
        await c.node(0).wait_for_peers(1, timeout=5)
        assert len(await c.servers[0].fetch_sockets()) == 2


async def test_broadcast_acks_stop_waiting_for_a_process_that_dies(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(3, setup=chat, heartbeat_interval=0.05, heartbeat_timeout=0.5) as c:
        clients = await clients_in(c, "poll", ["a", "b", "c"], on=[0, 1, 2])
        clients[0].on("vote", lambda: "a")
        clients[1].on("vote", lambda: "b")
        c.sever(2)

        with anyio.fail_after(10):  # a hang guard: the ack timeout below is far longer
            answers = await c.servers[0].to("poll").timeout(60).emit_with_ack("vote")

        assert sorted(answers) == ["a", "b"]


async def test_a_process_that_stops_cleanly_leaves_at_once(cluster: Callable[..., Any]) -> None:
    async with cluster(3, heartbeat_interval=60) as c:
        await c.stop(2)
        await c.node(0).wait_for_peers(1, timeout=5)  # long before any heartbeat is missed
        await c.node(1).wait_for_peers(1, timeout=5)


async def test_malformed_cluster_messages_are_counted_and_ignored(
    cluster: Callable[..., Any],
) -> None:
    async with cluster(2, setup=chat) as c:
        (bob,) = await clients_in(c, "lobby", ["bob"], on=[1])
        node = c.node(1)
        broker = c.node(0).broker
        for garbage in [b"not json", b"{}", b'{"uid":"x","nsp":"/","type":99}', b"\x00\x00"]:
            await broker.publish(node.channel, garbage)
        await c.servers[0].to("lobby").emit("still", "working")

        assert await bob.receive() == ("still", ["working"])
        assert node.bad_messages == 4


async def test_messages_for_a_namespace_a_process_does_not_have_are_harmless(
    cluster: Callable[..., Any],
) -> None:
    def setup(server: rooms.Server) -> None:
        chat(server)
        if server.node is not None and not hasattr(setup, "done"):
            setup.done = True  # type: ignore[attr-defined]
            server.of("/only-here")

    async with cluster(2, setup=setup) as c:
        await c.servers[0].of("/only-here").emit("x")
        assert await c.servers[0].of("/only-here").fetch_sockets() == []
        # The other process answers room operations all the same (it has nothing to do).
        await c.servers[0].of("/only-here").timeout(5).sockets_join("x")
        await c.servers[0].of("/only-here").timeout(5).disconnect_sockets()
        assert "/only-here" not in c.servers[1].namespaces


def test_every_cluster_message_survives_the_wire() -> None:
    opts = wire.BroadcastOptions(frozenset({"a", "b"}), frozenset({"c"}), volatile=True)
    details = wire.SocketDetails("s1", frozenset({"s1", "r"}), {"k": b"\x01"}, {"auth": {}})
    bodies: list[wire.Body] = [
        wire.InitialHeartbeat(),
        wire.Heartbeat(),
        wire.AdapterClose(),
        wire.Broadcast(opts, '51-["e",{"_placeholder":true,"num":0}]', (b"\x00\x01",)),
        wire.Broadcast(wire.ALL, '2["e"]', (), "req", 2.5),
        wire.SocketsJoin(opts, frozenset({"x"})),
        wire.SocketsJoin(opts, frozenset({"x"}), "req"),
        wire.SocketsLeave(opts, frozenset({"x", "y"})),
        wire.SocketsLeave(opts, frozenset({"x", "y"}), "req"),
        wire.DisconnectSockets(opts, True),
        wire.DisconnectSockets(opts, False, "req"),
        wire.SocketsDone("req"),
        wire.FetchSockets(opts, "req"),
        wire.FetchSocketsResponse("req", (details,)),
        wire.ServerSideEmit(["e", 1, b"\x02"], "req"),
        wire.ServerSideEmit(["e"]),
        wire.ServerSideEmitResponse("req", [{"ok": True}]),
        wire.BroadcastClientCount("req", -1),
        wire.BroadcastAck("req", ["yes", b"\x03"]),
        wire.Forward("stream", {"type": "http.request", "body": b"\x1e"}),
        wire.TakeOver("pid-1", "req"),
        wire.TakeOverResponse("req", True),
    ]
    for body in bodies:
        message = wire.Message("node-1", "/chat", body)
        assert wire.decode(wire.encode(message)) == message


def test_room_operations_ask_for_answers_only_with_a_request_id() -> None:
    # Socket.IO's shape: {"opts", "rooms"} (or "close"), plus "requestId" when asked.
    def data(body: wire.Body) -> Any:
        return json.loads(wire.encode(wire.Message("u", "/", body)))["data"]

    opts = wire.BroadcastOptions(frozenset({"a"}))
    assert data(wire.SocketsJoin(opts, frozenset({"b"}))) == {
        "opts": {"rooms": ["a"], "except": []},
        "rooms": ["b"],
    }
    assert data(wire.DisconnectSockets(opts, False, "r1")) == {
        "opts": {"rooms": ["a"], "except": []},
        "close": False,
        "requestId": "r1",
    }
    assert data(wire.SocketsDone("r1")) == {"requestId": "r1"}
    with pytest.raises(rooms.ProtocolError, match="request id"):
        wire.decode(b'{"uid":"u","nsp":"/","type":5,"data":{"opts":{"rooms":[],"except":[]},'
                    b'"rooms":[],"requestId":7}}')  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff", "expected a JSON message header"),
        (b'{"nsp":"/","type":2}', "expected the sender's uid"),
        (b'{"uid":"u","nsp":"/","type":42}', "expected a known message type"),
        (b'{"uid":"u","nsp":"/","type":true}', "expected a message type"),
        (b'{"uid":"u","nsp":"/","type":4,"data":{"opts":{"rooms":[1]}}}', "room names"),
        (b'{"uid":"u","nsp":"/","type":3,"data":{"opts":{},"packet":1}}', "packet frames"),
        (b"\x00\x00\x00\x00\x02{}\x00\x00\x00\x09abc", "expected a blob of 9 bytes"),
        (b"\x00\x00\x00", "truncated"),
    ],
)
def test_malformed_cluster_messages_say_what_was_expected(raw: bytes, expected: str) -> None:
    with pytest.raises(rooms.ProtocolError, match=expected):
        wire.decode(raw)
