"""Connection state recovery stores, memory and Redis, held to the same rules; and a large
replay in process. (The real socket.io-client drives it in tests/test_recovery_js.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

import rooms
from rooms.brokers.redis import RedisBroker
from rooms.protocol.cluster import BroadcastOptions
from rooms.recovery import MemoryStore, SavedSession, Store, StoredPacket
from rooms.recovery.redis import RedisStore
from rooms.recovery.resume import Resume
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio

NEWS = BroadcastOptions(rooms=frozenset({"news"}))
SPORT = BroadcastOptions(rooms=frozenset({"sport"}))
ALL_BUT_NEWS = BroadcastOptions(except_rooms=frozenset({"news"}))
ADA = SavedSession("sid-ada", "pid-ada", frozenset({"sid-ada", "news"}), {"name": "ada"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


StoreFactory = Callable[[float, int], Any]  # (max age, max packets) -> async CM of a Store


@pytest.fixture(params=["memory", "redis"])
def open_store(request: pytest.FixtureRequest) -> StoreFactory:
    @asynccontextmanager
    async def memory(max_age: float, max_packets: int) -> AsyncIterator[Store]:
        yield MemoryStore(Clock(), max_age, max_packets)

    @asynccontextmanager
    async def redis(max_age: float, max_packets: int) -> AsyncIterator[Store]:
        url = request.getfixturevalue("redis_url")
        prefix = f"test-{uuid.uuid4().hex}"  # keys of its own
        async with RedisBroker(url) as broker:
            yield RedisStore(broker, prefix, Clock(), max_age, max_packets)

    return memory if request.param == "memory" else redis


async def test_a_restore_returns_the_session_and_what_it_missed_in_order(
    open_store: StoreFactory,
) -> None:
    async with open_store(60, 1000) as store:
        seen = await store.append("/", NEWS, '2["tick",0]', ())
        await store.save("/", ADA)
        sent = [
            await store.append("/", NEWS, '2["tick",1]', ()),
            await store.append("/", SPORT, '2["score",1]', ()),  # not ada's room
            await store.append("/", ALL_BUT_NEWS, '2["promo"]', ()),  # ada is excluded
            await store.append("/", BroadcastOptions(), '2["all"]', ()),
            await store.append("/", NEWS, '51-["pic",{"_placeholder":true,"num":0}]', (b"\x00",)),
        ]
        restored = await store.restore("/", "pid-ada", seen)
        assert restored is not None
        assert restored.session == ADA
        missed = restored.missed
        assert [p.offset for p in missed] == [sent[0], sent[3], sent[4]]
        assert missed[2].attachments == (b"\x00",)
        # The offset travels as the last argument of each replayed event.
        assert missed[0].frames()[0] == f'42["tick",1,"{sent[0]}"]'


async def test_a_session_is_restored_once(open_store: StoreFactory) -> None:
    async with open_store(60, 1000) as store:
        offset = await store.append("/", NEWS, '2["tick",0]', ())
        await store.save("/", ADA)
        assert await store.restore("/", "pid-ada", offset) is not None
        assert await store.restore("/", "pid-ada", offset) is None


@pytest.mark.parametrize("pid, offset", [("pid-ada", "0-1"), ("pid-ada", "bogus"), ("nope", None)])
async def test_an_unknown_session_or_offset_restores_nothing(
    open_store: StoreFactory, pid: str, offset: str | None
) -> None:
    async with open_store(60, 1000) as store:
        real = await store.append("/", NEWS, '2["tick",0]', ())
        await store.save("/", ADA)
        assert await store.restore("/", pid, offset or real) is None


async def test_a_session_is_restored_only_in_its_namespace(open_store: StoreFactory) -> None:
    async with open_store(60, 1000) as store:
        offset = await store.append("/admin", NEWS, '2["tick",0]', ())
        await store.save("/", ADA)
        assert await store.restore("/admin", "pid-ada", offset) is None


async def test_past_the_log_bound_the_oldest_packets_go_and_their_offsets_restore_nothing(
    open_store: StoreFactory,
) -> None:
    async with open_store(60, 10) as store:
        first = await store.append("/", NEWS, '2["tick",0]', ())
        for n in range(1, 500):
            last = await store.append("/", NEWS, f'2["tick",{n}]', ())
        await store.save("/", ADA)
        assert await store.restore("/", "pid-ada", first) is None  # trimmed: a fresh socket
        await store.save("/", ADA)
        restored = await store.restore("/", "pid-ada", last)
        assert restored is not None and restored.missed == []


async def test_memory_sessions_and_packets_expire_after_the_window() -> None:
    clock = Clock()
    store = MemoryStore(clock, 120, 1000)
    offset = await store.append("/", NEWS, '2["tick",0]', ())
    await store.save("/", ADA)
    clock.now += 121
    assert await store.restore("/", "pid-ada", offset) is None
    await store.save("/", ADA)
    clock.now += 60
    assert await store.restore("/", "pid-ada", offset) is None  # the packet aged out


async def test_redis_sessions_expire_after_the_window(redis_url: str) -> None:
    async with RedisBroker(redis_url) as broker:
        store = RedisStore(broker, "expiry", Clock(), 120, 1000)
        await store.save("/", ADA)
        ttl = await broker.execute(lambda client: client.pttl("expiry#recovery#session#pid-ada"))
        assert 110_000 < ttl <= 120_000  # Redis forgets it by itself


# --------------------------------------------------------------------------- in process


class NewsServer:
    """A server with recovery whose fresh sockets join "news"; ``gone`` is set when one
    leaves, and ``reasons`` says why."""

    def __init__(self, **options: Any) -> None:
        self.server = server = rooms.Server(**options)
        self.app = rooms.RoomsMiddleware(None, server=server)
        self.gone = anyio.Event()
        self.reasons: list[str] = []

        @server.on("connect")
        async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
            if not socket.recovered:
                await socket.join("news")

        @server.on("disconnect")
        def disconnect(socket: rooms.Socket, reason: str) -> None:
            self.reasons.append(reason)
            self.gone.set()

    async def wait_saved(self) -> None:
        with anyio.fail_after(5):
            await self.gone.wait()
            await self.server.wait_sessions_saved()


async def test_ten_thousand_missed_packets_are_replayed_in_order() -> None:
    news = NewsServer(recovery=rooms.Recovery(max_packets=20_000))
    server, app = news.server, news.app
    async with Lifespan(app):
        async with TestClient(app, lifespan=False) as first:
            sid = await first.connect()
            await server.to("news").emit("tick", -1)
            _, args = await first.receive()
            pid = first.pids["/"]
            offset = args[-1]
        await news.wait_saved()
        assert news.reasons == ["transport close"]  # the websocket closed: recoverable
        for n in range(10_000):
            await server.to("news").emit("tick", n)
        async with TestClient(app, lifespan=False) as again:
            assert await again.connect(auth={"pid": pid, "offset": offset}) == sid
            got = [(await again.receive())[1][0] for _ in range(10_000)]
        assert got == list(range(10_000))


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_broadcasts_from_an_emitter_are_recovered_too(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if backend == "redis" else f"memory://{uuid.uuid4()}"
    prefix = f"test-{uuid.uuid4().hex}"
    recovery = rooms.Recovery()
    news = NewsServer(broker=url, cluster_prefix=prefix, recovery=recovery)
    app = news.app
    async with (
        Lifespan(app),
        rooms.Emitter(url, cluster_prefix=prefix, recovery=recovery) as emitter,
        TestClient(app, lifespan=False) as observer,  # stays: shows what reached the server
    ):
        await observer.connect()
        async with TestClient(app, lifespan=False) as first:
            sid = await first.connect()
            await emitter.to("news").emit("tick", 0)
            _, (_, offset) = await first.receive()
            pid = first.pids["/"]
        await news.wait_saved()
        await emitter.to("news").emit("tick", 1)  # while away
        await emitter.to("news").emit("tick", 2)
        assert [(await observer.receive())[1][0] for _ in range(3)] == [0, 1, 2]
        async with TestClient(app, lifespan=False) as again:
            assert await again.connect(auth={"pid": pid, "offset": offset}) == sid
            got = [await again.receive() for _ in range(2)]
        assert [(event, args[:-1]) for event, args in got] == [("tick", [1]), ("tick", [2])]


async def test_with_redis_every_process_delivers_in_the_logs_order(redis_url: str) -> None:
    """Two processes broadcasting at once: a client sees offsets only ever growing (so a
    recovery from its last offset can neither repeat nor skip one)."""
    prefix = f"test-{uuid.uuid4().hex}"
    servers = [
        rooms.Server(
            broker=RedisBroker(redis_url), cluster_prefix=prefix, recovery=rooms.Recovery()
        )
        for _ in range(2)
    ]
    for server in servers:

        @server.on("connect")
        async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
            await socket.join("news")

    apps = [rooms.RoomsMiddleware(None, server=server) for server in servers]
    async with Lifespan(apps[0]), Lifespan(apps[1]), TestClient(apps[0], lifespan=False) as ada:
        await ada.connect()

        async def burst(server: rooms.Server, name: str) -> None:
            for n in range(50):
                await server.to("news").emit("tick", name, n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(burst, servers[0], "a")
            tg.start_soon(burst, servers[1], "b")
        got = [(await ada.receive())[1] for _ in range(100)]
    offsets = [tuple(int(part) for part in args[-1].split("-")) for args in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == 100
    for name in "ab":  # and each process's own order
        assert [args[1] for args in got if args[0] == name] == list(range(50))


async def test_with_redis_a_local_broadcast_reaches_this_process_only(redis_url: str) -> None:
    """``server.local`` with a shared log: logged (a client of this process can recover it
    anywhere), but delivered by this process alone, not by every process reading the log."""
    prefix = f"test-{uuid.uuid4().hex}"
    servers = [
        rooms.Server(
            broker=RedisBroker(redis_url), cluster_prefix=prefix, recovery=rooms.Recovery()
        )
        for _ in range(2)
    ]
    apps = [rooms.RoomsMiddleware(None, server=server) for server in servers]
    async with (
        Lifespan(apps[0]),
        Lifespan(apps[1]),
        TestClient(apps[0], lifespan=False) as here,
        TestClient(apps[1], lifespan=False) as there,
    ):
        await here.connect()
        await there.connect()
        await servers[0].local.emit("mine", 1)
        await servers[0].emit("everyone", 2)  # after the local one, in the log's order
        assert (await here.receive())[0] == "mine"
        assert (await here.receive())[0] == "everyone"
        assert (await there.receive())[0] == "everyone"  # and not "mine" before it


# --------------------------------------------------------------------------- taking over


async def test_a_client_back_before_its_drop_was_noticed_takes_its_socket_over() -> None:
    """The old connection still looks alive (nothing told the server it died) when the
    client comes back with its pid: the old transport is cut as a transport close, and the
    new connection is that socket, with what the old one was sent in vain."""
    news = NewsServer(recovery=rooms.Recovery())
    server, app = news.server, news.app
    async with Lifespan(app), TestClient(app, lifespan=False) as old:
        sid = await old.connect()
        await server.to("news").emit("tick", 0)
        _, (_, offset) = await old.receive()
        pid = old.pids["/"]
        await server.to("news").emit("tick", 1)  # into the dead connection
        async with TestClient(app, lifespan=False) as new:
            assert await new.connect(auth={"pid": pid, "offset": offset}) == sid
            await old.wait_disconnected()
            assert news.reasons == ["transport close"]
            assert server.main.sockets[sid].recovered
            await server.to("news").emit("tick", 2)
            got = [(await new.receive())[1] for _ in range(2)]
            assert [args[:-1] for args in got] == [[1], [2]]  # missed, then live: once each
        assert server.resume is not None and server.resume.taken_over == 1


async def test_a_client_back_on_another_process_takes_its_socket_over(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    a, b = (
        NewsServer(broker=RedisBroker(redis_url), cluster_prefix=prefix, recovery=rooms.Recovery())
        for _ in range(2)
    )
    async with Lifespan(a.app), Lifespan(b.app), TestClient(a.app, lifespan=False) as old:
        assert a.server.node is not None and b.server.node is not None
        await b.server.node.wait_for_peers(1)
        sid = await old.connect()
        await a.server.to("news").emit("tick", 0)
        _, (_, offset) = await old.receive()
        await a.server.to("news").emit("tick", 1)
        async with TestClient(b.app, lifespan=False) as new:
            assert await new.connect(auth={"pid": old.pids["/"], "offset": offset}) == sid
            await old.wait_disconnected()
            assert a.reasons == ["transport close"] and b.server.main.sockets[sid].recovered
            assert sid not in a.server.main.sockets
            await a.server.to("news").emit("tick", 2)  # from the old process: reaches b's
            got = [(await new.receive())[1] for _ in range(2)]
            assert [args[:-1] for args in got] == [[1], [2]]


@dataclass
class Returning:
    """A socket as recovery sees it (rooms.recovery.resume.Resumable), for Resume alone."""

    id: str = "sid-new"
    pid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False
    rooms: set[str] = field(default_factory=set)
    session: Any = None

    def on_leave(self, hook: Callable[[Any, str], None]) -> None:
        pass

    def cut(self, reason: str = "forced close") -> None:
        pass


class SlowSaves(MemoryStore):
    """A store whose saves wait for ``release`` (a Redis that is slow to answer)."""

    def __init__(self) -> None:
        super().__init__(Clock(), 120, 100)
        self.release = anyio.Event()

    async def save(self, nsp: str, session: SavedSession) -> None:
        await self.release.wait()
        await super().save(nsp, session)


async def test_a_restore_that_arrives_before_the_save_finished_waits_for_it() -> None:
    store = SlowSaves()
    offset = await store.append("/", NEWS, '2["tick",0]', ())
    outcome: list[Any] = []
    async with anyio.create_task_group() as tg:
        resume = Resume(rooms.Recovery(), store, tg.start_soon)
        resume.keep("/", ADA)  # the old socket dropped; its save is under way

        async def come_back() -> None:
            attempt = await resume.attempt("/", Returning(), {"pid": "pid-ada", "offset": offset})
            outcome.append(attempt.restored)

        tg.start_soon(come_back)
        await anyio.wait_all_tasks_blocked()
        assert outcome == []  # waiting for the save, not answered "unknown"
        store.release.set()
    (restored,) = outcome
    assert restored is not None and restored.session == ADA


class Outbox:
    """A session that takes every frame (rooms.recovery.resume.Outbox)."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def wait_room(self, frames: Any) -> bool:
        return True

    def send_many(self, frames: Any, volatile: bool = False, size: int | None = None) -> bool:
        self.frames.extend(frames)
        return True


class LaggingReader(MemoryStore):
    """A shared log (like Redis streams) whose reader here has handed on only ``handed``."""

    delivers = True

    def __init__(self) -> None:
        super().__init__(Clock(), 120, 100)
        self.handed: set[str] = set()

    def delivered(self, nsp: str, offset: str) -> bool:
        return offset in self.handed


async def test_with_a_shared_log_a_recovered_socket_joins_once_its_replay_was_delivered_here() -> (
    None
):
    """Otherwise the packets it just replayed from the log would reach it again, live, when
    this process's reader (behind the log) delivers them."""
    store = LaggingReader()
    first = await store.append("/", NEWS, '2["tick",0]', ())
    await store.save("/", ADA)
    missed = [await store.append("/", NEWS, f'2["tick",{n}]', ()) for n in (1, 2)]
    socket = Returning(session=Outbox())
    joined: list[set[str]] = []
    async with anyio.create_task_group() as tg:
        resume = Resume(rooms.Recovery(), store, tg.start_soon)
        attempt = await resume.attempt("/", socket, {"pid": "pid-ada", "offset": first})
        assert attempt.restored is not None

        async def admit() -> None:
            join = lambda _, rooms: joined.append(set(rooms))  # noqa: E731
            assert await attempt.admit(socket, join, lambda sid: False)

        tg.start_soon(admit)
        await anyio.wait_all_tasks_blocked()
        assert len(socket.session.frames) == 2 and joined == []  # replayed; not joined yet
        for n, offset in enumerate(missed, 1):  # the reader catches up: each seen here
            store.handed.add(offset)
            resume.seen("/", StoredPacket(offset, NEWS, f'2["tick",{n}]'))
    assert joined == [{"sid-ada", "news"}]
    assert len(socket.session.frames) == 2  # each once


async def test_a_restore_cancelled_while_it_waits_captures_nothing_more() -> None:
    """Its connection went while it waited for a save: what the namespace sends next must
    not pile up in a capture nobody will read."""
    store = SlowSaves()
    offset = await store.append("/", NEWS, '2["tick",0]', ())
    async with anyio.create_task_group() as tg:
        resume = Resume(rooms.Recovery(), store, tg.start_soon)
        resume.keep("/", ADA)
        tg.start_soon(resume.attempt, "/", Returning(), {"pid": "pid-ada", "offset": offset})
        await anyio.wait_all_tasks_blocked()
        assert resume._captures  # capturing while it waits for the save
        tg.cancel_scope.cancel()  # the attempt (and the save) cancelled
    assert resume._captures == {}
