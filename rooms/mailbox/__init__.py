"""The durable mailbox: messages for an identity the application chooses (a user id, a
device id), kept until a client of that identity acknowledges them.

``await mailbox.send("user-42", "invoice", {...})`` keeps the message, then delivers it to
every connected socket of ``user-42`` on any process; one that connects later gets what is
waiting, oldest first. Each is sent as ``event`` with its arguments and the message id as the
last argument, with an ack: the first client ack removes it (at-least-once; a client drops
duplicates by id). A message not acked within ``ack_timeout`` stays, and that socket gets no
more until it reconnects. Bounds, per identity: ``max_messages`` (past it ``overflow`` is
``"drop-oldest"``, logged and counted, or ``"reject"``: ``send`` raises
:class:`MailboxFull`) and ``max_age`` seconds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio

from rooms._retry import Backoff
from rooms.brokers import Broker, redis_for
from rooms.exceptions import AckTimeout, Disconnected, RoomsError
from rooms.mailbox.memory import MemoryMailboxStore
from rooms.mailbox.store import Mail, MailboxStore, Overflow

if TYPE_CHECKING:
    from rooms.emitter import Emitter
    from rooms.server import Server
    from rooms.socket import Socket

__all__ = ["Mail", "Mailbox", "MailboxFull", "MailboxStore"]

logger = logging.getLogger("rooms.mailbox")

# The server-side event that tells every process an identity has new mail.
NEW_MAIL = "rooms:mailbox"
_BATCH = 64


class MailboxFull(RoomsError):
    """``overflow="reject"`` and the identity's mailbox holds ``max_messages`` already."""


class Mailbox:
    """Pass to ``rooms.Server(mailbox=...)`` (or ``rooms.Emitter(..., mailbox=...)``), then
    ``await mailbox.send(identity, event, *args)`` from handlers, HTTP routes or scripts.

    ``identify(socket)`` names a connected socket's identity (or None: no mail), after the
    connect handler ran, so it can read ``socket.data``. ``store``: ``"memory"`` (this
    process), ``"redis"`` (shared, survives every server process; needs a Redis broker) or
    ``"auto"``: Redis when the broker is.
    """

    def __init__(
        self,
        identify: Callable[[Socket], str | None] | None = None,
        *,
        namespace: str = "/",
        max_messages: int = 1000,
        max_age: float = 7 * 24 * 3600,
        overflow: Overflow = "drop-oldest",
        ack_timeout: float = 30.0,
        store: Literal["auto", "memory", "redis"] = "auto",
    ) -> None:
        if overflow not in ("drop-oldest", "reject"):
            raise ValueError(f"expected overflow 'drop-oldest' or 'reject', got {overflow!r}")
        self.identify = identify or (lambda socket: None)
        self.namespace = namespace
        self.max_messages = max_messages
        self.max_age = max_age
        self.overflow: Overflow = overflow
        self.ack_timeout = ack_timeout
        self.store_kind = store
        self.store: MailboxStore | None = None
        self._server: Server | None = None
        self._emitter: Emitter | None = None
        self._sockets: dict[str, dict[str, Socket]] = {}  # identity -> sid -> socket
        self._identity_of: dict[str, str] = {}  # sid -> identity (a disconnect looks it up)
        self._wakes: dict[str, anyio.Event] = {}  # sid -> its delivery loop's wake-up
        # What this process did with mail: sent to a client, acknowledged by it (and so
        # removed), and sent but not acknowledged (kept, to be sent again on the identity's
        # next connection: a redelivery to come).
        self.delivered = 0
        self.acked = 0
        self.redelivered = 0
        self._acked_event: anyio.Event | None = None

    # ------------------------------------------------------------------ sending

    async def send(self, identity: str, event: str, *args: Any) -> str:
        """Keep a message for ``identity`` and deliver it where it is connected; its id.

        Arguments must be JSON-able. Raises :class:`MailboxFull` (overflow ``"reject"``)."""
        store = self.store
        if store is None:
            raise RoomsError("expected a running server or open emitter for this mailbox")
        try:
            json.dumps([event, *args])  # checked here: a bad message must not reach a client
        except (TypeError, ValueError) as exc:
            raise TypeError(f"expected JSON-able mail arguments, got {exc}") from None
        mail_id = await store.put(identity, event, args)
        if mail_id is None:
            raise MailboxFull(
                f"expected room in the mailbox of {identity!r}, got {self.max_messages} waiting"
            )
        self._wake(identity)
        if self._server is not None and self._server.node is not None:
            await self._server.of(self.namespace).server_side_emit(NEW_MAIL, identity)
        elif self._emitter is not None:
            await self._emitter.of(self.namespace).server_side_emit(NEW_MAIL, identity)
        return mail_id

    async def count(self, identity: str) -> int:
        """How many messages wait for ``identity`` (delivered but not acked included)."""
        if self.store is None:
            raise RoomsError("expected a running server or open emitter for this mailbox")
        return await self.store.count(identity)

    async def wait_acked(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``acked`` reaches ``count`` (for tests and tools)."""
        with anyio.fail_after(timeout):
            while self.acked < count:
                self._acked_event = anyio.Event()
                await self._acked_event.wait()

    # ------------------------------------------------------------------ binding

    def _store_for(
        self, broker: Broker | None, prefix: str, clock: Callable[[], float]
    ) -> MailboxStore:
        redis = redis_for(self.store_kind, broker, "the redis mailbox")
        if redis is None:
            return MemoryMailboxStore(clock, self.max_messages, self.max_age, self.overflow)
        from rooms.mailbox.redis import RedisMailboxStore

        return RedisMailboxStore(redis, prefix, self.max_messages, self.max_age, self.overflow)

    def attach(self, server: Server) -> None:
        """Called by the server it is given to: every process hears of new mail."""
        server.of(self.namespace).on_server_event(NEW_MAIL)(self._notified)

    def start(self, server: Server) -> None:
        """Called as the server starts: the store opens beside its broker."""
        node = server.node
        self._server = server
        self.store = self._store_for(
            node.broker if node else None, node.prefix if node else "rooms", server.engine.clock
        )

    def stop(self) -> None:
        """Called as the server (or emitter) stops."""
        self.store = None
        self._server = self._emitter = None
        for wake in self._wakes.values():
            wake.set()

    def start_emitter(self, emitter: Emitter) -> None:
        """Called as an emitter opens: mail kept from there goes to Redis."""
        # Redis only: a memory store here would keep the mail where no server can see it.
        redis = redis_for("redis", emitter.broker, "an emitter's mailbox")
        self._emitter = emitter
        self.store = self._store_for(redis, emitter.prefix, anyio.current_time)

    # ------------------------------------------------------------------ delivering

    def _notified(self, identity: str) -> None:
        """Another process (or an emitter) kept mail for ``identity``."""
        if isinstance(identity, str):
            self._wake(identity)

    def _wake(self, identity: str) -> None:
        for sid in self._sockets.get(identity, ()):
            wake = self._wakes.get(sid)
            if wake is not None:
                wake.set()

    def socket_connected(self, socket: Socket) -> None:
        """Called for every socket that connects: one of this mailbox's namespace whose
        identity is known gets its mail, until it leaves."""
        if socket.nsp.name != self.namespace or self._server is None:
            return
        try:
            identity = self.identify(socket)
        except Exception:
            logger.exception("mailbox identify() failed for %s", socket.id)
            return
        if identity is None:
            return
        self._sockets.setdefault(identity, {})[socket.id] = socket
        self._identity_of[socket.id] = identity
        socket.on_leave(self._socket_gone)
        self._server.spawn(self._deliver, socket, identity)

    def _socket_gone(self, socket: Socket, reason: str) -> None:
        identity = self._identity_of.pop(socket.id, None)
        if identity is not None:
            sockets = self._sockets.get(identity, {})
            sockets.pop(socket.id, None)
            if not sockets:
                self._sockets.pop(identity, None)
        wake = self._wakes.pop(socket.id, None)
        if wake is not None:
            wake.set()

    async def _deliver(self, socket: Socket, identity: str) -> None:
        """Send ``identity``'s mail to ``socket`` in order, one ack at a time. A store that
        fails (Redis away) is retried with backoff; nothing here may take the server down."""
        backoff = Backoff(0.1, 5.0)
        while socket.connected and self.store is not None:
            try:
                await self._deliver_until_idle_or_gone(socket, identity)
                return
            except Exception:
                logger.exception(
                    "mailbox of %s: delivery to %s failed; retrying", identity, socket.id
                )
                await backoff.wait()

    async def _deliver_until_idle_or_gone(self, socket: Socket, identity: str) -> None:
        after: str | None = None
        first = True
        while socket.connected and self.store is not None:
            # Armed before looking, so mail kept meanwhile is not missed.
            wake = self._wakes[socket.id] = anyio.Event()
            batch = await self.store.pending(identity, after, _BATCH)
            observer = self._server.observer if self._server is not None else None
            if first and observer is not None:
                observer.mail_waiting(len(batch))
            first = False
            if not batch:
                await wake.wait()
                continue
            for mail in batch:
                self.delivered += 1
                try:
                    await socket.emit_with_ack(
                        mail.event, *mail.args, mail.id, timeout=self.ack_timeout
                    )
                except AckTimeout:
                    self.redelivered += 1
                    logger.info(
                        "mailbox of %s: %s not acked by %s; kept for its next connection",
                        identity,
                        mail.id,
                        socket.id,
                    )
                    self._wakes.pop(socket.id, None)
                    return
                except Disconnected:
                    self.redelivered += 1
                    return
                store = self.store
                if store is None:
                    return
                await store.remove(identity, mail.id)
                after = mail.id
                self.acked += 1
                if self._acked_event is not None:
                    self._acked_event.set()
        self._wakes.pop(socket.id, None)
