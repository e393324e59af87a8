"""What this process's sockets hold in a presence: their entries and subscriptions.

A socket's entries end when it leaves its namespace (a ``socket.on_leave`` hook, registered
once per socket). A socket that tracks in its connect handler and is then refused never
leaves (it never joined): :meth:`Holdings.sweep` finds it gone and ends its entries. Its
subscription rooms go with the socket itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from rooms.presence.state import Where

if TYPE_CHECKING:
    from rooms.socket import Socket

logger = logging.getLogger("rooms.presence")


class Held:
    """What one socket holds: its entries by place, and the topics it subscribed to."""

    __slots__ = ("socket", "subscribed", "tracked")

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.tracked: dict[Where, str] = {}  # (topic, key) → ref
        self.subscribed: set[str] = set()


class Holdings:
    """Every socket of this process that holds something; ``end(ref)`` ends an entry."""

    __slots__ = ("connecting", "end", "held")

    def __init__(self, end: Callable[[str], None]) -> None:
        self.end = end
        self.held: dict[str, Held] = {}  # socket id → what it holds
        self.connecting: dict[str, Socket] = {}  # holding before their CONNECT reply

    def of(self, socket: Socket) -> Held | None:
        held = self.held.get(socket.id)
        return held if held is not None and held.socket is socket else None

    def holder(self, socket: Socket) -> Held:
        """What ``socket`` holds, made (and its leave hook registered) on first use."""
        held = self.of(socket)
        if held is None:
            previous = self.held.get(socket.id)
            if previous is not None:  # that id's previous socket (recovered meanwhile)
                self.release(previous)
            held = self.held[socket.id] = Held(socket)
            socket.on_leave(self.left)
            if not socket.connected:  # in its connect handler: it may yet be refused
                self.connecting[socket.id] = socket
        return held

    def left(self, socket: Socket, reason: str) -> None:
        """The leave hook: the namespace calls it unguarded, so it never raises."""
        try:
            held = self.of(socket)
            if held is not None:
                self.release(held)
        except Exception:
            logger.exception("presence: ending the entries of socket %s failed", socket.id)

    def release(self, held: Held) -> None:
        """Its socket is gone: its entries end."""
        sid = held.socket.id
        if self.held.get(sid) is held:
            del self.held[sid]
        if self.connecting.get(sid) is held.socket:
            del self.connecting[sid]
        tracked, held.tracked = held.tracked, {}
        for ref in tracked.values():
            self.end(ref)

    def sweep(self) -> None:
        """End what sockets refused after their connect handler tracked still hold."""
        for sid, socket in list(self.connecting.items()):
            if socket.connected:
                del self.connecting[sid]
            elif socket.gone:
                held = self.of(socket)
                if held is not None:
                    self.release(held)
                self.connecting.pop(sid, None)
