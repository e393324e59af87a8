"""The presence of one namespace: what handlers call (see the package's docstring)."""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from rooms.cluster.node import expiry_interval
from rooms.presence import bounds
from rooms.presence.bounds import REF, Listing, Meta, Metas
from rooms.presence.diff import Diff
from rooms.presence.holdings import Held, Holdings
from rooms.presence.hooks import Hooks
from rooms.presence.replication import DELTA, STATE, SYNC, Replication
from rooms.presence.state import State

if TYPE_CHECKING:
    from rooms.namespace import Namespace
    from rooms.socket import Socket

logger = logging.getLogger("rooms.presence")

H = TypeVar("H", bound=Callable[..., Any])

STATE_EVENT = "presence_state"
DIFF_EVENT = "presence_diff"
ROOM_PREFIX = "rooms.presence:"
"""Subscribers of a topic are in the room ``ROOM_PREFIX + topic`` (a reserved prefix)."""
LOCAL = "local"
"""The owner of every entry in a server without a broker."""


def room(topic: str) -> str:
    return ROOM_PREFIX + topic


class Presence:
    """Who is present in which topic, on every process of the cluster. Made by
    ``namespace.presence`` (``server.presence`` for ``/``), once per namespace.

    ``batch_window``: seconds over which changes are gathered into one ``presence_diff``
    per topic (and one message to the other processes). ``max_meta_bytes``: the largest
    meta, as JSON. ``max_tracks_per_socket`` and ``max_subscriptions_per_socket`` bound
    what one socket holds. Each may be set on the object at any time.
    """

    def __init__(
        self,
        namespace: Namespace,
        *,
        batch_window: float = 0.05,
        max_meta_bytes: int = 1024,
        max_tracks_per_socket: int = 100,
        max_subscriptions_per_socket: int = 100,
    ) -> None:
        if namespace.parent is not None:
            raise TypeError(
                f"expected a namespace made by server.of(name), got {namespace.name!r}, a "
                "child of a dynamic namespace (presence does not support those)"
            )
        for name, value in (
            ("max_meta_bytes", max_meta_bytes),
            ("max_tracks_per_socket", max_tracks_per_socket),
            ("max_subscriptions_per_socket", max_subscriptions_per_socket),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} to be a positive int, got {value!r}")
        self.namespace = namespace
        self.server = namespace.server
        self.batch_window = batch_window
        self.max_meta_bytes = max_meta_bytes
        self.max_tracks_per_socket = max_tracks_per_socket
        self.max_subscriptions_per_socket = max_subscriptions_per_socket
        self.state = State()
        self._join_hooks = Hooks("on_join")
        self._leave_hooks = Hooks("on_leave")
        self._diffs: dict[str, Diff] = {}  # topic → this window's changes
        self._holdings = Holdings(self._disown)
        self._wake: anyio.Event | None = None
        # This process's own changes wait a window (they are gathered); changes replicated
        # from another process waited one there already, and go out at once.
        self._gathering = False
        self._synced: anyio.Event | None = None
        self._group: object = None  # the server's task group the loop runs in
        node = self.server.node
        self.uid = LOCAL if node is None else node.uid
        self.replication: Replication | None = None
        if node is not None:
            replication = self.replication = Replication(node, namespace.name, self.state, self)
            for event, handle in (
                (DELTA, replication.on_delta),
                (SYNC, replication.on_sync),
                (STATE, replication.on_state),
            ):
                namespace.on_server_event(event)(self._starting(handle))
            node.on_peer_gone.append(replication.peer_gone)
        self._start()

    def __repr__(self) -> str:
        return f"<Presence {self.namespace.name} topics={len(self.state.topics)}>"

    @property
    def batch_window(self) -> float:
        """Seconds over which changes are gathered into one diff per topic (0: as soon as
        the loop runs; what changed meanwhile still goes in one)."""
        return self._batch_window

    @batch_window.setter
    def batch_window(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"expected batch_window in seconds, got {seconds!r}")
        if not 0 <= seconds < math.inf:
            raise ValueError(f"expected a batch_window of 0 seconds or more, got {seconds!r}")
        self._batch_window = float(seconds)

    # ------------------------------------------------------------------ tracking

    def track(
        self, socket: Socket, topic: str, key: str, meta: dict[str, Any] | None = None
    ) -> str:
        """Show ``socket`` in ``topic`` under ``key`` (a user id, say) with ``meta`` until
        it disconnects or is untracked; the new entry's ref. A socket may track several
        topics and keys, each once (``update`` changes a meta). A socket that is already
        gone tracks nothing (as ``socket.join`` joins nothing)."""
        topic, key, kept = self._checked(socket, topic, key, meta)
        ref = secrets.token_urlsafe(9)
        if socket.gone:
            return ref
        held = self._holder(socket)
        if (topic, key) in held.tracked:
            raise ValueError(
                f"expected {key!r} in topic {topic!r} to be new for socket {socket.id}, got it "
                f"tracked already (ref {held.tracked[topic, key]!r}): update() changes its meta"
            )
        if len(held.tracked) >= self.max_tracks_per_socket:
            raise ValueError(
                f"expected at most {self.max_tracks_per_socket} entries per socket "
                f"(max_tracks_per_socket), got one more for socket {socket.id}"
            )
        held.tracked[topic, key] = ref
        self._own(topic, key, {REF: ref, **kept})
        return ref

    def update(self, socket: Socket, topic: str, key: str, meta: dict[str, Any] | None) -> str:
        """Replace the meta of ``socket``'s entry under ``key`` in ``topic``: one diff with
        the old entry in its leaves and the new one in its joins; the new entry's ref."""
        topic, key, kept = self._checked(socket, topic, key, meta)
        ref = secrets.token_urlsafe(9)
        if socket.gone:
            return ref
        held = self._holdings.of(socket)
        old = held.tracked.get((topic, key)) if held is not None else None
        if held is None or old is None:
            raise ValueError(
                f"expected {key!r} in topic {topic!r} tracked by socket {socket.id}, got "
                "nothing tracked there: track() first"
            )
        self._disown(old)
        held.tracked[topic, key] = ref
        self._own(topic, key, {REF: ref, **kept})
        return ref

    def untrack(self, socket: Socket, topic: str, key: str | None = None) -> int:
        """End ``socket``'s entry under ``key`` in ``topic`` (every one of its entries
        there if ``key`` is None); how many ended."""
        self._check_socket(socket)
        held = self._holdings.of(socket)
        if held is None:
            return 0
        ended = [w for w in held.tracked if w[0] == topic and (key is None or w[1] == key)]
        for where in ended:
            self._disown(held.tracked.pop(where))
        return len(ended)

    def list(self, topic: str) -> Listing:
        """``{key: [meta, ...]}``: every entry of ``topic`` on every process, as this one
        knows it: no request to the others, so it costs what copying the listing does
        (about 0.2-0.6 µs per entry: 2-6 ms for 10,000; ``get`` and ``count`` cost the same
        whatever the size). Each meta carries its ``"ref"``; the dicts and lists are new,
        the metas are shared: do not change them. Like every method here, for the event
        loop (handlers, async routes), not threads."""
        self._start()
        return self.state.list(topic)

    def count(self, topic: str) -> int:
        """How many keys (users, say) ``topic`` has, on every process."""
        self._start()
        return self.state.count(topic)

    def get(self, topic: str, key: str) -> Metas:
        """The metas of ``key`` in ``topic`` (one per socket that tracks it)."""
        self._start()
        return self.state.get(topic, key)

    # ------------------------------------------------------------------ subscribing

    async def subscribe(self, socket: Socket, topic: str) -> None:
        """Send ``socket`` the ``presence_state`` of ``topic`` now, then a
        ``presence_diff`` at the end of every window in which it changed, until it
        unsubscribes or disconnects. Subscribing again sends the state again."""
        self._check_socket(socket)
        topic = bounds.name("topic", topic, self.server.limits.max_name_length)
        if socket.gone:
            return
        held = self._holder(socket)
        if topic not in held.subscribed:
            if len(held.subscribed) >= self.max_subscriptions_per_socket:
                raise ValueError(
                    f"expected at most {self.max_subscriptions_per_socket} subscriptions per "
                    f"socket (max_subscriptions_per_socket), got one more for socket {socket.id}"
                )
            held.subscribed.add(topic)
        self.namespace.adapter.add_all(socket.id, (room(topic),))
        self._start()
        # The state as the other subscribers know it: the next diff is then right for all.
        state = self.state.list(topic)
        diff = self._diffs.get(topic)
        if diff is not None:
            state = diff.before(state)
        await socket.emit(STATE_EVENT, {"topic": topic, "state": state})

    async def unsubscribe(self, socket: Socket, topic: str) -> None:
        """No more diffs of ``topic`` for ``socket``."""
        self._check_socket(socket)
        held = self._holdings.of(socket)
        if held is not None:
            held.subscribed.discard(topic)
        self.namespace.adapter.delete(socket.id, room(topic))

    # ------------------------------------------------------------------ hooks

    def on_join(self, func: H) -> H:
        """Call ``func(topic, key, meta)`` (sync or async) for every entry that joined, on
        this process and the others, once per window, after ``list`` shows it. Decorator."""
        return self._join_hooks.add(func)

    def on_leave(self, func: H) -> H:
        """Call ``func(topic, key, meta)`` for every entry that left (untracked, its socket
        gone, its process gone), once per window, after ``list`` no longer shows it."""
        return self._leave_hooks.add(func)

    # ------------------------------------------------------------------ tests and tools

    @property
    def synced(self) -> bool:
        """Whether this process holds the entries of every other live process (always,
        without a broker)."""
        return self.replication is None or self.replication.synced

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until ``synced`` (for tests and readiness checks). Every process of the
        cluster must use presence on this namespace: one that does not never answers."""
        self._start()
        with anyio.fail_after(timeout):
            while not self.synced:
                self._synced = anyio.Event()
                await self._synced.wait()

    # ------------------------------------------------------------------ the state (View)

    def _add(self, owner: str, topic: str, key: str, meta: Meta) -> None:
        """An entry joined (``owner``'s, this process's or replicated)."""
        if self.state.join(owner, topic, key, meta):
            diff = self._diff(topic)
            if diff is not None:
                diff.joined(key, meta)
                self._changed()

    def _remove(self, owner: str, ref: str) -> None:
        """``owner``'s entry ``ref`` left."""
        left = self.state.leave(owner, ref)
        if left is not None:
            topic, key, meta = left
            diff = self._diff(topic)
            if diff is not None:
                diff.left(key, meta)
                self._changed()

    def _synced_changed(self) -> None:
        if self._synced is not None:
            self._synced.set()
            self._synced = None

    def _diff(self, topic: str) -> Diff | None:
        """This window's diff of ``topic``, kept only while someone listens (hooks, or a
        subscriber here): a subscriber that comes later gets the state as it then is."""
        diff = self._diffs.get(topic)
        if diff is None and (
            self._join_hooks or self._leave_hooks or room(topic) in self.namespace.adapter.rooms
        ):
            diff = self._diffs[topic] = Diff()
        return diff

    def _own(self, topic: str, key: str, meta: Meta) -> None:
        self._gathering = True
        self._add(self.uid, topic, key, meta)
        if self.replication is not None:
            self.replication.outbox.joined(topic, key, meta)
            self._changed()

    def _disown(self, ref: str) -> None:
        if self.state.meta(self.uid, ref) is None:
            return
        self._gathering = True
        self._remove(self.uid, ref)
        if self.replication is not None:
            self.replication.outbox.left(ref)
            self._changed()

    # ------------------------------------------------------------------ sockets

    def _check_socket(self, socket: Socket) -> None:
        if getattr(socket, "nsp", None) is not self.namespace:
            got = getattr(getattr(socket, "nsp", None), "name", type(socket).__name__)
            raise ValueError(
                f"expected a socket of namespace {self.namespace.name!r}, got one of {got!r}"
            )

    def _checked(
        self, socket: Socket, topic: str, key: str, meta: dict[str, Any] | None
    ) -> tuple[str, str, Meta]:
        self._check_socket(socket)
        limits = self.server.limits
        return (
            bounds.name("topic", topic, limits.max_name_length),
            bounds.name("key", key, limits.max_name_length),
            bounds.meta(meta, self.max_meta_bytes, limits.max_json_depth),
        )

    def _holder(self, socket: Socket) -> Held:
        held = self._holdings.holder(socket)
        self._start()
        return held

    # ------------------------------------------------------------------ the window

    def _changed(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _starting(self, handle: Callable[..., None]) -> Callable[..., None]:
        """A server-event handler that starts this presence first, if it has not yet."""

        def handler(uid: object, seq: object, data: object, *more: object) -> None:
            self._start()
            handle(uid, seq, data, *more)

        handler.__qualname__ = f"Presence.{getattr(handle, '__name__', 'handler')}"
        return handler

    def start(self) -> None:
        """The server started: join the others now (their entries are asked for), rather
        than at first use. Called by the server for every presence made before it starts."""
        self._start()

    def _start(self) -> None:
        """Run the loop in the server's task group, once per start of the server: from the
        first use of this presence, or the first message of another process's."""
        server = self.server
        if not server.is_running:
            return
        group = server.engine.running_group
        if group is self._group:
            return
        try:
            anyio.get_current_task()
        except RuntimeError:
            return  # a worker thread (list() from a sync route): the next call starts it
        if self._group is not None and self.replication is not None:
            self.replication.reset()  # a restart: what the others hold is asked for again
        self._group = group
        self._wake = None
        server.spawn(self._run, what=f"presence of {self.namespace.name}")

    async def _run(self) -> None:
        wake = self._wake = anyio.Event()
        if self._diffs or (self.replication is not None and self.replication.outbox.ops):
            wake.set()
        node = self.server.node
        tick = 1.0 if node is None else expiry_interval(node.heartbeat_timeout)
        while True:
            if self.replication is not None:
                self.replication.tick()
            self._holdings.sweep()
            with anyio.move_on_after(tick):
                await self._wake.wait()
            if self._wake.is_set():
                if self._gathering:  # what changes meanwhile joins this batch
                    await anyio.sleep(self._batch_window)
                self._gathering = False
                self._wake = anyio.Event()
                await self._flush()

    async def _flush(self) -> None:
        if self.replication is not None:
            self.replication.flush()
        diffs, self._diffs = self._diffs, {}
        for topic, diff in diffs.items():
            if not diff:
                continue
            for key, meta in diff.leaves.values():
                self._leave_hooks.call(self.server, topic, key, meta)
            for key, meta in diff.joins.values():
                self._join_hooks.call(self.server, topic, key, meta)
            name = room(topic)
            if name not in self.namespace.adapter.rooms:
                continue
            try:
                await self.namespace.local.to(name).emit(DIFF_EVENT, diff.payload(topic))
            except Exception:
                logger.exception(
                    "presence on %s: sending the diff of %.60r failed", self.namespace.name, topic
                )
