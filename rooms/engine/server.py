"""EngineServer: the Engine.IO v4 endpoint, usable on its own as an ASGI app.

It owns the session table, the handshake checks, the heartbeat task and the callbacks the
layer above (Socket.IO, or an application using bare Engine.IO) receives.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.abc

from rooms._log import bad_input
from rooms._tasks import maybe_await
from rooms._types import Clock, Receive, Scope, Send
from rooms.engine.flusher import Flusher
from rooms.engine.heartbeat import Heartbeat
from rooms.engine.session import Session
from rooms.exceptions import ProtocolError, RoomsError
from rooms.lifespan import serve_lifespan
from rooms.protocol.engineio import (
    PROTOCOL_VERSION,
    HandshakeError,
    Packet,
    PacketType,
    open_frame,
)

logger = logging.getLogger("rooms.engine")

ConnectCallback = Callable[[Session], Any]
MessageCallback = Callable[[Session, "str | bytes"], Any]
DisconnectCallback = Callable[[Session, str], Any]

TRANSPORTS = ("polling", "websocket")


class Forwarder(Protocol):
    """Serves requests for sessions that live in another process (``rooms.cluster.relay``)."""

    def owner_of(self, sid: str) -> str | None:
        """The process that owns ``sid``, if it is another live one."""

    async def forward(self, scope: Scope, receive: Receive, send: Send, owner: str) -> None:
        """Carry the whole exchange to ``owner``."""


class EngineServer:
    """An Engine.IO v4 server.

    Mount it directly (``app = EngineServer(on_message=...)``) for bare Engine.IO, or let
    :class:`rooms.Server` drive it. Callbacks may be plain functions or coroutines:

    - ``on_connect(session)``: return ``False`` to refuse the handshake (403, code 4).
    - ``on_message(session, data)``: ``data`` is ``str`` or ``bytes``; awaited in order.
    - ``on_disconnect(session, reason)``: reason as Engine.IO names it (``"transport close"``,
      ``"transport error"``, ``"ping timeout"``, ``"parse error"``, ``"forced close"``,
      ``"server shutting down"``).

    An ``on_message`` that raises :class:`~rooms.ProtocolError` closes the session as a
    parse error (a normal websocket close, as the reference server's; on long-polling the
    POST is answered "ok" and the pending poll carries the close); any other exception is
    logged at ERROR and closes it too. Errors of the other callbacks are logged and end
    there.

    Times are seconds (floats); they are advertised to clients in whole milliseconds. Each
    session's outbox holds at most ``max_outbox`` frames and ``max_outbox_bytes`` bytes; a
    closing session gets ``ping_timeout`` to deliver what is left, then it is aborted.
    """

    def __init__(
        self,
        *,
        on_connect: ConnectCallback | None = None,
        on_message: MessageCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_payload: int = 1_000_000,
        transports: Sequence[str] = TRANSPORTS,
        cors_allowed_origins: str | Iterable[str] | None = None,
        cors_credentials: bool = True,
        max_outbox: int = 4096,
        max_outbox_bytes: int = 16 * 1024 * 1024,
        upgrade_timeout: float = 10.0,
        writer_linger: float = 5.0,
        stall_after: float = 0.1,
        handler_grace: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        for name in transports:
            if name not in TRANSPORTS:
                raise ValueError(f"expected transports from {TRANSPORTS}, got {name!r}")
        if ping_interval <= 0 or ping_timeout <= 0:
            raise ValueError(
                f"expected positive ping_interval and ping_timeout, got {ping_interval} "
                f"and {ping_timeout}"
            )
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        # Told when a session moves to a websocket (the layer above's observers).
        self.on_upgrade: Callable[[Session], None] | None = None
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        self.transports = tuple(transports)
        if max_outbox < 1 or max_outbox_bytes < 1:
            raise ValueError(
                f"expected a positive max_outbox and max_outbox_bytes, got {max_outbox} and "
                f"{max_outbox_bytes}"
            )
        self.max_outbox = max_outbox
        self.max_outbox_bytes = max_outbox_bytes
        self.upgrade_timeout = upgrade_timeout
        # How long an idle websocket writer task waits for more frames before it ends.
        self.writer_linger = writer_linger
        self.cors_credentials = cors_credentials
        self.clock: Clock = clock or anyio.current_time
        self.sessions: dict[str, Session] = {}
        self.heartbeat = Heartbeat(ping_interval, ping_timeout, self._now)
        # A closing session delivers what is left within this, or is aborted.
        self._closing = self.heartbeat.lane(ping_timeout)
        # A session's handlers still running this long after it finished are cancelled.
        self.handler_deadlines = self.heartbeat.lane(handler_grace)
        # Sends frames nobody else is sending; a stalled send gets its own writer.
        self.flusher = Flusher(stall_after)
        self.heartbeat.sweep_every = writer_linger
        self.heartbeat.sweep = self._sweep_writers
        # Websocket writers that currently exist (see websocket._Pump).
        self.writers: set[Any] = set()
        self._origins = _origin_policy(cors_allowed_origins)
        # Set by a drain (until the next start): handshakes are refused.
        self.draining = False
        # Counts kept for whoever reports on the engine (rooms.observer): upgrades done,
        # sessions closed as slow consumers, volatile frames dropped, and the most frames
        # an outbox held when a transport took them since ``outbox_peak`` was last reset.
        self.upgrades = 0
        self.overflows = 0
        self.volatile_drops = 0
        self.outbox_peak = 0
        # In a cluster, sids start with this process's node uid, and requests for sessions
        # of other processes go to the forwarder.
        self.sid_prefix = ""
        self.forwarder: Forwarder | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._emptied: anyio.Event | None = None

    def _now(self) -> float:
        return self.clock()

    def on(self, event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of the callbacks: ``@engine.on("message")``."""
        if event not in ("connect", "message", "disconnect"):
            raise ValueError(f"expected 'connect', 'message' or 'disconnect', got {event!r}")

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            setattr(self, f"on_{event}", func)
            return func

        return register

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_running(self) -> bool:
        """Between startup and shutdown (``running()``)."""
        return self._tg is not None

    @property
    def running_group(self) -> anyio.abc.TaskGroup:
        """The task group of the running engine; RoomsError before startup."""
        if self._tg is None:
            raise RoomsError(
                "expected the server to be running, got a request before startup: mount "
                "RoomsMiddleware so ASGI lifespan starts it, or use 'async with server.running()'"
            )
        return self._tg

    @asynccontextmanager
    async def running(self) -> AsyncIterator[anyio.abc.TaskGroup]:
        """Run the heartbeat; on exit close every session with "server shutting down"."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.draining = False
            tg.start_soon(self.heartbeat.run)
            self.flusher.start(tg)
            try:
                yield tg
            finally:
                with anyio.CancelScope(shield=True):
                    await self.shutdown()
                self._tg = None
                self.flusher = Flusher(self.flusher.stall_after)
                tg.cancel_scope.cancel()

    async def shutdown(self, grace: float = 1.0) -> None:
        """Close every session with "server shutting down"; wait up to ``grace`` seconds
        for transports to carry the close to their clients."""
        for session in list(self.sessions.values()):
            session.close("server shutting down")
            if session.transport == "polling" and not session.polling:
                session.finish()  # no poll in flight to carry the close; none will come
        if self.sessions:
            self._emptied = anyio.Event()
            with anyio.move_on_after(grace):
                await self._emptied.wait()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(self, None, scope, receive, send)
        else:
            await self.serve(scope, receive, send)

    def serve(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """What answers an HTTP or websocket ``scope``, to await. Synchronous, so the
        layers above (``Server``, ``RoomsMiddleware``) add no coroutine frame of their own
        to what every idle connection holds while it waits for input."""
        from rooms.engine import polling, websocket

        forwarder = self.forwarder
        if forwarder is not None:
            sid = parse_query(scope).get("sid")
            if sid is not None and sid not in self.sessions:
                owner = forwarder.owner_of(sid)
                if owner is not None:
                    return forwarder.forward(scope, receive, send, owner)
        kind = scope["type"]
        if kind == "websocket":
            return websocket.handle(self, scope, receive, send)
        if kind == "http":
            return polling.handle(self, scope, receive, send)
        return _ignored()  # a scope type of a later ASGI version: not ours to answer

    # ------------------------------------------------------------------ handshake

    def check_request(
        self, scope: Scope, query: dict[str, str], method: str, upgrade: bool
    ) -> HandshakeError | None:
        """The checks every request passes before it reaches a session, in the reference
        server's order: the transport; then, with a sid, that the session is known and
        (unless this is a websocket upgrade) on that transport; without one, a GET that
        is not a websocket without its upgrade. The origin is checked for every request
        (the reference leaves it to an ``allowRequest`` at the handshake); the protocol
        version only at the handshake, so a request for a session is served whatever its
        ``EIO``."""
        requested = query.get("transport")
        if requested not in self.transports:
            refuse("expected a transport from %s, got %.40r", self.transports, requested)
            return HandshakeError.UNKNOWN_TRANSPORT
        sid = query.get("sid")
        if sid is not None:
            session = self.sessions.get(sid)
            if session is None:
                refuse("expected a known sid, got %.40r", sid)
                return HandshakeError.UNKNOWN_SID
            if not upgrade and requested != session.transport:
                refuse(
                    "session %s: expected transport=%s, got %.40r",
                    sid,
                    session.transport,
                    requested,
                )
                return HandshakeError.BAD_REQUEST
            return self._check_origin(scope)
        if method != "GET":
            refuse("expected GET for a handshake, got %.16s", method)
            return HandshakeError.BAD_HANDSHAKE_METHOD
        if self.draining:
            # As an allowRequest refusal in the reference: the client retries later, by
            # then (readiness false) at another process.
            refuse("draining: no new sessions here, refused a handshake")
            return HandshakeError.FORBIDDEN
        if requested == "websocket" and not upgrade:
            refuse("expected a websocket upgrade for transport=websocket, got plain HTTP")
            return HandshakeError.BAD_REQUEST
        error = self._check_origin(scope)
        if error is not None:
            return error
        if query.get("EIO") != PROTOCOL_VERSION:
            refuse("expected EIO=%s, got %.40r", PROTOCOL_VERSION, query.get("EIO"))
            return HandshakeError.UNSUPPORTED_PROTOCOL_VERSION
        return None

    def _check_origin(self, scope: Scope) -> HandshakeError | None:
        origin = header(scope, b"origin")
        if origin is not None and not self.origin_allowed(scope, origin):
            refuse("expected an allowed origin, got %.80r", origin)
            return HandshakeError.FORBIDDEN
        return None

    def origin_allowed(self, scope: Scope, origin: str) -> bool:
        """Same-origin requests always pass; others per ``cors_allowed_origins``."""
        allowed = self._origins
        if allowed == "*":
            return True
        host = header(scope, b"host")
        if host is not None and urlsplit(origin).netloc == host:
            return True
        return isinstance(allowed, frozenset) and origin in allowed

    def cors_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """CORS headers for a cross-origin request, only if its origin is allowed.

        ``"*"`` answers ``*`` and never allows credentials (browsers refuse the pair anyway);
        a listed origin is echoed back, with credentials if ``cors_credentials``. Same-origin
        requests need no CORS headers, and a refused origin gets none.
        """
        origin = header(scope, b"origin")
        allowed = self._origins
        if origin is None or allowed is None:
            return []
        if allowed == "*":
            return [(b"access-control-allow-origin", b"*")]
        if not isinstance(allowed, frozenset) or origin not in allowed:
            return []
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if self.cors_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    async def open_session(self, scope: Scope, transport: str) -> Session | None:
        """Create a session and queue its OPEN packet; None if on_connect refused it."""
        sid = self.sid_prefix + secrets.token_urlsafe(15)
        session = Session(self, sid, transport, scope, self.max_outbox, self.max_outbox_bytes)
        upgrades = (
            ["websocket"] if transport == "polling" and "websocket" in self.transports else []
        )
        session.send(
            open_frame(
                sid,
                upgrades,
                round(self.ping_interval * 1000),
                round(self.ping_timeout * 1000),
                self.max_payload,
            )
        )
        self.sessions[sid] = session
        if self.on_connect is not None:
            try:
                accepted = await maybe_await(self.on_connect(session))
            except Exception:
                logger.exception("on_connect callback failed for session %s", sid)
                accepted = False
            if accepted is False:
                del self.sessions[sid]
                session.refuse()
                return None
        self.heartbeat.start(session)
        return session

    # ------------------------------------------------------------------ packets

    def dispatch_message(self, session: Session, data: str | bytes) -> Any:
        """Hand a MESSAGE to ``on_message``. What it returns, if not None, is an awaitable
        (a coroutine function's coroutine; Socket.IO's connect flow) that the transport
        awaits before it reads the next packet."""
        if self.on_message is None or session.closed:
            return None
        return self.on_message(session, data)

    async def receive_packet(self, session: Session, packet: Packet) -> None:
        """Act on one packet from the client (either transport)."""
        ptype = packet.type
        if ptype is PacketType.MESSAGE:
            pending = self.dispatch_message(session, packet.data)
            if pending is not None:
                await pending
        elif ptype is PacketType.PONG:
            self.heartbeat.pong(session)
        elif ptype is PacketType.CLOSE:
            # Over a websocket the client closes the websocket itself; the reference acts
            # on a CLOSE packet only over long-polling.
            if session.transport == "polling":
                session.client_close()
        elif ptype is PacketType.PING:
            # Engine.IO v4: the server pings, the client pongs (the reference closes).
            bad_input.log(
                logging.INFO,
                "session %s: expected PONG from the client, got PING; closing it",
                session.sid,
            )
            session.close("transport error")
        elif ptype is PacketType.NOOP:
            pass
        else:
            bad_input.log(
                logging.INFO,
                "session %s: expected MESSAGE, PONG or CLOSE from the client, got %s; ignored",
                session.sid,
                ptype.name,
            )

    def protocol_error(self, session: Session, error: ProtocolError) -> None:
        """The peer broke the protocol: say what was expected, close its session."""
        bad_input.log(logging.INFO, "session %s: %s; closing it", session.sid, error)
        session.close("parse error")

    def internal_error(self, session: Session) -> None:
        """Handling the peer's input raised an unexpected error (a bug, ours or a
        callback's): log it with its traceback and close that session only."""
        logger.exception("session %s: handling its input failed; closing it", session.sid)
        session.close("transport error")

    # ------------------------------------------------------------------ teardown

    def session_closed(self, session: Session, reason: str) -> None:
        """Called by a session as it starts closing (once)."""
        # What is left (and the close) must be delivered before this deadline, or the
        # session is aborted: a peer that never reads cannot keep it.
        self._closing.add(session.abort)
        if self.on_disconnect is not None:
            try:
                result = self.on_disconnect(session, reason)
            except Exception:
                logger.exception("on_disconnect callback failed for session %s", session.sid)
                return
            if inspect.isawaitable(result):
                self.running_group.start_soon(_guarded, result, session.sid)

    def _sweep_writers(self, now: float) -> None:
        for pump in list(self.writers):
            pump.park_if_idle(now - self.writer_linger)
        if self.writers:
            self.heartbeat.sweep_soon()

    def session_finished(self, session: Session) -> None:
        """Called by a session once it is CLOSED: forget it."""
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
            if not self.sessions and self._emptied is not None:
                self._emptied.set()


async def _guarded(awaitable: Awaitable[Any], sid: str) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("on_disconnect callback failed for session %s", sid)


def refuse(message: str, *args: Any) -> None:
    """Log a refused request (hostile clients repeat them: rate-limited)."""
    bad_input.log(logging.INFO, message, *args)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def parse_query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"")
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


def _origin_policy(allowed: str | Iterable[str] | None) -> frozenset[str] | str | None:
    """None: same origin only; "*": any origin; else the exact origins listed."""
    if allowed is None or allowed == "*":
        return allowed
    if isinstance(allowed, str):
        return frozenset((allowed,))
    return frozenset(allowed)


async def _ignored() -> None:
    pass
