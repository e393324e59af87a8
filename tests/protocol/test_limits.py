"""Every input has a bound, checked before the work it bounds (DESIGN §6), and JSON is what
JavaScript's JSON.parse accepts, both ways."""

from __future__ import annotations

import pytest

from rooms.exceptions import ProtocolError
from rooms.protocol import jsontext
from rooms.protocol.limits import MAX_SAFE_INTEGER, Limits
from rooms.protocol.socketio import (
    Decoder,
    decode_main_event,
    encode_ack,
    encode_event,
)

PLACEHOLDER = '{"_placeholder":true,"num":%d}'


def announce(count: int) -> str:
    return f'5{count}-["up",' + ",".join(PLACEHOLDER % n for n in range(count)) + "]"


# ----------------------------------------------------------------------------- attachments


def test_more_attachments_than_the_bound_are_refused_before_any_arrives() -> None:
    decoder = Decoder(Limits(max_attachments=10))
    assert decoder.feed(announce(10)) is None  # at the bound: accepted
    decoder = Decoder(Limits(max_attachments=10))
    with pytest.raises(ProtocolError, match="1 to 10 attachments, got 11"):
        decoder.feed(announce(11))
    assert not decoder.awaiting_attachments  # nothing was kept for it


def test_an_attachment_count_of_a_billion_or_of_thousands_of_digits_is_refused() -> None:
    with pytest.raises(ProtocolError, match="attachments, got 1000000000"):
        Decoder().feed('51000000000-["x"]')
    with pytest.raises(ProtocolError, match="'<attachments>-'"):
        Decoder().feed("5" + "9" * 5000 + '-["x"]')  # int() of this would raise ValueError


def test_attachment_bytes_are_bounded_in_total_as_they_arrive() -> None:
    decoder = Decoder(Limits(max_attachments=3, max_attachment_bytes=10))
    decoder.feed(announce(3))
    assert decoder.feed(b"x" * 6) is None
    with pytest.raises(ProtocolError, match="at most 10 bytes in all, got 12 bytes"):
        decoder.feed(b"y" * 6)


def test_attachment_bytes_never_exceed_max_payload() -> None:
    assert Limits(max_attachment_bytes=None).attachment_bytes(1000) == 1000
    assert Limits(max_attachment_bytes=5000).attachment_bytes(1000) == 1000
    assert Limits(max_attachment_bytes=10).attachment_bytes(1000) == 10


def test_each_announced_packet_is_counted_so_a_deadline_can_tell_them_apart() -> None:
    decoder = Decoder()
    decoder.feed(announce(1))
    first = decoder.started
    decoder.feed(b"a")
    decoder.feed(announce(1))
    assert decoder.started == first + 1


# ----------------------------------------------------------------------------- ack ids


@pytest.mark.parametrize("fast", [True, False])
def test_ack_ids_are_safe_integers(fast: bool) -> None:
    top = f'2{MAX_SAFE_INTEGER}["e"]'
    assert Decoder().feed(top).id == MAX_SAFE_INTEGER  # type: ignore[union-attr]
    if fast:
        assert decode_main_event(top) == (["e"], MAX_SAFE_INTEGER)
        assert decode_main_event(f'2{MAX_SAFE_INTEGER + 1}["e"]') is None
        assert decode_main_event("2" + "1" * 5000 + '["e"]') is None
    with pytest.raises(ProtocolError, match="safe integer"):
        Decoder().feed(f'2{MAX_SAFE_INTEGER + 1}["e"]')
    with pytest.raises(ProtocolError, match="got 5000 digits"):
        Decoder().feed("2" + "1" * 5000 + '["e"]')
    with pytest.raises(ProtocolError, match="safe integer"):
        Decoder().feed("3" + "7" * 5000 + "[]")


# ----------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", '{"a":[NaN]}']
)
def test_what_json_parse_refuses_is_a_protocol_error(value: str) -> None:
    text = f'2["bcast","r",{value}]'
    assert decode_main_event(text) is None
    with pytest.raises(ProtocolError, match=r"JSON\.parse accepts|finite number"):
        Decoder().feed(text)


def test_large_but_finite_numbers_and_big_integers_still_decode() -> None:
    packet = Decoder().feed('2["n",1.7976931348623157e308,-5e-324,' + "9" * 300 + "]")
    assert packet is not None
    assert packet.data == ["n", 1.7976931348623157e308, -5e-324, int("9" * 300)]


def test_nesting_past_the_depth_bound_is_refused_before_parsing() -> None:
    limits = Limits(max_json_depth=8)
    at_bound = '2["d",' + "[" * 7 + "]" * 7 + "]"
    assert Decoder(limits).feed(at_bound) is not None
    too_deep = '2["d",' + "[" * 8 + "]" * 8 + "]"
    assert decode_main_event(too_deep, limits) is None
    with pytest.raises(ProtocolError, match="nested at most 8 deep"):
        Decoder(limits).feed(too_deep)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '2["d","' + "[[[[" * 50 + '\\"]]", {"k": "{{{{"}]'
    packet = Decoder(Limits(max_json_depth=3)).feed(text)
    assert packet is not None and packet.data[2] == {"k": "{{{{"}


def test_depth_check_counts_real_depth_not_bracket_count() -> None:
    wide = "[" + ",".join(["[1]"] * 1000) + "]"  # 1001 brackets, depth 2
    assert not jsontext.depth_exceeds(wide, 2)
    assert jsontext.depth_exceeds(wide, 1)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf"), [{"x": float("nan")}]]
)
def test_emitting_what_json_parse_refuses_raises_naming_the_event(value: object) -> None:
    with pytest.raises(ValueError, match="cannot send event 'scores' on /"):
        encode_event("/", "scores", [value])
    with pytest.raises(ValueError, match="cannot send the ack 7 on /chat"):
        encode_ack("/chat", 7, [value])


def test_encoding_unbounded_nesting_raises_value_error_not_recursion_error() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(100_000):
        child: list[object] = []
        node.append(child)
        node = child
    with pytest.raises(ValueError, match="cannot send event 'deep'"):
        encode_event("/", "deep", [deep])
    node.append(b"bytes at the bottom")  # the binary walk is bounded too
    with pytest.raises(ValueError, match="cannot send event 'deep'"):
        encode_event("/", "deep", [deep])


def test_circular_data_raises_value_error_naming_the_event() -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match=r"cannot send event 'loop'.*[Cc]ircular"):
        encode_event("/", "loop", [loop])


def test_unencodable_types_raise_type_error_naming_the_event() -> None:
    with pytest.raises(TypeError, match=r"cannot send event 'obj'.*object"):
        encode_event("/", "obj", [object()])


# ----------------------------------------------------------------------------- names


def test_event_and_namespace_names_are_bounded() -> None:
    limits = Limits(max_name_length=16)
    assert Decoder(limits).feed('2["' + "e" * 16 + '"]') is not None
    assert decode_main_event('2["' + "e" * 17 + '"]', limits) is None
    with pytest.raises(ProtocolError, match="event name of at most 16 characters, got 17"):
        Decoder(limits).feed('2["' + "e" * 17 + '"]')
    assert Decoder(limits).feed("0/" + "n" * 15 + ",") is not None
    with pytest.raises(ProtocolError, match="namespace of at most 16 characters"):
        Decoder(limits).feed("0/" + "n" * 50_000 + ",")
    with pytest.raises(ProtocolError, match="namespace of at most 16 characters"):
        Decoder(limits).feed("0/" + "n" * 50_000)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attachments": 0}, "max_attachments"),
        ({"max_json_depth": 0}, "max_json_depth"),
        ({"max_name_length": -1}, "max_name_length"),
        ({"attachment_timeout": 0}, "attachment_timeout"),
        ({"max_attachment_bytes": 0}, "max_attachment_bytes"),
        ({"max_dynamic_namespaces": -1}, "max_dynamic_namespaces"),
    ],
)
def test_limits_refuse_nonsense(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**options)  # type: ignore[arg-type]
