"""What a presence call accepts: topics, keys and metas, checked before they are kept.

Topics and keys are names, bounded as room names are (``limits.max_name_length``); a meta is
a JSON object bounded in bytes (``max_meta_bytes``) and in depth (``limits.max_json_depth``).
A meta is kept as its JSON round trip: a copy the caller cannot change afterwards, in the
form every client and every other process will see.
"""

from __future__ import annotations

from typing import Any

from rooms.protocol import jsontext

Meta = dict[str, Any]
"""One entry as clients see it: ``{"ref": ..., **meta}``."""

Metas = list[Meta]
"""The entries of one key (one per socket that tracks it)."""

Listing = dict[str, Metas]
"""A topic as ``list`` returns it and ``presence_state`` carries it: ``{key: [meta, ...]}``."""

REF = "ref"
"""The key presence adds to every meta: the entry's own id."""


def name(what: str, value: object, limit: int) -> str:
    """``value`` if it is a str of 1 to ``limit`` characters."""
    if not isinstance(value, str):
        raise TypeError(f"expected the {what} as a str, got {type(value).__name__}")
    if not 0 < len(value) <= limit:
        raise ValueError(
            f"expected a {what} of 1 to {limit} characters (limits.max_name_length), "
            f"got {len(value)}"
        )
    return value


def meta(value: object, max_bytes: int, max_depth: int) -> Meta:
    """``value`` (None: ``{}``) as the JSON object clients will get, without its ref."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(
            f"expected meta as a dict (a JSON object) or None, got {type(value).__name__}"
        )
    if REF in value:
        raise ValueError(f"expected meta without a {REF!r} key (presence adds it), got one")
    try:
        text = jsontext.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"expected meta that JSON can carry, got {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise ValueError(f"expected meta of at most {max_bytes} bytes as JSON, got {size}")
    try:
        kept: Meta = jsontext.loads(text, max_depth)
    except ValueError:
        raise ValueError(
            f"expected meta nested at most {max_depth} deep (limits.max_json_depth), got deeper"
        ) from None
    return kept
