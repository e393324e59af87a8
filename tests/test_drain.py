"""A graceful drain: connections close in batches over a window, readiness says so first,
and new sessions go elsewhere meanwhile."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

import rooms
from rooms.engine.session import Session
from rooms.observer import Observer
from rooms.starlette import drain, readiness
from rooms.testing import Lifespan, TestClient

pytestmark = pytest.mark.anyio


class CloseTimes(Observer):
    """When the server closed each session, on its own clock."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.reasons: set[str] = set()

    def session_closed(self, session: Session, reason: str) -> None:
        self.times.append(anyio.current_time())
        self.reasons.add(reason)


def waves(times: list[float], gap: float) -> list[int]:
    """How many closes each wave had: waves are apart by at least ``gap``."""
    sizes: list[int] = []
    last = None
    for t in sorted(times):
        if last is None or t - last >= gap:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


def make_app(window: float, interval: float) -> tuple[rooms.Server, Starlette]:
    server = rooms.Server(recovery=rooms.Recovery())
    app = Starlette(
        routes=[
            Route("/ready", readiness),
            Route("/drain", drain(window=window, interval=interval), methods=["POST"]),
        ],
        middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
    )
    return server, app


async def test_a_thousand_connections_close_in_batches_spread_over_the_window() -> None:
    clients, window, interval = 1000, 2.0, 0.25
    batches = int(window / interval) + 1  # the first at once, the last at the window's end
    server, app = make_app(window, interval)
    closes = CloseTimes()
    server.observe(closes)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://rooms")
    async with Lifespan(app), AsyncExitStack() as stack, http:
        connected = []
        for _ in range(clients):
            client = await stack.enter_async_context(TestClient(app, lifespan=False))
            await client.connect()
            connected.append(client)
        assert (await http.get("/ready")).json()["ready"] is True

        started = anyio.current_time()
        answer: list[httpx.Response] = []

        async def call_drain() -> None:
            answer.append(await http.post("/drain", timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call_drain)
            with anyio.fail_after(10):
                while not server.engine.draining:
                    await anyio.lowlevel.checkpoint()
            # From the first moment: not ready, and a new client is sent away.
            ready = await http.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["draining"] is True
            refused = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
            assert refused.status_code == 403
        assert answer[0].json() == {"closed": clients}

        # Every client saw its connection end.
        with anyio.fail_after(30):
            for client in connected:
                await client.disconnected.wait()
    assert closes.reasons == {"server shutting down"}
    assert len(closes.times) == clients
    # Batch k is closed `interval` after batch k - 1 at the earliest (a sleep never returns
    # early): however busy the machine, the clients never go faster than that schedule.
    first = min(closes.times)
    size = -(-clients // batches)
    late = [
        (n, t - first)
        for n, t in enumerate(sorted(closes.times))
        if t - first < (n // size) * interval - 0.001
    ]
    assert late == []
    assert max(closes.times) - first >= interval * (batches - 1) - 0.001
    assert min(closes.times) >= started


async def test_a_drain_keeps_recoverable_sessions() -> None:
    server, app = make_app(window=0.0, interval=0.1)
    async with Lifespan(app):
        async with TestClient(app, lifespan=False) as client:
            sid = await client.connect()
            pid = client.pids["/"]
            await server.emit("news", 1)
            _, (_, offset) = await client.receive()
            assert await server.drain(window=0.0) == 1
            with anyio.fail_after(10):
                await client.disconnected.wait()
        # Saved before drain() returned: another process (with Redis) could restore it.
        assert server.resume is not None
        restored = await server.resume.store.restore("/", pid, offset)
        assert restored is not None
        assert restored.session.sid == sid


async def test_drain_arguments_are_checked() -> None:
    server = rooms.Server()
    with pytest.raises(ValueError, match="expected window >= 0 and interval > 0"):
        await server.drain(window=1, interval=0)
