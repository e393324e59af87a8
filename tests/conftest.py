"""Shared fixtures: anyio backends, free ports, and real servers in subprocesses."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
                self.kill()
        self._signal_group(signal.SIGKILL)  # a worker its supervisor left behind

    def kill(self) -> None:
        """SIGKILL the server and every process it started (hypercorn serves from a child
        process): no goodbye, as in a crash."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)  # its own session: see start_server


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
    with log_path.open("wb") as log_file:  # the child keeps its own copy of the fd
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            start_new_session=True,  # one process group to kill, workers included
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


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of this test's own (a ``RedisServer``), to stop and restart."""
    from tests.redisserver import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server shared by the tests that only need one (fails under CI without)."""
    from tests.redisserver import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


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


@pytest.fixture(autouse=True)
def _fresh_log_throttles() -> None:
    """Rate-limited log lines start over in every test (they assert on logs)."""
    from rooms._log import reset_throttles

    reset_throttles()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test so a leaked resource is blamed on the test that leaked it."""
    yield
    gc.collect()


class NodeProcess:
    """A Node script that reports phases as JSON lines on stdout, read as they come."""

    def __init__(self, script: str, *args: str) -> None:
        self.process = subprocess.Popen(
            ["node", str(ROOT / "tests" / "js" / script), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def next_json(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next JSON line; fails with the script's stderr if it ended or timed out."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"expected a line within {timeout} s, got none") from None
        if line is None:
            self.process.wait(timeout=10)
            assert self.process.stderr is not None
            raise AssertionError(
                f"expected a line, the script exited with {self.process.returncode}: "
                f"{self.process.stderr.read()}"
            )
        return json.loads(line)  # type: ignore[no-any-return]

    def wait(self, timeout: float = 10.0) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)  # it ends at EOF, which the exit guarantees
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn_node() -> Iterator[Callable[..., NodeProcess]]:
    """Start Node scripts that talk in phases; every one is stopped at teardown."""
    started: list[NodeProcess] = []

    def spawn(script: str, *args: str) -> NodeProcess:
        started.append(NodeProcess(script, *args))
        return started[-1]

    yield spawn
    for node in started:
        node.stop()
