"""One Engine.IO session: its state machine and its bounded outbox.

States::

    OPEN ──probe on a websocket──▶ UPGRADING ──"5"──▶ OPEN (transport = websocket)
      │                               │ probe fails: back to OPEN on polling
      └──────────── close(reason) ────┴──▶ CLOSING (outbox drains) ──▶ CLOSED

Frames are queued as websocket frames (``str`` or ``bytes``); whichever transport currently
carries the session drains the same queue, so nothing is lost across an upgrade.

Who sends: at most one task at a time "flushes" the outbox (``flushing``). A task that
produced frames for this session in answer to its own input (the websocket reader after
dispatching a message, a handler sending its ack) sends them itself, so the common request →
reply path has no task switch. Frames queued by anyone else (broadcasts, pings) *kick* the
session's carrier: the pending long-poll GET wakes, or the websocket writer runs. An idle
connection therefore holds no writer task at all.

Slow-consumer policy: the outbox holds at most ``max_outbox`` frames. When it is full, a
volatile frame is dropped (and counted); any other frame closes the session with reason
``"transport error"``, because silently dropping a non-volatile message would be a lie and
queueing it would make memory unbounded.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from rooms._types import Scope
from rooms.protocol.engineio import NOOP, Frame, message_frame

if TYPE_CHECKING:
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.engine")


class State(enum.Enum):
    OPEN = "open"
    UPGRADING = "upgrading"
    CLOSING = "closing"
    CLOSED = "closed"


class Carrier(Protocol):
    """The transport side of a session that sends frames nobody else is sending."""

    def kick(self) -> None:
        """Frames wait (or the session is closing) and no task is flushing: send them."""

    async def flush(self) -> None:
        """Send what is queued from the calling task, unless another task is flushing."""

    async def drain(self) -> None:
        """Send what is queued from the calling task, which holds ``session.flushing``."""

    def in_reader(self) -> bool:
        """Whether the calling task is the one reading (and dispatching for) the peer."""


class Session:
    """An Engine.IO session. Handed to callbacks; constructed only by the engine."""

    __slots__ = (
        "_outbox",
        "_room",
        "_waiter",
        "awaiting_pong",
        "carrier",
        "close_reason",
        "dispatching",
        "dropped",
        "engine",
        "flushing",
        "max_outbox",
        "ping_seq",
        "polling_get",
        "polling_post",
        "scope",
        "sid",
        "state",
        "transport",
        "upper",
    )

    def __init__(
        self, engine: EngineServer, sid: str, transport: str, scope: Scope, max_outbox: int
    ) -> None:
        self.engine = engine
        self.sid = sid
        self.transport = transport
        self.scope = scope
        self.state = State.OPEN
        self.max_outbox = max_outbox
        self.close_reason: str | None = None
        self.dropped = 0
        # Heartbeat bookkeeping (see heartbeat.py): which ping is outstanding.
        self.ping_seq = 0
        self.awaiting_pong = False
        # At most one GET and one POST in flight (Engine.IO spec: one outstanding GET).
        self.polling_get = False
        self.polling_post = False
        # The layer above keeps its per-connection object here (Socket.IO's client state).
        self.upper: Any = None
        # The websocket writer, once the session is on a websocket.
        self.carrier: Carrier | None = None
        self.flushing = False
        # The websocket reader holds ``flushing`` while it dispatches a message: a producer
        # inside that dispatch must send for itself (nobody else will while it waits).
        self.dispatching = False
        self._outbox: list[Frame] = []
        self._waiter: anyio.Event | None = None  # a long-poll GET waiting for frames
        self._room: anyio.Event | None = None  # a producer waiting for the outbox to drain

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport} {self.state.value}>"

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSING or self.state is State.CLOSED

    @property
    def queued(self) -> int:
        """How many frames wait in the outbox."""
        return len(self._outbox)

    # ------------------------------------------------------------------ sending

    def send(self, frame: Frame, volatile: bool = False) -> bool:
        """Queue one frame without waiting. Returns False if it was not queued."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return False
        outbox = self._outbox
        if len(outbox) >= self.max_outbox:
            return self._overflow(volatile)
        outbox.append(frame)
        if len(outbox) == 1 and not self.flushing:
            self._kick()
        return True

    def send_message(self, data: str | bytes) -> bool:
        """Send an Engine.IO MESSAGE (text or binary): the bare Engine.IO API."""
        return self.send(message_frame(data))

    def send_many(self, frames: Iterable[Frame], count: int, volatile: bool = False) -> bool:
        """Queue frames that must travel together (a packet and its attachments)."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return False
        outbox = self._outbox
        if len(outbox) + count > self.max_outbox:
            return self._overflow(volatile)
        was_empty = not outbox
        outbox.extend(frames)
        if was_empty and not self.flushing:
            self._kick()
        return True

    async def send_now(self, frames: list[Frame], volatile: bool = False) -> bool:
        """Queue frames and, if no other task is sending, send them from this one.

        For replies to the peer's own input (acks, private emits): no task switch, and
        natural backpressure on the task that produced them.
        """
        carrier = self.carrier
        if carrier is None or self.flushing:
            return self.send_many(frames, len(frames), volatile)
        self.flushing = True  # hold off kicks: we send what we queue
        try:
            queued = self.send_many(frames, len(frames), volatile)
        finally:
            self.flushing = False
        if queued:
            await carrier.flush()
        return queued

    def _kick(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        elif self.carrier is not None:
            self.carrier.kick()

    def _overflow(self, volatile: bool) -> bool:
        self.dropped += 1
        if not volatile:
            logger.warning(
                "session %s: expected the client to keep up, got %d frames queued "
                "(max_outbox); closing it as a slow consumer",
                self.sid,
                len(self._outbox),
            )
            self.close("transport error")
        return False

    # ------------------------------------------------------------------ draining

    def take(self) -> list[Frame]:
        """Take every queued frame (the caller sends them and owns the list)."""
        frames = self._outbox
        self._outbox = []
        if self._room is not None:
            self._made_room()
        return frames

    def swap(self, spare: list[Frame]) -> list[Frame]:
        """Take every queued frame, leaving the caller's emptied ``spare`` list in its place
        (the websocket drain reuses two lists instead of allocating one per flush)."""
        frames = self._outbox
        self._outbox = spare
        if self._room is not None:
            self._made_room()
        return frames

    def _made_room(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()

    async def wait_room(self, count: int) -> bool:
        """Wait until ``count`` more frames fit in the outbox; False if the session closes
        first. For producers of long runs (a recovery's replay) that must not overflow it."""
        if count > self.max_outbox:
            return not self.closed  # no room will ever do: the send overflows, as any would
        while len(self._outbox) + count > self.max_outbox:
            if self.closed:
                return False
            carrier = self.carrier
            if self.dispatching and self._outbox and carrier is not None and carrier.in_reader():
                await carrier.drain()  # we are the dispatch holding `flushing`: send ourselves
                continue
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        return not self.closed

    async def next_frames(self) -> list[Frame]:
        """For a long-poll GET: wait for queued frames and take them all.

        Returns an empty list once the session is CLOSING and drained, or CLOSED.
        A poll during an upgrade (or after it) is released at once with a NOOP so the client
        can pause polling (Engine.IO v4 spec, "Upgrade").
        """
        while True:
            if self.transport != "polling":
                return [NOOP]  # upgraded: what is queued belongs to the websocket now
            if self._outbox:
                return self.take()
            state = self.state
            if state is State.CLOSING or state is State.CLOSED:
                return []
            if state is State.UPGRADING:
                return [NOOP]
            waiter = self._waiter = anyio.Event()
            await waiter.wait()

    def wake(self) -> None:
        """Wake a waiting poll (upgrade, close)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    # ------------------------------------------------------------------ closing

    def close(self, reason: str = "forced close") -> None:
        """Close the session: queued frames still drain, then the transport closes.

        Idempotent; the engine's disconnect callback runs once, with the first reason.
        """
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return
        self.state = State.CLOSING
        self.close_reason = reason
        self.wake()
        self._made_room()  # a waiting producer learns it is closed
        if self.carrier is not None and not self.flushing:
            self.carrier.kick()
        self.engine._session_closed(self, reason)

    def finish(self) -> None:
        """The transport is gone: nothing more will be drained."""
        if self.state is not State.CLOSED:
            if self.state is not State.CLOSING:
                self.close("transport close")
            self.state = State.CLOSED
            self._outbox = []
            self.wake()
            self._made_room()
            self.engine._session_finished(self)
