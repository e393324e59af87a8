"""What a node does with each message another process sends it.

Everything here acts on this process's own sockets only: each process knows its sockets'
rooms, so a broadcast or a room operation is carried out by every process for its share.
Answers go to the asking process's own channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from rooms.acks import ack_args
from rooms.exceptions import ProtocolError
from rooms.protocol import cluster as wire
from rooms.protocol import socketio as sio

if TYPE_CHECKING:
    from rooms.cluster.node import Node
    from rooms.namespace import Namespace
    from rooms.socket import Socket

logger = logging.getLogger("rooms.cluster")

Table = dict[type, Callable[[wire.Message], None]]

_ANSWERS = (
    wire.FetchSocketsResponse,
    wire.ServerSideEmitResponse,
    wire.BroadcastClientCount,
    wire.BroadcastAck,
)


def handlers(node: Node) -> Table:
    """The dispatch table of ``node``: body type → handler."""
    h = _Handlers(node)
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
    }


class _Handlers:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.server = node.server

    def _nsp(self, name: str) -> Namespace | None:
        return self.server._namespaces.get(name)

    def _sockets(self, message: wire.Message, opts: wire.BroadcastOptions) -> list[Socket]:
        nsp = self._nsp(message.nsp)
        return nsp.adapter.sockets(opts) if nsp is not None else []

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
        if body.request_id is not None:
            self._broadcast_with_ack(message, body, body.request_id)
            return
        nsp = self._nsp(message.nsp)
        if nsp is not None:
            nsp.delivery.deliver_remote(body)

    def _broadcast_with_ack(self, message: wire.Message, body: wire.Broadcast, rid: str) -> None:
        node, requester, name = self.node, message.uid, message.nsp
        nsp = self._nsp(name)
        sockets = nsp.adapter.sockets(body.opts) if nsp is not None else []
        if nsp is None or not sockets:
            node.send(name, wire.BroadcastClientCount(rid, 0), to=requester)
            return

        def on_ack(result: list[Any] | BaseException) -> None:
            if isinstance(result, BaseException):
                node.send(name, wire.BroadcastClientCount(rid, -1), to=requester)
            else:
                node.send(name, wire.BroadcastAck(rid, result), to=requester)

        # Our own ack id: the sender's could collide with acks our sockets already owe.
        ack_id, reached = nsp.delivery.send_with_ack(
            sockets, body.text, body.attachments, body.opts.volatile, on_ack
        )
        # Queued before any ack can be: acks need the frames sent, and we have not yielded.
        node.send(name, wire.BroadcastClientCount(rid, len(reached)), to=requester)
        timeout = self.server.ack_timeout if body.timeout is None else body.timeout
        self.server.spawn(_expire, reached, ack_id, timeout)

    # ------------------------------------------------------------------ room operations

    def sockets_join(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, wire.SocketsJoin):
            for socket in self._sockets(message, body.opts):
                socket.nsp.adapter.add_all(socket.id, body.rooms)

    def sockets_leave(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, wire.SocketsLeave):
            for socket in self._sockets(message, body.opts):
                for room in body.rooms:
                    socket.nsp.adapter.delete(socket.id, room)

    def disconnect_sockets(self, message: wire.Message) -> None:
        body = message.body
        if isinstance(body, wire.DisconnectSockets):
            for socket in self._sockets(message, body.opts):
                socket._disconnect(body.close)

    def fetch_sockets(self, message: wire.Message) -> None:
        body = message.body
        if not isinstance(body, wire.FetchSockets):
            return
        details = tuple(describe(socket) for socket in self._sockets(message, body.opts))
        try:
            self.node.send(
                message.nsp, wire.FetchSocketsResponse(body.request_id, details), to=message.uid
            )
        except (TypeError, ValueError):
            details = tuple(_json_safe(d) for d in details)
            self.node.send(
                message.nsp, wire.FetchSocketsResponse(body.request_id, details), to=message.uid
            )

    # ------------------------------------------------------------------ server-side emit

    def server_side_emit(self, message: wire.Message) -> None:
        body = message.body
        if not isinstance(body, wire.ServerSideEmit) or not body.data:
            return
        event, args = body.data[0], body.data[1:]
        nsp = self._nsp(message.nsp)
        handler = nsp._registry.server_events.get(event) if nsp is not None else None
        if handler is None or not isinstance(event, str):
            logger.info("node %s: no server event handler for %r", self.node.uid, event)
            self._respond(message, body, None)
            return
        try:
            call_args = handler.args_for(args)
        except ProtocolError as exc:
            logger.info("node %s: %s; server event ignored", self.node.uid, exc)
            self._respond(message, body, None)
            return
        handler.run(
            self.server.spawn,
            call_args,
            lambda result, ok: self._respond(message, body, result if ok else None),
            ("server event handler %s", handler.name),
        )

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


def describe(socket: Socket) -> wire.SocketDetails:
    """What another process learns of a socket from ``fetch_sockets``."""
    return wire.SocketDetails(
        socket.id, frozenset(socket.rooms), socket.data, socket.handshake.to_wire()
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


async def _expire(sockets: list[Socket], ack_id: int, timeout: float) -> None:
    """Forget the acks of a remote broadcast its sender has stopped waiting for."""
    await anyio.sleep(timeout)
    for socket in sockets:
        socket._acks.discard(ack_id)
