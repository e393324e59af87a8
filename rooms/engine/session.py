"""One Engine.IO session: its state machine and its bounded outbox.

States::

    OPEN ──probe on a websocket──▶ UPGRADING ──"5"──▶ OPEN (transport = websocket)
      │                               │ probe fails: back to OPEN on polling
      └──────────── close(reason) ────┴──▶ CLOSING (outbox drains) ──▶ CLOSED

Frames are queued as websocket frames (``str`` or ``bytes``); whichever transport currently
carries the session drains the same queue, so nothing is lost across an upgrade.

Slow-consumer policy: the outbox holds at most ``max_outbox`` frames. When it is full, a
volatile frame is dropped (and counted); any other frame closes the session with reason
``"transport error"``, because silently dropping a non-volatile message would be a lie and
queueing it would make memory unbounded.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio

from rooms._types import Scope
from rooms.exceptions import Disconnected
from rooms.protocol.engineio import NOOP, Frame, message_frame

if TYPE_CHECKING:
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.engine")


class State(enum.Enum):
    OPEN = "open"
    UPGRADING = "upgrading"
    CLOSING = "closing"
    CLOSED = "closed"


class Session:
    """An Engine.IO session. Handed to callbacks; constructed only by the engine."""

    __slots__ = (
        "_outbox",
        "_waiter",
        "awaiting_pong",
        "close_reason",
        "dropped",
        "engine",
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
        self._outbox: deque[Frame] = deque()
        self._waiter: anyio.Event | None = None

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
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
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
        outbox.extend(frames)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        return True

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

    async def next_frames(self, polling: bool = False) -> list[Frame]:
        """Wait for queued frames and take them all.

        Returns an empty list once the session is CLOSING and drained, or CLOSED.
        A poll during an upgrade (or after it) is released at once with a NOOP so the client
        can pause polling (Engine.IO v4 spec, "Upgrade").
        """
        outbox = self._outbox
        while not outbox:
            state = self.state
            if state is State.CLOSING or state is State.CLOSED:
                return []
            if polling and (state is State.UPGRADING or self.transport != "polling"):
                return [NOOP]
            waiter = self._waiter = anyio.Event()
            await waiter.wait()
        frames = list(outbox)
        outbox.clear()
        return frames

    def wake(self) -> None:
        """Wake whoever waits in :meth:`next_frames` (upgrade, close)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def take_remaining(self) -> list[Frame]:
        frames = list(self._outbox)
        self._outbox.clear()
        return frames

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
        self.engine._session_closed(self, reason)

    def finish(self) -> None:
        """The transport is gone: nothing more will be drained."""
        if self.state is not State.CLOSED:
            if self.state is not State.CLOSING:
                self.close("transport close")
            self.state = State.CLOSED
            self._outbox.clear()
            self.wake()
            self.engine._session_finished(self)

    def ensure_open(self) -> None:
        if self.state is State.CLOSING or self.state is State.CLOSED:
            raise Disconnected(f"session {self.sid} is {self.state.value}")
