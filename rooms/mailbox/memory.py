"""The memory mailbox store: this process only; gone when it stops."""

from __future__ import annotations

import logging
from typing import Any

from rooms._types import Clock
from rooms.mailbox.store import Mail, Overflow

logger = logging.getLogger("rooms.mailbox")


class MemoryMailboxStore:
    def __init__(self, clock: Clock, max_messages: int, max_age: float, overflow: Overflow) -> None:
        self.clock = clock
        self.max_messages = max_messages
        self.max_age = max_age
        self.overflow = overflow
        self.dropped = 0
        # identity -> id -> (kept since, mail); dicts keep insertion (= id) order.
        self._boxes: dict[str, dict[str, tuple[float, Mail]]] = {}
        self._seq = 0

    def _box(self, identity: str) -> dict[str, tuple[float, Mail]]:
        box = self._boxes.get(identity)
        if box is None:
            return {}
        oldest_kept = self.clock() - self.max_age
        while box:
            first = next(iter(box))
            if box[first][0] >= oldest_kept:
                break
            del box[first]
            self.dropped += 1
        if not box:
            del self._boxes[identity]
        return box

    async def put(self, identity: str, event: str, args: tuple[Any, ...]) -> str | None:
        box = self._box(identity)
        if len(box) >= self.max_messages:
            if self.overflow == "reject":
                return None
            del box[next(iter(box))]
            self.dropped += 1
            logger.warning("mailbox of %s is full: dropped its oldest message", identity)
        self._seq += 1
        mail = Mail(f"{self._seq:016x}", event, args)  # fixed width: ids sort as they come
        self._boxes.setdefault(identity, box)[mail.id] = (self.clock(), mail)
        return mail.id

    async def pending(self, identity: str, after: str | None, limit: int) -> list[Mail]:
        found = []
        for mail_id, (_, mail) in self._box(identity).items():
            if after is None or mail_id > after:
                found.append(mail)
                if len(found) == limit:
                    break
        return found

    async def remove(self, identity: str, mail_id: str) -> None:
        box = self._boxes.get(identity)
        if box is not None:
            box.pop(mail_id, None)
            if not box:
                del self._boxes[identity]

    async def count(self, identity: str) -> int:
        return len(self._box(identity))
