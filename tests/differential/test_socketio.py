"""Socket.IO namespace edge states, side by side with Node's socket.io 4.8 (the reference).

Both serve "/" (an "echo" event that acknowledges its arguments) and "/admin" behind a
middleware that refuses a CONNECT without ``auth.token == "s3cret"``; see
tests/apps/interop.py and tests/js/reference_server.js. Every exchange runs over a
websocket; Engine.IO pings are answered and left out of the transcripts.
"""

from __future__ import annotations

import pytest

from tests.differential.conftest import Compare
from tests.differential.driver import Driver, Socket

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


async def _session(d: Driver) -> Socket:
    ws = await d.websocket("sio")
    assert ws is not None, d.transcript
    opened = await ws.ws.receive()
    assert isinstance(opened, str) and opened.startswith("0{"), opened
    d.note("opened")
    return ws


async def _exchange(d: Driver, *frames: str) -> Socket:
    """Each frame, then its reply. (An EVENT sent before the CONNECT reply came is racy
    on the reference: it completes a CONNECT asynchronously, and an EVENT for a namespace
    not connected yet closes the connection. Clients wait for the reply.)"""
    ws = await _session(d)
    for frame in frames:
        await ws.send(frame)
        await ws.receive(skip_pings=True)
    return ws


@pytest.mark.parametrize(
    "frames",
    [
        ["40"],
        ["40/nope,"],
        ["40/admin,"],
        ['40/admin,{"token":"wrong"}'],
        ['40/admin,{"token":"s3cret"}'],
        ["40", '421["echo","hi",{"n":1}]'],
    ],
    ids=["main", "unknown", "refused", "wrong-token", "admitted", "ack"],
)
async def test_connect_replies(compare: Compare, frames: list[str]) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _exchange(d, *frames)
        await ws.close()

    await compare(scenario)


@pytest.mark.parametrize(
    "frame",
    ['42/admin,["echo",1]', '42["echo",1]', "4{", '42["echo"', "49", "4"],
    ids=["event-unconnected-nsp", "event-before-connect", "bad-json", "cut-json", "type", "empty"],
)
async def test_packets_that_end_the_connection(compare: Compare, frame: str) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _session(d)
        await ws.send(frame)
        await ws.send("40")
        await ws.until_closed()

    await compare(scenario)


async def test_a_refused_namespace_leaves_the_others_usable(compare: Compare) -> None:
    async def scenario(d: Driver) -> None:
        ws = await _exchange(d, "40", "40/admin,")
        await ws.send('421["echo","still here"]')
        await ws.receive(skip_pings=True)
        await ws.close()

    await compare(scenario)
