"""What the durable mailbox keeps: messages for an identity, oldest first, until acked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Overflow = Literal["drop-oldest", "reject"]


@dataclass(frozen=True, slots=True)
class Mail:
    """One message: ``id`` is stable (clients drop duplicates by it) and sorts in order."""

    id: str
    event: str
    args: tuple[Any, ...]


class MailboxStore(Protocol):
    """Per identity, an ordered, bounded queue. Bounds: ``max_messages`` per identity (past
    it, ``overflow`` decides: drop the oldest, or refuse the new one) and ``max_age``
    seconds (older messages are dropped)."""

    async def put(self, identity: str, event: str, args: tuple[Any, ...]) -> str | None:
        """Keep a message; its id, or None if the mailbox is full and refuses it."""

    async def pending(self, identity: str, after: str | None, limit: int) -> list[Mail]:
        """Up to ``limit`` messages after id ``after`` (from the oldest if None), in order."""

    async def remove(self, identity: str, mail_id: str) -> None:
        """A client acknowledged it: it is gone (removing it twice is fine)."""

    async def count(self, identity: str) -> int: ...
