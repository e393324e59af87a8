"""RemoteSocket: a socket on another process, as ``fetch_sockets()`` returns it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rooms.exceptions import AckTimeout
from rooms.handshake import Handshake
from rooms.protocol.cluster import SocketDetails

if TYPE_CHECKING:
    from rooms.namespace import Namespace


class RemoteSocket:
    """A handle on a socket connected to another process of the cluster.

    ``id``, ``rooms``, ``data`` and ``handshake`` are a snapshot taken when it was fetched
    (``rooms`` and ``data`` are not updated afterwards). ``emit``, ``join``, ``leave`` and
    ``disconnect`` act on the live socket through the broker, wherever it is; ``join``,
    ``leave`` and ``disconnect`` return once every process has applied them (else
    :class:`~rooms.ClusterTimeout`). Handed out by rooms; never constructed by users.
    """

    __slots__ = ("data", "handshake", "id", "node", "nsp", "rooms")

    def __init__(self, nsp: Namespace, details: SocketDetails, node: str) -> None:
        self.nsp = nsp
        self.id = details.id
        self.rooms: set[str] = set(details.rooms)
        self.data: Any = details.data
        self.handshake = Handshake.from_wire(details.handshake)
        self.node = node  # the uid of the process it is connected to

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} {self.nsp.name} on {self.node}>"

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to this socket."""
        await self.nsp.to(self.id).emit(event, *args)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send ``event`` and return the socket's ack (a tuple if several arguments).

        Raises :class:`~rooms.AckTimeout` if it does not answer in time, or is gone.
        """
        operator = self.nsp.to(self.id)
        if timeout is not None:
            operator = operator.timeout(timeout)
        responses = await operator.emit_with_ack(event, *args)
        if not responses:
            raise AckTimeout(f"expected an ack for {event!r} from {self.id}, got none")
        return responses[0]

    call = emit_with_ack

    async def join(self, rooms: str | Iterable[str]) -> None:
        """Make the socket join one room or several."""
        await self.nsp.to(self.id).sockets_join(rooms)

    async def leave(self, room: str) -> None:
        """Make the socket leave ``room``."""
        await self.nsp.to(self.id).sockets_leave(room)

    async def disconnect(self, close: bool = False) -> None:
        """Disconnect the socket (``close=True`` drops its whole connection)."""
        await self.nsp.to(self.id).disconnect_sockets(close)
