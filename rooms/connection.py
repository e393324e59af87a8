"""Connection: one Engine.IO session as Socket.IO sees it.

It decodes messages (reassembling binary attachments), keeps the socket of each namespace
the client joined, and enforces the packet order of Socket.IO v5: CONNECT to a namespace
before anything else on it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

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
    __slots__ = ("connecting", "decoder", "server", "session", "sockets")

    def __init__(self, server: Server, session: Session) -> None:
        self.server = server
        self.session = session
        self.decoder = sio.Decoder()
        self.sockets: dict[str, Socket] = {}
        self.connecting: set[str] = set()

    def send_packet(self, packet: sio.Packet) -> None:
        frames = [engineio.message_frame(f) for f in sio.encode(packet)]
        self.session.send_many(frames, len(frames))

    def on_message(self, data: str | bytes) -> Awaitable[None] | None:
        """Dispatch one message. A CONNECT returns the connect flow for the engine to await
        before the next message (middlewares and connect handler may be async); everything
        else completes here, async event handlers in their own task."""
        if type(data) is str and data[:1] == "2" and not self.decoder.awaiting_attachments:
            # Fast path: an EVENT on the main namespace, most of what clients send.
            socket = self.sockets.get("/")
            event = sio.decode_main_event(data) if socket is not None else None
            if event is not None and socket is not None:
                socket.nsp.on_event(socket, event[0], event[1])
                return None
        try:
            packet = self.decoder.feed(data)
        except ProtocolError as exc:
            logger.info("session %s: %s; closing", self.session.sid, exc)
            self.close("parse error")
            return None
        if packet is None:
            return None  # waiting for binary attachments
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
            self.connecting.add(packet.nsp)
            return self.server._connect(self, packet.nsp, packet.data or {})
        logger.info(
            "session %s: expected CONNECT before any other packet on namespace %s, got %s "
            "while it is %s; closing",
            self.session.sid,
            packet.nsp,
            ptype.name,
            "connected"
            if socket is not None
            else ("connecting" if packet.nsp in self.connecting else "not connected"),
        )
        self.close("forced server close")
        return None

    def check_connected(self) -> None:
        """Called ``connect_timeout`` after the session opened."""
        if not self.sockets and not self.connecting and not self.session.closed:
            logger.info(
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
        sockets = list(self.sockets.values())
        self.sockets.clear()
        for socket in sockets:
            socket._closed(reason)
