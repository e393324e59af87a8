"""The official Node ``socket.io-client`` 4.8 against rooms running in a real server process.

Each test runs one scenario from ``tests/js`` against ``tests/apps/interop.py`` under
uvicorn (asyncio) and hypercorn (trio). A script prints one JSON line of what the client
observed; binary it received is reported as ``{"$bin": hex, "$type": constructor}``.
Transport modes: ``default`` (long-polling, then an upgrade to websocket, as browsers do),
``websocket`` only, ``polling`` only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVERS, LiveServer, NodeProcess, run_node, start_server

pytestmark = pytest.mark.interop

APP = "tests.apps.interop:app"
MODES = ["default", "websocket", "polling"]


@pytest.fixture(autouse=True)
def _no_traceback_in_the_server_log(request: pytest.FixtureRequest) -> Iterator[None]:
    """A handler or the engine failing on the server fails the test that caused it."""
    if "interop_server" not in request.fixturenames:
        yield
        return
    server: LiveServer = request.getfixturevalue("interop_server")
    start = len(server.log())
    yield
    new_lines = server.log()[start:]
    assert "Traceback" not in new_lines, new_lines


def scenario(script: str, server: LiveServer, mode: str, *args: str) -> dict[str, Any]:
    """Run ``tests/js/<script>`` against ``server``; its one JSON line of observations."""
    result = run_node(script, server.url, mode, *args, timeout=30)
    assert result.returncode == 0, (
        f"{script} ({mode}) exited with {result.returncode}: {result.stderr}\n"
        f"server log:\n{server.log()}"
    )
    (line,) = result.stdout.splitlines()
    observations: dict[str, Any] = json.loads(line)
    return observations


def binary(data: bytes) -> dict[str, str]:
    """How a script reports binary it received: a Node Buffer with these bytes."""
    return {"$bin": data.hex(), "$type": "Buffer"}


# --------------------------------------------------------------------------- transports


@pytest.mark.parametrize(
    ("mode", "opened_on", "final", "upgrades"),
    [
        ("default", "polling", "websocket", ["websocket"]),
        ("websocket", "websocket", "websocket", []),
        ("polling", "polling", "polling", []),
    ],
)
def test_every_event_arrives_once_and_in_order_on_each_transport_and_across_the_upgrade(
    interop_server: LiveServer, mode: str, opened_on: str, final: str, upgrades: list[str]
) -> None:
    seen = scenario("transports.js", interop_server, mode)

    assert (seen["opened_on"], seen["final"], seen["upgrades"]) == (opened_on, final, upgrades)
    # Ten client emits acknowledged in order: five right after connecting (in default
    # mode, while the upgrade is usually under way) and five once it is done.
    assert seen["acks"] == list(range(10))
    # Forty server emits in order, asked for in the same two batches.
    assert seen["ticks"] == list(range(40))
    # The upgrade swaps the transport under the same Engine.IO session and Socket.IO socket.
    assert seen["same_socket"] is True


# --------------------------------------------------------------------------- acks


@pytest.mark.parametrize("mode", MODES)
def test_a_client_ack_receives_the_handler_return_value_as_its_arguments(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("acks_to_server.js", interop_server, mode)

    # A tuple returned by the handler is several ack arguments; None is no argument.
    assert seen["echo_many"] == [1, "two", {"three": [3, 3.5]}, None, True]
    assert seen["echo_none"] == []
    assert seen["echo_one"] == ["solo"]
    # A synchronous handler acks the same way; text is UTF-8 end to end.
    assert seen["echo_sync"] == [{"nested": {"list": [1, {"deep": "é ✓ 🎉"}]}}]
    assert seen["with_promise"] == [1, 2]
    # An event with no handler reaches the catch-all, whose return value is the ack.
    assert seen["catch_all"] == [{"unhandled": "no_such_event", "args": [1, {"b": 2}]}]


@pytest.mark.parametrize("mode", MODES)
def test_server_emit_with_ack_returns_what_the_client_callback_was_called_with(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("acks_to_client.js", interop_server, mode)

    # "ask" makes the server emit "question" with an ack and return {"answer": <ack>}.
    assert seen["questions"] == [
        {"reply": [{"n": 42, "s": "x"}]},
        {"reply": ["a", 2, None]},
        {"reply": []},
    ]
    assert seen["ask_object"] == [{"answer": {"n": 42, "s": "x"}}]  # one argument: itself
    assert seen["ask_many"] == [{"answer": ["a", 2, None]}]  # several: a tuple
    assert seen["ask_none"] == [{"answer": None}]  # none: None


# --------------------------------------------------------------------------- binary


@pytest.mark.parametrize("mode", MODES)
def test_binary_travels_both_ways_at_the_top_level_and_nested_in_events_and_acks(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("binary.js", interop_server, mode)
    small = binary(bytes([0, 1, 2, 253, 254, 255]))

    assert seen["top_level"] == [small]
    assert seen["nested"] == [
        {"file": small, "meta": {"parts": [small, "x", binary(b"")]}},
        [small, 1],
    ]
    assert seen["typed_array"] == [binary(bytes([7, 8, 9]))]  # a Uint8Array comes back as bytes
    big = hashlib.sha256(b"rooms").digest() * 2048  # 64 KiB
    assert seen["big_sha256"] == hashlib.sha256(big).hexdigest()
    # Server -> client event with binary arguments (what the client sent, emitted back).
    assert seen["event"] == [small, {"inner": [small]}, "text"]
    # Binary in a client ack read by the server, then in the server's ack to the client.
    assert seen["ask"] == [
        {"answer": {"reversed": binary(bytes([255, 254, 253, 2, 1, 0])), "list": [small]}}
    ]


# --------------------------------------------------------------------------- rooms


@pytest.mark.parametrize("mode", [*MODES, "mixed"])  # mixed: A websocket, B polling, C default
def test_rooms_reach_their_members_but_not_the_sender_exactly_once_until_they_leave(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("rooms.js", interop_server, mode)

    # Clients A and B join the room (a socket is always in its own room too); C does not.
    assert sorted(seen["join_a"]) == ["<room>", "A"]
    assert sorted(seen["join_b"]) == ["<room>", "B"]
    # A says "hello" and B says "hi A" to the room: each reaches the other member once,
    # never its sender, never C. Lists are per client: A, B, C.
    assert seen["say_ack"] == len("hello")
    assert seen["after_say"] == {
        "said": [[["B", "hi A"]], [["A", "hello"]], []],
        "from_http": [[], [], []],
        "polled": [0, 0, 0],
    }
    # C broadcasts to the room with an ack: both members answer, C is not asked.
    assert seen["ask_room"] == ["A", "B"]
    # An HTTP route emits to the room from outside any socket handler.
    assert seen["http_status"] == 200
    assert seen["after_http"]["from_http"] == [["via-http"], ["via-http"], []]
    assert seen["after_http"]["polled"] == [1, 1, 0]
    # C, outside the room, may still send to it: binary reaches both members.
    bytes_ = binary(bytes([0, 1, 255]))
    assert seen["after_binary"]["said"] == [
        [["B", "hi A"], ["C", bytes_]],
        [["A", "hello"], ["C", bytes_]],
        [],
    ]
    # B leaves: it is back to its own room only and hears nothing more.
    assert seen["leave_b"] == ["B"]
    assert seen["after_leave"]["said"] == seen["after_binary"]["said"]
    assert seen["ask_room_after_leave"] == ["A"]


# --------------------------------------------------------------------------- namespaces


@pytest.mark.parametrize("mode", MODES)
def test_namespaces_refuse_with_the_middleware_error_accept_dynamic_names_and_multiplex(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("namespaces.js", interop_server, mode)

    # The /admin middleware refuses without the token: connect_error carries message and
    # data, and the client does not retry (a CONNECT_ERROR, not a transport failure).
    refusal = {"message": "unauthorized", "data": {"hint": "send auth.token"}}
    assert seen["admin_without_token"] == {**refusal, "active": False}
    assert seen["admin_wrong_token"] == refusal
    assert seen["admin_echo"] == [{"admin": "hi"}]
    # No such namespace: the reference server's error, without data.
    assert seen["unknown"] == {"message": "Invalid namespace", "data": None, "active": False}
    # Dynamic namespaces: any name the regex fully matches, each its own namespace.
    assert seen["dyn_where"] == ["/dyn-42", "/dyn-7"]
    assert seen["dyn_not_matching"] == {"message": "Invalid namespace", "data": None}
    # "/" and "/admin" on one Engine.IO connection; refusing a third leaves them working.
    assert seen["multiplexed"] == {
        "main_echo": ["m"],
        "admin_echo": [{"admin": "a"}],
        "distinct_ids": True,
        "refused": {"message": "Invalid namespace", "data": None},
        "main_after_refusal": ["still here"],
        "admin_after_refusal": [{"admin": "still here"}],
    }
    # Namespaces come and go on that connection without disturbing each other.
    assert seen["rejoined"] == {"new_sid": True, "echo": [{"admin": "back"}]}
    assert seen["server_disconnected_main"] == {
        "reason": "io server disconnect",
        "admin_echo": [{"admin": "alone"}],
    }
    assert seen["main_reconnected"] == ["again"]
    assert seen["one_session_throughout"] is True


# --------------------------------------------------------------------------- disconnect


@pytest.mark.parametrize("mode", MODES)
def test_disconnect_reasons_on_both_sides_and_the_server_forgets_the_departed(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("disconnect.js", interop_server, mode)

    # The server disconnects A ("bye"): A sees "io server disconnect" and does not reconnect.
    assert seen["a"] == {
        "client_reason": "io server disconnect",
        "server_reason": ["server namespace disconnect"],
        "active": False,
    }
    # B disconnects itself.
    assert seen["b"] == {
        "client_reason": "io client disconnect",
        "server_reason": ["client namespace disconnect"],
    }
    # E closes its whole Engine.IO connection.
    assert seen["e"]["server_reason"] == ["transport close"]
    # The watcher, which heard each departure exactly once (above), is unaffected.
    assert seen["watcher_echo"] == ["still here"]
    # B's room lost its only member: a broadcast with acks there expects no answer.
    assert seen["ask_room_of_departed"] == []
    # A recipient that disconnects instead of answering is not waited for.
    assert seen["ask_room_with_departure"] == ["W"]


# --------------------------------------------------------------------------- handshake


@pytest.mark.parametrize("mode", MODES)
def test_the_server_sees_the_auth_query_headers_and_address_of_the_handshake(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("handshake.js", interop_server, mode)
    who = seen["whoami"]

    assert who["auth"] == {"user": "ada", "n": 1, "nested": {"ok": True}, "room": "from-auth"}
    assert who["query"].items() >= {"lang": "fr", "flag": "1", "EIO": "4"}.items()
    assert who["query"]["transport"] == ("websocket" if mode == "websocket" else "polling")
    assert who["ua"] == "hello from node"  # extraHeaders: x-test-header
    assert who["address"] == "127.0.0.1"
    assert seen["sid_matches"] is True
    # The app's connect handler joined the room named in auth.
    assert sorted(seen["rooms"]) == ["<sid>", "extra", "from-auth"]


# --------------------------------------------------------------------------- heartbeat


@pytest.mark.parametrize("mode", MODES)
def test_heartbeat_keeps_a_responsive_client_and_drops_a_silent_one_with_ping_timeout(
    interop_server: LiveServer, mode: str
) -> None:
    seen = scenario("heartbeat.js", interop_server, mode, "4")

    assert (seen["ping_interval"], seen["ping_timeout"]) == (500, 1000)
    # Four server pings (about two seconds), each answered: still the same session.
    assert seen["pings"] == 4
    assert all(gap >= 250 for gap in seen["gaps_ms"]), seen["gaps_ms"]  # paced, not flooded
    assert seen["connected"] is True
    assert seen["same_session"] is True
    assert seen["disconnects"] == []
    assert seen["echo"] == ["alive"]
    # The client that stopped answering pings was closed by the server.
    assert seen["muted"]["server_reason"] == "ping timeout"


# --------------------------------------------------------------------------- reconnection


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", list(SERVERS))
def test_the_client_reconnects_by_itself_when_the_server_restarts_on_the_same_port(
    kind: str, mode: str, tmp_path: Path, spawn_node: Callable[..., NodeProcess]
) -> None:
    server = start_server(kind, APP, tmp_path)
    try:
        node = spawn_node("reconnect.js", server.url, mode)
        assert node.next_json()["phase"] == "connected"

        server.stop()
        assert "Traceback" not in server.log(), server.log()
        down = node.next_json()
        assert down["phase"] == "disconnected"
        # Websocket clients get their connection closed: "transport close". A polling
        # client finds the port closed on its next request, "transport error": both servers
        # let in-flight requests finish before the lifespan shutdown that closes sessions.
        assert down["reason"] in ("transport close", "transport error")
        assert down["active"] is True  # the client is trying to reconnect

        server = start_server(kind, APP, tmp_path, port=server.port)
        seen = node.next_json(timeout=30)
        assert node.wait() == 0
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()

    assert seen["reconnect_attempt"] >= 1
    assert seen["new_sid"] is True and seen["recovered"] is False  # a new session
    assert seen["before"] == ["before"]
    assert seen["while_down"] == "while down"  # buffered by the client, then delivered
    assert seen["after"] == ["after"]
    if mode != "default":  # in default mode the upgrade may or may not be done by now
        assert seen["transport"] == mode
