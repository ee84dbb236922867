"""The HTTP shell every service shares: app factory, middleware, health, metrics, event docs.

A service's `main.create_app(settings)` calls `create_service_app` with its routers and event
registry; nothing here is built at import time.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from opsat.common import observability as obs
from opsat.common import tracing
from opsat.common.auth import Authenticator, Unauthenticated
from opsat.common.collector import fewer_collections
from opsat.common.db import create_engine
from opsat.common.domain import Actor
from opsat.common.envelope import EventRegistry
from opsat.common.errors import install_error_handlers, problem, unauthenticated_problem
from opsat.common.eventstore import EventStore
from opsat.common.freshness import ReadModelWatch
from opsat.common.ids import new_id
from opsat.common.settings import ServiceSettings

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
# A client's correlation id goes into headers, logs and events: anything else is replaced, never echoed.
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class HttpMiddleware:
    """Every request's own layer, in one pure-ASGI pass over its headers: the correlation id (X-Correlation-ID
    in, out, and into every log line and event), the trace context, metrics per route, and 413 for bodies over
    the limit, whether announced by Content-Length or streamed (a refusal still carries the correlation id)."""

    def __init__(self, app: ASGIApp, service: str, max_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_bytes = max_bytes
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        cid = traceparent = b""
        length = None
        for name, value in scope["headers"]:  # the last of a repeated header wins, as in a dict of them
            if name == b"content-length":
                length = value
            elif name == b"x-correlation-id":
                cid = value
            elif name == b"traceparent":
                traceparent = value
        correlation = cid.decode("latin-1")
        if not _CORRELATION_ID.match(correlation):
            correlation = new_id()
        trace = traceparent.decode("latin-1")
        match = _TRACEPARENT.match(trace)
        cid_token = obs.correlation_id.set(correlation)
        trace_token = obs.trace_id.set(match.group(1) if match else None)
        scope.setdefault("state", {})["traceparent"] = trace if match else None
        cid_header = (b"x-correlation-id", correlation.encode("latin-1"))
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(cid_header)
            await send(message)

        if tracing.active():  # FastAPI's own server span (child of the client's traceparent) is current
            server = tracing.current_traceparent()
            if server:
                scope["state"]["traceparent"] = server  # the events appended carry it to the relay and consumers
                obs.trace_id.set(tracing.trace_id_of(server))
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                await self._reject(scope, receive, send_with_id)
            else:
                await self._limited(scope, receive, send_with_id)
        finally:
            key = (scope["method"], getattr(scope.get("route"), "path", "unmatched"), status)
            series = self._series.get(key)
            if series is None:  # label lookups hash and lock every time: keep the children per route
                method, path, _ = key
                series = self._series[key] = (obs.HTTP_REQUESTS.labels(self.service, method, path, str(status)),
                                              obs.HTTP_LATENCY.labels(self.service, method, path))
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
            obs.correlation_id.reset(cid_token)
            obs.trace_id.reset(trace_token)

    async def _limited(self, scope: dict, receive: Callable, send: Callable) -> None:
        """The app, with a receive that refuses a streamed body once it exceeds the limit."""
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Refused before routing: an operation that needs a token answers 401 without a valid one, not 413. (A
        body found too large while read is refused by the error handler, after every check before input.)"""
        request = Request(scope)
        if _needs_token(request):
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            try:
                if scheme.lower() != "bearer" or not token.strip():
                    raise Unauthenticated("missing bearer token")
                await request.app.state.authenticator.authenticate(token.strip())
            except Unauthenticated as exc:
                return await unauthenticated_problem(request, exc)(scope, receive, send)
        response = problem(413, f"request body exceeds {self.max_bytes} bytes", code="body-too-large")
        await response(scope, receive, send)


def _needs_token(request: Request) -> bool:
    """Whether the OpenAPI document says the request's operation needs a bearer token."""
    app = request.scope.get("app")
    if app is None or not hasattr(app, "openapi"):
        return False
    secured = getattr(app.state, "secured_operations", None)
    if secured is None:
        secured = [(re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"), method.upper())
                   for template, item in app.openapi().get("paths", {}).items()
                   for method, operation in item.items() if operation.get("security")]
        app.state.secured_operations = secured
    return any(method == request.method and pattern.match(request.url.path) for pattern, method in secured)


class _TooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing lets it through instead of turning it into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")


async def kafka_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """A TCP connect to the first bootstrap address: cheap enough for a readiness probe."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), timeout)
    except (TimeoutError, OSError, ValueError):
        return False
    writer.close()
    return True


async def database_ready(engine: AsyncEngine) -> tuple[bool, str]:
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(text("select version_num from alembic_version"))).scalar()
        return (version is not None, f"migrated to {version}" if version else "no migration applied")
    except Exception as exc:  # unreachable or not migrated
        return False, type(exc).__name__


def health_router(*, kafka_required: bool, metrics: bool = True) -> APIRouter:
    """/healthz (alive), /readyz (database migrated; Kafka too where the process needs it), /metrics (the
    worker's port always; the API's only when OPSAT_API_METRICS says so, as it may face the internet)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: database reachable and migrated; Kafka reachable")
    async def readyz(request: Request) -> JSONResponse:
        settings: ServiceSettings = request.app.state.settings
        db_ok, db_detail = await database_ready(request.app.state.engine)
        kafka_ok = await kafka_reachable(settings.kafka_bootstrap)
        # The API keeps taking commands while Kafka is away (events wait in the outbox), so only
        # the worker's readiness depends on Kafka.
        started = getattr(request.app.state, "started", True)  # a worker is ready once its loops run
        ready = db_ok and (kafka_ok or not kafka_required) and started
        body = {"status": "ready" if ready else "not ready", "started": started,
                "database": db_detail, "kafka": "reachable" if kafka_ok else "unreachable"}
        return JSONResponse(body, status_code=200 if ready else 503)

    if metrics:
        @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
        async def prometheus() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def events_router(registry: EventRegistry, topic: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1/events", tags=["events"])

    @router.get("/asyncapi.json", summary="AsyncAPI 3 document of the events this service publishes")
    async def asyncapi() -> dict[str, Any]:
        return registry.asyncapi(topic)

    @router.get("/schemas", summary="JSON Schema of every event type's data, keyed by CloudEvents type")
    async def schemas() -> dict[str, Any]:
        return registry.json_schemas()

    return router


def create_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    registry: EventRegistry,
    routers: Sequence[APIRouter],
    on_startup: Callable[[FastAPI], Awaitable[None]] | None = None,
    engine: AsyncEngine | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.engine = engine or create_engine(settings.database_url, pool_size=settings.database_pool_size,
                                                   pool_timeout_s=settings.database_pool_timeout_s)
        app.state.store = EventStore(app.state.engine, registry, settings.idempotency_retention_s,
                                     group_commit=settings.event_store_group_commit)
        app.state.read_model = ReadModelWatch(settings.database_url)
        await app.state.read_model.start()
        if on_startup is not None:
            await on_startup(app)
        try:
            with fewer_collections():  # what start-up built is frozen; see opsat.common.collector
                yield
        finally:
            await app.state.read_model.stop()
            if own_engine:
                await app.state.engine.dispose()

    tracing.configure(settings, settings.service_name)
    # FastAPI's native OpenTelemetry spans (server, dependencies, endpoint) when tracing is on, else none;
    # metrics and logs stay ours (Prometheus, JSON lines).
    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan,
                  telemetry={"tracing": tracing.active(), "tracer_provider": tracing.provider(),
                             "operation_spans": tracing.active(), "metrics": False, "logs": False},
                  docs_url="/docs", openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.registry = registry
    app.state.authenticator = Authenticator(settings)
    app.state.waits = WaitLimiter(settings.max_concurrent_waits, settings.max_waits_per_caller)
    install_error_handlers(app)
    for router in (health_router(kafka_required=False, metrics=settings.api_metrics),
                   events_router(registry, settings.topic()), *routers):
        add_routes(app, router)
    document_errors(app)
    app.add_middleware(HttpMiddleware, service=settings.service_name, max_bytes=settings.max_body_bytes)
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes (paths, tags, dependencies already resolved by the router) in the app's own list.
    `app.include_router` keeps a router behind a lazy wrapper that, per request, walks every router for changes
    and matches its routes twice; routes in the app's list are matched once, by their own path."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"{route!r}: only APIRoutes are added this way")
        app.router.routes.append(route)


class WaitLimiter:
    """Bounds read-your-writes waits (each holds a request open): a shared cap and a cap per caller. A wait
    refused is no error: the query answers at once, marked stale."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total, self.per_caller = total, per_caller
        self.waiting: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, caller: str) -> AsyncIterator[bool]:
        granted = sum(self.waiting.values()) < self.total and self.waiting.get(caller, 0) < self.per_caller
        if granted:
            self.waiting[caller] = self.waiting.get(caller, 0) + 1
        try:
            yield granted
        finally:
            if granted:
                self.waiting[caller] -= 1
                if not self.waiting[caller]:
                    del self.waiting[caller]


@asynccontextmanager
async def read_wait(request: Request, actor: Actor) -> AsyncIterator[float]:
    """Seconds this request may wait for a `min_version` (read-your-writes): the configured timeout, or 0 when the
    app's WaitLimiter refuses the caller a slot (the query then answers at once, marked stale)."""
    async with request.app.state.waits.slot(f"{actor.organisation}/{actor.id}") as granted:
        yield request.app.state.settings.read_your_writes_timeout_s if granted else 0.0


# --- the error contract in OpenAPI ------------------------------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` names each field at fault.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<code>, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}
ERROR_DESCRIPTIONS = {
    400: "Malformed JSON body",
    401: "No token, or a token that is not valid (WWW-Authenticate: Bearer)",
    403: "The caller's roles do not allow this operation",
    404: "Unknown id, or another organisation's (the two look the same)",
    409: "Illegal transition for the current state, or a concurrent change",
    412: "If-Match names a version the resource is not at",
    413: "Request body too large",
    422: "Invalid values: `errors` names each field",
    429: "Too many requests; retry after Retry-After seconds",
    503: "A dependency is unavailable; retry after Retry-After seconds",
}


def error_statuses(method: str, operation: dict[str, Any]) -> list[int]:
    """The statuses an operation can answer besides its success, from what it takes."""
    statuses = {413, 429, 503}  # any request: body limit, rate limits, dependencies
    params = operation.get("parameters", [])
    if params or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(400)
    if operation.get("security"):
        statuses |= {401, 403}
    if any(p["in"] == "path" for p in params) or method == "post":
        statuses.add(404)  # an unknown id; a command's references
    if method == "post" and operation.get("security"):
        statuses.add(409)
    if any(p["in"] == "header" and p["name"].lower() == "if-match" for p in params):
        statuses.add(412)
    return sorted(statuses)


def document_errors(app: FastAPI) -> None:
    """Every operation documents every problem it can answer, with the problem+json schema sent: a client
    generated from the document parses every error (FastAPI's own 422 schema is not what is sent)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for item in doc.get("paths", {}).values():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                # A route may declare more (e.g. `responses={404: ...}` on a query by version): same schema.
                declared = {int(s): r.get("description") for s, r in responses.items()
                            if s.isdigit() and int(s) in ERROR_DESCRIPTIONS}
                for status in sorted(set(error_statuses(method, operation)) | set(declared)):
                    responses[str(status)] = {"description": declared.get(status) or ERROR_DESCRIPTIONS[status],
                                              "content": problem}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
