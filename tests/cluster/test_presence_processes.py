"""Presence across real processes: three server processes of tests/apps/presence.py on a
``redis-server`` the test starts, and the real socket.io-client (tests/js/presence_client.js)
keeping each subscriber's list with examples/presence.js.

Every wait is for an event, with a deadline: ``/presence?expect=...`` waits server-side, on the
presence's hooks, until a process's list looks as expected; the client script reports every
``presence_state`` and ``presence_diff`` and the list it keeps, and the test waits for those
reports. The one clock the tests read is the one they assert on: how long after a ``kill -9``
its entries are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.apps.presence import HEARTBEAT_TIMEOUT
from tests.cluster.test_processes import ProcessCluster, get_json, three_of
from tests.conftest import NODE_MODULES, ROOT, LiveServer, kill_group, spawn, start_server
from tests.redisserver import RedisServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

APP = "tests.apps.presence:app"
TOPIC = "lobby"
KINDS = ["uvicorn-asyncio", "hypercorn-trio"]  # one per anyio backend
MARGIN = 2.0
"""Past ``heartbeat_timeout``: the expiry check's period (0.3 s here), the batch window, the
broker and HTTP round trips, and a busy machine."""

Listing = dict[str, list[dict[str, Any]]]
Summary = dict[str, list[str]]
T = TypeVar("T")


# --------------------------------------------------------------------------- the clients


def node_binary() -> str:
    """``node``, with the project's socket.io-client; skipped without (failed under CI)."""
    binary = shutil.which("node")
    if binary is None or not (NODE_MODULES / "socket.io-client").is_dir():
        message = "node and the project's node_modules are needed (make deps installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


class PresenceClients:
    """tests/js/presence_client.js: named sockets, each sending commands and reporting every
    presence event it receives and the list it keeps from them."""

    def __init__(self) -> None:
        self.process = spawn(
            [node_binary(), str(ROOT / "tests" / "js" / "presence_client.js")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
        self._seq = 0
        self._changed = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._lists: dict[tuple[str, str], Listing] = {}
        self._disconnects: dict[str, str] = {}
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                message = json.loads(line)
                with self._changed:
                    self._take(message)
                    self._changed.notify_all()
        finally:  # waits end at once, with the script's stderr
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _take(self, message: dict[str, Any]) -> None:
        report, name = message.get("report"), str(message.get("name"))
        if report == "event":
            self._events.setdefault(name, []).append((message["event"], message["payload"]))
        elif report == "synced":
            self._lists[name, message["topic"]] = message["list"]
        elif report == "disconnect":
            self._disconnects[name] = message["reason"]
        else:
            self._answers[message["id"]] = message

    def _wait(self, what: str, ready: Callable[[], T | None], timeout: float) -> T:
        """``ready()`` once it is not None, checked on every report; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (value := ready()) is None:
                remaining = deadline - time.monotonic()
                if self._ended:
                    raise AssertionError(f"expected {what}, the script exited: {self.stderr()}")
                if remaining <= 0:
                    raise AssertionError(f"expected {what} within {timeout} s")
                self._changed.wait(remaining)
            return value

    def stderr(self) -> str:
        assert self.process.stderr is not None
        self.process.wait(timeout=10)
        return str(self.process.stderr.read())

    def request(self, cmd: str, timeout: float = 15.0, **fields: Any) -> Any:
        assert self.process.stdin is not None
        self._seq += 1
        seq = self._seq
        self.process.stdin.write(json.dumps({"id": seq, "cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        answer = self._wait(f"an answer to {cmd}", lambda: self._answers.pop(seq, None), timeout)
        if not answer["ok"]:
            raise AssertionError(f"{cmd} {fields}: {answer['error']}")
        return answer["result"]

    # The commands.

    def connect(self, name: str, server: LiveServer, mode: str = "websocket") -> None:
        self.request("connect", name=name, url=server.url, mode=mode)

    def enter(self, name: str, user: str, tab: str | None = None, topic: str = TOPIC) -> str:
        """Track socket ``name`` under ``user`` (meta name ``tab``) and subscribe it; its ref."""
        return str(self.request("enter", name=name, topic=topic, user=user, tab=tab or user))

    def watch(self, name: str, topic: str = TOPIC) -> None:
        assert self.request("watch", name=name, topic=topic) is True

    def leave(self, name: str, topic: str = TOPIC) -> int:
        return int(self.request("leave", name=name, topic=topic))

    def close(self, name: str) -> None:
        self.request("close", name=name)

    # What the sockets received.

    def events(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """Every presence event socket ``name`` received so far, in order."""
        with self._changed:
            return list(self._events.get(name, []))

    def diffs(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """The presence_diff payloads among ``events(name)[since:]``."""
        return [payload for event, payload in self.events(name)[since:] if event == "presence_diff"]

    def wait_list(
        self, name: str, expect: Summary, topic: str = TOPIC, timeout: float = 10.0
    ) -> Listing:
        """The list socket ``name`` keeps (examples/presence.js), once it summarises to
        ``expect``."""

        def ready() -> Listing | None:
            listing = self._lists.get((name, topic))
            return listing if listing is not None and summary(listing) == expect else None

        try:
            return self._wait(f"{name}'s list to be {expect}", ready, timeout)
        except AssertionError as exc:
            with self._changed:
                last = self._lists.get((name, topic))
            raise AssertionError(
                f"{exc}; it is {None if last is None else summary(last)}"
            ) from None

    def wait_disconnected(self, name: str, timeout: float = 10.0) -> str:
        return self._wait(f"{name} to disconnect", lambda: self._disconnects.get(name), timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):  # a script that died: killed below all the same
                self.process.stdin.close()  # the script's cue to close its sockets and exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        kill_group(self.process, grace=0)
        self._reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clients() -> Iterator[PresenceClients]:
    driver = PresenceClients()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture
def redis(own_redis: RedisServer) -> RedisServer:
    return own_redis  # three_of starts the processes on it


@pytest.fixture(params=KINDS)
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessCluster]:
    """Three processes of the presence app, one cluster on the test's own Redis."""
    yield from three_of(APP, request, tmp_path)


# --------------------------------------------------------------------------- helpers


def summary(listing: Listing) -> Summary:
    """``{key: sorted names}``: a list without its refs (as tests/apps/presence.py has it)."""
    return {key: sorted(str(meta["name"]) for meta in metas) for key, metas in listing.items()}


def entries(listing: Listing) -> set[tuple[str, str, str]]:
    """``{(key, ref, name)}``: what a list holds, refs included."""
    return {(key, meta["ref"], meta["name"]) for key, metas in listing.items() for meta in metas}


def presence_of(
    server: LiveServer,
    expect: Summary | None = None,
    synced: bool = False,
    timeout: float = 10.0,
    topic: str = TOPIC,
) -> Listing:
    """``/presence`` of one process: its list of ``topic``, once it summarises to ``expect``
    and its subscribers were sent the diffs that made it so (waited for server-side); fails
    after ``timeout`` with what the process holds."""
    query: dict[str, str] = {"topic": topic, "timeout": str(timeout)}
    if expect is not None:
        query["expect"] = json.dumps(expect)
    if synced:
        query["synced"] = "1"
    try:
        listing: Listing = get_json(
            f"{server.url}/presence?{urllib.parse.urlencode(query)}", timeout=timeout + 10
        )
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
        raise AssertionError(
            f"{server.url}: expected {expect} within {timeout} s, got {exc.read().decode()}"
        ) from None
    return listing


def agreed(servers: list[LiveServer], expect: Summary, timeout: float = 10.0) -> Listing:
    """Every one of ``servers`` lists ``expect``, with the same entries (refs included)."""
    listings = [presence_of(server, expect, timeout=timeout) for server in servers]
    for server, listing in zip(servers, listings, strict=True):
        assert summary(listing) == expect, f"{server.url}: {listing}"
        assert entries(listing) == entries(listings[0]), (servers[0].url, server.url)
    return listings[0]


def refs(diffs: list[dict[str, Any]], side: str) -> list[tuple[str, str]]:
    """``(key, ref)`` of every meta in the ``side`` ("joins" or "leaves") of ``diffs``, in
    order, repeats kept (each change must come once)."""
    return [(key, meta["ref"]) for d in diffs for key, metas in d[side].items() for meta in metas]


def watchers(clients: PresenceClients, servers: list[LiveServer]) -> list[str]:
    """A subscriber that tracks nothing on each of ``servers``: ``w0``, ``w1``, ...; each
    first receives an empty state."""
    names = []
    for index, server in enumerate(servers):
        name = f"w{index}"
        clients.connect(name, server)
        clients.watch(name)
        assert clients.events(name) == [("presence_state", {"topic": TOPIC, "state": {}})]
        names.append(name)
    return names


# --------------------------------------------------------------------------- tests


def test_joins_and_leaves_on_different_processes_reach_every_process_and_subscriber(
    processes: ProcessCluster, clients: PresenceClients
) -> None:
    servers = processes.servers
    names = watchers(clients, servers)
    ref = {}
    for user, index, mode in [("ada", 0, "websocket"), ("bob", 1, "polling"), ("cy", 2, "default")]:
        clients.connect(user, servers[index], mode)
        ref[user] = clients.enter(user, user)

    everyone = {"ada": ["ada"], "bob": ["bob"], "cy": ["cy"]}
    listing = agreed(servers, everyone)
    assert entries(listing) == {(user, ref[user], user) for user in everyone}
    for name in [*names, "ada", "bob", "cy"]:
        assert entries(clients.wait_list(name, everyone)) == entries(listing)
    for name in names:
        # Each join came once, as a diff (each watcher subscribed before anyone entered).
        assert sorted(refs(clients.diffs(name), "joins")) == sorted(ref.items())
        assert refs(clients.diffs(name), "leaves") == []

    # bob untracks on process 1 (still subscribed); cy's socket goes from process 2.
    subscribers = [*names, "ada", "bob"]
    seen = {name: len(clients.events(name)) for name in subscribers}
    assert clients.leave("bob") == 1
    clients.close("cy")
    only_ada = {"ada": ["ada"]}
    assert entries(agreed(servers, only_ada)) == {("ada", ref["ada"], "ada")}
    for name in subscribers:
        assert entries(clients.wait_list(name, only_ada)) == {("ada", ref["ada"], "ada")}
        diffs = clients.diffs(name, seen[name])
        assert sorted(refs(diffs, "leaves")) == [("bob", ref["bob"]), ("cy", ref["cy"])]
        assert refs(diffs, "joins") == []
    assert clients.leave("bob") == 0  # nothing left to end


def test_tabs_of_one_user_on_two_processes_merge_under_one_key(
    processes: ProcessCluster, clients: PresenceClients
) -> None:
    servers = processes.servers
    names = watchers(clients, servers)
    clients.connect("tab-1", servers[0])
    clients.connect("tab-2", servers[1], "polling")
    first = clients.enter("tab-1", "ada", "tab-1")
    second = clients.enter("tab-2", "ada", "tab-2")
    assert first != second

    both = {"ada": ["tab-1", "tab-2"]}
    listing = agreed(servers, both)
    assert entries(listing) == {("ada", first, "tab-1"), ("ada", second, "tab-2")}
    for name in [*names, "tab-1", "tab-2"]:
        assert entries(clients.wait_list(name, both)) == entries(listing)

    # Closing one tab: the key stays, with the other tab's meta.
    seen = {name: len(clients.events(name)) for name in [*names, "tab-2"]}
    clients.close("tab-1")
    one = {"ada": ["tab-2"]}
    assert entries(agreed(servers, one)) == {("ada", second, "tab-2")}
    for name in [*names, "tab-2"]:
        assert entries(clients.wait_list(name, one)) == {("ada", second, "tab-2")}
        diffs = clients.diffs(name, seen[name])
        assert (refs(diffs, "leaves"), refs(diffs, "joins")) == ([("ada", first)], [])

    # Closing both: the key is gone.
    seen = {name: len(clients.events(name)) for name in names}
    clients.close("tab-2")
    assert agreed(servers, {}) == {}
    for name in names:
        assert clients.wait_list(name, {}) == {}
        diffs = clients.diffs(name, seen[name])
        assert (refs(diffs, "leaves"), refs(diffs, "joins")) == ([("ada", second)], [])


def test_a_killed_process_s_entries_leave_everywhere_within_heartbeat_timeout(
    processes: ProcessCluster, clients: PresenceClients
) -> None:
    servers = processes.servers
    names = watchers(clients, servers)
    ref = {}
    for name, index, user in [("ada-a", 0, "ada"), ("bob", 1, "bob"), ("ada-c", 2, "ada"),
                              ("cy", 2, "cy"), ("di", 2, "di")]:  # fmt: skip
        clients.connect(name, servers[index])
        ref[name] = clients.enter(name, user, name)
    everyone = {"ada": ["ada-a", "ada-c"], "bob": ["bob"], "cy": ["cy"], "di": ["di"]}
    agreed(servers, everyone)
    for name in [*names, *ref]:
        clients.wait_list(name, everyone)

    survivors, subscribers = servers[:2], [*names[:2], "ada-a", "bob"]
    seen = {name: len(clients.events(name)) for name in subscribers}
    started = time.monotonic()
    servers[2].kill()  # SIGKILL: no goodbye; the others notice its silence
    left = {"ada": ["ada-a"], "bob": ["bob"]}
    for server in survivors:
        listing = presence_of(server, left, timeout=HEARTBEAT_TIMEOUT + MARGIN + 5)
        elapsed = time.monotonic() - started
        assert entries(listing) == {("ada", ref["ada-a"], "ada-a"), ("bob", ref["bob"], "bob")}
        assert elapsed < HEARTBEAT_TIMEOUT + MARGIN, f"its entries left {elapsed:.2f} s after"

    # Each subscriber on a survivor: one diff, the dead process's entries leaving, no more.
    gone = sorted([("ada", ref["ada-c"]), ("cy", ref["cy"]), ("di", ref["di"])])
    for name in subscribers:
        assert summary(clients.wait_list(name, left)) == left
        diffs = clients.diffs(name, seen[name])
        assert len(diffs) == 1, diffs
        assert (sorted(refs(diffs, "leaves")), refs(diffs, "joins")) == (gone, [])
    for name in ["w2", "ada-c", "cy", "di"]:  # its clients were cut off
        assert clients.wait_disconnected(name) in ("transport close", "transport error")
    processes.wait_formed(alive=[0, 1])


def test_a_restarted_process_catches_up(
    processes: ProcessCluster, clients: PresenceClients
) -> None:
    servers = processes.servers
    names = watchers(clients, servers[:2])
    ref = {}
    for user, index in [("ada", 0), ("bob", 1), ("cy", 2)]:
        clients.connect(user, servers[index])
        ref[user] = clients.enter(user, user)
    agreed(servers, {"ada": ["ada"], "bob": ["bob"], "cy": ["cy"]})

    # Killed, and started again on its port at once: the others may still list its entries.
    servers[2].kill()
    restarted = start_server(
        processes.kind,
        APP,
        processes.tmp_path,
        port=servers[2].port,
        env={"ROOMS_BROKER": processes.redis.url},
    )
    servers.append(restarted)  # stopped with the others
    get_json(f"{restarted.url}/cluster?peers=2")
    survivors = {"ada": ["ada"], "bob": ["bob"]}
    listing = presence_of(restarted, survivors, synced=True)
    assert entries(listing) == {("ada", ref["ada"], "ada"), ("bob", ref["bob"], "bob")}

    # A client subscribing there gets everyone in its presence_state.
    clients.connect("late", restarted, "polling")
    clients.watch("late")
    event, payload = clients.events("late")[0]
    assert event == "presence_state" and payload["topic"] == TOPIC
    assert entries(payload["state"]) == entries(listing)

    # The survivors drop the dead process's entries; the restarted one takes part as before.
    assert entries(agreed(servers[:2], survivors, timeout=HEARTBEAT_TIMEOUT + MARGIN + 5)) == (
        entries(listing)
    )
    processes.wait_formed(alive=[0, 1, 3])
    clients.connect("dan", restarted)
    ref["dan"] = clients.enter("dan", "dan")
    now = {**survivors, "dan": ["dan"]}
    final = agreed([servers[0], servers[1], restarted], now)
    assert entries(final) == {(user, ref[user], user) for user in now}
    for name in [*names, "late", "ada", "bob", "dan"]:
        assert entries(clients.wait_list(name, now)) == entries(final)
    for name in names:
        diffs = clients.diffs(name)
        assert sorted(refs(diffs, "joins")) == sorted((user, ref[user]) for user in ref)
        assert refs(diffs, "leaves") == [("cy", ref["cy"])]


@pytest.mark.parametrize("processes", ["uvicorn-asyncio"], indirect=True)
def test_a_process_declared_gone_while_frozen_is_listed_again_once_it_is_back(
    processes: ProcessCluster, clients: PresenceClients
) -> None:
    """A process that stops answering for longer than heartbeat_timeout (a blocked event
    loop, a paused container; SIGSTOP here) is declared gone and its entries leave; once it
    is heard again, it is a live process: its entries show everywhere again, and it lists the
    others' (eventual consistency), without any of them changing anything."""
    servers = processes.servers
    for user, index in [("ada", 0), ("bob", 1), ("cy", 2)]:
        clients.connect(user, servers[index])
        clients.enter(user, user)
    everyone = {"ada": ["ada"], "bob": ["bob"], "cy": ["cy"]}
    agreed(servers, everyone)

    os.killpg(servers[2].process.pid, signal.SIGSTOP)
    try:
        agreed(servers[:2], {"ada": ["ada"], "bob": ["bob"]}, HEARTBEAT_TIMEOUT + MARGIN + 5)
    finally:
        os.killpg(servers[2].process.pid, signal.SIGCONT)
    processes.wait_formed()  # each of the three hears the two others again
    agreed(servers, everyone, timeout=HEARTBEAT_TIMEOUT + MARGIN)
