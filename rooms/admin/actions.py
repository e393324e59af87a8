"""What an admin client asks for, checked before anything is done.

The 0.5.1 UI sends three actions, as plain events with positional arguments and no ack:
``_disconnect(nsp, close, filter?)``, ``join(nsp, room, filter?)`` and
``leave(nsp, room, filter?)``. ``filter`` is a room (a socket's id is its own room);
missing or empty, it means every socket of the namespace. Each is applied to the whole
cluster through the namespace's selectors. Every argument is checked here first: a wrong
one makes the action ignored, with one INFO line that says what was expected and what came.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rooms._log import Throttled

if TYPE_CHECKING:
    from rooms.namespace import Namespace
    from rooms.server import Server

logger = logging.getLogger("rooms.admin")
ignored = Throttled(logger)
"""Actions ignored (bad arguments, read-only): INFO, rate-limited."""


class Invalid(Exception):
    """An argument that is not what the action takes; the message says expected X, got Y."""


def _shown(value: Any) -> str:
    return f"{value!r:.60}"


def _name(value: Any, limit: int, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Invalid(f"expected {what} (a non-empty str of at most {limit} characters), got "
                      f"{_shown(value)}")  # fmt: skip
    return value


def namespace(server: Server, value: Any) -> Namespace:
    """The namespace an action is for: one this process has (actions never create one)."""
    name = _name(value, server.limits.max_name_length, "a namespace name")
    nsp = server.namespaces.get(name)
    if nsp is None:
        raise Invalid(f"expected a namespace of this server, got {_shown(name)}")
    return nsp


def room(server: Server, value: Any) -> str:
    return _name(value, server.limits.max_name_length, "a room name")


def room_filter(server: Server, args: tuple[Any, ...], index: int) -> str | None:
    """The optional filter at ``args[index]``: a room, or None for the whole namespace."""
    value = args[index] if len(args) > index else None
    if value is None or value == "":
        return None
    return _name(value, server.limits.max_name_length, "a room or socket id as filter")


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected {what} as true or false, got {_shown(value)}")
    return value


def count(args: tuple[Any, ...], least: int) -> None:
    """At least ``least`` arguments (more are ignored, as JavaScript ignores them)."""
    if len(args) < least:
        raise Invalid(f"expected at least {least} argument(s), got {len(args)}")
