"""Engine.IO v4 codec, from the examples of the protocol specification."""

from __future__ import annotations

import json

import pytest

from rooms.exceptions import PayloadTooLarge, ProtocolError
from rooms.protocol.engineio import (
    HandshakeError,
    Packet,
    PacketType,
    decode_frame,
    decode_payload,
    encode_payload,
    lenient_b64decode,
    message_frame,
    open_frame,
)

FRAMES = [
    # (frame on the wire, decoded packet)
    ("0", Packet(PacketType.OPEN, "")),
    ("1", Packet(PacketType.CLOSE, "")),
    ("2", Packet(PacketType.PING, "")),
    ("2probe", Packet(PacketType.PING, "probe")),
    ("3probe", Packet(PacketType.PONG, "probe")),
    ("4hello", Packet(PacketType.MESSAGE, "hello")),
    ("4", Packet(PacketType.MESSAGE, "")),
    ("5", Packet(PacketType.UPGRADE, "")),
    ("6", Packet(PacketType.NOOP, "")),
    (b"\x01\x02\x03\x04", Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")),
]


@pytest.mark.parametrize(("frame", "packet"), FRAMES)
def test_a_websocket_frame_decodes_to_its_packet(frame: str | bytes, packet: Packet) -> None:
    assert decode_frame(frame) == packet


def test_a_message_frame_prefixes_text_with_4_and_keeps_binary_raw() -> None:
    assert message_frame("hello") == "4hello"
    assert message_frame(b"\x01\x02") == b"\x01\x02"


@pytest.mark.parametrize("frame", ["", "7", "x", "9hello", "\x1e"])
def test_an_unknown_packet_type_is_a_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError, match=r"expected an Engine\.IO packet type"):
        decode_frame(frame)


def test_the_spec_payload_example_round_trips() -> None:
    # Spec, "Payload": 4hello\x1e4€\x1ebAQIDBA==
    frames: list[str | bytes] = ["4hello", "4€", b"\x01\x02\x03\x04"]
    body = encode_payload(frames)
    assert body == "4hello\x1e4€\x1ebAQIDBA=="
    assert decode_payload(body.encode(), 1000) == [
        Packet(PacketType.MESSAGE, "hello"),
        Packet(PacketType.MESSAGE, "€"),
        Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04"),
    ]


def test_a_payload_past_max_payload_is_refused_with_both_sizes() -> None:
    with pytest.raises(PayloadTooLarge, match="at most 10 bytes, got 11"):
        decode_payload(b"4" * 11, 10)


def test_invalid_utf8_in_a_payload_reads_as_replacement_characters() -> None:
    # As the reference server reads a POST body (Node's UTF-8 decoding).
    assert decode_payload(b"4\xff\xfe\xc3A\xe2\x82", 100) == [
        Packet(PacketType.MESSAGE, "\ufffd\ufffd\ufffdA\ufffd")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Each as Node's Buffer.from(text, "base64") decodes it.
        ("AQID", "010203"),
        ("AQI", "0102"),
        ("AQ", "01"),
        ("A", ""),
        ("!!notbase64", "9e8b5b6ac7ba"),
        ("YQ==YQ==", "61"),
        ("YQ=YQ", "61"),
        ("a b\nc=d", "69b7"),
        ("-_-_", "fbffbf"),
        ("QUJD*REVG", "414243444546"),
        ("=AQID", ""),
        ("AQ=ID", "01"),
    ],
)
def test_base64_in_a_binary_packet_is_read_as_node_reads_it(text: str, expected: str) -> None:
    assert lenient_b64decode(text) == bytes.fromhex(expected)
    assert decode_payload(b"b" + text.encode(), 100) == [
        Packet(PacketType.MESSAGE, bytes.fromhex(expected))
    ]


def test_an_unknown_packet_type_in_a_payload_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"expected an Engine\.IO packet type digit"):
        decode_payload(b"4ok\x1e9nine", 100)


def test_the_open_packet_carries_the_handshake_fields_in_milliseconds() -> None:
    frame = open_frame("abc", ["websocket"], 25000, 20000, 1_000_000)
    assert frame[0] == "0"
    assert json.loads(frame[1:]) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1_000_000,
    }


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (HandshakeError.UNKNOWN_TRANSPORT, 0, "Transport unknown"),
        (HandshakeError.UNKNOWN_SID, 1, "Session ID unknown"),
        (HandshakeError.BAD_HANDSHAKE_METHOD, 2, "Bad handshake method"),
        (HandshakeError.BAD_REQUEST, 3, "Bad request"),
        (HandshakeError.FORBIDDEN, 4, "Forbidden"),
        (HandshakeError.UNSUPPORTED_PROTOCOL_VERSION, 5, "Unsupported protocol version"),
    ],
)
def test_handshake_errors_are_the_spec_codes(
    error: HandshakeError, code: int, message: str
) -> None:
    assert json.loads(error.body()) == {"code": code, "message": message}
