"""Observers: what the server tells the tools that watch it (metrics, the Admin UI, tracing).

An observer subclasses :class:`Observer` and overrides what it needs; the server calls it
synchronously, in its own flow, so every method must be quick and must not raise (an
observer is library code, not a handler: nothing guards these calls). Without an observer
the server only tests ``server.observer is None`` at each of these points.

Counts that cost nothing to keep are plain integers on the objects that own them and are
read, not pushed: ``server.engine.upgrades``, ``overflows``, ``volatile_drops`` and
``outbox_peak``; ``broker.dropped`` and ``broker.reconnects``; ``server.resume`` and
``server.mailbox`` statistics. An observer reads them when it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rooms.engine.session import Session
    from rooms.namespace import Namespace
    from rooms.protocol.engineio import Frame
    from rooms.server import Server
    from rooms.socket import Socket


class Observer:
    """The base of every observer: each method does nothing.

    ``events``: whether :meth:`event_in` and :meth:`event_out` are wanted (they see every
    event's arguments, which only a development tool should). ``traces``: whether
    :meth:`handler_span` is (it is asked once per handler call).
    """

    events = False
    traces = False

    def start(self, server: Server) -> None:
        """The server starts (its task group is running: ``server.spawn`` works)."""

    def stop(self) -> None:
        """The server stops."""

    # ------------------------------------------------------------------ connections

    def session_opened(self, session: Session) -> None:
        """An Engine.IO session opened (on ``session.transport``)."""

    def session_upgraded(self, session: Session) -> None:
        """A session moved from long-polling to a websocket."""

    def session_closed(self, session: Session, reason: str) -> None:
        """A session closed (once), with the reason its sockets get."""

    def socket_connected(self, socket: Socket) -> None:
        """A socket joined its namespace (its CONNECT reply is queued)."""

    def socket_refused(self, namespace: Namespace | None, name: str, message: str) -> None:
        """A CONNECT to ``name`` was answered with CONNECT_ERROR ``message`` (``namespace``
        is None when no namespace serves that name)."""

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        """A socket left its namespace (its rooms still intact)."""

    def room_joined(self, namespace: str, sid: str, room: str) -> None:
        """Socket ``sid`` joined ``room`` (its own id room included, at connect)."""

    def room_left(self, namespace: str, sid: str, room: str) -> None:
        """Socket ``sid`` left ``room`` (a socket that disconnects leaves every room)."""

    # ------------------------------------------------------------------ packets

    def packet_in(self, ptype: int, size: int, packets: int) -> None:
        """A message from a client of ``size`` (characters of a text frame, bytes of a
        binary one): a Socket.IO packet of type ``ptype`` (0-6: any other number is not a
        valid packet; ``packets`` is 1), or one binary attachment (``ptype`` is then its
        packet's type, and ``packets`` 0: the attachment is part of that packet)."""

    def packets_out(self, frames: Sequence[Frame], count: int) -> None:
        """One packet (its frames: the text, then any attachments) queued for ``count``
        clients."""

    def event_in(self, socket: Socket, data: list[Any]) -> None:
        """Event ``data = [name, *args]`` from ``socket`` (only if ``events``)."""

    def event_out(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        """``socket.emit(event, *args)`` (only if ``events``)."""

    def broadcast(self, namespace: str, reached: int) -> None:
        """A broadcast reached ``reached`` local sockets (the fan-out of one emit)."""

    def ack(self, namespace: str, latency: float | None) -> None:
        """An emit's ack came after ``latency`` seconds, or (None) it timed out."""

    def handler_failed(self, namespace: Namespace, event: str) -> None:
        """The handler of ``event`` raised (or returned what cannot be sent)."""

    def cluster_request(self, latency: float | None) -> None:
        """A request to every other process of the cluster (``fetch_sockets``, a room
        operation, ``server_side_emit_with_ack``) was answered by all of them after
        ``latency`` seconds, or (None) it timed out."""

    def mail_waiting(self, count: int) -> None:
        """The durable mailbox found ``count`` messages (up to a batch of 64) waiting for
        an identity as one of its sockets connected."""

    def handler_span(self, socket: Socket, event: str) -> AbstractContextManager[Any] | None:
        """A context manager the handler of ``event`` runs in (a tracing span), or None."""
        return None


class Observers(Observer):
    """Several observers as one."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)
        self.events = any(o.events for o in self.observers)
        self.traces = any(o.traces for o in self.observers)

    def start(self, server: Server) -> None:
        for o in self.observers:
            o.start(server)

    def stop(self) -> None:
        for o in self.observers:
            o.stop()

    def session_opened(self, session: Session) -> None:
        for o in self.observers:
            o.session_opened(session)

    def session_upgraded(self, session: Session) -> None:
        for o in self.observers:
            o.session_upgraded(session)

    def session_closed(self, session: Session, reason: str) -> None:
        for o in self.observers:
            o.session_closed(session, reason)

    def socket_connected(self, socket: Socket) -> None:
        for o in self.observers:
            o.socket_connected(socket)

    def socket_refused(self, namespace: Namespace | None, name: str, message: str) -> None:
        for o in self.observers:
            o.socket_refused(namespace, name, message)

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        for o in self.observers:
            o.socket_disconnected(socket, reason)

    def room_joined(self, namespace: str, sid: str, room: str) -> None:
        for o in self.observers:
            o.room_joined(namespace, sid, room)

    def room_left(self, namespace: str, sid: str, room: str) -> None:
        for o in self.observers:
            o.room_left(namespace, sid, room)

    def packet_in(self, ptype: int, size: int, packets: int) -> None:
        for o in self.observers:
            o.packet_in(ptype, size, packets)

    def packets_out(self, frames: Sequence[Frame], count: int) -> None:
        for o in self.observers:
            o.packets_out(frames, count)

    def event_in(self, socket: Socket, data: list[Any]) -> None:
        for o in self.observers:
            if o.events:
                o.event_in(socket, data)

    def event_out(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        for o in self.observers:
            if o.events:
                o.event_out(socket, event, args)

    def broadcast(self, namespace: str, reached: int) -> None:
        for o in self.observers:
            o.broadcast(namespace, reached)

    def ack(self, namespace: str, latency: float | None) -> None:
        for o in self.observers:
            o.ack(namespace, latency)

    def handler_failed(self, namespace: Namespace, event: str) -> None:
        for o in self.observers:
            o.handler_failed(namespace, event)

    def cluster_request(self, latency: float | None) -> None:
        for o in self.observers:
            o.cluster_request(latency)

    def mail_waiting(self, count: int) -> None:
        for o in self.observers:
            o.mail_waiting(count)

    def handler_span(self, socket: Socket, event: str) -> AbstractContextManager[Any] | None:
        for o in self.observers:  # one tracer at a time: the first that traces
            if o.traces:
                return o.handler_span(socket, event)
        return None
