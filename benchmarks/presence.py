"""Presence across three processes on one Redis (issue 16): how long until every process
agrees after a burst of 1,000 joins (and of 1,000 leaves), with no other member and with
10,000 members tracked; bytes on the broker per join and per leave; memory per entry.

    .venv/bin/python benchmarks/presence.py            # about 2 minutes on 2 CPUs
    .venv/bin/python benchmarks/presence.py --quick    # a smoke run, under 30 s

What runs. A throwaway ``redis-server`` on a free 127.0.0.1 port (``--save "" --appendonly
no``; ``tests/redisserver.py``'s ``RedisServer``, or the same started here when the tests
cannot be imported) and three Python processes (``apps/presence_app.py``), each a
``rooms.Server(broker="redis://...")`` run by ``server.running()`` on uvloop, with default
presence settings (``batch_window`` 50 ms) and cluster settings (heartbeat every 5 s).
This script drives them over their stdin and stdout, a JSON line per command. They import
a copy of ``rooms/`` taken at start (editing the tree during a run changes nothing).
Nothing is pinned: on two cores the three processes and Redis share them, as they would
in production; the run first waits (``--quiet-wait``) for the machine to go idle, and the
report says how much CPU other processes took meanwhile.

What tracks. Each process connects 100 in-process clients (``rooms.testing.TestClient``)
and spreads its entries over their sockets (``max_tracks_per_socket`` raised to fit). An
entry is a member: a key of its own (``"on03-000123"``) and one meta, ``{"ref": <12
chars>, "name": <the key>, "since": 1764500000, "device": "web"}`` (about 75 bytes of
JSON). A burst is one synchronous loop of ``presence.track`` (``untrack``) calls in one
process (or a third in each), as 1,000 handlers calling it within one window would be.
Why not a socket per member: 10,000 connections would measure the clients and the
connection layer (an in-process client costs about 1.4 ms and 37 KB to connect), not
presence, and the same ``track`` runs either way; what a socket of its own adds to an
entry is measured apart (the memory table's last row). The price of sharing sockets:
``untrack`` scans the socket's own entries (up to about 150 here).

Method.

- **Agreement.** Before a burst every process is armed to poll, every 1 ms, whether the
  last key of each sender's range is there (``presence.get``, O(1)); when it is, it takes
  the time and, with no await in between, checks every key of the burst with
  ``presence.get``: what ``presence.list`` lists under the key (a sender's changes apply
  in order, so this holds at once; ``list`` itself costs milliseconds at 10,000 members
  and would set off garbage collections of its own). The time
  is the latest of the three processes' minus the earliest start of a sender's loop, all
  ``time.monotonic_ns()`` (CLOCK_MONOTONIC: one clock for every process of the machine),
  to 1 ms. Leaves are timed alike, until no process lists any of them. The subscriber row
  adds a client subscribed (``presence.subscribe``) on every process and times until each
  of those clients' lists, kept from ``presence_state`` and ``presence_diff`` as
  examples/presence.js does, has every change. Each process also counts its garbage
  collections (``gc.callbacks``), so a burst slowed by a full collection shows as such.
- **Bytes on the broker.** Redis's own counters (``INFO stats``): ``total_net_input_bytes``
  is what the processes sent Redis (the PUBLISH commands); ``total_net_output_bytes`` what
  Redis sent them (each message to every subscriber of the cluster channel: all three
  processes, the sender's own copy included). Read before the burst and once it settled
  (agreement, then a window and 100 ms), less what the reads themselves cost (the INFO
  command and its reply, measured back to back), divided by the changes. A heartbeat (a
  small PUBLISH per process every 5 s) that falls inside the interval stays in: the PUBLISH
  count shows it.
- **CPU per change.** ``time.process_time()`` of each process over the same interval,
  less the harness's own work there (the polls, as counted times the CPU of one poll
  calibrated in that process; building the keys and metas; the final check with
  ``presence.list``), divided by the changes. The process that changed: its loop, encoding
  and publishing the delta, and decoding its own copy that Redis sends back; the others:
  decoding and applying it.
- **Memory per entry.** After the timings, 10,000 entries tracked by one process, read
  once every process agreed, after ``gc.collect()``, in all three: first the growth of
  RSS alone, then, with new keys, the bytes tracemalloc traces (started only then: it adds
  its own bookkeeping per allocation, which would inflate RSS, and slows everything);
  again once they are untracked; and the source lines that hold them. Before each read,
  processes 0 and 1 track one entry each, so that the last message each process's cluster
  sender and receiver still references is a small one, not a burst counted as entries.
  Then 1,000 entries (200 with ``--quick``), each on a fresh socket of its own.
- **Repetitions.** Every timed burst runs ``--reps`` times (20; 3 with ``--quick``) with
  new keys. One repetition: the bursts with no other member; the 10,000 members tracked;
  the bursts with them, the setups taking turns; the members untracked. So whatever
  drifts on the machine meanwhile hits "no other member" and "10,000 members" alike. The
  subscriber bursts come last (their subscribers would hear the 10,000 come and go).
  Cells give the median, the minimum and the maximum.

Output: a Markdown report on stdout and in ``benchmarks/results/presence.md``, every
measurement in ``presence.json`` (``--quick``: ``presence-quick.*``). Network only on
127.0.0.1; every child process is stopped at the end, on an error and on Ctrl-C or
SIGTERM (and stops by itself when this script's end of its stdin closes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "benchmarks" / "apps" / "presence_app.py"
RESULTS = ROOT / "benchmarks" / "results"
HOST = "127.0.0.1"
PROCESSES = 3
SOCKETS = 100  # per process
META = {"since": 1764500000, "device": "web"}
TOPIC = "lobby"
TOP = 8  # source lines shown of what holds the memory
SETTLE = 0.1  # seconds after agreement (plus a window) before the counters are read again

Json = dict[str, Any]


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------- processes


class Redis:
    """tests/redisserver.py's RedisServer when the tests import (pytest installed), else
    the same thing here: a redis-server on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            raise BenchError("redis-server is not on PATH (make redis-server installs it)")
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.tests: Any = None
        with contextlib.suppress(ImportError):
            sys.path.insert(0, str(ROOT))
            from tests.redisserver import RedisServer

            self.tests = RedisServer(workdir)
        if self.tests is not None:
            self.url: str = self.tests.url
        else:
            with socket.socket() as probe:
                probe.bind((HOST, 0))
                self.port = int(probe.getsockname()[1])
            self.url = f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        if self.tests is not None:
            self.tests.start()
            return
        command = ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                   "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.02)  # a starting process: poll its port

    def stop(self) -> None:
        if self.tests is not None:
            self.tests.stop()
        elif self.process is not None:
            stop_group(self.process, grace=0)
            self.process = None


def stop_group(process: subprocess.Popen[Any], grace: float) -> None:
    """Wait ``grace`` seconds for ``process`` to end, then SIGKILL its process group (it
    was started in a session of its own)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


class Process:
    """One server process of the cluster, driven over its stdin and stdout."""

    def __init__(self, index: int, source: Path, url: str, prefix: str, logdir: Path) -> None:
        self.index = index
        self.log = logdir / f"process-{index}.log"
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(source / "presence_app.py"), url, prefix],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                cwd=source,
                env=env,
                start_new_session=True,
            )
        self.lines: queue.Queue[Json | None] = queue.Queue()
        self.stash: list[Json] = []
        self.ids = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.hello = self.wait_for(lambda m: "ready" in m, 30, "to start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"raw": line})
        self.lines.put(None)

    def wait_for(self, match: Callable[[Json], bool], timeout: float, what: str) -> Json:
        for at, message in enumerate(self.stash):
            if match(message):
                return self.stash.pop(at)
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"process {self.index}: nothing {what} in {timeout} s") from None
            if message is None:
                raise BenchError(f"process {self.index} ended (waiting {what}): {self.tail()}")
            if "error" in message:
                raise BenchError(f"process {self.index}: {message['error']}\n{self.tail()}")
            if match(message):
                return message
            self.stash.append(message)

    def send(self, cmd: str, **args: Any) -> int:
        self.ids += 1
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"id": self.ids, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise BenchError(f"process {self.index} ended: {self.tail()}") from None
        return self.ids

    def result(self, ident: int, timeout: float = 60) -> Json:
        message = self.wait_for(lambda m: m.get("id") == ident and "done" in m, timeout, "done")
        return dict(message["done"])

    def armed(self, ident: int) -> None:
        self.wait_for(lambda m: m.get("id") == ident and "armed" in m, 30, "armed")

    def call(self, cmd: str, timeout: float = 60, **args: Any) -> Json:
        return self.result(self.send(cmd, **args), timeout)

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-30:])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # end of stdin: it stops by itself
        stop_group(self.proc, grace=10)


@contextlib.contextmanager
def cluster(workdir: Path, count: int) -> Iterator[tuple[Redis, list[Process]]]:
    """redis-server and ``count`` server processes, stopped however this ends."""
    source = workdir / "src"
    shutil.copytree(ROOT / "rooms", source / "rooms", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(APP, source / "presence_app.py")
    redis = Redis(workdir / "redis")
    processes: list[Process] = []
    try:
        redis.start()
        prefix = f"bench-presence-{os.getpid()}"
        for index in range(count):
            processes.append(Process(index, source, redis.url, prefix, workdir))
        yield redis, processes
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop()
        redis.stop()


# ---------------------------------------------------------------------------- the broker


class Counters:
    """Redis's byte and PUBLISH counters, read with the INFO command (redis-py)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.overhead = (0, 0, 0)
        reads = [self.read() for _ in range(6)]
        self.overhead = (
            int(statistics.median(y[0] - x[0] for x, y in itertools.pairwise(reads))),
            int(statistics.median(y[1] - x[1] for x, y in itertools.pairwise(reads))),
            int(statistics.median(y[2] - x[2] for x, y in itertools.pairwise(reads))),
        )

    def read(self) -> tuple[int, int, int]:
        info = self.client.info("stats", "commandstats")
        publish = info.get("cmdstat_publish", {}).get("calls", 0)
        return info["total_net_input_bytes"], info["total_net_output_bytes"], publish

    def since(self, before: tuple[int, int, int]) -> tuple[int, int, int]:
        """Bytes in, bytes out and PUBLISH calls since ``before``, without the reads' own."""
        after, cost = self.read(), self.overhead
        return (
            after[0] - before[0] - cost[0],
            after[1] - before[1] - cost[1],
            after[2] - before[2] - cost[2],
        )

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])


# ---------------------------------------------------------------------------- a burst


@dataclass
class Bench:
    processes: list[Process]
    counters: Counters
    window: float
    per_poll: list[float]

    def burst(
        self,
        action: str,
        senders: Sequence[int],
        prefix: str,
        count: int,
        topic: str = TOPIC,
        subscriber: bool = False,
    ) -> Json:
        """``count`` tracks (``action`` "track") or untracks of the keys ``prefix`` + n,
        split over ``senders``; timed until every process agrees, with the broker's bytes
        and every process's CPU."""
        shares = [count // len(senders) + (i < count % len(senders)) for i in range(len(senders))]
        starts = [sum(shares[:i]) for i in range(len(senders))]
        ranges = [[prefix, start, share] for start, share in zip(starts, shares, strict=True)]
        before = self.counters.read()
        cpu = [p.call("cpu") for p in self.processes]
        expects = [
            p.send(
                "expect",
                topic=topic,
                ranges=ranges,
                present=action == "track",
                subscriber=subscriber,
            )
            for p in self.processes
        ]
        for p, ident in zip(self.processes, expects, strict=True):
            p.armed(ident)
        loops = [
            self.processes[s].send(
                action, topic=topic, prefix=prefix, start=start, count=share, meta=META
            )
            for s, start, share in zip(senders, starts, shares, strict=True)
        ]
        ran = [self.processes[s].result(ident) for s, ident in zip(senders, loops, strict=True)]
        seen = [p.result(ident) for p, ident in zip(self.processes, expects, strict=True)]
        time.sleep(self.window + SETTLE)
        after = [p.call("cpu") for p in self.processes]
        bytes_in, bytes_out, publishes = self.counters.since(before)
        began = min(r["began"] for r in ran)
        harness = [
            s["harness_cpu"] + s["polls"] * per for s, per in zip(seen, self.per_poll, strict=True)
        ]
        for s, r in zip(senders, ran, strict=True):
            harness[s] += r["harness_cpu"]
        cpu_us = [
            max(0.0, b["cpu"] - a["cpu"] - h) / count * 1e6
            for a, b, h in zip(cpu, after, harness, strict=True)
        ]
        gc_ms = [
            (sum(b["gc"]["seconds"]) - sum(a["gc"]["seconds"])) * 1e3
            for a, b in zip(cpu, after, strict=True)
        ]
        full = [b["gc"]["count"][2] - a["gc"]["count"][2] for a, b in zip(cpu, after, strict=True)]
        return {
            "action": action,
            "senders": list(senders),
            "count": count,
            "agree_ms": (max(s["seen"] for s in seen) - began) / 1e6,
            "per_process_ms": [(s["seen"] - began) / 1e6 for s in seen],
            "loop_ms": [(r["ended"] - r["began"]) / 1e6 for r in ran],
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "publishes": publishes,
            "cpu_us_per_change": cpu_us,
            "gc_ms": gc_ms,
            "full_collections": full,
        }

    def set_window(self, window: float) -> None:
        for p in self.processes:
            p.call("config", window=window)
        self.window = window


# ---------------------------------------------------------------------------- the run


SETUPS = {
    # key: (label, senders, batch window or None for the default, subscriber)
    "empty": ("no other member, 1 process changes", [0], None, False),
    "one": ("{members} members, 1 process changes", [0], None, False),
    "spread": ("{members} members, all 3 processes change (a third each)", [0, 1, 2], None, False),
    "nowindow": ("{members} members, 1 process changes, `batch_window` 0", [0], 0.0, False),
    "subscribed": (
        "{members} members, 1 process changes; until a subscriber on every process has it",
        [0],
        None,
        True,
    ),
}


CODES = {"empty": "em", "one": "on", "spread": "sp", "nowindow": "nw", "subscribed": "su"}


def python() -> str:
    """This interpreter as the command line names it (``.venv/bin/python`` here)."""
    path = os.path.relpath(sys.executable, ROOT)
    return Path(sys.executable).name if path.startswith("..") else path


def label(key: str, members: int) -> str:
    return SETUPS[key][0].format(members=f"{members:,}")


def run(options: argparse.Namespace) -> Json:
    report: Json = {
        "command": " ".join([python(), *sys.argv]),
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": {
            "processes": PROCESSES,
            "members": options.members,
            "burst": options.burst,
            "reps": options.reps,
            "sockets_per_process": SOCKETS,
            "meta": META,
            "memory_entries": options.members,
            "fresh_sockets": options.fresh_sockets,
        },
        "machine": machine(),
        "versions": versions(),
        "runs": {key: [] for key in SETUPS},
        "setups": [],
        "teardowns": [],
        "problems": [],
    }
    runs: dict[str, list[Json]] = report["runs"]
    burst, members = options.burst, options.members
    report["busy_at_start_pct"] = wait_quiet(options.quiet_wait)
    since, busy = time.monotonic(), machine_busy()
    with (
        tempfile.TemporaryDirectory(prefix="rooms-presence-") as tmp,
        cluster(Path(tmp), PROCESSES) as (redis, processes),
    ):
        for p in processes:
            if not p.hello["rooms"].startswith(tmp):
                raise BenchError(f"process {p.index} imported {p.hello['rooms']}, not the copy")
        for p in processes:
            p.call("sync", peers=PROCESSES - 1, timeout=40)
        per_track = -(-(members + burst + options.members) // SOCKETS) + 1
        for p in processes:
            p.call("sockets", n=SOCKETS)
            p.call("config", max_tracks=max(100, per_track))
        window = processes[0].call("config")["window"]
        counters = Counters(redis.url)
        report["versions"]["redis-server"] = counters.version()
        report["broker_read_overhead"] = counters.overhead
        per_poll = [  # the median of three calibrations in each process
            statistics.median(p.call("calibrate", seconds=0.3)["per_poll"] for _ in range(3))
            for p in processes
        ]
        report["cpu_per_poll_us"] = [x * 1e6 for x in per_poll]
        bench = Bench(processes, counters, window, per_poll)
        say = print if options.verbose else (lambda *a, **k: None)

        def pair(key: str, rep: int) -> None:
            _, senders, setup_window, subscriber = SETUPS[key]
            if setup_window is not None:
                bench.set_window(setup_window)
            prefix = f"{CODES[key]}{rep:02d}-"  # keys of one length in every setup
            joined = bench.burst("track", senders, prefix, burst, subscriber=subscriber)
            left = bench.burst("untrack", senders, prefix, burst, subscriber=subscriber)
            runs[key].append({"join": joined, "leave": left})
            say(f"{key:>10} rep {rep}: join {joined['agree_ms']:.1f} ms, "
                f"leave {left['agree_ms']:.1f} ms")  # fmt: skip
            if setup_window is not None:
                bench.set_window(window)

        # Each repetition: the bursts with no other member, then the members tracked (a
        # third on each process), the bursts with them (in turns), and the members
        # untracked: whatever drifts on the machine hits both alike.
        everyone = list(range(PROCESSES))
        rotation = ["one", "spread", "nowindow"]
        setups, teardowns = report["setups"], report["teardowns"]
        progress(f"agreement with no other member, then with {members:,}, in turns")
        for rep in range(options.reps):
            pair("empty", rep)
            if rep == 0:
                report["gc_before"] = [p.call("gc_cost") for p in processes]
            setups.append(bench.burst("track", everyone, f"mb{rep:02d}-", members))
            if rep == 0:
                report["gc_after"] = [p.call("gc_cost") for p in processes]
            for key in rotation[rep % 3 :] + rotation[: rep % 3]:
                pair(key, rep)
            teardowns.append(bench.burst("untrack", everyone, f"mb{rep:02d}-", members))
            say(f"{'members':>10} rep {rep}: tracked {setups[-1]['agree_ms']:.1f} ms, "
                f"untracked {teardowns[-1]['agree_ms']:.1f} ms")  # fmt: skip

        progress("the same with a subscriber on every process")
        bench.burst("track", everyone, "base-", members)
        for p in processes:
            p.call("subscribe", topic=TOPIC)
        for rep in range(options.reps):
            pair("subscribed", rep)

        costs = processes[1].call("list_cost", topic=TOPIC, calls=20)
        report["list_cost"] = costs

        progress("memory per entry (tracemalloc)")
        report["memory"] = memory(bench, options)
        report["other_cpu_pct"] = other_cpu(since, busy, processes, redis)
        for p in processes:
            warnings = [
                line
                for line in p.log.read_text(errors="replace").splitlines()
                if "WARNING" in line or "ERROR" in line or "Traceback" in line
            ]
            if warnings:
                report["problems"].append(f"process {p.index} logged: {warnings[:3]}")
    return report


def memory(bench: Bench, options: argparse.Namespace) -> Json:
    """Bytes per entry in the owner and in a replica, RSS first (without tracemalloc, which
    adds its own bookkeeping per allocation), then tracemalloc's; what is left after they
    go; what a socket of its own adds.

    Every read follows a "nudge": once what was changed has been sent, processes 0 and 1
    track one entry each, whose small messages replace the last message each process's
    cluster sender and receiver still reference (up to 1,000 changes each), so that no
    read counts a message as entries (the nudges' own entries are counted: about 2 KB in
    all)."""
    processes, n = bench.processes, options.members
    nudges = iter(range(1_000_000))

    def nudge() -> None:
        time.sleep(bench.window + SETTLE)  # what changed is sent and received
        for p in processes[:2]:
            p.call("track", topic="nudge", prefix=f"n{next(nudges)}-", start=0, count=1)
        time.sleep(bench.window + SETTLE)

    def read(top: int = 0) -> list[Json]:
        nudge()
        return [p.call("mem_read", top=top) for p in processes]

    out: Json = {"entries": n, "top": TOP}
    for p in processes:
        p.call("mem_start")
    bench.burst("track", [0], "rss-", n, topic="memory")
    out["rss_tracked"] = [r["rss"] for r in read()]
    bench.burst("untrack", [0], "rss-", n, topic="memory")
    out["rss_left"] = [r["rss"] for r in read()]

    for p in processes:
        p.call("mem_start", traced=True)
    bench.burst("track", [0], "mem-", n, topic="memory")
    out["tracked"] = read(TOP)
    bench.burst("untrack", [0], "mem-", n, topic="memory")
    out["left"] = read(TOP)

    # k entries, each on a fresh socket of its own: what a member costs the process whose
    # socket tracks it when it has a socket of its own (its holdings record included).
    k = out["own_sockets"] = options.fresh_sockets
    owner = processes[0]
    first = owner.call("sockets", n=k)["first"]
    time.sleep(1.0)  # the new connections settle (their first timers, reads)
    nudge()
    owner.call("mem_start", traced=True)  # a new baseline
    owner.call(
        "track", topic="own", prefix="own-", start=0, count=k, meta=META, one_each_from=first
    )
    out["own"] = read(TOP + 4)[0]
    for p in processes:
        p.call("mem_stop")
    return out


def progress(what: str) -> None:
    print(f"- {what} ...", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the machine


def wait_quiet(limit: float, threshold: float = 10.0) -> float:
    """Wait (at most ``limit`` seconds) until the machine has been under ``threshold``
    percent busy for a second; the last percentage seen (of all CPUs together)."""
    import psutil

    deadline, quiet = time.monotonic() + limit, 0
    while True:
        busy = float(psutil.cpu_percent(interval=0.5))
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= 2 or time.monotonic() > deadline:
            return busy


def machine_busy() -> float:
    import psutil

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


def other_cpu(since: float, busy: float, processes: Sequence[Process], redis: Redis) -> float:
    """Percent of one CPU that processes other than ours used from ``since`` (the machine's
    ``busy`` CPU seconds then): a busy machine makes every number worse."""
    import psutil

    pids = [os.getpid(), *(p.proc.pid for p in processes)]
    server = redis.tests.process if redis.tests is not None else redis.process
    if server is not None:
        pids.append(server.pid)
    ours = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            ours += t.user + t.system
    return max(0.0, (machine_busy() - busy - ours) / (time.monotonic() - since) * 100)


def machine() -> Json:
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "rooms"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "git_commit": commit + ("+dirty" if dirty else ""),
    }


def versions() -> Json:
    from importlib.metadata import PackageNotFoundError, version

    out: Json = {"python": platform.python_version()}
    for dist in ("rooms", "anyio", "uvloop", "redis"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


# ---------------------------------------------------------------------------- reporting


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def held(reads: Sequence[Json], what: str) -> str:
    return f"{reads[0][what]:,} / " + ", ".join(f"{r[what]:,}" for r in reads[1:])


def ms(value: float) -> str:
    return f"{value:,.1f}"


def markdown(report: Json) -> str:
    settings, machine_, versions_ = report["settings"], report["machine"], report["versions"]
    runs: dict[str, list[Json]] = report["runs"]
    burst, members, processes = settings["burst"], settings["members"], settings["processes"]
    lines = [
        "```sh",
        report["command"],
        "```",
        "",
        f"Run {report['started']} on {machine_['cpu']} ({machine_['cpus']} CPUs), rooms "
        f"{machine_['git_commit']}; Python {versions_['python']}, anyio {versions_['anyio']}, "
        f"uvloop {versions_['uvloop']}, redis-py {versions_['redis']}, redis-server "
        f"{versions_['redis-server']}. {processes} processes on one redis-server, unpinned; "
        "default presence and cluster settings (`batch_window` 50 ms, heartbeat 5 s); "
        f"{settings['sockets_per_process']} in-process sockets per process, entries spread "
        f"over them; bursts of {burst:,} changes in one loop, {settings['reps']} "
        "repetitions each: median (min-max).",
        "",
        f"**Time until every process agrees**, ms: from the first `track` (`untrack`) of a "
        f"burst until `presence.list` on all {processes} processes holds every change "
        "(checked with `presence.get` of each key, 1 ms resolution); the subscriber row: "
        "until every subscriber's list, kept from `presence_state` and `presence_diff`, "
        "does. Last column: bursts during which a process ran a full (generation 2) garbage "
        "collection, and the longest such pause.",
        "",
        "| Setup | joins | leaves | full collections |",
        "|---|--:|--:|--:|",
    ]
    for key in SETUPS:
        if not runs[key]:
            continue
        cells = []
        for action in ("join", "leave"):
            med, low, high = stats([r[action]["agree_ms"] for r in runs[key]])
            cells.append(f"{ms(med)} ({ms(low)}-{ms(high)})")
        bursts = [r[action] for r in runs[key] for action in ("join", "leave")]
        full = [b for b in bursts if any(b["full_collections"])]
        pause = max((max(b["gc_ms"]) for b in full), default=0.0)
        gc_cell = f"{len(full)} of {len(bursts)}" + (f", {ms(pause)} ms" if full else "")
        lines.append(f"| {label(key, members)} | {cells[0]} | {cells[1]} | {gc_cell} |")
    setups, teardowns = report["setups"], report["teardowns"]
    if setups:
        med, low, high = stats([s["agree_ms"] for s in setups])
        gone, gone_low, gone_high = stats([s["agree_ms"] for s in teardowns])
        lines += [
            "",
            f"Tracking the {members:,} members themselves (a third on each process, one loop "
            f"each; before the bursts with members, in every repetition): every process "
            f"agreed after {ms(med)} ms ({ms(low)}-{ms(high)}), in "
            f"{statistics.median(s['publishes'] for s in setups):g} PUBLISH calls (at most "
            f"1,000 changes per message); untracking them: {ms(gone)} ms "
            f"({ms(gone_low)}-{ms(gone_high)}).",
        ]
    if report.get("gc_after"):
        before, after = report["gc_before"], report["gc_after"]
        objects = statistics.median(
            (a["objects"] - b["objects"]) / members for a, b in zip(after, before, strict=True)
        )
        lines += [
            "",
            f"A full garbage collection of a process (median of the {processes}) took "
            f"{statistics.median(b['collect'] for b in before) * 1e3:.1f} ms before these "
            f"members were tracked and {statistics.median(a['collect'] for a in after) * 1e3:.1f}"
            f" ms after: every process holds every member, {objects:.1f} objects the collector "
            "tracks per member (the process's other objects: its 100 in-process clients and "
            "their sessions, the modules).",
        ]
    lines += [
        "",
        "**Bytes on the broker per change** (Redis `INFO stats`), median: published = what "
        "the processes sent Redis (the PUBLISH commands); delivered = what Redis sent them "
        f"(each message to all {processes} processes subscribed to the cluster channel, the "
        "sender's own copy included). PUBLISH calls per burst (a heartbeat, when one fell in "
        "the interval, is counted too).",
        "",
        "| Setup | change | PUBLISH calls | published, bytes | delivered, bytes |",
        "|---|---|--:|--:|--:|",
    ]
    for key in ("empty", "one", "spread"):
        for action in ("join", "leave"):
            rows = [r[action] for r in runs[key]]
            if not rows:
                continue
            n = rows[0]["count"]
            pubs = statistics.median(r["publishes"] for r in rows)
            bin_ = statistics.median(r["bytes_in"] / n for r in rows)
            bout = statistics.median(r["bytes_out"] / n for r in rows)
            lines.append(
                f"| {label(key, members)} | {action} | {pubs:g} | {bin_:,.1f} | {bout:,.1f} |"
            )
    lines += [
        "",
        "**CPU per change**, µs, median: `process_time` over the burst (until it settled), "
        "less the polls, over the changes; in the process whose sockets changed, and in each "
        "of the two others (garbage collections included).",
        "",
        "| Setup | join: that process | join: the others | leave: that process "
        "| leave: the others |",
        "|---|--:|--:|--:|--:|",
    ]
    for key in ("empty", "one", "nowindow"):
        rows = runs[key]
        if not rows:
            continue
        cells = []
        for action in ("join", "leave"):
            sender = statistics.median(r[action]["cpu_us_per_change"][0] for r in rows)
            others = statistics.median(c for r in rows for c in r[action]["cpu_us_per_change"][1:])
            cells += [f"{sender:,.1f}", f"{others:,.1f}"]
        lines.append(f"| {label(key, members)} | {' | '.join(cells)} |")
    mem = report.get("memory")
    if mem:
        lines += memory_lines(mem)
    cost = report.get("list_cost")
    if cost:
        lines += [
            "",
            f"`presence.list` of a topic of {cost['members']:,} members, in a process of the "
            f"cluster: {cost['list'] * 1e3:.2f} ms per call (median of 20; the longest "
            f"{cost['list_max'] * 1e3:.2f} ms; {cost['list_without_gc'] * 1e3:.2f} ms with the "
            f"garbage collector off: the rest is collections its new lists set off); "
            f"`presence.get` of one key: {cost['get'] * 1e6:.2f} µs.",
        ]
    other = report.get("other_cpu_pct")
    if other is not None:
        lines += [
            "",
            f"The machine was {report['busy_at_start_pct']:.0f}% busy before the run; other "
            f"processes used {other:.0f}% of a CPU during it.",
        ]
    problems = report["problems"]
    if problems:
        lines += ["", "Problems seen during the run:", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines).rstrip() + "\n"


def memory_lines(mem: Json) -> list[str]:
    n, k = mem["entries"], mem["own_sockets"]
    traced = [r["traced"] for r in mem["tracked"]]
    left = [r["traced"] for r in mem["left"]]
    rss, rss_left = mem["rss_tracked"], mem["rss_left"]
    own = mem["own"]["traced"] / k
    lines = [
        "",
        f"**Memory per tracked entry**, bytes: {n:,} entries tracked by one process, after "
        "the others agreed and `gc.collect()`. tracemalloc: the Python allocations still held "
        "(a second pass, with new keys); RSS: the resident set's growth (a first pass, "
        "without tracemalloc; coarser: allocators keep and reuse pages). Meta as above; the "
        "key strings (made by the harness, kept by presence) are counted.",
        "",
        "| | tracemalloc | RSS |",
        "|---|--:|--:|",
        f"| in the process that tracks them | {traced[0] / n:,.0f} | {rss[0] / n:,.0f} |",
        f"| in each other process (its copy) | {statistics.median(traced[1:]) / n:,.0f} | "
        f"{statistics.median(rss[1:]) / n:,.0f} |",
        f"| still held once all {n:,} are untracked, in all: owner / others | "
        f"{left[0]:,} / {', '.join(f'{x:,}' for x in left[1:])} | "
        f"{rss_left[0]:,} / {', '.join(f'{x:,}' for x in rss_left[1:])} |",
        f"| in the process that tracks them, {k} entries each on a socket of its own | "
        f"{own:,.0f} | |",
        "",
        "Where the bytes were allocated (tracemalloc, by source line):",
        "",
    ]
    reads = (
        ("tracked, owner", mem["tracked"][0], n),
        ("tracked, another process", mem["tracked"][1], n),
        (f"{k} tracked on sockets of their own, owner", mem["own"], k),
        ("left after untracking, owner", mem["left"][0], 1),
        ("left after untracking, another process", mem["left"][1], 1),
    )
    for who, read, per in reads:
        cells = []
        for where, size, count in read.get("top", []):
            if size / per < (10 if per > 1 else 10_000):
                continue
            short = where.split("/src/", 1)[-1].split("site-packages/", 1)[-1]
            short = (
                short.split("/lib/python3", 1)[-1].split("/", 1)[-1] if "/lib/" in short else short
            )
            cells.append(f"`{short}` {size / per:,.0f}" + (f" ({count:,} blocks)"))
        unit = "bytes per entry" if per > 1 else "bytes"
        lines.append(f"- {who}, {unit}: " + "; ".join(cells))
    return lines


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions: a smoke run")
    parser.add_argument("--reps", type=int, help="repetitions of each burst (default 20)")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=1_000)
    parser.add_argument(
        "--fresh-sockets",
        type=int,
        help="entries tracked each on a socket of its own, for memory (1,000; 200 with --quick)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="seconds to wait at most for an idle machine first (default 30; 5 with --quick)",
    )
    parser.add_argument("--out", help="results/<OUT>.{md,json} (default presence[-quick])")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every burst")
    options = parser.parse_args()
    if options.quiet_wait is None:
        options.quiet_wait = 5 if options.quick else 30
    if options.fresh_sockets is None:
        options.fresh_sockets = 200 if options.quick else 1000
    if options.reps is None:
        options.reps = 3 if options.quick else 20
    started = time.monotonic()
    out = options.out or ("presence-quick" if options.quick else "presence")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)  # (SIGINT too: a background job inherits it ignored)
    try:
        report = run(options)
    except BenchError as exc:
        sys.exit(f"presence benchmark failed: {exc}")
    except KeyboardInterrupt as exc:  # every child process was stopped on the way out
        sys.exit(f"presence benchmark interrupted ({exc or 'SIGINT'}); nothing written")
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    text = markdown(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out}.md").write_text(text)
    (RESULTS / f"{out}.json").write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    print(f"(written to benchmarks/results/{out}.md and .json; {report['elapsed_s']} s)")


if __name__ == "__main__":
    main()
