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

Pass ``--redis redis://host:6379/0`` to use a Redis you already run instead of starting one.
Ctrl-C stops everything this script started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

APP = "examples.chat.app:app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is missing: `make cluster-demo` installs it, or pass --redis URL")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # wait until it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit("redis-server did not start")
            time.sleep(0.05)


def uvicorn(port: int, broker: str, workers: int = 1) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    return subprocess.Popen(command, env={**os.environ, "ROOMS_BROKER": broker})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--processes", type=int, default=3, help="separate processes, one port each"
    )
    parser.add_argument("--workers", type=int, default=0, help="one port, this many workers")
    parser.add_argument("--redis", help="an existing Redis URL (default: start one)")
    options = parser.parse_args()

    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as workdir:
        broker = options.redis
        if broker is None:
            redis, broker = start_redis(workdir)
            children.append(redis)
        try:
            if options.workers:
                children.append(uvicorn(8000, broker, options.workers))
                urls = ["http://127.0.0.1:8000/"]
            else:
                ports = [8001 + i for i in range(options.processes)]
                children += [uvicorn(port, broker) for port in ports]
                urls = [f"http://127.0.0.1:{port}/" for port in ports]
            print(f"\nbroker: {broker}\nopen: {'  '.join(urls)}")
            print(
                f'announce: .venv/bin/python -m examples.cluster.announce "hi" --redis {broker}\n'
            )
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            for child in reversed(children):
                child.terminate()
            for child in children:
                child.wait(timeout=15)


if __name__ == "__main__":
    main()
