"""Relay: serve a session's requests from whichever process receives them.

Without sticky sessions (``uvicorn --workers 4``, or processes behind one load balancer),
a long-polling client's GETs, POSTs and its websocket upgrade land on any process, but its
Engine.IO session lives in one: the one whose node uid starts the sid. A process that
receives a request for a session another live process owns relays the whole ASGI exchange
to it through the broker: the scope first, then every ASGI message both ways. The owner
runs its ordinary engine code on the relayed ``receive``/``send``, as if the request had
come to it, so polling, the probe upgrade and websockets all work unchanged.

Two sides, each keyed by a stream id:

- front (here is the client): pumps ``receive()`` to the owner and the owner's messages to
  ``send()``, until the owner says the exchange ended;
- back (here is the session): runs the engine on the relayed messages and tells the front
  when the exchange ended.

A front that hears nothing from the owner for ``idle_timeout`` (the owner pings every
``ping_interval``, so a live exchange is never that quiet) or whose owner leaves the
cluster answers as for an unknown session, and the client reconnects. A back whose front's
process leaves sees the client disconnect, so its handler never waits forever.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rooms._types import Message, Receive, Scope, Send
from rooms.protocol.cluster import Forward, headers_from_wire, headers_to_wire
from rooms.protocol.engineio import HandshakeError

if TYPE_CHECKING:
    from rooms.cluster.node import Node
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.cluster")

END = "relay.end"
Inbox = MemoryObjectSendStream[dict[str, Any]]

_SCOPE_KEYS = ("type", "asgi", "http_version", "method", "scheme", "path", "root_path")


def scope_to_wire(scope: Scope) -> dict[str, Any]:
    """The JSON-able part of an HTTP or websocket scope (what the owner needs)."""
    wire = {key: scope[key] for key in _SCOPE_KEYS if key in scope}
    wire["query_string"] = scope.get("query_string", b"").decode("latin-1")
    wire["headers"] = headers_to_wire(scope["headers"])
    for key in ("client", "server"):
        if scope.get(key):
            wire[key] = list(scope[key])
    if "subprotocols" in scope:
        wire["subprotocols"] = list(scope["subprotocols"])
    # Extension names only: the owner checks which ones the real server supports.
    wire["extensions"] = {name: {} for name in scope.get("extensions") or {}}
    return wire


def scope_from_wire(wire: dict[str, Any]) -> Scope:
    scope: Scope = dict(wire)
    scope["query_string"] = str(wire.get("query_string", "")).encode("latin-1")
    scope["headers"] = headers_from_wire(wire.get("headers"))
    for key in ("client", "server"):
        value = wire.get(key)
        if isinstance(value, list):
            scope[key] = tuple(value)
    return scope


def message_to_wire(message: Message) -> dict[str, Any]:
    """An ASGI message, headers as text (bytes elsewhere travel as binary blobs)."""
    wire = dict(message)
    if "headers" in wire:
        wire["headers"] = headers_to_wire(wire["headers"])
    return wire


def message_from_wire(wire: dict[str, Any]) -> Message:
    message = dict(wire)
    if "headers" in message:
        message["headers"] = headers_from_wire(message["headers"])
    return message


def _disconnect(kind: str) -> dict[str, Any]:
    if kind == "websocket":
        return {"type": "websocket.disconnect", "code": 1006}
    return {"type": "http.disconnect"}


class Relay:
    """Relays exchanges for sessions owned by other processes (see the module docstring)."""

    def __init__(
        self, node: Node, engine: EngineServer, idle_timeout: float, buffer: int = 4096
    ) -> None:
        self.node = node
        self.engine = engine
        self.idle_timeout = idle_timeout
        self.buffer = buffer
        self.relayed = 0  # exchanges this process forwarded to an owner
        self.served = 0  # exchanges this process served for another
        self._fronts: dict[str, tuple[str, Inbox]] = {}  # stream -> (owner, inbox)
        self._backs: dict[tuple[str, str], tuple[str, Inbox]] = {}  # (front, stream) -> kind
        node.on_peer_gone.append(self._peer_gone)

    def owner_of(self, sid: str) -> str | None:
        """The live process that owns ``sid``, if that is another one."""
        from rooms.cluster.node import UID_LENGTH

        owner = sid[:UID_LENGTH]
        if len(sid) > UID_LENGTH and owner != self.node.uid and owner in self.node.peers:
            return owner
        return None

    # ------------------------------------------------------------------ front

    async def forward(self, scope: Scope, receive: Receive, send: Send, owner: str) -> None:
        """Carry one exchange of the client in front of us to the session's owner."""
        stream = secrets.token_hex(8)
        inbox, replies = anyio.create_memory_object_stream[dict[str, Any]](self.buffer)
        self._fronts[stream] = (owner, inbox)
        self.relayed += 1
        ended = started = False
        try:
            with inbox, replies:
                opening = {"type": "scope", "scope": scope_to_wire(scope)}
                await self.node.publish("/", Forward(stream, opening), to=owner)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._uplink, stream, owner, receive)
                    ended, started = await self._downlink(replies, send)
                    tg.cancel_scope.cancel()
        finally:
            self._fronts.pop(stream, None)
        if not ended:
            logger.info("relay %s: the owner %s went quiet or away", stream, owner)
            self.node.send("/", Forward(stream, _disconnect(scope["type"])), to=owner)
            if not started:
                await _unknown_session(self.engine, scope, receive, send)

    async def _uplink(self, stream: str, owner: str, receive: Receive) -> None:
        while True:
            message = await receive()
            await self.node.publish("/", Forward(stream, message_to_wire(message)), to=owner)
            if message["type"] in ("http.disconnect", "websocket.disconnect"):
                return

    async def _downlink(
        self, replies: MemoryObjectReceiveStream[dict[str, Any]], send: Send
    ) -> tuple[bool, bool]:
        """Pass the owner's messages on; (ended properly, a response was started)."""
        started = False
        while True:
            with anyio.move_on_after(self.idle_timeout):
                try:
                    event = await replies.receive()
                except anyio.EndOfStream:  # the owner left the cluster
                    return False, started
                if event.get("type") == END:
                    return True, started
                started = True
                try:
                    await send(message_from_wire(event))
                except Exception as exc:  # the client went away; the uplink reports it
                    logger.debug("relay: the client vanished: %r", exc)
                continue
            return False, started  # idle for too long

    # ------------------------------------------------------------------ back

    def on_forward(self, uid: str, body: Forward) -> None:
        """A relay message from process ``uid``."""
        front = self._fronts.get(body.stream)
        if front is not None and front[0] == uid:
            _offer(front[1], body.event)
            return
        back = self._backs.get((uid, body.stream))
        if back is not None:
            _offer(back[1], body.event)
        elif body.event.get("type") == "scope" and isinstance(body.event.get("scope"), dict):
            self._serve(uid, body.stream, scope_from_wire(body.event["scope"]))
        elif body.event.get("type") not in (END, "http.disconnect", "websocket.disconnect"):
            self.node.send("/", Forward(body.stream, {"type": END}), to=uid)  # unknown to us

    def _serve(self, front: str, stream: str, scope: Scope) -> None:
        inbox, messages = anyio.create_memory_object_stream[dict[str, Any]](self.buffer)
        self._backs[(front, stream)] = (str(scope.get("type")), inbox)
        self.served += 1
        self.engine.running_group.start_soon(self._run_back, front, stream, scope, inbox, messages)

    async def _run_back(
        self,
        front: str,
        stream: str,
        scope: Scope,
        inbox: Inbox,
        messages: MemoryObjectReceiveStream[dict[str, Any]],
    ) -> None:
        kind = str(scope.get("type"))

        async def receive() -> Message:
            try:
                return message_from_wire(await messages.receive())
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return _disconnect(kind)

        async def send(message: Message) -> None:
            await self.node.publish("/", Forward(stream, message_to_wire(message)), to=front)
            if message["type"] == "websocket.close":
                # As an ASGI server does: once the app closes, its receive() says so.
                _offer(inbox, {"type": "websocket.disconnect", "code": message.get("code", 1000)})

        try:
            with inbox, messages:
                await self.engine(scope, receive, send)
        except Exception:
            logger.exception("relay %s: serving an exchange for %s failed", stream, front)
        finally:
            self._backs.pop((front, stream), None)
            self.node.send("/", Forward(stream, {"type": END}), to=front)

    # ------------------------------------------------------------------ membership

    def _peer_gone(self, uid: str) -> None:
        for owner, inbox in list(self._fronts.values()):
            if owner == uid:
                inbox.close()  # the front answers as for an unknown session
        for (front, _), (_, inbox) in list(self._backs.items()):
            if front == uid:
                inbox.close()  # the engine reads a disconnect


def _offer(inbox: Inbox, event: dict[str, Any]) -> None:
    try:
        inbox.send_nowait(event)
    except anyio.WouldBlock:
        # The other side is not keeping up: end the exchange rather than buffer forever.
        logger.warning("relay: expected the peer to keep up, got a full buffer; closing")
        inbox.close()
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


async def _unknown_session(
    engine: EngineServer, scope: Scope, receive: Receive, send: Send
) -> None:
    from rooms.engine.polling import respond_error
    from rooms.engine.websocket import deny

    try:
        if scope["type"] == "websocket":
            await deny(scope, send, HandshakeError.UNKNOWN_SID, receive)
        else:
            await respond_error(engine, scope, send, HandshakeError.UNKNOWN_SID)
    except Exception as exc:  # the client may be gone too
        logger.debug("relay: could not answer the client: %r", exc)
