"""One trace from the Track call through the log into the projector's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from google.protobuf import timestamp_pb2
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from northstar.ingest.v1 import ingest_pb2
from northstar_harness.eventually import assert_eventually

from .conftest import WRITER_KEY, Suite

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this process, recorded in memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def test_the_callers_trace_reaches_the_projector(
    suite: Suite, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("test-client")
    with tracer.start_as_current_span("client") as client_span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        t = timestamp_pb2.Timestamp()
        t.FromDatetime(datetime.now(UTC))
        await suite.ingest.Track(
            ingest_pb2.TrackRequest(
                events=[
                    ingest_pb2.Event(event_id="t1", event="page.view", user_id="u1", timestamp=t)
                ]
            ),
            metadata=(("authorization", f"Bearer {WRITER_KEY}"), *carrier.items()),
            timeout=5,
        )
    trace_id = client_span.get_span_context().trace_id

    def projected_in_the_same_trace() -> bool:
        names = {s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id}
        assert "/northstar.ingest.v1.IngestService/Track" in names
        assert "project activity" in names
        return True

    await assert_eventually(projected_in_the_same_trace, timeout=10)


async def test_one_trace_reaches_both_projectors_through_the_log(
    suite: Suite, spans: InMemorySpanExporter
) -> None:
    """A Track with one rejected event appends to EVENTS (the accepted event) and to DOMAIN
    (the RequestReceived summary); both projectors continue the caller's trace from the
    NATS headers, their spans parented inside it."""
    tracer = trace.get_tracer("test-client")
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(datetime.now(UTC))
    with tracer.start_as_current_span("client") as client_span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        response = await suite.ingest.Track(
            ingest_pb2.TrackRequest(
                events=[
                    ingest_pb2.Event(event_id="ok-1", event="page.view", user_id="u1", timestamp=t),
                    ingest_pb2.Event(event_id="bad-1", event="", user_id="u1", timestamp=t),
                ]
            ),
            metadata=(("authorization", f"Bearer {WRITER_KEY}"), *carrier.items()),
            timeout=5,
        )
    assert (response.accepted, response.rejected) == (1, 1)
    trace_id = client_span.get_span_context().trace_id

    def both_projectors_in_the_trace() -> bool:
        in_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        by_name = {s.name: s for s in in_trace}
        assert "/northstar.ingest.v1.IngestService/Track" in by_name
        assert "project activity" in by_name
        assert "project ingest_requests" in by_name
        span_ids = {s.context.span_id for s in in_trace}
        for name in ("project activity", "project ingest_requests"):
            projector = by_name[name]
            assert projector.kind is trace.SpanKind.CONSUMER
            assert projector.parent is not None and projector.parent.span_id in span_ids
        return True

    await assert_eventually(both_projectors_in_the_trace, timeout=15)
