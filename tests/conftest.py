"""Shared fixtures: anyio backends, free ports, and real servers in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"


# Every async test runs on both anyio backends.
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A server process on 127.0.0.1; ``url`` is its base URL."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# (label, command template): the two ASGI servers, one per anyio backend.
SERVERS = {
    "uvicorn-asyncio": [
        sys.executable,
        "-m",
        "uvicorn",
        "{app}",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    ],
    "hypercorn-trio": [
        sys.executable,
        "-m",
        "hypercorn",
        "{app}",
        "--bind",
        "127.0.0.1:{port}",
        "-k",
        "trio",
        "--log-level",
        "warning",
    ],
}


def start_server(
    kind: str,
    app: str,
    tmp_path: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> LiveServer:
    """Start ``app`` under ``kind`` and wait until its /health answers."""
    port = port or free_port()
    command = [part.format(app=app, port=port) for part in SERVERS[kind]]
    log_path = tmp_path / f"server-{kind}-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited early:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{kind} did not answer /health in {timeout} s:\n{server.log()}")
        time.sleep(0.05)  # polling a port that is not listening yet; not test synchronisation


@pytest.fixture(params=list(SERVERS), scope="module")
def interop_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """tests/apps/interop.py under uvicorn (asyncio) and hypercorn (trio)."""
    server = start_server(
        str(request.param), "tests.apps.interop:app", tmp_path_factory.mktemp("server")
    )
    yield server
    server.stop()


def run_node(script: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a Node script from tests/js with the project's node_modules."""
    return subprocess.run(
        ["node", str(ROOT / "tests" / "js" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
    )
