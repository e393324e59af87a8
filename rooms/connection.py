"""Connection: one Engine.IO session as Socket.IO sees it.

It decodes messages (reassembling binary attachments), keeps the socket of each namespace
the client joined, and enforces the packet order of Socket.IO v5: CONNECT to a namespace
before anything else on it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from rooms._log import bad_input
from rooms.engine.session import Session
from rooms.exceptions import ProtocolError
from rooms.protocol import engineio
from rooms.protocol import socketio as sio

if TYPE_CHECKING:
    from rooms.server import Server
    from rooms.socket import Socket

logger = logging.getLogger("rooms")

EVENT = sio.PacketType.EVENT
ACK = sio.PacketType.ACK
CONNECT = sio.PacketType.CONNECT
DISCONNECT = sio.PacketType.DISCONNECT


class Connection:
    __slots__ = ("__weakref__", "connecting", "decoder", "server", "session", "sockets")

    def __init__(self, server: Server, session: Session) -> None:
        self.server = server
        self.session = session
        self.decoder = sio.Decoder(server.limits, server.engine.max_payload)
        self.sockets: dict[str, Socket] = {}
        # Namespaces with a CONNECT in progress: a tuple, since there are rarely more than
        # one, and the empty one costs nothing (an empty set is 216 bytes per connection).
        self.connecting: tuple[str, ...] = ()

    def connected_or_refused(self, nsp: str) -> None:
        """The CONNECT to ``nsp`` is over, either way."""
        self.connecting = tuple(name for name in self.connecting if name != nsp)

    def send_packet(self, packet: sio.Packet) -> None:
        frames = [engineio.message_frame(f) for f in sio.encode(packet)]
        if self.session.send_many(frames) and self.server.observer is not None:
            self.server.observer.packets_out(frames, 1)

    def on_message(self, data: str | bytes) -> Awaitable[None] | None:
        """Dispatch one message. A CONNECT returns the connect flow for the engine to await
        before the next message (middlewares and connect handler may be async); everything
        else completes here, async event handlers in their own task.

        Raises :class:`ProtocolError` for input that breaks Socket.IO v5: the engine closes
        the connection and logs what was expected.
        """
        decoder = self.decoder
        observer = self.server.observer
        if observer is not None:
            # The packet type's digit (an observer checks its range), or an attachment's.
            ptype = ord(data[0]) - 48 if type(data) is str and data else _attached(decoder)
            observer.packet_in(ptype, len(data), type(data) is str)
        if type(data) is str and data[:1] == "2" and decoder.pending is None:
            # Fast path: an EVENT on the main namespace, most of what clients send.
            socket = self.sockets.get("/")
            event = sio.decode_main_event(data, decoder.limits) if socket is not None else None
            if event is not None and socket is not None:
                socket.nsp.on_event(socket, event[0], event[1])
                return None
        packet = decoder.feed(data)
        if packet is None:
            if type(data) is str:  # a binary packet announced (not one of its attachments)
                self._awaiting_attachments()
            return None
        ptype = packet.type
        socket = self.sockets.get(packet.nsp)
        if socket is not None:
            if ptype is EVENT:
                socket.nsp.on_event(socket, packet.data, packet.id)
                return None
            if ptype is ACK:
                socket._on_ack(packet)
                return None
            if ptype is DISCONNECT:
                self.remove(socket)
                socket._closed("client namespace disconnect")
                return None
        elif ptype is CONNECT and packet.nsp not in self.connecting:
            self.connecting += (packet.nsp,)
            return self.server._connect(self, packet.nsp, packet.data or {})
        bad_input.log(
            logging.INFO,
            "session %s: expected CONNECT before any other packet on namespace %.60s, got %s "
            "while it is %s; closing",
            self.session.sid,
            packet.nsp,
            ptype.name,
            self._state_of(packet.nsp),
        )
        self.close("forced server close")
        return None

    def _state_of(self, nsp: str) -> str:
        if nsp in self.sockets:
            return "connected"
        return "connecting" if nsp in self.connecting else "not connected"

    def _awaiting_attachments(self) -> None:
        """A binary packet was announced: only on a connected namespace (nothing is held
        for one that is not), and its attachments must all come within the deadline."""
        pending = self.decoder.pending
        if pending is None:
            return
        if pending.nsp not in self.sockets:
            raise ProtocolError(
                f"expected CONNECT before binary packets on namespace {pending.nsp[:60]!r}, "
                f"got a {pending.type.name} announcing {pending.attachments} attachment(s) "
                f"while it is {self._state_of(pending.nsp)}"
            )
        self.server.attachment_deadlines.add(self.check_attachments, self.decoder.started)

    def check_attachments(self, started: int) -> None:
        """``attachment_timeout`` after binary packet number ``started`` was announced."""
        decoder = self.decoder
        if decoder.pending is not None and decoder.started == started and not self.session.closed:
            self.server.engine.protocol_error(
                self.session,
                ProtocolError(
                    f"expected {decoder.pending.attachments} attachment(s) within "
                    f"{decoder.limits.attachment_timeout} s, got fewer"
                ),
            )

    def check_connected(self) -> None:
        """Called ``connect_timeout`` after the session opened."""
        if not self.sockets and not self.connecting and not self.session.closed:
            bad_input.log(
                logging.INFO,
                "session %s: expected a namespace CONNECT, got none in time; closing",
                self.session.sid,
            )
            self.close("forced close")

    def remove(self, socket: Socket) -> None:
        if self.sockets.get(socket.nsp.name) is socket:
            del self.sockets[socket.nsp.name]

    def close(self, reason: str) -> None:
        """Close the whole connection; every socket on it gets ``reason``."""
        self.closed(reason)
        self.session.close(reason)

    def closed(self, reason: str) -> None:
        self.decoder.reset()  # attachments held for an unfinished packet go now
        sockets = list(self.sockets.values())
        self.sockets.clear()
        for socket in sockets:
            socket._closed(reason)


def _attached(decoder: sio.Decoder) -> int:
    """The type of the packet a binary attachment belongs to (-1: none is announced)."""
    pending = decoder.pending
    return -1 if pending is None else int(pending.type)
