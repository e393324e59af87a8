"""HTTP long-polling: GET waits for queued packets, POST delivers the client's packets.

One GET and one POST may be in flight per session; an overlapping one is answered 400 (with
no body) and closes the session, as the reference server does. The answers to the edge
cases are the reference's too: a method other than GET or POST for a session is 500; a
body past ``max_payload`` is 413 and leaves the session open (the client is told, and
closes it); a packet that breaks the protocol closes the session (the packets before it
are acted on) and its POST is answered "ok" all the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from rooms._types import Receive, Scope, Send
from rooms.engine.server import header, parse_query, refuse
from rooms.engine.session import Session
from rooms.exceptions import PayloadTooLarge, ProtocolError
from rooms.protocol.engineio import HandshakeError, encode_payload, iter_payload

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
    error = engine.check_request(scope, query, method, upgrade=False)
    if error is not None:
        if await _discard_body(receive, engine.max_payload):
            await respond_error(engine, scope, send, error)
        return
    sid = query.get("sid")
    if sid is None:
        session = await engine.open_session(scope, "polling")
        if session is None:
            await respond_error(engine, scope, send, HandshakeError.FORBIDDEN)
            return
        await _answer_poll(engine, scope, send, session.take())
        return
    session = engine.sessions[sid]  # check_request found it
    if method == "GET":
        await _get(engine, session, scope, receive, send)
    elif method == "POST":
        await _post(engine, session, scope, receive, send)
    else:
        refuse("session %s: expected GET or POST, got %.16s", sid, method)
        if await _discard_body(receive, engine.max_payload):
            await respond(send, 500, b"", [])


async def _preflight(engine: EngineServer, scope: Scope, send: Send) -> None:
    headers = engine.cors_headers(scope)
    if headers:
        headers.append((b"access-control-allow-methods", b"GET, POST, OPTIONS"))
        requested = header(scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await respond(send, 204, b"", headers)


async def _refuse_overlap(
    engine: EngineServer, session: Session, receive: Receive, send: Send, method: str
) -> None:
    refuse("session %s: expected one %s at a time, got an overlapping one", session.sid, method)
    session.close("transport error")
    if method == "GET" or await _discard_body(receive, engine.max_payload):
        await respond(send, 400, b"", [])


async def _get(
    engine: EngineServer, session: Session, scope: Scope, receive: Receive, send: Send
) -> None:
    if not session.begin_request("GET"):
        await _refuse_overlap(engine, session, receive, send, "GET")
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
    # A closing session's frames went alone, and its CLOSE goes with the next poll (see
    # Session.next_frames): socket.io-client hands decoded packets to its socket a tick
    # after reading them, so messages sharing a payload with a CLOSE would reach an
    # already disconnected socket (and, with recovery, be replayed a second time).
    await _answer_poll(engine, scope, send, frames)


async def _answer_poll(
    engine: EngineServer, scope: Scope, send: Send, frames: list[str | bytes]
) -> None:
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
        await _refuse_overlap(engine, session, receive, send, "POST")
        return
    try:
        try:
            body = await _read_body(receive, engine.max_payload)
            for packet in iter_payload(body, engine.max_payload):
                await engine.receive_packet(session, packet)
        except PayloadTooLarge as exc:
            # The reference answers 413 and keeps the session: the client errs and closes.
            refuse("session %s: %s", session.sid, exc)
            await respond(send, 413, b"", [])
            return
        except ProtocolError as exc:
            # The reference closes the session and answers the POST as usual.
            engine.protocol_error(session, exc)
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


async def _discard_body(receive: Receive, limit: int) -> bool:
    """Read a refused request's body (up to ``limit`` bytes) before answering it; False if
    the client went meanwhile. An answer sent while the body still streams in has the
    ASGI server deal with the rest of the request at the same time; hypercorn on trio then
    may send on the connection from two tasks at once (``trio.BusyResourceError``)."""
    try:
        await _read_body(receive, limit)
    except PayloadTooLarge:
        return True  # enough: answer now
    except _ClientGone:
        return False
    return True


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
