"""Clusters in one process: several servers on one broker backend behave like processes
sharing it. Each test gets a ``cluster`` factory; the same tests run on every broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import rooms
from rooms.brokers import Broker, Hub, MemoryBroker
from rooms.brokers.redis import RedisBroker
from rooms.cluster import Node
from rooms.testing import Lifespan, TestClient

BrokerFactory = Callable[[], Broker]


@pytest.fixture(params=["memory", "redis"])
def make_broker(request: pytest.FixtureRequest) -> Iterator[BrokerFactory]:
    """New brokers on one backend: one per simulated process."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        yield lambda: RedisBroker(url)
        return
    hub = Hub()
    yield lambda: MemoryBroker(hub=hub)
    assert hub.channels == {}, "every subscription is cleaned up when its server stops"


class Severable:
    """A broker wrapper that can cut its process off, as a crash would: after ``sever()``
    nothing goes out and nothing comes in, and no goodbye is ever said. (Also a broker
    that is not one of ours, proving the protocol is all the cluster needs.)"""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.severed = False

    @property
    def dropped(self) -> int:
        return self.inner.dropped

    async def __aenter__(self) -> Severable:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)

    async def publish(self, channel: str, message: bytes) -> None:
        if not self.severed:
            await self.inner.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self.inner.subscribe(channel) as messages:
            yield (message async for message in messages if not self.severed)


class Cluster:
    """Servers of one cluster, each running in a task of its own behind its middleware."""

    def __init__(self, servers: list[rooms.Server], tg: anyio.abc.TaskGroup) -> None:
        self.servers = servers
        self.apps = [rooms.RoomsMiddleware(None, server=server) for server in servers]
        self._tg = tg
        self._stops: list[anyio.Event] = []
        self._stopped: list[anyio.Event] = []
        self.clients = AsyncExitStack()

    async def start(self) -> None:
        for app in self.apps:
            stop, stopped = anyio.Event(), anyio.Event()
            self._stops.append(stop)
            self._stopped.append(stopped)
            await self._tg.start(_serve, app, stop, stopped)
        for server in self.servers:
            assert server.node is not None
            await server.node.wait_for_peers(len(self.servers) - 1)

    async def client(self, index: int, auth: dict[str, Any] | None = None) -> TestClient:
        """A client connected to the main namespace of server ``index``."""
        client = await self.clients.enter_async_context(
            TestClient(self.apps[index], lifespan=False)
        )
        await client.connect(auth=auth)
        return client

    async def stop(self, index: int) -> None:
        """Stop one server cleanly (it says goodbye to the others)."""
        self._stops[index].set()
        with anyio.fail_after(10):
            await self._stopped[index].wait()

    def node(self, index: int) -> Node:
        node = self.servers[index].node
        assert node is not None
        return node

    def sever(self, index: int) -> None:
        """Cut server ``index`` off the cluster, as if its process died."""
        broker = self.node(index).broker
        assert isinstance(broker, Severable)
        broker.severed = True


async def _serve(
    app: rooms.RoomsMiddleware,
    stop: anyio.Event,
    stopped: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    try:
        async with Lifespan(app):
            task_status.started()
            await stop.wait()
    finally:
        stopped.set()


@pytest.fixture
def cluster(make_broker: BrokerFactory) -> Callable[..., Any]:
    """``async with cluster(3, setup=...) as c``: three servers that know each other;
    ``setup(server)`` registers handlers on each before it starts."""

    @asynccontextmanager
    async def start(
        count: int, setup: Callable[[rooms.Server], None] | None = None, **options: Any
    ) -> AsyncIterator[Cluster]:
        options.setdefault("heartbeat_interval", 0.5)
        servers = [rooms.Server(broker=Severable(make_broker()), **options) for _ in range(count)]
        for server in servers:
            if setup is not None:
                setup(server)
        async with anyio.create_task_group() as tg:
            running = Cluster(servers, tg)
            try:
                await running.start()
                yield running
            finally:
                await running.clients.aclose()
                for stop in running._stops:
                    stop.set()
                for stopped in running._stopped:
                    with anyio.fail_after(10):
                        await stopped.wait()

    return start
