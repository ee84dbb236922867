"""The HTTP shell every service shares: app factory, middleware, health, metrics, event docs.

A service's `main.create_app(settings)` calls `create_service_app` with its routers and event
registry; nothing here is built at import time.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from opsat.common import observability as obs
from opsat.common.auth import Authenticator
from opsat.common.db import create_engine
from opsat.common.envelope import EventRegistry
from opsat.common.errors import install_error_handlers, problem
from opsat.common.eventstore import EventStore
from opsat.common.settings import ServiceSettings

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(scope, receive, send)
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
        response = problem(413, f"request body exceeds {self.max_bytes} bytes", code="body-too-large")
        await response(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing lets it through instead of turning it into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")


class ObservabilityMiddleware:
    """Correlation id (X-Correlation-ID in, out, and into every log line and event), metrics per route."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        cid = headers.get(b"x-correlation-id", b"").decode("latin-1")[:128] or str(uuid.uuid4())
        traceparent = headers.get(b"traceparent", b"").decode("latin-1")
        match = _TRACEPARENT.match(traceparent)
        cid_token = obs.correlation_id.set(cid)
        trace_token = obs.trace_id.set(match.group(1) if match else None)
        scope.setdefault("state", {})["traceparent"] = traceparent if match else None
        watch = obs.Stopwatch()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-correlation-id", cid.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            obs.HTTP_REQUESTS.labels(self.service, scope["method"], path, str(status)).inc()
            obs.HTTP_LATENCY.labels(self.service, scope["method"], path).observe(watch.seconds)
            obs.correlation_id.reset(cid_token)
            obs.trace_id.reset(trace_token)


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


def health_router(*, kafka_required: bool) -> APIRouter:
    """/healthz (alive), /readyz (database migrated; Kafka too where the process needs it), /metrics."""
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

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
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
        app.state.engine = engine or create_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.store = EventStore(app.state.engine, registry)
        if on_startup is not None:
            await on_startup(app)
        try:
            yield
        finally:
            if own_engine:
                await app.state.engine.dispose()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan,
                  docs_url="/docs", openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.registry = registry
    app.state.authenticator = Authenticator(settings)
    install_error_handlers(app)
    app.include_router(health_router(kafka_required=False))
    app.include_router(events_router(registry, settings.topic()))
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, service=settings.service_name)
    return app


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
