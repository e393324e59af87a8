"""The Redis broker, against a real redis-server the tests start on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from rooms.brokers import Hub, MemoryBroker, RedisBroker, broker_from_url
from rooms.exceptions import BrokerError
from rooms.testing import check_broker
from tests.conftest import free_port
from tests.redisserver import RedisServer

pytestmark = pytest.mark.anyio


async def next_message(messages: AsyncIterator[bytes], timeout: float = 5) -> bytes:
    with anyio.fail_after(timeout):
        return await messages.__anext__()


async def test_the_redis_broker_conforms(redis_url: str) -> None:
    await check_broker(lambda: RedisBroker(redis_url))


async def test_a_redis_restart_is_survived(own_redis: RedisServer) -> None:
    async with (
        RedisBroker(own_redis.url, max_backoff=0.2) as a,
        RedisBroker(own_redis.url, max_backoff=0.2) as b,
        b.subscribe("news") as news,
    ):
        await a.publish("news", b"before")
        assert await next_message(news) == b"before"

        own_redis.restart()
        # Nobody has published yet: the reader notices on its own and resubscribes.
        with anyio.fail_after(10):
            while b.reconnects == 0:
                await b.wait_ready()
                await anyio.sleep(0.02)  # polling a counter the reader bumps; bounded above
            await a.wait_ready()

        await a.publish("news", b"after")
        assert await next_message(news) == b"after"
        assert b.ready


async def test_publishing_while_redis_is_down_drops_counts_and_never_blocks(
    own_redis: RedisServer,
) -> None:
    async with RedisBroker(own_redis.url, buffer=8, max_backoff=0.2) as broker:
        own_redis.stop()
        with anyio.fail_after(5):
            for n in range(100):  # never waits on the dead server
                await broker.publish("void", str(n).encode())
        # Held: the queue (8) and at most one batch the writer took from it (8); the rest
        # was dropped and counted, and nobody waited.
        assert broker.dropped >= 100 - 2 * 8

        own_redis.start()
        with anyio.fail_after(10):
            await broker.wait_ready()
            async with broker.subscribe("back") as back:
                # What was queued goes out first; a publish made while the queue is still
                # full is dropped too, so say it until it is heard.
                while True:
                    await broker.publish("back", b"hello again")
                    with anyio.move_on_after(0.5):
                        assert await back.__anext__() == b"hello again"
                        break


async def test_closing_never_hangs_when_redis_is_gone(own_redis: RedisServer) -> None:
    broker = RedisBroker(own_redis.url)
    with anyio.fail_after(5):  # closing included
        async with broker, broker.subscribe("c"):
            own_redis.stop()
            await broker.publish("c", b"into the void")
    with pytest.raises(BrokerError, match="expected an open broker"):
        await broker.publish("c", b"x")


async def test_an_unreachable_redis_fails_at_start_and_says_where() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(BrokerError, match=f"expected a Redis server at {url}"):
        async with RedisBroker(url, connect_timeout=2):
            pass


async def test_commands_run_on_the_brokers_client(redis_url: str) -> None:
    async with RedisBroker(redis_url) as broker:
        await broker.execute(lambda client: client.set("rooms-test-key", b"value"))
        assert await broker.execute(lambda client: client.get("rooms-test-key")) == b"value"


async def test_subscriptions_share_one_redis_subscription(redis_url: str) -> None:
    async with (
        RedisBroker(redis_url) as broker,
        broker.subscribe("shared") as first,
        broker.subscribe("shared") as second,
    ):
        await broker.publish("shared", b"both")
        assert await next_message(first) == b"both"
        assert await next_message(second) == b"both"
        counts = await broker.execute(lambda client: client.pubsub_numsub("shared"))
        assert counts == [(b"shared", 1)]


def test_redis_urls_choose_the_redis_broker() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://example:6380", "unix:///tmp/redis.sock"):
        broker = broker_from_url(url)
        assert isinstance(broker, RedisBroker)
        assert broker.url == url
    named = broker_from_url("memory://lobby")
    assert isinstance(named, MemoryBroker)
    again = broker_from_url("memory://lobby")
    assert isinstance(again, MemoryBroker)
    assert named.hub is again.hub  # one name, one hub: servers on it form a cluster
    assert isinstance(broker_from_url("memory://").hub, Hub)


def test_a_missing_redis_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r'pip install "rooms\[redis\]"'):
        broker_from_url("redis://127.0.0.1:6379/0")


async def test_a_closed_broker_can_be_opened_again_and_says_when_closed(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    for _ in range(2):
        async with broker, broker.subscribe("again") as messages:
            await broker.publish("again", b"hi")
            assert await next_message(messages) == b"hi"
    with pytest.raises(BrokerError, match="expected an open broker"):
        await broker.execute(lambda client: client.ping())
