"""This process's side of the cluster: what it does with its own sockets when another
process asks (:class:`rooms.cluster.handlers.Local`, implemented for a :class:`Server`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from rooms.acks import AckCallback
from rooms.protocol import cluster as wire

if TYPE_CHECKING:
    from rooms.namespace import Namespace
    from rooms.server import Server
    from rooms.socket import Socket


class Local:
    """The server's part in every cluster request (see the Protocol it implements)."""

    __slots__ = ("server",)

    def __init__(self, server: Server) -> None:
        self.server = server

    def _nsp(self, name: str) -> Namespace | None:
        return self.server._namespaces.get(name)

    def _sockets(self, name: str, opts: wire.BroadcastOptions) -> list[Socket]:
        nsp = self._nsp(name)
        return nsp.adapter.sockets(opts) if nsp is not None else []

    async def wait_flushed(self) -> None:
        await self.server.engine.flusher.wait_flushed()

    def broadcast(self, nsp: str, body: wire.Broadcast) -> None:
        namespace = self._nsp(nsp)
        if namespace is not None:
            namespace.delivery.deliver_remote(body)

    def broadcast_with_ack(self, nsp: str, body: wire.Broadcast, on_ack: AckCallback) -> int:
        namespace = self._nsp(nsp)
        sockets = namespace.adapter.sockets(body.opts) if namespace is not None else []
        if namespace is None or not sockets:
            return 0
        # Our own ack id: the sender's could collide with acks our sockets already owe.
        ack_id, reached = namespace.delivery.send_with_ack(
            sockets, body.text, body.attachments, body.opts.volatile, on_ack
        )
        timeout = self.server.ack_timeout if body.timeout is None else body.timeout
        self.server.spawn(_expire, reached, ack_id, timeout)
        return len(reached)

    def sockets_join(self, nsp: str, opts: wire.BroadcastOptions, rooms: frozenset[str]) -> None:
        for socket in self._sockets(nsp, opts):
            socket.nsp.adapter.add_all(socket.id, rooms)

    def sockets_leave(self, nsp: str, opts: wire.BroadcastOptions, rooms: frozenset[str]) -> None:
        for socket in self._sockets(nsp, opts):
            for room in rooms:
                socket.nsp.adapter.delete(socket.id, room)

    def disconnect_sockets(self, nsp: str, opts: wire.BroadcastOptions, close: bool) -> None:
        for socket in self._sockets(nsp, opts):
            socket._disconnect(close)

    def fetch_sockets(self, nsp: str, opts: wire.BroadcastOptions) -> list[wire.SocketDetails]:
        return [describe(socket) for socket in self._sockets(nsp, opts)]

    def server_side_emit(
        self, nsp: str, event: str, args: list[Any], respond: Callable[[Any], None]
    ) -> bool:
        namespace = self._nsp(nsp)
        return namespace is not None and namespace.run_server_event(event, args, respond)

    def take_over(self, nsp: str, pid: str, respond: Callable[[bool], None]) -> None:
        resume = self.server.resume
        if resume is None:
            respond(False)
            return

        async def take_over() -> None:
            respond(await resume.take_over(nsp, pid))

        self.server.spawn(take_over, what="taking over a session")


def describe(socket: Socket) -> wire.SocketDetails:
    """What another process learns of a socket from ``fetch_sockets``."""
    return wire.SocketDetails(
        socket.id, frozenset(socket.rooms), socket.data, socket.handshake.to_wire()
    )


async def _expire(sockets: list[Socket], ack_id: int, timeout: float) -> None:
    """Forget the acks of a remote broadcast its sender has stopped waiting for."""
    await anyio.sleep(timeout)
    for socket in sockets:
        socket._acks.discard(ack_id)
