"""In-process testing: drive a rooms app over ASGI with no network, on asyncio or trio.

::

    async with rooms.testing.TestClient(app) as client:      # runs ASGI lifespan
        await client.connect(auth={"token": "t"})
        assert await client.call("echo", 1) == 1
        event, args = await client.receive()

The client speaks Engine.IO v4 over the websocket transport and Socket.IO v5 with the same
codecs the server uses; it answers pings by itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rooms._types import ASGIApp, Message
from rooms.acks import ack_args, ack_value
from rooms.exceptions import AckTimeout, ConnectionRefused, Disconnected
from rooms.protocol import engineio
from rooms.protocol import socketio as sio

__all__ = ["Lifespan", "ManualClock", "TestClient", "check_broker"]


class ManualClock:
    """Time that moves only when a test says so: pass it as ``rooms.Server(clock=...)``,
    then ``advance()`` it and call ``server.engine.heartbeat.tick()`` to act on what fell
    due (pings, ping timeouts, connect and attachment deadlines), with no real waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Lifespan:
    """Run an ASGI app's lifespan (startup on enter, shutdown on exit)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Lifespan:
        to_app, app_receive = anyio.create_memory_object_stream[Message](4)
        app_send, from_app = anyio.create_memory_object_stream[Message](4)
        for stream in (to_app, app_receive, app_send, from_app):
            self._stack.callback(stream.close)
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._to_app, self._from_app = to_app, from_app

        async def receive() -> Message:
            return await app_receive.receive()

        async def send(message: Message) -> None:
            await app_send.send(message)

        scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

        async def run() -> None:
            await self.app(scope, receive, send)

        tg.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        message = await from_app.receive()
        if message["type"] != "lifespan.startup.complete":
            await self._stack.aclose()  # the app's lifespan ends; nothing is left behind
            raise RuntimeError(f"expected lifespan.startup.complete, got {message}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._to_app.send({"type": "lifespan.shutdown"})
        with anyio.fail_after(10):
            await self._from_app.receive()
        await self._stack.aclose()


class TestClient:
    """A Socket.IO client talking to ``app`` in process over the websocket transport.

    Use one per simulated browser; several can share one app inside ``Lifespan(app)``.
    With ``lifespan=True`` (default) the client runs the app's lifespan itself.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str = "/socket.io/",
        lifespan: bool = True,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        timeout: float = 5.0,
        auto_pong: bool = True,
    ) -> None:
        self.app = app
        self.auto_pong = auto_pong
        self.path = path
        self.headers = headers or {}
        self.query = query or {}
        self.timeout = timeout
        self.lifespan = lifespan
        self.sid: str | None = None
        self.open_packet: dict[str, Any] = {}
        self.namespaces: dict[str, str] = {}  # namespace -> socket id
        self.pids: dict[str, str] = {}  # namespace -> pid, with connection state recovery
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.disconnected = anyio.Event()
        self.close_code: int | None = None
        self.pings = 0
        self._pinged = anyio.Event()
        self.app_done = anyio.Event()  # the app returned from the websocket connection
        self._closed = False  # close() sent the disconnect
        self._reading: anyio.Event | None = None  # set while the client is "not reading"
        self._stack = AsyncExitStack()
        self._decoder = sio.Decoder()
        self._ack_seq = 0
        self._acks: dict[int, MemoryObjectSendStream[list[Any]]] = {}
        self._connects: dict[str, MemoryObjectSendStream[sio.Packet]] = {}
        self._events_in: MemoryObjectSendStream[tuple[str, str, list[Any]]]
        self._events: MemoryObjectReceiveStream[tuple[str, str, list[Any]]]
        self._events_in, self._events = anyio.create_memory_object_stream(math.inf)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> TestClient:
        if self.lifespan:
            await self._stack.enter_async_context(Lifespan(self.app))
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        to_app, self._app_receive = anyio.create_memory_object_stream[Message](math.inf)
        self._app_send, from_app = anyio.create_memory_object_stream[Message](math.inf)
        self._to_app = to_app
        self._from_app = from_app
        for stream in (
            to_app,
            self._app_receive,
            self._app_send,
            from_app,
            self._events_in,
            self._events,
        ):
            self._stack.callback(stream.close)
        query = urlencode({"EIO": "4", "transport": "websocket", **self.query}).encode()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": query,
            "headers": [
                (b"host", b"testserver"),
                *((k.lower().encode(), v.encode()) for k, v in self.headers.items()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        self._tg.start_soon(self._run_app, scope)
        await to_app.send({"type": "websocket.connect"})
        with anyio.fail_after(self.timeout):
            accepted = await from_app.receive()
            if accepted["type"] != "websocket.accept":
                raise ConnectionRefused(f"websocket refused: {accepted}")
            first = await from_app.receive()
        packet = engineio.decode_frame(first.get("text") or b"")
        if packet.type is not engineio.PacketType.OPEN:
            raise AssertionError(f"expected an OPEN packet first, got {first}")
        self.open_packet = json.loads(packet.data)
        self.sid = self.open_packet["sid"]
        self._tg.start_soon(self._reader)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        with anyio.move_on_after(self.timeout):
            await self.app_done.wait()  # let the server finish its side of the close
        self._tg.cancel_scope.cancel()
        await self._stack.aclose()

    async def close(self) -> None:
        """Close the websocket, as a leaving client does, and keep the client object until
        its ``async with`` ends: a test can watch what the server does after its client
        left (handlers still running, say). Idempotent."""
        if not self.disconnected.is_set() and not self._closed:
            self._closed = True
            # As a client closes a websocket session: it closes the websocket (a CLOSE
            # packet is for long-polling), and the ASGI server tells the app.
            await self._to_app.send({"type": "websocket.disconnect", "code": 1000})

    async def _run_app(self, scope: dict[str, Any]) -> None:
        async def receive() -> Message:
            return await self._app_receive.receive()

        async def send(message: Message) -> None:
            while self._reading is not None:  # a client that stopped reading: send blocks
                await self._reading.wait()
            await self._app_send.send(message)

        try:
            await self.app(scope, receive, send)
        finally:
            self.app_done.set()
            # The app is done with this connection: as a dropped TCP connection would,
            # that ends the client's reading (``disconnected``, with no close code).
            self._app_send.close()

    # ------------------------------------------------------------------ wire

    async def _send_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            await self._to_app.send({"type": "websocket.receive", "text": frame})
        else:
            await self._to_app.send({"type": "websocket.receive", "bytes": frame})

    async def send_raw(self, frame: str | bytes) -> None:
        """Send one raw Engine.IO frame (for tests of malformed input)."""
        await self._send_frame(frame)

    async def _send_packet(self, packet: sio.Packet) -> None:
        for part in sio.encode(packet):
            await self._send_frame(engineio.message_frame(part))

    async def _reader(self) -> None:
        try:
            while True:
                message = await self._from_app.receive()
                if message["type"] == "websocket.close":
                    self.close_code = message.get("code", 1000)
                    # Complete the close handshake, as an ASGI server would.
                    await self._to_app.send(
                        {"type": "websocket.disconnect", "code": self.close_code}
                    )
                    break
                data: str | bytes = message.get("text") or message.get("bytes") or b""
                packet = engineio.decode_frame(data)
                if packet.type is engineio.PacketType.PING:
                    self.pings += 1
                    if self.auto_pong:
                        await self._send_frame("3")
                    self._pinged.set()
                    self._pinged = anyio.Event()
                elif packet.type is engineio.PacketType.MESSAGE:
                    decoded = self._decoder.feed(packet.data)
                    if decoded is not None:
                        await self._on_packet(decoded)
                elif packet.type is engineio.PacketType.CLOSE:
                    break
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        finally:
            self.disconnected.set()
            for ack in self._acks.values():
                ack.close()
            for connect in self._connects.values():
                connect.close()
            self._events_in.close()

    async def _on_packet(self, packet: sio.Packet) -> None:
        ptype = packet.type
        if ptype in (sio.PacketType.CONNECT, sio.PacketType.CONNECT_ERROR):
            waiter = self._connects.pop(packet.nsp, None)
            if waiter is not None:
                await waiter.send(packet)
        elif ptype is sio.PacketType.DISCONNECT:
            self.namespaces.pop(packet.nsp, None)
            await self._events_in.send((packet.nsp, "disconnect", ["io server disconnect"]))
        elif ptype is sio.PacketType.ACK:
            stream = self._acks.pop(packet.id or 0, None)
            if stream is not None:
                await stream.send(packet.data)
        elif ptype is sio.PacketType.EVENT:
            event, args = packet.data[0], packet.data[1:]
            handler = self.handlers.get(event)
            if packet.id is not None and handler is not None:
                result = handler(*args)
                await self._send_packet(
                    sio.Packet(sio.PacketType.ACK, packet.nsp, ack_args(result), packet.id)
                )
            else:
                await self._events_in.send((packet.nsp, event, args))

    # ------------------------------------------------------------------ API

    def stop_reading(self) -> None:
        """Simulate a slow consumer: the server's sends to this client block."""
        if self._reading is None:
            self._reading = anyio.Event()

    def resume_reading(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.set()

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Answer server ``emit_with_ack`` calls for ``event`` with ``handler(*args)``."""
        self.handlers[event] = handler

    async def connect(self, namespace: str = "/", auth: dict[str, Any] | None = None) -> str:
        """CONNECT to a namespace; returns the socket id or raises ConnectionRefused."""
        send, receive = anyio.create_memory_object_stream[sio.Packet](1)
        self._connects[namespace] = send
        await self._send_packet(sio.Packet(sio.PacketType.CONNECT, namespace, auth))
        with send, receive, anyio.fail_after(self.timeout):
            try:
                reply = await receive.receive()
            except anyio.EndOfStream:
                raise Disconnected("connection closed before the CONNECT reply") from None
        if reply.type is sio.PacketType.CONNECT_ERROR:
            data = reply.data if isinstance(reply.data, dict) else {"message": reply.data}
            raise ConnectionRefused(data.get("message", ""), data.get("data"))
        self.namespaces[namespace] = reply.data["sid"]
        if "pid" in reply.data:
            self.pids[namespace] = str(reply.data["pid"])
        return str(reply.data["sid"])

    async def disconnect(self, namespace: str = "/") -> None:
        await self._send_packet(sio.Packet(sio.PacketType.DISCONNECT, namespace))
        self.namespaces.pop(namespace, None)

    async def emit(self, event: str, *args: Any, namespace: str = "/") -> None:
        await self._send_packet(sio.Packet(sio.PacketType.EVENT, namespace, [event, *args]))

    async def call(
        self, event: str, *args: Any, namespace: str = "/", timeout: float | None = None
    ) -> Any:
        """Emit with an ack id and return the server's answer (a tuple if several)."""
        self._ack_seq += 1
        ack_id = self._ack_seq
        send, receive = anyio.create_memory_object_stream[list[Any]](1)
        self._acks[ack_id] = send
        await self._send_packet(sio.Packet(sio.PacketType.EVENT, namespace, [event, *args], ack_id))
        with send, receive, anyio.move_on_after(self.timeout if timeout is None else timeout):
            try:
                return ack_value(await receive.receive())
            except anyio.EndOfStream:
                raise Disconnected("connection closed before the ack") from None
        self._acks.pop(ack_id, None)
        raise AckTimeout(f"expected an ack for {event!r}, got none")

    async def receive(
        self, namespace: str = "/", timeout: float | None = None
    ) -> tuple[str, list[Any]]:
        """The next event the server sent on ``namespace``: ``(event, args)``."""
        with anyio.fail_after(self.timeout if timeout is None else timeout):
            while True:
                try:
                    nsp, event, args = await self._events.receive()
                except anyio.EndOfStream:
                    raise Disconnected("connection closed") from None
                if nsp == namespace:
                    return event, args

    async def wait_for_pings(self, count: int, timeout: float | None = None) -> None:
        """Wait until the server has pinged ``count`` times in all."""
        with anyio.fail_after(self.timeout if timeout is None else timeout):
            while self.pings < count:
                await self._pinged.wait()

    async def wait_disconnected(self, timeout: float | None = None) -> None:
        with anyio.fail_after(self.timeout if timeout is None else timeout):
            await self.disconnected.wait()


# ----------------------------------------------------------------------------- brokers

BrokerFactory = Callable[[], Any]
"""Returns a new, unopened broker; all brokers it returns share one backend (one
"cluster"), as processes on one Redis do."""


async def check_broker(factory: BrokerFactory, timeout: float = 5.0) -> None:
    """The conformance check every :class:`rooms.brokers.Broker` must pass.

    Raises AssertionError naming the rule that failed. Run it on asyncio and trio::

        async def test_my_broker_conforms():
            await rooms.testing.check_broker(lambda: MyBroker(url))
    """
    with anyio.fail_after(timeout * 4):
        await _fan_out_and_order(factory, timeout)
        await _channels_are_separate(factory, timeout)
        await _leaving_unsubscribes(factory, timeout)
        await _closing_ends_subscriptions(factory, timeout)


def _require(condition: bool, message: str) -> None:
    # Not `assert`: the check must hold under `python -O` too.
    if not condition:
        raise AssertionError(message)


async def _receive(messages: Any, timeout: float, rule: str) -> bytes:
    with anyio.move_on_after(timeout):
        message: bytes = await messages.__anext__()
        return message
    raise AssertionError(f"{rule}: expected a message within {timeout} s, got none")


async def _fan_out_and_order(factory: BrokerFactory, timeout: float) -> None:
    rule = "every subscriber of a channel, in any process, gets every message, in order"
    payloads = [bytes(range(256)), b"", b"x" * 1_000_000, *(str(n).encode() for n in range(50))]
    async with (
        factory() as a,
        factory() as b,
        a.subscribe("conformance.fan") as on_a,
        b.subscribe("conformance.fan") as on_b,
    ):
        for payload in payloads:
            await a.publish("conformance.fan", payload)
        for messages in (on_a, on_b):
            got = [await _receive(messages, timeout, rule) for _ in payloads]
            _require(got == payloads, f"{rule}: messages differ or are out of order")


async def _channels_are_separate(factory: BrokerFactory, timeout: float) -> None:
    rule = "a subscriber gets only its channel's messages"
    async with factory() as a, factory() as b, b.subscribe("conformance.one") as one:
        await a.publish("conformance.other", b"not for you")
        await a.publish("conformance.one", b"for you")
        got = await _receive(one, timeout, rule)
        _require(got == b"for you", f"{rule}: got {got[:32]!r}")


async def _leaving_unsubscribes(factory: BrokerFactory, timeout: float) -> None:
    rule = "leaving subscribe() unsubscribes; publishing to nobody is fine; no history"
    async with factory() as a, factory() as b, b.subscribe("conformance.sync") as sync:
        async with b.subscribe("conformance.leave") as messages:
            await a.publish("conformance.leave", b"first")
            _require(await _receive(messages, timeout, rule) == b"first", rule)
        await a.publish("conformance.leave", b"after leaving")  # no subscriber: no error
        # publish() may return before the message went out (a broker may queue it): a
        # marker on another channel, after it from the same publisher, says it has.
        await a.publish("conformance.sync", b"sent")
        _require(await _receive(sync, timeout, rule) == b"sent", rule)
        async with b.subscribe("conformance.leave") as again:
            await a.publish("conformance.leave", b"second")
            got = await _receive(again, timeout, rule)
            _require(got == b"second", f"{rule}: a new subscription saw {got!r}")


async def _closing_ends_subscriptions(factory: BrokerFactory, timeout: float) -> None:
    # The subscriber iterates in a task of its own, as a server's receive loop does; the
    # broker is closed by the task that opened it (a broker may run tasks of its own).
    rule = "closing a broker ends its subscriptions' iteration"
    ended = anyio.Event()
    broker = factory()

    async def drain(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with broker.subscribe("conformance.close") as messages:
            task_status.started()
            async for _ in messages:
                pass
        ended.set()

    async with anyio.create_task_group() as tg:
        async with broker:
            await tg.start(drain)
        with anyio.move_on_after(timeout):
            await ended.wait()
        tg.cancel_scope.cancel()
    _require(ended.is_set(), rule)
