"""Tracing is off unless an exporter is configured; with `otlp` the process traces into an OTLP exporter."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from opsat.common import tracing
from opsat.common.settings import ServiceSettings


@pytest.fixture(autouse=True)
def tracing_off_afterwards():
    yield
    if tracing.provider() is not None:
        tracing.provider().shutdown()
    tracing.stop()


def test_off_by_default_nothing_is_traced():
    tracing.configure(ServiceSettings(), "probe")
    assert not tracing.active() and tracing.provider() is None
    with tracing.span("anything") as span:
        assert span is None


def test_otlp_exporter_by_configuration():
    settings = ServiceSettings(tracing_exporter="otlp", tracing_otlp_endpoint="http://127.0.0.1:4318/v1/traces")
    tracing.configure(settings, "probe")
    assert tracing.active() and isinstance(tracing.provider(), TracerProvider)
    assert tracing.provider().resource.attributes["service.name"] == "opsat-probe"
    with tracing.span("work", parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") as span:
        assert format(span.get_span_context().trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert tracing.trace_id_of(tracing.current_traceparent()) == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_an_unknown_exporter_is_refused():
    with pytest.raises(ValidationError):
        ServiceSettings(tracing_exporter="jaeger")
