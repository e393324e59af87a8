"""Namespace: handlers, connect middlewares, its sockets, and dynamic namespaces.

Handlers are ``func(socket, *args)``, sync or async; the return value is the ack. Special
events: ``"connect"`` (``func(socket, auth)``; return False or raise
:class:`~rooms.ConnectionRefused` to refuse), ``"disconnect"`` (``func(socket, reason)``) and
``"*"`` (catch-all for events with no handler: ``func(socket, event, *args)``).
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from rooms._log import Throttled
from rooms._tasks import maybe_await
from rooms.acks import ack_args, ack_value
from rooms.adapter import ALL, Adapter, BroadcastOptions
from rooms.delivery import Delivery
from rooms.exceptions import AckTimeout, ClusterTimeout, ConnectionRefused, ProtocolError
from rooms.handlers import Handler, Then
from rooms.operators import BroadcastOperator
from rooms.protocol import cluster as wire
from rooms.protocol import engineio
from rooms.protocol import socketio as sio
from rooms.recovery.resume import FRESH, Attempt
from rooms.selectors import ServerActs, ServerChain
from rooms.socket import Socket

if TYPE_CHECKING:
    from rooms.connection import Connection
    from rooms.presence import Presence
    from rooms.server import Server

logger = logging.getLogger("rooms")
# Clients that send what a handler cannot take: the user's to fix, but a client can repeat it.
_mismatch = Throttled(logger)

F = TypeVar("F", bound=Callable[..., Any])
Middleware = Callable[[Socket], Awaitable[None] | None]
NamespaceMatcher = re.Pattern[str] | Callable[[str, dict[str, Any]], Awaitable[bool] | bool]

SPECIAL_EVENTS = ("connect", "disconnect", "*")


class _Registry:
    """Handlers shared by a namespace, or by every child of a dynamic namespace."""

    __slots__ = ("catch_all", "connect", "disconnect", "events", "middlewares", "server_events")

    def __init__(self) -> None:
        self.events: dict[str, Handler] = {}
        self.server_events: dict[str, Handler] = {}
        self.connect: Handler | None = None
        self.disconnect: Handler | None = None
        self.catch_all: Handler | None = None
        self.middlewares: list[Middleware] = []

    def add(self, event: str, func: Callable[..., Any]) -> None:
        if event == "connect":
            self.connect = Handler(func)
        elif event == "disconnect":
            self.disconnect = Handler(func)
        elif event == "*":
            self.catch_all = Handler(func, leading=2)
        else:
            self.events[event] = Handler(func)


class _Handlers:
    """``on`` / ``event`` / ``use``, shared by static and dynamic namespaces."""

    _registry: _Registry

    @overload
    def on(self, event: str) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F) -> F: ...

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register a handler: ``@nsp.on("chat")`` or ``nsp.on("chat", func)``."""
        if not isinstance(event, str) or not event:
            raise TypeError(f"expected an event name, got {event!r}")

        def register(func: F) -> F:
            self._registry.add(event, func)
            return func

        if handler is not None:
            register(handler)
            return handler
        return register

    def event(self, func: F) -> F:
        """Register ``func`` under its own name: ``@nsp.event async def chat(...)``."""
        self._registry.add(func.__name__, func)
        return func

    def use(self, middleware: Middleware) -> Middleware:
        """Add a connect middleware ``mw(socket)``; raise ConnectionRefused to refuse."""
        self._registry.middlewares.append(middleware)
        return middleware

    def on_server_event(self, event: str) -> Callable[[F], F]:
        """Handle ``server_side_emit(event, *args)`` from the other processes of a cluster:
        ``func(*args)``, sync or async; its return value answers
        ``server_side_emit_with_ack``."""

        def register(func: F) -> F:
            self._registry.server_events[event] = Handler(func, leading=0)
            return func

        return register


class Namespace(_Handlers, ServerChain[BroadcastOperator], ServerActs[BroadcastOperator]):
    """A Socket.IO namespace. Obtained from ``server.of(name)``; the selectors
    (:mod:`rooms.selectors`) reach its sockets on every process."""

    def __init__(
        self,
        server: Server,
        name: str,
        registry: _Registry | None = None,
        parent: ParentNamespace | None = None,
    ) -> None:
        self.server = server
        self.name = name
        self.sockets: dict[str, Socket] = {}
        self.adapter = Adapter(self)
        self.delivery = Delivery(self)
        self.parent = parent
        self._registry = registry or _Registry()
        self._connecting = 0  # connect flows in progress (a dynamic child lives while > 0)
        self._failures: dict[str, Then] = {}  # see _failure_counter
        self._presence: Presence | None = None

    def __repr__(self) -> str:
        return f"<Namespace {self.name} sockets={len(self.sockets)}>"

    def started(self) -> None:
        """The server started: what runs beside this namespace's handlers starts too."""
        if self._presence is not None:
            self._presence.start()

    @property
    def presence(self) -> Presence:
        """Who is here, on every process: this namespace's
        :class:`~rooms.presence.Presence`, made on first use."""
        if self._presence is None:
            from rooms.presence import Presence  # a plug-in: loaded by those who use it

            self._presence = Presence(self)
        return self._presence

    # ------------------------------------------------------------------ broadcasting

    def _chain(
        self, opts: BroadcastOptions | None = None, timeout: float | None = None
    ) -> BroadcastOperator:
        return BroadcastOperator(self, ALL if opts is None else opts, timeout)

    def _everyone(self) -> BroadcastOperator:
        return BroadcastOperator(self, ALL)

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to this namespace's server-event handlers on every other process
        of the cluster (not this one). Without a broker there is no one to tell."""
        node = self.server.node
        if node is not None:
            await node.publish(self.name, wire.ServerSideEmit([event, *args]))

    async def server_side_emit_with_ack(
        self, event: str, *args: Any, timeout: float | None = None
    ) -> list[Any]:
        """``server_side_emit`` and collect every other process's answer (its handler's
        return value). Raises :class:`~rooms.AckTimeout`, holding the answers that came,
        if not every process answered within ``timeout`` (default ``request_timeout``)."""
        node = self.server.node
        if node is None:
            return []
        try:
            answers = await node.ask(
                self.name,
                lambda request_id: wire.ServerSideEmit([event, *args], request_id),
                timeout,
                f"server_side_emit {event!r}",
            )
        except ClusterTimeout as exc:
            raise AckTimeout(str(exc), [_answer(body) for body in exc.responses]) from None
        return [_answer(body) for _, body in answers]

    # ------------------------------------------------------------------ connecting

    async def connect(self, conn: Connection, auth: dict[str, Any]) -> None:
        """Admit a client to this namespace: recovery's attempt, middlewares, the socket in
        the index, the connect handler; then the CONNECT reply (or CONNECT_ERROR)."""
        socket = Socket(self, conn, secrets.token_urlsafe(15), auth)
        self._connecting += 1
        resume = self.server.resume
        attempt = FRESH if resume is None else await resume.attempt(self.name, socket, auth)
        admitted = False
        try:
            admitted = await self._admit(conn, socket, attempt, auth)
        finally:
            self._connecting -= 1
            conn.connected_or_refused(self.name)
            attempt.close(admitted)
            self._maybe_drop_child()  # a dynamic child that ended up with no socket goes
        if admitted:
            self._connected(conn, socket)

    async def _admit(
        self, conn: Connection, socket: Socket, attempt: Attempt, auth: dict[str, Any]
    ) -> bool:
        registry = self._registry
        in_index = False
        try:
            if not attempt.skips_middlewares:
                for middleware in registry.middlewares:
                    await maybe_await(middleware(socket))
            # In the index before the connect handler runs, so it can join rooms.
            if conn.session.closed or not await attempt.admit(socket, self._join, self._live):
                attempt.lost()
                return False
            in_index = True
            handler = registry.connect
            if handler is not None:
                args = handler.args_for([auth])
                if await maybe_await(handler.func(socket, *args)) is False:
                    raise ConnectionRefused()
        except ConnectionRefused as exc:
            self._refuse(conn, socket, in_index, exc.to_payload())
            return False
        except Exception:
            logger.exception("connect handler for %s failed", self.name)
            self._refuse(conn, socket, in_index, {"message": "Internal server error"})
            return False
        if conn.session.closed:
            self._forget(socket)
            attempt.lost()
            return False
        return True

    def _join(self, socket: Socket, rooms: Iterable[str]) -> None:
        self.sockets[socket.id] = socket
        self.adapter.add_all(socket.id, rooms)

    def _live(self, sid: str) -> bool:
        return sid in self.sockets

    def _connected(self, conn: Connection, socket: Socket) -> None:
        """The CONNECT reply, then what was emitted to the socket while it connected."""
        socket.connected = True
        conn.sockets[self.name] = socket
        pending = socket._pending or []
        socket._pending = None
        reply = {"sid": socket.id}
        if socket.pid is not None:
            reply["pid"] = socket.pid
        socket._send_packet(sio.Packet(sio.PacketType.CONNECT, self.name, reply))
        if pending:
            socket._write(pending)
        mailbox = self.server.mailbox
        if mailbox is not None:
            mailbox.socket_connected(socket)
        if self.server.observer is not None:
            self.server.observer.socket_connected(socket)

    def _refuse(
        self, conn: Connection, socket: Socket, admitted: bool, payload: dict[str, Any]
    ) -> None:
        socket._pending = None
        if admitted:
            self._forget(socket)
        conn.send_packet(sio.Packet(sio.PacketType.CONNECT_ERROR, self.name, payload))
        if self.server.observer is not None:
            self.server.observer.socket_refused(self, self.name, str(payload.get("message")))

    def _forget(self, socket: Socket) -> None:
        current = self.sockets.get(socket.id)
        if current is not None and current is not socket:
            return  # recovered meanwhile (a slow disconnect handler): that id is live again
        self.sockets.pop(socket.id, None)
        self.adapter.del_all(socket.id)
        self._maybe_drop_child()

    def _maybe_drop_child(self) -> None:
        if self.parent is not None and not self.sockets and not self._connecting:
            self.server._drop_child(self)

    # ------------------------------------------------------------------ events

    def on_event(self, socket: Socket, data: list[Any], ack_id: int | None) -> None:
        """Run the handler for ``data = [event, *args]``; its return value answers
        ``ack_id``. Nothing a handler does (raise, return what cannot be sent) reaches the
        caller: it is logged at ERROR with the handler and the event."""
        registry = self._registry
        event = data[0]
        observer = self.server.observer
        if observer is not None and observer.events:  # every event, handled or not
            observer.event_in(socket, data)
        handler = registry.events.get(event)
        args = data[1:]
        label = event  # for observers: a catch-all's events are "*", so labels stay bounded
        if handler is None:
            handler = registry.catch_all
            if handler is None:
                return
            args, label = data, "*"
        try:
            call_args = handler.args_for(args)
        except ProtocolError as exc:
            _mismatch.log(
                logging.WARNING,
                "socket %s: event %.60r not handled: %s (the handler's signature and what "
                "clients send disagree)",
                socket.id,
                event,
                exc,
            )
            return
        what = ("handler %s for event %.60r on %s", handler.name, event, self.name)
        then: Then | None = None
        if ack_id is not None:
            # An async handler sends its ack itself (run inline in the reader, that queues
            # it for the reader; run on after suspending, it sends); a sync one's is queued,
            # and the reader dispatching this message sends it.
            reply = self._ack_now if handler.is_async else self._ack_queued
            then = functools.partial(reply, socket, handler, event, ack_id)
        elif observer is not None:  # counts the handler's failures (an ack's reply does)
            then = self._failures.get(label) or self._failure_counter(label)
        if observer is None:
            handler.run(socket.session.start, (socket, *call_args), then, what)
            return
        span = observer.handler_span(socket, label) if observer.traces else None
        handler.run(socket.session.start, (socket, *call_args), then, what, span)

    def _failure_counter(self, label: str) -> Then:
        """What follows a handler with no ack to send: a failure is counted under
        ``label`` (one per registered event, and "*": a bounded set)."""

        def counted(result: Any, ok: bool) -> None:
            if not ok and self.server.observer is not None:
                self.server.observer.handler_failed(self, label)

        self._failures[label] = counted
        return counted

    def _ack_now(
        self, socket: Socket, handler: Handler, event: str, ack_id: int, result: Any, ok: bool
    ) -> Awaitable[bool] | None:
        frames = self._ack_frames(handler, event, ack_id, result, ok)
        if frames is None or not socket.connected:
            return None
        if self.server.observer is not None:
            self.server.observer.packets_out(frames, 1)
        return socket._reply(frames)

    def _ack_queued(
        self, socket: Socket, handler: Handler, event: str, ack_id: int, result: Any, ok: bool
    ) -> None:
        frames = self._ack_frames(handler, event, ack_id, result, ok)
        observer = self.server.observer
        if frames is not None and socket.connected and socket._write(frames) and observer:
            observer.packets_out(frames, 1)

    def _ack_frames(
        self, handler: Handler, event: str, ack_id: int, result: Any, ok: bool
    ) -> list[engineio.Frame] | None:
        """The ACK carrying ``result``; None if the handler failed (``ok`` False: it raised)
        or its result cannot be sent (logged at ERROR, naming the handler): the client's
        callback then never runs, as if the ack were lost."""
        if ok:
            try:
                parts = sio.encode_ack(self.name, ack_id, ack_args(result))
            except (TypeError, ValueError) as exc:
                logger.error(
                    "handler %s for event %.60r on %s returned a value that cannot be sent as "
                    "its ack (%s); no ack sent",
                    handler.name,
                    event,
                    self.name,
                    exc,
                )
            else:
                return [engineio.message_frame(f) for f in parts]
        observer = self.server.observer
        if observer is not None:
            label = event if self._registry.events.get(event) is handler else "*"
            observer.handler_failed(self, label)
        return None

    def run_server_event(self, event: str, args: list[Any], respond: Callable[[Any], None]) -> bool:
        """Run the handler of ``on_server_event(event)`` for another process; ``respond``
        gets its return value (None if it failed or the arguments did not fit). False if
        there is no such handler."""
        handler = self._registry.server_events.get(event)
        if handler is None:
            return False
        try:
            call_args = handler.args_for(args)
        except ProtocolError as exc:
            _mismatch.log(logging.WARNING, "server event %.60r not handled: %s", event, exc)
            respond(None)
            return True
        handler.run(
            self.server._start,
            call_args,
            lambda result, ok: respond(result if ok else None),
            ("server event handler %s", handler.name),
        )
        return True

    # ------------------------------------------------------------------ leaving

    def remove(self, socket: Socket, reason: str) -> None:
        """A socket left: its leave hooks and the disconnect handler run with its rooms
        intact, then it is forgotten."""
        self.sockets.pop(socket.id, None)
        if self.server.observer is not None:
            self.server.observer.socket_disconnected(socket, reason)
        for hook in socket._leave_hooks:
            hook(socket, reason)
        handler = self._registry.disconnect
        if handler is None:
            self._forget(socket)
            return
        args = [reason][: handler.max_args] if handler.max_args is not None else [reason]
        what = ("disconnect handler %s on %s", handler.name, self.name)
        handler.run(self.server._start, (socket, *args), lambda _, __: self._forget(socket), what)


def _answer(body: Any) -> Any:
    return ack_value(body.data) if isinstance(body, wire.ServerSideEmitResponse) else None


class ParentNamespace(_Handlers):
    """A dynamic namespace: children are created for every name the matcher accepts.

    Handlers registered here apply to every child; emitting here reaches every child.
    """

    def __init__(self, server: Server, matcher: NamespaceMatcher) -> None:
        self.server = server
        self.matcher = matcher
        self._registry = _Registry()
        self.children: dict[str, Namespace] = {}

    def __repr__(self) -> str:
        return f"<ParentNamespace {self.matcher!r} children={len(self.children)}>"

    async def matches(self, name: str, auth: dict[str, Any]) -> bool:
        """Whether the matcher accepts a CONNECT to ``name`` with ``auth``."""
        if isinstance(self.matcher, re.Pattern):
            return self.matcher.fullmatch(name) is not None
        return bool(await maybe_await(self.matcher(name, auth)))

    def child(self, name: str) -> Namespace:
        """The child namespace ``name`` (made on first use; it lives while it has sockets)."""
        nsp = self.children.get(name)
        if nsp is None:
            nsp = self.children[name] = Namespace(self.server, name, self._registry, self)
        return nsp

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to every socket of every child, on every process."""
        for nsp in list(self.children.values()):
            await nsp.emit(event, *args)
