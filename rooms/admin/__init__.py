"""The Socket.IO Admin UI (npm ``@socket.io/admin-ui`` 0.5.1) for a rooms server.

::

    server = rooms.Server(...)
    server.instrument(auth={"username": "admin", "password": os.environ["ADMIN_PASSWORD"]})

Then open the UI (the hosted one, or its ``ui/dist`` folder served by the application),
with the server's URL, the credentials, and the admin namespace (``/admin``).

An application of the Socket.IO API, beside the user's handlers (as the durable mailbox
is): a namespace of its own whose clients are the UI, and an observer of the server
(:mod:`rooms.admin.feed`) that reports what happens there. In a cluster every process
reports to the admin clients of every process, ``all_sockets`` lists the sockets of every
process, and actions reach sockets wherever they are. See docs/guides/admin-ui.md.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import anyio

from rooms._tasks import maybe_await
from rooms.admin import actions
from rooms.admin.actions import Invalid, ignored
from rooms.admin.feed import Feed
from rooms.admin.serialize import local_view, socket_view
from rooms.admin.stats import default_server_id
from rooms.exceptions import AckTimeout, ClusterTimeout, ConnectionRefused, Disconnected
from rooms.observer import Observer, Observers
from rooms.socket import Socket

if TYPE_CHECKING:
    from rooms.namespace import Namespace
    from rooms.remote import RemoteSocket
    from rooms.selectors import ServerSelection
    from rooms.server import Server

__all__ = ["Admin", "AuthCheck", "Mode"]

logger = logging.getLogger("rooms.admin")

Mode = Literal["development", "production"]
AuthCheck = Callable[[dict[str, Any]], bool | Awaitable[bool]]
"""``check(auth)``: whether the CONNECT payload of an admin client may in."""

INVALID_CREDENTIALS = "invalid credentials"
"""The refusal the UI recognises (it then says "Invalid credentials" under its form)."""
# The server-side event by which a process asks the others for the Engine.IO facts of their
# sockets (fetch_sockets carries the Socket.IO ones only).
CLIENTS = "rooms:admin:clients"
ACTION_FEATURES = ("JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT")


def features(mode: Mode, read_only: bool) -> list[str]:
    """``config.supportedFeatures`` (``EMIT`` is not offered: no ``emit`` action here, and
    the 0.5.1 UI never sends one)."""
    found = [] if read_only else list(ACTION_FEATURES)
    found.append("AGGREGATED_EVENTS")
    if mode == "development":
        found.append("ALL_EVENTS")
    return found


class Admin(Feed):
    """The Admin UI's side of ``server``: made by :meth:`rooms.Server.instrument` (or
    directly, with the same arguments and two more).

    ``auth``: None or False (no check: a WARNING says the namespace is open), a mapping
    ``{"username": ..., "password": ...}`` compared in constant time, or a callable
    ``check(auth) -> bool`` (sync or async) given the client's CONNECT payload. A client
    that fails is refused with ``"invalid credentials"``.

    ``mode``: ``"development"`` reports every socket, room and event as it happens and
    lists every socket to a new admin client; ``"production"`` only the ``server_stats``
    every ``stats_interval`` seconds (the Dashboard and Servers pages). ``read_only``:
    no actions (they are not offered, and ignored if sent). ``server_id`` names this
    process on the Servers page (default ``hostname#pid``, and the cluster node's uid).
    ``max_queue`` bounds the events waiting to be sent (past it they are dropped and
    counted in ``dropped``).
    """

    def __init__(
        self,
        server: Server,
        *,
        auth: Mapping[str, str] | AuthCheck | Literal[False] | None = None,
        mode: Mode = "development",
        read_only: bool = False,
        namespace: str = "/admin",
        server_id: str | None = None,
        stats_interval: float = 2.0,
        max_queue: int = 10_000,
    ) -> None:
        if mode not in ("development", "production"):
            raise ValueError(f"expected mode 'development' or 'production', got {mode!r}")
        if not isinstance(namespace, str) or not namespace.startswith("/") or namespace == "/":
            raise ValueError(
                f"expected a namespace of its own for the Admin UI ('/admin'), got {namespace!r}"
            )
        if any(isinstance(o, Admin) and o.namespace == namespace for o in _observers(server)):
            raise RuntimeError(f"expected one Admin UI per namespace, got a second on {namespace}")
        super().__init__(
            server,
            namespace,
            mode == "development",
            server_id if server_id is not None else default_server_id(server),
            stats_interval,
            max_queue,
        )
        self.mode: Mode = mode
        self.read_only = read_only
        self.features = features(mode, read_only)
        self._check = _auth_check(auth)
        if self._check is None:
            logger.warning(
                "the Admin UI namespace %s is open: anyone who can reach this server can "
                "watch every socket%s; pass auth=... to instrument()",
                namespace,
                "" if read_only else " and disconnect it",
            )
        nsp = server.of(namespace)
        nsp.use(self._authenticate)
        nsp.on("connect", self._on_connect)
        nsp.on("_disconnect", self._act_disconnect)
        nsp.on("join", self._act_join)
        nsp.on("leave", self._act_leave)
        nsp.on_server_event(CLIENTS)(self._clients)
        server.observe(self)
        if server.is_running:  # instrumented late: the server will not start it
            self.start(server)

    def __repr__(self) -> str:
        return f"<Admin {self.namespace} {self.mode}{' read-only' if self.read_only else ''}>"

    # ------------------------------------------------------------------ connecting

    async def _authenticate(self, socket: Socket) -> None:
        check = self._check
        if check is not None and not await check(socket.handshake.auth):
            ignored.log(
                logging.INFO,
                "admin client from %s refused on %s: invalid credentials",
                socket.handshake.address,
                self.namespace,
            )
            raise ConnectionRefused(INVALID_CREDENTIALS)

    async def _on_connect(self, socket: Socket) -> None:
        # Emitted here, it waits for the CONNECT reply and follows it (an event before the
        # CONNECT would be lost to the UI, which listens only once connected).
        await socket.emit("config", {"supportedFeatures": list(self.features)})
        if self.development:
            self.server.spawn(self._send_all_sockets, socket, what="the Admin UI's all_sockets")

    async def _send_all_sockets(self, socket: Socket) -> None:
        views = await self.all_sockets()
        with contextlib.suppress(Disconnected):  # the admin client left meanwhile
            await socket.emit("all_sockets", views)

    async def all_sockets(self) -> list[dict[str, Any]]:
        """Every socket of every namespace of this process, on every process of the cluster,
        as the UI wants them (the admin clients included, as Node's server lists them)."""
        found: dict[str, list[Socket | RemoteSocket]] = {}
        facts: dict[str, dict[str, list[str]]] = {}

        async def fetch(name: str, nsp: Namespace) -> None:
            try:
                found[name] = await nsp.fetch_sockets()
            except ClusterTimeout as exc:
                logger.warning("all_sockets of %s: %s (listing those found)", name, exc)
                found[name] = list(exc.responses)

        async def ask() -> None:
            try:
                answers = await self.server.of(self.namespace).server_side_emit_with_ack(CLIENTS)
            except AckTimeout as exc:
                answers = exc.responses
            for answer in answers:
                _merge_facts(facts, answer)

        namespaces = self.server.namespaces
        async with anyio.create_task_group() as tg:
            for name, nsp in namespaces.items():
                tg.start_soon(fetch, name, nsp)
            if self.server.node is not None:
                tg.start_soon(ask)
        views = []
        for name in namespaces:  # in the order of the namespaces: "/" first
            known = facts.get(name, {})
            for found_socket in found.get(name, ()):
                if isinstance(found_socket, Socket):
                    views.append(local_view(found_socket))
                else:  # another process's, with the facts it gave (none: it is newer)
                    client_id, transport = known.get(found_socket.id, (found_socket.id, "polling"))
                    views.append(socket_view(found_socket, client_id, transport))
        return views

    def _clients(self) -> dict[str, dict[str, list[str]]]:
        """For another process's ``all_sockets``: each socket's Engine.IO session id and
        transport, by namespace."""
        return {
            name: {sid: [s.session.sid, s.session.transport] for sid, s in nsp.sockets.items()}
            for name, nsp in self.server.namespaces.items()
            if nsp.sockets
        }

    # ------------------------------------------------------------------ actions

    async def _act_disconnect(self, socket: Socket, *args: Any) -> None:
        """``_disconnect(nsp, close, filter?)``."""
        if self._allowed(socket, "_disconnect"):
            try:
                actions.count(args, 2)
                target = self._target(args[0], args, 2)
                close = actions.flag(args[1], "close")
            except Invalid as exc:
                self._invalid(socket, "_disconnect", exc)
                return
            self._audit(socket, "_disconnect", args)
            await self._cluster_wide("_disconnect", target.disconnect_sockets(close))

    async def _act_join(self, socket: Socket, *args: Any) -> None:
        """``join(nsp, room, filter?)``."""
        if self._allowed(socket, "join"):
            try:
                actions.count(args, 2)
                target = self._target(args[0], args, 2)
                room = actions.room(self.server, args[1])
            except Invalid as exc:
                self._invalid(socket, "join", exc)
                return
            self._audit(socket, "join", args)
            await self._cluster_wide("join", target.sockets_join(room))

    async def _act_leave(self, socket: Socket, *args: Any) -> None:
        """``leave(nsp, room, filter?)``."""
        if self._allowed(socket, "leave"):
            try:
                actions.count(args, 2)
                target = self._target(args[0], args, 2)
                room = actions.room(self.server, args[1])
            except Invalid as exc:
                self._invalid(socket, "leave", exc)
                return
            self._audit(socket, "leave", args)
            await self._cluster_wide("leave", target.sockets_leave(room))

    def _target(self, name: Any, args: tuple[Any, ...], index: int) -> ServerSelection:
        nsp = actions.namespace(self.server, name)
        room_filter = actions.room_filter(self.server, args, index)
        return nsp if room_filter is None else nsp.in_(room_filter)

    def _allowed(self, socket: Socket, action: str) -> bool:
        if self.read_only:
            ignored.log(
                logging.INFO,
                "admin socket %s: %s ignored: expected no action (read_only), got one",
                socket.id,
                action,
            )
        return not self.read_only

    def _invalid(self, socket: Socket, action: str, exc: Invalid) -> None:
        ignored.log(logging.INFO, "admin socket %s: %s ignored: %s", socket.id, action, exc)

    def _audit(self, socket: Socket, action: str, args: tuple[Any, ...]) -> None:
        logger.info(
            "admin socket %s from %s: %s %.200r", socket.id, socket.handshake.address, action, args
        )

    async def _cluster_wide(self, action: str, done: Awaitable[None]) -> None:
        try:
            await done
        except ClusterTimeout as exc:
            logger.warning("admin action %s: %s", action, exc)


def _auth_check(
    auth: Mapping[str, str] | AuthCheck | Literal[False] | None,
) -> Callable[[dict[str, Any]], Awaitable[bool]] | None:
    """The check an admin client's CONNECT payload goes through (None: no check)."""
    if auth is None or auth is False:
        return None
    if isinstance(auth, Mapping):
        username, password = auth.get("username"), auth.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or len(auth) != 2:
            raise TypeError(
                "expected auth={'username': str, 'password': str}, got a mapping with keys "
                f"{sorted(map(str, auth))}"
            )
        want_user, want_password = _utf8(username), _utf8(password)

        async def credentials(given: dict[str, Any]) -> bool:
            user, password = given.get("username"), given.get("password")
            if not isinstance(user, str) or not isinstance(password, str):
                return False
            # Both compared, in constant time, whatever the first says.
            user_ok = hmac.compare_digest(_utf8(user), want_user)
            password_ok = hmac.compare_digest(_utf8(password), want_password)
            return user_ok & password_ok

        return credentials
    if callable(auth):
        check = auth

        async def custom(given: dict[str, Any]) -> bool:
            return bool(await maybe_await(check(dict(given))))

        return custom
    raise TypeError(
        "expected auth None, False, {'username': ..., 'password': ...} or a callable, got "
        f"{type(auth).__name__}"
    )


def _observers(server: Server) -> tuple[Observer, ...]:
    observer = server.observer
    if observer is None:
        return ()
    return observer.observers if isinstance(observer, Observers) else (observer,)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # JSON may carry a lone surrogate


def _merge_facts(facts: dict[str, dict[str, list[str]]], answer: Any) -> None:
    """Add another process's answer to ``CLIENTS`` (anything malformed is left out)."""
    if not isinstance(answer, dict):
        return  # None: a process without the Admin UI
    for name, sockets in answer.items():
        if not isinstance(name, str) or not isinstance(sockets, dict):
            continue
        known = facts.setdefault(name, {})
        for sid, pair in sockets.items():
            if (
                isinstance(sid, str)
                and isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(p, str) for p in pair)
            ):
                known[sid] = pair
