"""One raw Engine.IO / Socket.IO exchange against a base URL, written down as a transcript.

A test runs the same scenario against Node's reference servers and against rooms, each
with a :class:`Driver` of its own, and compares the two transcripts. A transcript keeps what
a client can see on the wire: HTTP status, content type, CORS grants and body; websocket
handshake answers, frames and close codes. It leaves out what legitimately differs between
two servers: session ids (replaced by ``<sid>``), header spelling, the order of JSON keys
the reference does not fix, the time things took.

Nothing here waits on a clock for synchronisation: every wait is for a reply or for server
state reported by the app's ``/state`` route, bounded by a deadline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx

from tests.rawclient import Closed, WebSocket

HOST = "127.0.0.1"
DEADLINE = 10.0  # seconds any single step may take before the scenario fails

# The reference closes a websocket with an empty close frame (the client reads 1005, "no
# status"); an ASGI app cannot send one (a close without a code is 1000). Both are a
# normal close that gives no reason.
NORMAL_CLOSES = {1000, 1005}

_SID_FIELD = re.compile(r'"sid":"[^"]*"')

# Where a step running in a task of its own writes (see Driver.spawn).
_step_records: ContextVar[list[tuple[Any, ...]] | None] = ContextVar("step_records", default=None)


@dataclass(frozen=True)
class Target:
    """One server under test: ``name`` is "reference" or "rooms"."""

    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


Record = tuple[Any, ...]


@dataclass
class Driver:
    """Speaks to one target and writes down what it saw, in the order the scenario asks."""

    target: Target
    http: httpx.AsyncClient
    transcript: list[Record] = field(default_factory=list)
    sids: list[str] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)

    async def aclose(self) -> None:
        """Drop every websocket the scenario left open."""
        for ws in self.sockets:
            await ws.abort()

    # ------------------------------------------------------------------ normalising

    def note(self, *record: Any) -> None:
        """Write a record of the scenario's own (a step, a fact it checked)."""
        self.write(record)

    def write(self, record: Record) -> None:
        """Append to the transcript; a step started with :meth:`spawn` writes to its own
        (in its task's context), handed over when the scenario awaits its result."""
        own = _step_records.get()
        (self.transcript if own is None else own).append(record)

    def normalize(self, text: str) -> str:
        for sid in self.sids:
            text = text.replace(sid, "<sid>")
        return _SID_FIELD.sub('"sid":"<sid>"', text)

    # ------------------------------------------------------------------ HTTP

    def query(self, engine: str = "fast", **params: str | None) -> str:
        path = {"fast": "/engine.io/", "slow": "/engine-slow/", "sio": "/socket.io/"}[engine]
        query = {"EIO": "4", "transport": "polling", **params}
        # None removes a parameter the defaults would add.
        text = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
        return f"{path}?{text}"

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        record: bool = True,
    ) -> Record:
        """One HTTP request; the record is ``("http", method, status, type, body, cors)``,
        with status ``"dropped"`` if the server closed the connection without answering."""
        content = body.encode() if isinstance(body, str) else body
        try:
            with anyio.fail_after(DEADLINE):
                response = await self.http.request(
                    method, self.target.url + target, content=content, headers=headers
                )
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException):
                raise
            result: Record = ("http", method, "dropped")
        else:
            # CORS grants mean something only to a cross-origin request, and a grant of
            # credentials only with one of the origin (the reference's CORS middleware
            # grants credentials to every request, its origin allowed or not).
            cors: tuple[tuple[str, str], ...] = ()
            cross_origin = "origin" in {key.lower() for key in (headers or {})}
            if cross_origin and "access-control-allow-origin" in response.headers:
                cors = tuple(
                    sorted(
                        (name, value)
                        for name, value in response.headers.items()
                        if name
                        in ("access-control-allow-origin", "access-control-allow-credentials")
                    )
                )
            kind = response.headers.get("content-type", "").lower().replace(" ", "")
            text = self.normalize(response.content.decode("utf-8", "replace"))
            result = ("http", method, response.status_code, kind, text, cors)
        if record:
            self.write(result)
        return result

    async def get(self, engine: str = "fast", **params: str) -> Record:
        return await self.request("GET", self.query(engine, **params))

    async def post(self, body: bytes | str, engine: str = "fast", **params: str) -> Record:
        return await self.request("POST", self.query(engine, **params), body)

    async def handshake(self, engine: str = "fast", **params: str) -> str:
        """A polling handshake; returns the sid (written down as ``<sid>``)."""
        response = await self.http.get(self.target.url + self.query(engine, **params))
        if response.status_code != 200 or not response.text.startswith("0{"):
            raise AssertionError(
                f"{self.target.name}: expected an open packet, got {response.status_code} "
                f"{response.text[:120]!r}"
            )
        sid: str = json.loads(response.text[1:])["sid"]
        self.sids.append(sid)
        self.write(("open", self.normalize(response.text)))
        return sid

    async def state(self, sid: str, engine: str = "fast") -> dict[str, bool]:
        response = await self.http.get(f"{self.target.url}/state?engine={engine}&sid={sid}")
        return response.json()  # type: ignore[no-any-return]

    async def wait_state(
        self, sid: str, engine: str = "fast", timeout: float = DEADLINE, **expected: bool
    ) -> None:
        """Wait (polling the app's /state route) until the session's state matches."""
        with anyio.fail_after(timeout):
            while True:
                state = await self.state(sid, engine)
                if all(state[key] == value for key, value in expected.items()):
                    return
                await anyio.sleep(0.005)  # polling the server's state, not synchronisation

    async def server_close(self, sid: str, engine: str = "fast") -> None:
        """The server closes the session, as application code would."""
        await self.http.get(f"{self.target.url}/close?engine={engine}&sid={sid}")

    def spawn(self, tg: anyio.abc.TaskGroup, step: Callable[[], Any]) -> Pending:
        """Start a step (a poll that will wait) in ``tg``; its record is written when the
        scenario awaits :meth:`Pending.result`, so the transcript order is the scenario's."""
        pending = Pending()

        async def run() -> None:
            _step_records.set(pending.records)  # this task's context only
            try:
                pending.value = await step()
            finally:
                pending.done.set()

        tg.start_soon(run)
        return pending

    # ------------------------------------------------------------------ websocket

    async def websocket(
        self,
        engine: str = "fast",
        headers: dict[str, str] | None = None,
        /,
        **params: str,
    ) -> Socket | None:
        """A websocket handshake. Returns the socket if the server switched protocols
        (written down as ``("ws", 101)``); else writes down the HTTP answer and returns None."""
        params.setdefault("transport", "websocket")
        with anyio.fail_after(DEADLINE):
            stream = await anyio.connect_tcp(HOST, self.target.port)
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            await stream.send(
                (
                    f"GET {self.query(engine, **params)} HTTP/1.1\r\n"
                    f"Host: {HOST}:{self.target.port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
                ).encode()
            )
            response = bytearray()
            while b"\r\n\r\n" not in response:
                try:
                    response += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    await stream.aclose()
                    self.write(("ws", "dropped"))
                    return None
        head, _, rest = bytes(response).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status == 101:
            self.write(("ws", 101))
            ws = WebSocket(stream, rest)
            self.sockets.append(ws)
            return Socket(self, ws)
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        body = await _read_body(stream, rest, fields)
        kind = fields.get("content-type", "").lower().replace(" ", "")
        self.write(("ws", status, kind, body.decode("utf-8", "replace")))
        return None


@dataclass
class Pending:
    """A step running in the background (see :meth:`Driver.spawn`)."""

    done: anyio.Event = field(default_factory=anyio.Event)
    records: list[Record] = field(default_factory=list)
    value: Any = None

    async def result(self, driver: Driver) -> Any:
        with anyio.fail_after(DEADLINE):
            await self.done.wait()
        driver.transcript.extend(self.records)
        return self.value


class Socket:
    """An accepted websocket whose frames and close go into the driver's transcript."""

    def __init__(self, driver: Driver, ws: WebSocket) -> None:
        self.driver = driver
        self.ws = ws

    async def send(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def receive(self, skip_pings: bool = False) -> str | bytes | None:
        """The next frame (written down); None once the server closed or dropped the
        connection (the close written down instead). With ``skip_pings``, Engine.IO
        pings are answered and left out of the transcript."""
        try:
            with anyio.fail_after(DEADLINE):
                while True:
                    data = await self.ws.receive()
                    if skip_pings and data == "2":
                        await self.ws.send("3")
                        continue
                    break
        except Closed as closed:
            if closed.code is None:
                self.driver.write(("ws-close", "dropped"))
            elif closed.code in NORMAL_CLOSES:
                self.driver.write(("ws-close", "normal"))
            else:
                self.driver.write(("ws-close", closed.code))
            return None
        if isinstance(data, str):
            self.driver.write(("frame", self.driver.normalize(data)))
        else:
            self.driver.write(("frame", data))
        return data

    async def until_closed(self, skip_pings: bool = True) -> None:
        """Read (writing down) until the server closes the connection."""
        while await self.receive(skip_pings) is not None:
            pass

    async def close(self) -> None:
        await self.ws.abort()


async def _read_body(stream: anyio.abc.ByteStream, rest: bytes, fields: dict[str, str]) -> bytes:
    body = bytearray(rest)
    length = fields.get("content-length")
    with anyio.move_on_after(DEADLINE):
        while length is None or len(body) < int(length):
            try:
                body += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                break
    await stream.aclose()
    return bytes(body)
