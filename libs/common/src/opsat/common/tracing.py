"""OpenTelemetry traces: HTTP request -> append -> relay publish -> consumer apply, one trace.

Off by default (`OPSAT_TRACING_EXPORTER=none`): then nothing here creates spans and the hot paths pay one
boolean test; the client's W3C `traceparent` still travels in event metadata and Kafka headers. With
`otlp`, spans go to `OPSAT_TRACING_OTLP_ENDPOINT` (OTLP over HTTP) in batches. Links between processes are
the W3C `traceparent`: stored with each event, put in the Kafka record's headers by the relay, read back by
the consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opsat.common.settings import ServiceSettings

log = logging.getLogger(__name__)

_propagator = TraceContextTextMapPropagator()
_provider: Any = None  # an SDK TracerProvider while tracing is on
_active = False  # the one test the hot paths make
NO_SPAN = nullcontext()


def active() -> bool:
    return _active


def provider() -> Any:
    return _provider


def use(tracer_provider: Any) -> None:
    """Trace into `tracer_provider` (an SDK TracerProvider) from now on in this process; apps created after
    this call give it to FastAPI's own server spans too."""
    global _provider, _active
    _provider, _active = tracer_provider, True


def stop() -> None:
    """Tracing off again (for tests: apps created afterwards trace nothing)."""
    global _provider, _active
    _provider, _active = None, False


def configure(settings: ServiceSettings, service: str) -> None:
    """Set up the exporter the settings name (nothing for `none`); once per process."""
    if settings.tracing_exporter == "none" or _active:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    provider = TracerProvider(resource=Resource.create({"service.name": f"opsat-{service}"}),
                              sampler=ParentBasedTraceIdRatio(settings.tracing_sample_ratio))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.tracing_otlp_endpoint)))
    use(provider)
    log.info("tracing to %s", settings.tracing_otlp_endpoint or "the OTLP default endpoint")


def tracer() -> trace.Tracer:
    return (_provider or trace.get_tracer_provider()).get_tracer("opsat")


def context_from(traceparent: str | None) -> otel_context.Context | None:
    return _propagator.extract({"traceparent": traceparent}) if traceparent else None


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def traceparent_of(span: trace.Span) -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def traceparent_span_id(traceparent: str | None) -> int | None:
    parts = (traceparent or "").split("-")
    return int(parts[2], 16) if len(parts) == 4 and len(parts[2]) == 16 else None


@contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: str | None = None,
         attributes: dict[str, Any] | None = None) -> Iterator[trace.Span | None]:
    """A span when tracing is on (child of the current one, or of `parent` given as a traceparent), else None."""
    if not _active:
        yield None
        return
    with tracer().start_as_current_span(name, context=context_from(parent), kind=kind,
                                        attributes=attributes) as current:
        yield current
