"""The two sides of every differential test: Node's reference servers
(tests/js/reference_server.js) and rooms (tests/apps/differential.py) under uvicorn
(asyncio) and hypercorn (trio)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import (
    NODE_MODULES,
    ROOT,
    SERVERS,
    LiveServer,
    SharedServer,
    _wait_healthy,
    free_port,
    spawn,
)
from tests.differential.driver import Driver, Record, Target

APP = "tests.apps.differential:app"

Scenario = Callable[[Driver], Awaitable[None]]


def start_reference(tmp_path: Path) -> LiveServer:
    """Node's engine.io and socket.io set up like the rooms app, on a free port; dies with
    the test session (its own process group, killed in the fixture's finalizer)."""
    port = free_port()
    log_path = tmp_path / f"reference-{port}.log"
    with log_path.open("wb") as log_file:
        process = spawn(
            ["node", str(ROOT / "tests" / "js" / "reference_server.js"), str(port)],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        _wait_healthy(server, "the reference server", 20.0)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_reference(tmp_path_factory.mktemp("reference"))
    yield server
    server.stop()


@pytest.fixture(params=list(SERVERS), scope="module")
def rooms_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    with SharedServer(str(request.param), APP, tmp_path_factory) as shared:
        yield shared


@pytest.fixture
def rooms_server(
    rooms_servers: SharedServer, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    yield from rooms_servers.lend(request)


class Compare:
    """``await compare(scenario)``: run the scenario against both servers at once, assert
    equal transcripts, and return them (reference, rooms). ``kind`` names the ASGI server
    rooms runs under."""

    def __init__(self, reference: LiveServer, rooms: LiveServer, kind: str) -> None:
        self.reference = reference
        self.rooms = rooms
        self.kind = kind

    async def __call__(self, scenario: Scenario) -> tuple[list[Record], list[Record]]:
        drivers: dict[str, Driver] = {}

        async def one(name: str, server: LiveServer) -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                driver = drivers[name] = Driver(Target(name, server.port), http)
                try:
                    await scenario(driver)
                finally:
                    await driver.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "reference", self.reference)
            tg.start_soon(one, "rooms", self.rooms)
        reference, rooms = drivers["reference"].transcript, drivers["rooms"].transcript
        assert rooms == reference, _diff(reference, rooms)
        return reference, rooms


@pytest.fixture
def compare(
    reference_server: LiveServer, rooms_server: LiveServer, request: pytest.FixtureRequest
) -> Compare:
    return Compare(reference_server, rooms_server, request.node.callspec.params["rooms_servers"])


def _diff(reference: list[Record], rooms: list[Record]) -> str:
    lines = ["the transcripts differ (reference | rooms):"]
    for i in range(max(len(reference), len(rooms))):
        left = reference[i] if i < len(reference) else "-"
        right = rooms[i] if i < len(rooms) else "-"
        mark = "  " if left == right else "!!"
        lines.append(f"{mark} {left!r}\n   {right!r}")
    return "\n".join(lines)
