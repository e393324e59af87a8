#!/usr/bin/env python3
"""Benchmark rooms side by side with python-socketio and a bare-ASGI ceiling.

One command::

    .venv/bin/python benchmarks/run.py            # full run (make bench)
    .venv/bin/python benchmarks/run.py --quick    # smoke run, a minute or two

Method (see benchmarks/README.md): each server app runs alone under uvicorn (uvloop,
httptools, websockets) pinned to CPU 0; one Node load generator (benchmarks/loadgen.js) runs
pinned to CPU 1. The cross-process fan-out runs two processes of a server and one
redis-server between them, all three on CPU 0. Every scenario runs against the servers
interleaved (round-robin, N rounds, a fresh server process per measurement) and the medians
are reported as ratios from the same run, so the machine cancels out. Results go to
benchmarks/results/ (JSON, markdown, PNG) and, for a full run, into the "Results" section of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import hashlib
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
APPS = BENCH / "apps"
RESULTS = BENCH / "results"
README = BENCH / "README.md"
LOADGEN = BENCH / "loadgen.js"
HOST = "127.0.0.1"
SERVER_CPU = 0
GENERATOR_CPU = 1
NOISY_PCT = 10.0  # other processes' CPU during a window above this flags the run
BUSY_GENERATOR_PCT = 80.0  # a generator above this may be the bottleneck
MARK_START = "<!-- results:start -->"
MARK_END = "<!-- results:end -->"
# Quietens the one expected warning: uvicorn deprecates `--ws websockets` (legacy API).
UVICORN_WARNING = "ignore:The `websockets` implementation is deprecated"

Json = dict[str, Any]


# ---------------------------------------------------------------------------- what to run


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    app: str  # module:attribute inside benchmarks/apps
    # The environment variable that gives the app a Redis URL to cluster through (see
    # apps/*.py); None: no cross-process story, left out of the clustered scenarios.
    redis_env: str | None = None


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec("rooms", "rooms", "rooms_app:app", "ROOMS_BENCH_BROKER"),
    ServerSpec("psio", "python-socketio", "psio_app:app", "PSIO_BENCH_REDIS"),
    ServerSpec("bare", "bare ASGI", "bare_asgi:app"),
    # The same app with Prometheus metrics on: their cost is the "metrics ÷ rooms" column.
    ServerSpec("metrics", "rooms + metrics", "rooms_metrics_app:app", "ROOMS_BENCH_BROKER"),
)
SERVER_BY_KEY = {spec.key: spec for spec in SERVERS}


# Also the order of the report. fanout-latency: fan-out with one message in flight, for the
# unloaded delivery latency; echo-sync: echo through a plain `def` handler (every other
# handler is `async def`, as users write them).
KINDS = ("fanout", "fanout-latency", "fanout-redis", "echo", "echo-sync", "connect")


@dataclass(frozen=True)
class Scenario:
    kind: str  # one of KINDS
    size: int  # members, clients or connections

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.size}"

    @property
    def clustered(self) -> bool:
        """Two processes of the server joined through one redis-server: members alternate
        between them and the sender is on the first, so half the deliveries cross Redis."""
        return self.kind == "fanout-redis"

    @property
    def processes(self) -> int:
        return 2 if self.clustered else 1

    @property
    def loadgen(self) -> str:
        """The loadgen.js scenario: the clustered one is a fan-out given two ports."""
        return {"fanout-redis": "fanout", "fanout-latency": "fanout", "echo-sync": "echo"}.get(
            self.kind, self.kind
        )

    @property
    def local(self) -> Scenario | None:
        """The same load on one process with no broker: the clustered scenario's baseline."""
        return Scenario("fanout", self.size) if self.clustered else None

    def runs_on(self, spec: ServerSpec) -> bool:
        return not self.clustered or spec.redis_env is not None

    @property
    def title(self) -> str:
        if self.kind == "fanout":
            return f"fan-out, {self.size:,} members"
        if self.clustered:
            return f"fan-out over 2 processes + Redis, {self.size:,} members"
        if self.kind == "fanout-latency":
            return f"fan-out, 1 message in flight, {self.size:,} members"
        clients = f"{self.size:,} client{'s' if self.size != 1 else ''}"
        if self.kind == "echo":
            return f"echo + ack, {clients}"
        if self.kind == "echo-sync":
            return f"echo + ack, sync `def` handler, {clients}"
        return f"connect storm, {self.size:,} clients"


@dataclass(frozen=True)
class Metric:
    key: str  # key in a run's flattened metrics
    label: str
    higher_is_better: bool
    fmt: Callable[[float], str]


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _kib(value: float) -> str:
    return f"{value:,.1f}"


FANOUT_METRICS = (
    Metric("deliveries_per_s", "deliveries/s ↑", True, _count),
    Metric("p50_ms", "latency p50, ms ↓", False, _ms),
    Metric("p99_ms", "latency p99, ms ↓", False, _ms),
)
ECHO_METRICS = (
    Metric("acks_per_s", "acks/s ↑", True, _count),
    Metric("p50_ms", "latency p50, ms ↓", False, _ms),
    Metric("p99_ms", "latency p99, ms ↓", False, _ms),
)
METRICS: dict[str, tuple[Metric, ...]] = {
    "fanout": FANOUT_METRICS,
    "fanout-latency": FANOUT_METRICS,
    "fanout-redis": FANOUT_METRICS,
    "echo": ECHO_METRICS,
    "echo-sync": ECHO_METRICS,
    "connect": (
        Metric("connections_per_s", "connections/s ↑", True, _count),
        Metric("kib_per_conn", "RSS per idle connection, KiB ↓", False, _kib),
        Metric("p99_ms", "handshake p99, ms ↓", False, _ms),
    ),
}


def scenarios_for(quick: bool) -> list[Scenario]:
    if quick:
        return [
            Scenario("fanout", 100),
            Scenario("fanout", 1000),
            Scenario("fanout-latency", 100),
            Scenario("fanout-redis", 1000),  # fanout-1000 is its local baseline
            Scenario("echo", 1),
            Scenario("echo", 100),
            Scenario("echo-sync", 100),
            Scenario("connect", 1000),
        ]
    return [
        Scenario("fanout", 100),
        Scenario("fanout", 1000),
        Scenario("fanout", 5000),
        Scenario("fanout-latency", 100),
        Scenario("fanout-latency", 1000),
        Scenario("fanout-redis", 1000),  # fanout-1000 is its local baseline
        Scenario("echo", 1),
        Scenario("echo", 100),
        Scenario("echo", 1000),
        Scenario("echo-sync", 100),
        Scenario("connect", 5000),
    ]


@dataclass(frozen=True)
class Settings:
    rounds: int
    warmup: float
    duration: float
    concurrency: int
    payload: int
    window: int
    ws: str
    pin: bool
    quick: bool
    quiet_wait: float
    retries: int
    client: str

    @classmethod
    def servers_only(cls, ws: str, concurrency: int = 1) -> Settings:
        """For scripts that only start servers (soak.py, cutsoak.py): ``server()`` reads
        ``ws`` and ``pin``, and what they measure does not need pinned CPUs."""
        return cls(
            rounds=1, warmup=0.0, duration=0.0, concurrency=concurrency, payload=0, window=0,
            ws=ws, pin=False, quick=False, quiet_wait=0.0, retries=0, client="raw",
        )  # fmt: skip


# ---------------------------------------------------------------------------- child processes


class Children:
    """Every process we start, each in its own session so we can end its whole group."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(self, cmd: Sequence[str], cwd: Path = ROOT, **kwargs: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(
            list(cmd), start_new_session=True, cwd=cwd, **kwargs
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with suppress(ValueError):
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc, grace=2.0)


CHILDREN = Children()
atexit.register(CHILDREN.stop_all)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, then atexit


class BenchError(Exception):
    pass


def pinned(cpu: int, settings: Settings) -> list[str]:
    return ["taskset", "-c", str(cpu)] if settings.pin else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[Any]
    ps: psutil.Process
    log: Path


def wait_listening(proc: subprocess.Popen[Any], port: int, what: str, log: Path) -> None:
    """Until ``port`` accepts connections (bounded); raises if ``proc`` exits first."""
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not listen on {port}:\n{tail(log)}") from None
            time.sleep(0.05)


@dataclass
class RunningRedis:
    url: str
    proc: subprocess.Popen[Any]
    ps: psutil.Process


@contextmanager
def redis_server(settings: Settings, logdir: Path) -> Iterator[RunningRedis]:
    """A throwaway redis-server on a free port, on the servers' CPU: a clustered measurement
    gets the same one CPU as a local one, broker included. No persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not on PATH (make redis-server installs it)")
    port = free_port()
    log = logdir / f"redis-{port}.log"
    cmd = [
        *pinned(SERVER_CPU, settings),
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(logdir),
    ]
    with log.open("w") as out:
        proc = CHILDREN.spawn(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port, "redis-server", log)
        yield RunningRedis(f"redis://{HOST}:{port}/0", proc, psutil.Process(proc.pid))
    finally:
        CHILDREN.stop(proc)


def granian_command(spec: ServerSpec, settings: Settings, port: int, source: Path) -> list[str]:
    """``--ws granian``: one granian worker (its Rust runtime's threads pinned with it)."""
    return [
        *pinned(SERVER_CPU, settings),
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--working-dir",
        str(source / "apps"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--log-level",
        "warning",
        spec.app,
    ]


def uvicorn_command(spec: ServerSpec, settings: Settings, port: int, source: Path) -> list[str]:
    return [
        *pinned(SERVER_CPU, settings),
        sys.executable,
        "-W",
        UVICORN_WARNING,
        "-m",
        "uvicorn",
        spec.app,
        "--app-dir",
        str(source / "apps"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--ws",
        settings.ws,
        "--lifespan",
        "on",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


@contextmanager
def server(
    spec: ServerSpec,
    settings: Settings,
    logdir: Path,
    source: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """A server process on a free port; ``source`` holds the snapshot of rooms/ and apps/;
    ``env`` is added to the environment (the Redis URL of a clustered measurement)."""
    port = free_port()
    log = logdir / f"{spec.key}-{port}.log"
    if settings.ws == "granian":
        cmd = granian_command(spec, settings, port, source)
        # The snapshot of rooms first on sys.path, before the work tree's editable install.
        env = {"PYTHONPATH": str(source), **(env or {})}
    else:
        cmd = uvicorn_command(spec, settings, port, source)
    with log.open("w") as out:
        # cwd is the snapshot, which comes first on sys.path (python -m), so `import rooms`
        # finds the snapshot rather than the editable install of the work tree.
        proc = CHILDREN.spawn(
            cmd,
            cwd=source,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )
    try:
        # uvicorn listens once lifespan startup is done: for rooms with a broker, that is
        # after the cluster node subscribed, so no broadcast of the run can miss it.
        wait_listening(proc, port, spec.label, log)
        ps = psutil.Process(proc.pid)
        if settings.ws == "granian":
            # granian's main process supervises; the app runs in its one worker, whose CPU
            # and RSS are the server's.
            workers = ps.children()
            if len(workers) != 1:
                raise BenchError(f"expected one granian worker, got {len(workers)}")
            ps = workers[0]
        yield RunningServer(spec, port, proc, ps, log)
    finally:
        CHILDREN.stop(proc)


def snapshot_sources(dest: Path) -> str:
    """Copy rooms/ and benchmarks/apps/ into ``dest``, so that every server of the run runs
    the same code even if the work tree changes meanwhile; returns a hash of that code."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "rooms", dest / "rooms", ignore=skip)
    shutil.copytree(APPS, dest / "apps", ignore=skip)
    digest = hashlib.sha1()
    for path in sorted(dest.rglob("*.py")):
        digest.update(path.relative_to(dest).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def log_issues(log: Path) -> list[str]:
    """Warnings, errors and tracebacks the server logged (uvicorn runs at --log-level warning)."""
    issues = []
    for line in tail(log, 400).splitlines():
        if any(word in line for word in ("WARNING", "ERROR", "Traceback", "Error", "Warning")):
            issues.append(line.strip()[:300])
    return issues[:20]


# ---------------------------------------------------------------------------- one measurement


def setup_allowance(scenario: Scenario) -> float:
    """Seconds the generator may spend connecting before the load starts."""
    return 30 + scenario.size / 50


def loadgen_cmd(
    scenario: Scenario, ports: Sequence[int], settings: Settings, timeout: float
) -> list[str]:
    cmd = [
        *pinned(GENERATOR_CPU, settings),
        "node",
        str(LOADGEN),
        "--scenario",
        scenario.loadgen,
        # Several ports: members alternate between them, the sender is on the first.
        *(["--port", str(ports[0])] if len(ports) == 1 else ["--ports", ",".join(map(str, ports))]),
        "--warmup",
        str(settings.warmup),
        "--duration",
        str(settings.duration),
        "--concurrency",
        str(settings.concurrency),
        "--payload",
        str(settings.payload),
        "--timeout",
        str(round(timeout)),
        "--client",
        settings.client,
    ]
    if scenario.loadgen == "fanout":
        window = 1 if scenario.kind == "fanout-latency" else settings.window
        cmd += ["--members", str(scenario.size), "--window", str(window)]
    else:
        cmd += ["--clients", str(scenario.size)]
        if scenario.kind == "echo-sync":
            cmd += ["--event", "echo_sync"]
    return cmd


def _pump_lines(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def cpu_seconds(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return float(times.user + times.system)


def machine_busy() -> tuple[float, float]:
    """CPU seconds, summed over CPUs since boot, that processes used (user, nice, system)
    and that went to interrupts or to other guests (irq, softirq, steal). Process times
    exclude the second kind, so "other work" is computed from the first only."""
    t = psutil.cpu_times()
    kernel = getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)
    return float(t.user + t.nice + t.system), float(kernel)


def wait_quiet(limit: float, threshold: float = 10.0) -> float:
    """Wait (at most ``limit`` seconds) until the machine has been nearly idle for a second;
    returns the last busy percentage seen (of all CPUs together)."""
    deadline = time.monotonic() + limit
    told = False
    quiet = 0
    while True:
        busy = float(psutil.cpu_percent(interval=0.5))
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= 2 or time.monotonic() > deadline:
            return busy
        if busy >= threshold and not told:
            print(f"(machine {busy:.0f}% busy, waiting up to {limit:.0f}s)", end=" ", flush=True)
            told = True


def measure(
    scenario: Scenario,
    srvs: Sequence[RunningServer],
    settings: Settings,
    logdir: Path,
    helpers: Sequence[psutil.Process] = (),
) -> tuple[Json, Json]:
    """Run loadgen.js once against ``srvs`` (the processes of one server): (the generator's
    result, what the runner saw). ``helpers`` (redis-server) count as the server side."""
    srv = srvs[0]
    server_side = [s.ps for s in srvs] + list(helpers)
    timeout = setup_allowance(scenario) + settings.warmup + settings.duration + 5 + 30
    errlog = logdir / f"loadgen-{scenario.key}-{srv.spec.key}-{srv.port}.log"
    observed: Json = {}
    with errlog.open("w") as err:
        proc = CHILDREN.spawn(
            loadgen_cmd(scenario, [s.port for s in srvs], settings, timeout),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None and proc.stdin is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump_lines, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout + 15
    gen = psutil.Process(proc.pid)
    cpu0 = gen0 = busy0 = irq0 = t0 = helpers0 = 0.0
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(
                    f"load generator gave no result within {timeout + 15:.0f}s"
                ) from None
            if line is None:
                raise BenchError(f"load generator exited without a result:\n{tail(errlog)}")
            try:
                event: Json = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("event")
            if kind == "measure_start":
                cpu0, gen0 = sum(map(cpu_seconds, server_side)), cpu_seconds(gen)
                helpers0 = sum(map(cpu_seconds, helpers))
                busy0, irq0 = machine_busy()
                t0 = time.monotonic()
            elif kind == "measure_end":
                elapsed = time.monotonic() - t0
                server_s = sum(map(cpu_seconds, server_side)) - cpu0
                gen_s = cpu_seconds(gen) - gen0
                observed["server_cpu_pct"] = server_s / elapsed * 100
                if helpers:
                    helpers_s = sum(map(cpu_seconds, helpers)) - helpers0
                    observed["redis_cpu_pct"] = helpers_s / elapsed * 100
                observed["generator_cpu_pct"] = gen_s / elapsed * 100
                # CPU time spent by anything else on the machine: other work skews a run.
                busy1, irq1 = machine_busy()
                other = busy1 - busy0 - server_s - gen_s
                observed["other_cpu_pct"] = max(0.0, other / elapsed * 100)
                observed["irq_steal_cpu_pct"] = (irq1 - irq0) / elapsed * 100
            elif kind == "baseline":
                observed["rss_before"] = srv.ps.memory_info().rss
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif kind == "idle":
                time.sleep(1.0)  # let the server finish whatever the last handshakes started
                observed["rss_after"] = srv.ps.memory_info().rss
                observed["idle_connected"] = event.get("connected", 0)
                proc.stdin.write("close\n")
                proc.stdin.flush()
            elif kind == "result":
                return event, observed
            elif kind == "error":
                raise BenchError(f"load generator: {event.get('message')}")
    finally:
        with suppress(OSError):
            proc.stdin.close()
        CHILDREN.stop(proc, grace=2.0)


def flatten(scenario: Scenario, result: Json, observed: Json) -> Json:
    """The numbers the tables use, from one measurement."""
    latency: Json = result.get("latency") or {}
    generator: Json = result.get("generator") or {}
    row: Json = {
        "p50_ms": latency.get("p50_ms"),
        "p99_ms": latency.get("p99_ms"),
        "generator_cpu_pct": generator.get("cpu_pct"),
        "generator_elu": generator.get("event_loop_utilization"),
        "server_cpu_pct": observed.get("server_cpu_pct"),
        "other_cpu_pct": observed.get("other_cpu_pct"),
        "irq_steal_cpu_pct": observed.get("irq_steal_cpu_pct"),
        "unexpected_closes": result.get("unexpected_closes", 0),
    }
    if "redis_cpu_pct" in observed:
        row["redis_cpu_pct"] = observed["redis_cpu_pct"]
    if scenario.loadgen == "fanout":
        row["deliveries_per_s"] = result["deliveries_per_s"]
        row["lost"] = result.get("lost", 0)
    elif scenario.loadgen == "echo":
        row["acks_per_s"] = result["acks_per_s"]
    else:
        row["connections_per_s"] = result["connections_per_s"]
        row["errors"] = result.get("errors", 0)
        connected = observed.get("idle_connected") or result.get("connected") or 0
        if connected and "rss_after" in observed and "rss_before" in observed:
            grown = observed["rss_after"] - observed["rss_before"]
            row["kib_per_conn"] = grown / connected / 1024
    return row


def describe(scenario: Scenario, row: Json) -> str:
    metric = METRICS[scenario.kind][0]
    parts = [f"{metric.fmt(row[metric.key])} {metric.label.split(' ')[0]}"]
    if row.get("p99_ms") is not None:
        parts.append(f"p99 {_ms(row['p99_ms'])} ms")
    if row.get("kib_per_conn") is not None:
        parts.append(f"{row['kib_per_conn']:.1f} KiB/conn")
    if row.get("generator_cpu_pct") is not None:
        parts.append(f"generator {row['generator_cpu_pct']:.0f}% cpu")
    if row.get("server_cpu_pct") is not None:
        parts.append(f"server {row['server_cpu_pct']:.0f}% cpu")
    if (row.get("other_cpu_pct") or 0) > NOISY_PCT:
        parts.append(f"OTHER WORK {row['other_cpu_pct']:.0f}% cpu")
    for key in ("lost", "errors", "unexpected_closes"):
        if row.get(key):
            parts.append(f"{key} {row[key]}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------- the whole run


def run_once(
    scenario: Scenario, spec: ServerSpec, settings: Settings, logdir: Path, source: Path
) -> Json:
    """One measurement on a fresh server process: its result, or its error."""
    if settings.quiet_wait > 0:
        wait_quiet(settings.quiet_wait)
    run: Json = {}
    started = time.monotonic()
    try:
        # Unwinds in reverse: the servers stop before the redis-server they use.
        with ExitStack() as stack:
            env: dict[str, str] = {}
            helpers: list[psutil.Process] = []
            if scenario.clustered:
                assert spec.redis_env is not None
                redis = stack.enter_context(redis_server(settings, logdir))
                env[spec.redis_env] = redis.url
                helpers.append(redis.ps)
            srvs = [
                stack.enter_context(server(spec, settings, logdir, source, env))
                for _ in range(scenario.processes)
            ]
            try:
                result, observed = measure(scenario, srvs, settings, logdir, helpers)
            except BenchError as exc:
                logs = "".join(f"\n--- server log:\n{tail(s.log, 30)}" for s in srvs)
                raise BenchError(f"{exc}{logs}") from None
            issues = [issue for s in srvs for issue in log_issues(s.log)][:20]
        run["result"] = result
        run["observed"] = observed
        run["metrics"] = flatten(scenario, result, observed)
        run["server_log"] = issues
    except BenchError as exc:
        run["error"] = str(exc)
    run["wall_s"] = time.monotonic() - started
    return run


def run_all(
    scenarios: Sequence[Scenario], servers: Sequence[ServerSpec], settings: Settings
) -> tuple[list[Json], str]:
    """Every measurement, and the hash of the rooms + apps source they ran."""
    runs: list[Json] = []
    total = settings.rounds * sum(s.runs_on(spec) for s in scenarios for spec in servers)
    done = 0
    with tempfile.TemporaryDirectory(prefix="rooms-bench-") as tmp:
        logdir = Path(tmp)
        source = logdir / "src"
        source_hash = snapshot_sources(source)
        for rnd in range(settings.rounds):
            for scenario in scenarios:
                # Rotate who goes first each round, so no server always runs on a warm cache.
                mine = [spec for spec in servers if scenario.runs_on(spec)]
                shift = rnd % len(mine)
                for spec in (*mine[shift:], *mine[:shift]):
                    done += 1
                    prefix = f"[{done}/{total}] round {rnd + 1} {scenario.key:<17} {spec.label:<16}"
                    print(prefix, end=" ", flush=True)
                    noisy: list[float] = []
                    while True:
                        run = run_once(scenario, spec, settings, logdir, source)
                        other = (run.get("metrics") or {}).get("other_cpu_pct") or 0.0
                        if other <= NOISY_PCT or len(noisy) >= settings.retries:
                            break
                        # Other processes took CPU while we measured: measure again (bounded).
                        noisy.append(other)
                        print(f"(noisy: {other:.0f}% other cpu, again)", end=" ", flush=True)
                    run = {"round": rnd + 1, "scenario": scenario.key, "server": spec.key, **run}
                    if noisy:
                        run["noisy_attempts_other_cpu_pct"] = noisy
                    if "error" in run:
                        print(f"FAILED: {run['error'].splitlines()[0]}", flush=True)
                    else:
                        print(describe(scenario, run["metrics"]), flush=True)
                        for issue in run["server_log"][:3]:
                            print(f"    server log: {issue}", flush=True)
                    runs.append(run)
    return runs, source_hash


def summarize(
    runs: Sequence[Json], scenarios: Sequence[Scenario], servers: Sequence[ServerSpec]
) -> Json:
    """Medians over rounds per scenario and server, and rooms' ratios against the others."""
    summary: Json = {}
    for scenario in scenarios:
        per_server: Json = {}
        for spec in servers:
            mine = [
                r["metrics"]
                for r in runs
                if r["scenario"] == scenario.key and r["server"] == spec.key and "metrics" in r
            ]
            failed = sum(
                1
                for r in runs
                if r["scenario"] == scenario.key and r["server"] == spec.key and "error" in r
            )
            medians: Json = {"runs": len(mine), "failed": failed}
            keys = {k for m in mine for k, v in m.items() if isinstance(v, int | float)}
            for key in sorted(keys):
                values = [m[key] for m in mine if isinstance(m.get(key), int | float)]
                medians[key] = statistics.median(values) if values else None
            per_server[spec.key] = medians
        ratios: Json = {}
        rooms = per_server.get("rooms", {})
        for other in ("psio", "bare"):
            theirs = per_server.get(other)
            if theirs is None:
                continue
            ratios[other] = {
                m.key: rooms[m.key] / theirs[m.key]
                if rooms.get(m.key) and theirs.get(m.key)
                else None
                for m in METRICS[scenario.kind]
            }
        metered = per_server.get("metrics")
        if metered is not None:  # what metrics cost: rooms with them ÷ rooms without
            ratios["metrics"] = {
                m.key: metered[m.key] / rooms[m.key]
                if metered.get(m.key) and rooms.get(m.key)
                else None
                for m in METRICS[scenario.kind]
            }
        summary[scenario.key] = {"title": scenario.title, "servers": per_server, "ratios": ratios}
    # What crossing processes costs: each server clustered ÷ the same server local, same run.
    for scenario in scenarios:
        local = scenario.local
        if local is None or local.key not in summary:
            continue
        mine, base = summary[scenario.key]["servers"], summary[local.key]["servers"]
        summary[scenario.key]["vs_local"] = {
            key: {
                m.key: mine[key][m.key] / base[key][m.key]
                if mine[key].get(m.key) and base[key].get(m.key)
                else None
                for m in METRICS[scenario.kind]
            }
            for key in mine
            if mine[key]["runs"] and key in base
        }
    return summary


def _versions() -> Json:
    from importlib.metadata import PackageNotFoundError, version

    out: Json = {"python": platform.python_version()}
    for dist in ("rooms", "python-socketio", "python-engineio", "uvicorn", "uvloop", "httptools"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    out["websockets"] = _safe_version("websockets")
    out["granian"] = _safe_version("granian")
    out["redis"] = _safe_version("redis")  # the Python client both apps use
    binary = shutil.which("redis-server")
    if binary:
        words = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        out["redis-server"] = next(
            (w[2:] for w in words.split() if w.startswith("v=")), words.strip() or None
        )
    else:
        out["redis-server"] = None
    node = shutil.which("node")
    out["node"] = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        if node
        else None
    )
    try:
        out["ws"] = json.loads((ROOT / "node_modules/ws/package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        out["ws"] = None
    return out


def _safe_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _machine() -> Json:
    model = platform.processor() or platform.machine()
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "rooms"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "git_commit": commit + ("+dirty" if dirty else ""),
    }


# ---------------------------------------------------------------------------- reporting


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(report: Json, scenarios: Sequence[Scenario], servers: Sequence[ServerSpec]) -> str:
    settings: Json = report["settings"]
    machine: Json = report["machine"]
    versions: Json = report["versions"]
    summary: Json = report["summary"]
    keys = [s.key for s in servers]
    lines = [
        f"Run {report['date']} on {machine['cpu']} ({machine['cpus']} CPUs), rooms "
        f"{machine['git_commit']}; {settings['rounds']} interleaved round(s), "
        f"{settings['duration']:g} s measured after {settings['warmup']:g} s warm-up, "
        f"median per cell. Server on CPU {SERVER_CPU}, Node generator on CPU {GENERATOR_CPU}"
        + (
            f" (fan-out over 2 processes: both server processes and redis-server "
            f"{versions.get('redis-server')} on CPU {SERVER_CPU}); "
            if any(s.clustered for s in scenarios)
            else "; "
        )
        + (
            f"granian {versions.get('granian')} (one worker, uvloop), "
            if settings["ws"] == "granian"
            else f"uvicorn {versions['uvicorn']} (uvloop, httptools, --ws {settings['ws']}), "
        )
        + f"python-socketio {versions['python-socketio']}, Node {versions['node']} with the "
        + (
            f"ws {versions['ws']} client."
            if settings.get("client") == "ws"
            else "raw node:net client."
        ),
        "",
        "Ratios are rooms ÷ other: above 1 is better for rates (↑), below 1 is better for "
        "latency and memory (↓).",
        "",
    ]
    header = ["Scenario", "Metric", *(SERVER_BY_KEY[k].label for k in keys)]
    others = [k for k in ("psio", "bare") if k in keys and "rooms" in keys]
    header += [f"rooms ÷ {SERVER_BY_KEY[k].label}" for k in others]
    if "metrics" in keys and "rooms" in keys:
        others.append("metrics")
        header.append("rooms + metrics ÷ rooms")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---"] + ["--:"] * (len(header) - 2)) + "|")
    for scenario in scenarios:
        entry: Json = summary[scenario.key]
        for i, metric in enumerate(METRICS[scenario.kind]):
            cells = [entry["title"] if i == 0 else "", metric.label]
            for key in keys:
                med: Json = entry["servers"][key]
                value, failed = med.get(metric.key), med.get("failed")
                if value is None:
                    cells.append("failed" if failed else "-")
                else:
                    # A cell that lost rounds to failures says how many it has left.
                    ok = med.get("runs", 0)
                    cells.append(metric.fmt(value) + (f" ({ok}/{ok + failed})" if failed else ""))
            for key in others:
                cells.append(_ratio(entry["ratios"][key].get(metric.key)))
            lines.append("| " + " | ".join(cells) + " |")
    crossing = [s for s in scenarios if "vs_local" in summary[s.key]]
    if crossing:
        lines += [
            "",
            "What crossing processes costs: each server's fan-out over 2 processes + Redis "
            "÷ its own fan-out of the same size in one process, same run (deliveries/s: the "
            "share of local throughput kept).",
            "",
            "| Scenario | Metric | " + " | ".join(SERVER_BY_KEY[k].label for k in keys) + " |",
            "|---|---|" + "|".join(["--:"] * len(keys)) + "|",
        ]
        for scenario in crossing:
            vs_local: Json = summary[scenario.key]["vs_local"]
            for i, metric in enumerate(METRICS[scenario.kind]):
                cells = [f"{scenario.title} ÷ local" if i == 0 else "", metric.label]
                cells += [_ratio(vs_local.get(k, {}).get(metric.key)) for k in keys]
                lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU during the measured window (median, % of one core): load generator / server"
        + (
            " (over 2 processes: both server processes and redis-server together). "
            if any(s.clustered for s in scenarios)
            else ". "
        )
        + "The generator staying well under 100% while the server is near 100% shows the "
        "server is the bottleneck.",
        "",
        "| Scenario | " + " | ".join(SERVER_BY_KEY[k].label for k in keys) + " |",
        "|---|" + "|".join(["--:"] * len(keys)) + "|",
    ]
    for scenario in scenarios:
        entry = summary[scenario.key]
        cells = [entry["title"]]
        for key in keys:
            med = entry["servers"][key]
            gen, srv = med.get("generator_cpu_pct"), med.get("server_cpu_pct")
            cells.append(f"{gen:.0f}% / {srv:.0f}%" if gen is not None and srv is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    problems = []
    for run in report["runs"]:
        label = f"{run['scenario']} {SERVER_BY_KEY[run['server']].label} (round {run['round']})"
        if "error" in run:
            problems.append(f"- {label}: failed: {run['error'].splitlines()[0]}")
            continue
        m: Json = run["metrics"]
        for key in ("lost", "errors", "unexpected_closes"):
            if m.get(key):
                problems.append(f"- {label}: {key} = {m[key]}")
        if (m.get("other_cpu_pct") or 0) > NOISY_PCT:
            problems.append(
                f"- {label}: other processes used {m['other_cpu_pct']:.0f}% CPU while measuring"
            )
        if (m.get("generator_cpu_pct") or 0) > BUSY_GENERATOR_PCT:
            problems.append(
                f"- {label}: the load generator used {m['generator_cpu_pct']:.0f}% CPU "
                "(it may be the bottleneck)"
            )
        if run.get("server_log"):
            problems.append(f"- {label}: server logged: {run['server_log'][0]}")
    if problems:
        lines += ["", "Problems seen during the run:", "", *problems[:30]]
    return "\n".join(lines) + "\n"


def plot(
    report: Json, scenarios: Sequence[Scenario], servers: Sequence[ServerSpec], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    summary: Json = report["summary"]
    panels: list[tuple[tuple[str, ...], str, str]] = [
        (("fanout", "fanout-redis"), "deliveries_per_s", "Room fan-out: deliveries/s (members)"),
        (("echo",), "acks_per_s", "Echo with ack: acks/s (clients)"),
        (("connect",), "connections_per_s", "Connect storm: connections/s (clients)"),
        (("connect",), "kib_per_conn", "RSS per idle connection, KiB, lower is better (clients)"),
    ]
    colors = {"rooms": "#d95f02", "psio": "#7570b3", "bare": "#999999", "metrics": "#e6ab02"}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (kinds, key, title) in zip(axes.flat, panels, strict=True):
        chosen = [s for s in scenarios if s.kind in kinds]
        width = 0.8 / max(1, len(servers))
        for j, spec in enumerate(servers):
            xs = [i + (j - (len(servers) - 1) / 2) * width for i in range(len(chosen))]
            ys = [summary[s.key]["servers"][spec.key].get(key) or 0.0 for s in chosen]
            bars = ax.bar(xs, ys, width, label=spec.label, color=colors.get(spec.key))
            if spec.key == "rooms" and "psio" in SERVER_BY_KEY:
                for bar, s in zip(bars, chosen, strict=True):
                    ratio = summary[s.key]["ratios"].get("psio", {}).get(key)
                    if ratio:
                        ax.annotate(
                            f"{ratio:.2f}x psio",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center",
                            va="bottom",
                            fontsize=8,
                        )
        ticks = [f"{s.size:,}" + ("\n2 processes\n+ Redis" if s.clustered else "") for s in chosen]
        ax.set_xticks(range(len(chosen)), ticks)
        ax.set_title(title)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend()
    fig.suptitle(
        f"rooms vs python-socketio vs bare ASGI ({report['date']}, "
        f"{report['settings']['rounds']} round(s), medians)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_between(start_mark: str, end_mark: str, body: str) -> bool:
    """Put ``body`` between two marker comments of the benchmarks README; False if the
    README or its markers are missing."""
    try:
        text = README.read_text()
    except OSError:
        return False
    start, end = text.find(start_mark), text.find(end_mark)
    if start < 0 or end < start:
        return False
    README.write_text(text[:start] + f"{start_mark}\n\n{body}" + text[end:])
    return True


def update_readme(table: str, image: str) -> bool:
    return replace_between(MARK_START, MARK_END, f"{table}\n![benchmark plot]({image})\n\n")


# ---------------------------------------------------------------------------- entry point


def raise_nofile(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short smoke run (1 round, small)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds measured (default 5, quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (default 1, quick 0.5)")
    parser.add_argument("--concurrency", type=int, default=200, help="connects in flight")
    parser.add_argument("--payload", type=int, default=64, help="padding bytes per event")
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="fan-out messages in flight (0: about 4,000 deliveries, at least 2)",
    )
    parser.add_argument(
        "--ws",
        default="websockets-sansio",
        help="uvicorn --ws implementation (default websockets-sansio, uvicorn's default); "
        "granian: every server under granian instead of uvicorn",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "ws"),
        default="raw",
        help="the generator's websocket client: raw (node:net, default) or the ws package",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_BY_KEY),
        help="comma list of " + ",".join(SERVER_BY_KEY) + " (default: all)",
    )
    parser.add_argument(
        "--scenarios", default="", help="comma list like fanout-1000,echo-100 (default: all)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each measurement wait up to this many seconds for an idle machine (0: off)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="measure again, at most this many times, when other processes used CPU meanwhile",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="only re-render the table and plot of an earlier run's JSON (prints the table)",
    )
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    return parser.parse_args(argv)


def render(path: Path) -> int:
    report: Json = json.loads(path.read_text())
    scenarios = [
        Scenario(kind, int(size)) for kind, size in (k.rsplit("-", 1) for k in report["scenarios"])
    ]
    servers = [SERVER_BY_KEY[k] for k in report["servers"]]
    table = markdown(report, scenarios, servers)
    path.with_suffix(".md").write_text(table)
    plot(report, scenarios, servers, path.with_suffix(".png"))
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render(Path(args.render))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    settings = Settings(
        rounds=args.rounds or (1 if args.quick else 3),
        warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0),
        duration=args.duration or (1.0 if args.quick else 5.0),
        concurrency=args.concurrency,
        payload=args.payload,
        window=args.window,
        ws=args.ws,
        pin=not args.no_pin,
        quick=args.quick,
        quiet_wait=args.quiet_wait,
        retries=args.retries,
        client=args.client,
    )
    servers = [SERVER_BY_KEY[k.strip()] for k in args.servers.split(",") if k.strip()]
    scenarios = scenarios_for(args.quick)
    if args.scenarios:
        wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
        everything = {s.key: s for s in scenarios_for(False) + scenarios_for(True)}
        unknown = wanted - set(everything)
        if unknown:
            print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scenarios = sorted(
            (everything[k] for k in wanted),
            key=lambda s: (KINDS.index(s.kind), s.size),
        )
    if settings.pin and ((os.cpu_count() or 1) < 2 or shutil.which("taskset") is None):
        print("pinning needs 2 CPUs and taskset; running unpinned", file=sys.stderr)
        settings = Settings(**{**settings.__dict__, "pin": False})
    if shutil.which("node") is None:
        print("node is not on PATH", file=sys.stderr)
        return 2
    if any(s.clustered for s in scenarios) and shutil.which("redis-server") is None:
        print(
            "redis-server is not on PATH (make redis-server), needed by fanout-redis-*",
            file=sys.stderr,
        )
        return 2
    nofile = raise_nofile()
    biggest = max(s.size for s in scenarios)
    if nofile < biggest + 512:
        print(f"RLIMIT_NOFILE is {nofile}, too low for {biggest:,} connections", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"note: load average is {load:.2f}; other work skews the numbers", file=sys.stderr)

    print(
        f"benchmarking {', '.join(s.label for s in servers)} on "
        f"{', '.join(s.key for s in scenarios)}: {settings.rounds} round(s), "
        f"{settings.duration:g}s after {settings.warmup:g}s warm-up",
        flush=True,
    )
    started = dt.datetime.now(dt.UTC)
    machine = _machine()  # the git state as the sources are snapshot
    runs, source_hash = run_all(scenarios, servers, settings)
    report: Json = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine, "source_snapshot": source_hash},
        "versions": _versions(),
        "settings": {**settings.__dict__, "rlimit_nofile": nofile},
        "scenarios": [s.key for s in scenarios],
        "servers": [s.key for s in servers],
        "summary": summarize(runs, scenarios, servers),
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Only a full run (every scenario, every server) is "latest"; others do not clobber it.
    complete = not args.scenarios and len(servers) == len(SERVERS)
    stem = "quick" if settings.quick else ("latest" if complete else "partial")
    table = markdown(report, scenarios, servers)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(table)
    image = RESULTS / f"{stem}.png"
    plot(report, scenarios, servers, image)
    print()
    print(table)
    print(f"wrote {RESULTS.relative_to(ROOT)}/{stem}.{{json,md,png}}")
    if stem == "latest" and not args.no_readme:
        if update_readme(table, f"results/{image.name}"):
            print(f"updated the Results section of {README.relative_to(ROOT)}")
        else:
            print(f"{README.relative_to(ROOT)} has no results markers; left alone")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; stopping child processes", file=sys.stderr)
        CHILDREN.stop_all()
        sys.exit(130)
    finally:
        CHILDREN.stop_all()
