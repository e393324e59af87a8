"""Never half alive, under real ASGI servers with their default lifespan mode (uvicorn's is
"auto", which takes an exception for "lifespan unsupported" and would serve a zombie)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
import socketio

from tests.conftest import SERVERS, start_server
from tests.redisserver import RedisServer


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_startup_failure_makes_the_asgi_server_exit_with_the_reason(
    kind: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="exited early") as failed:
        start_server(kind, "tests.apps.broken_startup:app", tmp_path)
    log = str(failed.value)
    assert "expected a Redis broker for the redis recovery store" in log
    assert "startup failed" in log.lower() or "lifespan failure" in log.lower()


def test_redis_away_at_startup_serves_alone_until_it_comes_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")  # a port of its own, nothing listening yet
    server = start_server(
        "uvicorn-asyncio", "tests.apps.edges:app", tmp_path, env={"ROOMS_BROKER": redis.url}
    )
    client = socketio.Client()
    try:
        ready = httpx.get(server.url + "/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["broker"] == "away"
        assert redis.url in server.log() and "is away" in server.log()
        client.connect(server.url, wait_timeout=5)
        assert client.call("echo", "alone", timeout=5) == "alone"  # handlers run meanwhile
        redis.start()
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, f"never joined:\n{server.log()}"
            time.sleep(0.1)  # polling the probe as a load balancer would
        assert client.call("echo", "joined", timeout=5) == "joined"
    finally:
        client.disconnect()
        server.stop()
        redis.stop()


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_handler_that_never_ends_does_not_hold_up_the_asgi_servers_shutdown(
    kind: str, tmp_path: Path
) -> None:
    """Its client gone, a handler still waiting must not keep the connection's task alive:
    uvicorn waits for every connection's task before it runs lifespan shutdown (where rooms
    cancels its handlers), so that would wait forever."""
    server = start_server(kind, "tests.apps.edges:app", tmp_path)
    client = socketio.Client()
    try:
        client.connect(server.url, transports=["websocket"], wait_timeout=5)
        client.emit("hang")
        assert client.call("echo", "after", timeout=5) == "after"  # hang was dispatched
        client.disconnect()
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within 15 s of SIGTERM:\n{server.log()}")
    finally:
        client.disconnect()
        server.stop()
