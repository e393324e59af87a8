"""Memory follows connections, not history (DESIGN §6, issue 10), against a real server
process: tests/apps/edges.py under uvicorn (asyncio) and hypercorn (trio), attacked over the
wire by tests/rawclient.py.

Each scenario asserts structure, not RSS: whatever the attack, /stats?gc=1 (sessions, queued
frames and bytes, namespaces, sockets, rooms) comes back to its baseline within a deadline.
Every wait polls /stats under a deadline; every attack is bounded in count and time.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import SERVERS, LiveServer, SharedServer
from tests.rawclient import Closed, SocketIO, placeholders, polling_cycle

APP = "tests.apps.edges:app"
PING_INTERVAL = 1.0  # the app's defaults (ROOMS_PING_INTERVAL / ROOMS_PING_TIMEOUT)
PING_TIMEOUT = 2.0
ATTACHMENT_TIMEOUT = 10.0  # rooms.Limits default; the app keeps it
MAX_PAYLOAD = 1_000_000  # rooms.Server default; the app keeps it
MAX_OUTBOX_BYTES = 4 * 1024 * 1024
ENV = {"ROOMS_MAX_OUTBOX_BYTES": str(MAX_OUTBOX_BYTES)}
VIOLATION_CLOSE, TOO_BIG = 1000, 1009  # see tests/edges/test_input.py
# What a busy machine may add to a deadline the server promises (both cores may be taken by
# a parallel test run).
SLACK = 5.0

Stats = dict[str, Any]


# ---------------------------------------------------------------------------- the server


@pytest.fixture(params=list(SERVERS), scope="module")
def edges_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    """One server per kind for the module (a fresh one costs a second or more)."""
    with SharedServer(str(request.param), APP, tmp_path_factory, env=ENV) as shared:
        yield shared


@pytest.fixture
def edges(edges_servers: SharedServer, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """The edges app, with no session when the test starts: one that a failed test left
    with sessions is replaced, so a test is never blamed for the one before it (a server
    that died is replaced by SharedServer itself)."""
    server = edges_servers.server
    if server is not None and not server.died() and not _is_clean(server):
        server.stop()
        edges_servers.server = None
    yield from edges_servers.lend(request)


def _is_clean(server: LiveServer) -> bool:
    """Whether the server holds no session, within a few seconds."""
    deadline = time.monotonic() + 3
    while True:
        try:
            if httpx.get(server.url + "/stats?gc=1", timeout=2).json()["sessions"] == 0:
                return True
        except httpx.HTTPError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # polling a deadline, not synchronising


class Watch:
    """/stats?gc=1 of a live server, with waits under deadlines."""

    def __init__(self, server: LiveServer, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http

    async def get(self) -> Stats:
        try:
            response = await self.http.get(self.server.url + "/stats?gc=1")
        except httpx.HTTPError as exc:
            raise AssertionError(
                f"expected /stats to answer, got {exc!r}; server log:\n{self.server.log()}"
            ) from exc
        stats: Stats = response.json()
        return stats

    async def until(self, condition: Callable[[Stats], bool], timeout: float, what: str) -> Stats:
        """Poll until ``condition`` holds; fails with the last stats after ``timeout``."""
        deadline = anyio.current_time() + timeout
        while True:
            stats = await self.get()
            if condition(stats):
                return stats
            if anyio.current_time() > deadline:
                raise AssertionError(f"expected {what} within {timeout} s, got {stats}")
            await anyio.sleep(0.05)


STRUCTURE = ("sessions", "sockets", "rooms", "namespaces", "queued_frames", "queued_bytes")


def back_to(baseline: Stats) -> Callable[[Stats], bool]:
    """The structure is what it was at ``baseline`` (the controls' own)."""
    return lambda stats: all(stats[key] == baseline[key] for key in STRUCTURE)


def run(scenario: Callable[[LiveServer], Awaitable[None]], server: LiveServer) -> None:
    anyio.run(scenario, server)  # the client side: one event loop; the server is elsewhere


@asynccontextmanager
async def watching(server: LiveServer) -> AsyncIterator[Watch]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield Watch(server, http)


@asynccontextmanager
async def control(server: LiveServer) -> AsyncIterator[SocketIO]:
    """A well-behaved client that keeps reading (and ponging) for the whole scenario."""
    client = await SocketIO.open(server.port)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.serve)
            yield client
            tg.cancel_scope.cancel()
    finally:
        await client.ws.abort()


async def keep_echoing(client: SocketIO, stop: anyio.Event, answered: list[float]) -> None:
    """Echo every 50 ms until ``stop``; each answer must come within 5 s."""
    n = 0
    while not stop.is_set():
        n += 1
        started = anyio.current_time()
        assert await client.call("echo", n, timeout=5) == [n]
        answered.append(anyio.current_time() - started)
        with anyio.move_on_after(0.05):  # pacing, not synchronisation
            await stop.wait()


# ---------------------------------------------------------------------------- 1. attachments


async def _offend(
    server: LiveServer, frames: list[str | bytes], pong: bool, timeout: float
) -> int | None:
    """CONNECT, send ``frames``, then read until the server ends the connection (answering
    pings if ``pong``); returns its close code (None: dropped without a close frame)."""
    client = await SocketIO.open(server.port)
    try:
        with anyio.fail_after(timeout):
            try:
                for frame in frames:
                    await client.ws.send(frame)
                while True:
                    data = await client.ws.receive()
                    if data == "2" and pong:
                        await client.ws.send("3")
            except Closed as closed:
                return closed.code
            except (anyio.BrokenResourceError, OSError):
                return None  # dropped while we were still sending
    finally:
        await client.ws.abort()


def announce(count: int | str, nsp: str = "") -> str:
    """A binary EVENT announcing ``count`` attachments (``count`` placeholders if a number)."""
    args = placeholders(count) if isinstance(count, int) else '{"_placeholder":true,"num":0}'
    return f'45{count}-{nsp}["echo",{args}]'


def attachment_offenders() -> list[tuple[str, list[str | bytes], bool, set[int | None]]]:
    """(kind, frames, answers pings, acceptable close codes): about 200 hostile clients."""
    offenders: list[tuple[str, list[str | bytes], bool, set[int | None]]] = []
    for n in range(100):  # fewer than announced, ponging: only the attachment deadline ends them
        count = 10 if n % 2 else 1
        frames: list[str | bytes] = [announce(count), *(b"a" * 1000 for _ in range(n % count))]
        offenders.append(("fewer, ponging", frames, True, {VIOLATION_CLOSE}))
    for _ in range(20):  # fewer than announced, silent: the ping timeout may come first
        offenders.append(
            ("fewer, silent", [announce(10), b"a" * 1000], False, {None, VIOLATION_CLOSE})
        )
    for n in range(20):
        offenders.append(("11 announced", [announce(11 + n)], True, {VIOLATION_CLOSE}))
    for _ in range(10):
        offenders.append(("10^9 announced", [announce("1000000000")], True, {VIOLATION_CLOSE}))
        offenders.append(
            ("5000 digits", ["45" + "9" * 5000 + '-["echo"]'], True, {VIOLATION_CLOSE})
        )
        offenders.append(("not connected", [announce(1, "/dyn-7,")], True, {VIOLATION_CLOSE}))
    half = b"b" * (MAX_PAYLOAD // 2 + 100_000)
    for _ in range(10):  # 1.2 MB across two attachments: past the packet's byte bound
        offenders.append(
            ("bytes past max_payload", [announce(2), half, half], True, {VIOLATION_CLOSE})
        )
        # One frame past max_payload (the ASGI server's own limit is 16 MiB).
        offenders.append(("frame past max_payload", [announce(1), half + half], True, {TOO_BIG}))
    return offenders


async def attachment_flood(server: LiveServer) -> None:
    offenders = attachment_offenders()
    deadline = ATTACHMENT_TIMEOUT + PING_TIMEOUT + 2 * SLACK
    closes: dict[str, list[int | None]] = {kind: [] for kind, *_ in offenders}
    answered: list[float] = []
    async with watching(server) as watch, control(server) as client:
        baseline = await watch.until(lambda s: s["sessions"] == 1, SLACK, "only the control")

        async def offend(kind: str, frames: list[str | bytes], pong: bool) -> None:
            closes[kind].append(await _offend(server, frames, pong, deadline))

        stop = anyio.Event()
        async with anyio.create_task_group() as echoing:
            echoing.start_soon(keep_echoing, client, stop, answered)
            async with anyio.create_task_group() as attack:
                for kind, frames, pong, _ in offenders:
                    attack.start_soon(offend, kind, frames, pong)
            stop.set()
        ended = await watch.until(back_to(baseline), SLACK, f"the baseline {baseline}")
    for kind, _, _, expected in offenders:
        assert set(closes[kind]) <= expected, f"{kind}: expected closes {expected}, got {closes}"
    assert answered, "the control's echo never answered"
    assert ended["namespaces"] == ["/"]


@pytest.mark.timeout(60)
def test_an_attachment_flood_leaves_nothing_behind(edges: LiveServer) -> None:
    run(attachment_flood, edges)


# ---------------------------------------------------------------------------- 2. slow consumer


FLOOD_SIZE = 50_000
FLOOD_BATCH = 10  # messages per flood call: small, so the overflow is seen close to when
MAX_FLOODED = 2000  # 100 MB at most, whatever the kernel buffers


async def slow_consumer(server: LiveServer) -> None:
    room = "slow"
    async with watching(server) as watch:
        # A receive buffer of a few KiB (the kernel doubles it): the server's sends stall
        # almost at once instead of filling megabytes of socket buffers.
        slow = await SocketIO.open(server.port, rcvbuf=4096)
        flooder: SocketIO | None = None
        try:
            assert await slow.call_inline("join", room) == [sorted([room, slow.sid])]
            flooder = await SocketIO.open(server.port)
            await flooder.call_inline("join", room)
            received = 0

            def count(args: list[Any]) -> None:
                nonlocal received
                assert args[0] == "flood" and len(args[2]) == FLOOD_SIZE
                received += 1

            flooder.on_event = count
            baseline = await watch.until(lambda s: s["sockets"] == 2, SLACK, "both clients")
            assert baseline["sessions"] == 2
            # The slow client never reads again from here on.
            overflowed_at: float | None = None
            flooded = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(flooder.serve)

                async def flood() -> None:
                    nonlocal flooded
                    with anyio.fail_after(60):
                        while overflowed_at is None and flooded < MAX_FLOODED:
                            [done] = await flooder.call("flood", room, FLOOD_SIZE, FLOOD_BATCH)
                            flooded += done

                async with anyio.create_task_group() as flooding:
                    flooding.start_soon(flood)
                    # The overflow closes the slow socket at once: sockets drops to 1 while
                    # its session waits (queue released) for the close deadline.
                    closed = await watch.until(
                        lambda s: s["sockets"] == 1, 60, "the slow consumer closed"
                    )
                    overflowed_at = anyio.current_time()
                # The overflow needed more than the bound (the kernel buffers hold a few MB
                # too), and it released the slow session's 4 MiB at once: what is still
                # queued is the reading flooder's, at most one batch and its ack.
                assert flooded * FLOOD_SIZE > MAX_OUTBOX_BYTES
                assert closed["sessions"] == 2, "expected the slow session closing, not gone"
                assert closed["queued_bytes"] <= (FLOOD_BATCH + 1) * (FLOOD_SIZE + 100)
                # Aborted at its close deadline (ping_timeout) though it never reads; the
                # wait starts when the overflow was seen, a poll (50 ms) after it happened.
                gone = await watch.until(
                    lambda s: s["sessions"] == 1, PING_TIMEOUT + SLACK, "the slow session gone"
                )
                assert (gone["queued_frames"], gone["queued_bytes"]) == (0, 0)
                assert (gone["sockets"], gone["rooms"]) == (1, 2)  # the flooder: its sid + room
                assert not slow.ws.ended  # we still hold the TCP connection, unread
                # The flooder got every message of every batch (each ack follows its batch
                # on the wire), and still answers.
                assert received == flooded
                assert await flooder.call("echo", "unaffected") == ["unaffected"]
                tg.cancel_scope.cancel()
            # The ASGI server still holds the TCP connection, waiting to flush what its
            # socket buffer holds (neither uvicorn nor hypercorn can be told to abort it);
            # once the client reads, that ends too.
            with anyio.fail_after(10), suppress(Closed):
                while True:
                    await slow.ws.receive()
            assert "closing it as a slow consumer" in server.log()
        finally:
            await slow.ws.abort()
            if flooder is not None:
                await flooder.ws.abort()
        await watch.until(lambda s: s["sessions"] == 0, SLACK, "no session")


@pytest.mark.timeout(60)
def test_a_slow_consumer_is_released_and_finished_though_it_never_reads(
    edges: LiveServer,
) -> None:
    run(slow_consumer, edges)


# ---------------------------------------------------------------------------- 3. churn


CYCLES = 2000
CONCURRENCY = 32


async def churn(server: LiveServer) -> None:
    async with watching(server) as watch, control(server) as client:
        baseline = await watch.until(lambda s: s["sessions"] == 1, SLACK, "only the control")
        done = 0

        async def cycle(n: int) -> None:
            room = f"room-{n}"  # one room per cycle: a leaked index entry would show
            if n % 4 == 3:
                await polling_cycle(watch.http, server.url, room)
                return
            sio = await SocketIO.open(server.port)
            try:
                await sio.call_inline("join", room)
                if n % 3 == 1:
                    await sio.ws.send("41")  # a namespace DISCONNECT first, as clients do
            finally:
                if n % 3 == 2:
                    await sio.ws.abort()  # reset, no close frame
                else:
                    await sio.ws.close()

        async def worker(first: int) -> None:
            nonlocal done
            for n in range(first, CYCLES, CONCURRENCY):
                await cycle(n)
                done += 1

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for first in range(CONCURRENCY):
                    tg.start_soon(worker, first)
        assert done == CYCLES
        await watch.until(back_to(baseline), SLACK, f"the baseline {baseline}")
        assert await client.call("echo", "after") == ["after"]


@pytest.mark.timeout(90)
def test_churn_leaves_nothing_behind(edges: LiveServer) -> None:
    run(churn, edges)


# ---------------------------------------------------------------------------- 4. namespaces


REFUSED = 2000
CONNECTIONS = 20
LONG_NAME = "/dyn-" + "1" * 50_000


async def namespace_flood(server: LiveServer) -> None:
    async with watching(server) as watch:
        baseline = await watch.until(lambda s: s["sessions"] == 0, SLACK, "no session")
        assert baseline["namespaces"] == ["/"]
        refused = 0

        async def refuse_many(first: int) -> None:
            """CONNECTs to fresh /dyn-N in a pipeline, each answered CONNECT_ERROR; then one
            admitted (auth member) that disconnects, so the namespace lives and goes."""
            nonlocal refused
            names = [f"/dyn-{n}" for n in range(first, REFUSED, CONNECTIONS)]
            sio = await SocketIO.open(server.port, connect=False)
            try:
                for name in names:
                    await sio.ws.send(f"40{name},")
                for name in names:
                    reply = await sio.next_packet()
                    assert reply == f'4{name},{{"message":"members only"}}', reply[:120]
                    refused += 1
                member = f"/dyn-{REFUSED + first}"
                await sio.ws.send(f"40{member}," + json.dumps({"member": True}))
                reply = await sio.next_packet()
                assert reply.startswith(f"0{member},{{"), reply[:120]
                await sio.ws.send(f"41{member},")
            finally:
                await sio.ws.close()

        async def too_long() -> int | None:
            """A namespace name of 50 KB: past the 256-character bound, so the connection
            is closed (nothing is looked up or matched for it)."""
            sio = await SocketIO.open(server.port, connect=False)
            try:
                await sio.ws.send(f"40{LONG_NAME},")
                with anyio.fail_after(10):
                    while True:
                        await sio.next_packet()
            except Closed as closed:
                return closed.code
            finally:
                await sio.ws.abort()

        codes: list[int | None] = []

        async def long_one() -> None:
            codes.append(await too_long())

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for first in range(CONNECTIONS):
                    tg.start_soon(refuse_many, first)
                for _ in range(10):
                    tg.start_soon(long_one)
        assert refused == REFUSED
        assert codes == [VIOLATION_CLOSE] * 10
        ended = await watch.until(back_to(baseline), SLACK, f"the baseline {baseline}")
        assert ended["namespaces"] == ["/"]


@pytest.mark.timeout(60)
def test_refused_dynamic_namespaces_leave_nothing_behind(edges: LiveServer) -> None:
    run(namespace_flood, edges)
