"""A chat cluster on one machine: Redis, then several processes of the chat example.

From the repository root (``make cluster-demo`` runs it after installing everything)::

    .venv/bin/python -m examples.cluster.run                 # 3 processes, ports 8001-8003
    .venv/bin/python -m examples.cluster.run --workers 3     # one port (8000), 3 workers

Open a browser on two different ports (or twice on the workers port): the users chat
across processes. Every process runs examples/chat/app.py unchanged; only ``ROOMS_BROKER``
differs from ``make demo``. With ``--workers`` the default socket.io client's long-polling
requests reach any worker: no sticky sessions needed. Then, from another terminal, speak
from a process that has no sockets at all::

    .venv/bin/python -m examples.cluster.announce "Deploy finished" --redis redis://...

Pass ``--redis redis://host:6379/0`` to use a Redis you already run instead of starting one,
``--port 0`` for free ports instead of 8001 and up. The addresses are printed once every
process is up and knows the others.

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops everything this script started, and so does a
process that dies on its own: each one runs in a process group of its own, which is sent
SIGTERM, then SIGKILL if it is still there after 10 s; the ports are free when this exits.
On Linux the processes are also told to stop if this script is killed outright (SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

APP = "examples.chat.app:app"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE = 10.0  # seconds a process group gets to stop after SIGTERM
START_TIMEOUT = 60.0  # for every process to be up and to know the others


class Stop(Exception):
    """The demo is to stop: a signal came, or a process it started exited."""


class Supervisor:
    """The processes this script started, each the leader of a process group of its own,
    and the signals that stop them all."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}  # pid -> what it is, for messages
        self.services: set[int] = set()  # pids stopped last: what the others use (Redis)
        self.signal: int | None = None
        # Signal handlers only take note and wake the main loop through this pipe: raising
        # from a handler could interrupt a start half-way and lose a child.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def __enter__(self) -> Supervisor:
        signal.set_wakeup_fd(self._wake_w)
        for signum in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum in STOP_SIGNALS:  # a second Ctrl-C does not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        self.stop_all()
        signal.set_wakeup_fd(-1)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD and self.signal is None:
            self.signal = signum

    def start(self, name: str, command: list[str], service: bool = False, **options: Any) -> None:
        self.check()
        child = subprocess.Popen(
            command, start_new_session=True, preexec_fn=_die_with_parent, **options
        )
        self.children.append(child)
        self.names[child.pid] = name
        if service:
            self.services.add(child.pid)

    def check(self) -> None:
        """Raise Stop if a stop signal came or a child exited."""
        if self.signal is not None:
            raise Stop(f"got {signal.Signals(self.signal).name}")
        for child in self.children:
            if child.poll() is not None:
                raise Stop(f"{self.names[child.pid]} exited with {child.returncode}")

    def wait(self) -> None:
        """Block until a stop signal or a child's exit (no polling: the handlers wake us)."""
        while True:
            self.check()
            with contextlib.suppress(InterruptedError):
                select.select([self._wake_r], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)

    def stop_all(self) -> None:
        """Stop the chat processes, then the services they use (so that they do not warn
        that Redis went away while they shut down)."""
        users = [child for child in self.children if child.pid not in self.services]
        _stop(users)
        _stop([child for child in self.children if child.pid in self.services])


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child's group at once, SIGKILL what is left of each after GRACE."""
    for child in children:
        _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(deadline - time.monotonic(), 0))
        _signal_group(child.pid, signal.SIGKILL)  # stragglers (workers) with their leader
        child.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


# Linux's prctl, looked up here: a child between fork and exec should do as little as it can.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when this script dies, however."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], what: str, supervisor: Supervisor) -> None:
    """Poll ``ready`` (a starting process: nothing to wait on but its port) until it holds."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        supervisor.check()
        if time.monotonic() > deadline:
            raise Stop(f"{what} was not up after {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def start_redis(supervisor: Supervisor, workdir: str) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is missing: `make cluster-demo` installs it, or pass --redis URL")
    port = free_port()
    supervisor.start(
        f"redis-server on port {port}",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        service=True,
        stdout=subprocess.DEVNULL,
    )

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True

    wait_until(accepts, "redis-server", supervisor)
    return f"redis://127.0.0.1:{port}/0"


def start_uvicorn(supervisor: Supervisor, port: int, broker: str, workers: int = 1) -> None:
    command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    env = {**os.environ, "ROOMS_BROKER": broker}
    supervisor.start(f"uvicorn on port {port}", command, env=env)


def knows_peers(url: str, peers: int) -> Callable[[], bool]:
    """Whether the process at ``url`` is up and knows ``peers`` others (its /ready)."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}ready?peers={peers}", timeout=15) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    return ready


def ports(first: int, count: int) -> Iterator[int]:
    for index in range(count):
        yield free_port() if first == 0 else first + index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--processes", type=int, default=3, help="separate processes, one port each"
    )
    parser.add_argument("--workers", type=int, default=0, help="one port, this many workers")
    parser.add_argument("--redis", help="an existing Redis URL (default: start one)")
    parser.add_argument(
        "--port", type=int, help="the first port (default 8001, or 8000 with --workers; 0: free)"
    )
    options = parser.parse_args()
    first = options.port if options.port is not None else (8000 if options.workers else 8001)

    code = 1
    with tempfile.TemporaryDirectory() as workdir, Supervisor() as supervisor:
        try:
            broker = options.redis or start_redis(supervisor, workdir)
            if options.workers:
                port = next(ports(first, 1))
                start_uvicorn(supervisor, port, broker, options.workers)
                urls, peers = [f"http://127.0.0.1:{port}/"], options.workers - 1
            else:
                urls, peers = [], options.processes - 1
                for port in ports(first, options.processes):
                    start_uvicorn(supervisor, port, broker)
                    urls.append(f"http://127.0.0.1:{port}/")
            for url in urls:
                wait_until(knows_peers(url, peers), url, supervisor)
            print(f"\nbroker: {broker}\nopen: {'  '.join(urls)}")
            print(
                f'announce: .venv/bin/python -m examples.cluster.announce "hi" --redis {broker}\n',
                flush=True,
            )
            supervisor.wait()
        except Stop as stop:
            print(f"stopping: {stop}", flush=True)
            code = 0 if supervisor.signal is not None else 1  # asked to stop, or a crash
    print("stopped: every process this script started has exited", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
