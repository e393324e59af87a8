"""Broadcast operators: ``to`` / ``except_`` / ``volatile`` / ``local`` / ``timeout`` chains
that end in ``emit``, ``emit_with_ack``, ``fetch_sockets`` or a room operation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rooms.acks import AckCollector
from rooms.adapter import BroadcastOptions
from rooms.protocol import engineio
from rooms.protocol import socketio as sio

if TYPE_CHECKING:
    from rooms.namespace import Namespace
    from rooms.socket import Socket


def room_set(*rooms: str | Iterable[str]) -> frozenset[str]:
    """``"a"``, ``"a", "b"`` or ``["a", "b"]`` as a frozenset of room names."""
    names: set[str] = set()
    for item in rooms:
        if isinstance(item, str):
            names.add(item)
        else:
            for name in item:
                if not isinstance(name, str):
                    raise TypeError(f"expected room names as str, got {name!r}")
                names.add(name)
    return frozenset(names)


class BroadcastOperator:
    """An immutable selection of recipients. Every chaining method returns a new one."""

    __slots__ = ("_nsp", "_opts", "_timeout")

    def __init__(
        self, nsp: Namespace, opts: BroadcastOptions, timeout: float | None = None
    ) -> None:
        self._nsp = nsp
        self._opts = opts
        self._timeout = timeout

    def _with(self, **changes: Any) -> BroadcastOperator:
        return BroadcastOperator(
            self._nsp, dataclasses.replace(self._opts, **changes), self._timeout
        )

    def to(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Also target ``rooms`` (a union with rooms already chosen)."""
        return self._with(rooms=self._opts.rooms | room_set(*rooms))

    in_ = to

    def except_(self, *rooms: str | Iterable[str]) -> BroadcastOperator:
        """Leave out members of ``rooms``."""
        return self._with(except_rooms=self._opts.except_rooms | room_set(*rooms))

    @property
    def volatile(self) -> BroadcastOperator:
        """May be dropped for clients that are not keeping up."""
        return self._with(volatile=True)

    @property
    def local(self) -> BroadcastOperator:
        """Only sockets of this process, even with a cluster broker."""
        return self._with(local=True)

    def timeout(self, seconds: float) -> BroadcastOperator:
        """How long ``emit_with_ack`` waits for every recipient."""
        return BroadcastOperator(self._nsp, self._opts, seconds)

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to every selected socket; encoded once for all of them.

        Returns when the frames have been handed to the transports (or queued for a slow
        client's own writer); it never waits on a slow client.
        """
        frames = [engineio.message_frame(f) for f in sio.encode_event(self._nsp.name, event, args)]
        self._nsp.adapter.deliver(frames, self._opts)
        # Backpressure: return once the flusher has served the recipients, so a loop of
        # emits cannot outrun the sends (a stalled recipient is handed off, never waited on).
        await self._nsp.server.engine.flusher.wait_flushed()

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send ``event`` and collect every recipient's ack.

        Returns the list of responses. Raises :class:`~rooms.AckTimeout` (with the responses
        that did arrive) if not all recipients answered within the timeout.
        """
        nsp = self._nsp
        timeout = nsp.server.ack_timeout if self._timeout is None else self._timeout
        collector = AckCollector()
        ack_id = nsp.next_ack_id()
        frames = [
            engineio.message_frame(f) for f in sio.encode_event(nsp.name, event, args, ack_id)
        ]
        recipients = nsp.adapter.sockets(self._opts)
        callback = collector.callback()
        reached = []
        for socket in recipients:
            socket._acks.register(ack_id, callback)
            if socket._write(frames, self._opts.volatile):
                reached.append(socket)
            else:
                socket._acks.discard(ack_id)
        collector.expect(len(reached))
        collector.counting_done()
        try:
            return await collector.wait(timeout, f"{event!r} to {len(reached)} socket(s)")
        finally:
            for socket in reached:
                socket._acks.discard(ack_id)

    async def fetch_sockets(self) -> list[Socket]:
        """The selected sockets."""
        return self._nsp.adapter.sockets(self._opts)

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``."""
        names = room_set(*rooms)
        for socket in self._nsp.adapter.sockets(self._opts):
            self._nsp.adapter.add_all(socket.id, names)

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``."""
        names = room_set(*rooms)
        for socket in self._nsp.adapter.sockets(self._opts):
            for room in names:
                self._nsp.adapter.delete(socket.id, room)

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets (``close=True`` drops their whole connection)."""
        for socket in self._nsp.adapter.sockets(self._opts):
            await socket.disconnect(close)
