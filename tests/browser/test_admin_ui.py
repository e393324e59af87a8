"""The real Socket.IO Admin UI (npm ``@socket.io/admin-ui`` 0.5.1, its built ``ui/dist``)
against a rooms cluster: three uvicorn processes of tests/apps/admin.py on a real Redis,
socket.io-client (Node) clients on two of them, and headless chromium, driven by
tests/js/admin_ui.js, on the UI as the third process serves it. The UI refuses wrong
credentials with its own words, logs in, shows the three processes, lists the sockets of
the other two with their transports, and its button disconnects one: that client hears
``io server disconnect``.

``ROOMS_SCREENSHOTS=1`` writes the two screenshots to docs/images (the docs show them);
otherwise they go to the test's temporary folder. For the icons to show in them, point
``ROOMS_MDI_FONT`` at an ``@mdi/font`` package folder (``npm install --prefix /tmp/mdi
@mdi/font``, then ``/tmp/mdi/node_modules/@mdi/font``): the page asks a CDN for it, which
tests never reach.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Chromium, missing
from tests.conftest import ROOT, LiveServer, NodeProcess, start_server
from tests.jsdriver import JsDriver
from tests.redisserver import RedisServer

pytestmark = pytest.mark.interop

APP = "tests.apps.admin:app"
USERNAME, PASSWORD = "admin", "not-in-the-docs"
SCRIPT_TIMEOUT = 160  # the script's own deadline is 150 s
SHOTS = ROOT / "docs" / "images"
UI = ROOT / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"  # what the app serves


def finish(node: NodeProcess, servers: list[LiveServer], chromium: Chromium) -> Any:
    """The script's result; a failure carries the servers' and chromium's logs."""
    try:
        out = node.next_json(timeout=SCRIPT_TIMEOUT)
    except AssertionError as exc:
        logs = "".join(f"\n--- {s.log_path}:\n{s.log()}" for s in servers)
        raise AssertionError(f"{exc}{logs}\n--- chromium:\n{chromium.log()[-3000:]}") from None
    assert out.pop("phase") == "done", out
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"expected a PNG, got {data[:8]!r}"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_admin_ui_lists_the_sockets_of_every_process_and_disconnects_one(
    chromium: Chromium,
    own_redis: RedisServer,
    tmp_path: Path,
    spawn_node: Callable[..., NodeProcess],
) -> None:
    if not UI.is_dir():
        missing("@socket.io/admin-ui is not installed (make test runs npm ci)")
    env = {
        "ROOMS_BROKER": own_redis.url,
        "ROOMS_ADMIN_USERNAME": USERNAME,
        "ROOMS_ADMIN_PASSWORD": PASSWORD,
    }
    shots = SHOTS if os.environ.get("ROOMS_SCREENSHOTS") == "1" else tmp_path
    servers: list[LiveServer] = []
    with contextlib.ExitStack() as stack:  # each one stopped, even if starting another fails
        for _ in range(3):
            server = start_server("uvicorn-asyncio", APP, tmp_path, env=env)
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:  # all three know each other (waited for server-side)
            httpx.get(f"{server.url}/cluster?peers=2", timeout=15).raise_for_status()
        js = JsDriver()
        stack.callback(js.close)  # before the servers stop: the clients leave first
        # Before the UI logs in: it picks the namespace to show once, at login (notes §7).
        first, second = servers[0].url, servers[1].url
        ada = js.connect("ada", first, "default", auth={"name": "ada", "rooms": ["lobby"]})
        bob = js.connect("bob", second, "websocket", auth={"name": "bob", "rooms": ["lobby"]})
        cy = js.connect("cy", second, "polling", auth={"name": "cy"})
        js.connect("dee", f"{first}/news", "websocket", auth={"name": "dee"})
        js.request("upgraded", name="ada")  # its transport settled before the UI looks
        for text in ("hello", "hi", "hey"):  # some traffic for the Dashboard
            assert js.call("bob", "say", "lobby", text) == [True]
        ids = [ada["id"], bob["id"], cy["id"]]

        node = spawn_node(
            "admin_ui.js",
            chromium.url,
            f"{servers[2].url}/admin-ui/",
            servers[2].url,
            USERNAME,
            PASSWORD,
            ",".join(ids),
            ada["id"],
            str(shots),
        )
        out = finish(node, servers, chromium)
        # The button reached the process ada is on: her client was disconnected by the
        # server, and the others were not.
        said = [("said", ["bob", text]) for text in ("hello", "hi", "hey")]
        disconnected = [("disconnect", ["io server disconnect"])]
        assert js.events("ada", 4, timeout=10000) == [*said, *disconnected]
        assert js.request("state", name="bob")["connected"] is True
        assert js.request("state", name="cy")["connected"] is True
    logs = "".join(server.log() for server in servers)
    assert "Traceback" not in logs, logs

    assert out["pageErrors"] == []
    assert out["refused"] == "Invalid credentials"  # the UI's words for our refusal
    assert f"Server URL: {servers[2].url}" in out["header"]
    # The Servers page: one healthy row per process, each with a distinct id.
    server_ids = {cells[0] for cells in out["servers"]}
    assert len(out["servers"]) == 3 and len(server_ids) == 3, out["servers"]
    # Sockets of the two other processes, with the transport each is on (facts that only
    # the process a socket is on knows).
    assert set(ids) <= set(out["listed"]), out["listed"]
    assert {out["transports"][i] for i in ids[:2]} == {"WebSocket"}, out["transports"]
    assert out["transports"][cy["id"]] == "HTTP long-polling", out["transports"]
    assert ada["id"] in out["socketPage"]
    assert ada["id"] not in out["after"] and {bob["id"], cy["id"]} <= set(out["after"])
    for name in ("admin-ui-dashboard.png", "admin-ui-sockets.png"):
        assert png_size(shots / name) == (1400, 900)
