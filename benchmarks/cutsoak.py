#!/usr/bin/env python3
"""Unnoticed cuts: connection state recovery when the server has not noticed the drop.

One command::

    .venv/bin/python benchmarks/cutsoak.py            # 1,000 cuts per setup and transport

tests/js/cut_soak.js puts a TCP proxy of its own between one socket.io-client and the
servers, and cuts every connection of that client again and again the way a failing network
looks to the server: the client's side is reset, so it notices at once and reconnects with
its pid and last offset; the server's side stays open and silent (no FIN; what the server
writes is read and thrown away), so the old socket is still alive when the client comes
back. A feeder meanwhile sends numbered ticks to the client's room. Counted: cuts whose
reconnect recovered the socket, fresh sockets, and ticks lost, duplicated or reordered.

Setups, each on fresh uvicorn processes (uvloop, httptools) running tests/apps/recovery.py
from a snapshot of the tree:

- one process, memory store;
- three processes sharing a throwaway redis-server (Redis store); each reconnect goes
  through the next process, so the old socket lives on another one;
- for comparison, Node's socket.io server (the version in package-lock.json) with its
  connection state recovery on, one process (benchmarks/apps/node_recovery.js).

Results go to benchmarks/results/cutsoak.{json,md} and, for a default run, into the
"Unnoticed cuts" section of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import run  # benchmarks/run.py: child processes, servers, snapshots, machine and versions
from run import CHILDREN, RESULTS, ROOT, Json, ServerSpec, Settings

MARK_START = "<!-- cutsoak:start -->"
MARK_END = "<!-- cutsoak:end -->"
APP = ServerSpec("rooms", "rooms", "tests.apps.recovery:app")
SETUPS = {"one": 1, "three": 3, "node": 1}  # processes; "node" is Node's socket.io server
MODES = ("websocket", "polling")


def snapshot(dest: Path) -> str:
    """rooms/ and benchmarks/apps/ as run.py snapshots them, plus the recovery test app."""
    digest = run.snapshot_sources(dest)
    apps = dest / "tests" / "apps"
    apps.mkdir(parents=True)
    for name in ("__init__.py", "common.py", "recovery.py"):
        shutil.copy(ROOT / "tests" / "apps" / name, apps / name)
    (dest / "tests" / "__init__.py").write_text("")
    return digest


def soak(urls: list[str], mode: str, cycles: int) -> Json:
    deadline_ms = 60_000 + cycles * 1_000
    proc = CHILDREN.spawn(
        ["node", str(ROOT / "tests" / "js" / "cut_soak.js"), mode, str(cycles), urls[0],
         ",".join(urls), str(deadline_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_PATH": str(ROOT / "node_modules")},
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=deadline_ms / 1000 + 10)
    finally:
        CHILDREN.stop(proc)
    if proc.returncode != 0:
        return {"error": err.strip()[-500:]}
    result: Json = json.loads(out)
    return result


def measure(
    setup: str, mode: str, cycles: int, settings: Settings, logdir: Path, source: Path
) -> Json:
    result: Json = {"setup": setup, "mode": mode}
    if setup == "node":
        return {**result, **node_soak(mode, cycles, logdir)}
    with ExitStack() as stack:
        env: dict[str, str] = {}
        try:
            if SETUPS[setup] > 1:
                env["ROOMS_BROKER"] = stack.enter_context(run.redis_server(settings, logdir)).url
            servers = [
                stack.enter_context(run.server(APP, settings, logdir, source, env))
                for _ in range(SETUPS[setup])
            ]
        except run.BenchError as exc:
            return {**result, "error": str(exc)}
        result.update(soak([f"http://{run.HOST}:{s.port}" for s in servers], mode, cycles))
        result["server_log"] = [line for s in servers for line in run.log_issues(s.log)]
    return result


def node_soak(mode: str, cycles: int, logdir: Path) -> Json:
    port = run.free_port()
    log = logdir / f"node-{port}.log"
    with log.open("w") as out:
        proc = CHILDREN.spawn(
            ["node", str(run.APPS / "node_recovery.js"), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NODE_PATH": str(ROOT / "node_modules")},
        )
    try:
        run.wait_listening(proc, port, "node socket.io", log)
        url = f"http://{run.HOST}:{port}"
        return soak([url], mode, cycles)
    except run.BenchError as exc:
        return {"error": str(exc)}
    finally:
        CHILDREN.stop(proc)


def markdown(report: Json) -> str:
    machine, versions = report["machine"], report["versions"]
    lines = [
        f"Run {report['date']} on {machine.get('cpu', '?')}, rooms "
        f"{machine.get('git_commit', '?')}; {report['cycles']:,} cuts per row; uvicorn "
        f"{versions.get('uvicorn', '?')}, Node {versions.get('node', '?')}, socket.io-client "
        f"{versions.get('socket.io-client', '?')}.",
        "",
        "| Setup | Transport | Cuts | Recovered | Fresh socket | Ticks | Lost | Duplicated "
        "| Reordered | Cuts/s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    names = {
        "one": "rooms, 1 process, memory store",
        "three": "rooms, 3 processes, Redis store",
        "node": f"Node socket.io {report['versions'].get('socket.io', '?')}, 1 process",
    }
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {names[r['setup']]} | {r['mode']} | failed: {r['error'][:80]} |")
            continue
        lines.append(
            f"| {names[r['setup']]} | {r['mode']} | {r['cycles']:,} | {r['recovered']:,} | "
            f"{r['fresh']:,} | {r['ticks']:,} | {r['lost']:,} | {r['duplicated']:,} | "
            f"{r['reordered']:,} | {r['cutsPerSecond']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=1000, help="cuts per setup and transport")
    parser.add_argument("--setups", default="one,three,node", help="comma list of one,three,node")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of websocket,polling")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, run._terminate)
    setups = [s for s in args.setups.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if set(setups) - set(SETUPS) or set(modes) - set(MODES):
        print(f"unknown setup or mode in {setups} {modes}", file=sys.stderr)
        return 2
    settings = Settings.servers_only("websockets-sansio")
    run.raise_nofile()
    started = dt.datetime.now(dt.UTC)
    results: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="rooms-cutsoak-") as tmp:
        logdir = Path(tmp)
        source = logdir / "src"
        digest = snapshot(source)
        for setup in setups:
            for mode in modes:
                print(f"{setup:<6} {mode:<10}", end=" ", flush=True)
                result = measure(setup, mode, args.cycles, settings, logdir, source)
                results.append(result)
                print(json.dumps({k: v for k, v in result.items() if k != "server_log"}))
    versions = run._versions()
    for package in ("socket.io-client", "socket.io"):
        manifest = ROOT / "node_modules" / package / "package.json"
        versions[package] = json.loads(manifest.read_text())["version"]
    report: Json = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**run._machine(), "source_snapshot": digest},
        "versions": versions,
        "cycles": args.cycles,
        "results": results,
    }
    table = markdown(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cutsoak.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cutsoak.md").write_text(table)
    print()
    print(table)
    default = args.cycles == 1000 and setups == list(SETUPS) and modes == list(MODES)
    if default and not args.no_readme:
        command = ".venv/bin/python benchmarks/cutsoak.py"
        if run.replace_between(MARK_START, MARK_END, f"```sh\n{command}\n```\n\n{table}"):
            print("updated the Unnoticed cuts section of benchmarks/README.md")
    failed = any(
        "error" in r or (r["setup"] != "node" and r["recovered"] != r["cycles"]) for r in results
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
