"""HTTP long-polling: GET waits for queued packets, POST delivers the client's packets.

One GET and one POST may be in flight per session; an overlapping one is answered 400 and
closes the session, as the reference server does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from rooms._types import Receive, Scope, Send
from rooms.engine.server import header, parse_query, refuse
from rooms.engine.session import Session, State
from rooms.exceptions import PayloadTooLarge, ProtocolError
from rooms.protocol.engineio import CLOSE, HandshakeError, decode_payload, encode_payload

if TYPE_CHECKING:
    from rooms.engine.server import EngineServer

logger = logging.getLogger("rooms.engine")

TEXT_PLAIN = (b"content-type", b"text/plain; charset=UTF-8")


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


TEXT_HTML = (b"content-type", b"text/html")


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(
    engine: EngineServer, scope: Scope, send: Send, error: HandshakeError
) -> None:
    # The reference server answers Forbidden with 403 and every other code with 400.
    status = 403 if error is HandshakeError.FORBIDDEN else 400
    headers = [(b"content-type", b"application/json"), *engine.cors_headers(scope)]
    await respond(send, status, error.body(), headers)


async def handle(engine: EngineServer, scope: Scope, receive: Receive, send: Send) -> None:
    method = scope["method"]
    if method == "OPTIONS":
        await _preflight(engine, scope, send)
        return
    query = parse_query(scope)
    error = engine.check_request(scope, query, "polling")
    if error is not None:
        await respond_error(engine, scope, send, error)
        return
    sid = query.get("sid")
    if sid is None:
        if method != "GET":
            refuse("expected GET for a handshake, got %.16s", method)
            await respond_error(engine, scope, send, HandshakeError.BAD_HANDSHAKE_METHOD)
            return
        session = await engine.open_session(scope, "polling")
        if session is None:
            await respond_error(engine, scope, send, HandshakeError.FORBIDDEN)
            return
        await _answer_poll(engine, session, scope, send, session.take())
        return
    session = engine.sessions.get(sid)
    if session is None:
        refuse("expected a known sid, got %.40r", sid)
        await respond_error(engine, scope, send, HandshakeError.UNKNOWN_SID)
        return
    if session.transport != "polling" and method == "POST":
        refuse("session %s: expected no polling after its upgrade, got a POST", sid)
        await respond_error(engine, scope, send, HandshakeError.BAD_REQUEST)
        return
    if method == "GET":
        await _get(engine, session, scope, receive, send)
    elif method == "POST":
        await _post(engine, session, scope, receive, send)
    else:
        refuse("expected GET or POST, got %.16s", method)
        await respond_error(engine, scope, send, HandshakeError.BAD_REQUEST)


async def _preflight(engine: EngineServer, scope: Scope, send: Send) -> None:
    headers = engine.cors_headers(scope)
    if headers:
        headers.append((b"access-control-allow-methods", b"GET, POST, OPTIONS"))
        requested = header(scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await respond(send, 204, b"", headers)


async def _refuse_overlap(
    engine: EngineServer, session: Session, scope: Scope, send: Send, method: str
) -> None:
    refuse("session %s: expected one %s at a time, got an overlapping one", session.sid, method)
    session.close("transport error")
    await respond_error(engine, scope, send, HandshakeError.BAD_REQUEST)


async def _get(
    engine: EngineServer, session: Session, scope: Scope, receive: Receive, send: Send
) -> None:
    if not session.begin_request("GET"):
        await _refuse_overlap(engine, session, scope, send, "GET")
        return
    frames: list[str | bytes] | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_disconnect, session, receive, tg.cancel_scope)
            frames = await session.next_frames()
            tg.cancel_scope.cancel()
    finally:
        session.end_request("GET")
    if frames is None:  # the client went away while we waited
        return
    await _answer_poll(engine, session, scope, send, frames)


async def _answer_poll(
    engine: EngineServer, session: Session, scope: Scope, send: Send, frames: list[str | bytes]
) -> None:
    if session.state is State.CLOSED or (session.state is State.CLOSING and not frames):
        frames = [*frames, *session.take(), CLOSE]
        session.finish()
    # else, CLOSING with frames to deliver: they go alone, and the CLOSE goes with the next
    # poll (or the session is aborted at its close deadline if none comes). socket.io-client
    # hands decoded packets to its socket a tick after reading them, so messages sharing a
    # payload with a CLOSE would reach an already disconnected socket (and, with recovery,
    # be replayed a second time).
    body = encode_payload(frames).encode()
    await respond(send, 200, body, [TEXT_PLAIN, *engine.cors_headers(scope)])


async def _watch_disconnect(session: Session, receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            session.close("transport close")
            return


async def _post(
    engine: EngineServer, session: Session, scope: Scope, receive: Receive, send: Send
) -> None:
    if not session.begin_request("POST"):
        await _refuse_overlap(engine, session, scope, send, "POST")
        return
    try:
        try:
            body = await _read_body(receive, engine.max_payload)
            packets = decode_payload(body, engine.max_payload)
            for packet in packets:
                await engine.receive_packet(session, packet)
        except PayloadTooLarge as exc:
            refuse("session %s: %s; closing it", session.sid, exc)
            session.close("transport error")
            await respond(
                send, 413, b"Payload Too Large", [TEXT_PLAIN, *engine.cors_headers(scope)]
            )
            return
        except ProtocolError as exc:
            engine.protocol_error(session, exc)
            await respond_error(engine, scope, send, HandshakeError.BAD_REQUEST)
            return
        except _ClientGone:
            session.close("transport close")
            return
        except Exception:
            engine.internal_error(session)
            await respond(send, 500, b"Internal Server Error", [TEXT_PLAIN])
            return
    finally:
        session.end_request("POST")
    await respond(send, 200, b"ok", [TEXT_HTML, *engine.cors_headers(scope)])


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"expected a payload of at most {limit} bytes, got more than that"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
