"""Engine.IO v4 packets and long-polling payloads.

A packet on a websocket is one frame: a text frame is ``<type digit><data>``; a binary frame
is a MESSAGE whose data is the raw bytes. On long-polling several packets travel in one HTTP
body joined by the record separator ``\\x1e``, and a binary MESSAGE is written as ``b`` and the
base64 of its bytes (Engine.IO v4 spec, "Payload").

Frames are represented as ``str | bytes`` exactly as a websocket would carry them, so the
engine can queue them once and hand them to either transport.
"""

from __future__ import annotations

import enum
import json
import re
from base64 import b64decode, b64encode
from collections.abc import Iterator
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
    """Split and decode a long-polling POST body (see :func:`iter_payload`)."""
    return list(iter_payload(body, max_payload))


def iter_payload(body: bytes, max_payload: int) -> Iterator[Packet]:
    """The packets of a long-polling POST body, in order, decoded one at a time: the
    packets before an invalid one are acted on, as the reference server does.

    Raises :class:`PayloadTooLarge` past ``max_payload`` bytes (before anything is
    decoded) and :class:`ProtocolError` on reaching an unknown packet type. The body is
    read as the reference server reads it: invalid UTF-8 becomes U+FFFD, and base64 is
    decoded leniently (see :func:`lenient_b64decode`).
    """
    if len(body) > max_payload:
        raise PayloadTooLarge(
            f"expected a payload of at most {max_payload} bytes, got {len(body)} bytes"
        )
    return _packets(body.decode("utf-8", "replace"))


def _packets(text: str) -> Iterator[Packet]:
    for part in text.split(RECORD_SEPARATOR):
        if part[:1] == "b":
            yield Packet(PacketType.MESSAGE, lenient_b64decode(part[1:]))
        else:
            yield decode_frame(part)


_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/_-]")


def lenient_b64decode(text: str) -> bytes:
    """Base64 as Node's ``Buffer.from(text, "base64")`` reads it (so does the reference
    server): standard and URL-safe alphabets alike, anything else skipped, the first ``=``
    ends the data, a trailing lone character carries no byte. Never fails."""
    text = _NOT_BASE64.sub("", text.partition("=")[0]).replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        text = text[:-1]
    return b64decode(text + "=" * (-len(text) % 4))
