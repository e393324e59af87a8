"""The durable mailbox: its stores (memory and Redis) held to the same rules, and delivery
in process, from a handler's server and from an emitter. (The real socket.io-client across
processes and restarts: tests/cluster/test_processes.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import rooms
from rooms.brokers.redis import RedisBroker
from rooms.mailbox.memory import MemoryMailboxStore
from rooms.mailbox.redis import RedisMailboxStore
from rooms.mailbox.store import MailboxStore, Overflow
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


StoreFactory = Callable[[int, Overflow], Any]


@pytest.fixture(params=["memory", "redis"])
def open_store(request: pytest.FixtureRequest) -> StoreFactory:
    @asynccontextmanager
    async def memory(limit: int, overflow: Overflow) -> AsyncIterator[MailboxStore]:
        yield MemoryMailboxStore(Clock(), limit, 3600, overflow)

    @asynccontextmanager
    async def redis(limit: int, overflow: Overflow) -> AsyncIterator[MailboxStore]:
        async with RedisBroker(request.getfixturevalue("redis_url")) as broker:
            yield RedisMailboxStore(broker, f"test-{uuid.uuid4().hex}", limit, 3600, overflow)

    return memory if request.param == "memory" else redis


async def test_mail_is_kept_in_order_per_identity_until_removed(open_store: StoreFactory) -> None:
    async with open_store(100, "drop-oldest") as store:
        ids = [await store.put("ada", "note", (n, {"k": [n]})) for n in range(5)]
        await store.put("bob", "note", ("for bob",))
        assert ids == sorted(ids) and len(set(ids)) == 5
        mail = await store.pending("ada", None, 10)
        assert [(m.id, m.event, m.args) for m in mail] == [
            (ids[n], "note", (n, {"k": [n]})) for n in range(5)
        ]
        assert [m.id for m in await store.pending("ada", ids[1], 2)] == ids[2:4]
        await store.remove("ada", ids[0])
        await store.remove("ada", ids[0])  # twice is fine (two tabs acked it)
        assert await store.count("ada") == 4
        assert await store.count("bob") == 1
        assert await store.count("nobody") == 0


async def test_a_full_mailbox_drops_its_oldest(open_store: StoreFactory) -> None:
    async with open_store(3, "drop-oldest") as store:
        for n in range(5):
            await store.put("ada", "note", (n,))
        assert [m.args[0] for m in await store.pending("ada", None, 10)] == [2, 3, 4]


async def test_a_full_mailbox_can_refuse_instead(open_store: StoreFactory) -> None:
    async with open_store(3, "reject") as store:
        kept = [await store.put("ada", "note", (n,)) for n in range(5)]
        assert kept[3:] == [None, None]
        assert [m.args[0] for m in await store.pending("ada", None, 10)] == [0, 1, 2]


async def test_memory_mail_older_than_max_age_is_dropped() -> None:
    clock = Clock()
    store = MemoryMailboxStore(clock, 100, 60, "drop-oldest")
    await store.put("ada", "old", ())
    clock.now += 61
    await store.put("ada", "new", ())
    assert [m.event for m in await store.pending("ada", None, 10)] == ["new"]
    assert store.dropped == 1


async def test_redis_mailboxes_expire_when_untouched(redis_url: str) -> None:
    async with RedisBroker(redis_url) as broker:
        store = RedisMailboxStore(broker, "expiry", 100, 3600, "drop-oldest")
        await store.put("ada", "note", ())
        ttl = await broker.execute(lambda client: client.pttl("expiry#mailbox#ada"))
        assert 3_500_000 < ttl <= 3_600_000


# --------------------------------------------------------------------------- delivery


def mail_server(
    broker: Any = None, prefix: str = "rooms", **options: Any
) -> tuple[rooms.Server, rooms.Mailbox]:
    mailbox = rooms.Mailbox(lambda socket: socket.data.get("user"), **options)
    server = rooms.Server(broker=broker, cluster_prefix=prefix, mailbox=mailbox)

    @server.on("connect")
    def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        socket.data["user"] = auth.get("user")

    return server, mailbox


async def test_mail_sent_while_offline_arrives_in_order_on_connect_and_live_after() -> None:
    server, mailbox = mail_server()
    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app):
        ids = [await mailbox.send("ada", "note", n) for n in range(3)]
        async with TestClient(app, lifespan=False) as client:
            client.on("note", lambda n, mail_id: "ok")  # acks
            await client.connect(auth={"user": "ada"})
            await mailbox.wait_acked(3)
            assert await mailbox.count("ada") == 0
            live = await mailbox.send("ada", "note", 3)
            await mailbox.wait_acked(4)
        assert live > ids[-1]


async def test_unacked_mail_stays_for_the_next_connection() -> None:
    server, mailbox = mail_server(ack_timeout=0.2)
    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app):
        first = await mailbox.send("ada", "note", "hello")
        async with TestClient(app, lifespan=False) as client:
            await client.connect(auth={"user": "ada"})
            assert await client.receive() == ("note", ["hello", first])  # seen, never acked
        async with TestClient(app, lifespan=False) as client:
            client.on("note", lambda text, mail_id: "ok")
            await client.connect(auth={"user": "ada"})
            await mailbox.wait_acked(1)
        assert await mailbox.count("ada") == 0


async def test_a_refusing_mailbox_says_so() -> None:
    server, mailbox = mail_server(max_messages=1, overflow="reject")
    async with Lifespan(rooms.RoomsMiddleware(None, server=server)):
        await mailbox.send("ada", "note", 1)
        with pytest.raises(rooms.MailboxFull, match="expected room in the mailbox of 'ada'"):
            await mailbox.send("ada", "note", 2)
    with pytest.raises(rooms.RoomsError, match="expected a running server"):
        await mailbox.send("ada", "note", 3)


async def test_an_emitter_sends_mail_that_a_server_delivers(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    server, mailbox = mail_server(RedisBroker(redis_url), prefix)
    app = rooms.RoomsMiddleware(None, server=server)
    async with Lifespan(app), TestClient(app, lifespan=False) as client:
        client.on("note", lambda text, mail_id: "ok")
        await client.connect(auth={"user": "ada"})
        script_mailbox = rooms.Mailbox()  # same bounds as the server's (the defaults)
        broker = RedisBroker(redis_url)
        async with rooms.Emitter(broker, cluster_prefix=prefix, mailbox=script_mailbox):
            await script_mailbox.send("ada", "note", "from a cron job")
        await mailbox.wait_acked(1)
        assert await mailbox.count("ada") == 0
