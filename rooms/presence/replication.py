"""Presence between processes: server-side events on the namespace, in order per sender.

Each process owns the entries it tracked and tells the others what changed, one batch per
window. Three server-side events, each naming its sender's node uid::

    rooms:presence:delta [uid, seq, ops]        to everyone: changes, seq 1, 2, 3, ...
                                                ops: ["j", topic, key, meta] (meta holds
                                                its "ref") and ["l", ref]
    rooms:presence:sync  [uid, seq, hello]      "send me your state": to everyone when the
                                                sender joins the cluster (hello true), or
                                                to one process whose deltas it lost
    rooms:presence:state [uid, seq, entries,    the answer, to the asker only: the sender's
                          part, parts]          own entries as [topic, key, meta], as of
                                                seq, in ``parts`` messages

No message holds more than ``MAX_PER_MESSAGE`` ops or entries: a window's changes past that
go as several deltas (consecutive seqs), a large state as several parts.

A receiver applies a sender's deltas in sequence order. A delta that skips a number means
one was lost (a full queue, a broker outage): the receiver holds what comes next and asks
that sender for its state, which names the seq it stands for, so the held deltas after it
apply on top. A hello carries the sender's seq, so a process that kept an old view of it
(the sender was cut off for less than ``heartbeat_timeout``) notices and asks. An unanswered
ask is repeated every ``request_timeout`` until answered or the process is gone.

Messages are queued synchronously, in the order they are made (a task switch between two
could reorder them); the node's queue drops one only when it is full, and a drop is a gap
that receivers repair. Messages from other processes are checked before they are used: a
malformed one is logged (rate-limited) and ignored.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from rooms._log import Throttled
from rooms.presence.bounds import REF, Meta
from rooms.presence.state import State
from rooms.protocol import cluster as wire

if TYPE_CHECKING:
    import anyio

    from rooms.cluster import Node

logger = logging.getLogger("rooms.presence")
_malformed = Throttled(logger, burst=5)

DELTA = "rooms:presence:delta"
SYNC = "rooms:presence:sync"
STATE = "rooms:presence:state"

MAX_PER_MESSAGE = 1000
"""Ops per delta, entries per part of a state: a burst or a large state never makes one
message of unbounded size."""

MAX_HELD = 1000
"""Deltas held per sender while its state is awaited; past it the oldest go (the state then
covers them, or a gap remains and the state is asked for again)."""

Op = list[Any]


class View(Protocol):
    """Where replicated changes land: the presence, which keeps diffs and wakes up."""

    def _add(self, owner: str, topic: str, key: str, meta: Meta) -> None:
        """``owner``'s entry joined."""

    def _remove(self, owner: str, ref: str) -> None:
        """``owner``'s entry ``ref`` left."""

    def _synced_changed(self) -> None:
        """A process's state was received, or a process went."""


class Outbox:
    """This process's changes not yet sent: the next delta. A join and a leave of one
    entry within the window cancel out."""

    __slots__ = ("ops", "seq")

    def __init__(self) -> None:
        self.ops: dict[str, Op] = {}  # ref → op, in the order they were made
        self.seq = 0  # the last delta made (sent, or lost while the cluster was away)

    def joined(self, topic: str, key: str, meta: Meta) -> None:
        self.ops[meta[REF]] = ["j", topic, key, meta]

    def left(self, ref: str) -> None:
        if self.ops.pop(ref, None) is None:
            self.ops[ref] = ["l", ref]

    def take(self) -> list[list[Op]]:
        """The next deltas' ops (the seq goes up by one for each)."""
        ops = list(self.ops.values())
        self.ops = {}
        return [ops[at : at + MAX_PER_MESSAGE] for at in range(0, len(ops), MAX_PER_MESSAGE)]


class Peer:
    """What this process knows of another's entries: the last delta applied (``seq``), and
    whether every one up to it was (``synced``). While not, later deltas wait in ``held``."""

    __slots__ = ("asked_at", "held", "parts", "seq", "synced")

    def __init__(self, seq: int = 0, synced: bool = False) -> None:
        self.seq = seq
        self.synced = synced
        self.held: dict[int, list[Op]] = {}
        self.asked_at: float | None = None
        self.parts: tuple[int, list[Any]] | None = None  # a state arriving: (seq, entries)

    def hold(self, seq: int, ops: list[Op]) -> None:
        if seq > self.seq:
            self.held[seq] = ops
            while len(self.held) > MAX_HELD:
                del self.held[min(self.held)]


class Replication:
    """This process's side of presence on ``nsp`` in a cluster: its outbox, and what it
    knows of every other process's entries (``peers``, by node uid)."""

    def __init__(self, node: Node, nsp: str, state: State, view: View) -> None:
        self.node = node
        self.nsp = nsp
        self.uid = node.uid
        self.state = state
        self.view = view
        self.outbox = Outbox()
        self.peers: dict[str, Peer] = {}
        self.gaps = 0  # deltas found missing (each repaired by the sender's state)
        self.states = 0  # full states received and applied
        self._greeted: anyio.Event | None = None  # the node.joined we said hello on

    @property
    def synced(self) -> bool:
        """Whether this process has the state of every process it knows is alive."""
        peers = self.peers
        return all(uid in peers and peers[uid].synced for uid in self.node.peers)

    def _send(self, event: str, *args: Any, to: str | None = None) -> None:
        if self.node.joined.is_set():  # else nobody hears it: a gap, repaired on rejoining
            self.node.send(self.nsp, wire.ServerSideEmit([event, *args]), to=to)

    # ------------------------------------------------------------------ sending

    def flush(self) -> None:
        """Send this window's changes: the next delta (or deltas)."""
        if self.outbox.ops:
            for ops in self.outbox.take():
                self.outbox.seq += 1
                self._send(DELTA, self.uid, self.outbox.seq, ops)

    def tick(self) -> None:
        """Every so often: say hello on (re)joining the cluster; ask again whoever has not
        answered within ``request_timeout``."""
        joined = self.node.joined
        if joined.is_set() and joined is not self._greeted:
            self._greeted = joined
            self._send(SYNC, self.uid, self.outbox.seq, True)
            now = self.node.clock()
            for uid in self.node.peers:
                peer = self.peers.setdefault(uid, Peer())
                if not peer.synced:
                    peer.asked_at = now
        for uid in self.node.peers:  # one declared gone and back (a stall, a pause)
            self.peers.setdefault(uid, Peer())
        for uid, peer in self.peers.items():
            if not peer.synced:
                self._ask(uid, peer)

    def _ask(self, uid: str, peer: Peer) -> None:
        now = self.node.clock()
        if peer.asked_at is None or now - peer.asked_at >= self.node.request_timeout:
            peer.asked_at = now
            self._send(SYNC, self.uid, self.outbox.seq, False, to=uid)

    def reset(self) -> None:
        """Forget every other process (the server restarts: they will be asked again)."""
        for uid in list(self.state.owners):
            if uid != self.uid:
                self._drop(uid)
        self.peers.clear()
        self._greeted = None

    # ------------------------------------------------------------------ receiving

    def on_delta(self, uid: object, seq: object, ops: object, *later: object) -> None:
        """A delta from ``uid`` (arguments a later version may add are ignored)."""
        sender = self._sender(uid, seq)
        if sender is None or not isinstance(ops, list):
            return
        uid, seq = sender
        peer = self.peers.get(uid)
        if peer is None:  # a process heard of first now: from its start, or mid-way
            peer = self.peers[uid] = Peer(0, synced=seq == 1)
            if peer.synced:
                self.view._synced_changed()
        if peer.synced:
            if seq <= peer.seq:
                return  # a state received since covers it
            if seq == peer.seq + 1:
                self._apply(uid, ops)
                peer.seq = seq
                return
            peer.synced = False
            self.gaps += 1
            logger.info(
                "presence on %s: expected delta %d from %s, got %d; asking for its state",
                self.nsp,
                peer.seq + 1,
                uid,
                seq,
            )
        peer.hold(seq, ops)
        self._ask(uid, peer)

    def on_sync(self, uid: object, seq: object, hello: object, *later: object) -> None:
        """``uid`` asks for this process's state."""
        sender = self._sender(uid, seq)
        if sender is None:
            return
        uid, seq = sender
        # What this process changed is sent first: the state then stands for a seq under
        # which every earlier delta went out.
        self.flush()
        entries = [[topic, key, meta] for topic, key, meta in self.state.entries(self.uid)]
        parts = max(1, -(-len(entries) // MAX_PER_MESSAGE))
        for part in range(parts):
            chunk = entries[part * MAX_PER_MESSAGE : (part + 1) * MAX_PER_MESSAGE]
            self._send(STATE, self.uid, self.outbox.seq, chunk, part, parts, to=uid)
        if hello is not True:
            return
        peer = self.peers.get(uid)
        if peer is None:
            self.peers[uid] = peer = Peer(0, synced=seq == 0)
            if peer.synced:
                self.view._synced_changed()
                return
        elif peer.synced and peer.seq == seq:
            return  # hello's deltas travel before it: this view is the sender's
        elif peer.synced:
            peer.synced = False
            self.gaps += 1
        peer.asked_at = None  # it (re)joined: an earlier ask may not have reached it
        self._ask(uid, peer)

    def on_state(
        self,
        uid: object,
        seq: object,
        entries: object,
        part: object = 0,
        parts: object = 1,
        *later: object,
    ) -> None:
        """A part of ``uid``'s state, which this process asked for."""
        sender = self._sender(uid, seq)
        if sender is None:
            return
        uid, seq = sender
        if not (isinstance(entries, list) and _count(part) and _count(parts) and part < parts):
            _bad("state", uid, [part, parts])
            return
        peer = self.peers.get(uid)
        if peer is None:
            peer = self.peers[uid] = Peer()
        elif seq < peer.seq or (peer.synced and seq == peer.seq):
            return  # older than what was applied since (it answered an earlier ask)
        if part == 0:
            peer.parts = (seq, [])
        if peer.parts is None or peer.parts[0] != seq:
            return  # a part was lost: asked again after request_timeout
        peer.parts[1].extend(entries)
        if part != parts - 1:
            return
        entries, peer.parts = peer.parts[1], None
        self._replace(uid, entries)
        self.states += 1
        peer.seq, peer.synced, peer.asked_at = seq, True, None
        for old in [s for s in peer.held if s <= seq]:
            del peer.held[old]
        while (ops := peer.held.pop(peer.seq + 1, None)) is not None:
            self._apply(uid, ops)
            peer.seq += 1
        if peer.held:  # still a gap after the state: ask for a newer one
            peer.synced = False
            self._ask(uid, peer)
        self.view._synced_changed()

    def peer_gone(self, uid: str) -> None:
        """The cluster declared ``uid`` gone (its goodbye, or ``heartbeat_timeout`` of
        silence): its entries leave."""
        try:
            self.peers.pop(uid, None)
            self._drop(uid)
            self.view._synced_changed()
        except Exception:  # called by the node, which must not fail for it
            logger.exception("presence on %s: removing the entries of %s failed", self.nsp, uid)

    # ------------------------------------------------------------------ applying

    def _apply(self, uid: str, ops: list[Any]) -> None:
        view = self.view
        for op in ops:
            if isinstance(op, list) and len(op) == 2 and op[0] == "l" and isinstance(op[1], str):
                view._remove(uid, op[1])
            elif op_join := _join(op):
                view._add(uid, *op_join)
            else:
                _bad("op", uid, op)

    def _replace(self, uid: str, entries: list[Any]) -> None:
        """``uid``'s entries become ``entries``: what is no longer there leaves, what is
        new joins."""
        incoming: dict[str, tuple[str, str, Meta]] = {}
        for entry in entries:
            found = _join(["j", *entry]) if isinstance(entry, list) else None
            if found is None:
                _bad("entry", uid, entry)
            else:
                incoming[found[2][REF]] = found
        for ref in self.state.owned(uid):
            if incoming.get(ref) == self.state.meta(uid, ref):
                del incoming[ref]  # already known as it is
            else:
                self.view._remove(uid, ref)
        for topic, key, meta in incoming.values():
            self.view._add(uid, topic, key, meta)

    def _drop(self, uid: str) -> None:
        for ref in self.state.owned(uid):
            self.view._remove(uid, ref)

    def _sender(self, uid: object, seq: object) -> tuple[str, int] | None:
        """``(uid, seq)`` that a message starts with, if they are another process's node
        uid and a sequence number."""
        if isinstance(uid, str) and 0 < len(uid) <= 64 and _count(seq):
            return None if uid == self.uid else (uid, seq)
        _bad("message", str(uid)[:64], [uid, seq])
        return None


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _join(op: object) -> tuple[str, str, Meta] | None:
    """``(topic, key, meta)`` of a well-formed ``["j", topic, key, meta]``."""
    if (
        isinstance(op, list)
        and len(op) == 4
        and op[0] == "j"
        and isinstance(op[1], str)
        and isinstance(op[2], str)
        and isinstance(op[3], dict)
        and isinstance(op[3].get(REF), str)
    ):
        return op[1], op[2], op[3]
    return None


def _bad(what: str, uid: str, value: object) -> None:
    _malformed.log(
        logging.WARNING,
        "expected a well-formed presence %s from %s, got %.120r; ignored",
        what,
        uid,
        value,
    )
