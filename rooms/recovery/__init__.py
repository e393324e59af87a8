"""Connection state recovery: a client whose connection dropped comes back as the same
socket (id, rooms, ``data``) and receives what it missed, in order.

Wire-compatible with socket.io-client 4.6+, which does its part by itself: the CONNECT reply
carries a private ``pid``; every stored EVENT (no ack, not volatile; private emits included)
carries an offset as its last argument; a reconnecting client sends ``pid`` and its last
offset in its CONNECT auth.
"""

from __future__ import annotations

from dataclasses import dataclass

from rooms._types import Clock
from rooms.brokers import Broker, StoreKind, redis_for
from rooms.recovery.memory import MemoryStore
from rooms.recovery.store import RECOVERABLE, Restored, SavedSession, Store, StoredPacket

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
    store: StoreKind = "auto"

    def open_store(self, broker: Broker | None, prefix: str, clock: Clock) -> Store:
        """The store these settings choose, beside ``broker`` (None: no cluster)."""
        redis = redis_for(self.store, broker, "the redis recovery store")
        if redis is None:
            return MemoryStore(clock, self.max_disconnection_duration, self.max_packets)
        from rooms.recovery.redis import RedisStore

        return RedisStore(redis, prefix, clock, self.max_disconnection_duration, self.max_packets)
