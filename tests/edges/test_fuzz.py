"""A seeded, bounded fuzz (DESIGN §6 and §7; issue 10, "How it is tested"): tens of
thousands of mutated Engine.IO and Socket.IO packets, over websocket and long-polling,
against a real server process (uvicorn on asyncio, hypercorn on trio), while a well-behaved
client calls ``echo`` all along.

What must hold: the canary never misses an ack; the server stays alive and logs no
unhandled exception; no answer says "internal error" (HTTP 500, websocket close 1011); and
once the fuzzing stops the server's structure is back to baseline within a deadline (the
canary's session only, nothing queued, no dynamic namespace left), then to nothing once the
canary leaves.

Replay: the seed is in every assertion message, and ``ROOMS_FUZZ_SEED=<n>`` runs another.
Each connection a worker opens (a "life") draws from ``Random(f"{seed}/{worker}/{life}")``,
so what it sends is fixed by the seed (cut short where the server closes it); only the
interleaving of workers is the scheduler's. The frames sent to each session are kept
(abbreviated), with the life that sent them, and attached to any failure naming its sid.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
import select
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import websocket

from tests.conftest import SERVERS, LiveServer, start_server

pytestmark = pytest.mark.interop

SEED = int(os.environ.get("ROOMS_FUZZ_SEED", "1010"))
BUDGET = 40.0  # seconds of fuzzing at most...
MAX_PACKETS = 60_000  # ...and packets at most, per server: bounded both ways
MIN_PACKETS = 20_000  # what a run must actually have sent to count
MIN_PER_TRANSPORT = 3_000
WEBSOCKET_WORKERS = 14
POLLING_WORKERS = 6
ACK_DEADLINE = 5.0  # generous: the canary's every ack must come within this
CANARY_EVERY = 0.05
SETTLE = 20.0  # for the structure to be back to baseline (abandoned polling sessions
# last a ping interval and a ping timeout: 1 s + 2 s here)
OVERSIZE_PER_WORKER = 2  # frames past max_payload are costly: a few only
MAX_PAYLOAD = 1_000_000  # the server's (rooms.Server's default)
IO_TIMEOUT = 3.0  # every socket operation of the workers

PH = '{"_placeholder":true,"num":%d}'

# ----------------------------------------------------------------------------- frames

Frame = str | bytes
"""One Engine.IO packet as a websocket frame: text, or bytes for a binary MESSAGE."""


class BadText(bytes):
    """A text frame whose payload is not UTF-8 (websocket-client sends bytes as they are)."""


# Socket.IO packets (the text inside an Engine.IO MESSAGE) as clients send them, with the
# number of binary attachments each announces. Valid-looking on purpose: a packet must get
# past the decoder for the namespaces, handlers, acks and rooms behind it to be exercised.
# The canary is in room r1, so what goes to r1 is relayed to a real client. No "flood": its
# count drives the test app's own loop, which is no input bound of rooms.
CONNECTS: list[tuple[str, int]] = [
    ("0", 0),
    ("0", 0),
    ('0{"token":"t"}', 0),
    ('0/dyn-1,{"member":true}', 0),
    ('0/dyn-%d,{"member":true}', 0),
    ("0/dyn-%d,", 0),  # refused: not a member
    ('0/dyn-3,{"member":false}', 0),
    ("0/admin,", 0),  # no such namespace
    ("0/admin,{}", 0),
]
PACKETS: list[tuple[str, int]] = [
    *CONNECTS,
    ("1", 0),
    ("1/dyn-1,", 0),
    ('2["echo",1]', 0),
    ('21["echo",{"a":[1,2]}]', 0),
    ('22["echo","é☃𝄞",null,true,-0.5,1e300,{"":[]}]', 0),
    ('23["echo","\\ud800"]', 0),  # a lone surrogate: JSON.parse accepts its escape
    ('2["join","r1"]', 0),
    ('24["join","r2"]', 0),
    ('2["bcast","r1","hi",{"x":null}]', 0),
    ('2["bcast","r1","\\udfff"]', 0),
    ('25["bcast","r2",[1,2,3]]', 0),
    ('2["bcast","r1"]', 0),
    ('2/dyn-1,6["echo","child"]', 0),
    ('2/dyn-5,["x"]', 0),
    ('2/admin,["echo"]', 0),
    ('2["nobody listens",{}]', 0),
    ('2["connect"]', 0),  # reserved
    ("35[1]", 0),
    ('37["late",{"a":1}]', 0),
    ("3/dyn-1,7[]", 0),
    ('4{"message":"x"}', 0),
    ('4/dyn-1,{"message":"x"}', 0),
    ('51-["echo",' + PH % 0 + "]", 1),
    ('518-["echo",' + PH % 0 + "]", 1),
    ('52-["echo",' + PH % 0 + ',{"k":' + PH % 1 + "}]", 2),
    ('53-9["bcast","r1",' + PH % 0 + "," + PH % 1 + "," + PH % 2 + "]", 3),
    ('51-/dyn-1,["echo",' + PH % 0 + "]", 1),
    ("61-9[" + PH % 0 + "]", 1),
]
ENGINE_FRAMES = ["2", "3", "5", "6", "1", "0", "7", "", " ", "4", "2probe", "3probe", "9x"]
ALPHABET = '0123456789[]{}",:-/\\ \x1e\x00\t\n\u2028\ufeffeE.+aé☃𝄞'
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "1e308", "-0", "2e-400"]


def digits(rng: random.Random, count: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=count - 1))


class Mutator:
    """Draws fuzzing steps: a few frames that belong together (a packet and its
    attachments), weighted toward valid-looking packets."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.oversize_left = OVERSIZE_PER_WORKER
        self.hostile: list[Callable[[], list[Frame]]] = [
            self.huge_ack_id,
            self.huge_attachment_count,
            self.bad_placeholder,
            self.non_finite,
            self.deep,
            self.long_name,
            self.stray_binary,
            self.missing_attachments,
            self.record_separator,
            self.invalid_utf8,
            self.many_args,
            self.big,
        ]

    def connect(self) -> list[Frame]:
        return self.packet(*self.rng.choice(CONNECTS))

    def step(self) -> list[Frame]:
        rng = self.rng
        kind = rng.random()
        if kind < 0.50:
            return self.packet(*rng.choice(PACKETS))
        if kind < 0.78:
            frames = self.packet(*rng.choice(PACKETS))
            if rng.random() < 0.2:  # the Engine.IO type digit too
                frames[0] = self.mutate(str(frames[0]))
            else:
                frames[0] = "4" + self.mutate(str(frames[0])[1:])
            return frames
        if kind < 0.86:
            return [rng.choice(ENGINE_FRAMES)]
        return rng.choice(self.hostile)()

    def packet(self, text: str, attachments: int) -> list[Frame]:
        rng = self.rng
        if "%d" in text:
            text = text % rng.randint(0, 40)
        count = attachments
        if attachments and rng.random() < 0.1:
            count = max(0, attachments + rng.choice([-1, 1, 2]))  # too few, or too many
        return ["4" + text, *(self.blob() for _ in range(count))]

    def blob(self) -> bytes:
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:
            return b"\x00\xff"
        if kind < 0.6:
            return b"\xc3\x28\xff\xfe"  # never valid UTF-8: binary is never decoded
        if kind < 0.99:
            return rng.randbytes(rng.randint(0, 2000))
        return rng.randbytes(rng.randint(100_000, 300_000))

    def mutate(self, text: str) -> str:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            n = len(text)
            i = rng.randint(0, n)
            op = rng.randrange(7)
            if op == 0 and n:  # flip
                i = min(i, n - 1)
                text = text[:i] + rng.choice(ALPHABET) + text[i + 1 :]
            elif op == 1:  # insert
                text = text[:i] + "".join(rng.choices(ALPHABET, k=rng.randint(1, 4))) + text[i:]
            elif op == 2:  # delete
                text = text[:i] + text[i + rng.randint(1, 6) :]
            elif op == 3:  # duplicate a span
                j = rng.randint(i, n)
                text = text[:j] + text[i:j] + text[j:]
            elif op == 4:  # truncate
                text = text[:i]
            elif op == 5:  # a digit run grows past every bound
                runs = list(re.finditer(r"\d+", text))
                if runs:
                    run = rng.choice(runs)
                    huge = digits(rng, rng.choice([16, 17, 30, 3000]))
                    text = text[: run.start()] + huge + text[run.end() :]
            else:  # splice with another packet
                other = rng.choice(PACKETS)[0]
                text = text[:i] + other[rng.randint(0, len(other)) :]
        return text

    # Hostile steps: each aims at one bound of DESIGN §6.

    def huge_ack_id(self) -> list[Frame]:
        rng = self.rng
        number = rng.choice(
            ["9007199254740991", "9007199254740992", digits(rng, rng.choice([17, 100, 5000]))]
        )
        return [rng.choice(['42%s["echo",1]', "43%s[1]", '42/dyn-1,%s["echo"]']) % number]

    def huge_attachment_count(self) -> list[Frame]:
        rng = self.rng
        count = rng.choice(["0", "11", "-1", "", "9" * 20, digits(rng, 5000)])
        return [f'4{rng.choice("56")}{count}-["echo",{PH % 0}]', self.blob()]

    def bad_placeholder(self) -> list[Frame]:
        num = self.rng.choice(["1", "-1", '"0"', "1e400", "true", "0.5", "null", "1e20"])
        return ['451-["echo",{"_placeholder":true,"num":' + num + "}]", self.blob()]

    def non_finite(self) -> list[Frame]:
        rng = self.rng
        value = rng.choice(NON_FINITE)
        shape = rng.choice(
            [
                '42["echo",%s]',
                '421["echo",[1,{"k":%s}]]',
                '42["bcast","r1",%s]',
                '40{"a":%s}',
                "431[%s]",
                '40/dyn-2,{"member":true,"n":%s}',
            ]
        )
        return [shape % value]

    def deep(self) -> list[Frame]:
        rng = self.rng
        depth = rng.choice([31, 32, 33, 100, 1000, 100_000])
        shape = rng.randrange(5)
        if shape == 0:
            data = "[" * depth + "]" * depth
        elif shape == 1:
            data = '{"a":' * depth + "1" + "}" * depth
        elif shape == 2:
            data = "[" * depth  # never closed
        elif shape == 3:
            data = '"' + "[" * depth + '"'  # brackets in a string do not nest
        else:
            data = "[{" * (depth // 2) + "}]" * (depth // 2)
        return [rng.choice(['421["echo",%s]', '42["bcast","r1",%s]', "40%s"]) % data]

    def long_name(self) -> list[Frame]:
        rng = self.rng
        length = rng.choice([256, 257, 10_000, 200_000])
        shape = rng.choice(
            [
                '42["%s"]' % ("e" * length),
                "40/%s," % ("n" * length),
                "40/%s" % ("n" * length),
                '40/dyn-%s,{"member":true}' % ("7" * length),
                '421["join","%s"]' % ("r" * length),
                '42["bcast","%s",1]' % ("r" * length),
            ]
        )
        return [shape]

    def stray_binary(self) -> list[Frame]:
        return [self.blob() for _ in range(self.rng.randint(1, 3))]

    def missing_attachments(self) -> list[Frame]:
        # Two announced, one sent, then (maybe) a text frame where the second should be.
        frames: list[Frame] = ['452-["echo",' + PH % 0 + "," + PH % 1 + "]", self.blob()]
        if self.rng.random() < 0.5:
            frames.append('42["echo",1]')
        return frames

    def record_separator(self) -> list[Frame]:
        return [
            self.rng.choice(
                ['42["echo","a\x1eb"]', "4\x1e2", "\x1e", '42["echo",1]\x1e42["echo",2]', "\x1e6"]
            )
        ]

    def invalid_utf8(self) -> list[Frame]:
        if self.rng.random() < 0.5:
            return [BadText(b'42["echo","\xff\xfe"]')]
        return ['451-["echo",' + PH % 0 + "]", b"\xff\xfe\xfd\xc0\x80"]

    def many_args(self) -> list[Frame]:
        count = self.rng.choice([1000, 10_000, 100_000])
        return ['421["echo",' + ",".join(["1"] * count) + "]"]

    def big(self) -> list[Frame]:
        rng = self.rng
        if self.oversize_left > 0 and rng.random() < 0.3:
            self.oversize_left -= 1
            return ['42["echo","' + "x" * (MAX_PAYLOAD + 100) + '"]']
        return ['421["echo","' + "x" * rng.randint(10_000, 900_000) + '"]']


def describe(frame: Frame) -> str:
    kind = "text(bad utf-8)" if isinstance(frame, BadText) else type(frame).__name__
    shown = frame[:100]
    more = f" (+{len(frame) - 100})" if len(frame) > 100 else ""
    return f"{kind} {shown!r}{more}"


def polling_part(frame: Frame) -> bytes:
    """A websocket frame as one packet of a long-polling payload."""
    if isinstance(frame, BadText):
        return bytes(frame)
    if isinstance(frame, bytes):
        return b"b" + base64.b64encode(frame)
    return frame.encode()


# ----------------------------------------------------------------------------- the drivers


@dataclass
class Tally:
    packets: int = 0
    handshakes: int = 0
    refused: int = 0  # handshakes the server answered with an error, as it should
    upgrades: int = 0
    overlaps: int = 0
    closes: Counter[int] = field(default_factory=Counter)  # websocket close codes
    statuses: Counter[int] = field(default_factory=Counter)  # HTTP statuses
    timeouts: int = 0

    def add(self, other: Tally) -> None:
        for name in ("packets", "handshakes", "refused", "upgrades", "overlaps", "timeouts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.closes.update(other.closes)
        self.statuses.update(other.statuses)


class Run:
    """What the workers share: the server, when to stop, and what they saw."""

    def __init__(self, server: LiveServer, seed: int) -> None:
        self.server = server
        self.ws_url = server.url.replace("http://", "ws://")
        self.seed = seed
        self.stop = threading.Event()
        # sid -> the life that opened it ("ws-3/17"), then the frames it was sent
        self.journal: dict[str, list[str]] = {}
        self.anomalies: list[str] = []  # answers that say the server failed itself
        self.crashes: list[str] = []  # the harness's own errors

    def record(self, life: str, sid: str | None, frames: list[Frame]) -> None:
        if sid is not None:
            entries = self.journal.setdefault(sid, [f"life {life}"])
            if len(entries) < 300:
                entries.extend(describe(f) for f in frames)


class Worker:
    def __init__(self, run: Run, name: str) -> None:
        self.run = run
        self.name = name
        self.lives = 0
        self.rng = random.Random()  # one per life: see _main
        self.mutator = Mutator(self.rng)
        # Whether to answer a ping depends on when pings come: drawn apart, so that timing
        # does not shift the draws that choose the frames.
        self.pongs = random.Random(f"{run.seed}/{name}/pongs")
        self.ws = Tally()
        self.polling = Tally()
        self.thread = threading.Thread(target=self._main, name=name)

    @property
    def life_name(self) -> str:
        return f"{self.name}/{self.lives}"

    def _main(self) -> None:
        try:
            while not self.run.stop.is_set():
                self.lives += 1
                self.rng.seed(f"{self.run.seed}/{self.life_name}")
                self.life()
        except BaseException:  # a bug of the harness, reported as such
            self.run.crashes.append(f"{self.life_name}: {traceback.format_exc()}")

    def life(self) -> None:
        raise NotImplementedError

    def query(self, transport: str) -> str:
        """A handshake query: mostly valid, sometimes wrong in one way."""
        other = "polling" if transport == "websocket" else "websocket"
        if self.rng.random() < 0.93:
            return f"EIO=4&transport={transport}"
        return self.rng.choice(
            [
                f"EIO=3&transport={transport}",
                f"EIO=5&transport={transport}",
                f"EIO=&transport={transport}",
                f"transport={transport}",
                "EIO=4&transport=carrier-pigeon",
                "EIO=4",
                f"EIO=4&transport={other}",
                f"EIO=4&transport={transport}&sid=nobody-has-this-sid",
            ]
        )

    # -- websocket, shared by the websocket workers and the polling workers' upgrades

    def open_ws(self, query: str) -> websocket.WebSocket:
        ws = websocket.WebSocket(skip_utf8_validation=True)
        try:
            ws.connect(f"{self.run.ws_url}/socket.io/?{query}", timeout=IO_TIMEOUT)
        except websocket.WebSocketBadStatusException:
            self.ws.refused += 1  # an HTTP answer instead of the upgrade, as it should be
            ws.shutdown()
            raise
        except BaseException:
            ws.shutdown()  # websocket-client leaves the socket of a failed connect open
            raise
        return ws

    def send_ws(self, ws: websocket.WebSocket, frames: list[Frame], sid: str | None) -> bool:
        """Send ``frames``, reading what came meanwhile; False once the server closed."""
        self.run.record(self.life_name, sid, frames)
        for frame in frames:
            # A text frame of invalid UTF-8 never reaches rooms: the ASGI server decodes text
            # frames (and uvicorn 0.54's websockets-sansio logs a traceback doing so). Over
            # websocket its bytes go as a binary frame, which rooms must take as they are.
            if isinstance(frame, bytes):
                ws.send_binary(frame)
            else:
                ws.send(frame)
            self.ws.packets += 1
            if not self.read_ws(ws, 0.0, sid):
                return False
        return True

    def read_ws(self, ws: websocket.WebSocket, wait: float, sid: str | None) -> bool:
        """Read what the server sent (for up to ``wait`` s), answering its pings most of
        the time; False once it closed. Reading keeps its outbox moving."""
        deadline = time.monotonic() + wait
        for _ in range(256):
            remaining = max(0.0, deadline - time.monotonic())
            if ws.sock is None or not select.select([ws.sock], [], [], min(remaining, 0.1))[0]:
                if remaining <= 0 or self.run.stop.is_set():
                    return True
                continue
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                self.ws.closes[code] += 1
                if code == 1011:
                    self.run.anomalies.append(f"session {sid}: websocket closed with 1011")
                return False
            if data == b"2" and self.pongs.random() < 0.9:
                ws.send("3")
                self.ws.packets += 1
        return True

    def ws_session(self, ws: websocket.WebSocket, sid: str | None, connect: bool) -> None:
        """Fuzz an open websocket session, then leave in one of several ways."""
        rng = self.rng
        steps = [self.mutator.connect()] if connect and rng.random() < 0.85 else []
        steps += [self.mutator.step() for _ in range(rng.randint(1, 40))]
        for frames in steps:
            if self.run.stop.is_set() or not self.send_ws(ws, frames, sid):
                return
        ending = rng.random()
        if ending < 0.4:
            ws.close(timeout=0.5)
        elif ending < 0.55:
            self.send_ws(ws, ["41", "1"], sid) and self.read_ws(ws, 1.0, sid)
        elif ending < 0.7:
            self.read_ws(ws, 1.0, sid)  # let the server close it (or give up waiting)
        # else: drop the TCP connection without a close frame (the finally's shutdown)


class WebsocketWorker(Worker):
    """Short-lived raw websocket connections: open, a few mutated steps, leave."""

    def life(self) -> None:
        ws: websocket.WebSocket | None = None
        try:
            self.ws.handshakes += 1
            ws = self.open_ws(self.query("websocket"))
            opened = ws.recv()
            sid = json.loads(opened[1:])["sid"] if opened[:1] == "0" else None
            self.ws_session(ws, sid, connect=True)
        except (OSError, websocket.WebSocketException):
            pass  # the server closed the connection: what many steps ask for
        finally:
            if ws is not None:
                ws.shutdown()


class PollingWorker(Worker):
    """Long-polling sessions: POST payloads of several packets, polls, overlapping
    requests, unknown sids, and probe upgrades to websocket, good and bad."""

    def __init__(self, run: Run, name: str) -> None:
        super().__init__(run, name)
        self.http = httpx.Client(base_url=run.server.url, timeout=IO_TIMEOUT)

    def _main(self) -> None:
        with self.http:
            super()._main()

    def life(self) -> None:
        try:
            self.session()
        except httpx.TimeoutException:
            self.polling.timeouts += 1
        except (OSError, httpx.HTTPError, websocket.WebSocketException):
            pass

    def check(self, response: httpx.Response, sid: str | None, what: str) -> bool:
        """Whether the session is still usable after ``response``; a 5xx is a server bug."""
        self.polling.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.run.anomalies.append(
                f"session {sid}: {what} answered {response.status_code} {response.text[:200]!r}"
            )
        return response.status_code == 200

    def session(self) -> None:
        rng = self.rng
        self.polling.handshakes += 1
        method = "POST" if rng.random() < 0.02 else "GET"
        opened = self.http.request(method, f"/socket.io/?{self.query('polling')}")
        if not self.check(opened, None, "a handshake"):
            self.polling.refused += 1
            return
        sid = json.loads(opened.text.split("\x1e")[0][1:])["sid"]
        path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        pings = 0
        for n in range(rng.randint(1, 12)):
            if self.run.stop.is_set():
                return
            action = rng.random()
            if action < 0.65 or n == 0:
                steps = [self.mutator.connect()] if n == 0 and rng.random() < 0.85 else []
                steps += [self.mutator.step() for _ in range(rng.randint(1, 8))]
                frames = [frame for step in steps for frame in step] + ["3"] * min(pings, 1)
                pings = 0
                if not self.post(path, sid, frames):
                    return
            elif action < 0.85:
                response = self.http.get(path)
                if not self.check(response, sid, "a poll"):
                    return
                packets = response.text.split("\x1e")
                if "1" in packets:
                    return  # closed by the server
                pings += packets.count("2")
            elif action < 0.88:
                self.overlap(path, sid, "GET")
                return
            elif action < 0.90:
                self.overlap(path, sid, "POST")
                return
            elif action < 0.93:
                wrong = sid[:-1] + ("A" if sid[-1] != "A" else "B")
                response = self.http.post(f"/socket.io/?EIO=4&transport=polling&sid={wrong}")
                self.check(response, wrong, "a POST with an unknown sid")
            else:
                if self.upgrade(sid):
                    return  # the session went on (and ended) over websocket
        ending = rng.random()
        if ending < 0.4:
            self.post(path, sid, ["1"])
        elif ending < 0.6:
            self.check(self.http.get(path), sid, "a last poll")
        # else: abandon it; the server's heartbeat must time it out

    def post(self, path: str, sid: str, frames: list[Frame]) -> bool:
        rng = self.rng
        self.run.record(self.life_name, sid, frames)
        parts = [polling_part(frame) for frame in frames]
        if rng.random() < 0.05:  # broken at the payload level
            i = rng.randint(0, len(parts))
            parts.insert(i, rng.choice([b"", b"b", b"b!!!", b"b" + b"A" * 5, b"\xff\xfe"]))
        body = b"\x1e".join(parts)
        if rng.random() < 0.03:
            body += b"\x1e"
        self.polling.packets += len(parts)
        return self.check(self.http.post(path, content=body), sid, "a POST")

    def overlap(self, path: str, sid: str, method: str) -> None:
        """A second GET (or POST) while the first is still open: one of them gets 400."""
        self.polling.overlaps += 1
        host, port = "127.0.0.1", self.run.server.port
        with socket.create_connection((host, port), timeout=IO_TIMEOUT) as raw:
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            if method == "POST":  # a body that stops half-way: the POST stays open
                raw.sendall(f"{head}Content-Length: 100\r\n\r\n42[".encode())
            else:
                raw.sendall(f"{head}\r\n".encode())
            self.check(
                self.http.request(method, path, content=b"6"), sid, f"an overlapping {method}"
            )

    def upgrade(self, sid: str) -> bool:
        """A probe upgrade; True if it succeeded (the session then lived on websocket)."""
        rng = self.rng
        self.polling.upgrades += 1
        ws = self.open_ws(f"EIO=4&transport=websocket&sid={sid}")
        try:
            variant = rng.random()
            if variant < 0.5:  # by the book: 2probe, 3probe, 5, then fuzz over websocket
                self.run.record(self.life_name, sid, ["2probe"])
                ws.send("2probe")  # not send_ws: its reading would take the 3probe
                self.ws.packets += 1
                answer = ws.recv()
                if answer == "3probe" and self.send_ws(ws, ["5"], sid):
                    self.ws_session(ws, sid, connect=False)
                    return True
                return False
            bad: list[Frame] = rng.choice(
                [["2prob"], ["3probe"], ["5"], [b"2probe"], ["2probe", "4oops"], ["2probe", b"5"]]
            )
            self.send_ws(ws, bad, sid) and self.read_ws(ws, 1.0, sid)
            return False
        finally:
            ws.shutdown()


# ----------------------------------------------------------------------------- the canary


class Canary:
    """A real client (python-socketio over websocket) that calls ``echo`` every
    CANARY_EVERY seconds while the fuzz runs; every ack must come, right, in time."""

    def __init__(self, url: str) -> None:
        self.client = socketio.Client(reconnection=False)
        self.url = url
        self.acks = 0
        self.slowest = 0.0
        self.failures: list[str] = []
        self.disconnects: list[Any] = []
        self.client.on("disconnect", lambda *reason: self.disconnects.append(reason))

    def connect(self) -> None:
        self.client.connect(self.url, transports=["websocket"], wait_timeout=10)
        # A member of the room the fuzz broadcasts to: whatever hostile input the server
        # relays reaches a real client, which must stay connected and served.
        assert "r1" in self.client.call("join", "r1", timeout=ACK_DEADLINE)

    def call(self, n: int) -> None:
        payload: Any = {"n": n, "text": "é☃𝄞", "list": [n, None, True, 0.5]}
        if n % 10 == 0:
            payload["blob"] = bytes([n % 256]) * 64  # a binary event and ack too
        started = time.monotonic()
        try:
            answer = self.client.call("echo", payload, timeout=ACK_DEADLINE)
        except Exception as exc:
            self.failures.append(f"call {n}: {exc!r} after {time.monotonic() - started:.2f} s")
            return
        self.slowest = max(self.slowest, time.monotonic() - started)
        if answer != payload:
            self.failures.append(f"call {n}: expected {payload!r}, got {answer!r:.200}")
        else:
            self.acks += 1

    def close(self) -> None:
        if self.client.connected:
            self.client.disconnect()
        eio = self.client.eio  # its threads end with the connection: joined, not left
        for task in (eio.read_loop_task, eio.write_loop_task):
            if task is not None:
                task.join(timeout=10)


# ----------------------------------------------------------------------------- the log


UVICORN_DENIAL = "ERROR:    ASGI callable returned without completing handshake."


def read_log(text: str, denials: int) -> tuple[list[dict[str, Any]], list[str], int]:
    """(records that fail the run, foreign lines, whitelisted lines).

    One foreign line is let through per websocket handshake the server refused
    (``denials``): uvicorn 0.54's websockets-sansio protocol
    logs UVICORN_DENIAL after a denial response (``websocket.http.response.*``), though by
    the ASGI spec that response completes the handshake (its ``run_asgi`` looks only at
    ``handshake_complete``, which only an accept sets).
    """
    bad: list[dict[str, Any]] = []
    foreign: list[str] = []
    allowed = 0
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if line == UVICORN_DENIAL and denials > 0:
                denials -= 1
                allowed += 1
            elif line.strip():
                foreign.append(line)  # a traceback printed past logging, or the server's own
            continue
        if (
            record.get("level") in ("ERROR", "CRITICAL")
            or record.get("traceback")
            or "Task exception was never retrieved" in record.get("message", "")
            or "Exception in ASGI application" in record.get("message", "")
        ):
            bad.append(record)
    return bad, foreign, allowed


# ----------------------------------------------------------------------------- the test


# Both ASGI servers, one per anyio backend; ROOMS_FUZZ_SERVER=<kind> runs one of them.
FUZZ_SERVERS = (
    [os.environ.get("ROOMS_FUZZ_SERVER")] if "ROOMS_FUZZ_SERVER" in os.environ else list(SERVERS)
)


@pytest.fixture(params=FUZZ_SERVERS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(
        str(request.param),
        "tests.apps.fuzz:app",
        tmp_path,
        env={"ROOMS_PING_INTERVAL": "1", "ROOMS_PING_TIMEOUT": "2"},
    )
    yield live
    live.stop()


def stats(server: LiveServer) -> dict[str, Any]:
    return httpx.get(f"{server.url}/stats?gc=1", timeout=IO_TIMEOUT).json()  # type: ignore[no-any-return]


def settles(
    server: LiveServer, expected: dict[str, Any], deadline: float = SETTLE
) -> dict[str, Any]:
    """Poll /stats until it shows ``expected`` or ``deadline`` passes; the last answer."""
    end = time.monotonic() + deadline
    while True:
        now = stats(server)
        if all(now[k] == v for k, v in expected.items()) or time.monotonic() > end:
            return now
        time.sleep(0.1)  # the interval between polls of a condition with a deadline


def stop_all(run: Run, workers: list[Worker]) -> list[str]:
    """Stop and join every worker (each ends within an I/O timeout); the names of any
    still running."""
    run.stop.set()
    for worker in workers:
        if worker.thread.ident is not None:
            worker.thread.join(timeout=30)
        elif isinstance(worker, PollingWorker):
            worker.http.close()  # its thread would have closed it
    return [w.name for w in workers if w.thread.is_alive()]


def test_fuzzing_leaves_the_server_serving_and_clean(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    # websocket-client logs every close status but 1000 at ERROR: the fuzz asks for them.
    caplog.set_level(logging.CRITICAL, logger="websocket")
    seed = SEED
    run = Run(server, seed)
    workers: list[Worker] = [WebsocketWorker(run, f"ws-{n}") for n in range(WEBSOCKET_WORKERS)]
    workers += [PollingWorker(run, f"polling-{n}") for n in range(POLLING_WORKERS)]
    canary = Canary(server.url)
    try:
        canary.connect()
        started = time.monotonic()
        for worker in workers:
            worker.thread.start()
        calls = 0
        while True:
            calls += 1
            canary.call(calls)
            sent = sum(w.ws.packets + w.polling.packets for w in workers)
            spent = time.monotonic() - started > BUDGET or sent >= MAX_PACKETS
            if spent or run.crashes or server.process.poll() is not None:
                break
            run.stop.wait(CANARY_EVERY)  # pacing the canary, not waiting on anything
        alive = stop_all(run, workers)
        fuzzed = time.monotonic() - started
        check(run, workers, canary, calls, fuzzed, alive)
    finally:
        stop_all(run, workers)
        canary.close()


def check(
    run: Run, workers: list[Worker], canary: Canary, calls: int, fuzzed: float, alive: list[str]
) -> None:
    server, seed = run.server, run.seed
    ws, polling = Tally(), Tally()
    for worker in workers:
        ws.add(worker.ws)
        polling.add(worker.polling)
    print(
        f"\nfuzz seed {seed}: {fuzzed:.1f} s; websocket {ws.packets} packets in "
        f"{ws.handshakes} connections ({ws.refused} refused, closes {dict(ws.closes)}); "
        f"polling {polling.packets} packets in {polling.handshakes} sessions "
        f"({polling.refused} refused, {polling.upgrades} upgrades, {polling.overlaps} "
        f"overlaps, statuses {dict(polling.statuses)}, {polling.timeouts} timeouts); canary "
        f"{canary.acks}/{calls} acks, slowest {canary.slowest:.3f} s"
    )

    def verdict(what: str) -> str:
        """Everything needed to tell what failed and to replay it."""
        bad, foreign, _ = read_log(server.log(), ws.refused)
        lines = [f"{what} (seed {seed}: ROOMS_FUZZ_SEED={seed} replays it)"]
        lines.append(f"server log: {server.log_path}")
        lines += [f"harness error: {c}" for c in run.crashes]
        lines += [f"anomaly: {a}" for a in run.anomalies[:20]]
        lines += [f"log: {r['message']}\n{r.get('traceback') or ''}" for r in bad[:10]]
        named = " ".join([*run.anomalies[:20], *(r["message"] for r in bad[:10])])
        for sid, frames in run.journal.items():
            if sid in named:
                lines.append(f"frames sent to {sid}:\n  " + "\n  ".join(frames[-40:]))
        lines += [f"foreign log line: {line}" for line in foreign[:40]]
        return "\n".join(lines)

    assert not alive, verdict(f"workers still running: {alive}")
    assert not run.crashes, verdict("the harness failed")
    assert server.process.poll() is None, verdict("the server process died")
    assert canary.failures == [], verdict(f"the canary missed acks: {canary.failures[:10]}")
    assert canary.disconnects == [], verdict(f"the canary was disconnected: {canary.disconnects}")
    assert canary.acks == calls, verdict(f"expected {calls} canary acks, got {canary.acks}")
    assert run.anomalies == [], verdict("the server answered as failing itself")
    total = ws.packets + polling.packets
    assert total >= MIN_PACKETS, verdict(f"expected >= {MIN_PACKETS} packets, sent {total}")
    assert min(ws.packets, polling.packets) >= MIN_PER_TRANSPORT, verdict(
        f"expected >= {MIN_PER_TRANSPORT} packets per transport, sent {ws.packets} over "
        f"websocket and {polling.packets} over polling"
    )

    # Back to baseline: the canary alone (its rooms: its own id and r1), nothing queued, no
    # dynamic namespace left.
    baseline: dict[str, Any] = {"sessions": 1, "sockets": 1, "rooms": 2, "namespaces": ["/"]}
    baseline |= {"queued_frames": 0, "queued_bytes": 0}
    now = settles(server, baseline)
    assert {k: now[k] for k in baseline} == baseline, verdict(f"expected {baseline}, got {now}")
    canary.call(calls + 1)  # still served after all that
    assert canary.failures == [], verdict(f"the canary failed afterwards: {canary.failures}")
    canary.close()
    empty: dict[str, Any] = {"sessions": 0, "sockets": 0, "rooms": 0, "namespaces": ["/"]}
    empty |= {"queued_frames": 0, "queued_bytes": 0}
    now = settles(server, empty)
    assert {k: now[k] for k in empty} == empty, verdict(f"expected {empty} once alone, got {now}")

    assert server.process.poll() is None, verdict("the server process died")
    bad, foreign, allowed = read_log(server.log(), ws.refused)
    assert bad == [] and foreign == [], verdict("the server logged unhandled errors")
    print(f"whitelisted log lines: {allowed}")
