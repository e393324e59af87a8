"""Broadcast operators: a selection of a namespace's sockets (narrowed by the selectors of
:mod:`rooms.selectors`) and what acts on it: ``emit``, ``emit_with_ack``, ``fetch_sockets``
and the room operations, on every process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from rooms.acks import AckCollector
from rooms.cluster.node import AckRequest
from rooms.exceptions import AckTimeout
from rooms.protocol import cluster as wire
from rooms.protocol import socketio as sio
from rooms.protocol.cluster import BroadcastOptions
from rooms.remote import RemoteSocket
from rooms.selectors import ServerChain, room_set

if TYPE_CHECKING:
    from rooms.cluster.node import Node
    from rooms.namespace import Namespace
    from rooms.socket import Socket


def joinable(names: frozenset[str], limit: int) -> frozenset[str]:
    """``names`` if every one is at most ``limit`` characters long, else ValueError: rooms
    are named by code that often takes the name from a client, so the bound is checked
    where sockets join."""
    for name in names:
        if len(name) > limit:
            raise ValueError(f"expected a room name of at most {limit} characters, got {len(name)}")
    return names


class BroadcastOperator(ServerChain["BroadcastOperator"]):
    """An immutable selection of a namespace's sockets, on every process; the selectors
    (:mod:`rooms.selectors`) narrow it, the methods here act on it."""

    __slots__ = ("_nsp", "_opts", "_timeout")

    def __init__(
        self, nsp: Namespace, opts: BroadcastOptions, timeout: float | None = None
    ) -> None:
        self._nsp = nsp
        self._opts = opts
        self._timeout = timeout

    def _options(self) -> BroadcastOptions:
        return self._opts

    def _chain(
        self, opts: BroadcastOptions | None = None, timeout: float | None = None
    ) -> BroadcastOperator:
        return BroadcastOperator(
            self._nsp,
            self._opts if opts is None else opts,
            self._timeout if timeout is None else timeout,
        )

    def _node(self) -> Node | None:
        """The cluster node, unless this operation stays on this process."""
        return None if self._opts.local else self._nsp.server.node

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to every selected socket, on every process; encoded once.

        Returns once the frames are queued for their connections and handed to the broker,
        and the previous broadcast's frames were sent (a loop of emits cannot outrun the
        sends); it never waits on a slow client.
        """
        await self._nsp.delivery.emit(self._opts, event, args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send ``event`` and collect every recipient's ack, on every process.

        Returns the list of responses. Raises :class:`~rooms.AckTimeout` (with the responses
        that did arrive) if not all recipients answered within the timeout. Recipients that
        disconnect, and processes that leave the cluster, are not waited for.
        """
        nsp = self._nsp
        timeout = nsp.server.ack_timeout if self._timeout is None else self._timeout
        collector = AckCollector()
        text, attachments = sio.encode_event_parts(nsp.name, event, args)
        sockets = nsp.adapter.sockets(self._opts)
        ack_id, reached = nsp.delivery.send_with_ack(
            sockets, text, attachments, self._opts.volatile, collector.callback()
        )
        collector.expect(len(reached))
        observer = nsp.server.observer
        if observer is not None:
            observer.broadcast(nsp.name, len(reached))
        node = self._node()
        request_id = None
        if node is not None and node.peers:
            request_id = node.new_request(AckRequest(set(node.peers), collector))
            await node.publish(
                nsp.name,
                wire.Broadcast(self._opts, text, tuple(attachments), request_id, timeout),
            )
        else:
            collector.counting_done()
        sent_at = anyio.current_time()
        try:
            responses = await collector.wait(
                timeout, f"{event!r} to {collector.expected} socket(s)"
            )
        except AckTimeout:
            if observer is not None:
                observer.ack(nsp.name, None)
            raise
        else:
            if observer is not None:
                observer.ack(nsp.name, anyio.current_time() - sent_at)
            return responses
        finally:
            for socket in reached:
                socket._acks.discard(ack_id)
            if node is not None and request_id is not None:
                node.forget(request_id)

    async def fetch_sockets(self) -> list[Socket | RemoteSocket]:
        """The selected sockets: this process's as :class:`~rooms.Socket`, the other
        processes' as :class:`~rooms.RemoteSocket` handles.

        Raises :class:`~rooms.ClusterTimeout` if not every process answered within the
        timeout (``.timeout(seconds)``, default the server's ``request_timeout``); its
        ``responses`` are the sockets found all the same: this process's and those of the
        processes that did answer.
        """
        local: list[Socket | RemoteSocket] = list(self._nsp.adapter.sockets(self._opts))
        node = self._node()
        if node is None or not node.peers:
            return local

        def found(answers: list[tuple[str, wire.Body]]) -> list[Socket | RemoteSocket]:
            sockets = list(local)
            for uid, body in answers:
                if isinstance(body, wire.FetchSocketsResponse):
                    sockets.extend(RemoteSocket(self._nsp, item, uid) for item in body.sockets)
            return sockets

        return found(
            await node.ask(
                self._nsp.name,
                lambda request_id: wire.FetchSockets(self._opts, request_id),
                self._timeout,
                "fetch_sockets",
                partial=found,
            )
        )

    async def _everywhere(self, make: Callable[[str], wire.Body], what: str) -> None:
        """Ask every other process to apply a room operation (this one has already), and
        wait until each has: what returns is done cluster-wide."""
        node = self._node()
        if node is None:
            return
        uid = node.uid
        await node.ask(
            self._nsp.name,
            make,
            self._timeout,
            what,
            partial=lambda answers: [uid, *(answered for answered, _ in answers)],
        )

    async def sockets_join(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``, on every process.

        Returns once every live process has applied it: a ``fetch_sockets`` or a broadcast
        made next, from any process, sees the sockets in ``rooms``. Raises
        :class:`~rooms.ClusterTimeout` if not every process answered within the timeout
        (``.timeout(seconds)``, default the server's ``request_timeout``); its
        ``responses`` are the uids of the processes that did apply it, this one included.
        """
        names = joinable(room_set(*rooms), self._nsp.server.limits.max_name_length)
        adapter = self._nsp.adapter
        for socket in adapter.sockets(self._opts):
            adapter.add_all(socket.id, names)
        opts = self._opts
        await self._everywhere(lambda rid: wire.SocketsJoin(opts, names, rid), "sockets_join")

    async def sockets_leave(self, *rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``, on every process; returns once every
        live process has (or raises :class:`~rooms.ClusterTimeout`, as
        :meth:`sockets_join`)."""
        names = room_set(*rooms)
        adapter = self._nsp.adapter
        for socket in adapter.sockets(self._opts):
            for room in names:
                adapter.delete(socket.id, room)
        opts = self._opts
        await self._everywhere(lambda rid: wire.SocketsLeave(opts, names, rid), "sockets_leave")

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets, on every process (``close=True`` drops their
        whole connection); returns once every live process has (or raises
        :class:`~rooms.ClusterTimeout`, as :meth:`sockets_join`)."""
        for socket in self._nsp.adapter.sockets(self._opts):
            socket._disconnect(close)
        opts = self._opts
        await self._everywhere(
            lambda rid: wire.DisconnectSockets(opts, close, rid), "disconnect_sockets"
        )
