"""Connection state recovery: a client whose connection dropped comes back as the same
socket (id, rooms, ``data``) and receives what it missed, in order.

Wire-compatible with socket.io-client 4.6+, which does its part by itself: the CONNECT reply
carries a private ``pid``; every stored EVENT (no ack, not volatile; private emits included)
carries an offset as its last argument; a reconnecting client sends ``pid`` and its last
offset in its CONNECT auth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rooms.recovery.memory import MemoryStore
from rooms.recovery.store import RECOVERABLE, Restored, SavedSession, Store, StoredPacket

if TYPE_CHECKING:
    from rooms.server import Server

__all__ = [
    "RECOVERABLE",
    "MemoryStore",
    "Recovery",
    "Restored",
    "SavedSession",
    "Store",
    "StoredPacket",
]


@dataclass(frozen=True)
class Recovery:
    """Settings for ``rooms.Server(recovery=rooms.Recovery(...))``.

    - ``max_disconnection_duration``: how long a dropped socket can come back (seconds), and
      how long packets stay in the log.
    - ``max_packets``: the log's bound per namespace; past it the oldest packets go, and a
      client whose offset went with them gets a fresh socket (``recovered`` false).
    - ``skip_middlewares``: a recovered socket skips ``namespace.use`` middlewares (the
      connect handler still runs, with ``socket.recovered`` true).
    - ``store``: ``"memory"`` (this process), ``"redis"`` (shared: the client may come back to
      any process; needs the server's broker to be Redis), or ``"auto"``: Redis when the
      broker is, else memory.
    """

    max_disconnection_duration: float = 120.0
    max_packets: int = 10_000
    skip_middlewares: bool = True
    store: Literal["auto", "memory", "redis"] = "auto"

    def open_store(self, server: Server) -> Store:
        broker = server.node.broker if server.node is not None else None
        kind = self.store
        if kind == "auto":
            from rooms.brokers.redis import RedisBroker

            kind = "redis" if isinstance(broker, RedisBroker) else "memory"
        if kind == "memory":
            return MemoryStore(
                server.engine.clock, self.max_disconnection_duration, self.max_packets
            )
        from rooms.brokers.redis import RedisBroker
        from rooms.recovery.redis import RedisStore

        if not isinstance(broker, RedisBroker):
            raise ValueError(
                f"expected a Redis broker for the redis recovery store, got {broker!r}"
            )
        assert server.node is not None
        return RedisStore(
            broker,
            server.node.prefix,
            server.engine.clock,
            self.max_disconnection_duration,
            self.max_packets,
        )
