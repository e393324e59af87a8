"""The examples run for real: the chat demo under uvicorn driven by two socket.io-client
users (tests/js/chat_demo.js), and the framework examples with a python-socketio client."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, SharedServer, run_node, start_server
from tests.redisserver import RedisServer

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    with SharedServer("uvicorn-asyncio", "examples.chat.app:app", tmp_path_factory) as shared:
        yield shared


@pytest.fixture
def chat(chats: SharedServer, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    yield from chats.lend(request)


def test_the_page_loads_the_client_bundle_from_the_same_server(chat: LiveServer) -> None:
    with httpx.Client(base_url=chat.url, timeout=5) as client:
        page = client.get("/")
        bundle = client.get("/socket.io.min.js")
        presence = client.get("/presence.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/socket.io.min.js"></script>' in page.text
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert "socket.io" in bundle.text[:200].lower()  # the banner of the official build
    assert '<script src="/presence.js"></script>' in page.text
    assert presence.status_code == 200 and "function syncPresence" in presence.text


def test_two_users_chat_switch_rooms_and_hear_announcements(chat: LiveServer) -> None:
    result = run_node("chat_demo.js", chat.url)
    assert result.returncode == 0, result.stderr + chat.log()
    check_chat(json.loads(result.stdout))


def test_the_chats_metrics_show_the_session_that_just_ran(chat: LiveServer) -> None:
    def scrape() -> dict[str, float]:
        text = httpx.get(f"{chat.url}/metrics", timeout=5).text
        return {
            f"{sample.name}{sorted(sample.labels.items())}": sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    before = scrape()
    result = run_node("chat_demo.js", chat.url)
    assert result.returncode == 0, result.stderr + chat.log()
    # The script's last step, A's disconnect, is not acknowledged: wait until it is seen.
    deadline = time.monotonic() + 10
    while (after := scrape())["rooms_sockets[('namespace', '/')]"] != 0:
        assert time.monotonic() < deadline, after

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    # chat_demo.js: A and B connect (a third is refused for want of a nickname), make five
    # calls and send one event (typing) between them; B leaves, then A.
    assert moved("rooms_connects_total[('namespace', '/')]") == 2
    assert moved("rooms_refusals_total[('namespace', '/')]") == 1
    assert moved("rooms_packets_received_total[('type', 'event')]") == 6
    assert moved("rooms_packets_sent_total[('type', 'ack')]") == 5
    reason = "[('namespace', '/'), ('reason', 'client namespace disconnect')]"
    assert moved("rooms_disconnects_total" + reason) == 2
    assert moved("rooms_upgrades_total[]") >= 1
    assert moved("rooms_broadcast_recipients_count[]") >= 1


def test_the_chat_serves_the_admin_ui_and_its_namespace_takes_the_documented_login(
    chat: LiveServer,
) -> None:
    page = httpx.get(f"{chat.url}/admin-ui/", timeout=5)
    assert page.status_code == 200
    assert "<title>Socket.IO Admin UI</title>" in page.text
    configs: list[Any] = []
    with socketio.SimpleClient() as admin:  # what the UI does once logged in
        admin.connect(chat.url, namespace="/admin", auth={"username": "admin", "password": "admin"})
        event, *args = admin.receive(timeout=10)
        configs.append((event, args))
    assert configs[0][0] == "config"
    assert "ALL_EVENTS" in configs[0][1][0]["supportedFeatures"]  # development mode
    with socketio.SimpleClient() as intruder, pytest.raises(socketio.exceptions.ConnectionError):
        intruder.connect(chat.url, namespace="/admin", auth={"username": "admin", "password": "x"})


def test_the_chat_runs_unchanged_across_two_processes_on_redis(tmp_path: Path) -> None:
    """``make cluster-demo``'s set-up: the same app, two processes, one Redis; A talks to
    one process and B to the other."""
    redis = RedisServer(tmp_path / "redis")
    env = {"ROOMS_BROKER": redis.url}
    servers: list[LiveServer] = []
    with contextlib.ExitStack() as stack:  # each one stopped, even if starting another fails
        redis.start()
        stack.callback(redis.stop)
        for _ in range(2):
            server = start_server("uvicorn-asyncio", "examples.chat.app:app", tmp_path, env=env)
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:  # both processes know each other (waited for server-side)
            httpx.get(f"{server.url}/ready?peers=1", timeout=15).raise_for_status()
        result = run_node("chat_demo.js", servers[0].url, servers[1].url)
        logs = "".join(server.log() for server in servers)
        assert result.returncode == 0, result.stderr + logs
        check_chat(json.loads(result.stdout))
    assert "Traceback" not in logs, logs


def check_chat(out: dict[str, Any]) -> None:
    # A and B join the lobby; their presence lists (state, then diffs) show them.
    assert out["aJoin"] == {"room": "lobby"}
    assert out["aWho"] == {"room": "lobby", "who": ["A"]}
    assert out["bJoin"] == {"room": "lobby"}
    assert out["bWho"] == {"room": "lobby", "who": ["A", "B"]}
    assert out["aWhoAfterB"] == {"room": "lobby", "who": ["A", "B"]}
    assert out["aSystem"] == {"room": "lobby", "text": "B joined"}
    # A's message reaches B, and the return value of the handler is A's ack.
    assert out["messageAck"] == "delivered"
    assert {k: out["bMessage"][k] for k in ("room", "name", "text")} == {
        "room": "lobby",
        "name": "A",
        "text": "hello from A",
    }
    assert out["bTyping"] == {"name": "A", "active": True}
    # Switching rooms updates both rooms' who-lists.
    assert out["aSwitch"] == {"room": "den"}
    assert out["bWhoAfterSwitch"] == {"room": "lobby", "who": ["B"]}
    assert out["bSwitch"] == {"room": "den"}
    assert out["aWhoInDen"] == {"room": "den", "who": ["A", "B"]}
    # POST /announce, outside any handler, reaches everyone.
    assert out["announceStatus"] == 200
    assert out["announceReply"] == {"text": "maintenance at noon", "room": None, "reached": 2}
    assert out["announced"] == [{"text": "maintenance at noon"}] * 2
    # A disconnect updates the who-list; no nickname is refused; polling upgraded.
    assert out["aWhoAfterDisconnect"] == {"room": "den", "who": ["A"]}
    assert out["refused"] == "pick a nickname first"
    assert out["aTransport"] == "websocket"


@pytest.mark.anyio
async def test_a_missing_client_bundle_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from examples.chat import app as chat_app

    monkeypatch.setattr(chat_app, "CLIENT_BUNDLE", tmp_path / "socket.io.min.js")
    transport = httpx.ASGITransport(app=chat_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat") as client:
        response = await client.get("/socket.io.min.js")
    assert response.status_code == 500
    assert "make demo" in response.text


def test_announce_needs_a_text(chat: LiveServer) -> None:
    response = httpx.post(chat.url + "/announce", content=b"  ", timeout=5)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("module", "framework"), [("fastapi", "FastAPI"), ("litestar", "Litestar")]
)
def test_framework_example_serves_its_routes_and_socketio(
    module: str, framework: str, tmp_path: Path
) -> None:
    pytest.importorskip(module)  # litestar is not a dev dependency
    server = start_server("uvicorn-asyncio", f"examples.{module}_app:app", tmp_path)
    try:
        with (
            socketio.SimpleClient() as client,
            httpx.Client(base_url=server.url, timeout=5) as http,
        ):
            client.connect(server.url, auth={"user": "ada"}, wait_timeout=5)
            assert client.call("echo", "hi", timeout=5) == {"user": "ada", "echo": "hi"}

            index = http.get("/")
            assert index.status_code == 200
            assert index.json() == {"hello": f"from {framework}", "connected": ["ada"]}

            assert http.post("/broadcast", params={"text": "news!"}).is_success
            assert client.receive(timeout=5) == ["news", "news!"]
    finally:
        server.stop()
    assert "Traceback" not in server.log()
