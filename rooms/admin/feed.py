"""What the Admin UI hears: the server's observer hooks, queued for one task that emits.

The hooks run in the server's own flow (see :mod:`rooms.observer`), so each only counts or
queues: the counts behind ``server_stats`` are kept in place, and each development-mode
event (``socket_connected``, ``room_joined``, ``event_received``, ...) is put on a bounded
queue, or dropped and counted when it is full (the Admin UI then misses it; the server does
not slow down for it). One task takes them in order and emits each to the admin namespace,
and emits ``server_stats`` between them every ``stats_interval`` seconds. Emits go through
the namespace's broadcast, so admin clients on every process of a cluster hear every
process; they are volatile (no recovery log, dropped for an admin client that does not keep
up), because the next report replaces a missed one anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rooms._log import Throttled
from rooms.admin.serialize import iso, local_view
from rooms.admin.stats import (
    BYTES_IN,
    BYTES_OUT,
    PACKETS_IN,
    PACKETS_OUT,
    RAW_CONNECTION,
    RAW_DISCONNECTION,
    Aggregate,
    server_stats,
)
from rooms.observer import Observer

if TYPE_CHECKING:
    from rooms.engine.session import Session
    from rooms.namespace import Namespace
    from rooms.protocol.engineio import Frame
    from rooms.server import Server
    from rooms.socket import Socket

logger = logging.getLogger("rooms.admin")
_dropping = Throttled(logger, burst=1, period=10.0)
_failing = Throttled(logger, burst=5, period=10.0)

# An event for the admin namespace: its name, its arguments, and when it happened (epoch
# seconds, appended as an ISO string when it is sent), or None for an event without a time.
Item = tuple[str, tuple[Any, ...], float | None]


class Feed(Observer):
    """The observer half of :class:`rooms.admin.Admin`."""

    def __init__(
        self,
        server: Server,
        namespace: str,
        development: bool,
        server_id: str,
        stats_interval: float,
        max_queue: int,
    ) -> None:
        if stats_interval <= 0:
            raise ValueError(f"expected a positive stats_interval, got {stats_interval!r}")
        if max_queue < 1:
            raise ValueError(f"expected a positive max_queue, got {max_queue!r}")
        self.server = server
        self.namespace = namespace
        self.development = development
        self.events = development  # event_in / event_out: development mode only
        self.server_id = server_id
        self.stats_interval = stats_interval
        self.max_queue = max_queue
        self.dropped = 0
        """Events the Admin UI missed because the queue was full."""
        self.aggregate = Aggregate()
        self._send: MemoryObjectSendStream[Item] | None = None
        self._started = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def start(self, server: Server) -> None:
        send, receive = anyio.create_memory_object_stream[Item](self.max_queue)
        self._send = send
        self._started = time.monotonic()
        server.spawn(self._run, receive, what="the Admin UI's feed")

    def stop(self) -> None:
        send, self._send = self._send, None
        if send is not None:
            send.close()

    def uptime(self) -> float:
        """Seconds since the server started."""
        return time.monotonic() - self._started

    def stats(self) -> dict[str, Any]:
        """This process's ``server_stats`` now (the aggregated events are handed over)."""
        return server_stats(self.server, self.server_id, self.uptime(), self.aggregate)

    async def _run(self, receive: MemoryObjectReceiveStream[Item]) -> None:
        nsp = self.server.of(self.namespace)
        interval = self.stats_interval
        next_report = anyio.current_time()  # one report at once, as Node's server does
        with receive:
            while True:
                now = anyio.current_time()
                if now >= next_report:
                    await self._emit(nsp, "server_stats", (self.stats(),))
                    next_report += interval
                    if next_report <= now:  # fell behind: no burst of reports to catch up
                        next_report = now + interval
                    continue
                item: Item | None = None
                with anyio.move_on_after(next_report - now):
                    try:
                        item = await receive.receive()
                    except anyio.EndOfStream:
                        return
                if item is not None:
                    event, args, at = item
                    await self._emit(nsp, event, args if at is None else (*args, iso(at)))

    async def _emit(self, nsp: Namespace, event: str, args: Sequence[Any]) -> None:
        try:
            await nsp.volatile.emit(event, *args)
        except (TypeError, ValueError) as exc:  # an application's emit argument, say
            _failing.log(logging.INFO, "admin event %s not sent: %s", event, exc)
        except Exception as exc:  # the feed goes on: the next event may well go
            _failing.log(
                logging.ERROR, "admin event %s not sent: %s: %s", event, type(exc).__name__, exc
            )

    def _put(self, event: str, args: tuple[Any, ...], at: float | None) -> None:
        send = self._send
        if send is None:
            return
        try:
            send.send_nowait((event, args, at))
        except anyio.WouldBlock:
            self.dropped += 1
            _dropping.log(
                logging.WARNING,
                "expected room in the Admin UI's queue of %d events, got it full: %s dropped "
                "(%d so far); the UI misses what happens faster than it is sent",
                self.max_queue,
                event,
                self.dropped,
            )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # stopping

    # ------------------------------------------------------------------ counts (both modes)

    def session_opened(self, session: Session) -> None:
        self.aggregate.add(RAW_CONNECTION)

    def session_closed(self, session: Session, reason: str) -> None:
        self.aggregate.add(RAW_DISCONNECTION, 1, reason)

    def packet_in(self, ptype: int, size: int, packets: int) -> None:
        self.aggregate.add_pair(PACKETS_IN, BYTES_IN, packets, size)  # an attachment: 0, size

    def packets_out(self, frames: Sequence[Frame], count: int) -> None:
        if count:
            size = len(frames[0]) if len(frames) == 1 else sum(len(f) for f in frames)
            self.aggregate.add_pair(PACKETS_OUT, BYTES_OUT, count, size * count)

    # ------------------------------------------------------------------ events (development)

    def session_upgraded(self, session: Session) -> None:
        if not self.development:
            return
        sockets = getattr(session.upper, "sockets", None)  # its Connection's, by namespace
        if not isinstance(sockets, dict):
            return
        for socket in list(sockets.values()):
            update = {"id": socket.id, "nsp": socket.nsp.name, "transport": "websocket"}
            self._put("socket_updated", (update,), None)

    def socket_connected(self, socket: Socket) -> None:
        if not self.development:
            return
        try:
            view = local_view(socket)
        except Exception:  # an observer must not raise into the server's flow
            logger.exception("socket %s: could not describe it to the Admin UI", socket.id)
            return
        self._put("socket_connected", (view,), time.time())

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        if self.development:
            self._put("socket_disconnected", (socket.nsp.name, socket.id, reason), time.time())

    def room_joined(self, namespace: str, sid: str, room: str) -> None:
        # Its own id room too, before socket_connected: the UI ignores a room event for a
        # socket it does not know yet, and socket_connected carries the rooms.
        if self.development:
            self._put("room_joined", (namespace, room, sid), time.time())

    def room_left(self, namespace: str, sid: str, room: str) -> None:
        # A socket that disconnects leaves every room after socket_disconnected: the UI
        # needs these to let go of its rooms.
        if self.development:
            self._put("room_left", (namespace, room, sid), time.time())

    def event_in(self, socket: Socket, data: list[Any]) -> None:
        nsp = socket.nsp.name
        if nsp != self.namespace:  # the UI's own actions are not application events
            self._put("event_received", (nsp, socket.id, list(data)), time.time())

    def event_out(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        nsp = socket.nsp.name
        if nsp != self.namespace:  # nor what is sent to it (config, all_sockets): no loop
            self._put("event_sent", (nsp, socket.id, [event, *args]), time.time())
