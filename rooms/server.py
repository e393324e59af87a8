"""Server: configuration, namespaces and lifecycle. It owns one task group."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio

from rooms._log import Throttled
from rooms._tasks import spawn
from rooms._types import Clock, Receive, Scope, Send
from rooms.brokers import Broker, broker_from_url
from rooms.cluster import Node
from rooms.cluster.relay import Relay
from rooms.connection import Connection
from rooms.engine.server import EngineServer
from rooms.engine.session import Session
from rooms.lifespan import serve_lifespan
from rooms.local import Local
from rooms.namespace import Namespace, NamespaceMatcher, ParentNamespace
from rooms.observer import Observer, Observers
from rooms.operators import BroadcastOperator
from rooms.plugin import Plugin
from rooms.protocol import socketio as sio
from rooms.protocol.cluster import BroadcastOptions
from rooms.protocol.limits import Limits
from rooms.recovery import Recovery, StoredPacket
from rooms.recovery.resume import Resume
from rooms.selectors import ServerActs, ServerChain
from rooms.socket import Socket

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rooms.admin import Admin, AuthCheck
    from rooms.presence import Presence

logger = logging.getLogger("rooms")
# A bound an operator should hear about, that a flood of clients could repeat at will.
_bound_hit = Throttled(logger, burst=5)

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Callable[[Socket], Awaitable[None] | None])

INVALID_NAMESPACE = {"message": "Invalid namespace"}


@dataclass(frozen=True, slots=True)
class Status:
    """``server.status()``: ``ready`` is what a readiness probe should answer."""

    running: bool
    ready: bool
    broker: Literal["joined", "away"] | None
    """None without a broker; "away" while the cluster is not joined (retried)."""
    peers: int
    sessions: int
    draining: bool = False
    """A drain started (``server.drain()``): new sessions are refused, ``ready`` is False."""

    def to_json(self) -> dict[str, Any]:
        """The status as a readiness endpoint answers it."""
        return {
            "running": self.running,
            "ready": self.ready,
            "broker": self.broker,
            "peers": self.peers,
            "sessions": self.sessions,
            "draining": self.draining,
        }


class Server(ServerChain[BroadcastOperator], ServerActs[BroadcastOperator]):
    """A Socket.IO v5 server.

    Mount it with :class:`rooms.RoomsMiddleware`. Handlers live on namespaces; the main
    namespace ``"/"`` is reachable through the server itself (``server.on``,
    ``server.emit``, and the selectors of :mod:`rooms.selectors`: ``server.to(...)``).

    Times are in seconds. ``ack_timeout`` is the default wait of every ``emit_with_ack``.
    ``max_outbox`` (frames) and ``max_outbox_bytes`` bound each connection's queue (see
    :mod:`rooms.engine.session` for the slow-consumer policy). A connection that joins no
    namespace within ``connect_timeout`` is closed. A handler still running
    ``handler_grace`` seconds after its client's connection ended is cancelled. ``limits``
    bounds what clients may send (:class:`~rooms.Limits`: attachments, JSON depth, names,
    dynamic namespaces).

    ``broker`` makes this process one of a cluster: a URL (``"redis://host:6379/0"``,
    ``"rediss://..."``, ``"unix:///path"``, ``"memory://name"`` for servers in one process)
    or a :class:`~rooms.brokers.Broker` instance, opened and closed by the server. Without
    one, everything stays in this process (the embedded default). Processes of a cluster
    share ``cluster_prefix``, announce themselves every ``heartbeat_interval`` and are
    considered gone after ``heartbeat_timeout`` of silence (looked for every tenth of it, at
    most every second); ``request_timeout`` bounds ``fetch_sockets``,
    ``server_side_emit_with_ack`` and the room operations (``sockets_join``,
    ``sockets_leave``, ``disconnect_sockets``), which wait for every other process.
    """

    def __init__(
        self,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_payload: int = 1_000_000,
        transports: Sequence[str] = ("polling", "websocket"),
        cors_allowed_origins: str | Iterable[str] | None = None,
        max_outbox: int = 4096,
        max_outbox_bytes: int = 16 * 1024 * 1024,
        limits: Limits | None = None,
        ack_timeout: float = 30.0,
        connect_timeout: float = 45.0,
        stall_after: float = 0.1,
        writer_linger: float = 5.0,
        handler_grace: float = 5.0,
        clock: Clock | None = None,
        broker: Broker | str | None = None,
        cluster_prefix: str = "rooms",
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 10.0,
        request_timeout: float = 5.0,
        recovery: Recovery | None = None,
        mailbox: Plugin | None = None,
    ) -> None:
        self.ack_timeout = ack_timeout
        self.limits = limits if limits is not None else Limits()
        self.recovery = recovery
        self.mailbox = mailbox
        # What watches the server (metrics, the Admin UI, tracing): see observe().
        self.observer: Observer | None = None
        # Connection state recovery over its opened store, while running (see recovery/).
        self.resume: Resume | None = None
        self.engine = EngineServer(
            on_connect=self._engine_connect,
            on_message=self._engine_message,
            on_disconnect=self._engine_disconnect,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_payload=max_payload,
            transports=transports,
            cors_allowed_origins=cors_allowed_origins,
            max_outbox=max_outbox,
            max_outbox_bytes=max_outbox_bytes,
            stall_after=stall_after,
            writer_linger=writer_linger,
            handler_grace=handler_grace,
            clock=clock,
        )
        heartbeat = self.engine.heartbeat
        # A client that opens a session but joins no namespace is dropped after this delay.
        self._connect_deadlines = heartbeat.lane(connect_timeout)
        # A binary packet's attachments must all arrive within this (see Connection).
        self.attachment_deadlines = heartbeat.lane(self.limits.attachment_timeout)
        self._namespaces: dict[str, Namespace] = {}
        self._parents: list[ParentNamespace] = []
        self._children = 0  # dynamic namespaces alive
        self.main = self.of("/")
        if mailbox is not None:
            mailbox.attach(self)
        self.node: Node | None = None
        if broker is not None:
            self.node = Node(
                Local(self),
                broker_from_url(broker) if isinstance(broker, str) else broker,
                prefix=cluster_prefix,
                heartbeat_interval=heartbeat_interval,
                heartbeat_timeout=heartbeat_timeout,
                request_timeout=request_timeout,
                clock=clock,
            )
            # No sticky sessions needed: requests for another process's session go there.
            self.engine.sid_prefix = self.node.uid
            relay = Relay(self.node, self.engine, idle_timeout=ping_interval + ping_timeout + 5)
            self.node.relay = self.engine.forwarder = relay

    def __repr__(self) -> str:
        return f"<Server namespaces={sorted(self._namespaces)}>"

    def observe(self, observer: Observer) -> None:
        """Tell ``observer`` what happens in this server from now on (see
        :mod:`rooms.observer`); several observers each hear everything. Add them before the
        server starts: they are started and stopped with it."""
        current = self.observer
        if current is None:
            self.observer = observer
        elif isinstance(current, Observers):
            self.observer = Observers([*current.observers, observer])
        else:
            self.observer = Observers([current, observer])
        self.engine.on_upgrade = self._engine_upgrade
        if self.node is not None:
            self.node.on_request = self.observer.cluster_request

    def instrument(
        self,
        *,
        auth: Mapping[str, str] | AuthCheck | Literal[False] | None = None,
        mode: Literal["development", "production"] = "development",
        read_only: bool = False,
        namespace: str = "/admin",
        server_id: str | None = None,
    ) -> Admin:
        """Speak the protocol of the Socket.IO Admin UI on ``namespace``; the
        :class:`~rooms.admin.Admin` that does (docs/guides/admin-ui.md). ``auth``: None or
        False (open: a WARNING says so), ``{"username": ..., "password": ...}``, or a
        callable ``check(auth_payload) -> bool`` (sync or async). ``mode``:
        ``"development"`` (every socket, room and event) or ``"production"`` (statistics
        only). ``read_only``: no actions. ``server_id``: this process on the Servers page."""
        from rooms.admin import Admin  # a plug-in: imported only by those who use it

        return Admin(
            self,
            auth=auth,
            mode=mode,
            read_only=read_only,
            namespace=namespace,
            server_id=server_id,
        )

    @property
    def presence(self) -> Presence:
        """Presence on ``/`` (``namespace.presence`` for the others): who is in which
        topic, on every process, with join and leave diffs (:mod:`rooms.presence`)."""
        return self.main.presence

    # ------------------------------------------------------------------ namespaces

    @overload
    def of(self, name: str) -> Namespace: ...
    @overload
    def of(
        self, name: re.Pattern[str] | Callable[[str, dict[str, Any]], Any]
    ) -> ParentNamespace: ...

    def of(self, name: str | NamespaceMatcher) -> Namespace | ParentNamespace:
        """The namespace ``name`` (created on first use), or a dynamic namespace that
        accepts every name a regex fully matches or a callable ``(name, auth)`` approves."""
        if isinstance(name, str):
            if not name.startswith("/"):
                raise ValueError(f"expected a namespace name starting with '/', got {name!r}")
            nsp = self._namespaces.get(name)
            if nsp is None:
                nsp = self._namespaces[name] = Namespace(self, name)
            return nsp
        parent = ParentNamespace(self, name)
        self._parents.append(parent)
        return parent

    @property
    def namespaces(self) -> dict[str, Namespace]:
        """Every namespace by name (a copy), dynamic children that are alive included."""
        return dict(self._namespaces)

    def _drop_child(self, nsp: Namespace) -> None:
        if self._namespaces.get(nsp.name) is nsp and nsp.parent is not None:
            del self._namespaces[nsp.name]
            nsp.parent.children.pop(nsp.name, None)
            self._children -= 1

    # Handlers and broadcasts on the main namespace.
    @overload
    def on(self, event: str, *, namespace: str = "/") -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, namespace: str = "/") -> F: ...

    def on(
        self, event: str, handler: Callable[..., Any] | None = None, namespace: str = "/"
    ) -> Any:
        """Register a handler on ``namespace``: ``@server.on("chat")``."""
        nsp = self.of(namespace)
        return nsp.on(event) if handler is None else nsp.on(event, handler)

    def event(self, func: F) -> F:
        """Register ``func`` under its own name on ``/``: ``@server.event``."""
        return self.main.event(func)

    def use(self, middleware: M) -> M:
        """Add a connect middleware ``mw(socket)`` to ``/``; raise ConnectionRefused to refuse."""
        self.main.use(middleware)
        return middleware

    def _chain(
        self, opts: BroadcastOptions | None = None, timeout: float | None = None
    ) -> BroadcastOperator:
        return self.main._chain(opts, timeout)

    def _everyone(self) -> BroadcastOperator:
        return self.main._everyone()

    async def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        except_: str | Iterable[str] | None = None,
        namespace: str = "/",
    ) -> None:
        """Send ``event`` to every socket of ``namespace`` (or those in ``to``, minus those
        in ``except_``), on every process: from handlers, HTTP routes, background tasks."""
        nsp = self.of(namespace)
        op = nsp.to(to) if to is not None else nsp._everyone()
        if except_ is not None:
            op = op.except_(except_)
        await op.emit(event, *args)

    async def server_side_emit(self, event: str, *args: Any, namespace: str = "/") -> None:
        """Send ``event`` to the other processes of the cluster (see ``on_server_event``)."""
        await self.of(namespace).server_side_emit(event, *args)

    async def server_side_emit_with_ack(
        self, event: str, *args: Any, timeout: float | None = None, namespace: str = "/"
    ) -> list[Any]:
        """``server_side_emit`` and collect each other process's answer."""
        return await self.of(namespace).server_side_emit_with_ack(event, *args, timeout=timeout)

    def on_server_event(self, event: str, namespace: str = "/") -> Callable[[F], F]:
        """Handle ``server_side_emit(event, ...)`` from other processes: ``func(*args)``."""
        return self.of(namespace).on_server_event(event)

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        """Run the server (heartbeat, handler tasks) for the duration of the block.

        :class:`rooms.RoomsMiddleware` does this from ASGI lifespan; on exit every
        connection closes with reason ``"server shutting down"``.
        """
        async with self.engine.running() as tg:
            if self.node is not None:
                await tg.start(self.node.run)
            if self.recovery is not None:
                node = self.node
                store = self.recovery.open_store(
                    node.broker if node is not None else None,
                    node.prefix if node is not None else "rooms",
                    self.engine.clock,
                )
                self.resume = Resume(
                    self.recovery,
                    store,
                    self.spawn,
                    peers=node.take_over if node is not None else None,
                    wait=node.request_timeout if node is not None else 5.0,
                )
                if self.observer is not None:
                    self.resume.sent = self.observer.packets_out
                await tg.start(self.resume.run, lambda: list(self._namespaces), self._deliver)
            if self.mailbox is not None:
                self.mailbox.start(self)
            for nsp in list(self._namespaces.values()):
                nsp.started()  # presence: asks the other processes for their entries
            if self.observer is not None:
                self.observer.start(self)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    # Close sessions while the broker still runs: the sockets' recovery
                    # sessions are saved on the way (with Redis, for another process).
                    await self.engine.shutdown()
                    if self.observer is not None:  # its last report sees everything
                        self.observer.stop()
                    resume, self.resume = self.resume, None
                    if resume is not None:
                        with anyio.move_on_after(2):
                            await resume.wait_saved()
                        await resume.close()
                    if self.mailbox is not None:
                        self.mailbox.stop()

    def _deliver(self, nsp: str, packet: StoredPacket) -> None:
        """A logged packet, from a store that delivers (see recovery.store.Store)."""
        namespace = self._namespaces.get(nsp)
        if namespace is not None:
            namespace.delivery.deliver_logged(packet)

    async def wait_sessions_saved(self) -> None:
        """Wait until the recovery sessions of sockets that dropped so far are saved."""
        if self.resume is not None:
            await self.resume.wait_saved()

    @property
    def is_running(self) -> bool:
        """Between lifespan startup and shutdown (or inside ``running()``)."""
        return self.engine.is_running

    def status(self) -> Status:
        """What a readiness probe needs: running, and joined to its cluster if it has one.
        While the broker is away the server serves its own clients; ``ready`` is False."""
        node, draining = self.node, self.engine.draining
        serving = self.is_running and not draining
        if node is None:
            return Status(self.is_running, serving, None, 0, len(self.engine.sessions), draining)
        joined = node.joined.is_set()
        return Status(
            self.is_running,
            serving and joined,
            "joined" if joined else "away",
            len(node.peers),
            len(self.engine.sessions),
            draining,
        )

    async def drain(self, window: float = 10.0, interval: float = 0.5) -> int:
        """Close every connection, a batch every ``interval`` seconds over ``window``
        seconds, so that clients do not all reconnect in the same second (as Phoenix's
        drainer does); how many were closed.

        From the call on, ``status().ready`` is False and new sessions are refused (the
        client retries, at another process once the load balancer has heard). Sockets
        leave with ``"server shutting down"``: with connection state recovery their
        sessions are kept (with Redis, for any process), and this returns once they are
        saved. Call it before the ASGI server shuts down (a Kubernetes ``preStop`` hook
        on :func:`rooms.starlette.drain`): uvicorn closes websockets itself before the
        application hears of its shutdown.
        """
        if window < 0 or interval <= 0:
            raise ValueError(
                f"expected window >= 0 and interval > 0, got window={window}, interval={interval}"
            )
        engine = self.engine
        engine.draining = True
        sessions = list(engine.sessions.values())
        batches = max(1, min(len(sessions), int(window / interval) + 1))
        size = -(-len(sessions) // batches)  # ceil: the last batch is the smallest
        logger.info(
            "draining %d connection(s) in %d batch(es) of up to %d, every %.2f s",
            len(sessions),
            batches,
            size,
            interval,
        )
        closed = 0
        for start in range(0, len(sessions), size):
            if start:
                await anyio.sleep(interval)
            for session in sessions[start : start + size]:
                if not session.closed:
                    session.close("server shutting down")
                    closed += 1
        await self.wait_sessions_saved()
        return closed

    async def shutdown(self) -> None:
        """Close every connection with reason "server shutting down"."""
        await self.engine.shutdown()

    def spawn(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, what: str | None = None
    ) -> None:
        """Run ``func(*args)`` in the server's task group. What it raises is logged at
        ERROR (as ``what`` failing) and ends there: the server keeps serving."""
        spawn(self.engine.running_group, logger, what, func, *args)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a handler's coroutine (which logs its own failures) in a task of the
        server's: for handlers that answer no client's input (disconnects, server events)."""
        self.engine.running_group.start_soon(_finish, coro)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(self, None, scope, receive, send)
        else:
            await self.engine.serve(scope, receive, send)

    def serve(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """What answers an HTTP or websocket ``scope`` (see ``EngineServer.serve``)."""
        return self.engine.serve(scope, receive, send)

    # ------------------------------------------------------------------ engine callbacks

    def _engine_connect(self, session: Session) -> None:
        conn = session.upper = Connection(self, session)
        self._connect_deadlines.add(conn.check_connected)
        if self.observer is not None:
            self.observer.session_opened(session)

    def _engine_upgrade(self, session: Session) -> None:
        if self.observer is not None:
            self.observer.session_upgraded(session)

    def _engine_message(self, session: Session, data: str | bytes) -> Awaitable[None] | None:
        conn: Connection = session.upper
        return conn.on_message(data)

    def _engine_disconnect(self, session: Session, reason: str) -> None:
        conn: Connection | None = session.upper
        if conn is not None:
            conn.closed(reason)
        if self.observer is not None:
            self.observer.session_closed(session, reason)

    def _connect(self, conn: Connection, name: str, auth: Any) -> Awaitable[None] | None:
        if not isinstance(auth, dict):
            auth = {}
        nsp = self._namespaces.get(name)
        if nsp is not None:
            return nsp.connect(conn, auth)
        if self._parents:
            return self._connect_dynamic(conn, name, auth)
        self._invalid_namespace(conn, name)
        return None

    async def _connect_dynamic(self, conn: Connection, name: str, auth: dict[str, Any]) -> None:
        for parent in self._parents:
            try:
                matched = await parent.matches(name, auth)
            except Exception:
                logger.exception("namespace matcher %r failed for %.60r", parent.matcher, name)
                matched = False
            if not matched:
                continue
            nsp = self._namespaces.get(name)
            if nsp is None:
                if self._children >= self.limits.max_dynamic_namespaces:
                    _bound_hit.log(
                        logging.WARNING,
                        "expected at most %d dynamic namespaces alive (limits."
                        "max_dynamic_namespaces), got a CONNECT to a new one, %.60r; refused",
                        self.limits.max_dynamic_namespaces,
                        name,
                    )
                    break
                nsp = self._namespaces[name] = parent.child(name)
                self._children += 1
            # A child lives while it has sockets: one that is refused leaves nothing behind.
            await nsp.connect(conn, auth)
            return
        self._invalid_namespace(conn, name)

    def _invalid_namespace(self, conn: Connection, name: str) -> None:
        logger.info("session %s: expected a known namespace, got %r", conn.session.sid, name)
        conn.connected_or_refused(name)
        conn.send_packet(sio.Packet(sio.PacketType.CONNECT_ERROR, name, INVALID_NAMESPACE))
        if self.observer is not None:
            self.observer.socket_refused(None, name, INVALID_NAMESPACE["message"])


async def _finish(coro: Coroutine[Any, Any, None]) -> None:
    await coro
