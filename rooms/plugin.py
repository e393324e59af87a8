"""Plug-ins: what runs beside the handlers, on the Socket.IO API (the durable mailbox is
one). The server and the emitter know them only through these Protocols, so a plug-in
depends on rooms and never the other way round."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rooms.emitter import Emitter
    from rooms.server import Server
    from rooms.socket import Socket


class Plugin(Protocol):
    """A plug-in of a :class:`~rooms.Server` (``rooms.Server(mailbox=...)``)."""

    def attach(self, server: Server) -> None:
        """Once, when the server is made: register what it needs (server-event handlers)."""

    def start(self, server: Server) -> None:
        """The server starts (its broker, if any, joined or being joined)."""

    def stop(self) -> None:
        """The server stops."""

    def socket_connected(self, socket: Socket) -> None:
        """A socket of any namespace connected (its CONNECT reply is out); a plug-in that
        keeps it registers ``socket.on_leave(...)`` to hear when it goes."""


class EmitterPlugin(Protocol):
    """A plug-in of an :class:`~rooms.Emitter` (``rooms.Emitter(url, mailbox=...)``)."""

    def start_emitter(self, emitter: Emitter) -> None:
        """The emitter opened its broker."""

    def stop(self) -> None:
        """The emitter closes."""
