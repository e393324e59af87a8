"""Socket: one client connected to one namespace. Handed to handlers; never constructed
by users."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from rooms.acks import AckWaiter, PendingAcks, ack_value, disconnected
from rooms.adapter import BroadcastOptions
from rooms.engine.session import Session
from rooms.exceptions import AckTimeout, Disconnected
from rooms.handshake import Handshake
from rooms.operators import BroadcastOperator, joinable
from rooms.protocol import engineio
from rooms.protocol import socketio as sio
from rooms.selectors import room_set

if TYPE_CHECKING:
    from rooms.connection import Connection
    from rooms.namespace import Namespace

logger = logging.getLogger("rooms")


class Socket:
    """A client's connection to one namespace.

    ``data`` is yours to fill; ``handshake`` tells how the client connected;
    ``recovered`` is True when connection state recovery restored this socket.
    """

    __slots__ = (
        "_acks",
        "_leave_hooks",
        "_pending",
        "conn",
        "connected",
        "data",
        "handshake",
        "id",
        "nsp",
        "pid",
        "recovered",
        "session",
    )

    def __init__(self, nsp: Namespace, conn: Connection, sid: str, auth: dict[str, Any]) -> None:
        self.nsp = nsp
        self.conn = conn
        self.session: Session = conn.session
        self.id = sid
        self.pid: str | None = None
        self.handshake = Handshake(conn.session.scope, auth)
        self.data: dict[str, Any] = {}
        self.connected = False
        self.recovered = False
        self._acks = PendingAcks()
        # Frames emitted before the CONNECT reply went out wait here (see Namespace.connect).
        self._pending: list[engineio.Frame] | None = []
        self._leave_hooks: list[Callable[[Socket, str], None]] = []

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.nsp.name}>"

    @property
    def rooms(self) -> set[str]:
        """The rooms this socket is in (a copy), its own id room included."""
        return self.nsp.adapter.socket_rooms(self.id)

    # ------------------------------------------------------------------ sending

    def _write(
        self, frames: list[engineio.Frame], volatile: bool = False, size: int | None = None
    ) -> bool:
        """Queue frames for this client. Before the CONNECT reply they wait in ``_pending``
        (whoever sends them: the one rule for frames of a socket that is not connected yet)."""
        pending = self._pending
        if pending is not None:
            pending.extend(frames)
            return True
        if len(frames) == 1:
            return self.session.send(frames[0], volatile)
        return self.session.send_many(frames, volatile, size)

    async def _write_now(self, frames: list[engineio.Frame], volatile: bool = False) -> bool:
        """Queue and, if nobody is sending on this connection, send from this task."""
        pending = self._pending
        if pending is not None:
            pending.extend(frames)
            return True
        return await self.session.send_now(frames, volatile)

    def _reply(self, frames: list[engineio.Frame]) -> Awaitable[bool] | None:
        """Queue frames answering this client's input: None if another task sends them
        (the reader dispatching that input, say), else the send for this task to await."""
        pending = self._pending
        if pending is not None:
            pending.extend(frames)
            return None
        session = self.session
        if session.flushing:
            session.send_many(frames)
            return None
        return session.send_now(frames)

    def _send_packet(self, packet: sio.Packet) -> bool:
        frames = [engineio.message_frame(f) for f in sio.encode(packet)]
        sent = self._write(frames)
        if sent and self.nsp.server.observer is not None:
            self.nsp.server.observer.packets_out(frames, 1)
        return sent

    async def emit(self, event: str, *args: Any, volatile: bool = False) -> None:
        """Send ``event`` with ``args`` to this client. Bytes anywhere travel as binary."""
        self._check_connected()
        observer = self.nsp.server.observer
        if observer is not None and observer.events:
            observer.event_out(self, event, args)
        opts = BroadcastOptions(rooms=frozenset((self.id,)), volatile=volatile)
        await self.nsp.delivery.emit(opts, event, args, to=self)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send ``event`` and wait for the client's acknowledgement.

        Returns the ack's argument (a tuple if several, None if none). Raises
        :class:`~rooms.AckTimeout` after ``timeout`` seconds (default: the server's
        ``ack_timeout``) and :class:`~rooms.Disconnected` if the socket goes away first.
        """
        self._check_connected()
        nsp = self.nsp
        observer = nsp.server.observer
        if observer is not None and observer.events:
            observer.event_out(self, event, args)
        waiter = AckWaiter()
        text, parts = sio.encode_event_parts(nsp.name, event, args)
        ack_id, _ = nsp.delivery.send_with_ack((self,), text, parts, False, waiter)
        sent_at = anyio.current_time()
        try:
            args_ = await waiter.wait(
                nsp.server.ack_timeout if timeout is None else timeout,
                f"{event!r} to {self.id}",
            )
        except AckTimeout:
            if observer is not None:
                observer.ack(nsp.name, None)
            raise
        finally:
            self._acks.discard(ack_id)
        if observer is not None:
            observer.ack(nsp.name, anyio.current_time() - sent_at)
        return ack_value(args_)

    call = emit_with_ack
    """``call`` is python-socketio's name for emit-and-wait."""

    def on_leave(self, hook: Callable[[Socket, str], None]) -> None:
        """Call ``hook(socket, reason)`` when this socket leaves its namespace (before the
        disconnect handler, with its rooms intact): for plug-ins such as recovery."""
        self._leave_hooks.append(hook)

    @property
    def gone(self) -> bool:
        """Disconnected (or refused): neither connected nor still connecting."""
        return not self.connected and self._pending is None

    def _check_connected(self) -> None:
        if self.gone:
            raise Disconnected(f"socket {self.id} on {self.nsp.name} is disconnected")

    # ------------------------------------------------------------------ rooms

    async def join(self, rooms: str | Iterable[str]) -> None:
        """Join one room or several. Raises ValueError for a name longer than the server's
        ``limits.max_name_length``. A socket that is gone (a handler still running after
        its client left) joins nothing: its rooms were already let go of."""
        names = joinable(room_set(rooms), self.nsp.server.limits.max_name_length)
        if self.gone:
            return
        self.nsp.adapter.add_all(self.id, names)

    async def leave(self, room: str) -> None:
        """Leave ``room`` (its own id room too, if asked: then nothing reaches it by id)."""
        self.nsp.adapter.delete(self.id, room)

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Broadcast to ``rooms``, excluding this socket (as ``socket.to`` does in JS)."""
        return BroadcastOperator(
            self.nsp, BroadcastOptions(rooms=room_set(*rooms), except_rooms=frozenset((self.id,)))
        )

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Broadcast to everyone in the namespace but this socket and members of ``rooms``."""
        return BroadcastOperator(
            self.nsp, BroadcastOptions(except_rooms=room_set(*rooms) | {self.id})
        )

    @property
    def broadcast(self) -> BroadcastOperator:
        """Everyone in the namespace but this socket."""
        return BroadcastOperator(self.nsp, BroadcastOptions(except_rooms=frozenset((self.id,))))

    # ------------------------------------------------------------------ disconnect

    async def disconnect(self, close: bool = False) -> None:
        """Disconnect from this namespace; with ``close=True`` drop the whole connection."""
        self._disconnect(close)

    def cut(self, reason: str = "forced close") -> None:
        """Close this socket's connection the way a failing network would: no DISCONNECT
        packet, so the client reconnects by itself, and with connection state recovery it
        comes back as this socket with everything it missed. The connection's sockets on
        other namespaces go too. ``reason`` (what the disconnect handler gets) should be
        one recovery keeps sessions for (``rooms.recovery.RECOVERABLE``)."""
        if self.connected:
            self.conn.close(reason)

    def _disconnect(self, close: bool) -> None:
        if not self.connected:
            return
        self._send_packet(sio.Packet(sio.PacketType.DISCONNECT, self.nsp.name))
        self.conn.remove(self)
        self._closed("server namespace disconnect")
        if close:
            self.conn.close("forced server close")

    def _closed(self, reason: str) -> None:
        """The socket is gone (whatever the cause): fail acks, run handlers, leave rooms."""
        if not self.connected:
            return
        self.connected = False
        self._acks.fail_all(disconnected(self.id))
        self.nsp.remove(self, reason)

    # ------------------------------------------------------------------ incoming

    def _on_ack(self, packet: sio.Packet) -> None:
        if packet.id is None or not self._acks.resolve(packet.id, packet.data):
            logger.info(
                "socket %s: expected an ACK for a pending id, got id %r; ignored",
                self.id,
                packet.id,
            )
