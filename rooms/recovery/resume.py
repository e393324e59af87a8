"""The socket half of connection state recovery, one plug-in for the server.

The rest of rooms calls it in few places: the delivery logs packets through it
(:meth:`Resume.log`, :meth:`Resume.seen`), ``Namespace.connect`` asks it for an
:class:`Attempt` and lets that admit the socket, and the server opens and closes it. It
mints pids, restores a dropped socket with what it missed (in order, once), rejoins its rooms,
keeps the session of a socket that drops for a recoverable reason, and waits for those saves.

A client may come back before the server noticed it was gone: a network that drops between two
long-polls, or a connection that died without a FIN, leaves the old socket alive for up to
``ping_interval + ping_timeout``. Its CONNECT then names the ``pid`` of a socket that is still
live, here or on another process. That socket is taken over: its transport is cut as a
transport close, its session saved, and the new connection restores it (Node's server has no
such step: its client gets a fresh socket in that case).

Ordering invariants (each has its test):

- capture before restore: packets delivered while the store answers are captured, so none
  falls between the store's answer and the socket's return;
- the replay waits for room in the outbox (it may be long), and newer packets captured
  meanwhile follow it, once each;
- rooms are rejoined with nothing left to replay and no await in between, so a live packet
  can neither overtake the replay nor go missing;
- with a shared log, not before this process delivered the last packet replayed, or the
  same packets would follow the replay live.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc

from rooms.protocol.cluster import BroadcastOptions
from rooms.protocol.engineio import Frame
from rooms.recovery.store import RECOVERABLE, Restored, SavedSession, Store, StoredPacket

logger = logging.getLogger("rooms.recovery")

Spawn = Callable[..., None]
"""Starts ``func(*args)`` in a guarded task of the server's."""


class Outbox(Protocol):
    """Where a replay goes: the socket's Engine.IO session."""

    @property
    def closed(self) -> bool: ...

    async def wait_room(self, frames: Sequence[Frame]) -> bool: ...

    def send_many(
        self, frames: Sequence[Frame], volatile: bool = False, size: int | None = None
    ) -> bool: ...


class Resumable(Protocol):
    """What recovery needs of a socket."""

    id: str
    pid: str | None
    data: dict[str, Any]
    recovered: bool

    @property
    def session(self) -> Outbox: ...

    @property
    def rooms(self) -> set[str]: ...

    def on_leave(self, hook: Callable[[Any, str], None]) -> None: ...

    def cut(self, reason: str = ...) -> None: ...


Join = Callable[[Any, Iterable[str]], None]
"""Puts a socket in its namespace's index, in these rooms."""

Peers = Callable[[str, str], Awaitable[bool]]
"""Asks every other process to take over the socket ``pid`` of namespace ``nsp`` (True if one
had it and saved its session)."""


class Attempt:
    """One CONNECT as recovery sees it: a fresh socket (``restored`` None) or the return
    of one that dropped. Created by :meth:`Resume.attempt`; ended with :meth:`close`."""

    __slots__ = ("_capture", "_nsp", "_resume", "_socket", "restored", "skips_middlewares")

    def __init__(
        self,
        resume: Resume | None,
        nsp: str,
        restored: Restored | None,
        capture: list[StoredPacket] | None,
    ) -> None:
        self._resume = resume
        self._nsp = nsp
        self.restored = restored
        self._capture = capture
        self._socket: Resumable | None = None  # once admitted
        self.skips_middlewares = (
            restored is not None and resume is not None and resume.settings.skip_middlewares
        )

    async def admit(self, socket: Resumable, join: Join, live: Callable[[str], bool]) -> bool:
        """Put ``socket`` in its namespace (``join``) before its connect handler runs. A
        restored one becomes the socket that dropped (id, pid, data, ``recovered``), gets
        what it missed in order, then rejoins its rooms; unless a socket of that id is
        still ``live`` here, when it starts afresh. False if the connection closed during
        the replay (the session is kept again for the client's retry)."""
        restored = self.restored
        if restored is None or live(restored.session.sid):
            self.restored = None
            join(socket, (socket.id,))
        elif not await self._replay(socket, restored, join):
            self.lost()
            return False
        elif self._resume is not None:
            self._resume.recovered += 1
        if self._resume is not None:
            self._socket = socket
            self._resume.admitted(self._nsp, socket)
        return True

    async def _replay(self, socket: Resumable, restored: Restored, join: Join) -> bool:
        session, capture = restored.session, self._capture or []
        socket.id, socket.pid = session.sid, session.pid
        socket.data = dict(session.data)
        socket.recovered = True
        rooms = session.rooms | {session.sid}
        out = socket.session
        pending = list(restored.missed)
        seen = {packet.offset for packet in pending}
        taken = 0  # how much of the capture has been looked at
        while True:
            for packet in pending:
                # Before the CONNECT reply: the client holds events until its socket connects.
                frames = packet.frames()
                if not await out.wait_room(frames) or not out.send_many(frames):
                    return False
                resume = self._resume
                if resume is not None:
                    resume.replayed += 1
                    if resume.sent is not None:
                        resume.sent(frames, 1)
            if pending and self._resume is not None:
                # With a shared log, this process may not have delivered what was replayed
                # yet; joining now would send it again. Meanwhile it is captured, below.
                await self._resume.caught_up(self._nsp, pending[-1].offset)
            newer = [p for p in capture[taken:] if p.offset not in seen and p.reaches(rooms)]
            taken = len(capture)
            if not newer:
                break
            seen.update(p.offset for p in newer)
            pending = newer
        self.end()
        join(socket, rooms)
        return True

    def lost(self) -> None:
        """The connection went away before the recovered socket was back: keep its session
        again (the client still has the same pid and offset, and retries)."""
        if self.restored is not None and self._resume is not None:
            self._resume.keep(self._nsp, self.restored.session)

    def close(self, connected: bool) -> None:
        """The CONNECT is answered: stop capturing; a socket admitted but then refused (by
        its connect handler, or its connection closing) is forgotten."""
        self.end()
        if not connected and self._socket is not None and self._resume is not None:
            self._resume.forget(self._nsp, self._socket)

    def end(self) -> None:
        """Stop capturing (idempotent)."""
        if self._capture is not None and self._resume is not None:
            self._resume.stop_capture(self._nsp, self._capture)
            self._capture = None


FRESH = Attempt(None, "", None, None)
"""Every CONNECT when recovery is off."""


class Resume:
    """Connection state recovery for one running server, over its opened store."""

    def __init__(
        self,
        settings: Any,
        store: Store,
        spawn: Spawn,
        peers: Peers | None = None,
        wait: float = 5.0,
    ) -> None:
        self.settings = settings  # rooms.recovery.Recovery
        self.store = store
        self._spawn = spawn
        # Other processes that may hold a client's old socket; only with a shared store (a
        # session saved elsewhere could not be restored here otherwise).
        self._peers = peers if store.delivers else None
        self._wait = wait  # how long a take-over waits for the old socket's session
        self.unlogged = 0  # packets the store failed to log (sent all the same)
        self.taken_over = 0  # sockets that came back before their drop was noticed
        self.attempts = 0  # CONNECTs that asked to recover (a pid and an offset)
        self.recovered = 0  # of them, sockets restored with what they missed
        self.replayed = 0  # packets those sockets got again
        # Told of every packet replayed (its frames, sent to one client): the server's
        # observer, which counts what is sent.
        self.sent: Callable[[Sequence[Frame], int], None] | None = None
        self._captures: dict[str, list[list[StoredPacket]]] = {}
        self._live: dict[tuple[str, str], Resumable] = {}  # (nsp, pid) → admitted socket
        self._saves: dict[tuple[str, str], anyio.Event] = {}  # sessions being saved
        self._progress: anyio.Event | None = None  # set when the next logged packet is seen
        self._saving = 0  # sessions being saved
        self._saved = anyio.Event()

    @property
    def delivers(self) -> bool:
        """The store hands every logged packet to every process (senders only log)."""
        return self.store.delivers

    # ------------------------------------------------------------------ the log

    async def log(
        self, nsp: str, opts: BroadcastOptions, text: str, parts: tuple[bytes, ...]
    ) -> StoredPacket | None:
        """Log a packet this process sends; None if the store failed (the packet is then
        sent without an offset: live clients still get it)."""
        try:
            offset = await self.store.append(nsp, opts, text, parts)
        except Exception as exc:
            self.unlogged += 1
            if self.unlogged == 1 or self.unlogged % 1000 == 0:
                logger.warning(
                    "namespace %s: the recovery store failed (%r); %d packet(s) sent unlogged",
                    nsp,
                    exc,
                    self.unlogged,
                )
            return None
        return StoredPacket(offset, opts, text, parts)

    def received(self, nsp: str, packet: StoredPacket) -> None:
        """A packet another process logged and stamped reached this one."""
        self.store.received(nsp, packet)

    def seen(self, nsp: str, packet: StoredPacket) -> None:
        """A logged packet is being delivered here: recoveries in progress capture it."""
        for capture in self._captures.get(nsp, ()):
            capture.append(packet)
        progress = self._progress
        if progress is not None:
            self._progress = None
            progress.set()

    async def caught_up(self, nsp: str, offset: str) -> None:
        """Wait (at most ``wait`` seconds) until this process delivered the logged packet
        at ``offset`` (see ``Store.delivered``)."""
        with anyio.move_on_after(self._wait):
            while not self.store.delivered(nsp, offset):
                if self._progress is None:
                    self._progress = anyio.Event()
                await self._progress.wait()

    def stop_capture(self, nsp: str, capture: list[StoredPacket]) -> None:
        captures = self._captures.get(nsp)
        if captures is not None:
            # By identity: two captures with the same packets are equal lists.
            captures[:] = [c for c in captures if c is not capture]
            if not captures:
                del self._captures[nsp]

    # ------------------------------------------------------------------ connecting

    async def attempt(self, nsp: str, socket: Resumable, auth: dict[str, Any]) -> Attempt:
        """A pid for ``socket``, and the session its ``auth`` names (with what it missed)
        if the store still has it."""
        socket.pid = secrets.token_urlsafe(15)
        pid, offset = auth.get("pid"), auth.get("offset")
        if not (isinstance(pid, str) and isinstance(offset, str)):
            return Attempt(self, nsp, None, None)
        self.attempts += 1
        capture: list[StoredPacket] = []
        self._captures.setdefault(nsp, []).append(capture)  # before the store answers
        try:
            here = await self.take_over(nsp, pid)
            restored = await self._restore(nsp, pid, offset)
            if (
                restored is None
                and not here
                and self._peers is not None
                and await self._peers(nsp, pid)
            ):
                restored = await self._restore(nsp, pid, offset)
        except BaseException:  # cancelled meanwhile (its connection went): capture no more
            self.stop_capture(nsp, capture)
            raise
        if restored is None:
            self.stop_capture(nsp, capture)
            return Attempt(self, nsp, None, None)
        return Attempt(self, nsp, restored, capture)

    async def _restore(self, nsp: str, pid: str, offset: str) -> Restored | None:
        try:
            return await self.store.restore(nsp, pid, offset)
        except Exception as exc:
            logger.warning("restoring session %.40r failed (%r); a fresh socket", pid, exc)
            return None

    async def take_over(self, nsp: str, pid: str) -> bool:
        """The client of socket ``pid`` came back on another connection. If that socket is
        still live here (its drop not noticed yet), cut its transport as a transport close,
        which saves its session; wait (at most ``wait`` seconds) for a save of it in
        progress. True if this process had it, live or being saved."""
        key = (nsp, pid)
        socket = self._live.get(key)
        if socket is not None:
            self.taken_over += 1
            logger.info("socket %s on %s: its client came back on a new connection", socket.id, nsp)
            socket.cut("transport close")
        saving = self._saves.get(key)
        if saving is None:
            return socket is not None
        with anyio.move_on_after(self._wait):
            await saving.wait()
        return True

    # ------------------------------------------------------------------ dropping

    def admitted(self, nsp: str, socket: Resumable) -> None:
        """``socket`` is in its namespace: known by its pid until it leaves, when its
        session is kept if it dropped for a reason its client recovers from (never after an
        explicit disconnect)."""
        pid = socket.pid
        if pid is None:
            return
        key = (nsp, pid)
        self._live[key] = socket

        def leave(socket: Resumable, reason: str) -> None:
            if self._live.get(key) is socket:
                del self._live[key]
            if reason in RECOVERABLE:
                rooms = frozenset(socket.rooms)
                self.keep(nsp, SavedSession(socket.id, pid, rooms, dict(socket.data)))

        socket.on_leave(leave)

    def forget(self, nsp: str, socket: Resumable) -> None:
        """``socket`` was admitted but never connected: no leave hook will run for it."""
        key = (nsp, socket.pid or "")
        if self._live.get(key) is socket:
            del self._live[key]

    def keep(self, nsp: str, session: SavedSession) -> None:
        """Save ``session`` for the recovery window, in the background."""
        self._saving += 1
        self._saves.setdefault((nsp, session.pid), anyio.Event())
        self._spawn(self._save, nsp, session)

    async def _save(self, nsp: str, session: SavedSession) -> None:
        try:
            await self.store.save(nsp, session)
        except Exception:
            logger.exception("saving the session of %s for recovery failed", session.sid)
        finally:
            saved = self._saves.pop((nsp, session.pid), None)
            if saved is not None:
                saved.set()
            self._saving -= 1
            if not self._saving:
                self._saved.set()
                self._saved = anyio.Event()

    async def wait_saved(self) -> None:
        """Wait until the sessions of sockets that dropped so far are saved."""
        while self._saving:
            await self._saved.wait()

    # ------------------------------------------------------------------ running

    async def run(
        self,
        namespaces: Callable[[], Iterable[str]],
        deliver: Callable[[str, StoredPacket], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """While the server runs: with a store that delivers, feed ``deliver`` every logged
        packet of these namespaces, in the log's order (returns at once otherwise)."""
        if self.store.delivers:
            await self.store.run(namespaces, deliver, task_status=task_status)
        else:
            task_status.started()

    async def close(self) -> None:
        await self.store.close()
