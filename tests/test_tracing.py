"""OpenTelemetry: one span per handler call, linked to the trace of the request that opened
the connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import rooms
from rooms.testing import TestClient
from rooms.tracing import Tracing

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def traced_server(provider: TracerProvider) -> rooms.Server:
    server = rooms.Server()
    Tracing(server, tracer_provider=provider)
    tracer = provider.get_tracer("app")

    @server.on("echo")
    async def echo(socket: rooms.Socket, value: object) -> object:
        with tracer.start_as_current_span("inside"):
            return value

    @server.on("fail")
    def fail(socket: rooms.Socket) -> None:
        raise RuntimeError("boom")

    @server.on("*")
    def anything(socket: rooms.Socket, event: str, *args: object) -> None:
        pass

    return server


async def test_each_handler_call_is_a_span_with_the_event_and_namespace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with TestClient(traced_server(provider)) as client:
        sid = await client.connect()
        assert await client.call("echo", 7) == 7
    by_name = {span.name: span for span in exporter.get_finished_spans()}
    handler, inside = by_name["/ echo"], by_name["inside"]
    assert handler.kind is trace.SpanKind.SERVER
    assert handler.attributes is not None
    assert dict(handler.attributes) == {
        "messaging.system": "socket.io",
        "messaging.operation": "process",
        "messaging.destination.name": "/",
        "rooms.event": "echo",
        "rooms.socket.id": sid,
    }
    # Spans made in the handler are its children; the handler's is a root.
    assert inside.parent is not None
    assert inside.parent.span_id == handler.context.span_id
    assert handler.parent is None


async def test_what_a_handler_raises_is_recorded_on_its_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with TestClient(traced_server(provider)) as client:
        await client.connect()
        await client.emit("fail")
        assert await client.call("echo", 1) == 1  # after "fail" on the same connection
    (failed,) = [s for s in exporter.get_finished_spans() if s.name == "/ fail"]
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


async def test_a_catch_all_handler_s_spans_share_one_name(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with TestClient(traced_server(provider)) as client:
        await client.connect()
        for n in range(5):
            await client.emit(f"event-{n}")
        assert await client.call("echo", 1) == 1
    names = [s.name for s in exporter.get_finished_spans() if s.name != "inside"]
    assert names.count("/ *") == 5
    assert set(names) == {"/ *", "/ echo"}


async def test_the_span_links_to_the_trace_of_the_request_that_opened_the_connection(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    server = traced_server(provider)
    async with TestClient(server, headers={"traceparent": PARENT}) as client:
        await client.connect()
        assert await client.call("echo", 1) == 1
    (handler,) = [s for s in exporter.get_finished_spans() if s.name == "/ echo"]
    assert [format(link.context.trace_id, "032x") for link in handler.links] == [TRACE_ID]
    assert format(handler.context.trace_id, "032x") != TRACE_ID


async def test_without_tracing_handlers_run_with_no_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    server = rooms.Server()
    seen: list[bool] = []
    server.on("look", lambda socket: seen.append(trace.get_current_span().is_recording()))
    async with TestClient(server) as client:
        await client.connect()
        await client.emit("look")
        await client.call("look")
    assert server.observer is None
    assert seen == [False, False]
