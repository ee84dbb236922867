"""Where a submit's time goes: the same work measured layer by layer inside one process (uvloop),
each layer for a few seconds at the same concurrency, reporting rate and this process's CPU per op.

    raw_sql                 the append's SQL (events + outbox CTE, one transaction) on raw asyncpg
                            connections (the database floor for this statement)
    event_store             EventStore.append on the product's engine (opsat.common.db.create_engine:
                            pool_size 10 + max_overflow 10, pool_pre_ping=True)
    event_store[pool=N]     what-if: the same with pool_size = concurrency (no overflow churn)
    event_store[pool=N,no pre-ping]   what-if: and without pool_pre_ping
    handler                 CommandHandler.execute(SubmitRequest): domain decide + append
    asgi_healthz            the FastAPI app called as ASGI: GET /healthz (middleware + routing floor)
    asgi_submit_stub        POST /api/v1/requests with the handler replaced by a stub (route machinery:
                            dependencies, auth, body validation, response model) -- no database
    asgi                    the whole app, POST /api/v1/requests (everything but the HTTP server)
    sync_deps               what-if: a bare FastAPI route with no dependency, with 4 plain `def`
                            dependencies (thread pool) as the submit route has, and with 4 `async def`

Round trips to PostgreSQL per op are counted (asyncpg calls) for the event store and the handler.
Differences between layers are the cost of each layer; the HTTP run minus `asgi` is uvicorn, the
sockets and the client.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from common import SUBMIT_BODY, count_roundtrips, r, summary_ms


async def _drive(op: Callable[[], Awaitable[Any]], concurrency: int, seconds: float) -> dict[str, Any]:
    """Closed loop: `concurrency` tasks call op() until the time is up; returns rate, latency, CPU/op."""
    lat: list[float] = []
    end = time.perf_counter() + seconds
    for _ in range(concurrency):  # warm: connections, prepared statements, caches
        await op()

    async def loop() -> None:
        while (t := time.perf_counter()) < end:
            await op()
            lat.append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = len(lat)
    return {"ops_per_s": r(n / wall, 1), "process_cpu_ms_per_op": r(cpu / n * 1000, 3) if n else None,
            "process_cores_busy": r(cpu / wall), **{k: v for k, v in summary_ms(lat).items() if k != "count"},
            "ops": n}


async def _sessions(dsn: str) -> int:
    """Sessions ever opened to this database (PostgreSQL 14+), to see connection churn."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("select sessions from pg_stat_database where datname = current_database()") or 0
    finally:
        await conn.close()


async def run(database_url: str, dsn: str, token: str, concurrency: int = 32, seconds: float = 3.0,
              pool_size: int | None = None) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from opsat.common.commands import CommandMeta
    from opsat.common.db import create_engine
    from opsat.common.domain import Actor, CommandContext, Role
    from opsat.common.envelope import EventMetadata
    from opsat.common.eventstore import EventStore
    from opsat.intake.domain import aggregate
    from opsat.intake.domain.commands import SubmitRequest
    from opsat.intake.service import SERVICE, create_app
    from opsat.intake.settings import IntakeSettings

    settings = IntakeSettings(database_url=database_url)
    pool_size = pool_size or settings.database_pool_size
    out: dict[str, Any] = {"concurrency": concurrency, "seconds_per_layer": seconds, "pool_size": pool_size}
    actor = Actor(id="bench-user", organisation="bench-org", roles=frozenset({Role.requester}))

    def command() -> SubmitRequest:
        return SubmitRequest(request_id=str(uuid.uuid4()), kind="incident", channel="portal",
                             title=SUBMIT_BODY["title"], description=SUBMIT_BODY["description"],
                             impact=2, urgency=2, requester_id=actor.id, organisation_id=actor.organisation,
                             service="mail")

    engine = create_engine(database_url, pool_size=pool_size)
    registry = SERVICE.registry
    store = EventStore(engine, registry())
    handlers = SERVICE.command_handler(settings, store)
    try:
        # raw_sql: the very statement EventStore.append sends, on plain asyncpg connections.
        ctx = CommandContext(actor=actor, now=datetime.now(UTC))
        event = aggregate.decide(None, command(), ctx, handlers.aggregate.policies.default)[0]
        data = event.model_dump_json()
        meta = json.dumps(EventMetadata(actor=actor.id, tenant=actor.organisation, correlation_id="x").as_dict())
        from opsat.common.eventstore import _INSERT_EVENTS as raw_sql
        conns: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
        for _ in range(pool_size):
            conns.put_nowait(await asyncpg.connect(dsn))

        async def raw_op() -> None:
            conn = await conns.get()
            try:
                async with conn.transaction():
                    await conn.fetchval(raw_sql, str(uuid.uuid4()), "request", meta, [1], [str(uuid.uuid4())],
                                        [event.event_type], [1], [data])
            finally:
                conns.put_nowait(conn)

        out["raw_sql"] = await _drive(raw_op, concurrency, seconds)
        out["raw_sql"]["connections"] = pool_size
        while not conns.empty():
            await conns.get_nowait().close()

        async def store_op(store: EventStore = store) -> None:
            await store.append(str(uuid.uuid4()), "request", 0, [event],
                               EventMetadata(actor=actor.id, tenant=actor.organisation, correlation_id="x"))

        before = await _sessions(dsn)
        out["event_store"] = await _drive(store_op, concurrency, seconds)
        out["event_store"]["new_sessions"] = await _sessions(dsn) - before - 1
        with count_roundtrips() as counts:
            for _ in range(50):
                await store_op()
        out["event_store"]["round_trips_per_op"] = {k: r(v / 50, 2) for k, v in counts.most_common()}

        for label, pre_ping in ((f"event_store[pool={concurrency}]", True),
                                (f"event_store[pool={concurrency},no pre-ping]", False)):
            what_if = create_async_engine(database_url, pool_size=concurrency, max_overflow=0,
                                          pool_pre_ping=pre_ping)
            try:
                alt = EventStore(what_if, registry())

                async def alt_op(alt: EventStore = alt) -> None:
                    await store_op(alt)

                before = await _sessions(dsn)
                out[label] = await _drive(alt_op, concurrency, seconds)
                out[label]["new_sessions"] = await _sessions(dsn) - before - 1
            finally:
                await what_if.dispose()

        async def handler_op() -> None:
            await handlers.execute(command(), actor, CommandMeta(correlation_id="x"))

        out["handler"] = await _drive(handler_op, concurrency, seconds)
        with count_roundtrips() as counts:
            for _ in range(50):
                await handler_op()
        out["handler"]["round_trips_per_op"] = {k: r(v / 50, 2) for k, v in counts.most_common()}
    finally:
        await engine.dispose()

    # asgi: the real app (its own engine, from settings), called without a server.
    app = create_app(settings)
    body = json.dumps(SUBMIT_BODY).encode()
    scope_base = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/v1/requests", "raw_path": b"/api/v1/requests", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    statuses: dict[int, int] = {}

    async def asgi_call(a: Any, scope: dict[str, Any], payload: bytes) -> int:
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await a(dict(scope), receive, send)
        return status

    def scope_for(method: str, path: str, length: int) -> dict[str, Any]:
        headers = [h for h in scope_base["headers"] if h[0] != b"content-length"]
        return {**scope_base, "method": method, "path": path, "raw_path": path.encode(),
                "headers": headers + [(b"content-length", str(length).encode())]}

    class StubHandlers:
        async def execute(self, command: Any, actor: Any, meta: Any) -> Any:
            from opsat.common.eventstore import AppendResult

            return AppendResult(command.request_id, 1, 1, (str(uuid.uuid4()),))

    async with app.router.lifespan_context(app):
        healthz = scope_for("GET", "/healthz", 0)

        async def healthz_op() -> None:
            await asgi_call(app, healthz, b"")

        out["asgi_healthz"] = await _drive(healthz_op, concurrency, min(seconds, 2.0))
        real = app.state.commands
        app.state.commands = StubHandlers()  # a test double in this process; the product is untouched
        stub_statuses: dict[int, int] = {}

        async def stub_op() -> None:
            s = await asgi_call(app, scope_base, body)
            stub_statuses[s] = stub_statuses.get(s, 0) + 1

        out["asgi_submit_stub"] = await _drive(stub_op, concurrency, min(seconds, 2.0))
        out["asgi_submit_stub"]["statuses"] = stub_statuses
        app.state.commands = real

        async def asgi_op() -> None:
            s = await asgi_call(app, scope_base, body)
            statuses[s] = statuses.get(s, 0) + 1

        out["asgi"] = await _drive(asgi_op, concurrency, seconds)
        out["asgi"]["statuses"] = statuses

    out["sync_deps"] = await _sync_deps_whatif(asgi_call, concurrency, min(seconds, 2.0))
    return out


async def _sync_deps_whatif(asgi_call: Callable[..., Awaitable[int]], concurrency: int,
                            seconds: float) -> dict[str, Any]:
    from typing import Annotated

    from fastapi import Depends, FastAPI, Request

    def s1(request: Request) -> Any: return request.app.state  # noqa: E704
    def s2() -> str: return "x"  # noqa: E704
    def s3(request: Request) -> Any: return request.scope.get("state")  # noqa: E704
    def s4() -> None: return None  # noqa: E704
    async def a1(request: Request) -> Any: return request.app.state  # noqa: E704
    async def a2() -> str: return "x"  # noqa: E704
    async def a3(request: Request) -> Any: return request.scope.get("state")  # noqa: E704
    async def a4() -> None: return None  # noqa: E704

    app = FastAPI()

    @app.post("/sync")
    async def with_sync(d1: Annotated[Any, Depends(s1)], d2: Annotated[str, Depends(s2)],
                        d3: Annotated[Any, Depends(s3)], d4: Annotated[None, Depends(s4)]) -> dict[str, int]:
        return {"ok": 1}

    @app.post("/none")
    async def without() -> dict[str, int]:
        return {"ok": 1}

    @app.post("/async")
    async def with_async(d1: Annotated[Any, Depends(a1)], d2: Annotated[str, Depends(a2)],
                         d3: Annotated[Any, Depends(a3)], d4: Annotated[None, Depends(a4)]) -> dict[str, int]:
        return {"ok": 1}

    out = {}
    names = {"/none": "no_dependencies", "/sync": "four_def_dependencies", "/async": "four_async_def_dependencies"}
    for path in names:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"bench"), (b"content-length", b"0")], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80)}

        async def op(scope: dict[str, Any] = scope) -> None:
            await asgi_call(app, scope, b"")

        res = await _drive(op, concurrency, seconds)
        out[names[path]] = {
            k: res[k] for k in ("ops_per_s", "process_cpu_ms_per_op", "p50_ms")}
    return out
