"""``server_stats``: what each process reports to the Admin UI every few seconds.

The counts behind the Dashboard's two charts (connections and disconnections, bytes in and
out) are kept per second as they happen, by the observer hooks, and handed over (then
forgotten) at each report: ``aggregatedEvents``, ``{timestamp, type, subType?, count}``
with ``timestamp`` in epoch milliseconds truncated to the second. The UI buckets them
further and adds up the processes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rooms.server import Server

RAW_CONNECTION = "rawConnection"
RAW_DISCONNECTION = "rawDisconnection"  # subType: the Engine.IO close reason
PACKETS_IN = "packetsIn"
BYTES_IN = "bytesIn"
PACKETS_OUT = "packetsOut"
BYTES_OUT = "bytesOut"


class Aggregate:
    """Counts per (second, type, subType) since the last :meth:`take`. Cheap enough for
    every packet: one clock read and a dict update or two."""

    __slots__ = ("buckets", "clock")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.buckets: dict[tuple[int, str, str | None], int] = {}

    def add(self, kind: str, count: int = 1, sub: str | None = None) -> None:
        key = (int(self.clock()), kind, sub)
        buckets = self.buckets
        buckets[key] = buckets.get(key, 0) + count

    def add_pair(self, packets_kind: str, size_kind: str, packets: int, size: int) -> None:
        """``packets`` packets of ``size`` bytes in all, in the same second."""
        second = int(self.clock())
        buckets = self.buckets
        if packets:
            key = (second, packets_kind, None)
            buckets[key] = buckets.get(key, 0) + packets
        key = (second, size_kind, None)
        buckets[key] = buckets.get(key, 0) + size

    def take(self) -> list[dict[str, Any]]:
        """What was counted since the last call, as ``aggregatedEvents``; then forgotten."""
        buckets, self.buckets = self.buckets, {}
        events = []
        for (second, kind, sub), count in buckets.items():
            event: dict[str, Any] = {"timestamp": second * 1000, "type": kind, "count": count}
            if sub is not None:
                event["subType"] = sub
            events.append(event)
        return events


HOSTNAME = socket.gethostname()


def default_server_id(server: Server) -> str:
    """``hostname#pid`` as Node's admin server names a cluster worker, and the cluster node's
    uid when there is one: distinct for every server of a cluster, even for several
    servers in one process (tests), and the uid its logs name."""
    base = f"{HOSTNAME}#{os.getpid()}"
    return base if server.node is None else f"{base}#{server.node.uid}"


def server_stats(
    server: Server, server_id: str, uptime: float, aggregate: Aggregate
) -> dict[str, Any]:
    """One report: this process's Engine.IO connections (those still on long-polling
    apart), its namespaces with their local socket counts, and the aggregated events."""
    sessions = server.engine.sessions
    polling = sum(1 for session in sessions.values() if session.transport == "polling")
    return {
        "serverId": server_id,
        "hostname": HOSTNAME,
        "pid": os.getpid(),
        "uptime": uptime,
        "clientsCount": len(sessions),
        "pollingClientsCount": polling,
        "aggregatedEvents": aggregate.take(),
        "namespaces": [
            {"name": name, "socketsCount": len(nsp.sockets)}
            for name, nsp in server.namespaces.items()
        ],
    }
