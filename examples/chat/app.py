"""Chat demo: nicknames, rooms, acks, a live "who is here" list, typing, announcements.

Run it from the repository root with ``make demo`` (it installs the Python and npm
dependencies first), or by hand::

    .venv/bin/python -m uvicorn examples.chat.app:app --host 127.0.0.1 --port 8000

then open http://127.0.0.1:8000/ in two browser windows. Broadcast a system message
from outside any handler (``?room=lobby`` to reach a single room)::

    curl -d 'Server restarts in 5 minutes' http://127.0.0.1:8000/announce

What runs it is visible: the Socket.IO Admin UI at http://127.0.0.1:8000/admin-ui/ (server
URL ``http://127.0.0.1:8000``, username ``admin``, password ``admin`` or
``ROOMS_ADMIN_PASSWORD``: every socket, room and event, on every process of a cluster),
Prometheus metrics at http://127.0.0.1:8000/metrics, readiness at ``/ready``, and
``curl -X POST http://127.0.0.1:8000/drain`` closes every connection over 10 s (the
clients reconnect; in a cluster, to the other processes).

The same code runs as a cluster: set ``ROOMS_BROKER`` (e.g. ``redis://127.0.0.1:6379/0``)
and start several processes, or ``--workers 3`` (see ``examples/cluster``).

Who is here is presence (rooms.presence, docs/guides/presence.md): each user is tracked in
their room under their nickname (two tabs of one user are one name), the page subscribes to
the room and keeps its list from ``presence_state`` and ``presence_diff`` with
examples/presence.js, on one process or across a cluster.

Events, client → server:
    ``join(room) -> {"room"}``          leave the current room, join ``room``
    ``history() -> [message, ...]``     the current room's last messages (see HISTORY)
    ``message(text) -> "delivered"``    say something to the current room
    ``typing(active)``                  "started typing" (volatile) or "stopped" (reliable)

Events, server → client:
    ``message({"room", "name", "text", "at"})``, ``system({"room", "text"})``,
    ``typing({"name", "active"})``, ``announce({"text"})``, and presence's
    ``presence_state({"topic", "state"})`` and ``presence_diff({"topic", "joins", "leaves"})``
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import rooms
from rooms.metrics import Metrics
from rooms.starlette import drain, get_server, readiness

HERE = Path(__file__).resolve().parent
INDEX = HERE / "static" / "index.html"
# The official browser client and the Admin UI, installed by `npm ci` (never copied into
# the repository).
NODE_MODULES = HERE.parents[1] / "node_modules"
CLIENT_BUNDLE = NODE_MODULES / "socket.io-client" / "dist" / "socket.io.min.js"
PRESENCE_JS = HERE.parent / "presence.js"  # keeps a synced who-list in the page
ADMIN_UI = NODE_MODULES / "@socket.io" / "admin-ui" / "ui" / "dist"

DEFAULT_ROOM = "lobby"
MAX_NAME = 24  # nicknames and room names
MAX_TEXT = 500
# The last HISTORY messages of each of the HISTORY_ROOMS most recently active rooms, kept in
# memory: a page that is reloaded (or a user who switches rooms) sees what was said before.
# In a cluster every process keeps the same history (see remember) from its start on; it is
# gone when the last process restarts.
HISTORY = 50
HISTORY_ROOMS = 100

# One process by default; a cluster when ROOMS_BROKER names a broker (no handler changes).
server = rooms.Server(broker=os.environ.get("ROOMS_BROKER") or None)
presence = server.presence  # who is in which room, on every process
metrics = Metrics(server)  # scraped at /metrics
# The Socket.IO Admin UI, in development mode (every event shown): fine for a demo on
# 127.0.0.1; a real deployment keeps its password out of the code and may want "production".
server.instrument(
    auth={"username": "admin", "password": os.environ.get("ROOMS_ADMIN_PASSWORD", "admin")},
    mode="development",
)
history: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()


def clean(value: object, limit: int) -> str:
    """Client input as a trimmed, bounded string ("" for anything that is not a string)."""
    return " ".join(value.split())[:limit] if isinstance(value, str) else ""


def name_of(socket: rooms.Socket | rooms.RemoteSocket) -> str:
    return str(socket.data["name"])


def remember(payload: dict[str, Any]) -> None:
    """Add a message to its room's history, forgetting the oldest beyond the bounds."""
    room = str(payload["room"])
    said = history.pop(room, None) or deque(maxlen=HISTORY)
    said.append(payload)
    history[room] = said  # the most recently active room last
    while len(history) > HISTORY_ROOMS:
        history.popitem(last=False)


@server.on_server_event("said")
def said_elsewhere(payload: object) -> None:
    """A message said on another process of the cluster: into this process's history too."""
    if isinstance(payload, dict) and isinstance(payload.get("room"), str):
        remember(payload)


async def leave_current(socket: rooms.Socket) -> None:
    """Take ``socket`` out of its chat room and tell the people left behind."""
    room: str | None = socket.data.pop("room", None)
    if room is None:
        return
    await socket.leave(room)
    presence.untrack(socket, room)  # (a socket that disconnects is untracked anyway)
    await presence.unsubscribe(socket, room)
    await server.to(room).emit("system", {"room": room, "text": f"{name_of(socket)} left"})


@server.on("connect")
async def connect(socket: rooms.Socket, auth: dict[str, Any]) -> None:
    name = clean(auth.get("name"), MAX_NAME)
    if not name:
        raise rooms.ConnectionRefused("pick a nickname first")
    socket.data["name"] = name


@server.on("join")
async def join(socket: rooms.Socket, room: object) -> dict[str, Any]:
    target = clean(room, MAX_NAME).lower() or DEFAULT_ROOM
    if socket.data.get("room") != target:
        await leave_current(socket)
        await socket.join(target)
        socket.data["room"] = target
        # Who is here: tracked under the nickname, and the page gets the room's list.
        presence.track(socket, target, name_of(socket), {"name": name_of(socket)})
        await presence.subscribe(socket, target)
        text = f"{name_of(socket)} joined"
        await socket.to(target).emit("system", {"room": target, "text": text})
    return {"room": target}


@server.on("message")
async def message(socket: rooms.Socket, text: object) -> str:
    room: str | None = socket.data.get("room")
    body = clean(text, MAX_TEXT)
    if room is None or not body:
        return "rejected"
    payload = {"room": room, "name": name_of(socket), "text": body, "at": time.time()}
    remember(payload)
    await socket.to(room).emit("message", payload)  # the sender shows its own copy
    await server.server_side_emit("said", payload)  # the other processes' histories
    return "delivered"


@server.on("history")
async def room_history(socket: rooms.Socket) -> list[dict[str, Any]]:
    room: str | None = socket.data.get("room")
    return list(history.get(room, ())) if room is not None else []


@server.on("typing")
async def typing_changed(socket: rooms.Socket, active: object) -> None:
    room: str | None = socket.data.get("room")
    if room is None:
        return
    payload = {"name": name_of(socket), "active": active is True}
    if active is True:  # a lost start only leaves the indicator out: fine for a slow client
        await socket.to(room).volatile.emit("typing", payload)
    else:  # a lost stop would leave "X is typing…" up until the page's own timeout
        await socket.to(room).emit("typing", payload)


@server.on("disconnect")
async def disconnect(socket: rooms.Socket, reason: str) -> None:
    await leave_current(socket)


# ---------------------------------------------------------------------- HTTP routes


async def index(request: Request) -> Response:
    return FileResponse(INDEX, media_type="text/html")


async def client_bundle(request: Request) -> Response:
    if not CLIENT_BUNDLE.is_file():
        return PlainTextResponse(
            f"{CLIENT_BUNDLE} is missing: run `make demo` (it runs `npm ci`) "
            "from the repository root.",
            status_code=500,
        )
    return FileResponse(CLIENT_BUNDLE, media_type="application/javascript")


async def presence_js(request: Request) -> Response:
    return FileResponse(PRESENCE_JS, media_type="application/javascript")


async def admin_ui_missing(request: Request) -> Response:
    return PlainTextResponse(
        f"{ADMIN_UI} is missing: run `make demo` (it runs `npm ci`) from the repository root.",
        status_code=500,
    )


async def announce(request: Request) -> Response:
    """POST a plain-text body; it reaches every client (or one room, with ``?room=``)."""
    text = clean((await request.body()).decode(errors="replace"), MAX_TEXT)
    if not text:
        return PlainTextResponse("expected a non-empty text body", status_code=400)
    room = request.query_params.get("room")
    sio = get_server(request)
    audience = sio.to(room) if room else sio.main
    await audience.emit("announce", {"text": text})
    reached = len(await audience.fetch_sockets())
    return JSONResponse({"text": text, "room": room, "reached": reached})


async def health(request: Request) -> Response:
    """Liveness: ``ok`` while the process answers (readiness is ``/ready``)."""
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Route("/", index),
        Route("/socket.io.min.js", client_bundle),
        Route("/presence.js", presence_js),
        Route("/announce", announce, methods=["POST"]),
        Route("/health", health),
        # Operations (docs/guides/operations.md): readiness (``?peers=N`` waits until N
        # other processes are known), Prometheus metrics, and a graceful drain.
        Route("/ready", readiness),
        Route("/metrics", metrics.app()),
        Route("/drain", drain(window=10, interval=0.5), methods=["POST"]),
        Mount("/admin-ui", StaticFiles(directory=ADMIN_UI, html=True))
        if ADMIN_UI.is_dir()
        else Route("/admin-ui/{path:path}", admin_ui_missing),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
