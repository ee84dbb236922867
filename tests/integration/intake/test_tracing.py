"""One trace from an HTTP request to the consumer: the client's W3C traceparent is continued by the API's
server span, stored in the event's metadata, put in the Kafka record's headers by the relay (with its
producer span), and the projection's consumer span and log line carry the same trace id.

Spans go to the OpenTelemetry SDK's in-memory exporter of this test process; Kafka and PostgreSQL are real.
"""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from opsat.common import tracing
from opsat.common.observability import JsonFormatter
from opsat.common.testing.helpers import scalar
from opsat.common.testing.infra import consume_all

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans():
    """Tracing on, into the SDK's in-memory exporter, for the apps and loops this test starts; off afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.stop()
    provider.shutdown()


async def test_a_trace_id_given_in_a_request_reaches_the_consumer_s_span_and_log_line(spans, intake, caplog):
    caplog.set_level(logging.DEBUG, logger="opsat.common.consumer")
    headers = {**intake.token("alice", "acme", "requester"), "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
    async with intake.worker():
        r = await intake.client.post("/api/v1/requests", headers=headers, json={
            "kind": "incident", "title": "VPN down", "impact": 2, "urgency": 1})
        assert r.status_code == 201, r.text
        rid = r.json()["request_id"]
        await intake.wait_for(rid, 1)

    # In the event's metadata: the API's server span, in the client's trace.
    stored = await scalar(intake.settings.database_url,
                          "select metadata->>'traceparent' from events where stream_id = $1", rid)
    assert tracing.trace_id_of(stored) == TRACE_ID
    # In the Kafka record's headers and the CloudEvent.
    (record,) = [r for r in await consume_all(intake.settings.kafka_bootstrap, intake.settings.topic(),
                                              min_count=1) if r.key.decode() == rid]
    header = dict(record.headers)["traceparent"].decode()
    assert tracing.trace_id_of(header) == TRACE_ID

    finished = spans.get_finished_spans()
    in_trace = {s.context.span_id: s for s in finished if format(s.context.trace_id, "032x") == TRACE_ID}
    (server,) = [s for s in in_trace.values() if s.kind == SpanKind.SERVER]  # FastAPI's own server span
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert tracing.traceparent_span_id(stored) == server.context.span_id

    def ancestors(span):  # type: ignore[no-untyped-def]
        while span.parent is not None and span.parent.span_id in in_trace:
            span = in_trace[span.parent.span_id]
            yield span

    append = next(s for s in in_trace.values() if s.name == "append request")
    assert server in list(ancestors(append))
    (producer,) = [s for s in in_trace.values() if s.kind == SpanKind.PRODUCER]
    assert producer.parent.span_id == server.context.span_id
    assert tracing.traceparent_span_id(header) == producer.context.span_id
    consumers = {s.name: s for s in in_trace.values() if s.kind == SpanKind.CONSUMER}
    assert "apply requests" in consumers, [s.name for s in finished]
    assert all(s.parent.span_id == producer.context.span_id for s in consumers.values())

    lines = [r for r in caplog.records if r.name == "opsat.common.consumer" and getattr(r, "trace_id", None)]
    mine = [r for r in lines if r.trace_id == TRACE_ID]
    assert mine, [r.getMessage() for r in lines]
    assert f'"trace_id": "{TRACE_ID}"' in JsonFormatter("intake").format(mine[0])


async def test_without_a_traceparent_the_trace_starts_at_the_api(spans, intake):
    async with intake.worker():
        r = await intake.client.post("/api/v1/requests", headers=intake.token("alice", "acme", "requester"),
                                     json={"kind": "incident", "title": "VPN down", "impact": 2, "urgency": 1})
        rid = r.json()["request_id"]
        await intake.wait_for(rid, 1)
    stored = await scalar(intake.settings.database_url,
                          "select metadata->>'traceparent' from events where stream_id = $1", rid)
    trace_id = tracing.trace_id_of(stored)
    assert trace_id is not None
    kinds = {s.kind for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id}
    assert {SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER} <= kinds
