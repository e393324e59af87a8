"""The one outbound path of a namespace: what an emit does, whoever emits.

::

    encode once ─▶ log for recovery (under the log lock) ─▶ local fan-out ─▶ cluster publish
                      │ a store that delivers (Redis):            ─▶ backpressure
                      └─ senders only log; every process delivers from the shared log

Broadcasts (``server.to(...).emit``), private emits (``socket.emit``), broadcasts from other
processes and packets from a store that delivers all end in :meth:`Delivery.deliver`, the
local fan-out. Emits that want answers go through :meth:`Delivery.send_with_ack`, the one
ack fan-out (a socket's ``emit_with_ack``, a broadcast's, another process's).

Ordering: the log lock is held from logging a packet to handing it on, so this process
sends packets in the order the log has them (a store that awaits could otherwise reorder
them), and a client's last offset is always the place to resume from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from rooms.acks import AckCallback
from rooms.engine.session import frames_size
from rooms.protocol import cluster as wire
from rooms.protocol import socketio as sio
from rooms.protocol.engineio import Frame, message_frame
from rooms.recovery.store import StoredPacket

if TYPE_CHECKING:
    from rooms.namespace import Namespace
    from rooms.socket import Socket

logger = logging.getLogger("rooms")


class Delivery:
    """The outbound path of one namespace; ``namespace.delivery``."""

    __slots__ = ("_ack_seq", "_lock", "nsp")

    def __init__(self, nsp: Namespace) -> None:
        self.nsp = nsp
        self._ack_seq = 0
        self._lock: anyio.Lock | None = None

    # ------------------------------------------------------------------ emitting

    async def emit(
        self, opts: wire.BroadcastOptions, event: str, args: Sequence[Any], to: Socket | None = None
    ) -> None:
        """Send ``event`` to the sockets ``opts`` selects, on every process (or, with ``to``,
        to that one socket); encoded once, logged for recovery unless volatile.

        Returns once the frames are queued for their connections and handed to the broker,
        and the previous broadcast's frames were sent (backpressure: a loop of emits
        cannot outrun the sends); it never waits on a slow client.
        """
        text, attachments = sio.encode_event_parts(self.nsp.name, event, args)
        parts = tuple(attachments)
        resume = self.nsp.server.resume
        if resume is None or opts.volatile:
            await self._hand_on(opts, text, parts, None, to)
        else:
            async with self._log_lock:
                stored = await resume.log(self.nsp.name, opts, text, parts)
                if stored is not None and resume.delivers:
                    return  # every process delivers it from the shared log, in its order
                await self._hand_on(opts, text, parts, stored, to)
        if to is not None:
            await to._write_now([], opts.volatile)  # sent from here, outside the lock
        else:
            # Backpressure: a loop of emits cannot outrun the sends (each waits for the one
            # before to be sent; a stalled recipient is handed off, never waited on).
            await self.nsp.server.engine.flusher.wait_flushed()

    async def _hand_on(
        self,
        opts: wire.BroadcastOptions,
        text: str,
        parts: tuple[bytes, ...],
        stored: StoredPacket | None,
        to: Socket | None,
    ) -> None:
        frames = stored.frames() if stored is not None else [message_frame(text), *parts]
        if to is not None:
            if stored is not None:
                self._seen(stored)
            if to._write(frames, opts.volatile):  # queued in the log's order
                observer = self.nsp.server.observer
                if observer is not None:
                    observer.packets_out(frames, 1)
            return
        self.deliver(frames, opts, stored)
        node = None if opts.local else self.nsp.server.node
        if node is not None:
            offset = stored.offset if stored is not None else None
            await node.publish(self.nsp.name, wire.Broadcast(opts, text, parts, offset=offset))

    @property
    def _log_lock(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    # ------------------------------------------------------------------ local fan-out

    def deliver(
        self,
        frames: list[Frame],
        opts: wire.BroadcastOptions,
        stored: StoredPacket | None = None,
    ) -> int:
        """Queue pre-encoded frames on every local recipient; how many were reached.
        ``stored`` is the packet as the recovery log has it (recoveries in progress see it)."""
        if stored is not None:
            self._seen(stored)
        reached = self.nsp.adapter.deliver(frames, opts)
        observer = self.nsp.server.observer
        if observer is not None:
            observer.packets_out(frames, reached)
            observer.broadcast(self.nsp.name, reached)
        return reached

    def deliver_logged(self, packet: StoredPacket) -> None:
        """A packet from the shared log (a store that delivers), in the log's order."""
        self.deliver(packet.frames(), packet.opts, packet)

    def deliver_remote(self, body: wire.Broadcast) -> None:
        """A broadcast another process sent (stamped with its offset if it logged it)."""
        stored = None
        resume = self.nsp.server.resume
        if resume is not None and body.offset is not None:
            stored = StoredPacket(body.offset, body.opts, body.text, body.attachments)
            resume.received(self.nsp.name, stored)
        self.deliver(body.frames, body.opts, stored)

    def _seen(self, stored: StoredPacket) -> None:
        resume = self.nsp.server.resume
        if resume is not None:
            resume.seen(self.nsp.name, stored)  # recoveries in progress capture it

    # ------------------------------------------------------------------ acks

    def next_ack_id(self) -> int:
        self._ack_seq += 1
        return self._ack_seq

    def send_with_ack(
        self,
        sockets: Sequence[Socket],
        text: str,
        parts: Sequence[bytes],
        volatile: bool,
        callback: AckCallback,
    ) -> tuple[int, list[Socket]]:
        """Send an encoded EVENT asking each of ``sockets`` for an ack, which goes to
        ``callback``: the one ack fan-out. Returns the ack id (one for all: ids are per
        namespace, so it cannot collide with acks a recipient already owes) and the sockets
        reached (their outboxes took the frames); the caller discards their acks when it
        stops waiting."""
        ack_id = self.next_ack_id()
        frames = [message_frame(sio.with_ack_id(text, self.nsp.name, ack_id)), *parts]
        size = frames_size(frames)
        reached = []
        for socket in sockets:
            socket._acks.register(ack_id, callback)
            if socket._write(frames, volatile, size):
                reached.append(socket)
            else:
                socket._acks.discard(ack_id)
        observer = self.nsp.server.observer
        if observer is not None:
            observer.packets_out(frames, len(reached))
        return ack_id, reached
