"""Brokers move bytes between processes; choose one by URL or pass an instance.

``memory://`` (the default) is this process only; ``memory://name`` names a hub, so
servers in one process on the same name form a cluster. ``redis://``, ``rediss://`` and
``unix://`` choose :class:`~rooms.brokers.redis.RedisBroker` (the ``redis`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from rooms.brokers.base import Broker
from rooms.brokers.memory import Hub, MemoryBroker

if TYPE_CHECKING:
    from rooms.brokers.redis import RedisBroker

__all__ = [
    "Broker",
    "Hub",
    "MemoryBroker",
    "RedisBroker",
    "StoreKind",
    "broker_from_url",
    "redis_for",
]

StoreKind = Literal["auto", "memory", "redis"]
"""Where a store beside the broker keeps its data (recovery, mailbox)."""

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_HUBS: dict[str, Hub] = {}


def broker_from_url(url: str) -> Broker:
    """The broker a URL names: ``memory://[name]``, ``redis://``, ``rediss://``, ``unix://``."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        name = parts.netloc + parts.path
        return MemoryBroker(hub=_HUBS.setdefault(name, Hub()) if name else None)
    if parts.scheme in _REDIS_SCHEMES:
        from rooms.brokers.redis import RedisBroker

        return RedisBroker(url)
    schemes = ", ".join(f"'{scheme}://'" for scheme in ("memory", *_REDIS_SCHEMES))
    raise ValueError(f"expected a broker URL with scheme {schemes}, got {url!r}")


def redis_for(kind: StoreKind, broker: Broker | None, what: str) -> RedisBroker | None:
    """The Redis broker a store of ``kind`` keeps its data with, or None for memory.

    ``"auto"`` is Redis when the broker is; ``"redis"`` needs a Redis broker (ValueError
    naming ``what`` otherwise)."""
    from rooms.brokers.redis import RedisBroker

    if kind == "memory":
        return None
    if isinstance(broker, RedisBroker):
        return broker
    if kind == "redis":
        raise ValueError(f"expected a Redis broker for {what}, got {broker!r}")
    return None


def __getattr__(name: str) -> Any:
    # Lazy: importing rooms must not import redis.
    if name == "RedisBroker":
        from rooms.brokers.redis import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
