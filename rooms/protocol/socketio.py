"""Socket.IO v5 packets: ``<type>[<n>-][<nsp>,][<id>][json]`` plus binary attachments.

Binary values anywhere in the data are replaced by ``{"_placeholder": true, "num": n}`` and
sent as ``n`` extra binary messages after the text one (Socket.IO v5 spec, "Packet encoding").
The namespace ``/`` is implicit on the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rooms.exceptions import ProtocolError
from rooms.protocol import jsontext
from rooms.protocol.limits import MAX_SAFE_INTEGER, Limits, safe_integer

# Event names the client library keeps for itself; a peer may not send them as events.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

dumps = jsontext.dumps
"""Compact JSON, as JavaScript's ``JSON.stringify`` writes it (no NaN, no infinities)."""

MAX_ENCODE_DEPTH = 256
"""How deep the binary walk of outgoing data goes (JSON itself is bounded by the
interpreter's recursion limit); past it, encoding raises ``ValueError``."""

_DEFAULT_LIMITS = Limits()
MAX_SAFE_INTEGER_TEXT = f"{MAX_SAFE_INTEGER:,}"


class PacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(frozen=True, slots=True)
class Packet:
    """A complete Socket.IO packet, attachments already put back in place."""

    type: PacketType
    nsp: str = "/"
    data: Any = None
    id: int | None = None
    # Only set on decoded packets: how many binary attachments the packet arrived with.
    attachments: int = field(default=0, compare=False)


# ----------------------------------------------------------------------------- encoding


def _too_deep() -> ValueError:
    return ValueError(f"expected data nested at most {MAX_ENCODE_DEPTH} deep, got deeper")


def has_binary(value: Any, _depth: int = 0) -> bool:
    """Whether ``value`` holds bytes anywhere (lists, tuples and dict values searched)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if _depth > MAX_ENCODE_DEPTH:
        raise _too_deep()
    if isinstance(value, list | tuple):
        return any(has_binary(v, _depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v, _depth + 1) for v in value.values())
    return False


def split_binary(value: Any, buffers: list[bytes], _depth: int = 0) -> Any:
    """``value`` with every bytes object replaced by ``{"_placeholder": true, "num": n}``;
    the bytes are appended to ``buffers`` (``n`` is the index there)."""
    if isinstance(value, bytes | bytearray | memoryview):
        buffers.append(bytes(value))
        return {"_placeholder": True, "num": len(buffers) - 1}
    if _depth > MAX_ENCODE_DEPTH:
        raise _too_deep()
    if isinstance(value, list | tuple):
        return [split_binary(v, buffers, _depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: split_binary(v, buffers, _depth + 1) for k, v in value.items()}
    return value


def join_binary(value: Any, buffers: Sequence[bytes]) -> Any:
    """The inverse of :func:`split_binary`; a placeholder whose index is out of range is a
    :class:`ProtocolError`. Decoded data only: its depth was bounded when it was parsed."""
    if isinstance(value, list):
        return [join_binary(v, buffers) for v in value]
    if isinstance(value, dict):
        if value.get("_placeholder") is True and len(value) == 2:
            num = value.get("num")
            if not isinstance(num, int) or isinstance(num, bool) or not 0 <= num < len(buffers):
                raise ProtocolError(
                    f"expected an attachment index 0-{len(buffers) - 1}, got {num!r:.40}"
                )
            return buffers[num]
        return {k: join_binary(v, buffers) for k, v in value.items()}
    return value


def _header(ptype: int, nsp: str, ack_id: int | None, attachments: int = 0) -> str:
    head = str(ptype)
    if attachments:
        head += f"{attachments}-"
    if nsp != "/":
        head += nsp + ","
    if ack_id is not None:
        head += str(ack_id)
    return head


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet as one text message followed by its binary attachments."""
    text, buffers = encode_parts(packet)
    return [text, *buffers] if buffers else [text]


def encode_parts(packet: Packet) -> tuple[str, list[bytes]]:
    """Encode a packet as its text message and its binary attachments.

    Raises ``TypeError`` for data JSON has no form for and ``ValueError`` for data
    ``JSON.parse`` would refuse (NaN, infinities, circular or too deep), naming the packet.
    """
    try:
        return _encode_parts(packet)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"cannot send {_describe(packet)}: {exc}") from None


def _describe(packet: Packet) -> str:
    data = packet.data
    if packet.type is PacketType.EVENT and isinstance(data, list) and data:
        return f"event {data[0]!r:.60} on {packet.nsp}"
    if packet.type is PacketType.ACK:
        return f"the ack {packet.id} on {packet.nsp}"
    return f"a {packet.type.name} packet on {packet.nsp}"


def _encode_parts(packet: Packet) -> tuple[str, list[bytes]]:
    ptype = packet.type
    data = packet.data
    head = _header(ptype, packet.nsp, packet.id)
    if data is None:
        return head, []
    try:
        # The common case: plain JSON. Bytes make the encoder refuse, and only then is the
        # data walked for binary parts; no walk for every emit.
        return head + dumps(data), []
    except TypeError:
        if ptype not in (PacketType.EVENT, PacketType.ACK) or not has_binary(data):
            raise
    buffers: list[bytes] = []
    data = split_binary(data, buffers)
    binary = PacketType.BINARY_EVENT if ptype == PacketType.EVENT else PacketType.BINARY_ACK
    return _header(binary, packet.nsp, packet.id, len(buffers)) + dumps(data), buffers


def encode_ack(nsp: str, ack_id: int, args: list[Any]) -> list[str | bytes]:
    """Encode the ACK answering ``ack_id``; the hot path of every acknowledged event.
    Raises as :func:`encode_parts` does."""
    try:
        if nsp == "/":
            return [f"3{ack_id}{dumps(args)}"]
        return [f"3{nsp},{ack_id}{dumps(args)}"]
    except (TypeError, ValueError):
        return encode(Packet(PacketType.ACK, nsp, args, ack_id))


def encode_event(
    nsp: str, event: str, args: Sequence[Any], ack_id: int | None = None
) -> list[str | bytes]:
    """Encode ``emit(event, *args)``; the hot path of every emit and broadcast."""
    return encode(Packet(PacketType.EVENT, nsp, [event, *args], ack_id))


def encode_event_parts(nsp: str, event: str, args: Sequence[Any]) -> tuple[str, list[bytes]]:
    """``encode_event`` as its text message and its attachments (what a broadcast carries
    between processes)."""
    return encode_parts(Packet(PacketType.EVENT, nsp, [event, *args]))


def _data_start(text: str, nsp: str) -> int:
    """Where the JSON of an encoded EVENT text message starts (after type, attachment count,
    namespace and ack id)."""
    i = 1
    if text[:1] == "5":
        i = text.index("-") + 1
    if nsp != "/":
        i += len(nsp) + 1
    while text[i] != "[":
        i += 1  # skip an ack id already present
    return i


def with_ack_id(text: str, nsp: str, ack_id: int) -> str:
    """An encoded EVENT (``text``, encoded without an ack id) asking for an ack ``ack_id``.

    A broadcast is encoded once; every process that delivers it picks its own ack id, so
    ids never collide with acks that process already waits for.
    """
    i = _data_start(text, nsp)
    return f"{text[:i]}{ack_id}{text[i:]}"


def append_arg(text: str, value: str) -> str:
    """An encoded EVENT with ``value`` appended as its last argument (the offset connection
    state recovery adds): the data is a JSON array, so it ends with ``]``."""
    return f"{text[:-1]},{dumps(value)}]"


# ----------------------------------------------------------------------------- decoding


class Decoder:
    """Turns Engine.IO message payloads back into packets, one connection at a time.

    A binary packet announces ``n`` attachments in its text message; the next ``n`` binary
    messages belong to it. :meth:`feed` returns ``None`` while attachments are outstanding
    (``pending`` is then the announced packet). Everything is checked against ``limits``
    before the work it bounds: the announced count before any attachment is accepted, the
    running total of attachment bytes before each one is kept.
    """

    __slots__ = ("_buffers", "_bytes", "_max_bytes", "limits", "pending", "started")

    def __init__(self, limits: Limits = _DEFAULT_LIMITS, max_payload: int = 1_000_000) -> None:
        self.limits = limits
        self._max_bytes = limits.attachment_bytes(max_payload)
        self.pending: Packet | None = None
        self.started = 0  # binary packets announced so far: tells one pending packet from the next
        self._buffers: list[bytes] = []
        self._bytes = 0

    @property
    def awaiting_attachments(self) -> bool:
        return self.pending is not None

    def reset(self) -> None:
        """Forget a packet still waiting for attachments (its connection closed)."""
        self.pending = None
        self._buffers = []
        self._bytes = 0

    def feed(self, message: str | bytes) -> Packet | None:
        if isinstance(message, bytes):
            return self._feed_binary(message)
        if self.pending is not None:
            raise ProtocolError(
                f"expected {self.pending.attachments - len(self._buffers)} more binary "
                f"attachment(s), got a text message {message[:32]!r}"
            )
        packet = decode_text(message, self.limits)
        if packet.attachments:
            self.pending = packet
            self.started += 1
            self._buffers = []
            self._bytes = 0
            return None
        return packet

    def _feed_binary(self, message: bytes) -> Packet | None:
        pending = self.pending
        if pending is None:
            raise ProtocolError(
                f"expected a text Socket.IO packet, got {len(message)} bytes of binary data "
                "that no binary packet announced"
            )
        self._bytes += len(message)
        if self._bytes > self._max_bytes:
            raise ProtocolError(
                f"expected attachments of at most {self._max_bytes} bytes in all, got "
                f"{self._bytes} bytes by attachment {len(self._buffers) + 1} of "
                f"{pending.attachments}"
            )
        self._buffers.append(message)
        if len(self._buffers) < pending.attachments:
            return None
        data = join_binary(pending.data, self._buffers)
        self.pending = None
        self._buffers = []
        self._bytes = 0
        plain = PacketType.EVENT if pending.type == PacketType.BINARY_EVENT else PacketType.ACK
        return Packet(plain, pending.nsp, data, pending.id, pending.attachments)


def decode_main_event(
    text: str, limits: Limits = _DEFAULT_LIMITS
) -> tuple[list[Any], int | None] | None:
    """Fast path for the most common packet: a text EVENT on ``/``, ``2[<id>][...]``.

    Returns ``(data, ack_id)``, or None when ``text`` is anything else or is invalid (then
    use :class:`Decoder`, which says why). Accepts exactly what :func:`decode_text` does.
    """
    i = 1
    n = len(text)
    while i < n and "0" <= text[i] <= "9":
        i += 1
    if i >= n or text[i] != "[":
        return None
    ack_id = None
    if i > 1:
        ack_id = safe_integer(text[1:i])
        if ack_id is None:
            return None
    try:
        data = jsontext.loads(text[i:], limits.max_json_depth)
    except ValueError:
        return None  # let the full decoder produce the error message
    if (
        not isinstance(data, list)
        or not data
        or not isinstance(data[0], str)
        or data[0] in RESERVED_EVENTS
        or len(data[0]) > limits.max_name_length
    ):
        return None
    return data, ack_id


def decode_text(text: str, limits: Limits = _DEFAULT_LIMITS) -> Packet:
    """Decode the text part of a packet; attachments, if any, are left as placeholders."""
    if not text or not "0" <= text[0] <= "6":
        raise ProtocolError(f"expected a Socket.IO packet type digit 0-6, got {text[:32]!r}")
    ptype = PacketType(ord(text[0]) - 48)
    i = 1
    n = len(text)
    attachments = 0
    if ptype in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK):
        dash = text.find("-", i, i + 12)  # the count never needs more digits than that
        count = text[i:dash] if dash != -1 else ""
        if not count.isdigit() or not count.isascii():
            raise ProtocolError(
                f"expected '<attachments>-' after binary packet type, got {text[:32]!r}"
            )
        attachments = safe_integer(count) or 0
        if not 1 <= attachments <= limits.max_attachments:
            raise ProtocolError(
                f"expected 1 to {limits.max_attachments} attachments, got {count[:24]}"
            )
        i = dash + 1
    nsp = "/"
    if i < n and text[i] == "/":
        comma = text.find(",", i, i + limits.max_name_length + 1)
        if comma == -1 and n - i > limits.max_name_length:
            raise ProtocolError(
                f"expected a namespace of at most {limits.max_name_length} characters, "
                f"got {text[i : i + 32]!r}..."
            )
        end = comma if comma != -1 else n
        nsp = text[i:end]
        i = end + 1 if comma != -1 else n
    start = i
    while i < n and "0" <= text[i] <= "9":
        i += 1
    ack_id = None
    if i > start:
        ack_id = safe_integer(text[start:i])
        if ack_id is None:
            raise ProtocolError(
                f"expected an ack id of at most {MAX_SAFE_INTEGER_TEXT} (a safe integer), "
                f"got {i - start} digits"
            )
    data: Any = None
    if i < n:
        try:
            data = jsontext.loads(text[i:], limits.max_json_depth)
        except jsontext.JSONTextError as exc:
            raise ProtocolError(str(exc)) from None
        except ValueError:
            raise ProtocolError(
                f"expected JSON after the packet header, got {text[i : i + 32]!r}"
            ) from None
    _validate(ptype, data, ack_id, text, limits)
    return Packet(ptype, nsp, data, ack_id, attachments)


def _validate(ptype: PacketType, data: Any, ack_id: int | None, text: str, limits: Limits) -> None:
    if ptype == PacketType.CONNECT:
        ok = data is None or isinstance(data, dict)
        expected = "an object or nothing"
    elif ptype == PacketType.DISCONNECT:
        ok = data is None
        expected = "no data"
    elif ptype in (PacketType.EVENT, PacketType.BINARY_EVENT):
        ok = (
            isinstance(data, list)
            and len(data) > 0
            and isinstance(data[0], str)
            and data[0] not in RESERVED_EVENTS
        )
        expected = "an array whose first item is a non-reserved event name"
        if ok and len(data[0]) > limits.max_name_length:
            raise ProtocolError(
                f"expected an event name of at most {limits.max_name_length} characters, "
                f"got {len(data[0])}"
            )
    elif ptype in (PacketType.ACK, PacketType.BINARY_ACK):
        ok = isinstance(data, list) and ack_id is not None
        expected = "an ack id and an array"
    else:  # CONNECT_ERROR
        ok = isinstance(data, dict | str)
        expected = "an object or a string"
    if not ok:
        raise ProtocolError(f"expected {expected} in a {ptype.name} packet, got {text[:48]!r}")
