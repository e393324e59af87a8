"""Shared fixtures: anyio backends, free ports, and real servers in subprocesses."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
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


# --------------------------------------------------------------------------- processes
#
# Every process a test starts goes through spawn(): it gets a process group of its own, so
# that it dies with whatever it started in turn (hypercorn's worker, uvicorn's workers) and a
# Ctrl-C in the terminal reaches pytest alone, which then kills it in a finalizer. Every one
# is registered, so that the session can prove at its end that none is left running
# (pytest_sessionfinish below).


@dataclass
class Spawned:
    command: str
    process: subprocess.Popen[Any]


SPAWNED: list[Spawned] = []


def spawn(command: list[str], **options: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(command, **options)`` in a process group of its own, registered."""
    process = subprocess.Popen(command, start_new_session=True, **options)
    SPAWNED.append(Spawned(shlex.join(command), process))
    return process


def kill_group(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End ``process`` and its whole group. With a ``grace``, SIGTERM it first and give it that
    long (a server then stops its workers and closes its connections); then SIGKILL the group,
    and wait until none of it runs (so that a port it held is free again)."""
    if grace > 0 and process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # its group id is its pid: see spawn
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while group_alive(process.pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"process group {process.pid} survived SIGKILL: {process.args!r}")
        time.sleep(0.01)  # the kernel tearing the killed processes down


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. A zombie does not: killpg still finds
    it, but it is dead, waiting for its parent (init, for an orphan) to collect it."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no way to tell zombies apart here: believe killpg
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue  # it ended while we looked
        if group == str(pgid) and state not in ("Z", "X"):
            return True
    return False


def run_process(
    command: list[str], timeout: float, **options: Any
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(command, capture_output=True, text=True, timeout=timeout)`` for a
    registered process, its group killed once it ends or times out."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with spawn(command, **pipes, **options) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            kill_group(process, grace=0)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.hookimpl(trylast=True)  # after the runner's, which tears down the session's fixtures
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session if a process that a test started is still running, naming each
    (then kill it: it must not outlive the run)."""
    left = [s for s in SPAWNED if s.process.poll() is None or group_alive(s.process.pid)]
    if not left:
        return
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    message = f"{len(left)} process group(s) that tests started were still running (killed now):"
    for spawned in left:
        message += f"\n  pid {spawned.process.pid}: {spawned.command}"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "processes left running", red=True, bold=True)
        reporter.write_line(message, red=True)
    else:
        sys.stderr.write(message + "\n")
    with contextlib.ExitStack() as stack:  # every one, even if killing another fails
        for spawned in left:
            stack.callback(kill_group, spawned.process, 0)


@dataclass
class LiveServer:
    """A server process on 127.0.0.1; ``url`` is its base URL."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = False  # by the test (stop or kill), as opposed to died

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: clients are told, workers stopped), then SIGKILL to
        whatever is left of its group."""
        self.stopped = True
        kill_group(self.process, grace=10)

    def kill(self) -> None:
        """SIGKILL the server and every process it started (hypercorn serves from a child
        process): no goodbye, as in a crash."""
        self.stopped = True
        kill_group(self.process, grace=0)

    def died(self) -> bool:
        """Whether it exited without the test stopping it."""
        return not self.stopped and self.process.poll() is not None

    def death_report(self, when: str) -> str:
        return (
            f"the server process exited with {self.process.returncode} {when}: "
            f"{shlex.join(self.process.args)}\n"  # type: ignore[arg-type]
            f"its log ({self.log_path}):\n{self.log()}"
        )


# (label, command template): the ASGI servers rooms is tested under: uvicorn and hypercorn,
# one per anyio backend, and granian (its own Rust HTTP and websocket stack).
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
    "granian-asyncio": [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
        "--log-level",
        "warning",
        "{app}",
    ],
}


def start_server(
    kind: str,
    app: str,
    tmp_path: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
    args: Sequence[str] = (),
) -> LiveServer:
    """Start ``app`` under ``kind`` (``args`` appended to its command line: uvicorn's
    ``--ws wsproto``, say) and wait until its /health answers."""
    port = port or free_port()
    command = [part.format(app=app, port=port) for part in SERVERS[kind]] + list(args)
    log_path = tmp_path / f"server-{kind}-{port}.log"
    with log_path.open("wb") as log_file:  # the child keeps its own copy of the fd
        process = spawn(
            command,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        _wait_healthy(server, kind, timeout)
    except BaseException:
        server.stop()  # whatever it started, too
        raise
    return server


def _wait_healthy(server: LiveServer, kind: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{kind} exited early:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind} did not answer /health in {timeout} s:\n{server.log()}")
        time.sleep(0.05)  # polling a port that is not listening yet; not test synchronisation


class SharedServer:
    """A server process that the tests of a module share, lent to one test at a time.

    A module-scoped fixture holds it (``with SharedServer(kind, app, tmp_path_factory) as
    shared: yield shared``); a function-scoped fixture under the name the tests use lends it
    (``yield from shared.lend(request)``). A server that dies during a test fails that test
    with its log, and the next test gets a fresh one instead of "connection refused".
    """

    def __init__(
        self,
        kind: str,
        app: str,
        tmp_path_factory: pytest.TempPathFactory,
        env: dict[str, str] | None = None,
    ) -> None:
        self._start: Callable[[], LiveServer] = lambda: start_server(
            kind, app, tmp_path_factory.mktemp(kind), env=env
        )
        self.server: LiveServer | None = None
        self._last_test = ""
        self._unreported: list[str] = []

    def __enter__(self) -> SharedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.stop()
        if self._unreported:
            pytest.fail("\n\n".join(self._unreported), pytrace=False)

    def lend(self, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
        server = self.server
        if server is not None and server.died():
            # It died after the last test's check (at the end of that test's traffic):
            # reported when the module ends, since no test is running to fail.
            self._unreported.append(server.death_report(f"after {self._last_test} ended"))
            server.stop()  # what a dead supervisor left of its group
            server = None
        if server is None:
            server = self.server = self._start()
        self._last_test = request.node.nodeid
        yield server
        if server.died():
            report = server.death_report("during this test")
            server.stop()
            self.server = None
            pytest.fail(report, pytrace=False)


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
def interop_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServer]:
    """tests/apps/interop.py under uvicorn (asyncio) and hypercorn (trio), one per module."""
    with SharedServer(str(request.param), "tests.apps.interop:app", tmp_path_factory) as shared:
        yield shared


@pytest.fixture
def interop_server(
    interop_servers: SharedServer, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    yield from interop_servers.lend(request)


def run_node(script: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a Node script from tests/js with the project's node_modules."""
    return run_process(
        ["node", str(ROOT / "tests" / "js" / script), *args],
        timeout,
        cwd=ROOT,
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
        self.process = spawn(
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
        kill_group(self.process, grace=0)
        self._reader.join(timeout=10)  # it ends at EOF, which the exit guarantees
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn_node() -> Iterator[Callable[..., NodeProcess]]:
    """Start Node scripts that talk in phases; every one is stopped at teardown."""
    started: list[NodeProcess] = []

    def start(script: str, *args: str) -> NodeProcess:
        started.append(NodeProcess(script, *args))
        return started[-1]

    yield start
    with contextlib.ExitStack() as stack:  # every one, even if stopping another fails
        for node in started:
            stack.callback(node.stop)
