"""An app whose rooms server cannot start: a Redis recovery store with no Redis broker is a
configuration error, so lifespan startup must fail and the ASGI server must exit."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

import rooms

server = rooms.Server(recovery=rooms.Recovery(store="redis"))
app = Starlette(middleware=[Middleware(rooms.RoomsMiddleware, server=server)])
