"""Socket.IO v5 codec, table-driven from the examples of the protocol specification."""

from __future__ import annotations

from typing import Any

import pytest

from rooms.exceptions import ProtocolError
from rooms.protocol.socketio import Decoder, Packet, PacketType, encode, encode_event

E = PacketType

# (packet, encoded messages) — spec section "Packet encoding", with its examples.
EXAMPLES: list[tuple[Packet, list[str | bytes]]] = [
    (Packet(E.CONNECT, "/"), ["0"]),
    (Packet(E.CONNECT, "/admin", {"token": "123"}), ['0/admin,{"token":"123"}']),
    (Packet(E.CONNECT, "/", {"sid": "oSO0OpakMV_3jnilAAAA"}), ['0{"sid":"oSO0OpakMV_3jnilAAAA"}']),
    (Packet(E.DISCONNECT, "/admin"), ["1/admin,"]),
    (Packet(E.EVENT, "/", ["foo"]), ['2["foo"]']),
    (Packet(E.EVENT, "/admin", ["bar"]), ['2/admin,["bar"]']),
    (Packet(E.EVENT, "/", ["foo"], 12), ['212["foo"]']),
    (Packet(E.ACK, "/admin", ["bar"], 13), ['3/admin,13["bar"]']),
    (
        Packet(E.CONNECT_ERROR, "/", {"message": "Not authorized"}),
        ['4{"message":"Not authorized"}'],
    ),
    (
        Packet(E.EVENT, "/", ["baz", b"\x01\x02\x03\x04"]),
        ['51-["baz",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"],
    ),
    (
        Packet(E.ACK, "/admin", [b"\x03"], 15),
        ['61-/admin,15[{"_placeholder":true,"num":0}]', b"\x03"],
    ),
]


@pytest.mark.parametrize(("packet", "messages"), EXAMPLES)
def test_encoding_matches_the_spec(packet: Packet, messages: list[str | bytes]) -> None:
    assert encode(packet) == messages


@pytest.mark.parametrize(("packet", "messages"), EXAMPLES)
def test_decoding_matches_the_spec(packet: Packet, messages: list[str | bytes]) -> None:
    decoder = Decoder()
    results = [decoder.feed(m) for m in messages]
    assert results[:-1] == [None] * (len(messages) - 1)
    assert results[-1] == packet


def test_nested_binary_is_extracted_in_order_and_put_back() -> None:
    args: list[Any] = [{"a": b"1", "list": [b"2", {"deep": b"3"}]}, "text", b"4"]
    messages = encode_event("/", "upload", args)
    assert len(messages) == 5 and messages[0].startswith("54-")  # type: ignore[union-attr]
    decoder = Decoder()
    out = [decoder.feed(m) for m in messages]
    assert out[-1] == Packet(E.EVENT, "/", ["upload", *args])


def test_tuples_encode_as_arrays_and_unicode_stays_unescaped() -> None:
    assert encode_event("/", "msg", [("a", 1), "héllo €"]) == ['2["msg",["a",1],"héllo €"]']


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", "packet type digit"),
        ("9", "packet type digit"),
        ("2", "an array whose first item"),
        ('2"not an array"', "an array whose first item"),
        ("2[]", "an array whose first item"),
        ("2[1]", "an array whose first item"),
        ('2["connect"]', "non-reserved event name"),
        ('2["disconnecting"]', "non-reserved event name"),
        ("2[oops", "expected JSON"),
        ('0"str"', "an object or nothing"),
        ('1{"x":1}', "no data"),
        ('3["no id"]', "an ack id"),
        ('5["x"]', "'<attachments>-'"),
        ('50-["x"]', "1 to 10 attachments, got 0"),
        ("4[1]", "an object or a string"),
        ("2" + "[" * 100_000, "expected JSON"),  # deep nesting must not crash the parser
    ],
)
def test_malformed_packets_say_what_was_expected(message: str, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected.replace("[", r"\[")):
        Decoder().feed(message)


def test_binary_without_an_announcing_packet_is_refused() -> None:
    with pytest.raises(ProtocolError, match="no binary packet announced"):
        Decoder().feed(b"\x00")


def test_text_while_attachments_are_outstanding_is_refused() -> None:
    decoder = Decoder()
    assert (
        decoder.feed('52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]') is None
    )
    assert decoder.feed(b"a") is None
    with pytest.raises(ProtocolError, match="1 more binary attachment"):
        decoder.feed('2["y"]')


def test_a_placeholder_pointing_past_the_attachments_is_refused() -> None:
    decoder = Decoder()
    decoder.feed('51-["x",{"_placeholder":true,"num":3}]')
    with pytest.raises(ProtocolError, match="attachment index 0-0, got 3"):
        decoder.feed(b"a")
