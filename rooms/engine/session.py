"""One Engine.IO session: its state machine and its bounded outbox.

States (the transitions are this class's methods; nothing else writes them)::

    OPEN ──a websocket with its sid connects──▶ UPGRADING ──"5"──▶ OPEN (transport = websocket)
      │      (begin_upgrade)                       │ "2probe" (probe): polls answered NOOP
      │                                            │ anything else, or its websocket goes:
      │                                            │ back to OPEN on polling (abandon_upgrade)
      └──────────── close(reason) ─────────────────┴──▶ CLOSING ──▶ CLOSED (finish)

How a session on long-polling ends is what the reference server does:

- closed by the application (``close()``, "forced close"): what is queued goes with the
  next poll, and the poll after it carries NOOP and CLOSE; a poll pending at the close
  carries CLOSE at once. Then the session is finished.
- closed for any other reason (ping timeout, parse error, transport error, shutdown): a
  pending poll carries CLOSE; with none pending the session is finished at once, its
  queued frames dropped, and a later request is told its sid is unknown.
- closed by the client's CLOSE packet: a pending poll is released with NOOP; finished.

A session is upgrading from the moment a websocket claims it, probe or not: a second
websocket for it (or for an upgraded session) is accepted and closed. Only the probe
releases the pending poll (NOOP), so the client can pause polling before it sends "5".

Frames are queued as websocket frames (``str`` or ``bytes``); whichever transport currently
carries the session drains the same queue, so nothing is lost across an upgrade.

Who sends: at most one task at a time "flushes" the outbox (``flushing``). A task that
produced frames for this session in answer to its own input (the websocket reader after
dispatching a message, a handler sending its ack) sends them itself, so the common request →
reply path has no task switch. Frames queued by anyone else (broadcasts, pings) *kick* the
session's carrier: the pending long-poll GET wakes, or the websocket writer runs. An idle
connection therefore holds no writer task at all.

Slow-consumer policy: the outbox holds at most ``max_outbox`` frames and ``max_outbox_bytes``
bytes (a text frame counts its length; a frame arriving at an empty outbox always fits). When
it is full, a volatile frame is dropped (and counted); any other frame closes the session
with reason ``"transport error"``, because silently dropping a non-volatile message would be
a lie and queueing it would make memory unbounded. The queued frames are released at once:
a client that is not reading will not read them.

A closing session is given the engine's ``ping_timeout`` to deliver what is left and its
close; then it is aborted (its transport's sends and reads cancelled) and finished, whether
or not the peer ever reads again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from rooms._types import Scope
from rooms.protocol.engineio import CLOSE, NOOP, Frame, message_frame

if TYPE_CHECKING:
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.engine")

FORCED_CLOSE = "forced close"


class State(enum.Enum):
    OPEN = "open"
    UPGRADING = "upgrading"
    CLOSING = "closing"
    CLOSED = "closed"


class PeerGone(Exception):
    """The ASGI server failed a send or a receive: the peer (or its connection) is gone.

    Carriers raise only this for a failed send; any other exception is a bug and is
    reported as one, never mistaken for a peer that went away.
    """


def frames_size(frames: Sequence[Frame]) -> int:
    """What ``frames`` count against ``max_outbox_bytes``."""
    return sum(map(len, frames))


class Carrier(Protocol):
    """The transport side of a session that sends frames nobody else is sending."""

    def kick(self) -> None:
        """Frames wait (or the session is closing) and no task is flushing: send them."""

    async def flush(self) -> None:
        """Send what is queued from the calling task, unless another task is flushing."""

    async def drain(self) -> None:
        """Send what is queued from the calling task, which holds ``session.flushing``;
        :class:`PeerGone` if a send fails."""

    def in_reader(self) -> bool:
        """Whether the calling task is the one reading (and dispatching for) the peer."""

    def discard(self) -> None:
        """Drop the frames a send in progress still holds (the session overflowed)."""

    def abort(self) -> None:
        """Cancel every send and read in progress: the session is being finished."""

    @property
    def inline(self) -> bool:
        """Whether the reader is dispatching a message right now, synchronously: a
        handler started now may run inline (:meth:`run_inline`)."""

    def run_inline(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the reader until it first suspends; if it does, the reader
        finishes it and hands reading to a new task."""


class Session:
    """An Engine.IO session. Handed to callbacks; constructed only by the engine."""

    __slots__ = (
        "__weakref__",
        "_bytes",
        "_client_closed",
        "_dispatching",
        "_finished",
        "_flushing",
        "_get",
        "_handlers",
        "_outbox",
        "_post",
        "_probed",
        "_room",
        "_waiter",
        "awaiting_pong",
        "carrier",
        "close_reason",
        "dropped",
        "engine",
        "max_outbox",
        "max_outbox_bytes",
        "ping_seq",
        "scope",
        "sid",
        "state",
        "transport",
        "upper",
    )

    def __init__(
        self,
        engine: EngineServer,
        sid: str,
        transport: str,
        scope: Scope,
        max_outbox: int,
        max_outbox_bytes: int,
    ) -> None:
        self.engine = engine
        self.sid = sid
        self.transport = transport
        self.scope = scope
        self.state = State.OPEN
        self.max_outbox = max_outbox
        self.max_outbox_bytes = max_outbox_bytes
        self.close_reason: str | None = None
        self.dropped = 0
        # Heartbeat bookkeeping (see heartbeat.py): which ping is outstanding.
        self.ping_seq = 0
        self.awaiting_pong = False
        # At most one GET and one POST in flight (Engine.IO spec: one outstanding GET).
        self._get = False
        self._post = False
        # The layer above keeps its per-connection object here (Socket.IO's client state).
        self.upper: Any = None
        # The websocket writer, once the session is on a websocket.
        self.carrier: Carrier | None = None
        # The sending token: at most one task sends this session's frames at a time.
        self._flushing = False
        # The websocket reader holds the token while it dispatches a message: a producer
        # inside that dispatch must send for itself (nobody else will while it waits).
        self._dispatching = False
        self._outbox: list[Frame] = []
        self._bytes = 0  # what the outbox holds, as frames_size() counts it
        self._waiter: anyio.Event | None = None  # a long-poll GET waiting for frames
        self._probed = False  # the upgrading websocket sent "2probe": polls get NOOP
        self._client_closed = False  # the client's CLOSE packet: a pending poll gets NOOP
        self._finished: anyio.Event | None = None  # an upgrading websocket waits for the end
        self._room: anyio.Event | None = None  # a producer waiting for the outbox to drain
        # The cancel scopes of this session's handlers running in tasks (see start()).
        self._handlers: set[anyio.CancelScope] | None = None

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport} {self.state.value}>"

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSING or self.state is State.CLOSED

    @property
    def flushing(self) -> bool:
        """Whether a task holds the sending token (it sends what is queued)."""
        return self._flushing

    @property
    def dispatching(self) -> bool:
        """Whether the websocket reader holds the token while it dispatches a message."""
        return self._dispatching

    @property
    def polling(self) -> bool:
        """A long-poll GET is in flight (it will carry what is queued, and the close)."""
        return self._get

    @property
    def posting(self) -> bool:
        """A POST is in flight (its body is being read or its packets dispatched)."""
        return self._post

    @property
    def queued(self) -> int:
        """How many frames wait in the outbox."""
        return len(self._outbox)

    @property
    def queued_bytes(self) -> int:
        """How much the waiting frames count against ``max_outbox_bytes``."""
        return self._bytes

    # ------------------------------------------------------------------ sending

    def _fits(self, count: int, size: int) -> bool:
        outbox = self._outbox
        if len(outbox) + count > self.max_outbox:
            return False
        return not outbox or self._bytes + size <= self.max_outbox_bytes

    def send(self, frame: Frame, volatile: bool = False) -> bool:
        """Queue one frame without waiting. Returns False if it was not queued."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return False
        size = len(frame)
        outbox = self._outbox
        if outbox and (
            len(outbox) >= self.max_outbox or self._bytes + size > self.max_outbox_bytes
        ):  # _fits(), inlined: this runs once per recipient of every broadcast
            return self._overflow(volatile)
        outbox.append(frame)
        self._bytes += size
        if len(outbox) == 1 and not self._flushing:
            carrier = self.carrier
            if self._waiter is None and carrier is not None:
                carrier.kick()  # _kick(), inlined for the websocket case: as above
            else:
                self._kick()
        return True

    def send_message(self, data: str | bytes) -> bool:
        """Send an Engine.IO MESSAGE (text or binary): the bare Engine.IO API."""
        return self.send(message_frame(data))

    def send_many(
        self, frames: Sequence[Frame], volatile: bool = False, size: int | None = None
    ) -> bool:
        """Queue frames that must travel together (a packet and its attachments).
        ``size`` is ``frames_size(frames)`` when the caller knows it already (a broadcast
        computes it once for every recipient)."""
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return False
        if size is None:
            size = frames_size(frames)
        if not self._fits(len(frames), size):
            return self._overflow(volatile)
        outbox = self._outbox
        was_empty = not outbox
        outbox.extend(frames)
        self._bytes += size
        if was_empty and not self._flushing:
            self._kick()
        return True

    async def send_now(self, frames: list[Frame], volatile: bool = False) -> bool:
        """Queue frames and, if no other task is sending, send them from this one.

        For replies to the peer's own input (acks, private emits): no task switch, and
        natural backpressure on the task that produced them.
        """
        carrier = self.carrier
        if carrier is None or self._flushing:
            return self.send_many(frames, volatile)
        self._flushing = True  # hold off kicks: we send what we queue
        try:
            queued = self.send_many(frames, volatile)
        finally:
            self._flushing = False
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
        if volatile:
            self.engine.volatile_drops += 1
        else:
            self.engine.overflows += 1
            logger.warning(
                "session %s: expected the client to keep up, got %d frames (%d bytes) queued "
                "(max_outbox %d, max_outbox_bytes %d); closing it as a slow consumer",
                self.sid,
                len(self._outbox),
                self._bytes,
                self.max_outbox,
                self.max_outbox_bytes,
            )
            # Released now: a client that does not read will not read these either (with
            # connection state recovery, it gets them from the log when it comes back).
            self._clear()
            if self.carrier is not None:
                self.carrier.discard()
            self.close("transport error")
        return False

    def _clear(self) -> None:
        self._outbox = []
        self._bytes = 0

    # ------------------------------------------------------------------ handlers

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a handler's coroutine (which logs its own failures) for this session's input.

        Started by the websocket reader's dispatch, it runs right there until it first
        suspends; most handlers never do, and cost no task. One that suspends is finished
        by that task, which hands reading to a new one (see :mod:`rooms.engine.websocket`).
        Otherwise it gets a task in the engine's group. A handler still running
        ``handler_grace`` seconds after the session finished is cancelled: its connection
        is gone, and the ASGI server may be waiting for it to shut down.
        """
        carrier = self.carrier
        if carrier is not None and carrier.inline:
            carrier.run_inline(coro)
        else:
            self.engine.running_group.start_soon(self._run_task, coro)

    async def _run_task(self, coro: Coroutine[Any, Any, None]) -> None:
        with anyio.CancelScope() as scope:
            self.hold(scope)
            try:
                await coro
            finally:
                self.release(scope)

    def hold(self, scope: anyio.CancelScope) -> None:
        """A handler of this session runs in ``scope`` (cancelled ``handler_grace`` after
        the session finished)."""
        if self._handlers is None:
            self._handlers = set()
        self._handlers.add(scope)
        if self.state is State.CLOSED:
            self.engine.handler_deadlines.add(self.cancel_handlers)

    def release(self, scope: anyio.CancelScope) -> None:
        handlers = self._handlers
        if handlers is not None:
            handlers.discard(scope)
            if not handlers:
                self._handlers = None

    def cancel_handlers(self) -> None:
        """Cancel this session's handlers still running (its grace has passed)."""
        handlers, self._handlers = self._handlers, None
        if handlers:
            logger.info(
                "session %s: %d handler(s) still running %.1f s after the connection ended; "
                "cancelling them",
                self.sid,
                len(handlers),
                self.engine.handler_deadlines.delay,
            )
            for scope in handlers:
                scope.cancel()

    # ------------------------------------------------------------------ the sending token

    def acquire_sending(self) -> bool:
        """Take the sending token; False if another task holds it (it sends for us)."""
        if self._flushing:
            return False
        self._flushing = True
        return True

    def release_sending(self) -> None:
        self._flushing = False

    def begin_dispatch(self) -> bool:
        """The websocket reader is about to dispatch a message: it takes the token, so what
        the dispatch queues it sends itself; False if another task holds it."""
        if self._flushing:
            return False
        self._flushing = self._dispatching = True
        return True

    def end_dispatch(self) -> None:
        self._flushing = self._dispatching = False

    # ------------------------------------------------------------------ long-polling

    def begin_request(self, method: str) -> bool:
        """A GET or POST starts; False if one of that method is in flight already."""
        if method == "GET":
            if self._get:
                return False
            self._get = True
        else:
            if self._post:
                return False
            self._post = True
        return True

    def end_request(self, method: str) -> None:
        if method == "GET":
            self._get = False
            if self.state is State.CLOSING and self.close_reason != FORCED_CLOSE:
                self.finish()  # the poll went without carrying the close: none will
        else:
            self._post = False

    # ------------------------------------------------------------------ upgrading

    def attach(self, carrier: Carrier) -> None:
        """A websocket carries this session from now on."""
        self.carrier = carrier

    def begin_upgrade(self) -> bool:
        """A websocket with this session's sid connected: OPEN → UPGRADING. False if the
        session is not OPEN on polling (upgrading already, upgraded, or closing)."""
        if self.state is not State.OPEN or self.transport != "polling":
            return False
        self.state = State.UPGRADING
        return True

    def probe(self) -> bool:
        """``2probe`` arrived on the upgrading websocket: a pending poll is released (with a
        NOOP) so the client can pause polling, and so is every poll until the upgrade
        ends. False if the session is not upgrading any more."""
        if self.state is not State.UPGRADING:
            return False
        self._probed = True
        self.wake()
        return True

    def complete_upgrade(self) -> bool:
        """``5`` arrived: the websocket carries the session. False if it closed meanwhile."""
        if self.state is not State.UPGRADING:
            return False
        self.transport = "websocket"
        self.state = State.OPEN
        self._probed = False
        self.wake()
        engine = self.engine
        engine.upgrades += 1
        if engine.on_upgrade is not None:
            engine.on_upgrade(self)
        return True

    async def wait_finished(self) -> None:
        """Return once the session is finished (an upgrading websocket is closed then, as
        the reference closes it when its session closes)."""
        if self.state is State.CLOSED:
            return
        if self._finished is None:
            self._finished = anyio.Event()
        await self._finished.wait()

    def abandon_upgrade(self) -> None:
        """The probe failed or its websocket went: the session stays on polling."""
        if self.state is State.UPGRADING:
            self.state = State.OPEN
            self._probed = False

    def refuse(self) -> None:
        """The engine refused the handshake: CLOSED, with no callback (it never opened)."""
        self.state = State.CLOSED
        self._clear()

    # ------------------------------------------------------------------ draining

    def take(self) -> list[Frame]:
        """Take every queued frame (the caller sends them and owns the list)."""
        frames = self._outbox
        if len(frames) > self.engine.outbox_peak:
            self.engine.outbox_peak = len(frames)
        self._clear()
        if self._room is not None:
            self._made_room()
        return frames

    def swap(self, spare: list[Frame]) -> list[Frame]:
        """Take every queued frame, leaving the caller's emptied ``spare`` list in its place
        (the websocket drain reuses two lists instead of allocating one per flush)."""
        frames = self._outbox
        if len(frames) > self.engine.outbox_peak:  # once per flush, not per frame
            self.engine.outbox_peak = len(frames)
        self._outbox = spare
        self._bytes = 0
        if self._room is not None:
            self._made_room()
        return frames

    def _made_room(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()

    async def wait_room(self, frames: Sequence[Frame]) -> bool:
        """Wait until ``frames`` fit in the outbox; False if the session closes first. For
        producers of long runs (a recovery's replay) that must not overflow it."""
        count, size = len(frames), frames_size(frames)
        if count > self.max_outbox:
            return not self.closed  # no room will ever do: the send overflows, as any would
        while not self._fits(count, size):
            if self.closed:
                return False
            carrier = self.carrier
            if (
                self._dispatching
                and self._outbox
                and carrier is not None
                and not carrier.inline  # a handler's first step: it must not send
                and carrier.in_reader()
            ):
                try:
                    await carrier.drain()  # we are the dispatch holding `flushing`: send
                except PeerGone:
                    self.close("transport error")
                    return False
                continue
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        return not self.closed

    async def next_frames(self) -> list[Frame]:
        """For a long-poll GET (which holds the GET token): what to answer it.

        Waits for queued frames and takes them all. A closing session's answer ends it (see
        the module's docstring for which one: CLOSE; NOOP then CLOSE for a poll that came
        after a forced close; NOOP for a poll pending when the client closed) and the
        session is finished. A poll during a probed upgrade (or after the upgrade) is
        released at once with a NOOP so the client can pause polling (Engine.IO v4 spec,
        "Upgrade").
        """
        late = self.state is State.CLOSING  # came after the close
        while True:
            if self.transport != "polling":
                return [NOOP]  # upgraded: what is queued belongs to the websocket now
            if self._outbox:
                return self.take()  # even when closing: the close goes with the next poll
            state = self.state
            if state is State.CLOSING or state is State.CLOSED:
                if self._client_closed:
                    answer = [NOOP]
                elif late:
                    answer = [NOOP, CLOSE]
                else:
                    answer = [CLOSE]
                self.finish()
                return answer
            if self._probed:
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

    def close(self, reason: str = FORCED_CLOSE) -> None:
        """Close the session: queued frames still drain, then the transport closes; past
        the engine's ``close_timeout`` it is aborted. On long-polling with no poll pending,
        only a forced close (the application's) waits for a poll; any other reason
        finishes the session at once (see the module's docstring).

        Idempotent; the engine's disconnect callback runs once, with the first reason.
        """
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return
        self.state = State.CLOSING
        self.close_reason = reason
        self.wake()
        self._made_room()  # a waiting producer learns it is closed
        if self.carrier is not None and not self._flushing:
            self.carrier.kick()
        self.engine.session_closed(self, reason)
        if self.transport == "polling" and not self._get and reason != FORCED_CLOSE:
            # No poll will carry this close: the reference server forgets the session at
            # once, and so a later request hears that its sid is unknown.
            self.finish()

    def client_close(self) -> None:
        """The client sent CLOSE on long-polling: a pending poll is released with a NOOP,
        and the session is finished."""
        if self.closed:
            return
        self._client_closed = True
        self.close("transport close")

    def abort(self) -> None:
        """The close deadline passed (or the transport must go now): cancel what the
        transport is doing and finish."""
        if self.state is State.CLOSED:
            return
        carrier = self.carrier
        self.finish()
        if carrier is not None:
            carrier.abort()

    def finish(self) -> None:
        """The transport is gone: nothing more will be drained."""
        if self.state is not State.CLOSED:
            if self.state is not State.CLOSING:
                self.close("transport close")
            self.state = State.CLOSED
            self._clear()
            self.wake()
            self._made_room()
            # Break the cycles through the layer above and the transport (each points back
            # here), so reference counting frees a finished session at once: an idle
            # process may not run the cyclic collector for a long time.
            self.upper = None
            self.carrier = None
            if self._handlers:
                self.engine.handler_deadlines.add(self.cancel_handlers)
            if self._finished is not None:
                self._finished.set()
            self.engine.session_finished(self)
