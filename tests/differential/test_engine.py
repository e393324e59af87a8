"""Engine.IO edge states, side by side with Node's engine.io 6.6 (the reference).

Every test runs one raw exchange against the reference server and against rooms (under
uvicorn on asyncio and hypercorn on trio) and asserts equal transcripts: status codes,
content types, CORS grants, bodies, websocket frames and closes (see driver.py for what is
normalised). Where the reference cannot be matched or is itself racy, the test says so and
compares only what is stable.

The endpoints (tests/apps/bare_engine.py and tests/js/reference_server.js): "fast" pings
every 250 ms and gives 400 ms for the pong; "slow" pings every 30 s, so no ping interleaves
with what a test compares.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from tests.differential.conftest import Compare
from tests.differential.driver import Driver, Socket

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


# ---------------------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("GET", {"EIO": "3"}),
        ("GET", {"EIO": None}),
        ("GET", {"EIO": "5"}),
        ("GET", {"transport": "carrier-pigeon"}),
        ("GET", {"transport": None}),
        ("GET", {"EIO": "3", "transport": "carrier-pigeon"}),
        ("GET", {"sid": "no-such-session"}),
        ("POST", {"sid": "no-such-session"}),
        ("GET", {"EIO": "3", "sid": "no-such-session"}),
        ("POST", {}),
        ("PUT", {}),
        ("POST", {"EIO": "3"}),
        ("GET", {"transport": "websocket"}),
        ("GET", {"refuse": "1"}),
    ],
    ids=lambda value: (
        "-".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
    ),
)
async def test_handshake_errors(
    compare: Compare, method: str, params: dict[str, str | None]
) -> None:
    async def scenario(d: Driver) -> None:
        await d.request(method, d.query("fast", **params), "4x")

    await compare(scenario)


async def test_origins_cors_and_preflight(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        await d.request("GET", d.query(), headers={"Origin": "http://evil.example"})
        allowed = {"Origin": "http://allowed.example"}
        response = await d.request("GET", d.query(), headers=allowed, record=False)
        d.note("allowed", response[2], response[5])  # the open packet itself is not the point
        await d.request(
            "OPTIONS",
            d.query(),
            headers={**allowed, "Access-Control-Request-Method": "POST"},
        )

    await compare(scenario)


async def test_requests_with_a_sid_are_served_whatever_their_eio(compare: Compare) -> None:
    """The protocol version is checked at the handshake only."""

    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        await d.post("4hi", "slow", sid=sid, EIO="3")
        await d.get("slow", sid=sid, EIO="3")

    await compare(scenario)


async def test_a_known_sid_on_the_wrong_transport_or_method(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        await d.get("slow", sid=sid, transport="websocket")  # not an upgrade request
        await d.request("PUT", d.query("slow", sid=sid), "4x")
        await d.post("4still open", "slow", sid=sid)
        await d.get("slow", sid=sid)

    await compare(scenario)


# ---------------------------------------------------------------------------- polling


async def test_polling_carries_text_and_binary_both_ways(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        await d.post("4hello\x1ebAQID\x1e4€", "slow", sid=sid)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_the_open_packet_advertises_the_same_configuration(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        await d.handshake("fast")
        await d.handshake("slow")

    await compare(scenario)


async def test_a_post_over_max_payload_is_413_and_the_session_lives_on(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("fast")
        await d.post("4" + "x" * 2000, "fast", sid=sid)
        await d.post("4fine", "fast", sid=sid)
        # A ping may share this poll (the fast endpoint pings every 250 ms): noted apart.
        body = (await d.request("GET", d.query("fast", sid=sid), record=False))[4]
        d.note("echoed", "4fine" in body.split("\x1e"))

    await compare(scenario)


async def test_an_overlapping_get_closes_the_session(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        async with anyio.create_task_group() as tg:
            first = d.spawn(tg, lambda: d.get("slow", sid=sid))
            await d.wait_state(sid, "slow", polling=True)
            await d.get("slow", sid=sid)
            await first.result(d)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_an_overlapping_post_closes_the_session(compare: Compare) -> None:
    """The reference drops the connection of the POST still in flight (it destroys the
    request as it closes the session); an ASGI app cannot drop a connection without the
    server logging an error, so rooms answers it, and only the rest is compared."""

    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        release = anyio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"4a"
            await release.wait()
            yield b"b"

        async def slow_post() -> Any:
            return await d.http.post(
                d.target.url + d.query("slow", sid=sid),
                content=body(),
                headers={"Content-Length": "3"},
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(_swallow, slow_post)
            await d.wait_state(sid, "slow", posting=True)
            await d.post("4b", "slow", sid=sid)
            release.set()
        await d.get("slow", sid=sid)

    await compare(scenario)


async def _swallow(call: Callable[[], Any]) -> None:
    with contextlib.suppress(httpx.TransportError):  # dropped by the reference: see the test
        await call()


# ---------------------------------------------------------------------------- heartbeat


async def test_answering_pings_keeps_a_polling_session_alive(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("fast")
        for _ in range(3):  # 3 x 250 ms: longer than the 400 ms ping timeout
            await d.get("fast", sid=sid)
            await d.post("3", "fast", sid=sid)
        await d.post("4still", "fast", sid=sid)
        await d.get("fast", sid=sid)

    await compare(scenario)


async def test_a_ping_timeout_with_a_poll_pending(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("fast")
        await d.get("fast", sid=sid)  # the ping
        await d.get("fast", sid=sid)  # no pong: this poll carries the close
        await d.get("fast", sid=sid)  # and the session is gone

    await compare(scenario)


async def test_a_ping_timeout_without_a_poll_forgets_the_session_at_once(
    compare: Compare,
) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("fast")
        await d.get("fast", sid=sid)  # the ping; no pong, and no poll
        await d.wait_state(sid, "fast", open=False)
        await d.get("fast", sid=sid)

    await compare(scenario)


async def test_a_websocket_ping_timeout_closes_it(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "fast")
        await ws.receive()  # the ping, left unanswered
        await ws.receive()  # the close

    await compare(scenario)


async def test_answering_pings_keeps_a_websocket_alive(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "fast")
        for _ in range(3):
            await ws.receive()
            await ws.send("3")
        await ws.send("4still")
        await ws.receive(skip_pings=True)
        await ws.close()

    await compare(scenario)


# ---------------------------------------------------------------------------- closing


async def test_a_forced_close_with_a_poll_pending(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        async with anyio.create_task_group() as tg:
            poll = d.spawn(tg, lambda: d.get("slow", sid=sid))
            await d.wait_state(sid, "slow", polling=True)
            await d.server_close(sid, "slow")
            await poll.result(d)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_a_forced_close_without_a_poll(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        await d.post("4queued", "slow", sid=sid)  # echoed: waits for the next poll
        await d.server_close(sid, "slow")
        await d.get("slow", sid=sid)  # what was queued goes first
        await d.get("slow", sid=sid)  # then the close
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_a_forced_close_on_a_websocket(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "slow")
        await d.server_close(d.sids[-1], "slow")
        await ws.receive()

    await compare(scenario)


async def test_a_client_close_with_a_poll_pending(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        async with anyio.create_task_group() as tg:
            poll = d.spawn(tg, lambda: d.get("slow", sid=sid))
            await d.wait_state(sid, "slow", polling=True)
            await d.post("1", "slow", sid=sid)
            await poll.result(d)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_a_client_close_without_a_poll(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        await d.post("4last\x1e1", "slow", sid=sid)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_a_close_packet_on_a_websocket_is_ignored(compare: Compare) -> None:
    """Clients close a websocket session by closing the websocket; a CLOSE packet on it
    changes nothing (the reference only acts on CLOSE over polling)."""

    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "slow")
        await ws.send("1")
        await ws.send("4still here")
        await ws.receive()
        await ws.close()

    await compare(scenario)


# ---------------------------------------------------------------------------- invalid packets


@pytest.mark.parametrize("body", ["9nine", "", "2", "2probe", "4a\x1e9b"])
async def test_an_invalid_packet_on_polling_closes_the_session(compare: Compare, body: str) -> None:
    """The packets before the invalid one are acted on; the POST is answered "ok"; the
    pending poll carries the close; a bystander is unaffected."""

    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        bystander = await d.handshake("slow")
        async with anyio.create_task_group() as tg:
            poll = d.spawn(tg, lambda: d.get("slow", sid=sid))
            await d.wait_state(sid, "slow", polling=True)
            await d.post(body, "slow", sid=sid)
            await poll.result(d)
        await d.get("slow", sid=sid)
        await d.post("4ok", "slow", sid=bystander)
        await d.get("slow", sid=bystander)

    await compare(scenario)


@pytest.mark.parametrize("body", [b"4\xff\xfe", b"b!!notbase64", b"bAQID\x1e4\xc3"])
async def test_bytes_that_are_not_clean_utf8_or_base64_are_read_leniently(
    compare: Compare, body: bytes
) -> None:
    """Node reads a POST body as UTF-8 with replacement characters and base64 leniently."""

    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        await d.post(body, "slow", sid=sid)
        await d.get("slow", sid=sid)

    await compare(scenario)


@pytest.mark.parametrize("frame", ["9nine", "", "2", "2probe", "0", "5", "6"])
async def test_packets_on_an_open_websocket(compare: Compare, frame: str) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "slow")
        await ws.send(frame)
        await ws.send("4after")
        await ws.receive()
        await ws.close()

    await compare(scenario)


async def test_a_websocket_frame_over_max_payload_closes_with_1009(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "fast")
        await ws.send("4" + "x" * 2000)
        await ws.until_closed()

    await compare(scenario)


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(compare: Compare) -> None:
    """The ASGI server's websocket layer refuses the frame before rooms sees it: uvicorn
    closes with 1007 as the reference does; hypercorn drops the connection instead, and
    granian closes it normally."""

    async def scenario(d: Driver) -> None:
        ws = await _ws_session(d, "slow")
        await ws.ws.send_frame(0x1, b"4\xff\xfe")
        await ws.until_closed()
        if d.target.name == "rooms" and compare.kind.startswith("hypercorn"):
            assert d.transcript[-1] == ("ws-close", "dropped")
            d.transcript[-1] = ("ws-close", 1007)
        if d.target.name == "rooms" and compare.kind.startswith("granian"):
            assert d.transcript[-1] == ("ws-close", "normal")
            d.transcript[-1] = ("ws-close", 1007)

    await compare(scenario)


# ---------------------------------------------------------------------------- websocket handshake


@pytest.mark.parametrize(
    "params",
    [
        {"sid": "no-such-session"},
        {"transport": "carrier-pigeon"},
        {"refuse": "1"},
        {"transport": "polling"},
    ],
    ids=lambda value: "-".join(f"{k}={v}" for k, v in value.items()),
)
async def test_refused_websockets(compare: Compare, params: dict[str, str]) -> None:
    async def scenario(d: Driver) -> None:
        ws = await d.websocket("fast", **params)
        if ws is not None:
            await ws.until_closed()

    await compare(scenario)


async def test_a_websocket_from_a_foreign_origin_is_refused(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        assert await d.websocket("fast", {"Origin": "http://evil.example"}) is None

    await compare(scenario)


async def test_a_websocket_with_an_old_protocol_opens_no_session(compare: Compare) -> None:
    """The reference answers 101 and then writes an HTTP 400 into the upgraded stream (its
    protocol check runs after the websocket handshake); rooms refuses the handshake. What
    is stable, and compared: no session opens."""

    async def scenario(d: Driver) -> None:
        transcript = d.transcript
        mark = len(transcript)
        ws = await d.websocket("fast", EIO="3")
        opened = False
        if ws is not None:
            try:
                with anyio.fail_after(5):
                    data = await ws.ws.receive()
                opened = isinstance(data, str) and data.startswith("0{")
            except Exception:
                opened = False
            await ws.close()
        del transcript[mark:]
        d.note("opened", opened)

    await compare(scenario)


# ---------------------------------------------------------------------------- upgrade


async def test_the_probe_upgrade_releases_the_poll_and_ends_polling(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        async with anyio.create_task_group() as tg:
            poll = d.spawn(tg, lambda: d.get("slow", sid=sid))
            await d.wait_state(sid, "slow", polling=True)
            ws = await _upgrade(d, sid)
            await ws.send("2probe")
            await ws.receive()
            await poll.result(d)  # released with a NOOP
        await ws.send("5")
        await ws.send("4after the upgrade")
        await ws.receive()
        await d.get("slow", sid=sid)  # polling is over
        await d.post("4x", "slow", sid=sid)
        await ws.close()

    await compare(scenario)


async def test_a_poll_racing_the_probe_gets_a_noop(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        ws = await _upgrade(d, sid)
        await ws.send("2probe")
        await ws.receive()
        await d.get("slow", sid=sid)  # after the probe: released with a NOOP
        await d.post("4still polling", "slow", sid=sid)  # until "5", POSTs are served
        await ws.send("5")
        await ws.receive()  # what was posted, now on the websocket
        await ws.close()

    await compare(scenario)


async def test_a_second_websocket_while_upgraded(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        ws = await _upgrade(d, sid)
        await ws.send("2probe")
        await ws.receive()
        await ws.send("5")
        second = await _upgrade(d, sid)
        await second.until_closed()
        await ws.send("4first still works")
        await ws.receive()
        await ws.close()

    await compare(scenario)


@pytest.mark.parametrize("probed", [True, False], ids=["probed", "connected"])
async def test_a_second_websocket_while_upgrading(compare: Compare, probed: bool) -> None:
    """A session is upgrading from the moment a websocket with its sid connects, probe or
    not: a second one is accepted and closed at once, and the first completes."""

    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        ws = await _upgrade(d, sid)
        if probed:
            await ws.send("2probe")
            await ws.receive()
        else:  # nothing on the wire says the server saw the websocket: ask it
            await d.wait_state(sid, "slow", upgrading=True)
        second = await _upgrade(d, sid)
        await second.until_closed()
        if not probed:
            await ws.send("2probe")
            await ws.receive()
        await ws.send("5")
        await ws.send("4upgraded")
        await ws.receive()
        await ws.close()

    await compare(scenario)


@pytest.mark.parametrize("frame", ["4hello", "3probe", "6", "2", "1"])
async def test_a_failed_probe_leaves_the_session_on_polling(compare: Compare, frame: str) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        ws = await _upgrade(d, sid)
        await ws.send("2probe")
        await ws.receive()
        await ws.send(frame)
        await ws.until_closed()
        await d.post("4still polling", "slow", sid=sid)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_an_upgrade_without_a_probe(compare: Compare) -> None:
    """The probe is the client's business: "5" alone completes the upgrade."""

    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        ws = await _upgrade(d, sid)
        await ws.send("5")
        await ws.send("4upgraded")
        await ws.receive()
        await d.get("slow", sid=sid)
        await ws.close()

    await compare(scenario)


async def test_a_probe_websocket_that_goes_leaves_the_session_on_polling(
    compare: Compare,
) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("slow")
        ws = await _upgrade(d, sid)
        await ws.send("2probe")
        await ws.receive()
        await ws.ws.close()
        await d.wait_state(sid, "slow", open=True)
        await d.wait_state(sid, "slow", upgrading=False)
        await d.post("4still polling", "slow", sid=sid)
        await d.get("slow", sid=sid)

    await compare(scenario)


async def test_a_session_that_ends_while_upgrading_closes_the_probe_websocket(
    compare: Compare,
) -> None:
    async def scenario(d: Driver) -> None:
        sid = await d.handshake("fast")
        ws = await d.websocket("fast", sid=sid)
        assert ws is not None, d.transcript
        await ws.send("2probe")
        await ws.receive()
        await ws.receive()  # no pong to the ping (queued for polling): the session times out
        await d.get("fast", sid=sid)

    await compare(scenario)


# ---------------------------------------------------------------------------- helpers


async def _ws_session(d: Driver, engine: str) -> Socket:
    """A websocket-only session, its open packet read (and its sid known)."""
    ws = await d.websocket(engine)
    assert ws is not None, d.transcript
    opened = await ws.ws.receive()
    assert isinstance(opened, str) and opened.startswith("0{"), opened
    d.sids.append(json.loads(opened[1:])["sid"])
    d.note("frame", d.normalize(opened))
    return ws


async def _upgrade(d: Driver, sid: str) -> Socket:
    ws = await d.websocket("slow", sid=sid)
    assert ws is not None, d.transcript
    return ws
