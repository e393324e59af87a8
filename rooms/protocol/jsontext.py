"""JSON exactly as JavaScript's ``JSON.parse`` and ``JSON.stringify`` agree on it.

Python's ``json`` reads and writes ``NaN``, ``Infinity`` and ``-Infinity``, and reads ``1e999``
as infinity; ``JSON.parse`` refuses all of them, so one such value relayed to a room would make
every JavaScript client in it drop its connection with "parse error". Here they are refused
both ways. Nesting is bounded on the way in *before* parsing (a depth past the bound is never
handed to the parser), and on the way out by the encoder's own recursion guard.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

__all__ = ["JSONTextError", "depth_exceeds", "dumps", "loads"]


class JSONTextError(ValueError):
    """Text that ``JSON.parse`` would refuse, or nesting past the bound."""


def _no_constant(name: str) -> Any:
    raise JSONTextError(f"expected JSON that JSON.parse accepts, got {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONTextError(f"expected a finite number, got {text[:24]}")
    return value


_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
# The C scanner and encoder, called directly: JSONDecoder.decode and JSONEncoder.encode are
# Python wrappers that cost more than the C work itself on a short message (2.7 µs against
# 0.8 to encode an echo's ack here).
_scan: Callable[[str, int], tuple[Any, int]] = getattr(_decoder, "scan_once")  # noqa: B009
# Always matches (maybe empty): typed so.
_space = cast(Callable[[str, int], re.Match[str]], re.compile(r"[ \t\n\r]*").match)


def _no_json_form(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_py = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
# No circular-reference markers (shared ones could keep stale ids after a failed encode): a
# cycle recurses to RecursionError, and the checking encoder then names it.
_encode_chunks: Callable[[Any, int], Sequence[str]] | None = (
    None
    if _make_encoder is None  # an interpreter without the C accelerator
    else _make_encoder(
        None, _no_json_form, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def _encode(value: Any) -> str:
    if _encode_chunks is None:
        return _encode_py(value)
    try:
        return "".join(_encode_chunks(value, 0))
    except RecursionError:  # a cycle, or deep nesting: the checking encoder says which
        return _encode_py(value)


# Strings first (their brackets do not count), then the brackets left.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def depth_exceeds(text: str, limit: int) -> bool:
    """Whether the arrays and objects in JSON ``text`` nest deeper than ``limit``.

    Cheap in the common case: text with no more brackets than ``limit`` cannot nest deeper,
    and counting them runs at C speed. Only bracket-heavy text is scanned.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(text: str, max_depth: int) -> Any:
    """Parse ``text`` as ``JSON.parse`` would; :class:`JSONTextError` (a ``ValueError``) for
    anything it refuses and for nesting deeper than ``max_depth``."""
    if depth_exceeds(text, max_depth):
        raise JSONTextError(f"expected JSON nested at most {max_depth} deep, got deeper")
    try:
        value, end = _scan(text, _space(text, 0).end())
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    except RecursionError:  # unreachable below the depth bound; kept as a last guard
        raise JSONTextError("expected JSON of bounded depth, got deeper") from None
    end = _space(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def dumps(value: Any) -> str:
    """Compact JSON as ``JSON.stringify`` writes it.

    Raises ``TypeError`` for values JSON has no form for (``bytes`` included: the Socket.IO
    encoder catches that to send them as attachments) and ``ValueError`` for NaN, infinities,
    circular references and nesting past the interpreter's recursion limit.

    A lone surrogate (``JSON.parse`` accepts ``"\\ud800"``, and so does :func:`loads`) is
    written as its escape, as ``JSON.stringify`` does: raw, it cannot be encoded as UTF-8,
    and the frame carrying it could not be sent at all.
    """
    try:
        text = _encode(value)
    except RecursionError:
        raise ValueError("expected JSON of bounded depth, got nesting past the limit") from None
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(_escape, text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"
