"""The Redis broker: Redis pub/sub through the `redis` package's ``redis.asyncio``.

Two Redis connections per process, whatever the number of subscriptions:

- a writer: ``publish`` only queues (bounded; past the bound messages are dropped and
  counted, the publisher never waits on Redis), and one task sends the queue in pipelined
  batches, so a burst costs one round trip per batch;
- a reader: one pub/sub connection carries every channel this process listens to; each
  ``subscribe()`` waits until Redis confirmed the SUBSCRIBE, so a message published after it
  returns is seen.

When Redis goes away (a restart, a network cut) the reader reconnects with exponential
backoff and subscribes again to every channel; ``ready`` is false meanwhile and
``wait_ready()`` waits for it. Pub/sub keeps no history: what was published while a process
was cut off is lost (the cluster layer's heartbeats and request timeouts are built for
that). A batch the writer could not send is dropped, logged and counted in ``dropped``;
messages queued meanwhile go out once Redis is back.

``redis.asyncio`` needs an asyncio loop: under trio the Redis side runs on one in a thread of
its own (see ``_bridge``), with the same behaviour.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rooms._retry import Backoff
from rooms.brokers._bridge import Host, asyncio_host
from rooms.brokers.base import queue_bound
from rooms.exceptions import BrokerError

logger = logging.getLogger("rooms.brokers")

T = TypeVar("T")

_BATCH = 512  # messages per pipelined write or per hand-over from the reader
_CLOSE_GRACE = 2.0  # seconds a closing broker spends sending what is queued
_COMMAND_TIMEOUT = 5.0  # the longest execute() waits on Redis before TimeoutError
_POLL = 0.5  # the longest a call into the Redis side waits (see _bridge: calls must be short)


def _import_redis() -> Any:
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ImportError(
            "the redis broker needs the 'redis' extra: pip install \"rooms[redis]\""
        ) from exc
    return redis.asyncio


class RedisBroker:
    """Broker over Redis pub/sub. ``url`` is any URL ``redis.asyncio.from_url`` takes
    (``redis://``, ``rediss://`` for TLS, ``unix://``); ``client_options`` go to it too.

    ``buffer`` bounds the outgoing queue and each subscription's queue. ``dropped`` counts
    messages lost (a full queue, a batch Redis did not take), ``reconnects`` the times the
    reader had to reconnect.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        buffer: int = 10_000,
        max_backoff: float = 5.0,
        connect_timeout: float = 5.0,
        **client_options: Any,
    ) -> None:
        _import_redis()  # fail here, with the fix, rather than when the server starts
        self.url = url
        self.buffer = buffer
        self._link = _Link(url, buffer, max_backoff, connect_timeout, client_options)
        self._dropped = 0
        self._open = False
        self._stack: AsyncExitStack | None = None
        self._host: Host | None = None
        self._out: MemoryObjectSendStream[tuple[str, bytes]] | None = None
        self._out_rx: MemoryObjectReceiveStream[tuple[str, bytes]] | None = None
        self._writer_done: anyio.Event | None = None
        self._channels: dict[str, _Channel] = {}

    # ------------------------------------------------------------------ state

    @property
    def dropped(self) -> int:
        return self._dropped + self._link.dropped

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def ready(self) -> bool:
        """Connected, and subscribed to every channel a ``subscribe()`` asked for."""
        return self._open and self._link.ready

    async def wait_ready(self) -> None:
        """Wait until ``ready`` (after a Redis restart: reconnected and resubscribed)."""
        while not await self._call(self._link.wait_ready, _POLL):
            pass

    async def execute(self, func: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``await func(client)`` with this broker's ``redis.asyncio.Redis`` client, on
        its event loop; for stores that keep data in Redis beside the broker."""
        return await self._call(self._link.execute, func)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> RedisBroker:
        if self._open:
            raise BrokerError("expected a closed broker to open, got an open one")
        try:
            async with AsyncExitStack() as stack:
                self._host = await stack.enter_async_context(asyncio_host())
                await self._host.start(self._link.run)
                self._stack = await self._start_tasks(stack)
        except BaseExceptionGroup as group:
            self._host = None
            raise _sole(group) from None
        except BaseException:
            self._host = None
            raise
        self._open = True
        return self

    async def _start_tasks(self, stack: AsyncExitStack) -> AsyncExitStack:
        out, out_rx = anyio.create_memory_object_stream[tuple[str, bytes]](queue_bound(self.buffer))
        self._out, self._out_rx = out, out_rx
        self._writer_done = done = anyio.Event()
        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(self._write, out_rx, done)
        tg.start_soon(self._pump)
        stack.callback(tg.cancel_scope.cancel)
        return stack.pop_all()

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._open:
            return
        self._open = False
        assert self._out and self._out_rx and self._stack and self._writer_done
        self._out.close()  # the writer sends what is queued, then ends
        try:
            await self._final_flush(self._out_rx, self._writer_done)
        finally:
            # Outside the shield: these scopes were entered outside it too (in __aenter__).
            stack, self._stack = self._stack, None
            try:
                await stack.aclose()
            finally:
                self._host = None  # calls now say "closed" instead of reaching a dead loop

    async def _final_flush(
        self, out_rx: MemoryObjectReceiveStream[tuple[str, bytes]], writer_done: anyio.Event
    ) -> None:
        # Shielded: a server closes its broker while being cancelled, and its goodbye (the
        # last thing it published) must still go out. The writer may be cancelled already:
        # what it left is sent from here.
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(_CLOSE_GRACE):
                await writer_done.wait()
                leftovers = _take_batch(out_rx, [])
                if leftovers:
                    await self._call(self._link.publish, leftovers)
            out_rx.close()
            for channel in self._channels.values():
                for stream in channel.streams:
                    stream.close()  # ends each subscriber's iteration
            self._channels.clear()
            with anyio.move_on_after(1):
                await self._call(self._link.close)

    # ------------------------------------------------------------------ publishing

    async def publish(self, channel: str, message: bytes) -> None:
        if not self._open or self._out is None:
            raise BrokerError("expected an open broker (async with broker), got a closed one")
        if not isinstance(message, bytes):
            raise TypeError(f"expected bytes, got {type(message).__name__}")
        try:
            self._out.send_nowait((channel, message))
        except anyio.WouldBlock:
            self._drop(f"channel {channel}: the outgoing queue is full ({self.buffer})")
        await anyio.lowlevel.checkpoint()

    async def _write(
        self, out_rx: MemoryObjectReceiveStream[tuple[str, bytes]], done: anyio.Event
    ) -> None:
        try:
            async for first in out_rx:
                await self._call(self._link.publish, _take_batch(out_rx, [first]))
        finally:
            done.set()

    # ------------------------------------------------------------------ subscribing

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        if not self._open:
            raise BrokerError("expected an open broker (async with broker), got a closed one")
        send, receive = anyio.create_memory_object_stream[bytes](queue_bound(self.buffer))
        entry = self._channels.get(channel)
        first = entry is None
        if entry is None:
            entry = self._channels[channel] = _Channel()
        entry.streams.add(send)
        try:
            with send, receive:
                if first:
                    try:
                        await self._call(self._link.subscribe, channel)
                    finally:
                        entry.confirmed.set()  # waiters go on either way (and check below)
                else:
                    await entry.confirmed.wait()
                    if self._channels.get(channel) is not entry:
                        raise BrokerError(f"expected Redis to confirm SUBSCRIBE {channel}")
                yield receive
        finally:
            entry.streams.discard(send)
            if not entry.streams and self._channels.get(channel) is entry:
                del self._channels[channel]
                if self._open:
                    with anyio.move_on_after(_CLOSE_GRACE, shield=True):
                        await self._call(self._link.unsubscribe, channel)

    async def _pump(self) -> None:
        """Hand what the reader received to each local subscription of its channel."""
        while True:
            try:
                batch = await self._call(self._link.take, _POLL)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return  # the link is closing
            for channel, message in batch:
                entry = self._channels.get(channel)
                for stream in entry.streams if entry else ():
                    try:
                        stream.send_nowait(message)
                    except anyio.WouldBlock:
                        self._drop(f"channel {channel}: a subscriber is full")
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass  # that subscription is ending

    # ------------------------------------------------------------------ helpers

    async def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._host is None:
            raise BrokerError("expected an open broker (async with broker), got a closed one")
        return await self._host.call(func, *args)

    def _drop(self, why: str) -> None:
        self._dropped += 1
        _log_drop(self._dropped + self._link.dropped, why)


@dataclass(eq=False)
class _Channel:
    """This process's subscriptions to one channel: one Redis SUBSCRIBE for all of them."""

    streams: set[MemoryObjectSendStream[bytes]] = field(default_factory=set)
    confirmed: anyio.Event = field(default_factory=anyio.Event)


def _take_batch(
    stream: MemoryObjectReceiveStream[tuple[str, bytes]], batch: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """``batch`` topped up, without waiting, with what ``stream`` holds (up to _BATCH)."""
    while len(batch) < _BATCH:
        try:
            batch.append(stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            break
    return batch


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a task group wrapped (a failed start), or the group itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _log_drop(count: int, why: str) -> None:
    # The first loss, then every thousandth: a flood of identical lines helps nobody.
    if count == 1 or count % 1000 == 0:
        logger.warning("redis broker: message dropped (%d so far): %s", count, why)


class _Link:
    """The Redis side, run on an asyncio loop: the client, the pub/sub reader and its
    reconnects. Its methods are called through the host, in batches."""

    def __init__(
        self,
        url: str,
        buffer: int,
        max_backoff: float,
        connect_timeout: float,
        options: dict[str, Any],
    ) -> None:
        self.url = url
        self.buffer = buffer
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.options = options
        self.dropped = 0
        self.reconnects = 0
        self.ready = False
        self.client: Any = None
        self.pubsub: Any = None
        self.channels: set[str] = set()
        # A channel of our own keeps the pub/sub connection in subscribed mode from the start.
        self.own = f"rooms.broker.{os.getpid()}.{id(self):x}"
        self._confirmed: dict[str, anyio.Event] = {}
        self._ready_event: anyio.Event | None = None  # made on the host loop, in run()
        self._generation = 0  # pub/sub reconnects seen; the writer's pool follows it
        self._written_generation = 0
        # What the reader received, for take(). A deque and an event rather than a memory
        # stream: take() waits with a timeout, and a receive cancelled by its timeout just
        # as an item arrives could lose that item; an event carries nothing to lose.
        self._inbox: deque[tuple[str, bytes]] = deque()
        self._arrived: anyio.Event | None = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._error: BaseException | None = None
        self._closing = False
        self._sub_client: Any = None
        self._reader: anyio.CancelScope | None = None
        self._reader_done: anyio.Event | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        aioredis = _import_redis()
        self._closing, self.ready, self.channels = False, False, set()  # a reopened broker
        self._inbox.clear()
        self._ready_event = anyio.Event()
        self._errors = (aioredis.RedisError, OSError)
        self._arrived = anyio.Event()
        options = {"socket_connect_timeout": self.connect_timeout, "socket_timeout": 10.0}
        self.client = aioredis.Redis.from_url(self.url, **{**options, **self.options})
        # The pub/sub connection idles as long as nobody publishes: no read timeout on it
        # (older redis-py applies socket_timeout to blocking reads too).
        self._sub_client = aioredis.Redis.from_url(
            self.url, **{**options, **self.options, "socket_timeout": None}
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read_forever)
                with anyio.move_on_after(self.connect_timeout):
                    await self._ready.wait()
                if self.ready:
                    task_status.started()
                    await anyio.sleep_forever()
                tg.cancel_scope.cancel()
            raise BrokerError(
                f"expected a Redis server at {self.url}, got "
                + (f"{type(self._error).__name__}: {self._error}" if self._error else "no answer")
                + f" within {self.connect_timeout} s"
            )
        finally:
            self._closing = True
            self._arrived.set()
            if self._error is not None and not self.ready:
                # A failed start: nobody will call close().
                with anyio.move_on_after(1, shield=True):
                    await self.close()

    @property
    def _ready(self) -> anyio.Event:
        assert self._ready_event is not None, "the link is not running"
        return self._ready_event

    # ------------------------------------------------------------------ reading

    async def _connect(self) -> None:
        self.pubsub = self._sub_client.pubsub()
        # A subscribe() still waiting keeps its event: this SUBSCRIBE confirms it too.
        for channel in {self.own, *self.channels} - self._confirmed.keys():
            self._confirmed[channel] = anyio.Event()
        await self.pubsub.subscribe(*self._confirmed)

    async def _close_pubsub(self) -> None:
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*self._errors):  # the connection may be gone already
                await pubsub.aclose()

    async def _read_forever(self) -> None:
        self._reader_done = done = anyio.Event()
        try:
            with anyio.CancelScope() as self._reader:
                await self._read_and_reconnect()
        finally:
            done.set()

    async def _read_and_reconnect(self) -> None:
        backoff = Backoff(0.05, self.max_backoff)
        connected = False
        while not self._closing:
            try:
                if not connected:
                    await self._connect()
                    connected = True
                    backoff.reset()
                await self._read()
            except Exception as exc:
                if self._closing:
                    return  # close() pulled the connection from under the reader
                if not isinstance(exc, self._errors):
                    raise
                self._error = exc
                if connected:
                    connected = False
                    self.reconnects += 1
                    self._lost(exc)
                else:
                    logger.debug("redis broker: connecting to %s failed: %s", self.url, exc)
                await self._close_pubsub()
                await backoff.wait()

    def _lost(self, exc: BaseException) -> None:
        self.ready = False
        self._ready_event = anyio.Event()
        self._generation += 1
        logger.warning("redis broker: lost %s (%s); reconnecting", self.url, exc)

    async def _read(self) -> None:
        assert self._arrived is not None and self.pubsub is not None
        pubsub = self.pubsub
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind, channel = message["type"], as_text(message["channel"])
            if kind == "subscribe" and channel == self.own and channel not in self._confirmed:
                # The client reconnected by itself (its own retries) and resubscribed.
                self.reconnects += 1
                self._generation += 1
            if kind == "message":
                if channel == self.own:
                    continue
                if 0 < self.buffer <= len(self._inbox):
                    self.dropped += 1
                    _log_drop(self.dropped, f"channel {channel}: the reader's queue is full")
                else:
                    self._inbox.append((channel, message["data"]))
                    self._arrived.set()
            elif kind == "subscribe":
                event = self._confirmed.pop(channel, None)
                if event is not None:
                    event.set()
                if not self._confirmed and not self.ready:
                    self.ready = True
                    self._ready.set()
                    if self.reconnects:
                        logger.warning("redis broker: %s is back; resubscribed", self.url)

    # ------------------------------------------------------------------ called through the host

    async def take(self, timeout: float) -> list[tuple[str, bytes]]:
        """What the reader received, waiting up to ``timeout`` for the first message; raises
        EndOfStream once closing."""
        assert self._arrived is not None
        if not self._inbox:
            with anyio.move_on_after(timeout):
                await self._arrived.wait()
        if self._closing:
            raise anyio.EndOfStream
        inbox = self._inbox
        if not inbox:
            return []
        self._arrived = anyio.Event()
        batch = [inbox.popleft() for _ in range(min(len(inbox), _BATCH))]
        if inbox:
            self._arrived.set()
        return batch

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        event = self._confirmed[channel] = anyio.Event()
        try:
            with anyio.fail_after(self.connect_timeout):
                if self.ready:
                    await self.pubsub.subscribe(channel)
                # else: the reconnect subscribes to it (it is in self.channels already)
                await event.wait()
        except (TimeoutError, *self._errors) as exc:  # type: ignore[misc]
            self.channels.discard(channel)
            self._confirmed.pop(channel, None)
            raise BrokerError(
                f"expected Redis at {self.url} to confirm SUBSCRIBE {channel}, "
                f"got {type(exc).__name__}: {exc}"
            ) from exc

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        self._confirmed.pop(channel, None)
        pubsub = self.pubsub
        if pubsub is None or not self.ready:
            return  # no connection: nothing to undo, and a reconnect will not resubscribe
        try:
            await pubsub.unsubscribe(channel)
        except Exception as exc:  # cleanup must not fail: closing the connection also undoes it
            logger.debug("redis broker: UNSUBSCRIBE %s failed: %r", channel, exc)

    async def publish(self, batch: list[tuple[str, bytes]]) -> None:
        if self._written_generation != self._generation:
            # The reader saw Redis go away: the pool's idle connections are dead too.
            self._written_generation = self._generation
            # (Idle ones only: the pub/sub connection comes from the same pool.)
            await self.client.connection_pool.disconnect(inuse_connections=False)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for channel, message in batch:
                    pipe.publish(channel, message)
                await pipe.execute()
        except self._errors as exc:
            # At most once: a batch is not retried (Redis may have taken part of it).
            self.dropped += len(batch)
            _log_drop(self.dropped, f"{len(batch)} message(s) not sent to {self.url}: {exc}")
            # Let the queue fill (bounded) rather than spin; short, as every call here is.
            await anyio.sleep(0.05)
            with anyio.move_on_after(_POLL):
                await self._ready.wait()

    async def wait_ready(self, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            await self._ready.wait()
        return self.ready

    async def close(self) -> None:
        """Close the connections (the broker calls this last, after its final flush)."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()  # a waiting take() ends at once
        if self._reader is not None and self._reader_done is not None:
            # Stop the reader first: on a connection closed under it, the client would
            # reconnect by itself (and leak that connection).
            self._reader.cancel()
            await self._reader_done.wait()
        await self._close_pubsub()
        for client in (self.client, self._sub_client):
            with contextlib.suppress(*self._errors):  # already gone is fine
                await client.aclose()

    async def execute(self, func: Callable[[Any], Awaitable[T]]) -> T:
        # Bounded here, on the host loop, where cancelling works (see _bridge).
        with anyio.fail_after(_COMMAND_TIMEOUT):
            return await func(self.client)


def as_text(value: Any) -> str:
    """A Redis reply (bytes, as redis-py returns them by default) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
