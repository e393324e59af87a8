"""One task sends queued frames for every websocket session, in turn.

Frames a task produces for its own connection (the reader's replies, a handler's ack) are
sent by that task. Everything else (broadcasts, server-side emits, pings) is queued and the
session is *scheduled* here: one flusher task walks the scheduled sessions and sends each
one's frames, the way a hand-written loop over ``await websocket.send(...)`` would, with no
task and no event per recipient.

Producers get backpressure from :meth:`Flusher.wait_flushed`: a broadcast returns once the
sessions the broadcast before it scheduled have been served, so a loop of emits cannot
outrun the sends and fill every outbox. A slow consumer must not hold everyone else up. A
watchdog notices a send that has not returned within ``stall_after`` seconds; that session
is marked slow (from then on its own writer task serves it) and a fresh flusher takes over
the queue. The stalled flusher finishes that one session and ends. Each flusher runs in a
cancel scope of its own, so a session that is aborted (its close deadline passed with the
send still stuck) cancels the flusher stuck
on it, and only that one.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import anyio
import anyio.abc

if TYPE_CHECKING:
    from rooms.engine.websocket import Pump

logger = logging.getLogger("rooms.engine")


class Flusher:
    __slots__ = (
        "_current",
        "_flushed",
        "_generation",
        "_mark",
        "_progress",
        "_queue",
        "_scheduled",
        "_scopes",
        "_stalled",
        "_tg",
        "_waiters",
        "_wake",
        "_watch_wake",
        "running",
        "stall_after",
        "stalls",
    )

    def __init__(self, stall_after: float) -> None:
        self.stall_after = stall_after
        self.stalls = 0
        self._queue: deque[Pump] = deque()
        self._current: Pump | None = None
        # Counts sessions served; the watchdog compares it between two looks instead of
        # reading the clock for every session.
        self._progress = 0
        self.running = False
        self._generation = 0
        self._wake: anyio.Event | None = None
        self._watch_wake: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        # Backpressure bookkeeping: sessions scheduled and served so far, and who waits.
        self._scheduled = 0
        self._flushed = 0
        self._mark = 0  # what the next wait_flushed waits for: see there
        self._waiters: deque[tuple[int, anyio.Event]] = deque()
        # The cancel scope of each running flusher, and which stalled flusher serves whom.
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._stalled: dict[Pump, int] = {}

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.running = True
        tg.start_soon(self._run, self._generation)
        tg.start_soon(self._watch)

    def schedule(self, pump: Pump) -> None:
        """``pump`` has frames queued and nobody sending them."""
        self._queue.append(pump)
        self._scheduled += 1
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()
            watch = self._watch_wake
            if watch is not None:
                self._watch_wake = None
                watch.set()

    async def _run(self, generation: int) -> None:
        with anyio.CancelScope() as self._scopes[generation]:
            try:
                await self._serve(generation)
            finally:
                del self._scopes[generation]

    async def _serve(self, generation: int) -> None:
        queue = self._queue
        while generation == self._generation:
            if not queue:
                wake = self._wake = anyio.Event()
                await wake.wait()
                continue
            pump = queue.popleft()
            pump.scheduled = False
            if pump.slow:
                pump.kick()
                self._served()
                continue
            self._current = pump
            self._progress += 1
            try:
                await pump.flush()
            finally:
                if generation == self._generation:
                    self._current = None
                    self._flushed += 1  # _served(), inlined: this runs once per delivery
                    if self._waiters:
                        self._release_waiters()
                else:
                    self._stalled.pop(pump, None)
                    pump.slow = False  # we were the stalled flusher: it caught up
                # An idle flusher holds no session: the last one served may be closed
                # and must be freed at once (DESIGN §6), not when the next one comes.
                del pump
        # A newer flusher owns the queue now.

    def _served(self) -> None:
        self._flushed += 1
        self._release_waiters()

    def _release_waiters(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= self._flushed:
            waiters.popleft()[1].set()

    async def wait_flushed(self) -> None:
        """Backpressure for a producer that just scheduled sessions: wait until every
        session scheduled up to the previous call has been served (or handed off).

        So producers may run one broadcast ahead of the flusher: the common lone emit
        returns at once (its handler need not suspend), while a loop of emits waits, each
        time, for the sends of the one before, and cannot fill every outbox."""
        target, self._mark = self._mark, self._scheduled
        if self._flushed >= target or self._tg is None:
            return
        done = anyio.Event()
        self._waiters.append((target, done))
        await done.wait()

    async def _watch(self) -> None:
        while True:
            if self._current is None and not self._queue:
                watch = self._watch_wake = anyio.Event()
                await watch.wait()
                continue
            current, progress = self._current, self._progress
            await anyio.sleep(self.stall_after / 2)
            # Still on the same session after half the stall time; once more and it stalled.
            if current is not None and current is self._current and progress == self._progress:
                await anyio.sleep(self.stall_after / 2)
                if current is self._current and progress == self._progress:
                    self._hand_off(current)

    def abandon(self, pump: Pump) -> None:
        """``pump``'s session is being aborted: stop any flusher sending for it."""
        if self._current is pump:
            self._hand_off(pump)  # the others move on to a fresh flusher first
        generation = self._stalled.pop(pump, None)
        if generation is not None:
            scope = self._scopes.get(generation)
            if scope is not None:
                scope.cancel()

    def _hand_off(self, pump: Pump) -> None:
        logger.info(
            "session %s: a send stalled for over %.3f s; giving it its own writer",
            pump.session.sid,
            self.stall_after,
        )
        self.stalls += 1
        pump.slow = True
        self._stalled[pump] = self._generation
        self._current = None
        self._served()  # as far as waiting producers are concerned
        self._generation += 1
        if self._tg is not None:
            self._tg.start_soon(self._run, self._generation)
