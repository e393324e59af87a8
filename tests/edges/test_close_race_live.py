"""The server closes a websocket (a protocol error, found by the task reading it) while the
client's own close frame is already on its way: the close handshake must end cleanly, and
the ASGI server must survive it.

hypercorn 0.18 on trio tears a connection down as soon as the app returns, with a send that
can collide with its answer to the peer's close frame (``trio.BusyResourceError``, which ends
its whole worker process; see docs/known-issues.md). rooms waits for the peer's close
reply, within a bound, before returning. Before that, this killed hypercorn on every run.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVERS, start_server

pytestmark = pytest.mark.interop

CONNECTIONS = 300


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2), payloads under 126 bytes."""
    mask = os.urandom(4)
    return (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def read_until(sock: socket.socket, buffer: bytes, marker: bytes) -> bytes:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}")
        buffer += chunk
    return buffer


def bad_packet_and_close_together(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        read_until(sock, b"", b'"sid"')  # the handshake and the OPEN packet
        sock.sendall(frame(0x1, b"40"))
        read_until(sock, b"", b"40")  # connected to "/"
        # Invalid JSON (the server closes with 1002) and our close frame in one write.
        sock.sendall(frame(0x1, b"42[oops") + frame(0x8, struct.pack("!H", 1000)))
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass  # a reset is an acceptable end too: what matters is the server lives


@pytest.mark.parametrize("kind", list(SERVERS))
def test_closing_while_the_client_closes_too_leaves_the_server_serving(
    kind: str, tmp_path: Path
) -> None:
    server = start_server(kind, "tests.apps.edges:app", tmp_path)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: bad_packet_and_close_together(server.port), range(CONNECTIONS)))
        assert server.process.poll() is None, server.log()
        assert httpx.get(server.url + "/health", timeout=5).text == "ok"
        assert "BusyResourceError" not in server.log()
    finally:
        server.stop()
