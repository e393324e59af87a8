"""What connection state recovery keeps: sessions of sockets that dropped, and the log of
packets sent while they were away. A store is memory or Redis; both pass the same tests.

Offsets: every stored EVENT gets one, appended as its last argument (the JS client keeps the
last it saw and sends it back with the session's ``pid``). A store hands offsets out in the
order it logs packets; a packet it did not log itself (a broadcast from another process,
stamped there) it may log on arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc

from rooms.protocol.cluster import BroadcastOptions
from rooms.protocol.engineio import Frame, message_frame
from rooms.protocol.socketio import append_arg

# Socket.IO keeps a session only when the client may come back by itself.
RECOVERABLE = frozenset(
    {"transport error", "transport close", "forced close", "ping timeout", "server shutting down"}
)


@dataclass(frozen=True, slots=True)
class StoredPacket:
    """An EVENT as encoded without its offset (``text`` and binary ``attachments``), for the
    sockets ``opts`` selects."""

    offset: str
    opts: BroadcastOptions
    text: str
    attachments: tuple[bytes, ...] = ()

    def frames(self) -> list[Frame]:
        return [message_frame(append_arg(self.text, self.offset)), *self.attachments]

    def reaches(self, rooms: frozenset[str]) -> bool:
        """Whether a socket in ``rooms`` (its own id room included) was sent this packet."""
        opts = self.opts
        if opts.rooms and opts.rooms.isdisjoint(rooms):
            return False
        return opts.except_rooms.isdisjoint(rooms)


@dataclass(frozen=True, slots=True)
class SavedSession:
    """A socket that dropped for a recoverable reason, as it was."""

    sid: str
    pid: str
    rooms: frozenset[str]
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Restored:
    session: SavedSession
    missed: list[StoredPacket]


Deliver = Callable[[str, StoredPacket], None]


class Store(Protocol):
    """Where sessions and the packet log live. Every method is per namespace (``nsp``).

    ``delivers``: the store hands every logged packet to ``deliver`` itself, in log order,
    on every process (``run``); senders then only ``append``. A store whose log is shared
    between processes needs this, or two processes' packets could reach a client in
    another order than the log's, and a recovery would skip one or repeat one.
    """

    delivers: bool

    async def run(
        self,
        namespaces: Callable[[], Iterable[str]],
        deliver: Deliver,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """While the server runs: feed ``deliver`` (only if ``delivers``). Reports started
        once it will see everything logged from then on."""

    async def append(
        self, nsp: str, opts: BroadcastOptions, text: str, attachments: tuple[bytes, ...]
    ) -> str:
        """Log a packet this process sends; return its offset."""

    def received(self, nsp: str, packet: StoredPacket) -> None:
        """A packet another process logged and stamped reached this one."""

    def delivered(self, nsp: str, offset: str) -> bool:
        """Whether ``run`` has handed on the packet at ``offset`` here, or will never hand it
        on (true at once for a store that does not deliver). A recovery waits for this
        before its socket joins its rooms: it replayed that packet from the log already."""

    async def save(self, nsp: str, session: SavedSession) -> None:
        """Keep ``session`` for the recovery window."""

    async def restore(self, nsp: str, pid: str, offset: str) -> Restored | None:
        """Take the session ``pid`` (once) and the packets after ``offset`` it would have
        received; None if the session is unknown or expired, or the offset is no longer in
        the log (trimmed, or never there)."""

    async def close(self) -> None: ...
