"""Real processes sharing a real Redis, driven by the real socket.io-client.

Three server processes on 127.0.0.1 (uvicorn on asyncio, or hypercorn on trio) form one
cluster over a ``redis-server`` the test starts; JS clients spread over them. Also
``uvicorn --workers 3``: one port, three processes, no sticky sessions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SERVERS, LiveServer, free_port, kill_group, spawn, start_server
from tests.jsdriver import JsDriver, cut_soak
from tests.redisserver import RedisServer

pytestmark = pytest.mark.interop

APP = "tests.apps.cluster:app"


def get_json(url: str, timeout: float = 30) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class ProcessCluster:
    """Server processes of one cluster, and the Redis they share."""

    def __init__(self, redis: RedisServer, kind: str, tmp_path: Path) -> None:
        self.redis = redis
        self.kind = kind
        self.tmp_path = tmp_path
        self.servers: list[LiveServer] = []

    def start(self, count: int, app: str = APP) -> None:
        env = {"ROOMS_BROKER": self.redis.url}
        for _ in range(count):
            self.servers.append(start_server(self.kind, app, self.tmp_path, env=env))
        self.wait_formed()

    def wait_formed(self, alive: list[int] | None = None, ready: bool = False) -> None:
        """Every live server knows every other one (waited for server-side, on events)."""
        alive = list(range(len(self.servers))) if alive is None else alive
        query = f"peers={len(alive) - 1}" + ("&ready=1" if ready else "")
        for index in alive:
            get_json(f"{self.servers[index].url}/cluster?{query}")

    def uid(self, index: int) -> str:
        return str(get_json(f"{self.servers[index].url}/cluster")["uid"])

    def logs(self) -> str:
        return "\n".join(server.log() for server in self.servers)

    def stop(self) -> None:
        with contextlib.ExitStack() as stack:  # every one, even if stopping another fails
            for server in self.servers:
                stack.callback(server.stop)


@pytest.fixture
def redis(own_redis: RedisServer) -> RedisServer:
    return own_redis


def three_of(app: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessCluster]:
    """Three processes of ``app`` under the server kind ``request.param``, on one Redis."""
    cluster = ProcessCluster(request.getfixturevalue("redis"), str(request.param), tmp_path)
    try:
        cluster.start(3, app=app)
        yield cluster
        died = [server for server in cluster.servers if server.died()]  # not killed by the test
    finally:
        cluster.stop()
    if died:
        pytest.fail("\n".join(server.death_report("during this test") for server in died))
    assert "Traceback" not in cluster.logs(), cluster.logs()


@pytest.fixture(params=list(SERVERS))
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessCluster]:
    yield from three_of(APP, request, tmp_path)


@pytest.fixture
def js() -> Iterator[JsDriver]:
    driver = JsDriver()
    yield driver
    driver.close()


# Clients spread over the three processes, in every transport mode.
SPREAD = [("ada", 0, "default"), ("bob", 1, "websocket"), ("cy", 2, "polling"),
          ("di", 0, "polling"), ("ed", 1, "default"), ("flo", 2, "websocket")]  # fmt: skip


def connect_all(js: JsDriver, c: ProcessCluster, rooms: list[str]) -> list[str]:
    for name, index, mode in SPREAD:
        js.connect(name, c.servers[index].url, mode, auth={"name": name, "rooms": rooms})
    return [name for name, _, _ in SPREAD]


def test_room_broadcasts_reach_every_member_exactly_once(
    processes: ProcessCluster, js: JsDriver
) -> None:
    names = connect_all(js, processes, ["lobby"])
    js.connect("outsider", processes.servers[1].url, "websocket")

    assert js.call("ada", "say", "lobby", {"n": 1}) == [True]
    assert js.call("ada", "say", "lobby", {"n": 2}) == [True]
    get_json(f"{processes.servers[2].url}/emit?room=lobby&text=from-http")

    for name in names:
        # Each once, in the order each process sent them (HTTP came from another one).
        got = js.events(name, 3)
        said = [args[0] for _, args in got]
        assert sorted(said, key=str) == sorted([{"n": 1}, {"n": 2}, "from-http"], key=str)
        assert said.index({"n": 1}) < said.index({"n": 2})
    assert js.request("drain", name="outsider") == []


def test_fetch_join_leave_and_disconnect_act_across_processes(
    processes: ProcessCluster, js: JsDriver
) -> None:
    names = connect_all(js, processes, ["blue"])
    uids = {processes.uid(i) for i in range(3)}

    (found,) = js.call("bob", "fetch", "blue")
    assert [f["name"] for f in found] == sorted(names)
    assert {f["node"] for f in found} == uids  # sockets reported by every process

    assert js.call("cy", "room_join", "blue", "green") == [True]
    (found,) = js.call("cy", "fetch", "green")
    assert [f["name"] for f in found] == sorted(names)
    assert all(f["rooms"] == ["blue", "green"] for f in found)

    assert js.call("ada", "room_leave", "green", "blue") == [True]
    (found,) = js.call("ada", "fetch", "blue")
    assert found == []

    js.connect("outsider", processes.servers[2].url, "websocket")
    assert js.call("outsider", "room_disconnect", "green") == [True]
    for name in names:
        assert js.events(name, 1) == [("disconnect", ["io server disconnect"])]


def test_broadcast_acks_and_server_side_emits_aggregate_across_processes(
    processes: ProcessCluster, js: JsDriver
) -> None:
    names = connect_all(js, processes, ["poll"])
    for name in names:
        js.request("answer", name=name, event="vote", value=f"{name}-yes")

    (result,) = js.call("ed", "poll", "poll", 5)
    assert result == {"complete": True, "answers": sorted(f"{n}-yes" for n in names)}

    (result,) = js.call("ada", "servers")
    assert result == {"complete": True, "uids": sorted({processes.uid(1), processes.uid(2)})}


def test_a_killed_process_leaves_the_others_serving_and_their_requests_ending(
    processes: ProcessCluster, js: JsDriver
) -> None:
    names = connect_all(js, processes, ["poll"])
    for name in names:
        js.request("answer", name=name, event="vote", value=name)
    survivors = [name for name, index, _ in SPREAD if index != 2]

    # Mid-traffic: a broadcast is in flight when the process dies.
    assert js.call("ada", "say", "poll", "before") == [True]
    processes.servers[2].kill()  # SIGKILL: no goodbye

    # Still believed alive: the broadcast with acks ends by its timeout, never hangs,
    # with every survivor's answer.
    (result,) = js.call("bob", "poll", "poll", 1, timeout=10000)
    assert result == {"complete": False, "answers": sorted(survivors)}
    # Once its heartbeats are missed, it is forgotten; requests complete without it.
    processes.wait_formed(alive=[0, 1])
    (result,) = js.call("bob", "poll", "poll", 5)
    assert result == {"complete": True, "answers": sorted(survivors)}
    (result,) = js.call("ada", "servers")
    assert result == {"complete": True, "uids": [processes.uid(1)]}
    # The survivors keep serving each other.
    assert js.call("di", "say", "poll", "after") == [True]
    for name in survivors:
        # Two polls asked them to vote in between.
        got = js.events(name, 4)
        assert [args[0] for event, args in got if event == "said"] == ["before", "after"]
        assert [event for event, _ in got].count("vote") == 2


def test_a_redis_restart_is_survived(processes: ProcessCluster, js: JsDriver) -> None:
    names = connect_all(js, processes, ["lobby"])

    processes.redis.restart()
    processes.wait_formed(ready=True)

    assert js.call("cy", "say", "lobby", "after the restart") == [True]
    for name in names:
        assert js.events(name, 1) == [("said", ["after the restart"])]


# --------------------------------------------------------------------------- workers


def test_uvicorn_workers_need_no_sticky_sessions(
    redis: RedisServer, js: JsDriver, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "workers.log"
    command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port",
               str(port), "--workers", "3", "--log-level", "warning"]  # fmt: skip
    with log_path.open("wb") as log:
        process = spawn(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "ROOMS_BROKER": redis.url},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_workers(url, process, log_path)
        names = [f"w{i}" for i in range(12)]
        for name in names:
            # The default client: long-polling first, then the websocket upgrade, each
            # request reaching whichever worker the kernel picks.
            js.connect(name, url, "default", auth={"name": name, "rooms": ["all"]})
        for name in names:
            assert js.request("upgraded", name=name, timeout=10000)["transport"] == "websocket"
            js.request("answer", name=name, event="vote", value=name)
        nodes = {js.call(name, "node")[0] for name in names}
        assert len(nodes) > 1  # sessions live in several workers

        assert js.call("w0", "say", "all", "hello workers") == [True]
        for name in names:
            assert js.events(name, 1) == [("said", ["hello workers"])]
        (result,) = js.call("w5", "poll", "all", 5)
        assert result == {"complete": True, "answers": sorted(names)}
    finally:
        kill_group(process, grace=20)  # SIGTERM first: the supervisor stops its workers
    log = log_path.read_text()
    assert "Traceback" not in log, log
    relayed = sum(int(n) for n in re.findall(r"RELAY-COUNTS relayed=(\d+)", log))
    assert relayed > 0, "some requests reached a worker that did not own their session"


def wait_for_workers(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Readiness of a starting process group: poll until it listens, then wait (server-side)
    for the cluster to form."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited early:\n{log_path.read_text()}")
        try:
            get_json(f"{url}/cluster?peers=2", timeout=15)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the port is not listening yet; not test synchronisation


# --------------------------------------------------------------------------- recovery


@pytest.fixture(params=list(SERVERS))
def recovering(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessCluster]:
    """Three processes of the recovery test app, sharing sessions and the log in Redis."""
    yield from three_of("tests.apps.recovery:app", request, tmp_path)


def test_a_client_recovers_on_another_process(recovering: ProcessCluster, js: JsDriver) -> None:
    a, b, c = (server.url for server in recovering.servers)
    sid = js.connect("ada", a, "websocket", auth={"name": "ada", "rooms": ["news"]})["id"]
    get_json(f"{b}/burst?room=news&sid={sid}&start=0&stop=10")  # sent from another process
    assert ticks(js.events("ada", 20)) == interleaved(0, 10)

    get_text(f"{a}/cut?sid={sid}")  # process a drops it and saves its session
    assert js.events("ada", 1)[0][0] == "disconnect"
    get_json(f"{c}/burst?room=news&sid={sid}&start=10&stop=40")  # while away

    state = js.request("reconnect", name="ada", url=b)  # back through process b
    assert state == {**state, "connected": True, "id": sid, "recovered": True}
    assert ticks(js.events("ada", 60)) == interleaved(10, 40)
    (me,) = js.call("ada", "whoami")
    assert me["rooms"] == ["news"] and me["data"] == {"name": "ada"}
    assert me["node"] == recovering.uid(1)


@pytest.mark.parametrize("mode", ["websocket", "polling"])
def test_a_client_back_on_another_process_before_its_drop_was_noticed_recovers(
    recovering: ProcessCluster, mode: str
) -> None:
    """Unnoticed cuts (tests/js/cut_soak.js), each reconnect through the next process: the
    process holding the old socket gives it up, saves its session, and the new one restores
    it from Redis."""
    urls = [server.url for server in recovering.servers]
    result = cut_soak(mode, 12, urls[0], urls)
    assert result == {
        **result, "recovered": 12, "fresh": 0, "lost": 0, "duplicated": 0, "reordered": 0
    }  # fmt: skip


def ticks(events: list[tuple[str, list[Any]]]) -> list[tuple[str, Any]]:
    assert all(isinstance(args[-1], str) for _, args in events)  # each with its offset
    return [(event, args[0]) for event, args in events]


def interleaved(start: int, stop: int) -> list[tuple[str, int]]:
    return [pair for n in range(start, stop) for pair in (("tick", n), ("private", n))]


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


# --------------------------------------------------------------------------- mailbox

MAILBOX_APP = "tests.apps.mailbox:app"


@pytest.fixture(params=list(SERVERS))
def mailing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessCluster]:
    yield from three_of(MAILBOX_APP, request, tmp_path)


def test_mail_waits_for_its_user_through_a_restart_of_every_process(
    mailing: ProcessCluster, js: JsDriver
) -> None:
    ids = get_json(f"{mailing.servers[0].url}/send?user=u1&start=0&stop=3")  # u1 is offline
    mailing.stop()  # every server process goes; Redis stays
    mailing.servers = []
    mailing.start(3, app=MAILBOX_APP)
    a, b, c = (server.url for server in mailing.servers)
    ids += get_json(f"{c}/send?user=u1&start=3&stop=5")
    assert ids == sorted(ids)  # ids sort in sending order

    # A client that takes the first message and leaves without acking it...
    js.connect("lazy", b, "websocket", auth={"user": "u1"})
    assert js.events("lazy", 1) == [("note", [{"n": 0}, ids[0]])]
    js.request("close", name="lazy")

    # ...and one that acks: everything, oldest first, the first one again.
    js.connect("u1", a, "websocket", auth={"user": "u1"}, answers={"note": "ok"})
    assert js.events("u1", 5) == [("note", [{"n": n}, ids[n]]) for n in range(5)]
    assert get_json(f"{a}/status?user=u1&acked=5") == {"waiting": 0, "acked": 5}

    # Acked mail is not delivered again: the next connection gets only what is new.
    js.request("close", name="u1")
    js.connect("again", c, "websocket", auth={"user": "u1"}, answers={"note": "ok"})
    (new_id,) = get_json(f"{b}/send?user=u1&start=5&stop=6")  # delivered live, via c
    assert js.events("again", 1) == [("note", [{"n": 5}, new_id])]
