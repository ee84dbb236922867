"""Metrics (Prometheus), JSON logs and the correlation id that ties a request to its events."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

HTTP_REQUESTS = Counter("opsat_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram(
    "opsat_http_request_seconds", "HTTP request latency", ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter("opsat_events_appended_total", "Events appended to the event store", ["service"])
EVENTS_PUBLISHED = Counter("opsat_events_published_total", "Events acknowledged by Kafka", ["topic"])
OUTBOX_BACKLOG = Gauge("opsat_outbox_backlog", "Events waiting in the outbox", ["topic"])
RELAY_ERRORS = Counter("opsat_relay_errors_total", "Outbox relay rounds that failed", ["topic"])
KAFKA_UNREACHABLE = Gauge("opsat_kafka_unreachable", "1 while the outbox relay cannot deliver to Kafka", ["topic"])
EVENTS_APPLIED = Counter("opsat_projection_events_total", "Events applied by a projection", ["projection", "outcome"])
# Only partitions this process owns: a rebalance removes the series of those it lost.
CONSUMER_LAG = Gauge("opsat_consumer_lag", "Records behind the end of the partition",
                     ["projection", "topic", "partition"])
# Measured from outside by the worker (committed offsets vs end): keeps rising while a consumer is stopped.
CONSUMER_GROUP_LAG = Gauge("opsat_consumer_group_lag", "Records a consumer group has not committed, per topic",
                           ["consumer", "topic"])
CONSUMER_RETRIES = Counter("opsat_consumer_retries_total", "Batches rolled back by a transient fault and retried",
                           ["projection"])
DLQ_PARKED = Counter("opsat_dlq_parked_total", "Events parked on a dead-letter topic", ["projection"])
# Per process and pool ("api" or "worker"): connections checked out, the pool's size, callers waiting for one.
DB_POOL_IN_USE = Gauge("opsat_db_pool_in_use", "Database connections checked out of the pool", ["pool"])
DB_POOL_SIZE = Gauge("opsat_db_pool_size", "Database connections the pool holds at most", ["pool"])
DB_POOL_WAITERS = Gauge("opsat_db_pool_waiters", "Callers waiting for a pooled database connection", ["pool"])
DEADLINES_FIRED = Counter("opsat_deadlines_fired_total", "Due deadlines turned into commands", ["kind", "outcome"])


class RateLimit(logging.Filter):
    """At most one record per logger and message template per `interval` seconds; the next one that passes
    says how many were dropped. A client library reconnecting to a dead broker otherwise logs thousands."""

    def __init__(self, prefixes: tuple[str, ...], interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes, self.interval, self.clock = prefixes, interval, clock
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} alike suppressed in the last {self.interval:.0f}s)"
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": correlation_id.get(),
            "trace_id": getattr(record, "trace_id", None) or trace_id.get(),  # a consumer names its record's
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if json_logs:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimit(("aiokafka",)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # our middleware measures requests


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
