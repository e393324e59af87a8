"""A minimal websocket and Socket.IO client for attacking a live server on purpose.

Hostile tests need what a real client library will not do: announce attachments and never
send them, stream frames past every bound, connect with a tiny receive buffer and then stop
reading, or drop the TCP connection without a close frame. So this speaks RFC 6455, Engine.IO
v4 and Socket.IO v5 itself, over an anyio socket stream, with every step explicit.

Used by tests/edges/test_memory_live.py and benchmarks/soak.py.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import anyio
import anyio.abc
import httpx

HOST = "127.0.0.1"
PATH = "/socket.io/"

# Opcodes (RFC 6455 §5.2).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# A zero masking key: the frame is still a masked client frame as RFC 6455 demands, and
# multi-megabyte hostile payloads need no XOR pass in Python. No server can tell (the key is
# only required to be unpredictable, to protect proxies, not the server).
ZERO_MASK = b"\x00\x00\x00\x00"


class Closed(Exception):
    """The connection ended: ``code`` is the server's close code, None if it dropped the
    connection without a close frame (or the read was reset)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}" if code is not None else "dropped")
        self.code = code


class WebSocket:
    """One client websocket: frames in and out, nothing else."""

    def __init__(self, stream: anyio.abc.SocketStream, rest: bytes) -> None:
        self.stream = stream
        self._buffer = bytearray(rest)
        self.close_code: int | None = None
        self.ended = False  # a close frame came, or the connection dropped
        # A reader answering pings or a close may send while another task streams frames.
        self._sending = anyio.Lock()

    @classmethod
    async def connect(
        cls, port: int, query: str, *, rcvbuf: int | None = None, timeout: float = 10.0
    ) -> WebSocket:
        """Open the TCP connection (with ``SO_RCVBUF`` set before connecting when given, so
        the window the kernel advertises stays small) and do the opening handshake."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            with anyio.fail_after(timeout):
                try:
                    sock.connect((HOST, port))
                except BlockingIOError:
                    await anyio.wait_writable(sock)
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        raise OSError(error, os.strerror(error)) from None
            stream = await anyio.abc.SocketStream.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        try:
            with anyio.fail_after(timeout):
                rest = await _handshake(stream, port, query)
        except BaseException:
            await stream.aclose()
            raise
        return cls(stream, rest)

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.send_frame(TEXT, data.encode())
        else:
            await self.send_frame(BINARY, data)

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        async with self._sending:
            await self.stream.send(header + ZERO_MASK + payload)

    async def receive(self) -> str | bytes:
        """The next data message; answers websocket pings; raises :class:`Closed`."""
        parts: list[bytes] = []
        first = TEXT
        while True:
            fin, opcode, payload = await self._frame()
            if opcode == PING:
                await self._send_quietly(PONG, payload)
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.ended = True
                await self._send_quietly(CLOSE, payload[:2])  # the closing handshake
                raise Closed(self.close_code if self.close_code is not None else 1005)
            if opcode != CONTINUATION:
                first = opcode
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                return data.decode() if first == TEXT else data

    async def _frame(self) -> tuple[bool, int, bytes]:
        head = await self._read(2)
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self._read(8))[0]
        if head[1] & 0x80:  # a masked server frame would be a server bug; unmask anyway
            mask = await self._read(4)
            raw = await self._read(size)
            return fin, opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
        return fin, opcode, await self._read(size)

    async def _read(self, count: int) -> bytes:
        buffer = self._buffer
        while len(buffer) < count:
            try:
                chunk = await self.stream.receive(max(65536, count - len(buffer)))
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,  # closed by us (abort) while reading
                OSError,
            ):
                self.ended = True
                raise Closed(None) from None
            buffer += chunk
        data = bytes(buffer[:count])
        del buffer[:count]
        return data

    async def _send_quietly(self, opcode: int, payload: bytes) -> None:
        # The server may already have dropped the connection.
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.send_frame(opcode, payload)

    async def close(self, code: int = 1000) -> None:
        """A polite close frame (if the connection still takes one), then the socket."""
        if not self.ended:
            with anyio.move_on_after(1):
                await self._send_quietly(CLOSE, struct.pack("!H", code))
        await self.stream.aclose()

    async def abort(self) -> None:
        """Drop the TCP connection without a close frame (a reset: SO_LINGER 0)."""
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
        with suppress(OSError):  # already gone: closing is all that is left
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


async def _handshake(stream: anyio.abc.SocketStream, port: int, query: str) -> bytes:
    request = (
        f"GET {PATH}?{query} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send(request.encode())
    response = bytearray()
    while b"\r\n\r\n" not in response:
        try:
            response += await stream.receive()
        except anyio.EndOfStream:
            raise Closed(None) from None
        if len(response) > 65536:
            raise AssertionError("expected an HTTP response head, got 64 KiB without one")
    head, _, rest = bytes(response).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise AssertionError(f"expected 101 Switching Protocols, got {status.decode()!r}")
    return rest


# ------------------------------------------------------------------------------- Socket.IO


def placeholders(count: int) -> str:
    return ",".join(f'{{"_placeholder":true,"num":{n}}}' for n in range(count))


class SocketIO:
    """Engine.IO v4 + Socket.IO v5 over one :class:`WebSocket`, main namespace only.

    Nothing reads in the background unless :meth:`serve` runs: a test decides whether this
    client keeps up (answers pings, takes events) or stops reading altogether.
    """

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.sid = ""
        self.events: list[list[Any]] = []  # events received by serve(), in order
        self.on_event: Callable[[list[Any]], None] | None = None
        self._acks: dict[int, list[Any]] = {}
        self._ack_events: dict[int, anyio.Event] = {}
        self._next_id = 0

    @classmethod
    async def open(
        cls, port: int, *, rcvbuf: int | None = None, connect: bool = True, timeout: float = 10.0
    ) -> SocketIO:
        """A websocket session; with ``connect``, the main namespace CONNECTed as well."""
        ws = await WebSocket.connect(port, "EIO=4&transport=websocket", rcvbuf=rcvbuf)
        client = cls(ws)
        try:
            with anyio.fail_after(timeout):
                opened = await ws.receive()
                if not (isinstance(opened, str) and opened.startswith("0{")):
                    raise AssertionError(f"expected the Engine.IO open packet, got {opened!r}")
                if connect:
                    await ws.send("40")
                    reply = await client.next_packet()
                    if not reply.startswith("0{"):
                        raise AssertionError(f"expected a CONNECT reply, got {reply[:80]!r}")
                    client.sid = json.loads(reply[1:])["sid"]
        except BaseException:
            await ws.abort()
            raise
        return client

    async def next_packet(self) -> str:
        """The next Socket.IO packet (text), answering Engine.IO pings on the way."""
        while True:
            data = await self.ws.receive()
            if not isinstance(data, str):
                raise AssertionError(f"expected a text frame, got {len(data)} binary bytes")
            if data == "2":
                await self.ws.send("3")
                continue
            if data.startswith("4"):
                return data[1:]
            if data.startswith("1"):  # Engine.IO CLOSE
                raise Closed(None)
            # "6" (noop) and anything else carries nothing for us

    async def call_inline(self, event: str, *args: Any) -> list[Any]:
        """Emit with an ack and read until it comes, without :meth:`serve` running; events
        that arrive meanwhile are kept in ``events``."""
        ack_id = self._take_id()
        await self.ws.send(f"42{ack_id}" + json.dumps([event, *args], separators=(",", ":")))
        while True:
            packet = await self.next_packet()
            if self._handle(packet) == ack_id:
                return self._acks.pop(ack_id)

    async def call(self, event: str, *args: Any, timeout: float = 10.0) -> list[Any]:
        """Emit with an ack while :meth:`serve` reads; the ack's arguments."""
        ack_id = self._take_id()
        done = self._ack_events[ack_id] = anyio.Event()
        try:
            await self.ws.send(f"42{ack_id}" + json.dumps([event, *args], separators=(",", ":")))
            with anyio.fail_after(timeout):
                await done.wait()
        finally:
            self._ack_events.pop(ack_id, None)
        return self._acks.pop(ack_id)

    async def serve(self) -> None:
        """Read until the connection ends: pong every ping, keep events, resolve acks.
        Returns once the server closed or dropped the connection."""
        try:
            while True:
                ack_id = self._handle(await self.next_packet())
                if ack_id is not None and (done := self._ack_events.get(ack_id)) is not None:
                    done.set()
        except Closed:
            return

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _handle(self, packet: str) -> int | None:
        """Keep an event or an ack; returns the ack id of an ack."""
        kind, body = packet[:1], packet[1:]
        if kind == "2":  # EVENT on "/"
            args = json.loads(body[body.index("[") :])
            if self.on_event is not None:
                self.on_event(args)
            else:
                self.events.append(args)
        elif kind == "3":  # ACK on "/": 3<id>[...]
            start = body.index("[")
            ack_id = int(body[:start])
            self._acks[ack_id] = json.loads(body[start:])
            return ack_id
        return None

    async def close(self) -> None:
        await self.ws.close()


# ------------------------------------------------------------------------------- polling


async def polling_cycle(http: httpx.AsyncClient, base: str, room: str) -> None:
    """One long-polling session: handshake, CONNECT, join ``room`` (acknowledged), then a
    namespace DISCONNECT and an Engine.IO CLOSE, as socket.io-client sends on disconnect()."""
    url = f"{base}{PATH}?EIO=4&transport=polling"
    opened = (await http.get(url)).text
    if not opened.startswith("0{"):
        raise AssertionError(f"expected the Engine.IO open packet, got {opened[:80]!r}")
    url += "&sid=" + json.loads(opened[1:])["sid"]
    await _post(http, url, "40")
    await _poll_for(http, url, "40")
    await _post(http, url, f'421["join",{json.dumps(room)}]')
    await _poll_for(http, url, "431[")
    await _post(http, url, "41\x1e1")


async def _post(http: httpx.AsyncClient, url: str, body: str) -> None:
    response = await http.post(url, content=body.encode())
    if response.status_code != 200:
        raise AssertionError(f"expected 200 to a POST, got {response.status_code}")


async def _poll_for(http: httpx.AsyncClient, url: str, prefix: str) -> None:
    """GET until an Engine.IO packet starting with ``prefix`` comes, answering pings."""
    for _ in range(20):  # a ping or a noop may come first; never more than a few
        response = await http.get(url)
        if response.status_code != 200:
            raise AssertionError(f"expected 200 to a poll, got {response.status_code}")
        packets = response.text.split("\x1e")
        if "2" in packets:
            await _post(http, url, "3")
        if any(p.startswith(prefix) for p in packets):
            return
    raise AssertionError(f"expected a packet starting {prefix}, got 20 polls without it")
