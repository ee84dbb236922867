"""The background process every service runs beside its API: relay, projections, deadlines.

It serves /healthz, /readyz and /metrics on OPSAT_WORKER_PORT so that Kubernetes can probe it and
scale it apart from the API. SIGTERM stops every loop cleanly (in-flight batches finish first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence

import uvicorn
from fastapi import FastAPI

from opsat.common.api import health_router
from opsat.common.db import create_engine
from opsat.common.settings import ServiceSettings

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[object]]


async def run_loops(loops: Sequence[tuple[str, Loop]], stop: asyncio.Event) -> None:
    """Run named loops until `stop`; a loop that crashes is logged and restarted after a pause."""

    async def supervised(name: str, loop: Loop) -> None:
        while not stop.is_set():
            try:
                await loop(stop)
            except Exception:
                log.exception("worker loop %s crashed; restarting", name)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
                except TimeoutError:
                    pass

    await asyncio.gather(*(supervised(name, loop) for name, loop in loops))


class _HealthServer(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM belongs to the worker, which stops its loops first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_worker(settings: ServiceSettings, loops: Sequence[tuple[str, Loop]],
                       prepare: Callable[[asyncio.Event], Awaitable[object]] | None = None) -> None:
    """Serve health at once, then `prepare` (e.g. wait for Kafka and create topics), then run the loops."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    health = FastAPI(title=f"{settings.service_name} worker")
    health.state.settings = settings
    health.state.engine = create_engine(settings.database_url, pool_size=2)
    health.state.started = False
    health.include_router(health_router(kafka_required=True))
    server = _HealthServer(uvicorn.Config(health, host=settings.http_host, port=settings.worker_port,
                                          log_config=None, access_log=False))
    health_task = asyncio.create_task(server.serve())
    try:
        if prepare is not None:
            await prepare(stop)
        health.state.started = True
        log.info("worker started: %s", ", ".join(name for name, _ in loops))
        await run_loops(loops, stop)
    finally:
        server.should_exit = True
        await health_task
        await health.state.engine.dispose()
        log.info("worker stopped")
