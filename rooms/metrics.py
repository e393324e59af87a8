"""Prometheus metrics for a server (the ``metrics`` extra: ``pip install "rooms[metrics]"``).

::

    server = rooms.Server()
    metrics = Metrics(server)                      # the default registry
    app = Starlette(routes=[Route("/metrics", metrics.app())], middleware=[...])

What a packet costs is kept as plain integers on the way and handed to
``prometheus_client`` every ``interval`` seconds and before each scrape of :meth:`Metrics.app`
(so a scrape of another exporter may be up to ``interval`` behind). Rare events (connects,
disconnects, errors) and the histograms (fan-out, ack and cluster request latency) go to
``prometheus_client`` at once. Labels are bounded: transports, packet types, disconnect
reasons, and namespaces (a dynamic namespace's children share one label, and at most
``max_namespaces`` distinct names are kept before the rest count as ``"other"``); never a
room or a socket.

With several worker processes (``uvicorn --workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` as
``prometheus_client`` documents: each worker writes its values there and :meth:`Metrics.app`
answers with the sum (see docs/guides/operations.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio

try:
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        make_asgi_app,
        multiprocess,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "rooms.metrics needs the 'metrics' extra: pip install \"rooms[metrics]\""
    ) from exc

from rooms._types import ASGIApp, Receive, Scope, Send
from rooms.observer import Observer
from rooms.protocol.socketio import PacketType

if TYPE_CHECKING:
    from rooms.engine.session import Session
    from rooms.namespace import Namespace
    from rooms.protocol.engineio import Frame
    from rooms.server import Server
    from rooms.socket import Socket

# Index = Socket.IO packet type; the last one (index -1) is what is not a packet.
_TYPES = [t.name.lower() for t in PacketType] + ["invalid"]
_INVALID = len(_TYPES) - 1
# How a gauge adds up over the workers of multiprocess mode (dead workers left out).
Mode = Literal["livesum", "livemax", "livemin"]
_FANOUT_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_WAITING_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64)


class Metrics(Observer):
    """The Prometheus metrics of ``server``, registered in ``registry`` (default: the
    process's default registry) with names starting ``prefix_``. See the module for how
    they are kept and docs/guides/operations.md for the list."""

    def __init__(
        self,
        server: Server,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        prefix: str = "rooms",
        interval: float = 1.0,
        max_namespaces: int = 64,
    ) -> None:
        self.server = server
        self.registry = registry
        self.interval = interval
        self.max_namespaces = max_namespaces
        self._labels: dict[str, str] = {}
        r, p = registry, prefix

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(f"{p}_{name}", doc, labels, registry=r)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(f"{p}_{name}", doc, buckets=buckets, registry=r)

        def gauge(name: str, doc: str, labels: Sequence[str] = (), mode: Mode = "livesum") -> Gauge:
            return Gauge(f"{p}_{name}", doc, labels, registry=r, multiprocess_mode=mode)

        self.connections = gauge("connections", "Engine.IO connections open", ["transport"])
        self.sockets = gauge("sockets", "Sockets connected", ["namespace"])
        self.connects = counter("connects", "Sockets that connected", ["namespace"])
        self.disconnects = counter(
            "disconnects", "Sockets that left, by reason", ["namespace", "reason"]
        )
        self.refusals = counter("refusals", "CONNECTs answered with CONNECT_ERROR", ["namespace"])
        self.packets_received = counter("packets_received", "Packets from clients", ["type"])
        self.bytes_received = counter("received_bytes", "Bytes from clients", ["type"])
        self.packets_sent = counter("packets_sent", "Packets queued for clients", ["type"])
        self.bytes_sent = counter("sent_bytes", "Bytes queued for clients", ["type"])
        self.fanout = histogram(
            "broadcast_recipients", "Local sockets each broadcast reached", _FANOUT_BUCKETS
        )
        self.ack_latency = histogram(
            "ack_latency_seconds", "From an emit_with_ack to its ack", _LATENCY_BUCKETS
        )
        self.ack_timeouts = counter("ack_timeouts", "emit_with_ack calls that timed out")
        self.handler_errors = counter(
            "handler_errors", "Handlers that raised or returned what cannot be sent",
            ["namespace", "event"],
        )  # fmt: skip
        self.upgrades = counter("upgrades", "Connections upgraded to a websocket")
        self.outbox_peak = gauge(
            "outbox_peak_frames", "Most frames an outbox held since the last report", mode="livemax"
        )
        self.volatile_drops = counter("volatile_drops", "Volatile frames dropped (slow client)")
        self.overflow_closes = counter("overflow_closes", "Connections closed as slow consumers")
        self.broker_published = counter("broker_published", "Messages the broker took")
        self.broker_dropped = counter("broker_dropped", "Cluster messages dropped")
        self.broker_reconnects = counter("broker_reconnects", "Times the broker reconnected")
        self.broker_up = gauge("broker_up", "1 while the cluster is joined", mode="livemin")
        self.peers = gauge("cluster_peers", "Other processes alive", mode="livemax")
        self.request_latency = histogram(
            "cluster_request_seconds",
            "Requests to every other process, until all answered",
            _LATENCY_BUCKETS,
        )
        self.request_timeouts = counter("cluster_request_timeouts", "Cluster requests timed out")
        self.recovery_attempts = counter("recovery_attempts", "CONNECTs asking to recover")
        self.recovery_successes = counter("recovery_successes", "Sockets recovered")
        self.recovery_replayed = counter("recovery_replayed_packets", "Packets replayed")
        self.mail_waiting_at_connect = histogram(
            "mailbox_waiting",
            "Messages waiting for an identity as its socket connects (up to 64)",
            _WAITING_BUCKETS,
        )
        self.mail_delivered = counter("mailbox_delivered", "Mailbox messages sent to clients")
        self.mail_acked = counter("mailbox_acked", "Mailbox messages acknowledged")
        self.mail_redeliveries = counter(
            "mailbox_redeliveries", "Mailbox messages sent and not acknowledged (sent again later)"
        )
        # The hot path's counts, reported by flush().
        self._in = [0] * len(_TYPES)
        self._in_bytes = [0] * len(_TYPES)
        self._out = [0] * len(_TYPES)
        self._out_bytes = [0] * len(_TYPES)
        self._reported: dict[str, int] = {}
        self._flushing = False
        server.observe(self)

    # ------------------------------------------------------------------ reporting

    def start(self, server: Server) -> None:
        server.spawn(self._report_every, what="metrics reporting")

    def stop(self) -> None:
        self.flush()

    async def _report_every(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        """Hand what was counted since the last call to ``prometheus_client``."""
        for counts, metric in (
            (self._in, self.packets_received),
            (self._in_bytes, self.bytes_received),
            (self._out, self.packets_sent),
            (self._out_bytes, self.bytes_sent),
        ):
            for index, value in enumerate(counts):
                if value:
                    counts[index] = 0
                    metric.labels(_TYPES[index]).inc(value)
        server, engine = self.server, self.server.engine
        self._add("upgrades", engine.upgrades, self.upgrades)
        self._add("volatile", engine.volatile_drops, self.volatile_drops)
        self._add("overflows", engine.overflows, self.overflow_closes)
        self.outbox_peak.set(engine.outbox_peak)
        engine.outbox_peak = 0
        node = server.node
        if node is not None:
            broker = node.broker
            self._add("published", node.published, self.broker_published)
            self._add("dropped", node.dropped + broker.dropped, self.broker_dropped)
            self._add("reconnects", getattr(broker, "reconnects", 0), self.broker_reconnects)
            self.broker_up.set(1 if node.joined.is_set() else 0)
            self.peers.set(len(node.peers))
        resume = server.resume
        if resume is not None:
            self._add("attempts", resume.attempts, self.recovery_attempts)
            self._add("recovered", resume.recovered, self.recovery_successes)
            self._add("replayed", resume.replayed, self.recovery_replayed)
        mailbox = server.mailbox
        for key, metric in (
            ("delivered", self.mail_delivered),
            ("acked", self.mail_acked),
            ("redelivered", self.mail_redeliveries),
        ):
            done = getattr(mailbox, key, None)
            if isinstance(done, int):
                self._add("mail_" + key, done, metric)

    def _add(self, key: str, total: int, counter: Counter) -> None:
        """Move ``counter`` on by what the running ``total`` gained since last time."""
        gained = total - self._reported.get(key, 0)
        if gained > 0:
            counter.inc(gained)
        self._reported[key] = total

    def app(self) -> ASGIApp:
        """An ASGI app answering a scrape: ``Route("/metrics", metrics.app())``. What was
        counted is reported first. With ``PROMETHEUS_MULTIPROC_DIR`` set, it answers the
        sum of every worker."""
        registry = self.registry or REGISTRY
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return _Scrape(self, make_asgi_app(registry))

    # ------------------------------------------------------------------ labels

    def _namespace(self, name: str, nsp: Namespace | None) -> str:
        """A bounded label: children of a dynamic namespace share their parent's."""
        if nsp is not None and nsp.parent is not None:
            matcher = nsp.parent.matcher
            name = "dynamic:" + str(getattr(matcher, "pattern", getattr(matcher, "__name__", "")))
        label = self._labels.get(name)
        if label is None:
            if len(self._labels) >= self.max_namespaces:
                return "other"  # and not remembered: this map stays bounded too
            label = self._labels[name] = name
        return label

    # ------------------------------------------------------------------ the observer

    def session_opened(self, session: Session) -> None:
        self.connections.labels(session.transport).inc()

    def session_upgraded(self, session: Session) -> None:
        self.connections.labels("polling").dec()
        self.connections.labels("websocket").inc()

    def session_closed(self, session: Session, reason: str) -> None:
        self.connections.labels(session.transport).dec()

    def socket_connected(self, socket: Socket) -> None:
        label = self._namespace(socket.nsp.name, socket.nsp)
        self.connects.labels(label).inc()
        self.sockets.labels(label).inc()

    def socket_refused(self, namespace: Namespace | None, name: str, message: str) -> None:
        label = "unknown" if namespace is None else self._namespace(name, namespace)
        self.refusals.labels(label).inc()

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        label = self._namespace(socket.nsp.name, socket.nsp)
        self.disconnects.labels(label, reason).inc()
        self.sockets.labels(label).dec()

    def packet_in(self, ptype: int, size: int, packets: int) -> None:
        if not 0 <= ptype < _INVALID:
            ptype = _INVALID
        self._in[ptype] += packets
        self._in_bytes[ptype] += size

    def packets_out(self, frames: Sequence[Frame], count: int) -> None:
        head = frames[0]  # "4" (Engine.IO MESSAGE), then the Socket.IO packet type
        ptype = ord(head[1]) - 48 if type(head) is str and len(head) > 1 else -1
        if not 0 <= ptype < _INVALID:
            ptype = _INVALID
        size = len(head) if len(frames) == 1 else sum(len(f) for f in frames)
        self._out[ptype] += count
        self._out_bytes[ptype] += size * count

    def broadcast(self, namespace: str, reached: int) -> None:
        self.fanout.observe(reached)

    def ack(self, namespace: str, latency: float | None) -> None:
        if latency is None:
            self.ack_timeouts.inc()
        else:
            self.ack_latency.observe(latency)

    def handler_failed(self, namespace: Namespace, event: str) -> None:
        label = self._namespace(namespace.name, namespace)
        self.handler_errors.labels(label, event).inc()

    def cluster_request(self, latency: float | None) -> None:
        if latency is None:
            self.request_timeouts.inc()
        else:
            self.request_latency.observe(latency)

    def mail_waiting(self, count: int) -> None:
        self.mail_waiting_at_connect.observe(count)


class _Scrape:
    """The scrape endpoint (an object, not a function, so that Starlette's ``Route`` serves
    it as the ASGI app it is)."""

    def __init__(self, metrics: Metrics, exposition: Callable[..., Any]) -> None:
        self.metrics = metrics
        self.exposition = exposition

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.metrics.flush()
            await self.exposition(scope, receive, send)
