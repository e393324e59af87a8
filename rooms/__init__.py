"""rooms: Socket.IO v5 / Engine.IO v4 as a pure ASGI middleware, on anyio.

A tiny top level::

    server = rooms.Server()

    @server.on("chat")
    async def chat(socket: rooms.Socket, room: str, text: str) -> str:
        await socket.to(room).emit("chat", text)
        return "delivered"

    app = rooms.RoomsMiddleware(your_asgi_app, server=server)
"""

from rooms.adapter import BroadcastOptions
from rooms.emitter import Emitter
from rooms.engine import EngineServer
from rooms.exceptions import (
    AckTimeout,
    BrokerError,
    ClusterTimeout,
    ConnectionRefused,
    Disconnected,
    PayloadTooLarge,
    ProtocolError,
    RoomsError,
)
from rooms.handshake import Handshake
from rooms.mailbox import Mailbox, MailboxFull
from rooms.middleware import RoomsMiddleware
from rooms.namespace import Namespace, ParentNamespace
from rooms.operators import BroadcastOperator
from rooms.protocol.limits import Limits
from rooms.recovery import Recovery
from rooms.remote import RemoteSocket
from rooms.server import Server, Status
from rooms.socket import Socket

__version__ = "0.1.0"

__all__ = [
    "AckTimeout",
    "BroadcastOperator",
    "BroadcastOptions",
    "BrokerError",
    "ClusterTimeout",
    "ConnectionRefused",
    "Disconnected",
    "Emitter",
    "EngineServer",
    "Handshake",
    "Limits",
    "Mailbox",
    "MailboxFull",
    "Namespace",
    "ParentNamespace",
    "PayloadTooLarge",
    "ProtocolError",
    "Recovery",
    "RemoteSocket",
    "RoomsError",
    "RoomsMiddleware",
    "Server",
    "Socket",
    "Status",
    "__version__",
]
