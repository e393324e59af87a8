"""A drain with the real socket.io-client: 1,000 clients of one process, behind a load
balancer, reconnect to another process spread over the drain's window, not all at once."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.drain import INTERVAL, WINDOW
from tests.conftest import LiveServer, run_node, start_server

pytestmark = pytest.mark.interop

CLIENTS = 1000


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    a = start_server("uvicorn-asyncio", "tests.apps.drain:app", tmp_path)
    try:
        b = start_server("uvicorn-asyncio", "tests.apps.drain:app", tmp_path)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_thousand_clients_reconnect_elsewhere_spread_over_the_window(
    two: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two
    done = run_node("drain_spread.js", str(CLIENTS), a.url, b.url, "90000", timeout=100)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["closed"] == CLIENTS
    disconnects, reconnects = sorted(seen["disconnects"]), sorted(seen["reconnects"])
    assert len(disconnects) == len(reconnects) == CLIENTS
    batches = int(WINDOW / INTERVAL) + 1
    size = math.ceil(CLIENTS / batches)
    # The server closes batch k no sooner than k intervals after the first: the clients
    # can only hear of it later, and so reconnect no faster than that schedule.
    window_ms, interval_ms = WINDOW * 1000, INTERVAL * 1000
    early = [(n, t) for n, t in enumerate(reconnects) if t < (n // size) * interval_ms]
    assert early == []
    assert reconnects[-1] - reconnects[0] >= window_ms - interval_ms
    # And they are not bunched up: no interval sees more than three batches come back
    # (all at once would be nine; three leaves room for a client process that stalls).
    busiest = max(
        sum(1 for t in reconnects if start <= t < start + interval_ms) for start in reconnects
    )
    assert busiest <= 3 * size, busiest
    for server in (a, b):
        assert "Traceback" not in server.log(), server.log()
