"""The embedded broker: processes are simulated by brokers sharing one in-memory hub.

The default for a single process. Several ``MemoryBroker(hub=...)`` instances on one hub
behave like processes on one Redis, which is how the conformance check and cluster tests
exercise the cluster protocol without a network.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from rooms.brokers.base import queue_bound
from rooms.exceptions import BrokerError

logger = logging.getLogger("rooms.brokers")


class Hub:
    """Channels and their subscribers, shared by the brokers of one simulated cluster."""

    def __init__(self) -> None:
        self.channels: dict[str, set[MemoryObjectSendStream[bytes]]] = {}


_DEFAULT_HUB = Hub()


class MemoryBroker:
    """In-process broker. ``buffer`` bounds each subscription's queue (messages past it are
    dropped and counted)."""

    def __init__(self, hub: Hub | None = None, buffer: int = 10_000) -> None:
        self.hub = hub if hub is not None else _DEFAULT_HUB
        self.buffer = buffer
        self.dropped = 0
        self._open = False
        self._mine: set[MemoryObjectSendStream[bytes]] = set()

    async def __aenter__(self) -> MemoryBroker:
        self._open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._open = False
        for stream in list(self._mine):
            stream.close()  # ends the subscriber's iteration

    async def publish(self, channel: str, message: bytes) -> None:
        if not self._open:
            raise BrokerError("expected an open broker (async with broker), got a closed one")
        if not isinstance(message, bytes):
            raise TypeError(f"expected bytes, got {type(message).__name__}")
        for stream in list(self.hub.channels.get(channel, ())):
            try:
                stream.send_nowait(message)
            except anyio.WouldBlock:
                self.dropped += 1
                logger.warning("channel %s: a subscriber is full; message dropped", channel)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # that subscription is ending
        await anyio.lowlevel.checkpoint()

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        if not self._open:
            raise BrokerError("expected an open broker (async with broker), got a closed one")
        send, receive = anyio.create_memory_object_stream[bytes](queue_bound(self.buffer))
        subscribers = self.hub.channels.setdefault(channel, set())
        subscribers.add(send)
        self._mine.add(send)
        try:
            with send, receive:
                yield receive
        finally:
            subscribers.discard(send)
            self._mine.discard(send)
            if not subscribers and self.hub.channels.get(channel) is subscribers:
                del self.hub.channels[channel]
