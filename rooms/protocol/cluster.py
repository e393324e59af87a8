"""Messages between the processes of a cluster, and their byte encoding.

The shape follows Socket.IO's cluster adapter: ``{uid, nsp, type, data}``, where ``uid``
names the sending process and ``type`` one of :class:`MessageType`. Here each ``data`` is a
frozen dataclass, so a message is checked once, when it is decoded, and is typed after that.

On the wire a message is its JSON header, followed by binary blobs when it carries bytes::

    message := header-json                                  (no blobs: starts with "{")
             | 0x00 u32(len) header-json (u32(len) blob)*   (blobs, big-endian lengths)

Bytes inside user data become ``{"_placeholder": true, "num": n}`` (blob ``n``), as in
Socket.IO packets. A :class:`Broadcast` carries the Socket.IO packet already encoded, each
frame as one blob, so a receiving process delivers it without parsing it.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from rooms.exceptions import ProtocolError
from rooms.protocol.engineio import Frame, message_frame
from rooms.protocol.socketio import append_arg, dumps, has_binary, join_binary, split_binary


class MessageType(enum.IntEnum):
    """Socket.IO's cluster adapter message types, numbered as there."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13
    # rooms' own: HTTP and websocket traffic relayed to the process that owns a session.
    FORWARD = 20
    # rooms' own: connection state recovery for a client that came back before its old
    # connection was noticed gone (see rooms.recovery.resume).
    TAKE_OVER = 21
    TAKE_OVER_RESPONSE = 22
    # rooms' own: a process applied a SOCKETS_JOIN, SOCKETS_LEAVE or DISCONNECT_SOCKETS that
    # carried a requestId (the sender waits for every process before it returns).
    SOCKETS_DONE = 23


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Who receives a broadcast: members of ``rooms`` (everyone if empty) minus members of
    ``except_rooms``. ``volatile`` packets may be dropped for slow consumers; ``local`` keeps
    the broadcast on this process (it never travels)."""

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    volatile: bool = False
    local: bool = False


ALL = BroadcastOptions()


# ----------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True)
class InitialHeartbeat:
    """A process joined; everyone answers with a :class:`Heartbeat` addressed to it."""

    TYPE: ClassVar = MessageType.INITIAL_HEARTBEAT


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A process is alive (sent every ``heartbeat_interval``)."""

    TYPE: ClassVar = MessageType.HEARTBEAT


@dataclass(frozen=True, slots=True)
class AdapterClose:
    """A process is leaving the cluster cleanly."""

    TYPE: ClassVar = MessageType.ADAPTER_CLOSE


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver a Socket.IO EVENT, already encoded (``text`` and binary ``attachments``), to
    the sockets ``opts`` selects. With ``request_id`` the sender collects acks: each receiver
    answers with its recipient count, then one :class:`BroadcastAck` per ack, and forgets
    the acks still missing after ``timeout`` seconds."""

    TYPE: ClassVar = MessageType.BROADCAST
    opts: BroadcastOptions
    text: str
    attachments: tuple[bytes, ...] = ()
    request_id: str | None = None
    timeout: float | None = None
    offset: str | None = None  # connection state recovery's, appended when delivered

    @property
    def frames(self) -> list[Frame]:
        """The packet as Engine.IO frames, ready to queue."""
        text = self.text if self.offset is None else append_arg(self.text, self.offset)
        return [message_frame(text), *self.attachments]


@dataclass(frozen=True, slots=True)
class SocketsJoin:
    """The sockets ``opts`` selects join ``rooms``. With ``request_id`` (a server asking)
    each process answers :class:`SocketsDone` once it has; without (an emitter, or Socket.IO's
    own adapter) nobody answers."""

    TYPE: ClassVar = MessageType.SOCKETS_JOIN
    opts: BroadcastOptions
    rooms: frozenset[str]
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SocketsLeave:
    """The sockets ``opts`` selects leave ``rooms``; ``request_id`` as for :class:`SocketsJoin`."""

    TYPE: ClassVar = MessageType.SOCKETS_LEAVE
    opts: BroadcastOptions
    rooms: frozenset[str]
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class DisconnectSockets:
    """The sockets ``opts`` selects are disconnected (``close``: their whole connection);
    ``request_id`` as for :class:`SocketsJoin`."""

    TYPE: ClassVar = MessageType.DISCONNECT_SOCKETS
    opts: BroadcastOptions
    close: bool
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class SocketsDone:
    """The answer to a :class:`SocketsJoin`, :class:`SocketsLeave` or
    :class:`DisconnectSockets` with a ``request_id``: the sender's process has applied it to
    its own sockets (those of a namespace it does not have: none)."""

    TYPE: ClassVar = MessageType.SOCKETS_DONE
    request_id: str


@dataclass(frozen=True, slots=True)
class FetchSockets:
    TYPE: ClassVar = MessageType.FETCH_SOCKETS
    opts: BroadcastOptions
    request_id: str


@dataclass(frozen=True, slots=True)
class SocketDetails:
    """What a process tells another about one of its sockets."""

    id: str
    rooms: frozenset[str]
    data: Any
    handshake: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FetchSocketsResponse:
    TYPE: ClassVar = MessageType.FETCH_SOCKETS_RESPONSE
    request_id: str
    sockets: tuple[SocketDetails, ...]


@dataclass(frozen=True, slots=True)
class ServerSideEmit:
    """``data`` is ``[event, *args]`` for the other processes' server-event handlers."""

    TYPE: ClassVar = MessageType.SERVER_SIDE_EMIT
    data: list[Any]
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServerSideEmitResponse:
    TYPE: ClassVar = MessageType.SERVER_SIDE_EMIT_RESPONSE
    request_id: str
    data: list[Any]


@dataclass(frozen=True, slots=True)
class BroadcastClientCount:
    """How many of the receiver's sockets a broadcast with acks reached. A count of -1
    withdraws one recipient that disconnected before it answered."""

    TYPE: ClassVar = MessageType.BROADCAST_CLIENT_COUNT
    request_id: str
    client_count: int


@dataclass(frozen=True, slots=True)
class BroadcastAck:
    TYPE: ClassVar = MessageType.BROADCAST_ACK
    request_id: str
    data: list[Any]


@dataclass(frozen=True, slots=True)
class Forward:
    """One step of an ASGI exchange relayed between processes (see ``rooms.cluster.relay``):
    ``stream`` names the exchange; ``event`` is an ASGI message, or for the first step
    ``{"type": "scope", "scope": {...}}``."""

    TYPE: ClassVar = MessageType.FORWARD
    stream: str
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TakeOver:
    """The client of socket ``pid`` came back to the asking process: whoever still has that
    socket live cuts its transport (as a transport close), saves its session for recovery,
    then answers; everyone else answers at once."""

    TYPE: ClassVar = MessageType.TAKE_OVER
    pid: str
    request_id: str


@dataclass(frozen=True, slots=True)
class TakeOverResponse:
    """``found``: this process had the socket (live or being saved), and its session is saved."""

    TYPE: ClassVar = MessageType.TAKE_OVER_RESPONSE
    request_id: str
    found: bool


Body: TypeAlias = (
    InitialHeartbeat
    | Heartbeat
    | AdapterClose
    | Broadcast
    | SocketsJoin
    | SocketsLeave
    | DisconnectSockets
    | FetchSockets
    | FetchSocketsResponse
    | ServerSideEmit
    | ServerSideEmitResponse
    | BroadcastClientCount
    | BroadcastAck
    | Forward
    | TakeOver
    | TakeOverResponse
    | SocketsDone
)


@dataclass(frozen=True, slots=True)
class Message:
    """One cluster message: who sent it, for which namespace, and what it says."""

    uid: str
    nsp: str
    body: Body

    @property
    def type(self) -> MessageType:
        return self.body.TYPE


# ----------------------------------------------------------------------------- headers


def headers_to_wire(headers: Iterable[tuple[bytes, bytes]]) -> list[list[str]]:
    """ASGI headers as JSON can carry them: ``[[name, value], ...]``, latin-1 as in HTTP."""
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]


def headers_from_wire(value: Any) -> list[tuple[bytes, bytes]]:
    """The inverse of :func:`headers_to_wire`; anything malformed is left out."""
    return [
        (str(pair[0]).encode("latin-1"), str(pair[1]).encode("latin-1"))
        for pair in (value if isinstance(value, list) else ())
        if isinstance(pair, list) and len(pair) == 2
    ]


# ----------------------------------------------------------------------------- encoding

_LEN = struct.Struct(">I")
_BLOBS = b"\x00"


def _opts(opts: BroadcastOptions) -> dict[str, Any]:
    wire: dict[str, Any] = {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}
    if opts.volatile:
        wire["flags"] = {"volatile": True}
    return wire


def _user(value: Any, blobs: list[bytes]) -> Any:
    """User data: bytes anywhere become placeholders for blobs."""
    return split_binary(value, blobs) if has_binary(value) else value


def _as_is(value: Any, blobs: list[bytes]) -> Any:
    """User data, tried first as it is: most has no bytes, and looking costs more than
    encoding (a walk in Python over every value)."""
    return value


UserData = Callable[[Any, list[bytes]], Any]


def _data(body: Body, blobs: list[bytes], user: UserData) -> dict[str, Any] | None:
    if isinstance(body, Broadcast):
        # The packet travels as blobs, ahead of anything else: "packet" is their count.
        blobs.append(body.text.encode())
        blobs.extend(body.attachments)
        data: dict[str, Any] = {"opts": _opts(body.opts), "packet": 1 + len(body.attachments)}
        if body.request_id is not None:
            data["requestId"] = body.request_id
            data["timeout"] = body.timeout
        if body.offset is not None:
            data["offset"] = body.offset
        return data
    if isinstance(body, InitialHeartbeat | Heartbeat | AdapterClose):
        return None
    if isinstance(body, SocketsJoin | SocketsLeave | DisconnectSockets):
        data = {"opts": _opts(body.opts)}
        if isinstance(body, DisconnectSockets):
            data["close"] = body.close
        else:
            data["rooms"] = sorted(body.rooms)
        if body.request_id is not None:  # absent, as Socket.IO sends it, when none is asked
            data["requestId"] = body.request_id
        return data
    if isinstance(body, SocketsDone):
        return {"requestId": body.request_id}
    if isinstance(body, FetchSockets):
        return {"opts": _opts(body.opts), "requestId": body.request_id}
    if isinstance(body, FetchSocketsResponse):
        sockets = [
            {
                "id": s.id,
                "rooms": sorted(s.rooms),
                "data": user(s.data, blobs),
                "handshake": user(s.handshake, blobs),
            }
            for s in body.sockets
        ]
        return {"requestId": body.request_id, "sockets": sockets}
    if isinstance(body, ServerSideEmit):
        emitted: dict[str, Any] = {"packet": user(body.data, blobs)}
        if body.request_id is not None:
            emitted["requestId"] = body.request_id
        return emitted
    if isinstance(body, ServerSideEmitResponse | BroadcastAck):
        return {"requestId": body.request_id, "packet": user(body.data, blobs)}
    if isinstance(body, BroadcastClientCount):
        return {"requestId": body.request_id, "clientCount": body.client_count}
    if isinstance(body, TakeOver):
        return {"pid": body.pid, "requestId": body.request_id}
    if isinstance(body, TakeOverResponse):
        return {"requestId": body.request_id, "found": body.found}
    return {"stream": body.stream, "event": user(body.event, blobs)}  # Forward


def encode(message: Message) -> bytes:
    """Encode a message for a broker. Raises TypeError if user data is not JSON-able."""
    try:
        return _encode(message, _as_is)
    except TypeError:  # bytes somewhere (or what JSON cannot carry: that raises again)
        return _encode(message, _user)


def _encode(message: Message, user: UserData) -> bytes:
    blobs: list[bytes] = []
    header: dict[str, Any] = {"uid": message.uid, "nsp": message.nsp, "type": message.type}
    data = _data(message.body, blobs, user)
    if data is not None:
        header["data"] = data
    head = dumps(header).encode()
    if not blobs:
        return head
    parts = [_BLOBS, _LEN.pack(len(head)), head]
    for blob in blobs:
        parts.append(_LEN.pack(len(blob)))
        parts.append(blob)
    return b"".join(parts)


# ----------------------------------------------------------------------------- decoding


def _split(raw: bytes) -> tuple[bytes, list[bytes]]:
    if raw[:1] != _BLOBS:
        return raw, []
    try:
        (size,) = _LEN.unpack_from(raw, 1)
        at = 5 + size
        head = raw[5:at]
        blobs: list[bytes] = []
        while at < len(raw):
            (size,) = _LEN.unpack_from(raw, at)
            at += 4
            if at + size > len(raw):
                raise ProtocolError(f"expected a blob of {size} bytes, got {len(raw) - at}")
            blobs.append(raw[at : at + size])
            at += size
    except struct.error:
        raise ProtocolError("expected a length prefix, got a truncated message") from None
    return head, blobs


def _get(data: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"expected {what} in '{key}', got {value!r:.60}")
    return value


def _names(data: Any, key: str) -> frozenset[str]:
    value = _get(data, key, list, "a list of room names")
    if not all(isinstance(name, str) for name in value):
        raise ProtocolError(f"expected room names as strings in '{key}', got {value!r:.60}")
    return frozenset(value)


def _read_opts(data: Any) -> BroadcastOptions:
    wire = _get(data, "opts", dict, "broadcast options")
    flags = wire.get("flags") or {}
    return BroadcastOptions(
        _names(wire, "rooms"),
        _names(wire, "except"),
        volatile=isinstance(flags, dict) and flags.get("volatile") is True,
    )


def _read_user(value: Any, blobs: list[bytes]) -> Any:
    return join_binary(value, blobs) if blobs else value


def _read_broadcast(data: Any, blobs: list[bytes]) -> Broadcast:
    count = _get(data, "packet", int, "the number of packet frames")
    if not 1 <= count <= len(blobs):
        raise ProtocolError(f"expected 1-{len(blobs)} packet frames, got {count}")
    try:
        text = blobs[0].decode()
    except UnicodeDecodeError:
        raise ProtocolError("expected a UTF-8 packet text, got invalid bytes") from None
    request_id = data.get("requestId")
    timeout = data.get("timeout")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"expected a string requestId, got {request_id!r:.60}")
    if timeout is not None and not isinstance(timeout, int | float):
        raise ProtocolError(f"expected a number of seconds in 'timeout', got {timeout!r:.60}")
    offset = data.get("offset")
    if offset is not None and not isinstance(offset, str):
        raise ProtocolError(f"expected a string offset, got {offset!r:.60}")
    return Broadcast(_read_opts(data), text, tuple(blobs[1:count]), request_id, timeout, offset)


def _read_details(item: Any, blobs: list[bytes]) -> SocketDetails:
    return SocketDetails(
        _get(item, "id", str, "a socket id"),
        _names(item, "rooms"),
        _read_user(item.get("data"), blobs),
        _read_user(_get(item, "handshake", dict, "a handshake object"), blobs),
    )


def _request_id(data: Any) -> str:
    return _get(data, "requestId", str, "a request id")  # type: ignore[no-any-return]


def _maybe_request_id(data: Any) -> str | None:
    """The request id of a message that may carry one (then an answer is wanted)."""
    return _request_id(data) if isinstance(data, dict) and "requestId" in data else None


def _packet(data: Any, blobs: list[bytes]) -> list[Any]:
    return _read_user(_get(data, "packet", list, "a list of arguments"), blobs)  # type: ignore[no-any-return]


_READERS: dict[MessageType, Callable[[Any, list[bytes]], Body]] = {
    MessageType.INITIAL_HEARTBEAT: lambda d, b: InitialHeartbeat(),
    MessageType.HEARTBEAT: lambda d, b: Heartbeat(),
    MessageType.ADAPTER_CLOSE: lambda d, b: AdapterClose(),
    MessageType.BROADCAST: _read_broadcast,
    MessageType.SOCKETS_JOIN: lambda d, b: SocketsJoin(
        _read_opts(d), _names(d, "rooms"), _maybe_request_id(d)
    ),
    MessageType.SOCKETS_LEAVE: lambda d, b: SocketsLeave(
        _read_opts(d), _names(d, "rooms"), _maybe_request_id(d)
    ),
    MessageType.DISCONNECT_SOCKETS: lambda d, b: DisconnectSockets(
        _read_opts(d), _get(d, "close", bool, "true or false"), _maybe_request_id(d)
    ),
    MessageType.SOCKETS_DONE: lambda d, b: SocketsDone(_request_id(d)),
    MessageType.FETCH_SOCKETS: lambda d, b: FetchSockets(_read_opts(d), _request_id(d)),
    MessageType.FETCH_SOCKETS_RESPONSE: lambda d, b: FetchSocketsResponse(
        _request_id(d),
        tuple(_read_details(item, b) for item in _get(d, "sockets", list, "a list of sockets")),
    ),
    MessageType.SERVER_SIDE_EMIT: lambda d, b: ServerSideEmit(
        _packet(d, b), _request_id(d) if isinstance(d, dict) and "requestId" in d else None
    ),
    MessageType.SERVER_SIDE_EMIT_RESPONSE: lambda d, b: ServerSideEmitResponse(
        _request_id(d), _packet(d, b)
    ),
    MessageType.BROADCAST_CLIENT_COUNT: lambda d, b: BroadcastClientCount(
        _request_id(d), _get(d, "clientCount", int, "a client count")
    ),
    MessageType.BROADCAST_ACK: lambda d, b: BroadcastAck(_request_id(d), _packet(d, b)),
    MessageType.FORWARD: lambda d, b: Forward(
        _get(d, "stream", str, "a stream id"),
        _read_user(_get(d, "event", dict, "an ASGI event"), b),
    ),
    MessageType.TAKE_OVER: lambda d, b: TakeOver(
        _get(d, "pid", str, "a private session id"), _request_id(d)
    ),
    MessageType.TAKE_OVER_RESPONSE: lambda d, b: TakeOverResponse(
        _request_id(d), _get(d, "found", bool, "true or false")
    ),
}


def decode(raw: bytes) -> Message:
    """Decode a message from a broker; :class:`ProtocolError` says what was wrong."""
    head, blobs = _split(raw)
    try:
        header = json.loads(head)
    except (ValueError, RecursionError):
        raise ProtocolError(f"expected a JSON message header, got {head[:40]!r}") from None
    uid = _get(header, "uid", str, "the sender's uid")
    nsp = _get(header, "nsp", str, "a namespace")
    kind = _get(header, "type", int, "a message type")
    try:
        mtype = MessageType(kind)
    except ValueError:
        raise ProtocolError(f"expected a known message type, got {kind}") from None
    return Message(uid, nsp, _READERS[mtype](header.get("data"), blobs))
