"""Exponential backoff for whatever retries a dependency that is away (Redis, a store)."""

from __future__ import annotations

import anyio


class Backoff:
    """Delays that double from ``first`` up to ``most``; ``reset()`` after a success."""

    __slots__ = ("delay", "first", "most")

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    async def wait(self) -> None:
        """Sleep the current delay, then double it (up to ``most``)."""
        delay, self.delay = self.delay, min(self.delay * 2, self.most)
        await anyio.sleep(delay)
