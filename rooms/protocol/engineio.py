"""Engine.IO v4 packets and long-polling payloads.

A packet on a websocket is one frame: a text frame is ``<type digit><data>``; a binary frame
is a MESSAGE whose data is the raw bytes. On long-polling several packets travel in one HTTP
body joined by the record separator ``\\x1e``, and a binary MESSAGE is written as ``b`` and the
base64 of its bytes (Engine.IO v4 spec, "Payload").

Frames are represented as ``str | bytes`` exactly as a websocket would carry them, so the
engine can queue them once and hand them to either transport.
"""

from __future__ import annotations

import binascii
import enum
import json
from base64 import b64decode, b64encode
from dataclasses import dataclass

from rooms.exceptions import PayloadTooLarge, ProtocolError

PROTOCOL_VERSION = "4"
RECORD_SEPARATOR = "\x1e"

Frame = str | bytes
"""One Engine.IO packet as a websocket frame: text, or a binary MESSAGE."""


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class HandshakeError(enum.IntEnum):
    """The ``code`` of an HTTP 400 answer (Engine.IO v4 spec, "Errors")."""

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5

    @property
    def message(self) -> str:
        return _HANDSHAKE_MESSAGES[self]

    def body(self) -> bytes:
        return json.dumps(
            {"code": int(self), "message": self.message}, separators=(",", ":")
        ).encode()


_HANDSHAKE_MESSAGES = {
    HandshakeError.UNKNOWN_TRANSPORT: "Transport unknown",
    HandshakeError.UNKNOWN_SID: "Session ID unknown",
    HandshakeError.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    HandshakeError.BAD_REQUEST: "Bad request",
    HandshakeError.FORBIDDEN: "Forbidden",
    HandshakeError.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded Engine.IO packet. ``data`` is bytes only for a binary MESSAGE."""

    type: PacketType
    data: str | bytes = ""


# Pre-built frames for the packets the server sends most.
PING: Frame = "2"
PONG_PROBE: Frame = "3probe"
NOOP: Frame = "6"
CLOSE: Frame = "1"


def open_frame(
    sid: str, upgrades: list[str], ping_interval_ms: int, ping_timeout_ms: int, max_payload: int
) -> str:
    """The OPEN packet, the first thing a client receives on a new session."""
    body = {
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    }
    return "0" + json.dumps(body, separators=(",", ":"))


def message_frame(data: str | bytes) -> Frame:
    """A MESSAGE packet carrying ``data``; bytes stay a binary frame."""
    if isinstance(data, str):
        return "4" + data
    return data


def decode_frame(frame: Frame) -> Packet:
    """Decode one websocket frame (or one polling packet already split out)."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return Packet(PacketType.MESSAGE, bytes(frame))
    if not frame:
        raise ProtocolError("expected an Engine.IO packet type digit 0-6, got an empty packet")
    digit = frame[0]
    if digit < "0" or digit > "6":
        raise ProtocolError(f"expected an Engine.IO packet type digit 0-6, got {frame[:16]!r}")
    return Packet(PacketType(ord(digit) - 48), frame[1:])


def encode_payload(frames: list[Frame]) -> str:
    """Join frames into one long-polling body (binary as ``b`` + base64)."""
    parts = [f if isinstance(f, str) else "b" + b64encode(f).decode("ascii") for f in frames]
    return RECORD_SEPARATOR.join(parts)


def decode_payload(body: bytes, max_payload: int) -> list[Packet]:
    """Split and decode a long-polling POST body.

    Raises :class:`PayloadTooLarge` past ``max_payload`` bytes and :class:`ProtocolError` on
    invalid UTF-8, an unknown packet type or bad base64.
    """
    if len(body) > max_payload:
        raise PayloadTooLarge(
            f"expected a payload of at most {max_payload} bytes, got {len(body)} bytes"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"expected a UTF-8 payload, got invalid byte at {exc.start}") from None
    packets = []
    for part in text.split(RECORD_SEPARATOR):
        if part[:1] == "b":
            try:
                packets.append(Packet(PacketType.MESSAGE, b64decode(part[1:], validate=True)))
            except binascii.Error:
                raise ProtocolError(
                    f"expected base64 after 'b' in a binary packet, got {part[:24]!r}"
                ) from None
        else:
            packets.append(decode_frame(part))
    return packets
