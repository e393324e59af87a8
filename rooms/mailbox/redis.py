"""The Redis mailbox store: one stream per identity, so messages outlive every server
process (as long as Redis keeps its data: run it with persistence for that).

Ids are stream ids. The count bound is exact (``MAXLEN``), the age bound is applied on every
read and write (``MINID``), and a mailbox nobody touches for ``max_age`` expires entirely.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from rooms.brokers.redis import RedisBroker, as_text
from rooms.mailbox.store import Mail, Overflow

logger = logging.getLogger("rooms.mailbox")


_PUT_UNLESS_FULL = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2], 'a', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return id
"""


class RedisMailboxStore:
    def __init__(
        self,
        broker: RedisBroker,
        prefix: str,
        max_messages: int,
        max_age: float,
        overflow: Overflow,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.max_messages = max_messages
        self.max_age = max_age
        self.overflow = overflow

    def _key(self, identity: str) -> str:
        return f"{self.prefix}#mailbox#{identity}"

    def _oldest(self) -> str:
        return f"{int(time.time() * 1000 - self.max_age * 1000)}-0"

    async def put(self, identity: str, event: str, args: tuple[Any, ...]) -> str | None:
        key, oldest, limit = self._key(identity), self._oldest(), self.max_messages
        fields = {"e": event, "a": json.dumps(list(args))}
        ttl = max(1, int(self.max_age * 1000))
        reject = self.overflow == "reject"

        async def put(client: Any) -> Any:
            await client.xtrim(key, minid=oldest)
            if reject:  # check and add in one step: two senders cannot both squeeze in
                return await client.eval(
                    _PUT_UNLESS_FULL, 1, key, limit, fields["e"], fields["a"], ttl
                )
            async with client.pipeline(transaction=True) as pipe:
                pipe.xadd(key, fields, maxlen=limit, approximate=False)
                pipe.pexpire(key, ttl)
                entry, _ = await pipe.execute()
            return entry

        entry = await self.broker.execute(put)
        if entry is None:
            return None
        return as_text(entry)

    async def pending(self, identity: str, after: str | None, limit: int) -> list[Mail]:
        key, oldest = self._key(identity), self._oldest()

        async def read(client: Any) -> Any:
            await client.xtrim(key, minid=oldest)
            return await client.xrange(key, f"({after}" if after else "-", "+", count=limit)

        entries = await self.broker.execute(read)
        found = []
        for entry_id, fields in entries:
            mail_id = as_text(entry_id)
            try:
                args = tuple(json.loads(fields[b"a"]))
                found.append(Mail(mail_id, fields[b"e"].decode(), args))
            except (KeyError, ValueError) as exc:
                logger.warning("mailbox of %s: entry %s is unreadable (%r)", identity, mail_id, exc)
        return found

    async def remove(self, identity: str, mail_id: str) -> None:
        key = self._key(identity)
        await self.broker.execute(lambda client: client.xdel(key, mail_id))

    async def count(self, identity: str) -> int:
        key, oldest = self._key(identity), self._oldest()

        async def count(client: Any) -> int:
            await client.xtrim(key, minid=oldest)
            return int(await client.xlen(key))

        return await self.broker.execute(count)
