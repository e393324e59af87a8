"""Node: this process as a member of a cluster of rooms servers sharing one broker.

Every process subscribes to two channels: the cluster channel, where broadcasts, room
operations and requests go to everyone, and its own channel, where answers and relayed
traffic addressed to it arrive. The node owns membership (heartbeats: a process silent for
``heartbeat_timeout`` is gone, looked for every :func:`expiry_interval`), one ordered
outgoing queue, and the requests that wait on the other processes' answers. A request
waits only on processes alive when it was made, stops waiting on one that goes away, and
always ends by its timeout: never a hang.

Messages from the broker are untrusted input: one that does not decode is logged, counted
in ``bad_messages`` and dropped; the node carries on.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rooms._log import Throttled
from rooms._retry import Backoff
from rooms._types import Clock
from rooms.acks import AckCollector
from rooms.brokers.base import Broker
from rooms.exceptions import BrokerError, ClusterTimeout, ProtocolError
from rooms.protocol import cluster as wire

if TYPE_CHECKING:
    from rooms.cluster.handlers import Local
    from rooms.cluster.relay import Relay

logger = logging.getLogger("rooms.cluster")

EMITTER_UID = "emitter"
"""The uid of processes that only publish (:class:`rooms.Emitter`): never a peer."""

UID_LENGTH = 12

# Errors that mean the broker cannot be reached (retried), not that it is misconfigured.
_AWAY = (BrokerError, OSError, TimeoutError)
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 10.0
_dropping = Throttled(logger, burst=5)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def new_uid() -> str:
    """A node id: fixed length and URL-safe, because Engine.IO sids start with it."""
    return secrets.token_hex(UID_LENGTH // 2)


def expiry_interval(heartbeat_timeout: float) -> float:
    """How often a node looks for silent processes: a tenth of ``heartbeat_timeout``, at most
    1 s (Socket.IO's cluster adapter checks every second). A process is forgotten between
    ``heartbeat_timeout`` and ``heartbeat_timeout`` plus this after it was last heard of,
    however long ``heartbeat_interval`` is."""
    return min(1.0, heartbeat_timeout / 10)


def channels(prefix: str) -> tuple[str, Callable[[str], str]]:
    """The cluster channel, and the channel of one node by its uid."""
    return f"{prefix}#cluster", lambda uid: f"{prefix}#node#{uid}"


class Pending:
    """A request to every other process, waiting for each one's answer."""

    __slots__ = ("answers", "done", "waiting")

    def __init__(self, peers: set[str]) -> None:
        self.waiting = peers
        self.answers: list[tuple[str, wire.Body]] = []
        self.done = anyio.Event()
        if not peers:
            self.done.set()

    def answer(self, uid: str, body: wire.Body) -> None:
        self.answers.append((uid, body))
        self.gone(uid)

    def gone(self, uid: str) -> None:
        """``uid`` answered, or left the cluster: stop waiting for it."""
        self.waiting.discard(uid)
        if not self.waiting:
            self.done.set()

    async def wait(self, timeout: float) -> bool:
        """True if every process answered within ``timeout``."""
        with anyio.move_on_after(timeout):
            await self.done.wait()
        return self.done.is_set()


class AckRequest(Pending):
    """A broadcast with acks. Every process first says how many of its sockets it reached
    (``waiting`` holds those that have not said yet), then forwards their acks one by one;
    ``collector`` aggregates them with the local ones."""

    __slots__ = ("acked", "collector", "counted")

    def __init__(self, peers: set[str], collector: AckCollector) -> None:
        super().__init__(peers)
        self.collector = collector
        self.counted: dict[str, int] = {}
        self.acked: dict[str, int] = {}
        if not peers:
            collector.counting_done()

    def answer(self, uid: str, body: wire.Body) -> None:
        if isinstance(body, wire.BroadcastClientCount):
            count = body.client_count
            self.counted[uid] = self.counted.get(uid, 0) + count
            if count >= 0:
                self.collector.expect(count)
            else:
                self.collector.withdraw(-count)  # recipients that left before answering
            self._counted(uid)
        elif isinstance(body, wire.BroadcastAck):
            self.acked[uid] = self.acked.get(uid, 0) + 1
            self.collector.callback()(body.data)

    def _counted(self, uid: str) -> None:
        if uid in self.waiting:
            super().gone(uid)
            if not self.waiting:
                self.collector.counting_done()

    def gone(self, uid: str) -> None:
        """A process left: it will not count, and the acks it still owed will never come."""
        if uid in self.waiting:
            self._counted(uid)
            return
        owed = self.counted.get(uid, 0) - self.acked.get(uid, 0)
        if owed > 0:
            self.counted[uid] -= owed
            self.collector.withdraw(owed)


class Node:
    """This process in the cluster. Created by :class:`rooms.Server` when given a broker
    (``local`` is its side of the cluster's requests); reached as ``server.node``."""

    def __init__(
        self,
        local: Local,
        broker: Broker,
        *,
        prefix: str = "rooms",
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 10.0,
        request_timeout: float = 5.0,
        clock: Clock | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.local = local  # what this process does when the others ask
        self.broker = broker
        self.uid = new_uid()
        self.prefix = prefix
        self.channel, self.node_channel = channels(prefix)
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.request_timeout = request_timeout
        self.clock: Clock = clock or anyio.current_time
        self.peers: dict[str, float] = {}  # uid -> when last heard of
        self.bad_messages = 0
        self.dropped = 0
        self.published = 0  # messages the broker took
        # Told how long each request to the other processes took (None: timed out).
        self.on_request: Callable[[float | None], None] | None = None
        self.joined = anyio.Event()  # set while the node is subscribed and announced
        self._running = False
        self.on_peer_gone: list[Callable[[str], None]] = []
        self._requests: dict[str, Pending] = {}
        self.queue_size = queue_size
        self._out: MemoryObjectSendStream[tuple[str, bytes]] | None = None
        self._handlers: dict[type, Callable[[wire.Message], None]] = {}
        self._peer_changed: anyio.Event = anyio.Event()
        # Relays HTTP and websocket traffic for sessions owned elsewhere.
        self.relay: Relay | None = None

    def __repr__(self) -> str:
        return f"<Node {self.uid} peers={len(self.peers)}>"

    # ------------------------------------------------------------------ running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Join the cluster and serve it until cancelled; then say goodbye.

        Started once the cluster is joined, or once the broker proved away (a connection
        error): then this process serves its own clients alone, ``joined`` stays unset (a
        readiness probe says not ready), and joining is retried with backoff and a WARNING
        naming the broker and the error. Anything else that stops the broker from opening
        (a bad URL, a missing extra) fails the start.
        """
        from rooms.cluster.handlers import handlers

        self._handlers = handlers(self, self.local)
        self._running = True
        started = False
        backoff = Backoff(_FIRST_BACKOFF, _MAX_BACKOFF)
        try:
            while True:
                try:
                    await self._serve(None if started else task_status)
                    return  # only a cancellation ends serving, or a broker that closed
                except _AWAY as exc:
                    if self.joined.is_set():
                        backoff.reset()  # it had joined: a new outage starts from the start
                    self.joined = anyio.Event()
                    for uid in list(self.peers):  # requests stop waiting for them
                        self.peer_gone(uid)
                    logger.warning(
                        "node %s: the broker %s is away (%s); this process serves its own "
                        "clients alone, and joins again in %.1f s",
                        self.uid,
                        self._broker_name(),
                        _reason(exc),
                        backoff.delay,
                    )
                if not started:
                    started = True
                    task_status.started()
                await backoff.wait()
        finally:
            self._running = False

    async def _serve(self, task_status: anyio.abc.TaskStatus[None] | None) -> None:
        out, out_rx = anyio.create_memory_object_stream[tuple[str, bytes]](self.queue_size)
        # The task group exits first, so unsubscribing never runs under its cancellation.
        async with (
            out,
            out_rx,
            self.broker,
            self.broker.subscribe(self.channel) as everyone,
            self.broker.subscribe(self.node_channel(self.uid)) as mine,
            anyio.create_task_group() as tg,
        ):
            self._out = out
            tg.start_soon(self._receive, everyone)
            tg.start_soon(self._receive, mine)
            tg.start_soon(self._publish_loop, out_rx)
            tg.start_soon(self._expiry_loop)
            self.send("/", wire.InitialHeartbeat())
            self.joined.set()
            logger.info("node %s: joined the cluster on %s", self.uid, self._broker_name())
            if task_status is not None:
                task_status.started()
            try:
                await self._heartbeat_loop()
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await self._goodbye()
                self._out = None
                tg.cancel_scope.cancel()

    def _broker_name(self) -> str:
        url = getattr(self.broker, "url", None)
        return str(url) if url is not None else type(self.broker).__name__

    async def _goodbye(self) -> None:
        # Straight to the broker: the publish loop may already be cancelled.
        await self.broker.publish(
            self.channel, wire.encode(wire.Message(self.uid, "/", wire.AdapterClose()))
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_interval)
            self.send("/", wire.Heartbeat())

    async def _expiry_loop(self) -> None:
        # Its own pace, not the heartbeat's: checking only every heartbeat_interval let a
        # dead process linger up to heartbeat_timeout + heartbeat_interval.
        every = expiry_interval(self.heartbeat_timeout)
        while True:
            await anyio.sleep(every)
            self.expire_peers()

    def expire_peers(self) -> None:
        """Forget processes not heard of within ``heartbeat_timeout``."""
        deadline = self.clock() - self.heartbeat_timeout
        for uid, seen in list(self.peers.items()):
            if seen < deadline:
                logger.warning(
                    "node %s: no heartbeat from %s for %.1f s; treating it as gone",
                    self.uid,
                    uid,
                    self.heartbeat_timeout,
                )
                self.peer_gone(uid)

    # ------------------------------------------------------------------ membership

    def saw(self, uid: str) -> None:
        if uid == EMITTER_UID:
            return
        if uid not in self.peers:
            logger.info("node %s: %s joined the cluster", self.uid, uid)
            self._changed()
        self.peers[uid] = self.clock()

    def peer_gone(self, uid: str) -> None:
        if self.peers.pop(uid, None) is None:
            return
        logger.info("node %s: %s left the cluster", self.uid, uid)
        for pending in list(self._requests.values()):
            pending.gone(uid)
        for callback in self.on_peer_gone:
            callback(uid)
        self._changed()

    def _changed(self) -> None:
        self._peer_changed.set()
        self._peer_changed = anyio.Event()

    async def wait_for_peers(self, count: int, timeout: float = 10.0) -> None:
        """Wait until exactly ``count`` other processes are known (for tests and tools)."""
        with anyio.fail_after(timeout):
            while len(self.peers) != count:
                await self._peer_changed.wait()

    # ------------------------------------------------------------------ sending

    def _encode(self, nsp: str, body: wire.Body) -> bytes:
        return wire.encode(wire.Message(self.uid, nsp, body))

    def send(self, nsp: str, body: wire.Body, to: str | None = None) -> None:
        """Queue a message for everyone (or for node ``to``) without waiting; dropped and
        counted if the queue is full or the cluster is not joined (the broker is away).
        Raises TypeError or ValueError if user data is not JSON-able."""
        raw = self._encode(nsp, body)
        out = self._out
        try:
            if out is None:
                raise anyio.WouldBlock
            out.send_nowait((self.channel if to is None else self.node_channel(to), raw))
        except anyio.WouldBlock:
            self._drop(body)

    async def publish(self, nsp: str, body: wire.Body, to: str | None = None) -> None:
        """Queue a message, waiting for room in the queue (backpressure for emit loops).
        While the cluster is not joined there is no one to reach: dropped and counted."""
        raw = self._encode(nsp, body)
        out = self._out
        if out is None:
            if not self._running:
                raise BrokerError(
                    "expected a running cluster node, got a stopped one: start the server first"
                )
            self._drop(body)
            return
        await out.send((self.channel if to is None else self.node_channel(to), raw))

    def _drop(self, body: wire.Body) -> None:
        self.dropped += 1
        why = "the cluster is not joined" if self._out is None else "the outgoing queue is full"
        _dropping.log(
            logging.WARNING,
            "node %s: %s dropped (%d so far): %s",
            self.uid,
            body.TYPE.name,
            self.dropped,
            why,
        )

    async def _publish_loop(self, out_rx: MemoryObjectReceiveStream[tuple[str, bytes]]) -> None:
        publish = self.broker.publish
        async for channel, raw in out_rx:
            try:
                await publish(channel, raw)
            except Exception:
                self.dropped += 1
                logger.exception("node %s: the broker refused a message", self.uid)
            else:
                self.published += 1

    # ------------------------------------------------------------------ receiving

    async def _receive(self, messages: Any) -> None:
        async for raw in messages:
            try:
                message = wire.decode(raw)
            except ProtocolError as exc:
                self.bad_messages += 1
                logger.warning("node %s: dropped a cluster message: %s", self.uid, exc)
                continue
            if message.uid == self.uid:
                continue  # our own broadcast, echoed by the broker
            self.saw(message.uid)
            try:
                self._handlers[type(message.body)](message)
            except Exception:
                logger.exception("node %s: handling %s failed", self.uid, message.type.name)
            # Deliveries queue frames; let them go out before taking more (backpressure
            # into the broker's bounded subscription buffer instead of every outbox).
            await self.local.wait_flushed()

    # ------------------------------------------------------------------ requests

    def new_request(self, pending: Pending) -> str:
        request_id = secrets.token_hex(8)
        self._requests[request_id] = pending
        return request_id

    def answered(self, request_id: str, uid: str, body: wire.Body) -> None:
        pending = self._requests.get(request_id)
        if pending is not None:
            pending.answer(uid, body)

    def forget(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    async def ask(
        self,
        nsp: str,
        make: Callable[[str], wire.Body],
        timeout: float | None,
        what: str,
        partial: Callable[[list[tuple[str, wire.Body]]], list[Any]] | None = None,
    ) -> list[tuple[str, wire.Body]]:
        """Send a request to every other process and collect one answer from each.

        Raises :class:`ClusterTimeout` past ``timeout``; its ``responses`` are
        ``partial(answers)`` for the ``(uid, body)`` answers that came (default: the bodies).
        """
        pending = Pending(set(self.peers))
        request_id = self.new_request(pending)
        timeout = self.request_timeout if timeout is None else timeout
        sent_at = self.clock()
        try:
            await self.publish(nsp, make(request_id))
            answered = await pending.wait(timeout)
            if self.on_request is not None:
                self.on_request(self.clock() - sent_at if answered else None)
            if not answered:
                raise ClusterTimeout(
                    f"expected answers to {what} from {len(pending.waiting) + len(pending.answers)}"
                    f" process(es) within {timeout} s, got {len(pending.answers)}",
                    [body for _, body in pending.answers]
                    if partial is None
                    else partial(list(pending.answers)),
                )
            return pending.answers
        finally:
            self.forget(request_id)

    async def take_over(self, nsp: str, pid: str) -> bool:
        """Ask every other process to give up the socket ``pid`` of ``nsp`` (connection state
        recovery: its client came back here before its old connection was noticed gone).
        True if one had it and saved its session; False also when not every process
        answered within ``request_timeout``, after any that did said no."""
        try:
            answers = [
                body
                for _, body in await self.ask(
                    nsp, lambda rid: wire.TakeOver(pid, rid), None, "take over"
                )
            ]
        except ClusterTimeout as exc:
            answers = list(exc.responses)
        return any(isinstance(body, wire.TakeOverResponse) and body.found for body in answers)
