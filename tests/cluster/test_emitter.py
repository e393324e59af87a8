"""The emitter reaches a cluster's sockets from a process with none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

import rooms
from tests.cluster.conftest import BrokerFactory, Cluster
from tests.cluster.test_cluster import chat, clients_in

pytestmark = pytest.mark.anyio


async def open_emitter(c: Cluster, make_broker: BrokerFactory) -> rooms.Emitter:
    # On the cluster's stack, with its clients: task groups close in the order they opened.
    return await c.clients.enter_async_context(rooms.Emitter(make_broker()))


async def test_an_emitter_broadcasts_to_rooms_on_every_server(
    cluster: Callable[..., Any], make_broker: BrokerFactory
) -> None:
    async with cluster(2, setup=chat) as c:
        emitter = await open_emitter(c, make_broker)
        ada, bob, cy = await clients_in(c, "lobby", ["ada", "bob", "cy"], on=[0, 1, 1])
        assert await cy.call("join", "muted") is True

        await emitter.to("lobby").except_("muted").emit("news", {"id": 7}, b"\x00")
        await emitter.emit("end")

        for client in (ada, bob):
            assert await client.receive() == ("news", [{"id": 7}, b"\x00"])
            assert await client.receive() == ("end", [])
        assert await cy.receive() == ("end", [])
        assert len(c.node(0).peers) == 1  # an emitter is never a member


async def test_an_emitter_runs_room_operations_and_namespaces(
    cluster: Callable[..., Any], make_broker: BrokerFactory
) -> None:
    def setup(server: rooms.Server) -> None:
        chat(server)
        server.of("/admin")

    async with cluster(2, setup=setup) as c:
        emitter = await open_emitter(c, make_broker)
        clients = await clients_in(c, "blue", ["a", "b"], on=[0, 1])
        admin = await c.clients.enter_async_context(
            rooms.testing.TestClient(c.apps[1], lifespan=False)
        )
        await admin.connect("/admin")

        await emitter.in_("blue").sockets_join("green")
        await emitter.of("/admin").emit("hello admins")
        assert await admin.receive("/admin") == ("hello admins", [])
        # The emitter's messages reached server 1 in order: the join came before.
        green = await c.servers[1].in_("green").fetch_sockets()
        assert sorted(s.data["name"] for s in green) == ["a", "b"]

        await emitter.in_("green").sockets_leave("blue")
        await emitter.emit("marker")  # a client that sees it, its server saw the leave
        for client in clients:
            assert await client.receive() == ("marker", [])
        assert await c.servers[1].in_("blue").fetch_sockets() == []
        await emitter.in_("green").disconnect_sockets()
        for client in clients:
            assert await client.receive() == ("disconnect", ["io server disconnect"])
        assert await c.servers[1].fetch_sockets() == []


async def test_an_emitter_calls_every_servers_server_event_handlers(
    cluster: Callable[..., Any], make_broker: BrokerFactory
) -> None:
    heard: list[anyio.Event] = []

    def setup(server: rooms.Server) -> None:
        event = anyio.Event()
        heard.append(event)

        @server.on_server_event("reload")
        def reload(what: str) -> None:
            if what == "config":
                event.set()

    async with cluster(2, setup=setup) as c:
        emitter = await open_emitter(c, make_broker)
        await emitter.server_side_emit("reload", "config")
        with anyio.fail_after(5):
            for event in heard:
                await event.wait()
        assert len(c.servers) == 2


async def test_a_closed_emitter_says_so(make_broker: BrokerFactory) -> None:
    emitter = rooms.Emitter(make_broker())
    with pytest.raises(rooms.BrokerError, match="expected an open emitter"):
        await emitter.to("room").emit("x")
