"""What a node does with each message another process sends it.

Everything acts on this process's own sockets only: each process knows its sockets' rooms,
so a broadcast or a room operation is carried out by every process for its share. This
module speaks the wire (decoding what arrives, answering on the asker's own channel); the
work on sockets is done by a :class:`Local`, which the server provides (``rooms.local``):
the cluster layer reaches up only through that Protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from rooms.acks import AckCallback, ack_args
from rooms.protocol import cluster as wire
from rooms.protocol import socketio as sio

if TYPE_CHECKING:
    from rooms.cluster.node import Node

logger = logging.getLogger("rooms.cluster")

Table = dict[type, Callable[[wire.Message], None]]

_ANSWERS = (
    wire.FetchSocketsResponse,
    wire.ServerSideEmitResponse,
    wire.BroadcastClientCount,
    wire.BroadcastAck,
    wire.TakeOverResponse,
    wire.SocketsDone,
)


class Local(Protocol):
    """This process's side of every cluster request, on its own sockets."""

    async def wait_flushed(self) -> None:
        """Wait until what deliveries queued has gone out (backpressure into the broker)."""

    def broadcast(self, nsp: str, body: wire.Broadcast) -> None:
        """Deliver a broadcast to the local sockets it selects."""

    def broadcast_with_ack(self, nsp: str, body: wire.Broadcast, on_ack: AckCallback) -> int:
        """Send it asking the selected local sockets for acks (each to ``on_ack``, or the
        exception that ended the wait); how many were reached. Their acks are forgotten
        once ``body.timeout`` (or the server's ack timeout) has passed."""

    def sockets_join(self, nsp: str, opts: wire.BroadcastOptions, rooms: frozenset[str]) -> None:
        """The selected local sockets join ``rooms``."""

    def sockets_leave(self, nsp: str, opts: wire.BroadcastOptions, rooms: frozenset[str]) -> None:
        """The selected local sockets leave ``rooms``."""

    def disconnect_sockets(self, nsp: str, opts: wire.BroadcastOptions, close: bool) -> None:
        """Disconnect the selected local sockets."""

    def fetch_sockets(self, nsp: str, opts: wire.BroadcastOptions) -> list[wire.SocketDetails]:
        """What the others learn of the selected local sockets."""

    def server_side_emit(
        self, nsp: str, event: str, args: list[Any], respond: Callable[[Any], None]
    ) -> bool:
        """Run the server-event handler for ``event`` (``respond`` gets its return value, or
        None if it failed); False if there is none, or the arguments do not fit it."""

    def take_over(self, nsp: str, pid: str, respond: Callable[[bool], None]) -> None:
        """Give up the socket ``pid`` if it is live here (connection state recovery: its
        client came back elsewhere); ``respond(found)`` once its session is saved."""


def handlers(node: Node, local: Local) -> Table:
    """The dispatch table of ``node``: body type → handler."""
    h = _Handlers(node, local)
    return {
        wire.InitialHeartbeat: h.initial_heartbeat,
        wire.Heartbeat: h.nothing,  # the node already noted that the sender is alive
        wire.AdapterClose: h.close,
        wire.Broadcast: h.broadcast,
        wire.SocketsJoin: h.sockets_join,
        wire.SocketsLeave: h.sockets_leave,
        wire.DisconnectSockets: h.disconnect_sockets,
        wire.FetchSockets: h.fetch_sockets,
        wire.ServerSideEmit: h.server_side_emit,
        wire.FetchSocketsResponse: h.answer,
        wire.ServerSideEmitResponse: h.answer,
        wire.BroadcastClientCount: h.answer,
        wire.BroadcastAck: h.answer,
        wire.Forward: h.forward,
        wire.TakeOver: h.take_over,
        wire.TakeOverResponse: h.answer,
        wire.SocketsDone: h.answer,
    }


class _Handlers:
    def __init__(self, node: Node, local: Local) -> None:
        self.node = node
        self.local = local

    # ------------------------------------------------------------------ membership

    def nothing(self, message: wire.Message) -> None:
        pass

    def initial_heartbeat(self, message: wire.Message) -> None:
        self.node.send("/", wire.Heartbeat(), to=message.uid)

    def close(self, message: wire.Message) -> None:
        self.node.peer_gone(message.uid)

    def answer(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, _ANSWERS):
            self.node.answered(body.request_id, message.uid, body)

    def forward(self, message: wire.Message) -> None:
        relay = self.node.relay
        if relay is not None and isinstance(message.body, wire.Forward):
            relay.on_forward(message.uid, message.body)

    # ------------------------------------------------------------------ broadcasts

    def broadcast(self, message: wire.Message) -> None:
        body = message.body
        if not isinstance(body, wire.Broadcast):
            return
        if body.request_id is None:
            self.local.broadcast(message.nsp, body)
            return
        node, requester, name, rid = self.node, message.uid, message.nsp, body.request_id

        def on_ack(result: list[Any] | BaseException) -> None:
            if isinstance(result, BaseException):
                node.send(name, wire.BroadcastClientCount(rid, -1), to=requester)
            else:
                node.send(name, wire.BroadcastAck(rid, result), to=requester)

        reached = self.local.broadcast_with_ack(name, body, on_ack)
        # Queued before any ack can be: acks need the frames sent, and we have not yielded.
        node.send(name, wire.BroadcastClientCount(rid, reached), to=requester)

    # ------------------------------------------------------------------ room operations

    def sockets_join(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, wire.SocketsJoin):
            self.local.sockets_join(message.nsp, body.opts, body.rooms)
            self._done(message, body.request_id)

    def sockets_leave(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, wire.SocketsLeave):
            self.local.sockets_leave(message.nsp, body.opts, body.rooms)
            self._done(message, body.request_id)

    def disconnect_sockets(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, wire.DisconnectSockets):
            self.local.disconnect_sockets(message.nsp, body.opts, body.close)
            self._done(message, body.request_id)

    def _done(self, message: wire.Message, request_id: str | None) -> None:
        """Tell a server that asked that its room operation is applied here (the local work
        above is synchronous, so it is); an emitter asks for nothing."""
        if request_id is not None:
            self.node.send(message.nsp, wire.SocketsDone(request_id), to=message.uid)

    def fetch_sockets(self, message: wire.Message) -> None:
        body = message.body
        if not isinstance(body, wire.FetchSockets):
            return
        details = tuple(self.local.fetch_sockets(message.nsp, body.opts))
        try:
            self.node.send(
                message.nsp, wire.FetchSocketsResponse(body.request_id, details), to=message.uid
            )
        except (TypeError, ValueError):
            details = tuple(_json_safe(d) for d in details)
            self.node.send(
                message.nsp, wire.FetchSocketsResponse(body.request_id, details), to=message.uid
            )

    # ------------------------------------------------------------------ recovery

    def take_over(self, message: wire.Message) -> None:
        body = message.body
        if not isinstance(body, wire.TakeOver):
            return
        node, nsp, requester, rid = self.node, message.nsp, message.uid, body.request_id

        def respond(found: bool) -> None:
            node.send(nsp, wire.TakeOverResponse(rid, found), to=requester)

        self.local.take_over(nsp, body.pid, respond)

    # ------------------------------------------------------------------ server-side emit

    def server_side_emit(self, message: wire.Message) -> None:
        body = message.body
        if not isinstance(body, wire.ServerSideEmit) or not body.data:
            return
        event, args = body.data[0], body.data[1:]

        def respond(result: Any) -> None:
            self._respond(message, body, result)

        if not isinstance(event, str) or not self.local.server_side_emit(
            message.nsp, event, args, respond
        ):
            logger.info("node %s: no server event handler for %.60r", self.node.uid, event)
            respond(None)

    def _respond(self, message: wire.Message, body: wire.ServerSideEmit, result: Any) -> None:
        if body.request_id is None:
            return
        response = wire.ServerSideEmitResponse(body.request_id, ack_args(result))
        try:
            self.node.send(message.nsp, response, to=message.uid)
        except (TypeError, ValueError):
            logger.warning("server event answer %r is not JSON-serialisable; sent none", result)
            self.node.send(
                message.nsp, wire.ServerSideEmitResponse(body.request_id, []), to=message.uid
            )


def _json_safe(details: wire.SocketDetails) -> wire.SocketDetails:
    try:
        sio.dumps(sio.split_binary(details.data, []))
        return details
    except (TypeError, ValueError):
        logger.warning(
            "socket %s: socket.data is not JSON-serialisable; other processes see None",
            details.id,
        )
        return wire.SocketDetails(details.id, details.rooms, None, details.handshake)
