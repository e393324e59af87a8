"""OpenTelemetry: a span per handler call (the ``otel`` extra: ``pip install "rooms[otel]"``).

::

    server = rooms.Server()
    Tracing(server)            # the global tracer provider, as configured by your app

Each event handler runs inside a span named ``"<namespace> <event>"`` (a catch-all
handler's events share the name ``"<namespace> *"``, so names stay few), of kind SERVER,
with the attributes ``messaging.system`` ("socket.io"), ``messaging.operation``
("process"), ``messaging.destination.name`` (the namespace), ``rooms.event`` and
``rooms.socket.id``. What the handler raises is recorded on the span, which is marked as an
error. A span is a root of its own trace: a connection lives far longer than the HTTP
request that opened it, so the span is *linked* to that request's trace (from its
``traceparent`` header, through the configured propagator) rather than made its child.
Spans made inside the handler are children of the handler's span.

Without this module imported nothing of OpenTelemetry is loaded, and handlers run with no
span at all.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("rooms.tracing needs the 'otel' extra: pip install \"rooms[otel]\"") from exc

from rooms import __version__
from rooms._types import Scope
from rooms.observer import Observer

if TYPE_CHECKING:
    from rooms.server import Server
    from rooms.socket import Socket


class Tracing(Observer):
    """Spans for ``server``'s handlers, from ``tracer_provider`` (default: the global one)."""

    traces = True

    def __init__(
        self, server: Server, *, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self.tracer = trace.get_tracer("rooms", __version__, tracer_provider=tracer_provider)
        server.observe(self)

    def handler_span(self, socket: Socket, event: str) -> AbstractContextManager[Any]:
        nsp = socket.nsp.name
        return self.tracer.start_as_current_span(
            f"{nsp} {event}",
            context=_ROOT,
            kind=trace.SpanKind.SERVER,
            attributes={
                "messaging.system": "socket.io",
                "messaging.operation": "process",
                "messaging.destination.name": nsp,
                "rooms.event": event,
                "rooms.socket.id": socket.id,
            },
            links=_request_link(socket.session.scope),
        )


# An empty context: a handler's span starts a trace of its own, whatever is current.
_ROOT = trace.set_span_in_context(trace.INVALID_SPAN)


def _request_link(scope: Scope) -> list[trace.Link]:
    """A link to the trace of the request that opened the connection, if it carried one."""
    headers = {
        name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())
    }
    context = trace.get_current_span(propagate.extract(headers)).get_span_context()
    return [trace.Link(context)] if context.is_valid else []
