"""Brokers move bytes between processes; choose one by URL or pass an instance."""

from __future__ import annotations

from urllib.parse import urlsplit

from rooms.brokers.base import Broker
from rooms.brokers.memory import Hub, MemoryBroker

__all__ = ["Broker", "Hub", "MemoryBroker", "broker_from_url"]


def broker_from_url(url: str) -> Broker:
    """``memory://`` today; the scheme decides the broker."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBroker()
    raise ValueError(f"expected a broker URL with scheme 'memory://', got {url!r}")
