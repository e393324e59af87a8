"""Emitter: reach a cluster's sockets from a process that has none.

Workers, scripts and cron jobs publish the same cluster messages a server would, on the
same broker; every server delivers them to its own sockets::

    async with rooms.Emitter("redis://localhost:6379/0") as emitter:
        await emitter.to("room-42").emit("invoice paid", {"id": 7})
        await emitter.of("/admin").in_("staff").sockets_join("alerts")

An emitter is never a member of the cluster (its uid is ``"emitter"``), so it cannot wait
for answers: no acks, no ``fetch_sockets``, and its room operations (``sockets_join``,
``sockets_leave``, ``disconnect_sockets``) return once published, asking for no answer
(as Socket.IO's emitters do). Each server applies them when they arrive, after what this
emitter published before them; a server's own operations, by contrast, return only once
every server has applied them.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable
from typing import Any

import anyio

from rooms.brokers import Broker, broker_from_url
from rooms.cluster.node import EMITTER_UID, channels
from rooms.exceptions import BrokerError
from rooms.plugin import EmitterPlugin
from rooms.protocol import cluster as wire
from rooms.protocol import socketio as sio
from rooms.recovery import Recovery, Store
from rooms.selectors import Acts, Chain, room_set


@dataclasses.dataclass
class _Link:
    """The broker and channel an emitter and its namespace views share."""

    broker: Broker
    channel: str
    open: bool = False


class Emitter(Chain["EmitterOperator"], Acts["EmitterOperator"]):
    """Publishes to the servers of a cluster, with the selectors of :mod:`rooms.selectors`
    (no ``local``, ``timeout``, acks or ``fetch_sockets``: an emitter waits for no answer).
    ``async with`` opens and closes its broker.

    ``broker`` is a URL or an unopened :class:`~rooms.brokers.Broker`; ``cluster_prefix``
    must match the servers'.
    """

    def __init__(
        self,
        broker: Broker | str,
        *,
        namespace: str = "/",
        cluster_prefix: str = "rooms",
        mailbox: EmitterPlugin | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        broker = broker_from_url(broker) if isinstance(broker, str) else broker
        self._link = _Link(broker, channels(cluster_prefix)[0])
        self.namespace = namespace
        self.prefix = cluster_prefix
        self.mailbox = mailbox
        """With a :class:`~rooms.Mailbox` (its bounds as the servers'), ``emitter.mailbox.send``
        keeps mail (in Redis) and tells the servers."""
        self.recovery = recovery
        """The servers' :class:`~rooms.Recovery` settings, when they run connection state
        recovery: broadcasts get offsets and are logged (in the Redis stream, or by each
        server's memory store), so a client that is away meanwhile gets them on recovery."""
        self._offsets = _Offsets()
        # The shared (Redis) recovery log, when the servers use one: opened on first use.
        self._store: Store | None = None
        self._store_looked = False

    @property
    def broker(self) -> Broker:
        """The broker this emitter publishes on (shared by its namespace views)."""
        return self._link.broker

    async def __aenter__(self) -> Emitter:
        await self._link.broker.__aenter__()
        self._link.open = True
        if self.mailbox is not None:
            self.mailbox.start_emitter(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.mailbox is not None:
            self.mailbox.stop()
        self._link.open = False
        await self._link.broker.__aexit__(*exc_info)

    def of(self, namespace: str) -> Emitter:
        """The same emitter for another namespace (it shares the broker, open or not)."""
        view = Emitter(
            self._link.broker,
            namespace=namespace,
            cluster_prefix=self.prefix,
            mailbox=self.mailbox,
            recovery=self.recovery,
        )
        view._link, view._offsets = self._link, self._offsets
        view._store, view._store_looked = self._store, self._store_looked
        return view

    def _chain(
        self, opts: wire.BroadcastOptions | None = None, timeout: float | None = None
    ) -> EmitterOperator:
        return EmitterOperator(self, wire.ALL if opts is None else opts)

    def _everyone(self) -> EmitterOperator:
        return EmitterOperator(self, wire.ALL)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Call every server's ``on_server_event(event)`` handler (no answers)."""
        await self._publish(wire.ServerSideEmit([event, *args]))

    async def _offset(
        self, opts: wire.BroadcastOptions, text: str, parts: tuple[bytes, ...]
    ) -> str:
        """Where recovery will find this broadcast: a Redis stream entry (the servers share
        the stream), or an offset of our own that each server's memory store logs."""
        recovery = self.recovery
        if recovery is not None and not self._store_looked:
            self._store_looked = True
            store = recovery.open_store(self._link.broker, self.prefix, anyio.current_time)
            # Only a shared log can take it; memory stores are each server's own.
            self._store = store if store.delivers else None
        if self._store is not None:
            offset: str = await self._store.append(self.namespace, opts, text, parts)
            return offset
        return self._offsets.next()

    async def _publish(self, body: wire.Body) -> None:
        link = self._link
        if not link.open:
            raise BrokerError("expected an open emitter (async with emitter), got a closed one")
        message = wire.Message(EMITTER_UID, self.namespace, body)
        await link.broker.publish(link.channel, wire.encode(message))


class _Offsets:
    """Offsets an emitter stamps itself (for servers with memory recovery stores)."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(4)
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count:x}"


class EmitterOperator(Chain["EmitterOperator"]):
    """A selection of recipients for an :class:`Emitter`; the selectors
    (:mod:`rooms.selectors`) narrow it, the methods here act on it."""

    __slots__ = ("_emitter", "_opts")

    def __init__(self, emitter: Emitter, opts: wire.BroadcastOptions) -> None:
        self._emitter = emitter
        self._opts = opts

    def _options(self) -> wire.BroadcastOptions:
        return self._opts

    def _chain(
        self, opts: wire.BroadcastOptions | None = None, timeout: float | None = None
    ) -> EmitterOperator:
        return EmitterOperator(self._emitter, self._opts if opts is None else opts)

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to the selected sockets, wherever they are connected."""
        emitter = self._emitter
        text, attachments = sio.encode_event_parts(emitter.namespace, event, args)
        parts, offset = tuple(attachments), None
        if emitter.recovery is not None and not self._opts.volatile:
            offset = await emitter._offset(self._opts, text, parts)
            if emitter._store is not None:
                return  # in the shared Redis log: every server delivers it from there
        await emitter._publish(wire.Broadcast(self._opts, text, parts, offset=offset))

    # No request id: no server answers an emitter (it has no channel of its own); each
    # applies these when they arrive, in the order this emitter published.

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Publish: the selected sockets join ``rooms`` (not waiting for the servers)."""
        await self._emitter._publish(wire.SocketsJoin(self._opts, room_set(*rooms)))

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Publish: the selected sockets leave ``rooms`` (not waiting for the servers)."""
        await self._emitter._publish(wire.SocketsLeave(self._opts, room_set(*rooms)))

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Publish: disconnect the selected sockets (not waiting for the servers)."""
        await self._emitter._publish(wire.DisconnectSockets(self._opts, close))
