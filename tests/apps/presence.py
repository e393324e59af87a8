"""The app the multi-process presence tests run: one member of a cluster on ``ROOMS_BROKER``.

Clients drive presence through events, as an application would: ``enter(topic, user, name)``
tracks the socket under the key ``user`` with the meta ``{"name": name}`` and subscribes it
(its ``presence_state`` comes before the ack); ``watch(topic)`` only subscribes; ``leave(topic)``
untracks. ``/presence?topic=t`` answers ``presence.list(t)`` as this process knows it (local,
no request); with ``expect`` it first waits, server-side and on the presence's own hooks, until
the list looks like that (see :func:`summary`) and the diffs saying so went out. Short cluster
timings (as tests/apps/cluster.py), so that a killed process is forgotten within seconds.
"""

from __future__ import annotations

import json
import math
import os

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import rooms
from rooms.presence import Meta
from tests.apps.common import cluster_route

HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 3.0
BATCH_WINDOW = 0.05

server = rooms.Server(
    broker=os.environ.get("ROOMS_BROKER") or None,
    heartbeat_interval=HEARTBEAT_INTERVAL,
    heartbeat_timeout=HEARTBEAT_TIMEOUT,
    request_timeout=2.0,
    cors_allowed_origins="*",
)
presence = server.presence  # made before the server starts: it joins the others at startup
presence.batch_window = BATCH_WINDOW

Listing = dict[str, list[Meta]]
"""A topic's list: ``{key: [meta, ...]}``, each meta with its ``"ref"``."""


class Heard:
    """What the ``on_join``/``on_leave`` hooks heard: per topic, the list as subscribers know
    it (the hooks run at the end of each window, as its diff goes out to them)."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, tuple[str, Meta]]] = {}  # topic → ref → (key, meta)
        self.changed = anyio.Event()

    def joined(self, topic: str, key: str, meta: Meta) -> None:
        self.topics.setdefault(topic, {})[meta["ref"]] = (key, meta)
        self._wake()

    def left(self, topic: str, key: str, meta: Meta) -> None:
        self.topics.get(topic, {}).pop(meta["ref"], None)
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def list(self, topic: str) -> Listing:
        listing: Listing = {}
        for key, meta in self.topics.get(topic, {}).values():
            listing.setdefault(key, []).append(meta)
        return listing


heard = Heard()
presence.on_join(heard.joined)
presence.on_leave(heard.left)


def summary(listing: Listing) -> dict[str, list[str]]:
    """``{key: sorted names}``: a list without its refs, as tests compare them."""
    return {key: sorted(str(meta.get("name")) for meta in metas) for key, metas in listing.items()}


@server.on("enter")
async def enter(socket: rooms.Socket, topic: str, user: str, name: str | None = None) -> str:
    """Track this socket under ``user`` in ``topic`` and subscribe it; the entry's ref."""
    ref = presence.track(socket, topic, user, {"name": name or user})
    await presence.subscribe(socket, topic)  # the presence_state goes out before the ack
    return ref


@server.on("watch")
async def watch(socket: rooms.Socket, topic: str) -> bool:
    await presence.subscribe(socket, topic)
    return True


@server.on("leave")
def leave(socket: rooms.Socket, topic: str) -> int:
    return presence.untrack(socket, topic)


async def listing(request: Request) -> JSONResponse:
    """``/presence?topic=t``: ``presence.list(t)``. ``&synced=1``: once this process holds
    every other one's entries. ``&expect={json}``: once ``summary(list)`` equals it and the
    hooks heard the same (so the diffs of those changes went out, and a subscriber from now
    on is sent them in its state); after ``timeout`` seconds (default 10) without, a 409 with
    both lists."""
    query = request.query_params
    topic = query["topic"]
    expect = json.loads(query["expect"]) if "expect" in query else None

    def done() -> bool:
        listed, told = summary(presence.list(topic)), summary(heard.list(topic))
        return expect is None or listed == expect == told

    with anyio.move_on_after(float(query.get("timeout", 10))):
        if query.get("synced"):
            await presence.wait_synced(timeout=math.inf)  # bounded by the route's timeout
        while not done():
            await heard.changed.wait()
    if not done():
        body = {"list": presence.list(topic), "heard": heard.list(topic), "synced": presence.synced}
        return JSONResponse(body, status_code=409)
    return JSONResponse(presence.list(topic))


async def health(request: Request) -> JSONResponse:
    return JSONResponse("ok")


app = Starlette(
    routes=[
        Route("/presence", listing),
        cluster_route(server),
        Route("/health", health),
    ],
    middleware=[Middleware(rooms.RoomsMiddleware, server=server)],
)
