"""The bounds every peer's input is checked against, before the work they bound."""

from __future__ import annotations

from dataclasses import dataclass

MAX_SAFE_INTEGER = 2**53 - 1
"""JavaScript's ``Number.MAX_SAFE_INTEGER``: the largest ack id a JS peer can hold exactly."""

_MAX_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))


def safe_integer(digits: str) -> int | None:
    """``digits`` (ASCII 0-9 only) as an int if it is a safe integer, else None.

    The length is checked before converting, so no amount of digits costs more than that.
    """
    if len(digits) > _MAX_SAFE_DIGITS:
        return None
    value = int(digits)
    return value if value <= MAX_SAFE_INTEGER else None


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a client may send, past which its connection is closed.

    Pass to ``rooms.Server(limits=rooms.Limits(...))``. Every bound is checked before the
    work it bounds; a violation closes only the offending connection (a websocket close
    frame, or HTTP 400 on long-polling) with one log line saying what was expected and
    what came.

    - ``max_attachments``: binary attachments one packet may announce (Node's server: 10).
    - ``max_attachment_bytes``: their total size; None means the server's ``max_payload``.
    - ``attachment_timeout``: seconds for a packet's announced attachments to arrive.
    - ``max_json_depth``: how deep arrays and objects may nest in a packet's JSON.
    - ``max_name_length``: the longest namespace, event or room name, in characters.
    - ``max_dynamic_namespaces``: children of dynamic namespaces alive at once (a child
      lives while it has sockets).
    """

    max_attachments: int = 10
    max_attachment_bytes: int | None = None
    attachment_timeout: float = 10.0
    max_json_depth: int = 32
    max_name_length: int = 256
    max_dynamic_namespaces: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_attachments", "max_json_depth", "max_name_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} to be a positive int, got {value!r}")
        if self.max_dynamic_namespaces < 0:
            raise ValueError(
                f"expected max_dynamic_namespaces >= 0, got {self.max_dynamic_namespaces!r}"
            )
        if self.attachment_timeout <= 0:
            raise ValueError(
                f"expected a positive attachment_timeout, got {self.attachment_timeout!r}"
            )
        if self.max_attachment_bytes is not None and self.max_attachment_bytes < 1:
            raise ValueError(
                f"expected a positive max_attachment_bytes or None, "
                f"got {self.max_attachment_bytes!r}"
            )

    def attachment_bytes(self, max_payload: int) -> int:
        """The bound on a packet's attachments in bytes, given the server's ``max_payload``."""
        if self.max_attachment_bytes is None:
            return max_payload
        return min(self.max_attachment_bytes, max_payload)
