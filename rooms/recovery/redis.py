"""The Redis recovery store: sessions and the packet log in Redis, shared by every process,
so a client that comes back to another process recovers too.

The log of a namespace is a Redis stream; offsets are its entry ids (the process that sends a
packet adds it, and the id it gets is the offset). It is trimmed by count (``MAXLEN ~``) on
every add and by age (``MINID ~``) now and then. A session is a key that expires after the
recovery window, taken with ``GETDEL`` so it is restored at most once. Needs Redis 6.2+.

A local broadcast (``server.local``) is logged like any other, so its recipients recover it
wherever they come back, but only the process that sent it delivers it: its entry names that
process (``o``), and the others pass it by.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.abc

from rooms._retry import Backoff
from rooms._types import Clock
from rooms.brokers.redis import RedisBroker, as_text
from rooms.protocol.cluster import BroadcastOptions
from rooms.recovery.store import Deliver, Restored, SavedSession, StoredPacket

logger = logging.getLogger("rooms.recovery")

_TRIM_EVERY = 256  # adds between two trims by age
_READ_BLOCK_MS = 400  # a blocking XREAD's bound (calls into the broker must stay short)


class RedisStore:
    # Every process reads the shared stream and delivers what it holds, in stream order:
    # offsets then grow along each client's stream, whichever process sent what.
    delivers = True

    def __init__(
        self,
        broker: RedisBroker,
        prefix: str,
        clock: Clock,
        max_disconnection_duration: float,
        max_packets: int,
    ) -> None:
        self.broker = broker
        self.prefix = prefix
        self.clock = clock
        self.max_age = max_disconnection_duration
        self.max_packets = max_packets
        self._adds = 0
        self._origin = secrets.token_hex(8)  # names this process's local broadcasts
        self._handed: dict[str, str] = {}  # stream key -> the last id run() handed on

    def _log_key(self, nsp: str) -> str:
        return f"{self.prefix}#recovery#log#{nsp}"

    def _session_key(self, pid: str) -> str:
        return f"{self.prefix}#recovery#session#{pid}"

    async def append(
        self, nsp: str, opts: BroadcastOptions, text: str, attachments: tuple[bytes, ...]
    ) -> str:
        fields: dict[str, Any] = {
            "r": json.dumps(sorted(opts.rooms)),
            "x": json.dumps(sorted(opts.except_rooms)),
            "t": text,
            "n": len(attachments),
        }
        if opts.local:
            fields["o"] = self._origin
        for i, blob in enumerate(attachments):
            fields[f"a{i}"] = blob
        key, limit = self._log_key(nsp), self.max_packets
        self._adds += 1
        trim = self._adds % _TRIM_EVERY == 0
        oldest = f"{int(_now_ms() - self.max_age * 1000)}-0"

        ttl = max(1, int(self.max_age * 1000))

        async def add(client: Any) -> Any:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xadd(key, fields, maxlen=limit, approximate=True)
                pipe.pexpire(key, ttl)  # a namespace gone quiet leaves nothing behind
                if trim:
                    pipe.xtrim(key, minid=oldest, approximate=True)
                results = await pipe.execute()
            return results[0]

        entry = await self.broker.execute(add)
        return as_text(entry)

    def received(self, nsp: str, packet: StoredPacket) -> None:
        pass  # the sender added it to the shared stream

    def delivered(self, nsp: str, offset: str) -> bool:
        handed = self._handed.get(self._log_key(nsp))
        if handed is None:
            return True  # not read yet: the reader starts past what is in the stream now
        return _order(handed) >= _order(offset)  # both ids of this stream

    async def save(self, nsp: str, session: SavedSession) -> None:
        try:
            value = json.dumps(
                {
                    "nsp": nsp,
                    "sid": session.sid,
                    "rooms": sorted(session.rooms),
                    "data": session.data,
                }
            )
        except (TypeError, ValueError) as exc:
            logger.warning(
                "socket %s: socket.data is not JSON-able (%s); it cannot be recovered",
                session.sid,
                exc,
            )
            return
        key, ttl = self._session_key(session.pid), max(1, int(self.max_age * 1000))
        await self.broker.execute(lambda client: client.set(key, value, px=ttl))

    async def restore(self, nsp: str, pid: str, offset: str) -> Restored | None:
        key, log = self._session_key(pid), self._log_key(nsp)

        async def take(client: Any) -> tuple[Any, Any, Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.getdel(key)
                pipe.xrange(log, offset, offset, count=1)
                pipe.xrange(log, f"({offset}", "+")
                return tuple(await pipe.execute())

        try:
            raw, at_offset, entries = await self.broker.execute(take)
        except Exception as exc:  # a malformed offset is a ResponseError: a fresh socket
            logger.info("recovery of %.40r failed: %r; a fresh socket instead", pid, exc)
            return None
        if raw is None or not at_offset:
            return None
        try:
            saved = json.loads(raw)
            if saved.get("nsp") != nsp:
                return None
            session = SavedSession(
                str(saved["sid"]), pid, frozenset(saved["rooms"]), dict(saved["data"] or {})
            )
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("session %.40r in Redis is unreadable (%r)", pid, exc)
            return None
        missed = []
        for entry_id, fields in entries:
            packet = _packet(entry_id, fields)
            if packet.reaches(session.rooms):
                missed.append(packet)
        return Restored(session, missed)

    async def run(
        self,
        namespaces: Callable[[], Iterable[str]],
        deliver: Deliver,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read every namespace's stream from now on and deliver its entries in order.
        Started once the namespaces known at startup have their place in their streams
        (or Redis proved away), so nothing logged after the server started is skipped.
        Redis away: retried with backoff (senders meanwhile fail to log, and deliver
        directly, unlogged)."""
        last = self._handed
        names: dict[str, str] = {}
        backoff = Backoff(0.1, 5.0)
        started = False
        while True:
            try:
                for nsp in namespaces():
                    key = self._log_key(nsp)
                    if key not in last:
                        names[key] = nsp
                        last[key] = await self._last_id(key)
                if not started:
                    started = True
                    task_status.started()
                if not last:
                    await anyio.sleep(_READ_BLOCK_MS / 1000)
                    continue
                found = await self.broker.execute(functools.partial(_read, dict(last)))
                backoff.reset()
            except Exception as exc:
                logger.warning("recovery log reader: %r; retrying in %.1f s", exc, backoff.delay)
                if not started:
                    started = True
                    task_status.started()
                await backoff.wait()
                continue
            for raw_key, entries in found or ():
                key = as_text(raw_key)
                for entry_id, fields in entries:
                    last[key] = as_text(entry_id)
                    try:
                        packet = _packet(entry_id, fields)
                    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
                        logger.warning(
                            "recovery log %s: entry %r unreadable (%r)", key, entry_id, exc
                        )
                        continue
                    origin = fields.get(b"o")
                    if origin is not None and origin.decode() != self._origin:
                        continue  # another process's local broadcast: it delivers that
                    try:
                        deliver(names[key], packet)
                    except Exception:
                        logger.exception(
                            "delivering %s from the recovery log failed", packet.offset
                        )

    async def _last_id(self, key: str) -> str:
        newest = await self.broker.execute(lambda client: client.xrevrange(key, count=1))
        if not newest:
            return "0-0"
        entry_id = newest[0][0]
        return as_text(entry_id)

    async def close(self) -> None:
        pass  # the broker owns the connection


async def _read(streams: dict[str, str], client: Any) -> Any:
    return await client.xread(streams, count=1000, block=_READ_BLOCK_MS)


def _packet(entry_id: bytes | str, fields: dict[bytes, bytes]) -> StoredPacket:
    count = int(fields[b"n"])
    return StoredPacket(
        as_text(entry_id),
        BroadcastOptions(frozenset(json.loads(fields[b"r"])), frozenset(json.loads(fields[b"x"]))),
        fields[b"t"].decode(),
        tuple(fields[f"a{i}".encode()] for i in range(count)),
    )


def _order(entry_id: str) -> tuple[int, int]:
    """A stream id as what orders it: ``"<ms>-<seq>"``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _now_ms() -> float:
    return time.time() * 1000  # stream ids are wall-clock milliseconds (Redis's clock, ~ours)
