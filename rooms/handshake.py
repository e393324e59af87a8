"""What a socket knows of how it connected: headers, query, auth, address, ASGI scope."""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import Headers, QueryParams

from rooms._types import Scope
from rooms.protocol.cluster import headers_from_wire, headers_to_wire


class Handshake:
    """Read-only details of a socket's connection, built lazily from the first request.

    ``user`` is ``scope["user"]`` when Starlette's ``AuthenticationMiddleware`` runs
    outside ours, else ``None``.
    """

    __slots__ = ("auth", "issued", "scope")

    def __init__(self, scope: Scope, auth: dict[str, Any]) -> None:
        self.scope = scope
        self.auth = auth
        self.issued = time.time()

    @property
    def headers(self) -> Headers:
        """The first request's headers (case-insensitive, as Starlette's)."""
        return Headers(scope=self.scope)

    @property
    def query(self) -> QueryParams:
        """The first request's query string, parsed."""
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def address(self) -> str | None:
        """The client's IP address, as the ASGI server saw it."""
        client = self.scope.get("client")
        return client[0] if client else None

    @property
    def url(self) -> str:
        """The first request's path and query string."""
        query = self.scope.get("query_string", b"")
        path: str = self.scope.get("path", "")
        return f"{path}?{query.decode('latin-1')}" if query else path

    @property
    def secure(self) -> bool:
        """Whether the connection came over TLS (https or wss)."""
        return self.scope.get("scheme") in ("https", "wss")

    @property
    def user(self) -> Any:
        """``scope["user"]`` (Starlette's AuthenticationMiddleware outside ours), or None."""
        return self.scope.get("user")

    def __repr__(self) -> str:
        return f"<Handshake {self.address} {self.url}>"

    # What crosses the cluster, shaped like Socket.IO's handshake object.

    def to_wire(self) -> dict[str, Any]:
        """What crosses the cluster for ``fetch_sockets`` (Socket.IO's handshake shape)."""
        return {
            "headers": headers_to_wire(self.scope.get("headers", ())),
            "address": self.address,
            "url": self.url,
            "secure": self.secure,
            "issued": round(self.issued * 1000),
            "auth": self.auth,
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Handshake:
        """A handshake described by another process: the same properties, over a minimal
        scope rebuilt from what it sent (``user`` is None: it does not travel)."""
        url = wire.get("url")
        path, _, query = (url if isinstance(url, str) else "").partition("?")
        address = wire.get("address")
        scope: Scope = {
            "type": "http",
            "path": path,
            "query_string": query.encode("latin-1"),
            "headers": headers_from_wire(wire.get("headers")),
            "client": (address, 0) if isinstance(address, str) else None,
            "scheme": "https" if wire.get("secure") is True else "http",
        }
        auth = wire.get("auth")
        handshake = cls(scope, auth if isinstance(auth, dict) else {})
        issued = wire.get("issued")
        if isinstance(issued, int | float):
            handshake.issued = issued / 1000
        return handshake
