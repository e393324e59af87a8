"""The websocket transport: a direct handshake, or the probe upgrade of a polling session.

Who sends a websocket session's frames, one task at a time (the session's sending token,
taken and released only through :class:`~rooms.engine.session.Session`)::

    frames queued by the reader's own dispatch ─────────▶ the reader sends them (it holds
                                                           the token while it dispatches)
    frames queued by anyone else ──kick──▶ Flusher (one task for every session)
                                             │ a send stalls past stall_after
                                             ▼
                                           the Pump's own writer ──idle writer_linger──▶ ends
    session closing ──▶ whoever holds the token sends what is left, then the close frame
                    ──▶ past ping_timeout: abort (every sender's scope cancelled), finished

An idle connection holds no task of ours: its reader waits in the ASGI server's receive.

Who reads: the ASGI task, until an ``async def`` handler it started inline suspends. That
task then finishes the handler and a new task (in the engine's group) reads on; each
reader hands on the same way. The one that sees the connection end tears it down, and
the ASGI task returns after that (see :func:`_serve`).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from rooms._tasks import Suspended, step
from rooms._types import Receive, Scope, Send
from rooms.engine.server import parse_query, refuse
from rooms.engine.session import PeerGone, Session, State
from rooms.exceptions import ProtocolError, RoomsError
from rooms.protocol.engineio import (
    PONG_PROBE,
    Frame,
    HandshakeError,
    decode_frame,
)

if TYPE_CHECKING:
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.engine")

CLOSE_NORMAL = 1000
CLOSE_ABNORMAL = 1006  # never sent: what an ASGI server reports for a connection lost
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_REPLY_TIMEOUT = 2.0  # seconds a closed websocket waits for the peer's close frame


async def handle(engine: EngineServer, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        connect = await receive()
    except Exception as exc:
        logger.debug("websocket handshake read failed: %r", exc)
        return
    if connect["type"] != "websocket.connect":
        return
    query = parse_query(scope)
    error = engine.check_request(scope, query, "GET", upgrade=True)
    if error is not None:
        await deny(scope, send, error, receive)
        return
    sid = query.get("sid")
    transport = query.get("transport")
    del query, connect  # a connection lives long; keep only what it needs
    if transport != "websocket":
        # A transport that takes no upgrade (polling): the reference accepts the
        # websocket, then closes it.
        refuse("expected transport=websocket on a websocket, got %.40r", transport)
        await _accept_and_close(send, receive)
        return
    if sid is None:
        session = await engine.open_session(scope, "websocket")
        if session is None:
            await deny(scope, send, HandshakeError.FORBIDDEN, receive)
            return
        if await _accept(send):
            await _serve(engine, session, _pump(engine, session, send), receive, None, True)
        else:
            session.finish()
        return
    session = engine.sessions[sid]  # check_request found it
    if not session.begin_upgrade():
        # Upgrading already (a websocket claimed it, probe or not), upgraded, or closing:
        # the reference accepts the websocket, then closes it.
        refuse(
            "session %s: expected one upgrade from polling, got a second websocket "
            "while it is %s on %s",
            sid,
            session.state.value,
            session.transport,
        )
        await _accept_and_close(send, receive)
        return
    if not await _accept(send):
        session.abandon_upgrade()
        return
    if await _upgrade(engine, session, receive, send):
        await _serve(engine, session, _pump(engine, session, send), receive, None, True)


async def _accept(send: Send) -> bool:
    try:
        await send({"type": "websocket.accept"})
    except Exception as exc:  # the client left during the handshake
        logger.debug("websocket accept failed: %r", exc)
        return False
    return True


async def _accept_and_close(send: Send, receive: Receive) -> None:
    if await _accept(send):
        await _close_quietly(send, CLOSE_NORMAL)
        await _await_close_reply(receive)


async def deny(
    scope: Scope, send: Send, error: HandshakeError, receive: Receive | None = None
) -> None:
    """Refuse a websocket before accepting it, as the reference server does: HTTP 400 with
    the error's message as a text body. Where the ASGI server cannot answer a websocket
    with a response, a close before accepting (its servers answer 403).

    With ``receive``, wait (within a bound) until the ASGI server has let the connection
    go before returning: uvicorn's websockets-sansio implementation logs "ASGI callable
    returned without completing handshake" at ERROR for an app that returns after an
    HTTP response but before the connection is gone."""
    try:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            body = error.message.encode()
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"text/html"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": CLOSE_NORMAL})
    except Exception as exc:  # the client left before hearing it
        logger.debug("websocket refusal could not be sent: %r", exc)
        return
    if receive is not None:
        await _await_release(receive)


async def _await_release(receive: Receive) -> None:
    """After a refusal: the ASGI server reports the connection gone as a disconnect. An
    abnormal one (1006) may come before the server has finished with the connection
    (uvicorn queues one when the response is written, another when the connection is
    lost): wait for the second. Any other code means it closed the connection itself."""
    with anyio.move_on_after(CLOSE_REPLY_TIMEOUT):
        seen = 0
        try:
            while seen < 2:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    if message.get("code") != CLOSE_ABNORMAL:
                        return
                    seen += 1
        except Exception as exc:  # the connection is gone: what we waited for
            logger.debug("waiting for the refused connection to go: %r", exc)


async def _upgrade(engine: EngineServer, session: Session, receive: Receive, send: Send) -> bool:
    """The session is UPGRADING (this websocket claimed it). ``2probe`` → ``3probe`` (and
    polls get NOOP from then on); ``5`` completes the upgrade, probe or not. Anything
    else (the reference's rule), the upgrade timeout, or the session ending first: the
    websocket is closed normally and the session stays on polling (or is gone)."""
    upgraded: bool | None = False
    with anyio.move_on_after(engine.upgrade_timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_end_with_session, session, tg.cancel_scope)
            upgraded = await _probe(session, receive, send)
            tg.cancel_scope.cancel()
    if upgraded:
        return True
    session.abandon_upgrade()
    if upgraded is None:
        return False  # the websocket went
    await _close_quietly(send, CLOSE_NORMAL)
    await _await_close_reply(receive)
    return False


async def _end_with_session(session: Session, scope: anyio.CancelScope) -> None:
    await session.wait_finished()
    scope.cancel()


async def _probe(session: Session, receive: Receive, send: Send) -> bool | None:
    """Read the upgrading websocket until ``5`` (True) or a packet the upgrade does not
    take (False); None if the websocket went."""
    while True:
        try:
            message = await _receive_text(receive)
        except PeerGone:
            return None
        if message == "2probe":
            if not session.probe():
                return False
            try:
                await send({"type": "websocket.send", "text": PONG_PROBE})
            except Exception:
                return None
            continue
        if message == "5":
            return session.complete_upgrade()  # False: the session closed meanwhile
        refuse(
            "session %s: upgrade failed: expected '2probe' or '5', got %.16r",
            session.sid,
            message,
        )
        return False


async def _receive_text(receive: Receive) -> str:
    try:
        message = await receive()
    except Exception as exc:
        raise PeerGone from exc
    if message["type"] == "websocket.disconnect":
        raise PeerGone
    text = message.get("text")
    return "" if text is None else text  # binary: no packet the upgrade takes


async def _close_quietly(send: Send, code: int) -> None:
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception:  # the ASGI server may already consider the socket gone
        logger.debug("websocket close could not be sent", exc_info=True)


class _Parked:
    """Marks a writer told to end (set in place of its wake event)."""

    def set(self) -> None:
        pass


_PARK: Any = _Parked()


class Pump:
    """Sends a websocket session's frames: the carrier of :class:`Session`.

    The reader (the ASGI task, until it hands reading on) sends what its own dispatching
    produced. Frames queued by
    other tasks are sent by the engine's :class:`~rooms.engine.flusher.Flusher`; a session
    the flusher found slow gets a writer task of its own, which lingers for a while waiting
    for more, then ends. An idle connection costs no task of ours.
    """

    __slots__ = (
        "_batch",
        "_done",
        "_flushed",
        "_idle_since",
        "_scope",
        "_send",
        "_spare",
        "_wake",
        "aborted",
        "close_code",
        "close_sent",
        "ended",
        "engine",
        "inline",
        "peer_gone",
        "reader",
        "reader_scope",
        "scheduled",
        "session",
        "slow",
        "suspended",
        "writing",
    )

    def __init__(self, engine: EngineServer, session: Session, send: Send) -> None:
        self.engine = engine
        self.session = session
        self._send = send
        self._idle_since = 0.0
        self._spare: list[Frame] | None = []
        self._batch: list[Frame] | None = None  # the frames a drain is sending
        self.writing = False
        self._wake: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self.reader_scope: anyio.CancelScope | None = None
        self.peer_gone = False
        self.aborted = False
        self.reader = 0  # the id of the task reading this websocket
        self.close_sent = False
        self.close_code = CLOSE_NORMAL
        self.scheduled = False  # waiting in the flusher's queue
        self.slow = False  # served by its own writer instead of the flusher
        self._flushed: anyio.Event | None = None  # someone waits for the flush to end
        self.inline = False  # the reader is inside a message's dispatch, synchronously
        self.suspended: Suspended | None = None  # a handler run inline that suspended
        self.ended: anyio.Event | None = None  # set once torn down, if the ASGI task waits

    def in_reader(self) -> bool:
        return anyio.get_current_task().id == self.reader

    def run_inline(self, coro: Coroutine[Any, Any, None]) -> None:
        suspended = step(coro)
        if suspended is not None:
            self.inline = False  # one per dispatch: any other handler gets a task
            self.suspended = suspended

    def kick(self) -> None:
        if self.aborted:
            return
        flusher = self.engine.flusher
        if not self.slow and not self.writing and flusher.running:
            if not self.scheduled:
                self.scheduled = True
                flusher.schedule(self)
            return
        wake = self._wake
        if wake is _PARK:
            self._wake = None  # told to park but not gone yet: it carries on instead
            return
        if wake is not None:
            self._wake = None
            wake.set()
        elif not self.writing:
            self.writing = True
            self._done = anyio.Event()
            self.engine.writers.add(self)
            self.engine.heartbeat.sweep_soon()
            self.engine.running_group.start_soon(self._writer)

    def park_if_idle(self, idle_before: float) -> None:
        wake = self._wake
        if wake is not None and wake is not _PARK and self._idle_since <= idle_before:
            self._wake = _PARK
            wake.set()

    def discard(self) -> None:
        batch = self._batch
        if batch is not None:
            batch.clear()  # the drain's loop ends after the frame it is sending

    def abort(self) -> None:
        """Cancel the sends in progress and the reader's wait: the ASGI task returns, and
        the ASGI server drops the connection. Every task that sends for this session runs
        in a scope of its own to cancel: the reader's, the writer's, or a flusher that
        stalled on it (the flusher's hand-off gives it one)."""
        self.aborted = True
        self.peer_gone = True  # nothing more goes out, not even a close frame
        self.discard()
        for scope in (self._scope, self.reader_scope):
            if scope is not None:
                scope.cancel()
        self.engine.flusher.abandon(self)

    async def flush(self) -> None:
        """Send what is queued, and the close frame once the session is closing."""
        session = self.session
        if not session.acquire_sending():
            return
        try:
            await self.drain()
            if session.state is State.CLOSING:
                await self.send_close()
        except PeerGone as exc:
            logger.debug("session %s: send failed: %r", session.sid, exc.__cause__)
            self.peer_gone = True
            session.close("transport error")
        except Exception:  # a bug, not a peer: say so, and end only this session
            self.peer_gone = True
            self.engine.internal_error(session)
        finally:
            session.release_sending()
            flushed = self._flushed
            if flushed is not None:
                self._flushed = None
                flushed.set()

    async def drain(self) -> None:
        """Send everything queued; the caller holds ``session.flushing``. Raises
        :class:`PeerGone` if the ASGI server fails a send."""
        session = self.session
        send = self._send
        while not self.aborted:
            # Two lists take turns as outbox and batch; a failed send leaves none to reuse.
            spare = self._spare
            self._spare = None
            frames = session.swap(spare if spare is not None else [])
            if not frames:
                self._spare = frames
                return
            self._batch = frames
            try:
                for frame in frames:
                    if type(frame) is str:
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
            except Exception as exc:
                raise PeerGone from exc
            finally:
                self._batch = None
            frames.clear()
            self._spare = frames

    async def send_close(self) -> None:
        if not self.close_sent and not self.peer_gone:
            self.close_sent = True
            try:
                await self._send({"type": "websocket.close", "code": self.close_code})
            except Exception as exc:
                raise PeerGone from exc

    async def _writer(self) -> None:
        session = self.session
        try:
            with anyio.CancelScope() as self._scope:
                while True:
                    await self.flush()
                    if session.state is State.CLOSING or session.state is State.CLOSED:
                        return
                    # Idle: wait for a kick. The heartbeat's sweep parks writers idle for
                    # writer_linger (no timer per wait: nothing long-lived per delivery).
                    self._idle_since = self.engine.clock()
                    wake = self._wake = anyio.Event()
                    await wake.wait()
                    if self._wake is _PARK:
                        self._wake = None
                        self.slow = False  # back to the shared flusher
                        return
        finally:  # send failures were handled by flush()
            self.writing = False
            self.engine.writers.discard(self)
            self._scope = None
            if self._done is not None:
                self._done.set()

    async def stop(self, timeout: float) -> None:
        """Wait for the writer to finish (cancelling it past ``timeout``), then close."""
        if self.aborted:
            return
        if self._wake is not None:
            self.kick()  # a lingering writer: let it see the session is closing
        if self.writing and self._done is not None:
            with anyio.move_on_after(timeout):
                await self._done.wait()
            if self.writing and self._scope is not None:
                self._scope.cancel()
                await self._done.wait()
        if self.session.flushing:  # the flusher is sending for us: let it finish
            flushed = self._flushed = anyio.Event()
            with anyio.move_on_after(timeout):
                await flushed.wait()
        if not self.peer_gone and not self.close_sent:
            with anyio.move_on_after(timeout):
                await self.flush()  # what is left, then the close frame


def _pump(engine: EngineServer, session: Session, send: Send) -> Pump:
    pump = Pump(engine, session, send)
    session.attach(pump)
    return pump


async def _read_on(
    engine: EngineServer,
    session: Session,
    pump: Pump,
    receive: Receive,
    pending: Any,
) -> None:
    """A reader after the first (a task in the engine's group)."""
    try:
        await _serve(engine, session, pump, receive, pending, False)
    except Exception:
        engine.internal_error(session)
        session.abort()


async def _serve(
    engine: EngineServer,
    session: Session,
    pump: Pump,
    receive: Receive,
    pending: Any,
    asgi: bool,
) -> None:
    """Be the websocket's reader: read and dispatch until the connection ends, then tear
    it down. Or, when a handler run inline suspends, hand reading to a new task and finish
    the handler here: what it suspended on belongs to this task, so this task must await
    it next, before anything else, inside the same cancel scopes.

    ``pending`` is what the previous reader's dispatch left to await (a CONNECT's flow).
    ``asgi``: this is the ASGI task, the first reader (no frame of its own above this one:
    an idle connection holds only this and the read loop); returning would end the
    connection, so after handing on it waits for the teardown, whichever task does it."""
    pump.reader = anyio.get_current_task().id  # this task: see Session.wait_room
    torn_down = True  # cancelled from outside (a shutdown): no close reply will come
    reading = True
    try:
        with anyio.CancelScope() as scope:
            pump.reader_scope = scope  # abort() cancels the wait for input
            if pending is not None:
                await pending
            if session.queued:  # the OPEN packet, what queued during the upgrade, or
                await pump.flush()  # what the previous reader's dispatch queued
            left = await _read(engine, session, pump, receive)
            suspended = pump.suspended
            if suspended is not None:
                pump.suspended = None
                reading = _hand_on(engine, session, pump, receive, left)
                if reading:
                    scope.cancel()  # shutting down: as the engine's own handlers are
                session.hold(scope)  # cancelled handler_grace after the session finished
                try:
                    await suspended
                finally:
                    session.release(scope)
        torn_down = False
    except BaseException:
        if reading:
            await _teardown(engine, session, pump, receive, torn_down)
        elif asgi:
            session.abort()  # the ASGI server cancelled us (its shutdown): end there
        raise
    if reading:
        await _teardown(engine, session, pump, receive, torn_down)
    elif asgi and pump.ended is not None:
        try:
            await pump.ended.wait()
        except BaseException:
            session.abort()
            raise


def _hand_on(
    engine: EngineServer, session: Session, pump: Pump, receive: Receive, pending: Any
) -> bool:
    """Start the next reader; False once it runs. Synchronous: the caller has a
    suspended handler to await before anything else."""
    pump.reader_scope = None
    pump.reader = 0  # until the next reader starts
    if pump.ended is None:
        pump.ended = anyio.Event()
    try:
        engine.running_group.start_soon(_read_on, engine, session, pump, receive, pending)
    except RoomsError:  # the engine stopped (its shutdown): nobody reads from now on
        if pending is not None:
            pending.close()
        session.close("server shutting down")
        return True
    return False


async def _teardown(
    engine: EngineServer, session: Session, pump: Pump, receive: Receive, torn_down: bool
) -> None:
    if not session.closed:
        session.close("transport close")
    # A peer that stopped reading gets no longer than ping_timeout to take the rest.
    with anyio.CancelScope(shield=True):
        await pump.stop(engine.ping_timeout)
        session.finish()
        if pump.close_sent and not pump.peer_gone and not torn_down:
            await _await_close_reply(receive)
    if pump.ended is not None:
        pump.ended.set()


async def _await_close_reply(receive: Receive) -> None:
    """After our close frame, let the ASGI server finish the close handshake (the peer's
    reply arrives as ``websocket.disconnect``) before the app returns, within a bound.

    Returning at once is allowed by ASGI, but hypercorn 0.18 on trio then tears the
    connection down while it may still be answering the peer's close frame, and the two
    sends collide (``trio.BusyResourceError``, which ends its whole worker process)."""
    with anyio.move_on_after(CLOSE_REPLY_TIMEOUT):
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        except Exception as exc:  # the connection is gone: what we waited for
            logger.debug("waiting for the close reply: %r", exc)


async def _read(engine: EngineServer, session: Session, pump: Pump, receive: Receive) -> Any:
    """Read and dispatch until the session closes or the peer goes (None), or until a
    handler run inline suspends (``pump.suspended``; returns what the dispatch left to
    await, if anything)."""
    max_payload = engine.max_payload
    while not session.closed:
        if pump.suspended is not None:
            return None  # see below: this task must await that handler next
        try:
            message = await receive()
        except Exception as exc:  # the ASGI server's way of saying the connection broke
            logger.debug("session %s: receive failed: %r", session.sid, exc)
            pump.peer_gone = True
            session.close("transport error")
            return None
        mtype = message["type"]
        if mtype == "websocket.disconnect":
            pump.peer_gone = True
            session.close("transport close")
            return None
        if mtype != "websocket.receive":
            continue
        data: Any = message.get("text")
        if data is None:
            data = message.get("bytes")
            if data is None:
                continue
        if len(data) > max_payload:
            refuse(
                "session %s: expected a frame of at most %d bytes, got %d; closing it",
                session.sid,
                max_payload,
                len(data),
            )
            pump.close_code = CLOSE_TOO_BIG
            session.close("transport error")
            return None
        # What this dispatch queues, this task sends; unless another task holds the
        # sending token, which then takes our output.
        held = session.begin_dispatch()
        try:
            # The common frame, a text MESSAGE, goes straight to the callback, which may
            # run a handler inline (Pump.run_inline) while it runs synchronously.
            if type(data) is str and data[:1] == "4":
                pump.inline = True
                try:
                    pending = engine.dispatch_message(session, data[1:])
                finally:
                    pump.inline = False
                if pump.suspended is not None:
                    # That handler suspended in this task: nothing else may be awaited
                    # before it. The next reader sends what this dispatch queued.
                    return pending
                if pending is not None:
                    await pending
                    pending = None  # an idle connection keeps no finished coroutine
            else:
                await _dispatch_packet(engine, session, data)
            if held:
                await pump.drain()
        except PeerGone as exc:
            logger.debug("session %s: send failed: %r", session.sid, exc.__cause__)
            pump.peer_gone = True
            session.close("transport error")
        except ProtocolError as exc:
            engine.protocol_error(session, exc)
        except Exception:
            pump.close_code = CLOSE_INTERNAL_ERROR
            engine.internal_error(session)
        finally:
            if held:
                session.end_dispatch()
        del message, data  # not held while the connection idles in receive()


async def _dispatch_packet(engine: EngineServer, session: Session, data: str | bytes) -> None:
    # A parse error closes the websocket normally, as the reference's (an empty close
    # frame); so does a ping from the client, a probe on an open websocket included.
    await engine.receive_packet(session, decode_frame(data))
