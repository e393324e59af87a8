"""Logging helpers: rate-limited lines for input a hostile client can repeat at will.

Loggers (documented in docs/guides/logging.md): ``rooms`` (handlers, namespaces, lifecycle),
``rooms.engine`` (sessions and transports), ``rooms.input`` (what clients sent that broke
the protocol: INFO, rate-limited), ``rooms.cluster``, ``rooms.brokers``, ``rooms.recovery``,
``rooms.mailbox``, ``rooms.presence``, ``rooms.admin``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

input_logger = logging.getLogger("rooms.input")


class _Window:
    __slots__ = ("count", "held", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.held = 0


class Throttled:
    """Lets at most ``burst`` lines of each kind (its message template) through per
    ``period`` seconds; the first line let through after holding some back says how many.

    Wall-clock time on purpose: this only shapes logs, and may run outside any event loop.
    Templates are constants in the code, so the per-kind state is bounded.
    """

    __slots__ = ("_clock", "_windows", "burst", "logger", "period")

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 20,
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.period = period
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        _ALL.append(self)

    def log(self, level: int, message: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self._clock()
        window = self._windows.get(message)
        if window is None or now - window.start >= self.period:
            held = window.held if window is not None else 0
            window = self._windows[message] = _Window(now)
            window.held = held
        window.count += 1
        if window.count > self.burst:
            window.held += 1
            return
        if window.held:
            message += " (%d similar line(s) held back)"
            args = (*args, window.held)
            window.held = 0
        self.logger.log(level, message, *args)

    def reset(self) -> None:
        self._windows.clear()


_ALL: list[Throttled] = []


def reset_throttles() -> None:
    """Forget what every throttle has let through (tests start each with a clean slate)."""
    for throttle in _ALL:
        throttle.reset()


bad_input = Throttled(input_logger)
"""Protocol violations from clients (INFO): expected X, got Y."""
