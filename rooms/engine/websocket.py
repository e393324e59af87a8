"""The websocket transport: a direct handshake, or the probe upgrade of a polling session.

Each connection runs its reader in the ASGI task and one writer task that drains the
session's outbox, so emitting never waits on a slow socket.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from rooms._types import Receive, Scope, Send
from rooms.engine.server import parse_query
from rooms.engine.session import Session, State
from rooms.exceptions import ProtocolError
from rooms.protocol.engineio import PONG_PROBE, HandshakeError, PacketType, decode_frame

if TYPE_CHECKING:
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.engine")

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1007
CLOSE_TOO_BIG = 1009


class _PeerGone(Exception):
    """The websocket went away under us."""


async def handle(engine: EngineServer, scope: Scope, receive: Receive, send: Send) -> None:
    query = parse_query(scope)
    error = engine.check_request(scope, query, "websocket")
    connect = await receive()
    if connect["type"] != "websocket.connect":
        return
    if error is not None:
        await _deny(scope, send, error)
        return
    sid = query.get("sid")
    if sid is None:
        session = await engine.open_session(scope, "websocket")
        if session is None:
            await _deny(scope, send, HandshakeError.FORBIDDEN)
            return
        await send({"type": "websocket.accept"})
        await _run(engine, session, receive, send)
        return
    session = engine.sessions.get(sid)
    if session is None:
        logger.info("expected a known sid for an upgrade, got %r", sid)
        await _deny(scope, send, HandshakeError.UNKNOWN_SID)
        return
    if session.transport != "polling" or session.state is not State.OPEN:
        logger.info(
            "session %s: expected one upgrade from polling, got a second websocket "
            "while it is %s on %s",
            sid,
            session.state.value,
            session.transport,
        )
        await _deny(scope, send, HandshakeError.BAD_REQUEST)
        return
    await send({"type": "websocket.accept"})
    if await _upgrade(engine, session, receive, send):
        await _run(engine, session, receive, send)


async def _deny(scope: Scope, send: Send, error: HandshakeError) -> None:
    """Refuse before accepting: a JSON body when the server supports it, else a close."""
    status = 403 if error is HandshakeError.FORBIDDEN else 400
    if "websocket.http.response" in scope.get("extensions", {}) or {}:
        body = error.body()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": CLOSE_PROTOCOL_ERROR})


async def _upgrade(engine: EngineServer, session: Session, receive: Receive, send: Send) -> bool:
    """Probe: ``2probe`` → ``3probe``, release the poll with NOOP, then wait for ``5``."""
    with anyio.move_on_after(engine.upgrade_timeout):
        try:
            probe = await _receive_text(receive)
            if probe != "2probe":
                raise ProtocolError(f"expected '2probe' to start the upgrade, got {probe[:16]!r}")
            if session.state is not State.OPEN:
                raise _PeerGone
            session.state = State.UPGRADING
            session.wake()  # a pending GET answers NOOP, so the client can pause polling
            await send({"type": "websocket.send", "text": PONG_PROBE})
            while True:
                message = await _receive_text(receive)
                if message == "5":
                    break
                if message.startswith("2") or message == "6":
                    continue  # a late ping probe or noop is harmless
                raise ProtocolError(f"expected '5' to finish the upgrade, got {message[:16]!r}")
            if session.state is not State.UPGRADING:
                raise _PeerGone
            session.transport = "websocket"
            session.state = State.OPEN
            session.wake()
            return True
        except ProtocolError as exc:
            logger.info("session %s: upgrade failed: %s", session.sid, exc)
            await _close_quietly(send, CLOSE_PROTOCOL_ERROR)
        except _PeerGone:
            pass
    if session.state is State.UPGRADING:
        session.state = State.OPEN  # stay on polling
        session.wake()
    return False


async def _receive_text(receive: Receive) -> str:
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise _PeerGone
    text = message.get("text")
    if text is None:
        raise ProtocolError("expected a text frame during the upgrade, got binary")
    return text  # type: ignore[no-any-return]


async def _close_quietly(send: Send, code: int) -> None:
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception:  # the ASGI server may already consider the socket gone
        logger.debug("websocket close could not be sent", exc_info=True)


async def _run(engine: EngineServer, session: Session, receive: Receive, send: Send) -> None:
    peer_gone = False
    close_code = CLOSE_NORMAL

    async def writer() -> None:
        try:
            while True:
                frames = await session.next_frames()
                if not frames:
                    break
                for frame in frames:
                    if type(frame) is str:
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
            if not peer_gone:
                await send({"type": "websocket.close", "code": close_code})
        except Exception as exc:  # ASGI servers signal a vanished peer with their own types
            logger.debug("session %s: send failed: %r", session.sid, exc)
            session.close("transport error")
        finally:
            tg.cancel_scope.cancel()

    try:
        max_payload = engine.max_payload
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            try:
                while True:
                    message = await receive()
                    mtype = message["type"]
                    if mtype == "websocket.disconnect":
                        peer_gone = True
                        session.close("transport close")
                        break
                    if mtype != "websocket.receive":
                        continue
                    data: Any = message.get("text")
                    if data is None:
                        data = message.get("bytes")
                        if data is None:
                            continue
                    if len(data) > max_payload:
                        logger.info(
                            "session %s: expected a frame of at most %d bytes, got %d",
                            session.sid,
                            max_payload,
                            len(data),
                        )
                        close_code = CLOSE_TOO_BIG
                        session.close("transport error")
                        break
                    try:
                        packet = decode_frame(data)
                    except ProtocolError as exc:
                        logger.info("session %s: %s", session.sid, exc)
                        close_code = CLOSE_PROTOCOL_ERROR
                        session.close("parse error")
                        break
                    if packet.type is PacketType.PING and packet.data == "probe":
                        logger.info(
                            "session %s: expected no probe on an open websocket, got one",
                            session.sid,
                        )
                        continue
                    await engine.receive_packet(session, packet)
                    if session.closed:
                        break
            finally:
                # The reader is done; the writer drains what is queued and closes the socket,
                # but a peer that stopped reading gets no longer than ping_timeout to take it.
                if not session.closed:
                    session.close("transport close")
                tg.cancel_scope.deadline = anyio.current_time() + engine.ping_timeout
    finally:
        session.finish()
