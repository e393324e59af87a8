"""The rooms side of tests/differential: the bare Engine.IO endpoints of
tests/apps/bare_engine.py (/engine.io/, /engine-slow/, /state, /close) and the Socket.IO
server of tests/apps/interop.py (/socket.io/), in one app.

tests/js/reference_server.js serves the same paths from Node's engine.io and socket.io,
configured alike.
"""

from __future__ import annotations

import rooms
from tests.apps import bare_engine, interop

app = rooms.RoomsMiddleware(bare_engine.app, server=interop.server)
