"""Hostile input (DESIGN §6, issue 10 items 1-3, 7, 9): every bound is checked before the
work it bounds, and a violation closes only the offending connection, as the reference
server does (a normal websocket close, the code the reference's codeless close frame comes
closest to; over long-polling the POST is answered and the session closed), with one line
saying what was expected and what came. Each test drives a real server in process on
asyncio and trio."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

import rooms
from rooms.testing import Lifespan, ManualClock, TestClient

pytestmark = pytest.mark.anyio

VIOLATION_CLOSE = 1000  # the reference sends an empty close frame; ASGI has 1000
PLACEHOLDER = '{"_placeholder":true,"num":%d}'


def announce(count: int, digits: str | None = None) -> str:
    placeholders = ",".join(PLACEHOLDER % n for n in range(count))
    return f'45{digits or count}-["upload",{placeholders}]'


def make_server(**options: Any) -> rooms.Server:
    server = rooms.Server(**options)

    @server.on("echo")
    async def echo(socket: rooms.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @server.on("upload")
    async def upload(socket: rooms.Socket, *blobs: bytes) -> int:
        return sum(len(b) for b in blobs)

    @server.on("join")
    async def join(socket: rooms.Socket, room: str) -> None:
        await socket.join(room)

    @server.on("bcast")
    async def bcast(socket: rooms.Socket, room: str, *args: Any) -> None:
        await socket.to(room).emit("bcast", *args)

    return server


@asynccontextmanager
async def bystander_and(server: rooms.Server) -> AsyncIterator[TestClient]:
    """The server running, with a well-behaved client connected beside the offender."""
    async with Lifespan(server), TestClient(server, lifespan=False) as bystander:
        await bystander.connect()
        yield bystander
        assert await bystander.call("echo", "unharmed") == "unharmed"


async def offend(server: rooms.Server, *frames: str | bytes) -> TestClient:
    """Send ``frames`` and wait for the server to close the connection."""
    async with TestClient(server, lifespan=False) as offender:
        for frame in frames:
            await offender.send_raw(frame)
        await offender.wait_disconnected()
    return offender


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the server until ``condition`` holds (its state, observed in process)."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.lowlevel.checkpoint()


@pytest.fixture
def input_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="rooms.input")
    return caplog


# ----------------------------------------------------------------------------- attachments


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ((announce(1, digits="1000000000"),), "1 to 10 attachments, got 1000000000"),
        ((announce(11),), "1 to 10 attachments, got 11"),
        (("45" + "9" * 5000 + '-["upload"]',), "'<attachments>-'"),
        ((announce(2), b"x" * 600, b"y" * 600), "at most 1000 bytes in all, got 1200"),
    ],
)
async def test_attachments_past_their_bounds_close_the_connection(
    frames: tuple[str | bytes, ...], expected: str, input_log: pytest.LogCaptureFixture
) -> None:
    server = make_server(limits=rooms.Limits(max_attachment_bytes=1000))
    async with bystander_and(server):
        offender = await offend(server, "40", *frames)
    assert offender.close_code == VIOLATION_CLOSE
    assert expected in input_log.text


async def test_attachments_within_bounds_arrive(input_log: pytest.LogCaptureFixture) -> None:
    server = make_server(limits=rooms.Limits(max_attachment_bytes=1000))
    async with bystander_and(server) as client:
        await client.send_raw(announce(2))
        await client.send_raw(b"x" * 500)
        await client.send_raw(b"y" * 500)
        assert await client.call("echo", "after") == "after"
        assert await client.call("upload", b"a" * 10, b"b" * 5) == 15


async def test_no_attachment_is_held_for_a_namespace_not_connected(
    input_log: pytest.LogCaptureFixture,
) -> None:
    server = make_server()
    async with bystander_and(server):
        offender = await offend(server, announce(1))  # no CONNECT first
    assert offender.close_code == VIOLATION_CLOSE
    assert "expected CONNECT before binary packets on namespace '/'" in input_log.text


async def test_attachments_that_do_not_all_arrive_in_time_close_the_connection(
    input_log: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    server = make_server(clock=clock, limits=rooms.Limits(attachment_timeout=10))
    async with bystander_and(server), TestClient(server, lifespan=False) as offender:
        await offender.connect()
        await offender.send_raw(announce(2))
        await offender.send_raw(b"only one")
        decoder = server.engine.sessions[str(offender.sid)].upper.decoder
        await until(lambda: decoder.pending is not None and decoder.pending.attachments == 2)
        clock.advance(9)
        server.engine.heartbeat.tick()
        assert not offender.disconnected.is_set()
        clock.advance(2)
        server.engine.heartbeat.tick()
        await offender.wait_disconnected()
        assert offender.close_code == VIOLATION_CLOSE
    assert "expected 2 attachment(s) within 10 s, got fewer" in input_log.text


async def test_a_completed_binary_packet_is_not_timed_out_afterwards() -> None:
    clock = ManualClock()
    server = make_server(clock=clock, limits=rooms.Limits(attachment_timeout=10))
    async with bystander_and(server) as client:
        assert await client.call("upload", b"abc") == 3
        clock.advance(11)
        server.engine.heartbeat.tick()
        assert await client.call("upload", b"de") == 2


# ----------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_what_json_parse_refuses_is_never_relayed_to_a_room(
    value: str, input_log: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    async with bystander_and(server) as member:
        await member.call("join", "r")
        offender = await offend(server, "40", f'42["bcast","r",{value}]')
        assert offender.close_code == VIOLATION_CLOSE
        async with TestClient(server, lifespan=False) as sender:
            await sender.connect()
            await sender.emit("bcast", "r", "fine")
            # The first thing the member hears is the good broadcast: nothing came before it.
            assert await member.receive() == ("bcast", ["fine"])
    assert "JSON.parse accepts" in input_log.text or "finite number" in input_log.text


async def test_a_lone_surrogate_is_echoed_as_its_escape_over_websocket_and_polling() -> None:
    # JSON.parse accepts "\ud800"; sent back raw it cannot be encoded as UTF-8 at all.
    lone = '"\\ud800"'
    server = make_server()
    async with bystander_and(server) as member:
        await member.call("join", "r")
        async with TestClient(server, lifespan=False) as sender:
            await sender.connect()
            await sender.send_raw(f'42["bcast","r",{lone}]')
            await sender.send_raw(f'421["echo",{lone}]')
            assert await member.receive() == ("bcast", ["\ud800"])
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            base = "/socket.io/?EIO=4&transport=polling"
            opened = await http.get(base)
            sid = re.search(r'"sid":"([^"]+)"', opened.text).group(1)  # type: ignore[union-attr]
            await http.post(f"{base}&sid={sid}", content="40")
            assert (await http.get(f"{base}&sid={sid}")).text.startswith("40")
            await http.post(f"{base}&sid={sid}", content=f'421["echo",{lone}]')
            answer = await http.get(f"{base}&sid={sid}")
            assert (answer.status_code, answer.text) == (200, f"431[{lone}]")


async def test_emitting_nan_raises_a_value_error_naming_the_event() -> None:
    server = make_server()

    @server.on("scores")
    async def scores(socket: rooms.Socket) -> str:
        try:
            await socket.emit("scores", {"mean": float("nan")})
        except ValueError as exc:
            return str(exc)
        return "sent"

    async with bystander_and(server) as client:
        answer = await client.call("scores")
        assert answer.startswith("cannot send event 'scores' on /")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("42" + "9" * 5000 + '["echo",1]', "safe integer"),
        ("43" + "9" * 5000 + "[1]", "safe integer"),
        ('42["echo",' + "[" * 40 + "]" * 40 + "]", "nested at most 32 deep"),
        ('42["echo",' + "[" * 100_000 + "]", "nested at most 32 deep"),
    ],
)
async def test_huge_integers_and_deep_nesting_close_with_a_frame_not_silence(
    frame: str, expected: str, input_log: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    async with bystander_and(server):
        offender = await offend(server, "40", frame)
    assert offender.close_code == VIOLATION_CLOSE  # a close frame: the client knows at once
    assert expected in input_log.text


async def test_over_long_polling_a_huge_ack_id_closes_the_session_not_500(
    input_log: pytest.LogCaptureFixture,
) -> None:
    server = make_server()
    transport = httpx.ASGITransport(app=server)
    async with (
        Lifespan(server),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        base = "/socket.io/?EIO=4&transport=polling"
        opened = await http.get(base)
        sid = re.search(r'"sid":"([^"]+)"', opened.text).group(1)  # type: ignore[union-attr]
        assert (await http.post(f"{base}&sid={sid}", content="40")).text == "ok"
        bad = await http.post(f"{base}&sid={sid}", content="42" + "7" * 5000 + '["echo"]')
        # As the reference server: the POST is answered, the session closed.
        assert (bad.status_code, bad.text) == (200, "ok")
        assert sid not in server.engine.sessions or server.engine.sessions[sid].closed
    assert "safe integer" in input_log.text


# ----------------------------------------------------------------------------- names


async def test_names_past_their_bound_close_the_connection(
    input_log: pytest.LogCaptureFixture,
) -> None:
    server = make_server(limits=rooms.Limits(max_name_length=64))
    async with bystander_and(server):
        offender = await offend(server, "40", '42["' + "e" * 65 + '"]')
        assert offender.close_code == VIOLATION_CLOSE
        offender = await offend(server, "40/" + "n" * 50_000 + ",")
        assert offender.close_code == VIOLATION_CLOSE
    assert "event name of at most 64 characters, got 65" in input_log.text
    assert "namespace of at most 64 characters" in input_log.text


async def test_a_room_name_past_the_bound_is_refused_by_join() -> None:
    server = make_server(limits=rooms.Limits(max_name_length=8))

    @server.on("try_join")
    async def try_join(socket: rooms.Socket, room: str) -> str:
        try:
            await socket.join(room)
        except ValueError as exc:
            return str(exc)
        return "joined"

    async with bystander_and(server) as client:
        assert await client.call("try_join", "short") == "joined"
        assert await client.call("try_join", "much-too-long") == (
            "expected a room name of at most 8 characters, got 13"
        )


# ----------------------------------------------------------------------------- dynamic namespaces


def dynamic_server(**options: Any) -> rooms.Server:
    server = make_server(**options)
    teams = server.of(re.compile(r"/dyn-\d+"))

    @teams.use
    def members_only(socket: rooms.Socket) -> None:
        if socket.handshake.auth.get("member") is not True:
            raise rooms.ConnectionRefused("members only")

    teams.on("where", lambda socket: socket.nsp.name)
    return server


async def test_refused_dynamic_namespaces_leave_nothing_behind() -> None:
    server = dynamic_server()
    async with bystander_and(server) as client:
        for n in range(300):
            with pytest.raises(rooms.ConnectionRefused, match="members only"):
                await client.connect(f"/dyn-{n}")
        assert sorted(server.namespaces) == ["/"]
        await client.connect("/dyn-7", auth={"member": True})
        assert sorted(server.namespaces) == ["/", "/dyn-7"]
        await client.disconnect("/dyn-7")
        await client.call("echo")  # a round trip: the disconnect was handled
        assert sorted(server.namespaces) == ["/"]


async def test_a_connect_handler_that_refuses_leaves_no_child_either() -> None:
    server = rooms.Server()
    rooms_ = server.of(re.compile(r"/r-\d+"))

    @rooms_.on("connect")
    async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> bool:
        await socket.join("somewhere")  # admitted, then refused
        return False

    async with TestClient(server) as client:
        for n in range(50):
            with pytest.raises(rooms.ConnectionRefused):
                await client.connect(f"/r-{n}")
        assert sorted(server.namespaces) == ["/"]


async def test_live_dynamic_namespaces_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    server = dynamic_server(limits=rooms.Limits(max_dynamic_namespaces=3))
    member = {"member": True}
    async with bystander_and(server) as client:
        for n in range(3):
            await client.connect(f"/dyn-{n}", auth=member)
        with pytest.raises(rooms.ConnectionRefused, match="Invalid namespace"):
            await client.connect("/dyn-3", auth=member)
        assert "expected at most 3 dynamic namespaces alive" in caplog.text
        async with TestClient(server, lifespan=False) as other:
            await other.connect("/dyn-1", auth=member)  # an existing child is no new one
        await client.disconnect("/dyn-0")
        await client.call("echo")
        await client.connect("/dyn-3", auth=member)  # room again
        assert await client.call("where", namespace="/dyn-3") == "/dyn-3"


# ----------------------------------------------------------------------------- logs


async def test_a_handler_signature_clients_do_not_fit_is_a_rate_limited_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_server()

    @server.on("pair")
    async def pair(socket: rooms.Socket, a: int, b: int) -> int:
        return a + b

    caplog.set_level(logging.WARNING, logger="rooms")
    async with bystander_and(server) as client:
        for _ in range(200):
            await client.emit("pair", 1)
        assert await client.call("pair", 1, 2) == 3
    lines = [r for r in caplog.records if "not handled" in r.getMessage()]
    assert lines and all(r.levelno == logging.WARNING for r in lines)
    assert "expected at least 2 argument(s)" in lines[0].getMessage()
    assert "pair" in lines[0].getMessage()
    assert len(lines) <= 20  # a client repeating it cannot fill the log


def test_a_handler_that_no_packet_can_call_is_refused_at_registration() -> None:
    server = rooms.Server()

    async def needs_keyword(socket: rooms.Socket, *, room: str) -> None:
        pass

    with pytest.raises(TypeError, match="required keyword-only parameter"):
        server.on("kw", needs_keyword)


async def test_hostile_input_lines_are_rate_limited(input_log: pytest.LogCaptureFixture) -> None:
    server = make_server()
    async with bystander_and(server):
        for _ in range(60):
            await offend(server, "40", "42[oops")
    lines = [r for r in input_log.records if r.name == "rooms.input"]
    assert 1 <= len(lines) <= 21
    assert all(r.levelno == logging.INFO for r in lines)
