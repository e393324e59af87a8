"""``make cluster-demo`` (examples/cluster/run.py) stops everything it started: Redis and
every uvicorn (with its workers), on SIGINT, SIGTERM, SIGHUP, when one of them dies, and
(Linux) when the script itself is killed; afterwards its ports are free for the next
``make demo``. The issue: SIGTERM left Redis and uvicorn running, port 8000 taken."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, group_alive, kill_group, spawn
from tests.redisserver import redis_binary

pytestmark = pytest.mark.interop

START_TIMEOUT = 90  # Redis and two uvicorn processes that know each other, on a busy machine
STOP_TIMEOUT = 30  # run.py gives each process group 10 s after SIGTERM, then SIGKILL


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it; ``start`` (clock ticks since boot) tells a reused pid."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start: int


def processes() -> dict[int, Proc]:
    found: dict[int, Proc] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ... starttime(22nd)": comm may hold spaces.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended while we looked
        pid = int(stat.parent.name)
        found[pid] = Proc(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    return found


def descendants(root: int) -> list[Proc]:
    table = processes()
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def alive(procs: list[Proc]) -> list[Proc]:
    """Those of ``procs`` still running (the same process, not a zombie)."""
    table = processes()
    return [
        p
        for p in procs
        if p.pid in table and table[p.pid].start == p.start and table[p.pid].state not in "ZX"
    ]


def cmdline(pid: int) -> str:
    """A process's arguments, each followed by a NUL."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` and a server can bind it (as uvicorn does: SO_REUSEADDR)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ClusterDemo:
    """``python -m examples.cluster.run`` on free ports, its output read line by line."""

    def __init__(self, *args: str) -> None:
        redis_binary()  # skipped without it (failed under CI)
        self.process = spawn(
            [sys.executable, "-m", "examples.cluster.run", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started: list[Proc] = []

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The next line of output matching ``pattern``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(self.report(f"a line like {pattern!r}", timeout)) from None
            if line is None:
                raise AssertionError(self.report(f"a line like {pattern!r}", timeout))
            self.output.append(line)
            if match := re.match(pattern, line):
                return match

    def up(self) -> list[int]:
        """Wait until it says where to go; the ports it serves and Redis's. Notes every
        process it started by then (with theirs: uvicorn's workers)."""
        redis = int(self.line(r"broker: redis://127\.0\.0\.1:(\d+)/", START_TIMEOUT)[1])
        urls = self.line(r"open: (.*)", 5)[1]
        ports = [int(port) for port in re.findall(r":(\d+)/", urls)]
        self.started = descendants(self.process.pid)
        return [*ports, redis]

    def report(self, expected: str, timeout: float) -> str:
        with contextlib.suppress(queue.Empty):
            while (line := self._lines.get_nowait()) is not None:
                self.output.append(line)
        return f"expected {expected} within {timeout} s, got:\n{''.join(self.output)}"

    def close(self) -> None:
        """Whatever the test left running: the script, and the groups it started."""
        with contextlib.ExitStack() as stack:
            stack.callback(kill_group, self.process, 0)
            for pgid in {p.pgid for p in self.started}:
                if group_alive(pgid):
                    stack.callback(os.killpg, pgid, signal.SIGKILL)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def demo() -> Iterator[list[ClusterDemo]]:
    started: list[ClusterDemo] = []
    yield started
    with contextlib.ExitStack() as stack:
        for one in started:
            stack.callback(one.close)


def start(demo: list[ClusterDemo], *args: str) -> ClusterDemo:
    demo.append(ClusterDemo(*args))
    return demo[-1]


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait (bounded) until none of ``procs`` runs; those still running then."""
    deadline = time.monotonic() + timeout
    while (left := alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.05)  # processes shutting down: nothing to wait on but /proc
    return left


@pytest.mark.parametrize(
    ("signum", "args"),
    [
        (signal.SIGTERM, ["--processes", "2"]),
        (signal.SIGINT, ["--processes", "2"]),
        (signal.SIGHUP, ["--processes", "2"]),
        (signal.SIGTERM, ["--workers", "2"]),
    ],
    ids=["sigterm", "sigint", "sighup", "sigterm-workers"],
)
def test_a_stop_signal_stops_redis_and_every_uvicorn_and_frees_the_ports(
    signum: int, args: list[str], demo: list[ClusterDemo]
) -> None:
    run = start(demo, *args)
    ports = run.up()
    names = " ".join(str(p.pid) for p in run.started)
    # Redis, and two uvicorn (with --workers: the supervisor and its two workers).
    assert len(run.started) >= 3, names

    run.process.send_signal(signum)  # to the script alone, as `kill` or a supervisor does
    assert run.process.wait(timeout=STOP_TIMEOUT) == 0, run.report("exit 0", STOP_TIMEOUT)
    output = run.report("", 0)
    assert f"stopping: got {signal.Signals(signum).name}" in output, output
    assert "stopped: every process this script started has exited" in output, output
    assert alive(run.started) == [], output
    assert [port for port in ports if not port_free(port)] == [], output
    # The chat processes stopped before Redis: none of them saw it go away.
    assert "lost redis" not in output, output


def test_a_process_that_dies_stops_the_rest(demo: list[ClusterDemo]) -> None:
    run = start(demo, "--processes", "2")
    ports = run.up()
    children = [p for p in run.started if p.ppid == run.process.pid]
    assert all(p.pgid == p.pid for p in children)  # each leads a process group of its own
    victim = next(p for p in children if f"--port\0{ports[1]}\0" in cmdline(p.pid))
    os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer would

    assert run.process.wait(timeout=STOP_TIMEOUT) == 1, run.report("exit 1", STOP_TIMEOUT)
    output = run.report("", 0)
    assert f"stopping: uvicorn on port {ports[1]} exited with -9" in output, output
    assert alive(run.started) == [], output
    assert [port for port in ports if not port_free(port)] == [], output


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_killing_the_script_outright_still_stops_what_it_started(
    demo: list[ClusterDemo],
) -> None:
    run = start(demo, "--processes", "2")
    ports = run.up()
    run.process.kill()  # SIGKILL: no clean-up of its own; the children are told by Linux
    run.process.wait(timeout=10)
    left = wait_gone(run.started, STOP_TIMEOUT)
    assert left == [], run.report("", 0)
    assert [port for port in ports if not port_free(port)] == []
