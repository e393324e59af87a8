"""Drive real socket.io-client instances from a test, one step at a time (tests/js/driver.js).

::

    js.connect("ada", server.url, auth={"name": "ada"})
    assert js.call("ada", "join", "lobby") == [["lobby", ...]]
    pending = js.start("call", name="ada", event="slow")   # runs while the test acts
    server.kill()
    js.result(pending)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
from typing import Any

from tests.conftest import NODE_MODULES, ROOT, kill_group, run_node, spawn


class JsError(AssertionError):
    """A driver command failed; the message is the client's own."""


class JsDriver:
    def __init__(self) -> None:
        self.process = spawn(
            ["node", str(ROOT / "tests" / "js" / "driver.js")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )
        self._seq = 0
        self._results: dict[int, dict[str, Any]] = {}
        self._arrived: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._arrived.put(json.loads(line))
        self._arrived.put(None)

    def start(self, cmd: str, **fields: Any) -> int:
        """Send a command without waiting; returns its id for :meth:`result`."""
        assert self.process.stdin is not None
        self._seq += 1
        self.process.stdin.write(json.dumps({"id": self._seq, "cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        return self._seq

    def result(self, command: int, timeout: float = 30.0) -> Any:
        while command not in self._results:
            try:
                answer = self._arrived.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"expected command {command} to finish in {timeout} s"
                ) from None
            if answer is None:
                assert self.process.stderr is not None
                raise AssertionError(f"the driver exited: {self.process.stderr.read()}")
            self._results[answer["id"]] = answer
        answer = self._results.pop(command)
        if not answer["ok"]:
            raise JsError(answer["error"])
        return answer["result"]

    def request(self, cmd: str, **fields: Any) -> Any:
        return self.result(self.start(cmd, **fields))

    # Shorthands for the common commands.

    def connect(self, name: str, url: str, mode: str = "default", **fields: Any) -> Any:
        return self.request("connect", name=name, url=url, mode=mode, **fields)

    def call(self, name: str, event: str, *args: Any, timeout: int = 5000) -> Any:
        return self.request("call", name=name, event=event, args=list(args), timeout=timeout)

    def events(self, name: str, count: int, timeout: int = 5000) -> list[tuple[str, list[Any]]]:
        found = self.request("events", name=name, count=count, timeout=timeout)
        return [(e["event"], e["args"]) for e in found]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the driver's cue to close its clients and exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        kill_group(self.process, grace=0)
        self._reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def cut_soak(mode: str, cycles: int, feed: str, backends: list[str]) -> dict[str, Any]:
    """Run tests/js/cut_soak.js: ``cycles`` network cuts the servers do not notice, between a
    listening socket.io-client (through a proxy to ``backends``, in turn) and its room's
    ticks (fed through ``feed``). Returns its counts: recovered, fresh, lost, duplicated,
    reordered, ticks."""
    deadline = 30_000 + cycles * 1_000
    done = run_node(
        "cut_soak.js", mode, str(cycles), feed, ",".join(backends), str(deadline),
        timeout=deadline / 1000 + 10,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"cut_soak.js failed: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
