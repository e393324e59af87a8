"""One task drives the heartbeat of every session.

The server sends PING every ``ping_interval`` and expects PONG within ``ping_timeout``
(Engine.IO v4: the server pings, the client answers). Because every session uses the same
two delays, deadlines enter two FIFO queues in the order they fall due, so one task can
serve all sessions with no per-session timer task and no heap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from rooms._types import Clock
from rooms.protocol.engineio import PING

if TYPE_CHECKING:
    from rooms.engine.session import Session


class Heartbeat:
    __slots__ = (
        "_checks",
        "_clock",
        "_interval",
        "_next_sweep",
        "_pings",
        "_pongs",
        "_reaps",
        "_sleep_until",
        "_timeout",
        "_wake",
        "check_delay",
        "sweep",
        "sweep_every",
    )

    def __init__(self, interval: float, timeout: float, clock: Clock) -> None:
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._pings: deque[tuple[float, int, Session]] = deque()
        self._pongs: deque[tuple[float, int, Session]] = deque()
        self._reaps: deque[tuple[float, Session]] = deque()
        self._checks: deque[tuple[float, Callable[[], None]]] = deque()
        self.check_delay = math.inf
        # A periodic sweep (idle websocket writers end themselves after writer_linger).
        self.sweep: Callable[[float], None] | None = None
        self.sweep_every = math.inf
        self._next_sweep = math.inf
        self._wake = anyio.Event()
        self._sleep_until = math.inf

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
        due = self._clock() + self._interval
        self._pings.append((due, session.ping_seq, session))
        if due < self._sleep_until:
            self._wake.set()

    def check_later(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``check_delay`` has passed (one fixed delay: FIFO)."""
        if self.check_delay != math.inf:
            due = self._clock() + self.check_delay
            self._checks.append((due, callback))
            if due < self._sleep_until:
                self._wake.set()

    def sweep_soon(self) -> None:
        """Make sure the periodic sweep is scheduled (it stops when there is nothing to do)."""
        if self._next_sweep == math.inf and self.sweep_every != math.inf:
            self._next_sweep = self._clock() + self.sweep_every
            if self._next_sweep < self._sleep_until:
                self._wake.set()

    def reap(self, session: Session) -> None:
        """Forget a closing polling session whose client never came back to drain it."""
        self._reaps.append((self._clock() + self._timeout, session))

    def tick(self) -> float:
        """Act on everything due by now; return when the next deadline falls."""
        from rooms.engine.session import State

        now = self._clock()
        pings, pongs, reaps = self._pings, self._pongs, self._reaps
        while pings and pings[0][0] <= now:
            _, seq, session = pings.popleft()
            state = session.state
            if (
                (state is State.OPEN or state is State.UPGRADING)
                and seq == session.ping_seq
                and not session.awaiting_pong
            ):
                session.awaiting_pong = True
                session.send(PING)
                pongs.append((now + self._timeout, seq, session))
        while pongs and pongs[0][0] <= now:
            _, seq, session = pongs.popleft()
            if session.awaiting_pong and seq == session.ping_seq:
                session.close("ping timeout")
        while reaps and reaps[0][0] <= now:
            reaps.popleft()[1].finish()
        checks = self._checks
        while checks and checks[0][0] <= now:
            checks.popleft()[1]()
        if self._next_sweep <= now:
            self._next_sweep = math.inf
            if self.sweep is not None:
                self.sweep(now)  # calls sweep_soon() again while work remains
        return min(
            self._next_sweep,
            pings[0][0] if pings else math.inf,
            pongs[0][0] if pongs else math.inf,
            reaps[0][0] if reaps else math.inf,
            checks[0][0] if checks else math.inf,
        )

    async def run(self) -> None:
        while True:
            nxt = self.tick()
            self._sleep_until = nxt
            self._wake = anyio.Event()
            if nxt == math.inf:
                await self._wake.wait()
            else:
                with anyio.move_on_after(max(nxt - self._clock(), 0.0)):
                    await self._wake.wait()
