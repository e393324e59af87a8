"""The memory recovery store: this process's sessions and packet log.

The log is bounded by count (``max_packets``) and age (``max_age``); the oldest packets go
first. A client whose offset has been trimmed away, or who comes back to another process,
gets a fresh socket (``recovered`` false), as the protocol prescribes.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

import anyio
import anyio.abc

from rooms._types import Clock
from rooms.protocol.cluster import BroadcastOptions
from rooms.recovery.store import Deliver, Restored, SavedSession, StoredPacket


@dataclass(slots=True)
class _Log:
    """One namespace's packets, oldest first, with where each offset sits."""

    entries: deque[tuple[int, float, StoredPacket]] = field(default_factory=deque)
    positions: dict[str, int] = field(default_factory=dict)
    next_position: int = 0


class MemoryStore:
    delivers = False  # senders deliver; each process's log is its own

    def __init__(self, clock: Clock, max_disconnection_duration: float, max_packets: int) -> None:
        self.clock = clock
        self.max_age = max_disconnection_duration
        self.max_packets = max_packets
        self._logs: dict[str, _Log] = {}
        self._sessions: dict[str, tuple[float, str, SavedSession]] = {}
        # Offsets are unique across processes: a random prefix, then a counter.
        self._prefix = secrets.token_hex(4)
        self._counter = 0

    async def append(
        self, nsp: str, opts: BroadcastOptions, text: str, attachments: tuple[bytes, ...]
    ) -> str:
        self._counter += 1
        offset = f"{self._prefix}-{self._counter:x}"
        self.received(nsp, StoredPacket(offset, opts, text, attachments))
        return offset

    def delivered(self, nsp: str, offset: str) -> bool:
        return True  # senders deliver as they log

    def received(self, nsp: str, packet: StoredPacket) -> None:
        log = self._logs.get(nsp)
        if log is None:
            log = self._logs[nsp] = _Log()
        now = self.clock()
        log.entries.append((log.next_position, now, packet))
        log.positions[packet.offset] = log.next_position
        log.next_position += 1
        self._trim(log, now)

    def _trim(self, log: _Log, now: float) -> None:
        entries, positions = log.entries, log.positions
        oldest_kept = now - self.max_age
        while entries and (len(entries) > self.max_packets or entries[0][1] < oldest_kept):
            _, _, packet = entries.popleft()
            positions.pop(packet.offset, None)
        # (An emptied log stays: its next position must keep counting up.)

    async def save(self, nsp: str, session: SavedSession) -> None:
        now = self.clock()
        self._sessions[session.pid] = (now + self.max_age, nsp, session)
        if len(self._sessions) % 1024 == 0:  # now and then, forget the expired ones
            self._sessions = {pid: kept for pid, kept in self._sessions.items() if kept[0] >= now}

    async def restore(self, nsp: str, pid: str, offset: str) -> Restored | None:
        kept = self._sessions.pop(pid, None)
        now = self.clock()
        if kept is None or kept[0] < now or kept[1] != nsp:
            return None
        session = kept[2]
        log = self._logs.get(nsp)
        if log is None:
            return None
        self._trim(log, now)
        position = log.positions.get(offset)
        if position is None:
            return None
        rooms = session.rooms
        entries = log.entries
        first = position - entries[0][0] + 1  # positions are consecutive in the deque
        # islice: indexing a deque in the middle costs a walk per item.
        missed = [packet for _, _, packet in islice(entries, first, None) if packet.reaches(rooms)]
        return Restored(session, missed)

    async def run(
        self,
        namespaces: Callable[[], Iterable[str]],
        deliver: Deliver,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()  # nothing to deliver: senders deliver

    async def close(self) -> None:
        self._logs.clear()
        self._sessions.clear()
