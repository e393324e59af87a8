"""One process of the presence benchmark (``benchmarks/presence.py`` starts three).

    python presence_app.py REDIS_URL CLUSTER_PREFIX

A ``rooms.Server`` on the Redis broker, run with ``server.running()`` (no ASGI server: the
sockets that track are ``rooms.testing.TestClient`` connections made in this process).
The runner drives it with one JSON object per line on stdin; every answer is one JSON line
on stdout naming the command's ``id``: ``{"id": n, "done": {...}}`` or
``{"id": n, "error": "..."}``, and ``expect`` first says ``{"id": n, "armed": true}``.
Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process of the
machine), CPU is ``time.process_time()``. End of stdin stops the process cleanly.

Commands (``cmd``):

- ``sync``: wait until both other processes are known and their entries received;
- ``sockets {n}``: connect ``n`` more in-process clients (the sockets entries go to);
  answers the index of the first;
- ``config {window, max_tracks}``: the presence's ``batch_window`` and
  ``max_tracks_per_socket``;
- ``track {topic, prefix, start, count, meta}`` / ``untrack {...}``: one synchronous loop of
  ``presence.track`` (``untrack``) for the keys ``prefix + "%06d" % i``, key ``i`` by the
  ``i % n``-th of the first ``n`` sockets (or one socket each, from the
  ``one_each_from``-th on); answers when the loop started and ended;
- ``expect {topic, ranges, present, subscriber}``: arm, then poll every ``poll`` seconds until
  the last key of every range is in (``present``) or out of the topic, then check every
  key of every range: through ``presence.get`` of this process (what ``presence.list``
  would list under the key), or
  with ``subscriber`` through the list this process's subscriber client keeps from
  ``presence_state`` and ``presence_diff`` (as examples/presence.js does); answers when it
  first held, and how many polls that took;
- ``subscribe {topic}``: a new client, subscribed with ``presence.subscribe``;
- ``gc_cost``: the objects the garbage collector tracks, and how long a full collection
  takes;
- ``cpu``: this process's CPU seconds so far, and the garbage collector's time and
  collections per generation; ``calibrate {seconds}``: CPU per poll of a
  poll loop that never succeeds; ``list_cost {topic, calls}``: seconds per ``list`` (the
  median and the longest of ``calls``, and the median with the collector off) and per
  ``get`` of the topic;
- ``mem_start {traced}`` / ``mem_read {top}`` / ``mem_stop``: the RSS and (``traced``)
  tracemalloc's traced bytes, both after ``gc.collect()``, relative to ``mem_start``; with
  ``top``, the source lines that allocated most of what is still held.
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import sys
import time
import traceback
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

import rooms
from rooms.testing import TestClient

POLL = 0.001  # seconds between two looks while waiting for agreement


class GcClock:
    """Time spent in the garbage collector, and collections, per generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._began
            self.count[generation] += 1

    def read(self) -> dict[str, list[Any]]:
        return {"seconds": list(self.seconds), "count": list(self.count)}


def key(prefix: str, index: int) -> str:
    return f"{prefix}{index:06d}"


def rss() -> int:
    """Resident set size in bytes (/proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(
        self, server: rooms.Server, tg: anyio.abc.TaskGroup, clients: anyio.abc.TaskGroup
    ) -> None:
        self.server = server
        self.presence = server.presence
        self.tg = tg  # where commands and subscribers' readers run
        self.clients = clients  # where each client runs, until ``stopping``
        self.stopping = anyio.Event()
        self.sockets: list[rooms.Socket] = []
        self.shared = 0  # the first sockets: key number i is tracked by socket i % shared
        self.subscribed: dict[str, dict[str, list[dict[str, Any]]]] = {}  # topic → list
        self.mem_base: tuple[int, int] = (0, 0)
        self.mem_snapshot: tracemalloc.Snapshot | None = None
        self.gc = GcClock()

    async def connect(self) -> tuple[TestClient, rooms.Socket]:
        """A new in-process client, connected; it lives in a task of its own (a client's
        task group is left in the task that entered it) until ``stopping``, then closes as
        a leaving client does (not cancelled)."""
        client, sid = await self.clients.start(self._client)
        return client, self.server.of("/").sockets[sid]

    async def _client(self, *, task_status: anyio.abc.TaskStatus[Any]) -> None:
        async with TestClient(self.server, lifespan=False, timeout=30) as client:
            task_status.started((client, await client.connect()))
            await self.stopping.wait()

    # ------------------------------------------------------------------ commands

    async def sync(self, cmd: dict[str, Any]) -> dict[str, Any]:
        node = self.server.node
        assert node is not None
        await node.wait_for_peers(cmd["peers"], timeout=30)
        await self.presence.wait_synced(timeout=30)
        return {"uid": node.uid, "peers": sorted(node.peers)}

    async def sockets_(self, cmd: dict[str, Any]) -> dict[str, Any]:
        first = len(self.sockets)
        for _ in range(cmd["n"]):
            self.sockets.append((await self.connect())[1])
        self.shared = self.shared or len(self.sockets)
        return {"first": first, "sockets": len(self.sockets)}

    async def config(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if "window" in cmd:
            self.presence.batch_window = cmd["window"]
        if "max_tracks" in cmd:
            self.presence.max_tracks_per_socket = cmd["max_tracks"]
        return {"window": self.presence.batch_window}

    async def track(self, cmd: dict[str, Any]) -> dict[str, Any]:
        topic, prefix, start, count = cmd["topic"], cmd["prefix"], cmd["start"], cmd["count"]
        meta = cmd.get("meta") or {}
        cpu = time.process_time()
        if "one_each_from" in cmd:  # a socket of its own for each entry
            at = cmd["one_each_from"]
            sockets = self.sockets[at : at + count]
        else:
            sockets = [self.sockets[i % self.shared] for i in range(start, start + count)]
        track = self.presence.track
        keys = [key(prefix, i) for i in range(start, start + count)]
        metas = [{"name": k, **meta} for k in keys]
        prepared = time.process_time() - cpu  # this harness's work, not presence's
        began = time.monotonic_ns()
        for k, m, sock in zip(keys, metas, sockets, strict=True):
            track(sock, topic, k, m)
        ended = time.monotonic_ns()
        return {"began": began, "ended": ended, "harness_cpu": prepared}

    async def untrack(self, cmd: dict[str, Any]) -> dict[str, Any]:
        topic, prefix, start, count = cmd["topic"], cmd["prefix"], cmd["start"], cmd["count"]
        cpu = time.process_time()
        keys = [key(prefix, i) for i in range(start, start + count)]
        sockets = [self.sockets[i % self.shared] for i in range(start, start + count)]
        untrack = self.presence.untrack
        prepared = time.process_time() - cpu
        began = time.monotonic_ns()
        for k, sock in zip(keys, sockets, strict=True):
            untrack(sock, topic, k)
        ended = time.monotonic_ns()
        return {"began": began, "ended": ended, "harness_cpu": prepared}

    async def expect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        topic, present, ranges = cmd["topic"], cmd["present"], cmd["ranges"]
        poll = cmd.get("poll", POLL)
        last = [key(prefix, start + count - 1) for prefix, start, count in ranges]
        every = [
            key(prefix, i) for prefix, start, count in ranges for i in range(start, start + count)
        ]
        if cmd.get("subscriber"):
            listing = self.subscribed[topic]

            def holds(k: str) -> bool:
                return k in listing
        else:
            get = self.presence.get

            def holds(k: str) -> bool:
                return bool(get(topic, k))  # what presence.list(topic) would list under k

        say({"id": cmd["id"], "armed": True})
        polls = 0
        with anyio.fail_after(cmd.get("timeout", 30)):
            while True:
                if all(holds(k) is present for k in last):
                    seen, cpu = time.monotonic_ns(), time.process_time()
                    # Every key, with no await since seen: the same state. (Not through
                    # presence.list: at 10,000 members a call costs milliseconds and sets
                    # off collections of its own.)
                    held = all(holds(k) is present for k in every)
                    checked = time.process_time() - cpu  # this harness's work
                    if held:
                        return {"seen": seen, "polls": polls, "harness_cpu": checked}
                polls += 1
                await anyio.sleep(poll)

    async def subscribe(self, cmd: dict[str, Any]) -> dict[str, Any]:
        topic = cmd["topic"]
        client, sock = await self.connect()
        await self.presence.subscribe(sock, topic)
        event, (payload,) = await client.receive()
        assert event == "presence_state" and payload["topic"] == topic, (event, payload)
        listing = self.subscribed[topic] = {k: list(v) for k, v in payload["state"].items()}
        self.tg.start_soon(self._keep, client, topic, listing)
        return {"state": len(listing)}

    async def _keep(self, client: TestClient, topic: str, listing: dict[str, Any]) -> None:
        """Apply the diffs as the wire contract says: leaves by ref, then joins."""
        while True:
            event, (payload,) = await client.receive(timeout=math.inf)
            if event != "presence_diff" or payload["topic"] != topic:
                continue
            for k, metas in payload["leaves"].items():
                gone = {m["ref"] for m in metas}
                kept = [m for m in listing.get(k, []) if m["ref"] not in gone]
                if kept:
                    listing[k] = kept
                else:
                    listing.pop(k, None)
            for k, metas in payload["joins"].items():
                added = {m["ref"] for m in metas}
                listing[k] = [m for m in listing.get(k, []) if m["ref"] not in added] + metas

    async def cpu(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"cpu": time.process_time(), "gc": self.gc.read()}

    async def calibrate(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """CPU seconds per poll of the expect loop (a look at a key that is not there)."""
        get, polls = self.presence.get, 0
        cpu = time.process_time()
        deadline = time.monotonic() + cmd.get("seconds", 0.5)
        while time.monotonic() < deadline:
            if get("nowhere", "nobody"):
                break
            polls += 1
            await anyio.sleep(POLL)
        return {"per_poll": (time.process_time() - cpu) / polls, "polls": polls}

    async def list_cost(self, cmd: dict[str, Any]) -> dict[str, Any]:
        topic, calls = cmd["topic"], cmd["calls"]
        list_, get = self.presence.list, self.presence.get
        some = next(iter(list_(topic)))

        def timed() -> list[float]:
            took = []
            for _ in range(calls):
                began = time.perf_counter()
                list_(topic)
                took.append(time.perf_counter() - began)
            return took

        gc.collect()
        with_gc = timed()
        gc.disable()  # the same without the collections its allocations set off
        try:
            without_gc = timed()
        finally:
            gc.enable()
        began = time.perf_counter()
        for _ in range(calls * 100):
            get(topic, some)
        got = time.perf_counter()
        return {
            "list": statistics.median(with_gc),
            "list_max": max(with_gc),
            "list_without_gc": statistics.median(without_gc),
            "get": (got - began) / (calls * 100),
            "members": len(list_(topic)),
        }

    async def gc_cost(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Objects the collector tracks, and the shortest of three full collections."""
        took = []
        for _ in range(3):
            began = time.perf_counter()
            gc.collect()
            took.append(time.perf_counter() - began)
        return {"objects": len(gc.get_objects()), "collect": min(took)}

    async def mem_start(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """From now, traced bytes (``traced``) or only RSS."""
        gc.collect()
        if cmd.get("traced"):
            tracemalloc.start()
            self.mem_snapshot = tracemalloc.take_snapshot()
        self.mem_base = (tracemalloc.get_traced_memory()[0], rss())
        return {"rss": self.mem_base[1]}

    async def mem_read(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """What is held since ``mem_start``; with ``top``, the lines that allocated most of
        what is still traced."""
        gc.collect()
        traced, resident = tracemalloc.get_traced_memory()[0], rss()
        read: dict[str, Any] = {
            "traced": traced - self.mem_base[0],
            "rss": resident - self.mem_base[1],
        }
        if cmd.get("top") and self.mem_snapshot is not None:
            stats = tracemalloc.take_snapshot().compare_to(self.mem_snapshot, "lineno")
            read["top"] = [
                [str(stat.traceback[0]), stat.size_diff, stat.count_diff]
                for stat in stats[: cmd["top"]]
            ]
        return read

    async def mem_stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        tracemalloc.stop()
        self.mem_snapshot = None
        return {}

    async def run(self, cmd: dict[str, Any]) -> None:
        handler = getattr(self, {"sockets": "sockets_"}.get(cmd["cmd"], cmd["cmd"]))
        try:
            done = await handler(cmd)
        except Exception as exc:  # the runner stops, showing this process's log
            traceback.print_exc()
            say({"id": cmd["id"], "error": f"{type(exc).__name__}: {exc}"})
            return
        say({"id": cmd["id"], "done": done})


async def main(url: str, prefix: str) -> None:
    server = rooms.Server(broker=url, cluster_prefix=prefix)
    _ = server.presence  # made before the server runs: it joins the others at start
    async with server.running(), anyio.create_task_group() as clients:
        async with anyio.create_task_group() as tg:
            worker = Worker(server, tg, clients)
            assert server.node is not None
            say({"ready": True, "uid": server.node.uid, "rooms": rooms.__file__})
            while line := await anyio.to_thread.run_sync(sys.stdin.readline):
                tg.start_soon(worker.run, json.loads(line))
            tg.cancel_scope.cancel()  # end of stdin: the runner is done (or gone)
        worker.stopping.set()  # then the clients leave, before the server stops


if __name__ == "__main__":
    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    anyio.run(main, sys.argv[1], sys.argv[2], backend="asyncio", backend_options=options)
