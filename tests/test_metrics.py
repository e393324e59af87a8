"""Prometheus metrics (rooms.metrics), as an operator sees them: a scrape of ``/metrics``
after a scripted session shows each metric moving as it should.

Every test builds its server with a ``Metrics`` on a registry of its own (never the process's
default one), routes ``/metrics`` to ``metrics.app()`` beside ``RoomsMiddleware`` and reads
what a scrape answers, parsed the way Prometheus parses it. Sessions run in process
(rooms.testing), on asyncio and trio.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

import rooms
from rooms._types import ASGIApp
from rooms.metrics import Metrics
from rooms.testing import Lifespan, TestClient
from tests.asgi import RawWebSocket, request
from tests.conftest import ROOT, run_process

pytestmark = pytest.mark.anyio

DYNAMIC_ROOMS = r"/room-\d+"


# --------------------------------------------------------------------------- scraping


class Scrape:
    """What one scrape answered: ``scrape(name, **labels)`` is a sample's value (0 for a
    series that is not there: a counter nobody moved, a label value never seen)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families.values()
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def label_values(self, name: str, label: str) -> set[str]:
        """Every value ``label`` takes among the samples called ``name``."""
        return {
            value
            for (sample, labels) in self.samples
            if sample == name
            for key, value in labels
            if key == label
        }


async def scrape(app: ASGIApp, path: str = "/metrics") -> Scrape:
    """GET ``path`` from ``app`` as Prometheus would, and parse the answer."""
    status, text = await request(app, "GET", path)
    assert status == 200, text
    return Scrape(text)


@dataclass
class Served:
    """A running server with its metrics, behind one ASGI app (Socket.IO + /metrics)."""

    server: rooms.Server
    metrics: Metrics
    app: ASGIApp

    async def scrape(self) -> Scrape:
        return await scrape(self.app)

    def client(self) -> TestClient:
        return TestClient(self.app, lifespan=False)


@asynccontextmanager
async def serving(server: rooms.Server, **options: Any) -> AsyncIterator[Served]:
    """Run ``server`` with a ``Metrics`` of its own (``options`` go to it) mounted at
    ``/metrics`` beside it, as the docs show."""
    metrics = Metrics(server, registry=CollectorRegistry(), **options)
    app = Starlette(
        routes=[Route("/metrics", metrics.app())],
        middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
    )
    async with Lifespan(app):
        yield Served(server, metrics, app)


class Departures:
    """The reasons sockets left ``where`` with, in order (its disconnect handler): a
    server's main namespace, a namespace, or every child of a dynamic one."""

    def __init__(self, where: rooms.Server | rooms.Namespace | rooms.ParentNamespace) -> None:
        self.reasons: list[str] = []
        self._changed = anyio.Event()
        where.on("disconnect", self._left)

    def _left(self, socket: rooms.Socket, reason: str) -> None:
        self.reasons.append(reason)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.reasons) < count:
                await self._changed.wait()


async def leave(client: TestClient) -> None:
    """Close the client's websocket and wait until the server is done with it."""
    await client.close()
    await client.wait_disconnected()


def echo(socket: rooms.Socket, value: Any) -> Any:
    return value


# --------------------------------------------------------------------------- connections


async def test_a_connection_and_its_socket_are_gauged_while_they_last_and_counted_once() -> None:
    server = rooms.Server()
    departures = Departures(server)
    async with serving(server) as served:
        before = await served.scrape()
        assert before("rooms_connections", transport="websocket") == 0
        assert before("rooms_sockets", namespace="/") == 0

        async with served.client() as client:
            await client.connect()
            connected = await served.scrape()
            assert connected("rooms_connections", transport="websocket") == 1
            assert connected("rooms_sockets", namespace="/") == 1
            assert connected("rooms_connects_total", namespace="/") == 1
            assert connected.label_values("rooms_disconnects_total", "reason") == set()

            # Leaving the namespace: the socket goes, the connection stays.
            await client.disconnect()
            await departures.wait(1)
            left = await served.scrape()
            assert left("rooms_sockets", namespace="/") == 0
            assert left("rooms_connections", transport="websocket") == 1
            assert (
                left("rooms_disconnects_total", namespace="/", reason="client namespace disconnect")
                == 1
            )

            # A second socket on the same connection, then the connection closes.
            await client.connect()
            await leave(client)
            await departures.wait(2)

        after = await served.scrape()
    assert after("rooms_connections", transport="websocket") == 0
    assert after("rooms_connections", transport="polling") == 0
    assert after("rooms_sockets", namespace="/") == 0
    assert after("rooms_connects_total", namespace="/") == 2
    assert after.label_values("rooms_disconnects_total", "reason") == {
        "client namespace disconnect",
        "transport close",
    }
    assert after("rooms_disconnects_total", namespace="/", reason="transport close") == 1
    assert (
        after("rooms_disconnects_total", namespace="/", reason="client namespace disconnect") == 1
    )
    assert departures.reasons == ["client namespace disconnect", "transport close"]


async def test_refusals_are_counted_by_namespace_and_unknown_namespaces_share_one_label() -> None:
    server = rooms.Server()

    @server.on("connect")
    def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        if auth.get("refuse"):
            raise rooms.ConnectionRefused("go away")

    async with serving(server) as served, served.client() as client:
        with pytest.raises(rooms.ConnectionRefused, match="go away"):
            await client.connect(auth={"refuse": True})
        for name in ("/nowhere", "/elsewhere"):
            with pytest.raises(rooms.ConnectionRefused, match="Invalid namespace"):
                await client.connect(name)
        metrics = await served.scrape()

    assert metrics("rooms_refusals_total", namespace="/") == 1
    assert metrics("rooms_refusals_total", namespace="unknown") == 2
    # A name a client made up is never a label value.
    assert metrics.label_values("rooms_refusals_total", "namespace") == {"/", "unknown"}
    # A refused socket never connected.
    assert metrics("rooms_connects_total", namespace="/") == 0
    assert metrics("rooms_sockets", namespace="/") == 0


async def test_an_upgrade_from_polling_moves_the_connection_to_the_websocket_gauge() -> None:
    server = rooms.Server()
    departures = Departures(server)
    async with serving(server) as served:
        # The Engine.IO handshake on long-polling...
        status, opened = await request(served.app, "GET", "/socket.io/", "EIO=4&transport=polling")
        assert status == 200 and opened.startswith("0{"), opened
        sid = re.search(r'"sid":"([^"]+)"', opened)
        assert sid is not None
        polling = await served.scrape()
        assert polling("rooms_connections", transport="polling") == 1
        assert polling("rooms_connections", transport="websocket") == 0
        assert polling("rooms_upgrades_total") == 0

        # ...then the probe upgrade on a websocket, driven over raw ASGI.
        async with RawWebSocket(served.app, f"EIO=4&transport=websocket&sid={sid[1]}") as ws:
            await ws.send("2probe")
            assert await ws.receive() == "3probe"
            await ws.send("5")
            await ws.send("40")  # a Socket.IO CONNECT: its reply comes on the websocket
            reply = await ws.receive()
            assert reply.startswith('40{"sid":')
            upgraded = await served.scrape()
            assert upgraded("rooms_connections", transport="polling") == 0
            assert upgraded("rooms_connections", transport="websocket") == 1
            assert upgraded("rooms_upgrades_total") == 1
            assert upgraded("rooms_sockets", namespace="/") == 1
        await departures.wait(1)
        closed = await served.scrape()
    assert closed("rooms_connections", transport="polling") == 0
    assert closed("rooms_connections", transport="websocket") == 0
    assert closed("rooms_disconnects_total", namespace="/", reason="transport close") == 1


# --------------------------------------------------------------------------- packets


async def test_packets_and_bytes_are_counted_by_type_to_the_character() -> None:
    server = rooms.Server()
    server.on("echo", echo)
    async with serving(server) as served, served.client() as client:
        sid = await client.connect()
        for n in range(3):
            assert await client.call("echo", n) == n
        metrics = await served.scrape()

    # In: each Socket.IO packet as the server decodes it (the Engine.IO "4" taken off).
    received = {"connect": ["0"], "event": ['21["echo",0]', '22["echo",1]', '23["echo",2]']}
    # Out: each Engine.IO frame the server queues.
    sent = {"connect": [f'40{{"sid":"{sid}"}}'], "ack": ["431[0]", "432[1]", "433[2]"]}
    for ptype, packets in received.items():
        assert metrics("rooms_packets_received_total", type=ptype) == len(packets)
        assert metrics("rooms_received_bytes_total", type=ptype) == sum(map(len, packets))
    for ptype, frames in sent.items():
        assert metrics("rooms_packets_sent_total", type=ptype) == len(frames)
        assert metrics("rooms_sent_bytes_total", type=ptype) == sum(map(len, frames))
    assert metrics.label_values("rooms_packets_received_total", "type") == set(received)
    assert metrics.label_values("rooms_packets_sent_total", "type") == set(sent)


async def test_binary_attachments_count_their_bytes_under_their_packets_type() -> None:
    server = rooms.Server()
    server.on("echo", echo)
    async with serving(server) as served, served.client() as client:
        await client.connect()
        assert await client.call("echo", b"\x00\x01\x02") == b"\x00\x01\x02"
        metrics = await served.scrape()

    event = '51-1["echo",{"_placeholder":true,"num":0}]'
    ack = '461-1[{"_placeholder":true,"num":0}]'
    assert metrics("rooms_received_bytes_total", type="binary_event") == len(event) + 3
    assert metrics("rooms_packets_sent_total", type="binary_ack") == 1
    assert metrics("rooms_sent_bytes_total", type="binary_ack") == len(ack) + 3
    assert metrics("rooms_packets_received_total", type="invalid") == 0


async def test_a_broadcast_to_a_room_of_three_is_one_fan_out_of_three() -> None:
    server = rooms.Server()

    @server.on("join")
    async def join(socket: rooms.Socket, room: str) -> None:
        await socket.join(room)

    async with (
        serving(server) as served,
        served.client() as ada,
        served.client() as bob,
        served.client() as cy,
        served.client() as outsider,
    ):
        members = [ada, bob, cy]
        for client in members:
            await client.connect()
            assert await client.call("join", "lobby") is None
        await outsider.connect()
        before = await served.scrape()

        await server.to("lobby").emit("news", 1)
        for client in members:
            assert await client.receive() == ("news", [1])
        after = await served.scrape()

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("rooms_broadcast_recipients_count") == 1
    assert moved("rooms_broadcast_recipients_sum") == 3
    assert moved("rooms_broadcast_recipients_bucket", le="2.0") == 0
    assert moved("rooms_broadcast_recipients_bucket", le="5.0") == 1
    assert moved("rooms_packets_sent_total", type="event") == 3
    assert moved("rooms_sent_bytes_total", type="event") == 3 * len('42["news",1]')


# --------------------------------------------------------------------------- acks


async def test_acks_the_server_waits_for_are_timed_and_those_that_never_come_are_counted() -> None:
    server = rooms.Server()
    async with serving(server) as served, served.client() as client:
        client.on("question", lambda n: n * 2)
        sid = await client.connect()
        socket = server.main.sockets[sid]

        assert await socket.emit_with_ack("question", 21, timeout=10) == 42
        answered = await served.scrape()
        assert answered("rooms_ack_latency_seconds_count") == 1
        assert answered("rooms_ack_latency_seconds_sum") >= 0
        assert answered("rooms_ack_timeouts_total") == 0

        with pytest.raises(rooms.AckTimeout):
            await socket.emit_with_ack("unanswered", timeout=0.05)  # the client has no handler
        timed_out = await served.scrape()
        assert timed_out("rooms_ack_latency_seconds_count") == 1
        assert timed_out("rooms_ack_timeouts_total") == 1

        # A broadcast that collects acks is timed once, however many answer.
        assert await server.timeout(10).emit_with_ack("question", 1) == [2]
        broadcast = await served.scrape()
        assert broadcast("rooms_ack_latency_seconds_count") == 2
        assert broadcast("rooms_ack_timeouts_total") == 1


# --------------------------------------------------------------------------- handler errors


async def test_handler_errors_are_counted_by_event_and_a_catch_all_counts_as_star(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rooms.Server()
    server.on("echo", echo)
    finished = {name: anyio.Event() for name in ("boom_async", "unsendable_async")}

    @server.on("boom")
    def boom(socket: rooms.Socket) -> None:
        raise RuntimeError("handler bug")

    @server.on("boom_async")
    async def boom_async(socket: rooms.Socket) -> None:
        await anyio.lowlevel.checkpoint()  # fails in a task of its own, not inline
        finished["boom_async"].set()  # what follows runs before this task yields
        raise RuntimeError("async handler bug")

    @server.on("unsendable")
    def unsendable(socket: rooms.Socket) -> object:
        return object()

    @server.on("unsendable_async")
    async def unsendable_async(socket: rooms.Socket) -> object:
        await anyio.lowlevel.checkpoint()
        finished["unsendable_async"].set()
        return object()

    @server.on("*")
    def anything(socket: rooms.Socket, event: str, *args: Any) -> object:
        if event == "wants an ack":
            return object()
        raise LookupError(event)

    async with serving(server) as served, served.client() as client:
        await client.connect()
        await client.emit("boom")
        await client.emit("boom_async")
        # The client asks for acks (ids of its own) that the handlers cannot give.
        await client.send_raw('4290["unsendable"]')
        await client.send_raw('4291["unsendable_async"]')
        await client.send_raw('4292["wants an ack"]')
        await client.emit("something nobody handles")
        # Messages are handled in order: sync handlers have run once this is answered.
        assert await client.call("echo", "done") == "done"
        with anyio.fail_after(10):
            for event in finished.values():
                await event.wait()
        metrics = await served.scrape()

    for event in ("boom", "boom_async", "unsendable", "unsendable_async"):
        assert metrics("rooms_handler_errors_total", namespace="/", event=event) == 1, event
    assert metrics("rooms_handler_errors_total", namespace="/", event="*") == 2
    assert metrics.label_values("rooms_handler_errors_total", "event") == {
        "boom",
        "boom_async",
        "unsendable",
        "unsendable_async",
        "*",
    }
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert sum("cannot be sent as its ack" in line for line in errors) == 3
    assert any(re.search(r"handler \S*boom for event 'boom' on / failed", s) for s in errors)


# --------------------------------------------------------------------------- slow consumers


async def test_a_slow_consumer_loses_volatile_packets_first_then_its_connection() -> None:
    server = rooms.Server(max_outbox=10, stall_after=0.05)
    departures = Departures(server)
    async with serving(server) as served, served.client() as stuck:
        await stuck.connect()
        stuck.stop_reading()

        for n in range(30):
            await server.volatile.emit("tick", n)
        dropping = await served.scrape()
        assert dropping("rooms_volatile_drops_total") > 0
        assert dropping("rooms_volatile_drops_total") == server.engine.volatile_drops
        assert dropping("rooms_overflow_closes_total") == 0
        assert dropping("rooms_connections", transport="websocket") == 1

        # A packet that may not be dropped closes the connection instead.
        with anyio.fail_after(10):
            while not departures.reasons:
                await server.emit("tick", "must arrive")
        closed = await served.scrape()
        assert closed("rooms_overflow_closes_total") == 1
        assert closed("rooms_disconnects_total", namespace="/", reason="transport error") == 1
        assert closed("rooms_connections", transport="websocket") == 0
        assert closed("rooms_sockets", namespace="/") == 0
        stuck.resume_reading()
        await stuck.wait_disconnected()


# --------------------------------------------------------------------------- recovery


class NewsServer:
    """A server with connection state recovery whose fresh sockets join "news"."""

    def __init__(self) -> None:
        self.server = rooms.Server(recovery=rooms.Recovery())
        self.departures = Departures(self.server)

        @self.server.on("connect")
        async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
            if not socket.recovered:
                await socket.join("news")

    async def drop(self, client: TestClient, sid: str) -> dict[str, str]:
        """Hear one "news" packet, cut the connection as a failing network would, wait
        until the session is saved: the CONNECT auth that recovers it."""
        await self.server.to("news").emit("tick", -1)
        _, args = await client.receive()
        self.server.main.sockets[sid].cut()
        await self.departures.wait(1)
        with anyio.fail_after(10):
            await self.server.wait_sessions_saved()
        return {"pid": client.pids["/"], "offset": args[-1]}


async def test_a_recovered_socket_counts_one_attempt_one_success_and_what_was_replayed() -> None:
    news = NewsServer()
    server = news.server
    async with serving(server) as served:
        async with served.client() as first:
            sid = await first.connect()
            auth = await news.drop(first, sid)
        for n in range(3):
            await server.to("news").emit("tick", n)
        async with served.client() as again:
            assert await again.connect(auth=auth) == sid
            assert [(await again.receive())[1][0] for _ in range(3)] == [0, 1, 2]
            metrics = await served.scrape()

    assert news.departures.reasons[0] == "forced close"
    assert metrics("rooms_disconnects_total", namespace="/", reason="forced close") == 1
    assert metrics("rooms_recovery_attempts_total") == 1  # the first CONNECT asked for nothing
    assert metrics("rooms_recovery_successes_total") == 1
    assert metrics("rooms_recovery_replayed_packets_total") == 3


async def test_replayed_packets_are_counted_as_sent() -> None:
    """The client got four events (one live, three replayed); so says the scrape."""
    news = NewsServer()
    server = news.server
    async with serving(server) as served:
        async with served.client() as first:
            sid = await first.connect()
            auth = await news.drop(first, sid)
        for n in range(3):
            await server.to("news").emit("tick", n)  # nobody is in "news" meanwhile
        async with served.client() as again:
            assert await again.connect(auth=auth) == sid
            replayed = [await again.receive() for _ in range(3)]
            metrics = await served.scrape()

    frames = ['42["tick",-1,"{}"]'.format(auth["offset"])]
    frames += [f'42["tick",{n},"{args[1]}"]' for n, (_, args) in enumerate(replayed)]
    assert metrics("rooms_packets_sent_total", type="event") == 4
    assert metrics("rooms_sent_bytes_total", type="event") == sum(map(len, frames))


async def test_what_was_counted_last_is_reported_as_the_server_stops() -> None:
    """Nothing scrapes while the session runs, and the periodic report is far away: the
    report the server makes as it stops has everything (with several worker processes, a
    worker's last report is all that is left of it once it exits)."""
    news = NewsServer()
    server = news.server
    async with serving(server, interval=3600) as served:
        async with served.client() as first:
            sid = await first.connect()
            auth = await news.drop(first, sid)
        async with served.client() as again:
            assert await again.connect(auth=auth) == sid
    registry = served.metrics.registry
    assert registry is not None
    metrics = Scrape(generate_latest(registry).decode())
    assert metrics("rooms_packets_received_total", type="connect") == 2
    assert metrics("rooms_recovery_attempts_total") == 1
    assert metrics("rooms_recovery_successes_total") == 1


# --------------------------------------------------------------------------- cluster


async def test_two_processes_of_a_cluster_see_each_other_and_count_what_crosses() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    here, there = rooms.Server(broker=url), rooms.Server(broker=url)

    @there.on("join")
    async def join(socket: rooms.Socket, room: str) -> None:
        await socket.join(room)

    async with serving(here) as a, serving(there) as b, b.client() as bob:
        for server in (here, there):
            assert server.node is not None
            await server.node.wait_for_peers(1)
        for served in (a, b):
            joined = await served.scrape()
            assert joined("rooms_cluster_peers") == 1
            assert joined("rooms_broker_up") == 1
        await bob.connect()
        assert await bob.call("join", "lobby") is None
        before_a, before_b = await a.scrape(), await b.scrape()

        await here.to("lobby").emit("news", 1)
        assert await bob.receive() == ("news", [1])
        # Queued after the broadcast, answered after the broadcast went out: by now the
        # broker has taken the broadcast.
        found = await here.fetch_sockets()
        assert [s.data for s in found] == [{}]
        after_a, after_b = await a.scrape(), await b.scrape()

    assert after_a("rooms_broker_published_total") >= before_a("rooms_broker_published_total") + 1
    assert after_a("rooms_broker_dropped_total") == 0
    requests = "rooms_cluster_request_seconds_count"
    assert after_a(requests) == before_a(requests) + 1
    assert after_b(requests) == before_b(requests)
    assert after_a("rooms_cluster_request_timeouts_total") == 0
    # Each process counts its own share of the fan-out: none here, bob there.
    fanout = "rooms_broadcast_recipients_count", "rooms_broadcast_recipients_sum"
    assert [after_a(m) - before_a(m) for m in fanout] == [1, 0]
    assert [after_b(m) - before_b(m) for m in fanout] == [1, 1]


# --------------------------------------------------------------------------- mailbox


async def test_mail_waiting_at_connect_then_delivered_and_acked_is_counted() -> None:
    mailbox = rooms.Mailbox(lambda socket: socket.data.get("user"))
    server = rooms.Server(mailbox=mailbox)

    @server.on("connect")
    def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        socket.data["user"] = auth.get("user")

    async with serving(server) as served:
        await mailbox.send("ada", "note", "hello")
        async with served.client() as client:
            client.on("note", lambda text, mail_id: "ok")
            await client.connect(auth={"user": "ada"})
            await mailbox.wait_acked(1)
            metrics = await served.scrape()

    assert metrics("rooms_mailbox_delivered_total") == 1
    assert metrics("rooms_mailbox_acked_total") == 1
    assert metrics("rooms_mailbox_redeliveries_total") == 0
    assert metrics("rooms_mailbox_waiting_count") == 1
    assert metrics("rooms_mailbox_waiting_sum") == 1  # one message waited for ada
    assert metrics("rooms_mailbox_waiting_bucket", le="0.0") == 0
    assert metrics("rooms_mailbox_waiting_bucket", le="1.0") == 1


# --------------------------------------------------------------------------- labels


async def test_dynamic_namespaces_and_catch_all_events_keep_labels_bounded() -> None:
    server = rooms.Server()
    server.on("echo", echo)
    dynamic = server.of(re.compile(DYNAMIC_ROOMS))

    def fail(socket: rooms.Socket, event: str, *args: Any) -> None:
        raise LookupError(event)

    server.on("*", fail)
    dynamic.on("*", fail)

    async with serving(server) as served, served.client() as client:
        await client.connect()
        for n in range(100):
            await client.connect(f"/room-{n}")
            await client.emit(f"event-{n}", namespace=f"/room-{n}")
            await client.emit(f"event-{n}")
        assert await client.call("echo", "done") == "done"  # every message before is handled
        metrics = await served.scrape()

    family = f"dynamic:{DYNAMIC_ROOMS}"
    assert metrics.label_values("rooms_sockets", "namespace") == {"/", family}
    assert metrics("rooms_sockets", namespace=family) == 100
    assert metrics("rooms_connects_total", namespace=family) == 100
    assert metrics.label_values("rooms_handler_errors_total", "event") == {"*"}
    assert metrics("rooms_handler_errors_total", namespace="/", event="*") == 100
    assert metrics("rooms_handler_errors_total", namespace=family, event="*") == 100


async def test_a_failure_in_a_dynamic_namespace_its_socket_left_keeps_the_family_label() -> None:
    """A handler still running when its socket leaves a dynamic child (which then goes)
    fails: the error counts under the child's family, not under the child's own name."""
    server = rooms.Server()
    dynamic = server.of(re.compile(DYNAMIC_ROOMS))
    departures = Departures(dynamic)
    started, release, raised = anyio.Event(), anyio.Event(), anyio.Event()

    @dynamic.on("slow")
    async def slow(socket: rooms.Socket) -> None:
        started.set()
        await release.wait()
        raised.set()  # what follows runs before this task yields
        raise RuntimeError("failed after its socket left")

    async with serving(server) as served, served.client() as client:
        await client.connect("/room-7")
        await client.emit("slow", namespace="/room-7")
        with anyio.fail_after(10):
            await started.wait()
        await client.disconnect("/room-7")
        await departures.wait(1)
        assert "/room-7" not in server.namespaces  # the child is gone with its last socket
        release.set()
        with anyio.fail_after(10):
            await raised.wait()
        metrics = await served.scrape()

    assert metrics.label_values("rooms_handler_errors_total", "namespace") == {
        f"dynamic:{DYNAMIC_ROOMS}"
    }


async def test_past_max_namespaces_the_rest_count_as_other() -> None:
    server = rooms.Server()
    for name in ("/a", "/b", "/c", "/d"):
        server.of(name)
    async with serving(server, max_namespaces=2) as served, served.client() as client:
        for name in ("/a", "/b", "/c", "/d"):
            await client.connect(name)
        metrics = await served.scrape()
    assert metrics.label_values("rooms_sockets", "namespace") == {"/a", "/b", "other"}
    assert metrics("rooms_sockets", namespace="other") == 2
    assert metrics("rooms_connects_total", namespace="other") == 2


# --------------------------------------------------------------------------- the app


async def test_a_server_without_metrics_has_no_observer() -> None:
    server = rooms.Server()
    assert server.observer is None
    metrics = Metrics(server, registry=CollectorRegistry())
    assert server.observer is metrics


async def test_the_app_serves_the_registry_it_was_given_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    registry = CollectorRegistry()
    Counter("app_orders", "The application's own metric", registry=registry).inc(2)
    metrics = Metrics(rooms.Server(), registry=registry, prefix="chat")

    answered = await scrape(metrics.app(), "/")

    assert answered("app_orders_total") == 2
    assert answered("chat_ack_timeouts_total") == 0
    assert "python_info" not in answered.families  # the process's default registry
    ours = {name for name in answered.families if not name.startswith("app_orders")}
    assert ours and all(name.startswith("chat_") for name in ours)


def test_with_prometheus_multiproc_dir_a_scrape_sums_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """Two workers, one after the other, each serve a session and write their values to
    the directory; a scrape of either (or of any process with that directory) sums them.

    In subprocesses: prometheus_client chooses, as it is imported, whether values go to
    files, so the variable must be set before that."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    worker = [sys.executable, "-m", "tests.apps.metrics", anyio_backend]
    outputs = []
    for _ in range(2):
        done = run_process(worker, timeout=60, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append(Scrape(done.stdout))
    first, second = outputs
    assert first("rooms_connects_total", namespace="/") == 1
    assert second("rooms_connects_total", namespace="/") == 2
    assert second("rooms_packets_received_total", type="event") == 2
    assert second("rooms_disconnects_total", namespace="/", reason="transport close") == 2

    # This process's own values live in memory (its prometheus_client was imported without
    # the variable): with it set, the app answers from the files alone.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = CollectorRegistry()
    metrics = Metrics(rooms.Server(), registry=registry)
    metrics.connects.labels("/").inc(100)
    answered = anyio.run(scrape, metrics.app(), "/", backend=anyio_backend)
    assert answered("rooms_connects_total", namespace="/") == 2
