"""Type aliases shared across rooms (ASGI shapes match ``starlette.types``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
AnyASGIApp: TypeAlias = Callable[[Any, Any, Any], Awaitable[None]]
"""What the middleware wraps: frameworks type their scopes their own way (Litestar uses
TypedDicts), so any three-argument awaitable callable is accepted."""

JSON: TypeAlias = Any
"""Anything ``json`` can encode, plus ``bytes`` anywhere (sent as binary attachments)."""

Clock: TypeAlias = Callable[[], float]
"""Monotonic seconds; injected so tests never wait for real time."""
