"""Engine.IO v4 on the wire: a bare Engine.IO endpoint under uvicorn (asyncio) and
hypercorn (trio), driven by plain HTTP and websocket clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import websocket

from tests.conftest import SERVERS, LiveServer, SharedServer


@pytest.fixture(params=list(SERVERS), scope="module")
def engine_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    app = "tests.apps.bare_engine:app"
    with SharedServer(str(request.param), app, tmp_path_factory) as shared:
        yield shared


@pytest.fixture
def engine_server(
    engine_servers: SharedServer, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    yield from engine_servers.lend(request)


def url(server: LiveServer, **query: str) -> str:
    params = {"EIO": "4", "transport": "polling", **query}
    return f"{server.url}/engine.io/?" + "&".join(f"{k}={v}" for k, v in params.items())


def handshake(client: httpx.Client, server: LiveServer) -> dict[str, object]:
    response = client.get(url(server))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text[0] == "0"
    return json.loads(response.text[1:])  # type: ignore[no-any-return]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def test_the_open_packet_advertises_the_configuration_exactly(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    opened = handshake(client, engine_server)
    assert opened["upgrades"] == ["websocket"]
    assert (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]) == (250, 400, 1000)
    assert isinstance(opened["sid"], str) and len(opened["sid"]) == 20


@pytest.mark.parametrize(
    ("query", "method", "code"),
    [
        ({"EIO": "3"}, "GET", 5),
        ({"EIO": ""}, "GET", 5),
        ({"transport": "carrier-pigeon"}, "GET", 0),
        ({"sid": "no-such-session"}, "GET", 1),
        ({"sid": "no-such-session"}, "POST", 1),
        ({}, "POST", 2),
        ({"transport": "websocket"}, "GET", 3),
    ],
)
def test_handshake_errors_are_http_400_with_the_spec_code(
    engine_server: LiveServer, client: httpx.Client, query: dict[str, str], method: str, code: int
) -> None:
    response = client.request(method, url(engine_server, **query), content=b"4x")
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_a_foreign_origin_is_forbidden_and_an_allowed_one_gets_cors_headers(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    refused = client.get(url(engine_server), headers={"Origin": "http://evil.example"})
    assert (refused.status_code, refused.json()) == (403, {"code": 4, "message": "Forbidden"})
    allowed = client.get(url(engine_server), headers={"Origin": "http://allowed.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://allowed.example"
    preflight = client.options(
        url(engine_server),
        headers={"Origin": "http://allowed.example", "Access-Control-Request-Headers": "x-custom"},
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "x-custom"


def test_on_connect_returning_false_refuses_the_handshake(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    response = client.get(url(engine_server, refuse="1"))
    assert (response.status_code, response.json()["code"]) == (403, 4)


def test_polling_delivers_text_and_binary_both_ways(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    sid = str(handshake(client, engine_server)["sid"])
    posted = client.post(url(engine_server, sid=sid), content="4hello\x1ebAQID\x1e4€".encode())
    assert (posted.status_code, posted.text) == (200, "ok")
    body = client.get(url(engine_server, sid=sid)).text
    packets = [p for p in body.split("\x1e") if p != "2"]  # a ping may interleave
    assert packets == ["4hello", "bAQID", "4€"]


def test_the_server_pings_and_closes_a_session_that_never_pongs(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    sid = str(handshake(client, engine_server)["sid"])
    assert client.get(url(engine_server, sid=sid)).text == "2"  # ping after 250 ms
    # No pong: after ping_timeout the session is closed; the waiting poll carries CLOSE.
    assert client.get(url(engine_server, sid=sid)).text == "1"
    assert client.get(url(engine_server, sid=sid)).json()["code"] == 1


def test_answering_pings_keeps_the_session_alive(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    sid = str(handshake(client, engine_server)["sid"])
    for _ in range(4):  # 4 x 250 ms, longer than ping_timeout
        assert client.get(url(engine_server, sid=sid)).text == "2"
        assert client.post(url(engine_server, sid=sid), content=b"3").text == "ok"
    client.post(url(engine_server, sid=sid), content=b"4still")
    assert "4still" in client.get(url(engine_server, sid=sid)).text.split("\x1e")


def test_an_overlapping_get_is_refused_and_closes_the_session(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    slow = f"{engine_server.url}/engine-slow/?EIO=4&transport=polling"
    sid = json.loads(client.get(slow).text[1:])["sid"]
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=5) as other:
        first = pool.submit(other.get, f"{slow}&sid={sid}")
        wait_until(lambda: client.get(f"{engine_server.url}/events?sid={sid}").json()["polling"])
        second = client.get(f"{slow}&sid={sid}")
        assert (second.status_code, second.json()["code"]) == (400, 3)
        assert first.result().text == "1"  # the pending poll carries CLOSE


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for server-side state that a test cannot get an event for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_payload_over_max_payload_is_refused_and_others_are_unaffected(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    victim = str(handshake(client, engine_server)["sid"])
    bystander = str(handshake(client, engine_server)["sid"])
    too_big = client.post(url(engine_server, sid=victim), content=b"4" + b"x" * 2000)
    assert too_big.status_code == 413
    assert client.get(url(engine_server, sid=victim)).text.endswith("1")
    client.post(url(engine_server, sid=bystander), content=b"4fine")
    assert "4fine" in client.get(url(engine_server, sid=bystander)).text.split("\x1e")


@pytest.mark.parametrize("body", [b"4\xff\xfe", b"9nine", b"b!!notbase64"])
def test_malformed_payloads_get_400_and_close_only_that_session(
    engine_server: LiveServer, client: httpx.Client, body: bytes
) -> None:
    victim = str(handshake(client, engine_server)["sid"])
    bystander = str(handshake(client, engine_server)["sid"])
    response = client.post(url(engine_server, sid=victim), content=body)
    assert (response.status_code, response.json()["code"]) == (400, 3)
    client.post(url(engine_server, sid=bystander), content=b"4ok")
    assert "4ok" in client.get(url(engine_server, sid=bystander)).text.split("\x1e")


def ws_url(server: LiveServer, **query: str) -> str:
    return url(server, transport="websocket", **query).replace("http://", "ws://")


def test_a_direct_websocket_session_echoes_text_and_binary(engine_server: LiveServer) -> None:
    ws = websocket.create_connection(ws_url(engine_server), timeout=5)
    try:
        opened = json.loads(ws.recv()[1:])
        assert opened["upgrades"] == []
        ws.send("4hi")
        ws.send_binary(b"\x00\x01")
        got = [m for m in (ws.recv(), ws.recv(), ws.recv()) if m != "2"][:2]
        assert got[0] == "4hi"
        assert got[1] == b"\x00\x01" or ws.recv() == b"\x00\x01"
    finally:
        ws.close()
        ws.shutdown()  # websocket-client leaves the socket open after a server close


def test_a_websocket_frame_over_max_payload_closes_with_1009(engine_server: LiveServer) -> None:
    ws = websocket.create_connection(ws_url(engine_server), timeout=5)
    try:
        ws.recv()
        ws.send("4" + "x" * 2000)
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                assert int.from_bytes(data[:2], "big") == 1009
                break
    finally:
        ws.close()
        ws.shutdown()  # websocket-client leaves the socket open after a server close


def test_the_probe_upgrade_moves_a_polling_session_to_websocket(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    sid = str(handshake(client, engine_server)["sid"])
    with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=5) as poller:
        pending = pool.submit(poller.get, url(engine_server, sid=sid))
        ws = websocket.create_connection(ws_url(engine_server, sid=sid), timeout=5)
        try:
            ws.send("2probe")
            assert ws.recv() == "3probe"
            # The pending poll is released with NOOP (or carried a ping first).
            assert pending.result().text.split("\x1e")[-1] in ("6", "2")
            ws.send("5")
            ws.send("4after upgrade")
            got = [m for m in (ws.recv(), ws.recv()) if m != "2"]
            assert "4after upgrade" in got or ws.recv() == "4after upgrade"
            # A second websocket for the upgraded sid is refused; polling is over too.
            assert_refused(ws_url(engine_server, sid=sid), 3)
            assert client.post(url(engine_server, sid=sid), content=b"4x").status_code == 400
        finally:
            ws.close()
            ws.shutdown()  # websocket-client leaves the socket open after a server close


def assert_refused(address: str, code: int) -> None:
    """A websocket handshake answered with HTTP 400 and the spec's JSON error."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    with httpx.Client(timeout=5) as http:
        response = http.get(address.replace("ws://", "http://"), headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, code)


def test_a_websocket_for_an_unknown_sid_is_refused(engine_server: LiveServer) -> None:
    assert_refused(ws_url(engine_server, sid="nope"), 1)


def test_connect_and_disconnect_callbacks_fire_with_reasons(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    sid = str(handshake(client, engine_server)["sid"])
    client.post(url(engine_server, sid=sid), content=b"1")  # the client closes
    events = client.get(f"{engine_server.url}/events").json()["events"]
    assert "connect polling" in events
    assert "disconnect transport close" in events
