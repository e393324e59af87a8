"""Connection state recovery with the real socket.io-client (which does its part by itself):
a stream of room broadcasts and private emits, the transport cut mid-stream, and everything
sent meanwhile arriving after the reconnect, in order, once. Memory store here; Redis and
several processes in tests/cluster/test_processes_recovery.py."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SERVERS, LiveServer, SharedServer
from tests.jsdriver import JsDriver, cut_soak

pytestmark = pytest.mark.interop

APP = "tests.apps.recovery:app"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=15) as response:
        body = response.read()
    try:
        return json.loads(body)
    except ValueError:
        return body.decode()


@pytest.fixture(params=list(SERVERS), scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    with SharedServer(str(request.param), APP, tmp_path_factory) as shared:
        yield shared
        last = shared.server
    if last is not None:
        assert "Traceback" not in last.log(), last.log()


@pytest.fixture
def server(servers: SharedServer, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    yield from servers.lend(request)


@pytest.fixture
def js() -> Iterator[JsDriver]:
    driver = JsDriver()
    yield driver
    driver.close()


def burst(server: LiveServer, room: str, sid: str, start: int, stop: int) -> None:
    get(f"{server.url}/burst?room={room}&sid={sid}&start={start}&stop={stop}")


def received(js: JsDriver, name: str, count: int) -> list[tuple[str, Any]]:
    """The next ``count`` ticks and private messages, as (event, number), checking that each
    carries an offset (a string) as its last argument."""
    got = [(e, args) for e, args in js.events(name, count) if e in ("tick", "private", "own")]
    assert len(got) == count, got
    for _, args in got:
        assert isinstance(args[-1], str)  # the offset socket.io-client remembers
    return [(event, args[0]) for event, args in got]


def interleaved(start: int, stop: int) -> list[tuple[str, int]]:
    return [pair for n in range(start, stop) for pair in (("tick", n), ("private", n))]


@pytest.mark.parametrize("cut", ["client", "server"])
@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_a_dropped_client_gets_everything_it_missed_in_order_and_once(
    server: LiveServer, js: JsDriver, cut: str, mode: str
) -> None:
    first = js.connect("ada", server.url, mode, auth={"name": "ada", "rooms": ["news"]})
    js.connect("bob", server.url, mode, auth={"name": "bob", "rooms": ["sport"]})
    sid = first["id"]
    burst(server, "news", sid, 0, 10)
    assert received(js, "ada", 20) == interleaved(0, 10)

    if cut == "client":
        js.request("engine_close", name="ada")  # socket.io.engine.close()
        get(f"{server.url}/gone?sid={sid}")
    else:
        get(f"{server.url}/cut?sid={sid}")  # the server closes the transport
    assert js.events("ada", 1)[0][0] == "disconnect"

    burst(server, "news", sid, 10, 40)  # while ada is away
    state = js.request("reconnect", name="ada")
    assert state == {**state, "connected": True, "id": sid, "recovered": True}

    # Everything missed, in order, no gap, no duplicate; then the stream goes on live.
    assert received(js, "ada", 60) == interleaved(10, 40)
    burst(server, "news", sid, 40, 42)
    assert received(js, "ada", 4) == interleaved(40, 42)
    (me,) = js.call("ada", "whoami")
    assert me == {**me, "id": sid, "recovered": True, "rooms": ["news"], "data": {"name": "ada"}}
    assert js.request("drain", name="bob") == []  # never in "news"; nothing of it replayed


def test_private_emits_are_stored_and_replayed_too(server: LiveServer, js: JsDriver) -> None:
    sid = js.connect("cy", server.url, "websocket", auth={"name": "cy"})["id"]
    assert js.call("cy", "private_burst", 0, 5) == [True]
    assert received(js, "cy", 5) == [("own", n) for n in range(5)]
    js.request("engine_close", name="cy")
    get(f"{server.url}/gone?sid={sid}")
    burst(server, "nobody", sid, 0, 3)  # only the private halves reach cy
    assert js.request("reconnect", name="cy")["recovered"] is True
    got = [e for e in js.request("drain", name="cy") if e["event"] != "disconnect"]
    assert [(e["event"], e["args"][0]) for e in got] == [("private", n) for n in range(3)]


def test_recovered_sockets_skip_middlewares(server: LiveServer, js: JsDriver) -> None:
    sid = js.connect("di", server.url, "websocket", auth={"name": "di"})["id"]
    burst(server, "x", sid, 0, 1)  # di is in no room: the private half only
    assert received(js, "di", 1) == [("private", 0)]
    js.request("engine_close", name="di")
    get(f"{server.url}/gone?sid={sid}")
    assert js.request("reconnect", name="di")["recovered"] is True
    assert get(f"{server.url}/middleware").count(sid) == 1  # the first connect only


def test_an_explicit_disconnect_leaves_nothing_to_recover(server: LiveServer, js: JsDriver) -> None:
    sid = js.connect("ed", server.url, "websocket", auth={"name": "ed", "rooms": ["a"]})["id"]
    burst(server, "a", sid, 0, 1)
    assert len(received(js, "ed", 2)) == 2
    js.request("close_socket", name="ed")  # socket.disconnect(): the client says goodbye
    get(f"{server.url}/gone?sid={sid}")
    state = js.request("reconnect", name="ed")
    assert state["recovered"] is False
    assert state["id"] != sid
    (me,) = js.call("ed", "whoami")
    assert me["recovered"] is False and me["id"] != sid  # the connect handler ran afresh


def test_a_bad_pid_or_offset_gets_a_fresh_socket_and_no_error(
    server: LiveServer, js: JsDriver
) -> None:
    for auth in ({"pid": "nope", "offset": "nope"}, {"pid": 7, "offset": None}):
        state = js.connect(f"fo-{auth['pid']}", server.url, "websocket", auth=auth)
        assert state["connected"] is True and state["recovered"] is False


@pytest.mark.parametrize("cut", ["client", "server"])
@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_a_cut_mid_stream_loses_nothing_and_doubles_nothing(
    server: LiveServer, js: JsDriver, cut: str, mode: str
) -> None:
    sid = js.connect("flo", server.url, mode, auth={"name": "flo", "rooms": ["live"]})["id"]
    get(f"{server.url}/stream?room=live&sid={sid}&count=150&every=4")
    before = received(js, "flo", 30)  # the stream is flowing
    if cut == "client":
        js.request("engine_close", name="flo")
        get(f"{server.url}/gone?sid={sid}")
    else:
        get(f"{server.url}/cut?sid={sid}")
    assert js.request("disconnected", name="flo")["connected"] is False
    assert js.request("reconnect", name="flo")["recovered"] is True
    # Whatever reached flo before the cut, then all the rest: each once, in order.
    got = [e for e in js.events("flo", 300 - 30 + 1, timeout=15000) if e[0] != "disconnect"]
    after = [(event, args[0]) for event, args in got]
    assert before + after == interleaved(0, 150)


# --------------------------------------------------------------------------- unnoticed cuts


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_a_client_back_before_the_server_noticed_its_drop_recovers_every_time(
    server: LiveServer, mode: str
) -> None:
    """Cuts the server cannot see (no FIN: its side of each connection stays open, silent),
    so the old socket is alive when the client comes back with its pid: the new connection
    takes it over. Node's server gives the client a fresh socket here."""
    result = cut_soak(mode, 15, server.url, [server.url])
    assert result == {
        **result, "recovered": 15, "fresh": 0, "lost": 0, "duplicated": 0, "reordered": 0
    }  # fmt: skip
    assert result["ticks"] > 15 * 3
