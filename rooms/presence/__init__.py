"""Presence: who is in which topic right now, on every process, with join and leave diffs.

::

    presence = server.presence            # or server.of("/chat").presence
    presence.batch_window = 0.05          # seconds; one diff per topic per window

    @server.on("enter")
    async def enter(socket, room):
        presence.track(socket, room, socket.data["user"], {"name": socket.data["name"]})
        await presence.subscribe(socket, room)      # presence_state now, presence_diff after

    @presence.on_join
    def joined(topic, key, meta): ...               # also on_leave

    presence.list("lobby")   # {"u42": [{"ref": "...", "name": "Ada"}, ...]}: local, cheap

A topic is any name (a room name, say); a key groups entries (a user id: one user with three
tabs is one key with three metas). An entry lives until ``untrack``, or until its socket
disconnects, or until its process leaves the cluster. Topics and keys are bounded by
``server.limits.max_name_length``, metas by ``max_meta_bytes`` (as JSON) and
``limits.max_json_depth``; a socket holds at most ``max_tracks_per_socket`` entries and
``max_subscriptions_per_socket`` subscriptions. Presence works on namespaces made by
``server.of(name)``, not on the children of a dynamic namespace.

What clients receive (two Socket.IO events; any client can consume them)::

    presence_state  {"topic": t, "state": {key: [meta, ...]}}
    presence_diff   {"topic": t, "joins": {key: [meta, ...]}, "leaves": {key: [meta, ...]}}

Each meta is the one given to ``track`` with the entry's ``"ref"`` added
(``{"ref": "Xq3...", **meta}``); refs are unique per track. A client keeps a
``{key: [meta]}`` map: it replaces it with the state, then for each diff removes the metas of
``leaves`` by ref, then adds the metas of ``joins`` (replacing one with the same ref), and
drops a key left with no meta. ``update`` is one diff: the old meta in ``leaves``, the new
one (a new ref) in ``joins``. examples/presence.js does this in a few lines.

Diffs are batched per topic: a process gathers its own changes for a window, and sends
those of another process (gathered there for a window) as soon as they arrive; so a
subscriber gets at most one diff per topic per window from each process whose entries
changed, and a join and a leave of one entry within a window cancel out. A subscriber is
sent the state as the others' last diff left it, so the next diff applies to it as to them.
Subscribers are in the room ``"rooms.presence:" + topic`` (a reserved prefix); every process
sends diffs only to its own subscribers, for every change it learns, so none is sent twice.
Hooks (``on_join``, ``on_leave``) hear the same changes, on every process.

Across processes (any broker), see :mod:`rooms.presence.replication`: each process owns its
entries and sends the others its changes once per window, as server-side events on the
namespace, O(changes) per message; a process that joins the cluster asks the others for
their entries; one that is declared gone has its entries removed everywhere. Guarantees,
eventual consistency:

- an entry tracked on a live process shows in every process's ``list`` within about one
  batch window plus the broker's latency; one untracked or disconnected goes as fast;
- the changes of one process reach each other process in the order they were made (per
  topic and across topics), once each; a lost message is detected (its sender's sequence
  skips) and repaired with the sender's full state (the changes in between then show as
  their net effect), asked again every ``request_timeout`` until it comes;
- the entries of a process that dies are removed everywhere, with leave diffs, within the
  cluster's ``heartbeat_timeout`` (at once when it stops cleanly);
- a process that starts, or rejoins after a broker outage, receives every other process's
  entries (``wait_synced()`` waits for that), from its start if its presence was made
  before (``server.presence`` at import time, say), else from its first use.

No Redis key per socket: the broker only carries messages. Without a broker everything is
local and still batched.
"""

from __future__ import annotations

from rooms.presence.bounds import Meta
from rooms.presence.tracker import DIFF_EVENT, ROOM_PREFIX, STATE_EVENT, Presence

__all__ = ["DIFF_EVENT", "ROOM_PREFIX", "STATE_EVENT", "Meta", "Presence"]
