#!/usr/bin/env python3
"""Soak: memory follows connections, not history (issue 10), rooms beside python-socketio.

One command::

    .venv/bin/python benchmarks/soak.py            # every scenario on both servers

Each scenario runs on a fresh server process under uvicorn (uvloop, httptools, websockets;
started by benchmarks/run.py's helpers, from a snapshot of rooms/), and reads the server's
RSS from /proc through psutil, sampled every 100 ms:

- churn: connect / join a room of its own / disconnect, N times (default 20,000; websocket
  and long-polling mixed; websocket ones leave with a close frame, a namespace DISCONNECT
  or a TCP reset), 32 at a time. RSS before, at peak, when the cycles end and once the
  server holds only the control connection again.
- slow consumer: a client with a 4 KiB receive buffer joins a room and never reads; another
  member floods the room with 50 KB messages (at most 100 MB) until the server drops the
  slow one. RSS before, at peak, and when its session is gone.
- attachment flood: 10 hostile clients stream 110 KB binary attachments (100 MB in all)
  after announcing 10 or 10^9 of them, reconnecting whenever the server closes them. RSS
  before, at peak, and once they are gone.

rooms runs tests/apps/edges.py (the app the hard-edge tests attack; apps/rooms_soak.py adds
a /heap route) with the benchmark apps' Engine.IO settings (ping 25 s / 20 s, 1 MB payloads,
the default 16 MiB outbox bound); python-socketio runs apps/psio_soak.py, the same events on
AsyncServer. Beside RSS, both report malloc's bytes in use (apps/soak_heap.py), which tells
memory still held from memory the allocator keeps. Results go to
benchmarks/results/<--out>.{json,md} (default soak) and, for a full default run, into the
"Soak" section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import run  # benchmarks/run.py: child processes, servers, snapshots, machine and versions
from run import CHILDREN, README, RESULTS, ROOT, Json, RunningServer, ServerSpec, Settings

sys.path.insert(0, str(ROOT))  # for tests.rawclient, the hostile client the tests use too
from tests.rawclient import Closed, SocketIO, WebSocket, placeholders, polling_cycle

MARK_START = "<!-- soak:start -->"
MARK_END = "<!-- soak:end -->"
PING_INTERVAL, PING_TIMEOUT = 25.0, 20.0  # as in the benchmark apps, for both servers
ATTACHMENT_TIMEOUT = 10.0  # rooms.Limits default
FLOOD_SIZE = 50_000
FLOOD_BATCH = 20
FRAME = 110_000  # an attachment frame: ten of them pass rooms' 1 MB per packet
SAMPLE_EVERY = 0.1


@dataclass(frozen=True)
class Target:
    spec: ServerSpec
    env: dict[str, str]
    heap_path: str  # answers {"rss_kib", "malloc_in_use_kib"}; ?gc=1 collects first


TARGETS = {
    "rooms": Target(
        ServerSpec("rooms", "rooms", "rooms_soak:app"),
        {"ROOMS_PING_INTERVAL": str(PING_INTERVAL), "ROOMS_PING_TIMEOUT": str(PING_TIMEOUT)},
        "/heap",
    ),
    "psio": Target(
        ServerSpec("psio", "python-socketio", "psio_soak:app"),
        {
            "PSIO_SOAK_PING_INTERVAL": str(PING_INTERVAL),
            "PSIO_SOAK_PING_TIMEOUT": str(PING_TIMEOUT),
        },
        "/stats",
    ),
}
SCENARIOS = ("churn", "slow", "attachments")


@dataclass
class Options:
    cycles: int = 20_000
    concurrency: int = 32
    flood_mb: int = 100
    attachment_mb: int = 100
    hostile: int = 10
    time_limit: float = 600.0  # per scenario phase that depends on the server's speed


# ---------------------------------------------------------------------------- measuring


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


@dataclass
class Sampler:
    """The server's RSS, sampled while a scenario runs; the peak is what matters."""

    server: RunningServer
    peak_kib: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def rss_kib(self) -> int:
        kib = int(self.server.ps.memory_info().rss // 1024)
        self.peak_kib = max(self.peak_kib, kib)
        return kib

    async def run(self) -> None:
        started = anyio.current_time()
        while True:
            self.samples.append((round(anyio.current_time() - started, 2), self.rss_kib()))
            await anyio.sleep(SAMPLE_EVERY)


class Stats:
    """The server's own view (/stats): sessions and main-namespace sockets it still holds."""

    def __init__(self, server: RunningServer, http: httpx.AsyncClient, heap_path: str) -> None:
        self.url = f"http://{run.HOST}:{server.port}/stats"
        self.heap_url = f"http://{run.HOST}:{server.port}{heap_path}"
        self.http = http

    async def get(self) -> Json:
        stats: Json = (await self.http.get(self.url)).json()
        return stats

    async def mark(self, out: Json, name: str, sampler: Sampler, collect: bool = False) -> None:
        """Record RSS (``<name>_kib``) and malloc's bytes in use (``<name>_malloc_kib``) now.
        ``collect``: the server runs gc.collect() first; objects in reference cycles are
        freed only by the cyclic collector, which an idle server may not run for long."""
        heap: Json = (await self.http.get(self.heap_url + ("?gc=1" if collect else ""))).json()
        out[f"{name}_kib"] = sampler.rss_kib()
        out[f"{name}_malloc_kib"] = heap.get("malloc_in_use_kib")

    async def until(self, condition: Callable[[Json], bool], timeout: float) -> float | None:
        """Seconds until ``condition`` held, or None if it did not within ``timeout``."""
        started = anyio.current_time()
        while True:
            if condition(await self.get()):
                return anyio.current_time() - started
            if anyio.current_time() - started > timeout:
                return None
            await anyio.sleep(0.1)


def tcp_queue(server_port: int, peer_port: int) -> Json | None:
    """The server side of one loopback TCP connection from /proc/net/tcp: its state and the
    bytes the kernel still holds to send (None once the connection is gone)."""
    states = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "06": "TIME_WAIT", "08": "CLOSE_WAIT"}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            peer_port
        ):
            return {
                "state": states.get(state, state),
                "send_queue_kib": round(int(queues.split(":")[0], 16) / 1024),
            }
    return None


# ---------------------------------------------------------------------------- churn


async def churn(server: RunningServer, target: Target, opts: Options) -> Json:
    sampler = Sampler(server)
    out: Json = {"cycles": opts.cycles, "concurrency": opts.concurrency}
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        stats = Stats(server, http, target.heap_path)
        keeper = await SocketIO.open(server.port)  # a well-behaved client throughout
        try:
            tg.start_soon(keeper.serve)
            await stats.until(lambda s: s["sessions"] == 1, 10)
            await stats.mark(out, "baseline", sampler)
            tg.start_soon(sampler.run)
            base = f"http://{run.HOST}:{server.port}"
            done = 0

            async def cycle(n: int) -> None:
                room = f"room-{n}"
                if n % 4 == 3:
                    await polling_cycle(http, base, room)
                    return
                sio = await SocketIO.open(server.port)
                try:
                    await sio.call_inline("join", room)
                    if n % 3 == 1:
                        await sio.ws.send("41")
                finally:
                    if n % 3 == 2:
                        await sio.ws.abort()
                    else:
                        await sio.ws.close()

            async def worker(first: int) -> None:
                nonlocal done
                for n in range(first, opts.cycles, opts.concurrency):
                    try:
                        with anyio.fail_after(30):
                            await cycle(n)
                    except Exception as exc:  # counted and shown: a soak reports, not stops
                        errors.append(f"cycle {n}: {exc!r}"[:200])
                    done += 1

            started = time.monotonic()
            with anyio.move_on_after(opts.time_limit):
                async with anyio.create_task_group() as workers:
                    for first in range(opts.concurrency):
                        workers.start_soon(worker, first)
            elapsed = time.monotonic() - started
            out["done"] = done
            out["cycles_per_s"] = round(done / elapsed, 1)
            await stats.mark(out, "end", sampler)
            back = await stats.until(lambda s: s["sessions"] == 1 and s["sockets"] == 1, 60)
            out["structure_back_s"] = None if back is None else round(back, 2)
            await stats.mark(out, "after", sampler)
            out["after_stats"] = await stats.get()
            out["peak_kib"] = sampler.peak_kib
            await stats.mark(out, "after_gc", sampler, collect=True)
        finally:
            tg.cancel_scope.cancel()
            await keeper.ws.abort()
    out["errors"] = len(errors)
    out["first_errors"] = errors[:5]
    out["samples"] = sampler.samples[:: max(1, len(sampler.samples) // 200)]
    return out


# ---------------------------------------------------------------------------- slow consumer


async def slow_consumer(server: RunningServer, target: Target, opts: Options) -> Json:
    sampler = Sampler(server)
    budget = opts.flood_mb * 1_000_000 // FLOOD_SIZE
    out: Json = {"message_bytes": FLOOD_SIZE, "budget_messages": budget}
    async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        stats = Stats(server, http, target.heap_path)
        slow = await SocketIO.open(server.port, rcvbuf=4096)
        flooder: SocketIO | None = None
        try:
            await slow.call_inline("join", "slow")
            slow_port = slow.ws.stream.extra(anyio.abc.SocketAttribute.local_port)
            flooder = await SocketIO.open(server.port)
            await flooder.call_inline("join", "slow")
            received = 0

            def count(args: list[Any]) -> None:
                nonlocal received
                received += 1

            flooder.on_event = count
            await stats.until(lambda s: s["sockets"] == 2, 10)
            await stats.mark(out, "baseline", sampler)
            tg.start_soon(flooder.serve)
            tg.start_soon(sampler.run)
            started = anyio.current_time()
            seen: dict[str, float] = {}
            gone = anyio.Event()

            async def watch() -> None:
                """When the slow socket is dropped (sockets 2 -> 1) and when its session is
                gone (sessions 2 -> 1), as the server reports them."""
                while "gone" not in seen:
                    now = await stats.get()
                    t = anyio.current_time() - started
                    if now["sockets"] < 2 and "dropped" not in seen:
                        seen["dropped"] = t
                        await stats.mark(out, "dropped", sampler)
                    if now["sessions"] < 2:
                        seen["gone"] = t
                        await stats.mark(out, "gone", sampler)
                        out["gone_tcp"] = tcp_queue(server.port, slow_port)
                        gone.set()
                    await anyio.sleep(0.1)

            tg.start_soon(watch)
            flooded = 0
            with anyio.move_on_after(opts.time_limit):
                while flooded < budget and "dropped" not in seen:
                    [sent] = await flooder.call(
                        "flood", "slow", FLOOD_SIZE, FLOOD_BATCH, timeout=120
                    )
                    flooded += sent
            out["flooded"] = flooded
            out["flood_end_s"] = round(anyio.current_time() - started, 2)
            await stats.mark(out, "flood_end", sampler)
            # The server has ping_interval + ping_timeout (plus its own tick) to notice a
            # client that never answers; bounded here at twice that.
            with anyio.move_on_after(2 * (PING_INTERVAL + PING_TIMEOUT) + 10):
                await gone.wait()
            out["received_by_flooder"] = received
            out["dropped_s"] = round(seen["dropped"], 2) if "dropped" in seen else None
            out["gone_s"] = round(seen["gone"], 2) if "gone" in seen else None
            out["peak_kib"] = sampler.peak_kib
            await stats.mark(out, "gone_gc", sampler, collect=True)
        finally:
            tg.cancel_scope.cancel()
            await slow.ws.abort()
            if flooder is not None:
                await flooder.ws.abort()
        await stats.until(lambda s: s["sessions"] == 0, 10)
        await stats.mark(out, "closed", sampler)
    out["samples"] = sampler.samples[:: max(1, len(sampler.samples) // 200)]
    return out


# ---------------------------------------------------------------------------- attachments


async def _read_quietly(ws: WebSocket, ended: anyio.Event) -> None:
    """Keep a hostile connection alive like a client would: pong pings, drop the rest;
    ``ended`` is set once the connection is over."""
    try:
        with suppress(Closed):
            while True:
                if await ws.receive() == "2":
                    await ws.send("3")
    finally:
        ended.set()


async def attachment_flood(server: RunningServer, target: Target, opts: Options) -> Json:
    sampler = Sampler(server)
    share = opts.attachment_mb * 1_000_000 // opts.hostile
    out: Json = {"hostile_clients": opts.hostile, "frame_bytes": FRAME, "budget_bytes": 0}
    sent = connections = 0
    held: list[tuple[SocketIO, anyio.Event]] = []
    async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
        stats = Stats(server, http, target.heap_path)
        keeper = await SocketIO.open(server.port)  # a well-behaved client throughout
        try:
            tg.start_soon(keeper.serve)
            await stats.until(lambda s: s["sessions"] == 1, 10)
            await stats.mark(out, "baseline", sampler)
            tg.start_soon(sampler.run)

            async def hostile(n: int) -> None:
                """Announce 10 (the most rooms takes) or 10^9 attachments, then stream
                frames until the server closes the connection; again, until ``share`` bytes
                are sent. The last connection stays open, quiet (its reader keeps it)."""
                nonlocal sent, connections
                count = 10 if n % 2 == 0 else 1_000_000_000
                args = placeholders(min(count, 10) if count <= 10 else 1)
                mine = 0
                while mine < share:
                    sio = await SocketIO.open(server.port)
                    connections += 1
                    ended = anyio.Event()
                    tg.start_soon(_read_quietly, sio.ws, ended)
                    try:
                        await sio.ws.send(f'45{count}-["echo",{args}]')
                        while mine < share and not sio.ws.ended:
                            await sio.ws.send(b"a" * FRAME)
                            mine += FRAME
                            sent += FRAME
                            # A send into a roomy loopback buffer does not yield: let the
                            # reader see the server's close before the next frame.
                            await anyio.lowlevel.checkpoint()
                    except (anyio.BrokenResourceError, OSError):
                        pass  # the server dropped us mid-frame
                    if mine >= share and not sio.ws.ended:
                        held.append((sio, ended))
                        return
                    await sio.ws.abort()

            started = time.monotonic()
            with anyio.move_on_after(opts.time_limit):
                async with anyio.create_task_group() as attack:
                    for n in range(opts.hostile):
                        attack.start_soon(hostile, n)
            out["seconds"] = round(time.monotonic() - started, 1)
            out["budget_bytes"] = share * opts.hostile
            out["sent_bytes"] = sent
            out["connections"] = connections
            await stats.mark(out, "end", sampler)
            out["end_stats"] = await stats.get()
            out["still_open"] = len(held)
            # Give rooms' attachment deadline its time, then everyone leaves.
            with anyio.move_on_after(ATTACHMENT_TIMEOUT + 2):
                for _, ended in held:
                    await ended.wait()
            await stats.mark(out, "held", sampler)
            out["peak_kib"] = sampler.peak_kib
            for client, _ in held:
                await client.ws.abort()
            back = await stats.until(lambda s: s["sessions"] == 1, 30)
            out["structure_back_s"] = None if back is None else round(back, 2)
            await stats.mark(out, "after", sampler)
            await stats.mark(out, "after_gc", sampler, collect=True)
            assert await keeper.call("echo", "still here") == ["still here"]
        finally:
            tg.cancel_scope.cancel()
            for client, _ in held:
                await client.ws.abort()
            await keeper.ws.abort()
    out["samples"] = sampler.samples[:: max(1, len(sampler.samples) // 200)]
    return out


# ---------------------------------------------------------------------------- running


SCENARIO_FUNCS: dict[str, Callable[[RunningServer, Target, Options], Awaitable[Json]]] = {
    "churn": churn,
    "slow": slow_consumer,
    "attachments": attachment_flood,
}


def snapshot(dest: Path) -> str:
    """rooms/ and benchmarks/apps/ as run.py snapshots them, plus the edges test app as
    ``rooms_edges``: every server of the run runs the same code whatever the tree does."""
    digest = run.snapshot_sources(dest)
    shutil.copy(ROOT / "tests" / "apps" / "edges.py", dest / "apps" / "rooms_edges.py")
    return digest


def measure(
    scenario: str, target: Target, opts: Options, settings: Settings, logdir: Path, source: Path
) -> Json:
    """One scenario on a fresh server process."""
    started = time.monotonic()
    result: Json = {"scenario": scenario, "server": target.spec.key}
    try:
        with run.server(target.spec, settings, logdir, source, target.env) as server:
            try:
                result.update(anyio.run(SCENARIO_FUNCS[scenario], server, target, opts))
            except Exception as exc:  # a measurement that broke is reported, not fatal
                result["error"] = f"{exc!r}"[:500] + f"\n{run.tail(server.log, 20)}"
            result["server_log"] = run.log_issues(server.log)
    except run.BenchError as exc:
        result["error"] = str(exc)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def _cell(result: Json | None, key: str) -> str:
    if result is None or "error" in result or result.get(key) is None:
        return "-"
    return f"{mib(result[key]):,.1f}"


def _delta(result: Json | None, key: str) -> str:
    """RSS from the baseline, and malloc's bytes in use from its baseline where measured."""
    if result is None or "error" in result or result.get(key) is None:
        return "-"
    text = f"{mib(result[key] - result['baseline_kib']):+,.1f}"
    heap, base = result.get(key.replace("_kib", "_malloc_kib")), result.get("baseline_malloc_kib")
    if heap is not None and base is not None:
        text += f" ({mib(heap - base):+,.1f})"
    return text


def _seconds(result: Json | None, key: str) -> str:
    if result is None or "error" in result:
        return "-"
    value = result.get(key)
    return "never" if value is None else f"{value:g} s"


def markdown(report: Json) -> str:
    servers: list[str] = report["servers"]
    by = {(r["scenario"], r["server"]): r for r in report["results"]}
    labels = [TARGETS[s].spec.label for s in servers]
    lines = [
        f"Run {report['date']} on {report['machine']['cpu']} ({report['machine']['cpus']} CPUs), "
        f"rooms {report['machine']['git_commit']}; uvicorn {report['versions']['uvicorn']} "
        f"(uvloop, httptools, --ws {report['ws']}), python-socketio "
        f"{report['versions']['python-socketio']}. RSS of the server process in MiB (psutil, "
        "sampled every 100 ms); deltas are from the scenario's own baseline, and in parentheses "
        "the change in bytes glibc's malloc has handed out and not got back (mallinfo2), which "
        "tells memory still held from memory freed but not returned to the OS.",
        "",
        f"| Scenario | Measure | {' | '.join(labels)} |",
        f"|---|---|{'--:|' * len(servers)}",
    ]

    def row(scenario: str, title: str, measure: str, cell: Callable[[Json | None], str]) -> None:
        cells = " | ".join(cell(by.get((scenario, s))) for s in servers)
        lines.append(f"| {title} | {measure} | {cells} |")

    opts = report["options"]
    if "churn" in report["scenarios"]:
        title = f"churn, {opts['cycles']:,} cycles"
        row("churn", title, "RSS baseline", lambda r: _cell(r, "baseline_kib"))
        row("churn", "", "RSS peak during the cycles", lambda r: _delta(r, "peak_kib"))
        row("churn", "", "RSS when the cycles end", lambda r: _delta(r, "end_kib"))
        row("churn", "", "RSS once only the control is left", lambda r: _delta(r, "after_kib"))
        row("churn", "", "... then after gc.collect()", lambda r: _delta(r, "after_gc_kib"))
        row("churn", "", "left after the cycles (sessions / sockets)", _churn_left)
        row("churn", "", "cycles/s (errors)", _churn_rate)
    if "slow" in report["scenarios"]:
        title = f"slow consumer, {FLOOD_SIZE // 1000} KB messages"
        row("slow", title, "RSS baseline", lambda r: _cell(r, "baseline_kib"))
        row("slow", "", "messages flooded (until dropped, at most budget)", _flooded)
        row("slow", "", "RSS peak", lambda r: _delta(r, "peak_kib"))
        row("slow", "", "dropped after (from the first flood)", lambda r: _seconds(r, "dropped_s"))
        row("slow", "", "session gone after", lambda r: _seconds(r, "gone_s"))
        row("slow", "", "RSS when the session is gone", lambda r: _delta(r, "gone_kib"))
        row("slow", "", "... then after gc.collect()", lambda r: _delta(r, "gone_gc_kib"))
        row("slow", "", "server's TCP send queue then, KiB", _tcp)
    if "attachments" in report["scenarios"]:
        title = f"attachment flood, {opts['attachment_mb']} MB"
        row("attachments", title, "RSS baseline", lambda r: _cell(r, "baseline_kib"))
        row("attachments", "", "MB sent (connections)", _sent)
        row("attachments", "", "RSS peak", lambda r: _delta(r, "peak_kib"))
        row("attachments", "", "RSS peak per MB sent, KiB", _per_mb)
        row("attachments", "", "RSS once the clients left", lambda r: _delta(r, "after_kib"))
        row("attachments", "", "... then after gc.collect()", lambda r: _delta(r, "after_gc_kib"))
    errors = [r for r in report["results"] if "error" in r]
    for result in errors:
        first = result["error"].splitlines()[0]
        lines.append(f"\n{result['scenario']} on {result['server']} FAILED: {first}")
    return "\n".join(lines) + "\n"


def _churn_left(r: Json | None) -> str:
    if r is None or "error" in r:
        return "-"
    stats = r["after_stats"]
    return f"{stats['sessions'] - 1} / {stats['sockets'] - 1}"


def _churn_rate(r: Json | None) -> str:
    return "-" if r is None or "error" in r else f"{r['cycles_per_s']:,.0f} ({r['errors']})"


def _flooded(r: Json | None) -> str:
    return "-" if r is None or "error" in r else f"{r['flooded']:,}"


def _tcp(r: Json | None) -> str:
    if r is None or "error" in r:
        return "-"
    tcp = r.get("gone_tcp")
    return "closed" if tcp is None else f"{tcp['send_queue_kib']:,} ({tcp['state']})"


def _sent(r: Json | None) -> str:
    if r is None or "error" in r:
        return "-"
    return f"{r['sent_bytes'] / 1e6:,.0f} ({r['connections']:,})"


def _per_mb(r: Json | None) -> str:
    if r is None or "error" in r or not r["sent_bytes"]:
        return "-"
    return f"{(r['peak_kib'] - r['baseline_kib']) / (r['sent_bytes'] / 1e6):,.0f}"


def update_readme(table: str, command: str) -> bool:
    return run.replace_between(MARK_START, MARK_END, f"```sh\n{command}\n```\n\n{table}\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = Options()
    parser.add_argument("--servers", default="rooms,psio", help="comma list of rooms,psio")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma list of churn,slow,attachments"
    )
    parser.add_argument("--cycles", type=int, default=defaults.cycles, help="churn cycles")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--flood-mb", type=int, default=defaults.flood_mb)
    parser.add_argument("--attachment-mb", type=int, default=defaults.attachment_mb)
    parser.add_argument("--hostile", type=int, default=defaults.hostile, help="attackers")
    parser.add_argument(
        "--time-limit", type=float, default=defaults.time_limit, help="seconds per phase"
    )
    parser.add_argument("--ws", default="websockets", help="uvicorn --ws implementation")
    parser.add_argument(
        "--out", default="soak", help="results file stem in benchmarks/results (default soak)"
    )
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, run._terminate)
    signal.signal(signal.SIGHUP, run._terminate)
    servers = [k.strip() for k in args.servers.split(",") if k.strip()]
    scenarios = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = (set(servers) - set(TARGETS)) | (set(scenarios) - set(SCENARIOS))
    if unknown:
        print(f"unknown server(s) or scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    opts = Options(
        cycles=args.cycles,
        concurrency=args.concurrency,
        flood_mb=args.flood_mb,
        attachment_mb=args.attachment_mb,
        hostile=args.hostile,
        time_limit=args.time_limit,
    )
    settings = Settings.servers_only(args.ws, opts.concurrency)
    run.raise_nofile()
    started = dt.datetime.now(dt.UTC)
    machine = run._machine()
    results: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="rooms-soak-") as tmp:
        logdir = Path(tmp)
        source = logdir / "src"
        digest = snapshot(source)
        for scenario in scenarios:
            for key in servers:
                print(f"{scenario:<12} {TARGETS[key].spec.label:<16}", end=" ", flush=True)
                result = measure(scenario, TARGETS[key], opts, settings, logdir, source)
                results.append(result)
                if "error" in result:
                    print(f"FAILED: {result['error'].splitlines()[0]}", flush=True)
                else:
                    print(f"done in {result['wall_s']:g} s", flush=True)
    report: Json = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine, "source_snapshot": digest},
        "versions": run._versions(),
        "options": dataclasses.asdict(opts),
        "ws": args.ws,
        "servers": servers,
        "scenarios": scenarios,
        "results": results,
    }
    table = markdown(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(table)
    print()
    print(table)
    print(f"wrote {RESULTS.relative_to(ROOT)}/{args.out}.{{json,md}}")
    complete = (
        set(servers) == set(TARGETS)
        and set(scenarios) == set(SCENARIOS)
        and opts == Options()
        and args.ws == "websockets"
        and args.out == "soak"
    )
    if complete and not args.no_readme:
        if update_readme(table, ".venv/bin/python benchmarks/soak.py"):
            print(f"updated the Soak section of {README.relative_to(ROOT)}")
        else:
            print(f"{README.relative_to(ROOT)} has no soak markers; left alone")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; stopping child processes", file=sys.stderr)
        sys.exit(130)
    finally:
        CHILDREN.stop_all()
