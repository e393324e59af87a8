"""One task drives every timer of the engine: the heartbeat of each session, and deadlines.

The server sends PING every ``ping_interval`` and expects PONG within ``ping_timeout``
(Engine.IO v4: the server pings, the client answers). Every timer of one kind has the same
delay, so its deadlines fall due in the order they were set: each kind is a FIFO queue (a
*lane*), and one task serves them all, with no task and no heap entry per session.

Timers never keep what they are about alive: an entry holds its session (or callback
owner) through a weak reference, so a session that closes is freed at once, not when its
next ping or deadline would have fallen due. A dead entry is skipped when it comes up.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from rooms._types import Clock
from rooms.protocol.engineio import PING

if TYPE_CHECKING:
    from rooms.engine.session import Session

logger = logging.getLogger("rooms.engine")


class Lane:
    """Deadlines that all wait the same ``delay``: ``add(method, *args)`` calls
    ``method(*args)`` once the delay has passed, unless the method's object is gone."""

    __slots__ = ("_entries", "_heartbeat", "delay")

    def __init__(self, heartbeat: Heartbeat, delay: float) -> None:
        self._heartbeat = heartbeat
        self.delay = delay
        self._entries: deque[tuple[float, weakref.WeakMethod[Callable[..., Any]], tuple[Any, ...]]]
        self._entries = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, method: Callable[..., Any], *args: Any) -> None:
        """``method`` must be a bound method: it is held weakly (with its object)."""
        due = self._heartbeat.clock() + self.delay
        self._entries.append((due, weakref.WeakMethod(method), args))
        self._heartbeat.due_at(due)

    def fire(self, now: float) -> None:
        """Call what is due."""
        entries = self._entries
        while entries and entries[0][0] <= now:
            _, ref, args = entries.popleft()
            method = ref()
            if method is not None:
                try:
                    method(*args)
                except Exception:  # one bad callback must not stop every timer
                    logger.exception("timer callback %r failed", method)

    def next_due(self) -> float:
        return self._entries[0][0] if self._entries else math.inf


class Heartbeat:
    __slots__ = (
        "_interval",
        "_lanes",
        "_next_sweep",
        "_pings",
        "_pongs",
        "_sleep_until",
        "_timeout",
        "_wake",
        "clock",
        "sweep",
        "sweep_every",
    )

    def __init__(self, interval: float, timeout: float, clock: Clock) -> None:
        self._interval = interval
        self._timeout = timeout
        self.clock = clock
        self._pings: deque[tuple[float, int, weakref.ref[Session]]] = deque()
        self._pongs: deque[tuple[float, int, weakref.ref[Session]]] = deque()
        self._lanes: dict[float, Lane] = {}
        # A periodic sweep (idle websocket writers end themselves after writer_linger).
        self.sweep: Callable[[float], None] | None = None
        self.sweep_every = math.inf
        self._next_sweep = math.inf
        self._wake = anyio.Event()
        self._sleep_until = math.inf

    def lane(self, delay: float) -> Lane:
        """The FIFO of deadlines ``delay`` seconds out (one per distinct delay)."""
        lane = self._lanes.get(delay)
        if lane is None:
            lane = self._lanes[delay] = Lane(self, delay)
        return lane

    def pending(self) -> int:
        """Entries waiting in every queue (dead ones included until they come up)."""
        return len(self._pings) + len(self._pongs) + sum(map(len, self._lanes.values()))

    def due_at(self, due: float) -> None:
        """Something falls due at ``due``: wake the task if it sleeps past that."""
        if due < self._sleep_until:
            self._wake.set()

    def start(self, session: Session) -> None:
        """Schedule the first ping of a new session."""
        self._schedule_ping(session)

    def pong(self, session: Session) -> None:
        """A PONG arrived: the next ping is due one interval from now."""
        if session.awaiting_pong:
            session.awaiting_pong = False
            session.ping_seq += 1
            self._schedule_ping(session)

    def _schedule_ping(self, session: Session) -> None:
        due = self.clock() + self._interval
        self._pings.append((due, session.ping_seq, weakref.ref(session)))
        self.due_at(due)

    def sweep_soon(self) -> None:
        """Make sure the periodic sweep is scheduled (it stops when there is nothing to do)."""
        if self._next_sweep == math.inf and self.sweep_every != math.inf:
            self._next_sweep = self.clock() + self.sweep_every
            self.due_at(self._next_sweep)

    def tick(self) -> float:
        """Act on everything due by now; return when the next deadline falls."""
        from rooms.engine.session import State

        now = self.clock()
        pings, pongs = self._pings, self._pongs
        while pings and pings[0][0] <= now:
            _, seq, ref = pings.popleft()
            session = ref()
            if (
                session is not None
                and (session.state is State.OPEN or session.state is State.UPGRADING)
                and seq == session.ping_seq
                and not session.awaiting_pong
            ):
                session.awaiting_pong = True
                session.send(PING)
                pongs.append((now + self._timeout, seq, ref))
        while pongs and pongs[0][0] <= now:
            _, seq, ref = pongs.popleft()
            session = ref()
            if session is not None and session.awaiting_pong and seq == session.ping_seq:
                session.close("ping timeout")
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.fire(now)
        if self._next_sweep <= now:
            self._next_sweep = math.inf
            if self.sweep is not None:
                self.sweep(now)  # calls sweep_soon() again while work remains
        # Looked at last: what fired above may have set new deadlines.
        return min(
            pings[0][0] if pings else math.inf,
            pongs[0][0] if pongs else math.inf,
            self._next_sweep,
            *(lane.next_due() for lane in self._lanes.values()),
        )

    async def run(self) -> None:
        while True:
            nxt = self.tick()
            self._sleep_until = nxt
            self._wake = anyio.Event()
            if nxt == math.inf:
                await self._wake.wait()
            else:
                with anyio.move_on_after(max(nxt - self.clock(), 0.0)):
                    await self._wake.wait()
