"""Engine.IO v4 on the wire: a bare Engine.IO endpoint under uvicorn (asyncio) and
hypercorn (trio), driven by plain HTTP and websocket clients.

The edge states (overlapping requests, invalid packets, payloads past the limit, the upgrade
and its races, refused websockets) are compared with the reference server in
tests/differential."""

from __future__ import annotations

import json
from collections.abc import Iterator

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


def test_connect_and_disconnect_callbacks_fire_with_reasons(
    engine_server: LiveServer, client: httpx.Client
) -> None:
    sid = str(handshake(client, engine_server)["sid"])
    client.post(url(engine_server, sid=sid), content=b"1")  # the client closes
    events = client.get(f"{engine_server.url}/events").json()["events"]
    assert "connect polling" in events
    assert "disconnect transport close" in events
