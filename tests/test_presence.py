"""Presence (rooms.presence), as a spec: who is in which topic, on every process, with a
``presence_state`` for each subscriber and batched ``presence_diff`` events after it.

Each test runs on asyncio and trio. A ``Watcher`` is a client subscribed to a topic that keeps
the list the way examples/presence.js does; tests wait on what it receives, never on time.
Several servers on one broker (``memory://`` and a real Redis) stand for the processes of a
cluster.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc
import pytest

import rooms
from rooms.brokers import Broker, broker_from_url
from rooms.testing import Lifespan, TestClient
from tests.cluster.conftest import Severable
from tests.conftest import ROOT, run_process

pytestmark = pytest.mark.anyio

WINDOW = 0.02  # the batch window of every presence here
Listing = dict[str, list[dict[str, Any]]]


def app(broker: Broker | str | None = None, **options: Any) -> rooms.Server:
    """A server whose clients track themselves (under the user they connect as) and watch
    topics through handlers, as an application would."""
    options.setdefault("heartbeat_interval", 0.1)
    options.setdefault("heartbeat_timeout", 1.0)
    server = rooms.Server(broker=broker, **options)
    presence = server.presence
    presence.batch_window = WINDOW
    server.of("/other")

    @server.on("connect")
    def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
        socket.data["user"] = auth.get("user", "anon")

    @server.on("track")
    def track(socket: rooms.Socket, topic: str, meta: dict[str, Any] | None = None) -> str:
        return presence.track(socket, topic, socket.data["user"], meta)

    @server.on("update")
    def update(socket: rooms.Socket, topic: str, meta: dict[str, Any]) -> str:
        return presence.update(socket, topic, socket.data["user"], meta)

    @server.on("untrack")
    def untrack(socket: rooms.Socket, topic: str) -> int:
        return presence.untrack(socket, topic)

    @server.on("watch")
    async def watch(socket: rooms.Socket, topic: str) -> None:
        await presence.subscribe(socket, topic)

    return server


def apply(listing: Listing, diff: dict[str, Any]) -> None:
    """A diff, applied as the wire contract says: leaves by ref, then joins."""
    for key, metas in diff["leaves"].items():
        gone = {meta["ref"] for meta in metas}
        kept = [meta for meta in listing.get(key, []) if meta["ref"] not in gone]
        if kept:
            listing[key] = kept
        else:
            listing.pop(key, None)
    for key, metas in diff["joins"].items():
        added = {meta["ref"] for meta in metas}
        listing[key] = [m for m in listing.get(key, []) if m["ref"] not in added] + metas


def normal(listing: Listing) -> Listing:
    """A listing with each key's metas in ref order (processes learn them in other orders)."""
    return {key: sorted(metas, key=lambda m: m["ref"]) for key, metas in listing.items()}


class Watcher:
    """A client subscribed to ``topic``, keeping its list from the state and the diffs."""

    def __init__(self, client: TestClient, topic: str) -> None:
        self.client = client
        self.topic = topic
        self.list: Listing = {}
        self.diffs: list[dict[str, Any]] = []

    async def state(self) -> dict[str, Any]:
        event, (payload,) = await self.client.receive()
        assert (event, payload["topic"]) == ("presence_state", self.topic)
        self.list = {key: list(metas) for key, metas in payload["state"].items()}
        return dict(payload)

    async def next_diff(self, timeout: float = 5.0) -> dict[str, Any]:
        event, (payload,) = await self.client.receive(timeout=timeout)
        assert (event, payload["topic"]) == ("presence_diff", self.topic)
        apply(self.list, payload)
        self.diffs.append(payload)
        return dict(payload)

    async def until(self, done: Callable[[Listing], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not done(self.list):
                await self.next_diff(timeout)


class Servers:
    """Servers in this process, each as if a process of its own (in a task of its own, as
    tests/cluster does), and their clients."""

    def __init__(self, *servers: rooms.Server, started: int | None = None) -> None:
        self.servers = list(servers)
        self.started = len(servers) if started is None else started
        self.stops: dict[int, tuple[anyio.Event, anyio.Event]] = {}
        self.stack = AsyncExitStack()
        self.clients = AsyncExitStack()
        self.count = 0

    async def __aenter__(self) -> Servers:
        self.tg = await self.stack.enter_async_context(anyio.create_task_group())
        for index in range(self.started):
            await self.start(index)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.clients.aclose()
            for index in list(self.stops):
                await self.stop(index)
        finally:
            await self.stack.aclose()

    async def start(self, index: int) -> None:
        """Start server ``index``; returns once every running server knows the others."""
        stop, stopped = self.stops[index] = anyio.Event(), anyio.Event()
        await self.tg.start(_serve, self.servers[index], stop, stopped)
        for running in self.stops:
            node = self.servers[running].node
            if node is not None:
                await node.wait_for_peers(len(self.stops) - 1)

    async def stop(self, index: int) -> None:
        stop, stopped = self.stops.pop(index)
        stop.set()
        with anyio.fail_after(10):
            await stopped.wait()

    async def client(self, index: int, user: str) -> TestClient:
        client = TestClient(self.servers[index], lifespan=False)
        await self.clients.enter_async_context(client)
        await client.connect(auth={"user": user})
        return client

    def socket(self, index: int, client: TestClient, namespace: str = "/") -> rooms.Socket:
        return self.servers[index].of(namespace).sockets[client.namespaces[namespace]]

    async def watch(self, index: int, topic: str) -> Watcher:
        """A new client of server ``index`` subscribed to ``topic`` (its state read)."""
        self.count += 1
        watcher = Watcher(await self.client(index, f"watcher-{self.count}"), topic)
        await watcher.client.call("watch", topic)
        await watcher.state()
        return watcher


async def _serve(
    server: rooms.Server,
    stop: anyio.Event,
    stopped: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[None],
) -> None:
    try:
        async with Lifespan(server):
            task_status.started()
            await stop.wait()
    finally:
        stopped.set()


Make = Callable[..., rooms.Server]


@pytest.fixture(params=["memory", "redis"])
def cluster(request: pytest.FixtureRequest) -> Make:
    """``cluster(wrap=None, **options)``: a server of one new cluster (``app``), on a
    ``memory://`` broker of its own or a real Redis; ``wrap`` wraps each one's broker."""
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))
    else:
        url = f"memory://{uuid.uuid4()}"
    prefix = f"presence-{uuid.uuid4().hex[:12]}"  # a cluster of its own on a shared Redis

    def make(wrap: Callable[[Broker], Broker] | None = None, **options: Any) -> rooms.Server:
        broker = broker_from_url(url)
        return app(broker if wrap is None else wrap(broker), cluster_prefix=prefix, **options)

    return make


# --------------------------------------------------------------------------- one process


async def test_a_tracked_socket_is_listed_under_its_key_until_it_untracks() -> None:
    server = app()
    async with Servers(server) as s:
        ada = await s.client(0, "ada")
        ref = await ada.call("track", "lobby", {"name": "Ada"})

        assert server.presence.list("lobby") == {"ada": [{"ref": ref, "name": "Ada"}]}
        assert server.presence.get("lobby", "ada") == [{"ref": ref, "name": "Ada"}]
        assert server.presence.list("kitchen") == {}

        assert await ada.call("untrack", "lobby") == 1
        assert server.presence.list("lobby") == {}
        assert await ada.call("untrack", "lobby") == 0


async def test_several_sockets_of_one_key_merge_under_it_with_a_meta_each() -> None:
    server = app()
    async with Servers(server) as s:
        tab1, tab2, bob = [await s.client(0, user) for user in ("ada", "ada", "bob")]
        refs = {
            await tab1.call("track", "lobby", {"tab": 1}),
            await tab2.call("track", "lobby", {"tab": 2}),
            await bob.call("track", "lobby"),
        }
        await tab1.call("track", "kitchen")  # one socket, several topics

        listed = server.presence.list("lobby")
        assert sorted(listed) == ["ada", "bob"]
        assert sorted(meta["tab"] for meta in listed["ada"]) == [1, 2]
        assert {meta["ref"] for metas in listed.values() for meta in metas} == refs
        assert listed["bob"] == [{"ref": listed["bob"][0]["ref"]}]  # no meta: the ref alone
        assert list(server.presence.list("kitchen")) == ["ada"]
        # Keys are counted once however many sockets track them.
        assert server.presence.count("lobby") == 2
        assert server.presence.count("kitchen") == 1
        assert server.presence.count("nowhere") == 0


async def test_a_socket_that_disconnects_leaves_every_topic_by_itself() -> None:
    server = app()
    async with Servers(server) as s:
        lobby, kitchen = await s.watch(0, "lobby"), await s.watch(0, "kitchen")
        ada = await s.client(0, "ada")
        await ada.call("track", "lobby")
        await ada.call("track", "kitchen")
        await lobby.until(lambda listed: "ada" in listed)
        await kitchen.until(lambda listed: "ada" in listed)

        await ada.disconnect()

        for watcher in (lobby, kitchen):
            diff = await watcher.next_diff()
            assert (list(diff["leaves"]), diff["joins"]) == (["ada"], {})
        assert server.presence.list("lobby") == server.presence.list("kitchen") == {}


async def test_a_subscriber_gets_the_state_then_one_diff_per_window_with_every_change() -> None:
    server = app()
    presence = server.presence
    async with Servers(server) as s:
        ada = await s.client(0, "ada")
        ref = await ada.call("track", "lobby", {"name": "Ada"})
        watcher = Watcher(await s.client(0, "watcher"), "lobby")
        await watcher.client.call("watch", "lobby")

        assert await watcher.state() == {
            "topic": "lobby",
            "state": {"ada": [{"ref": ref, "name": "Ada"}]},
        }

        others = [await s.client(0, f"user{n}") for n in range(5)]
        for n, client in enumerate(others):  # all within one window: no await in between
            presence.track(s.socket(0, client), "lobby", f"user{n}", {"n": n})

        diff = await watcher.next_diff()
        assert sorted(diff["joins"]) == [f"user{n}" for n in range(5)]
        assert diff["leaves"] == {}
        # Nothing more about them: the next diff is the next change.
        await ada.call("untrack", "lobby")
        diff = await watcher.next_diff()
        assert (diff["joins"], diff["leaves"]) == ({}, {"ada": [{"ref": ref, "name": "Ada"}]})
        assert normal(watcher.list) == normal(presence.list("lobby"))


async def test_a_join_and_a_leave_within_one_window_cancel_out() -> None:
    server = app()
    presence = server.presence
    async with Servers(server) as s:
        watcher = await s.watch(0, "lobby")
        socket = s.socket(0, await s.client(0, "ada"))

        presence.track(socket, "lobby", "ghost")
        presence.untrack(socket, "lobby", "ghost")
        ref = presence.track(socket, "lobby", "ada")

        assert await watcher.next_diff() == {
            "topic": "lobby",
            "joins": {"ada": [{"ref": ref}]},
            "leaves": {},
        }


async def test_an_update_is_one_diff_where_the_old_meta_leaves_and_the_new_one_joins() -> None:
    server = app()
    async with Servers(server) as s:
        watcher = await s.watch(0, "lobby")
        ada = await s.client(0, "ada")
        old = await ada.call("track", "lobby", {"status": "away"})
        await watcher.next_diff()

        new = await ada.call("update", "lobby", {"status": "busy"})

        assert new != old
        assert await watcher.next_diff() == {
            "topic": "lobby",
            "joins": {"ada": [{"ref": new, "status": "busy"}]},
            "leaves": {"ada": [{"ref": old, "status": "away"}]},
        }
        assert (
            watcher.list
            == server.presence.list("lobby")
            == {"ada": [{"ref": new, "status": "busy"}]}
        )


async def test_a_subscriber_within_a_window_gets_the_state_that_the_next_diff_applies_to() -> None:
    server = app()
    presence = server.presence
    async with Servers(server) as s:
        first = await s.watch(0, "lobby")
        second = Watcher(await s.client(0, "late"), "lobby")
        ada = s.socket(0, await s.client(0, "ada"))

        ref = presence.track(ada, "lobby", "ada")
        await presence.subscribe(s.socket(0, second.client), "lobby")  # in the same window

        assert (await second.state())["state"] == {}  # as the first subscriber knows it
        for watcher in (first, second):
            assert (await watcher.next_diff())["joins"] == {"ada": [{"ref": ref}]}
            assert watcher.list == presence.list("lobby")


async def test_hooks_hear_every_join_and_leave_and_one_that_raises_harms_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = app()
    presence = server.presence
    heard, hear = anyio.create_memory_object_stream[tuple[Any, ...]](100)

    @presence.on_join
    def boom(topic: str, key: str, meta: dict[str, Any]) -> None:
        raise RuntimeError("a bug in the application")

    @presence.on_join
    async def joined(topic: str, key: str, meta: dict[str, Any]) -> None:
        await heard.send(("join", topic, key, meta["name"], key in presence.list(topic)))

    @presence.on_leave
    def left(topic: str, key: str, meta: dict[str, Any]) -> None:
        heard.send_nowait(("leave", topic, key, meta["name"], key in presence.list(topic)))

    with heard, hear, caplog.at_level(logging.ERROR, logger="rooms.presence"):
        async with Servers(server) as s:
            watcher = await s.watch(0, "lobby")
            ada = await s.client(0, "ada")

            await ada.call("track", "lobby", {"name": "Ada"})
            with anyio.fail_after(5):  # after list() shows it
                assert await hear.receive() == ("join", "lobby", "ada", "Ada", True)
            await watcher.next_diff()  # the diff went out all the same

            await ada.call("untrack", "lobby")
            with anyio.fail_after(5):
                assert await hear.receive() == ("leave", "lobby", "ada", "Ada", False)

    (record,) = [r for r in caplog.records if r.name == "rooms.presence"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "presence on_join hook " in record.getMessage()
    assert "boom for topic 'lobby' failed" in record.getMessage()


async def test_what_cannot_be_tracked_is_refused_saying_what_was_expected() -> None:
    server = app(limits=rooms.Limits(max_name_length=16, max_json_depth=4))
    presence = server.presence
    presence.max_meta_bytes = 64
    presence.max_tracks_per_socket = 2
    presence.max_subscriptions_per_socket = 1
    async with Servers(server) as s:
        client = await s.client(0, "ada")
        await client.connect("/other")
        socket, elsewhere = s.socket(0, client), s.socket(0, client, "/other")
        presence.track(socket, "lobby", "ada")
        await presence.subscribe(socket, "lobby")

        def track(topic: Any = "t", key: Any = "k", meta: Any = None) -> Any:
            return lambda: presence.track(socket, topic, key, meta)

        refused: list[tuple[Callable[[], Any], type[Exception], str]] = [
            (track(topic=42), TypeError, "the topic as a str, got int"),
            (track(topic=""), ValueError, "a topic of 1 to 16 characters"),
            (track(topic="t" * 17), ValueError, "(limits.max_name_length), got 17"),
            (track(key=None), TypeError, "the key as a str, got NoneType"),
            (track(meta=[1]), TypeError, "meta as a dict (a JSON object) or None, got list"),
            (track(meta={"ref": 1}), ValueError, "meta without a 'ref' key"),
            (track(meta={"x": "y" * 64}), ValueError, "meta of at most 64 bytes as JSON, got 72"),
            (track(meta={"x": b"\x00"}), TypeError, "meta that JSON can carry"),
            (track(meta={"x": float("nan")}), TypeError, "meta that JSON can carry"),
            (track(meta={"a": [[[[1]]]]}), ValueError, "meta nested at most 4 deep"),
            (track("lobby", "ada"), ValueError, "got it tracked already"),
            (lambda: presence.update(socket, "t", "k", {}), ValueError, "track() first"),
            (
                lambda: presence.track(elsewhere, "t", "k"),
                ValueError,
                "a socket of namespace '/', got one of '/other'",
            ),
        ]
        for call, error, expected in refused:
            with pytest.raises(error, match="expected") as caught:
                call()
            assert expected in str(caught.value), str(caught.value)

        presence.track(socket, "t", "k")  # the second entry: the last one allowed
        with pytest.raises(ValueError, match=r"expected at most 2 entries per socket"):
            presence.track(socket, "t2", "k")
        with pytest.raises(ValueError, match=r"expected at most 1 subscriptions per socket"):
            await presence.subscribe(socket, "t")
        with pytest.raises(ValueError, match=r"expected a batch_window of 0 seconds or more"):
            presence.batch_window = -1
        assert sorted(presence.list("lobby")) == ["ada"]  # nothing refused was kept


async def test_memory_follows_entries() -> None:
    server = app()
    presence = server.presence
    async with Servers(server) as s:
        watcher = await s.watch(0, "lobby")
        clients = [await s.client(0, f"user{n}") for n in range(3)]
        for client in clients:
            await client.call("track", "lobby", {"big": "x" * 500})
            await client.call("track", "kitchen")
        await watcher.until(lambda listed: len(listed) == 3)

        for client in clients:
            await client.disconnect()
        await watcher.until(lambda listed: not listed)

        assert presence.state.topics == {} and presence.state.owners == {}
        assert list(presence._holdings.held) == [watcher.client.namespaces["/"]]  # the subscriber


async def test_a_socket_refused_after_tracking_in_its_connect_handler_leaves_no_entry() -> None:
    server = app()
    presence = server.presence

    @server.on("connect")
    def connect(socket: rooms.Socket, auth: dict[str, Any]) -> bool:
        socket.data["user"] = auth["user"]
        presence.track(socket, "lobby", auth["user"])
        return auth["user"] != "mallory"

    async with Servers(server) as s:
        watcher = await s.watch(0, "lobby")
        with pytest.raises(rooms.ConnectionRefused):
            await s.client(0, "mallory")
        await s.client(0, "ada")

        await watcher.until(lambda listed: sorted(listed) == ["ada", "watcher-1"])
        assert sorted(presence.list("lobby")) == ["ada", "watcher-1"]


# --------------------------------------------------------------------------- a cluster


async def test_joins_on_every_process_show_in_every_list(cluster: Make) -> None:
    servers = [cluster() for _ in range(3)]
    async with Servers(*servers) as s:
        watchers = [await s.watch(index, "lobby") for index in range(3)]
        for index, user in [(0, "ada"), (1, "bob"), (2, "cy"), (2, "ada")]:
            client = await s.client(index, user)
            await client.call("track", "lobby", {"on": index})

        for watcher in watchers:
            await watcher.until(
                lambda listed: sorted(listed) == ["ada", "bob", "cy"] and len(listed["ada"]) == 2
            )
        lists = [normal(server.presence.list("lobby")) for server in servers]
        assert lists[0] == lists[1] == lists[2] == normal(watchers[0].list)
        assert sorted(meta["on"] for meta in lists[0]["ada"]) == [0, 2]


async def test_a_process_that_stops_has_its_entries_removed_everywhere_with_leave_diffs(
    cluster: Make,
) -> None:
    servers = [cluster() for _ in range(3)]
    async with Servers(*servers) as s:
        watchers = [await s.watch(index, "lobby") for index in range(2)]
        for index, user in [(0, "ada"), (1, "bob"), (2, "cy"), (2, "ada")]:
            await (await s.client(index, user)).call("track", "lobby")
        for watcher in watchers:
            await watcher.until(lambda listed: len(listed) == 3 and len(listed["ada"]) == 2)

        await s.stop(2)

        for watcher in watchers:
            await watcher.until(lambda listed: sorted(listed) == ["ada", "bob"])
            assert len(watcher.list["ada"]) == 1
            assert any("cy" in diff["leaves"] for diff in watcher.diffs)
        assert sorted(servers[0].presence.list("lobby")) == ["ada", "bob"]


async def test_a_process_that_dies_has_its_entries_removed_within_the_heartbeat_timeout(
    cluster: Make,
) -> None:
    servers = [cluster(Severable) for _ in range(3)]
    async with Servers(*servers) as s:
        watchers = [await s.watch(index, "lobby") for index in range(2)]
        for index, user in [(0, "ada"), (1, "bob"), (2, "cy")]:
            await (await s.client(index, user)).call("track", "lobby")
        for watcher in watchers:
            await watcher.until(lambda listed: len(listed) == 3)
        assert servers[2].node is not None
        broker = servers[2].node.broker
        assert isinstance(broker, Severable)

        broker.severed = True  # as a kill -9: no goodbye, then silence

        for watcher in watchers:
            await watcher.until(lambda listed: sorted(listed) == ["ada", "bob"], timeout=10)
            assert list(watcher.diffs[-1]["leaves"]) == ["cy"]


async def test_a_process_that_starts_late_catches_up_with_the_others(cluster: Make) -> None:
    servers = [cluster() for _ in range(3)]
    async with Servers(*servers, started=2) as s:
        for index, user in [(0, "ada"), (1, "bob")]:
            await (await s.client(index, user)).call("track", "lobby", {"on": index})
        await servers[0].presence.wait_synced()
        await servers[1].presence.wait_synced()

        await s.start(2)

        late = await s.watch(2, "lobby")
        await late.until(lambda listed: sorted(listed) == ["ada", "bob"])
        await servers[2].presence.wait_synced()
        assert normal(servers[2].presence.list("lobby")) == normal(
            servers[0].presence.list("lobby")
        )
        # ... and the others hear of it as of any process.
        first = await s.watch(0, "lobby")
        await (await s.client(2, "cy")).call("track", "lobby")
        await first.until(lambda listed: "cy" in listed)


async def test_a_process_forgotten_by_mistake_is_caught_up_at_its_next_change(
    cluster: Make,
) -> None:
    a, b = cluster(), cluster()
    async with Servers(a, b) as s:
        watcher = await s.watch(0, "lobby")
        bob = await s.client(1, "bob")
        await bob.call("track", "lobby")
        await watcher.until(lambda listed: "bob" in listed)
        assert a.node is not None and b.node is not None

        a.node.peer_gone(b.node.uid)  # as if b had been silent for heartbeat_timeout
        await watcher.until(lambda listed: "bob" not in listed)
        await bob.call("track", "kitchen")  # b's next delta: a sees it missed b's past

        await watcher.until(lambda listed: "bob" in listed)


class Lossy(Severable):
    """A broker that loses the next presence delta it is asked to publish, once armed."""

    def __init__(self, inner: Broker) -> None:
        super().__init__(inner)
        self.armed = False
        self.lost = anyio.Event()

    async def publish(self, channel: str, message: bytes) -> None:
        if self.armed and b"rooms:presence:delta" in message:
            self.armed = False
            self.lost.set()
            return
        await super().publish(channel, message)


async def test_a_lost_delta_is_noticed_and_repaired_with_the_senders_state(
    cluster: Make,
) -> None:
    a, b = cluster(Lossy), cluster()
    assert a.node is not None and isinstance(a.node.broker, Lossy)
    lossy = a.node.broker
    async with Servers(a, b) as s:
        watcher, heard_on_a = await s.watch(1, "lobby"), await s.watch(0, "lobby")
        await (await s.client(1, "cy")).call("track", "lobby")
        # Once a hears of cy, it has answered what b said before (b's hello): no state of
        # a's is on its way that could cover the loss below.
        await heard_on_a.until(lambda listed: "cy" in listed)
        ada, bob = await s.client(0, "ada"), await s.client(0, "bob")

        lossy.armed = True
        await ada.call("track", "lobby")
        with anyio.fail_after(5):
            await lossy.lost.wait()  # b never heard that ada joined
        await bob.call("track", "lobby")  # the next delta: b sees one is missing

        await watcher.until(lambda listed: sorted(listed) == ["ada", "bob", "cy"])
        assert b.presence.replication is not None and b.presence.replication.gaps == 1
        assert normal(b.presence.list("lobby")) == normal(a.presence.list("lobby"))


# --------------------------------------------------------------------------- the JS helper

HELPER = ROOT / "examples" / "presence.js"


def test_the_js_helper_is_valid_javascript() -> None:
    result = run_process(["node", "--check", str(HELPER)], timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_js_helper_keeps_the_list_from_the_state_and_the_diffs() -> None:
    script = """
    const { syncPresence } = require(HELPER_PATH);
    const handlers = {};
    const socket = { on: (e, f) => { handlers[e] = f; }, off: (e) => { delete handlers[e]; } };
    const seen = [];
    const stop = syncPresence(socket, "lobby", (list, diff) => seen.push([{ ...list }, diff]));
    const send = (event, payload) => handlers[event] && handlers[event](payload);
    const diff = (joins, leaves) => send("presence_diff", { topic: "lobby", joins, leaves });
    diff({ early: [{ ref: "0" }] }, {});
    send("presence_state", { topic: "lobby", state: { ada: [{ ref: "1", tab: 1 }] } });
    send("presence_state", { topic: "kitchen", state: {} });
    diff(JSON.parse('{"ada": [{"ref": "2", "tab": 2}], "__proto__": [{"ref": "3"}]}'), {});
    diff({ ada: [{ ref: "4", tab: 1 }] }, { ada: [{ ref: "1", tab: 1 }] });
    diff({ ada: [{ ref: "2", tab: 2 }] }, {});
    diff({}, JSON.parse('{"ada": [{"ref": "2"}, {"ref": "4"}], "__proto__": [{"ref": "3"}],'
                        + '"nobody": [{"ref": "9"}]}'));
    stop();
    diff({ late: [{ ref: "5" }] }, {});
    process.stdout.write(JSON.stringify({ seen, listening: Object.keys(handlers) }));
    """.replace("HELPER_PATH", json.dumps(str(HELPER)))
    result = run_process(["node", "-e", script], timeout=30)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    proto = {"__proto__": [{"ref": "3"}]}  # a key like any other
    assert [entry[0] for entry in out["seen"]] == [
        {"ada": [{"ref": "1", "tab": 1}]},  # the state (a diff before it has nothing to apply to)
        {"ada": [{"ref": "1", "tab": 1}, {"ref": "2", "tab": 2}], **proto},
        {"ada": [{"ref": "2", "tab": 2}, {"ref": "4", "tab": 1}], **proto},  # leaves, then joins
        {"ada": [{"ref": "4", "tab": 1}, {"ref": "2", "tab": 2}], **proto},  # a join replaces
        {},  # a key with no meta left is gone
    ]
    assert out["seen"][0][1] is None  # a state is no diff
    assert out["seen"][1][1] == {"joins": {"ada": [{"ref": "2", "tab": 2}], **proto}, "leaves": {}}
    assert out["listening"] == []  # stopped


def test_presence_is_one_per_namespace_and_not_for_dynamic_children() -> None:
    server = rooms.Server()
    assert server.presence is server.presence is server.of("/").presence
    assert server.of("/chat").presence is not server.presence
    child = server.of(re.compile(r"/room-\w+")).child("/room-1")
    with pytest.raises(TypeError, match=r"expected a namespace made by server\.of"):
        child.presence  # noqa: B018
