"""The Broker protocol: moves bytes between processes, nothing more.

The adapter owns the cluster protocol (what the bytes mean); a broker only carries them.
Every broker must pass :func:`rooms.testing.check_broker`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable


@runtime_checkable
class Broker(Protocol):
    """Publish/subscribe of byte messages on named channels.

    - ``async with broker:`` connects, and on exit disconnects and ends every subscription.
    - ``await broker.publish(channel, message)`` delivers ``message`` to every subscription to
      ``channel`` that exists when the broker sends it, in any process sharing the backend,
      including this process's own. A broker may queue it and return first (so a
      subscription made right after may or may not see it); it keeps each publisher's order
      across all channels. There is no history: a later subscriber does not see it.
    - ``async with broker.subscribe(channel) as messages: async for m in messages`` receives,
      in the order each publisher published. Once ``subscribe()`` has entered, whatever is
      published after is seen. Leaving the block always unsubscribes.
    - Messages one subscriber could not take (a full buffer, a lost connection) are dropped,
      logged and counted in ``broker.dropped``; a publisher never blocks on a slow subscriber.
    """

    @property
    def dropped(self) -> int: ...

    async def __aenter__(self) -> Broker: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def publish(self, channel: str, message: bytes) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


def queue_bound(buffer: int) -> float:
    """A memory stream's size for a broker's ``buffer`` setting (0 or less: unbounded)."""
    return buffer if buffer > 0 else math.inf
