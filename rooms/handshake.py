"""What a socket knows of how it connected: headers, query, auth, address, ASGI scope."""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import Headers, QueryParams

from rooms._types import Scope


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
        return Headers(scope=self.scope)

    @property
    def query(self) -> QueryParams:
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def address(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    @property
    def url(self) -> str:
        query = self.scope.get("query_string", b"")
        path: str = self.scope.get("path", "")
        return f"{path}?{query.decode('latin-1')}" if query else path

    @property
    def secure(self) -> bool:
        return self.scope.get("scheme") in ("https", "wss")

    @property
    def user(self) -> Any:
        return self.scope.get("user")

    def __repr__(self) -> str:
        return f"<Handshake {self.address} {self.url}>"
