"""A websocket that rooms refuses leaves no ERROR in the ASGI server's log.

Which ASGI way of refusing matches the reference server on the wire, case by case:

- a request that fails the handshake checks (unknown transport or sid, a refused origin or
  ``on_connect``): the reference answers HTTP 400 with the error's message before any
  upgrade. Only a ``websocket.http.response`` denial says that (a close before accepting
  is a bare 403 from every ASGI server).
- a second websocket for a session upgrading or upgraded, or a websocket for a transport
  that takes no upgrade: the reference accepts it, then closes it. So does rooms.

uvicorn's websockets-sansio implementation (its default) logs "ASGI callable returned
without completing handshake" at ERROR when an app returns after an HTTP denial but before
the connection is gone; rooms waits, within a bound, for the server to let it go. Each
implementation and hypercorn on both event loops is checked here.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server
from tests.differential.conftest import APP
from tests.differential.driver import Driver, Record, Target

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

SERVERS = {
    "uvicorn-websockets-sansio": ("uvicorn-asyncio", ["--ws", "websockets-sansio"]),
    "uvicorn-websockets": ("uvicorn-asyncio", ["--ws", "websockets"]),
    "uvicorn-wsproto": ("uvicorn-asyncio", ["--ws", "wsproto"]),
    "hypercorn-asyncio": ("hypercorn-trio", ["-k", "asyncio", "--access-logfile", "-"]),
    "hypercorn-trio": ("hypercorn-trio", ["--access-logfile", "-"]),
}


@pytest.mark.parametrize("server", list(SERVERS))
async def test_refused_websockets_log_no_error(server: str, tmp_path: Path) -> None:
    kind, args = SERVERS[server]
    # INFO: the log shows the refusals themselves, the proof that they were logged at all.
    live = start_server(kind, APP, tmp_path, args=[*args, "--log-level", "info"])
    try:
        transcript = await _refusals(live)
    finally:
        live.stop()  # a clean shutdown: every connection's app has returned and logged
    refused = [record for record in transcript if record[:2] == ("ws", 400)]
    assert len(refused) == 5, transcript
    assert transcript.count(("ws-close", "normal")) == 2, transcript
    log = live.log()
    assert "400" in log, log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert not errors, log


async def _refusals(server: LiveServer) -> list[Record]:
    """Every way rooms refuses a websocket, one after the other."""
    async with httpx.AsyncClient(timeout=10) as http:
        d = Driver(Target("rooms", server.port), http)
        try:
            for params in (
                {"sid": "no-such-session"},
                {"transport": "carrier-pigeon"},
                {"refuse": "1"},
                {"EIO": "3"},
            ):
                assert await d.websocket("fast", **params) is None
            assert await d.websocket("fast", {"Origin": "http://evil.example"}) is None
            ws = await d.websocket("fast", transport="polling")
            assert ws is not None
            await ws.until_closed()
            sid = await d.handshake("slow")
            first = await d.websocket("slow", sid=sid)
            assert first is not None
            await first.send("2probe")
            await first.receive()
            await first.send("5")
            second = await d.websocket("slow", sid=sid)
            assert second is not None
            await second.until_closed()
        finally:
            await d.aclose()
    return d.transcript
